"""A full demo run logs its lifecycle by public handle and never a session ID or CSRF token."""

from __future__ import annotations

from demo_client import ApiClient, DemoServer


def test_no_log_line_of_a_full_run_contains_a_secret(tmp_path) -> None:  # type: ignore[no-untyped-def]
    secrets: set[str] = set()
    with DemoServer(f"sqlite:///{tmp_path / 'logs.db'}") as server:
        with ApiClient(server) as phone, ApiClient(server) as laptop:
            for client in (phone, laptop):
                secrets.add(client.start()["csrf_token"])
                secrets.add(client.cookie or "")
                assert client.post("/api/cart/items", json={"sku": "mug", "qty": 1}).status_code in (200, 404)
                assert client.login("alice").status_code == 200
                secrets.update({client.cookie or "", client.csrf or ""})
            assert phone.post("/api/login", json={"username": "alice", "password": "nope"}).status_code == 401
            bad = phone.post("/api/cart/items", json={"sku": "x", "qty": 1}, headers={"X-CSRF-Token": "bad"})
            assert bad.status_code == 403
            handles = [s["id"] for s in laptop.get("/api/sessions").json()["sessions"]]
            other = next(s["id"] for s in laptop.get("/api/sessions").json()["sessions"] if not s["current"])
            assert laptop.delete(f"/api/sessions/{other}").status_code == 200
            assert laptop.post("/api/logout").status_code == 200
            metrics = laptop.get("/metrics")
            assert metrics.status_code == 200
            assert 'serversession_events_total{kind="revoked"} 1.0' in metrics.text
            assert 'serversession_events_total{kind="csrf_failed"} 1.0' in metrics.text
            assert "serversession_store_seconds_bucket" in metrics.text
        log = server.log()
    secrets.discard("")
    assert "session created" in log and "session rotated" in log and "session revoked" in log
    assert any(handle in log for handle in handles)
    leaked = [s for s in secrets if s in log]
    assert not leaked, f"secrets in the log: {len(leaked)}"
