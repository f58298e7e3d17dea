"""Session IDs: 256 bits from the OS CSPRNG, unique, without structure (OWASP: session ID entropy).

The statistical checks run on IDs collected over real HTTP from the demo. Their
bounds are six standard deviations or more wide, so a healthy generator fails
them with a probability below one in a million per run, while a counter, a
clock, a short random part or a biased alphabet fails them at once.
"""

from __future__ import annotations

import base64
import itertools
import math
import zlib
from collections import Counter

import pytest
from sec_kit import SESSION_ID, TunedDemo, issued_id, raw_client, sign_in

from serversession.core import ids

SESSIONS = 1500


def id_bytes(session_id: str) -> bytes:
    return base64.urlsafe_b64decode(session_id + "=")


@pytest.fixture(scope="module")
def issued(redis_demo: TunedDemo) -> tuple[list[str], list[str]]:
    """(session IDs, CSRF tokens) of SESSIONS new sessions, in the order the demo issued them."""
    session_ids, tokens = [], []
    with raw_client(redis_demo) as client:
        for _ in range(SESSIONS):
            response = client.get("/api/session")
            assert response.status_code == 200
            session_id = issued_id(response)
            assert session_id is not None
            session_ids.append(session_id)
            tokens.append(response.json()["csrf_token"])
    return session_ids, tokens


def test_ids_are_unique_and_have_the_documented_shape(issued: tuple[list[str], list[str]]) -> None:
    session_ids, tokens = issued
    assert len(set(session_ids)) == SESSIONS
    assert len(set(tokens)) == SESSIONS
    assert not set(session_ids) & set(tokens)
    for session_id in session_ids:
        assert SESSION_ID.fullmatch(session_id), session_id
        assert len(id_bytes(session_id)) == 32  # 256 bits, well over OWASP's 64 bits of entropy


def test_every_bit_is_a_fair_coin(issued: tuple[list[str], list[str]]) -> None:
    raw = [int.from_bytes(id_bytes(s), "big") for s in issued[0]]
    n = len(raw)
    sigma = math.sqrt(n) / 2
    for bit in range(256):
        ones = sum((value >> bit) & 1 for value in raw)
        assert abs(ones - n / 2) < 6 * sigma, f"bit {bit} is set in {ones} of {n} IDs"
    total = sum(bin(value).count("1") for value in raw)
    assert abs(total - 128 * n) < 6 * math.sqrt(256 * n) / 2


def test_byte_values_are_uniform(issued: tuple[list[str], list[str]]) -> None:
    data = b"".join(id_bytes(s) for s in issued[0])
    counts = Counter(data)
    expected = len(data) / 256
    chi2 = sum((counts.get(b, 0) - expected) ** 2 / expected for b in range(256))
    # 255 degrees of freedom: mean 255, standard deviation 22.6. Too uniform is as suspicious as too lumpy.
    assert 255 - 7 * 22.6 < chi2 < 255 + 7 * 22.6, chi2
    entropy = -sum(c / len(data) * math.log2(c / len(data)) for c in counts.values())
    assert entropy > 7.98, entropy  # bits per byte; 8 is perfect, a 1500-ID sample estimates about 7.99
    assert len(zlib.compress(data, 9)) >= len(data)  # incompressible


def test_consecutive_ids_share_nothing(issued: tuple[list[str], list[str]]) -> None:
    raw = [int.from_bytes(id_bytes(s), "big") for s in issued[0]]
    for before, after in itertools.pairwise(raw):
        distance = bin(before ^ after).count("1")
        assert 128 - 6 * 8 < distance < 128 + 6 * 8, distance  # Hamming distance: mean 128, sd 8
    ordered = sorted(issued[0])
    longest = max(len(_common_prefix(a, b)) for a, b in itertools.pairwise(ordered))
    assert longest <= 8, longest  # about log64(n^2) = 3.5 characters expected


def test_ids_issued_at_sign_in_are_as_random(redis_demo: TunedDemo, issued: tuple[list[str], list[str]]) -> None:
    rotated = {sign_in(redis_demo)[0] for _ in range(20)}
    assert len(rotated) == 20 and not rotated & set(issued[0])
    assert all(SESSION_ID.fullmatch(s) for s in rotated)


def test_the_generator_is_the_os_csprng_with_32_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = ids.secrets.token_urlsafe

    def spy(nbytes: int) -> str:
        calls.append(nbytes)
        return real(nbytes)

    monkeypatch.setattr(ids.secrets, "token_urlsafe", spy)
    session_id = ids.new_session_id()
    assert calls == [32] and ids.is_well_formed(session_id)


def _common_prefix(a: str, b: str) -> str:
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    return a[:i]
