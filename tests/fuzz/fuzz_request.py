"""Coverage-guided fuzz target (atheris/libFuzzer): arbitrary bytes as an HTTP request
through the demo app, and as input to the session layer's parsers and checkers.

Run for a bounded time (what ``test_fuzz_atheris.py`` does in CI)::

    .venv/bin/python tests/fuzz/fuzz_request.py -max_total_time=15 CORPUS_DIR

Any exception, or a broken invariant (see :mod:`fuzzkit`), is a crash: libFuzzer
stops, writes the input to ``crash-<sha1>`` (``-artifact_prefix=DIR/`` moves it)
and exits non-zero. Replay a crash with ``python tests/fuzz/fuzz_request.py crash-…``.

The first byte picks the mode: even bytes fuzz the whole request path (unsigned
and signed cookies alternate), odd bytes fuzz the pure functions directly with
stricter, per-function invariants.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["serversession", "fuzzkit"]):
    from fuzzkit import Harness

    from serversession.core import csrf
    from serversession.core.config import SessionConfig
    from serversession.core.ids import is_well_formed, new_session_id
    from serversession.core.transport import parse_cookie_header, read_token, session_id_from_token
    from serversession.integrations.kit import token_from_form

UNSIGNED = SessionConfig(cookie_secure=False)
SIGNED = SessionConfig(cookie_secure=False, secret_keys=["fuzz-signing-key-0123456789abcdef", "older-key-0123456789"])
SAMPLE_ID = new_session_id()
SAMPLE_SIGNED = SIGNED.signer.sign(SAMPLE_ID) if SIGNED.signer else ""
_harnesses: dict[bool, Harness] = {}


def harness(signed: bool) -> Harness:
    if signed not in _harnesses:
        _harnesses[signed] = Harness(signed=signed)
    return _harnesses[signed]


def check_pure(data: bytes) -> None:
    """The parsers and checkers on their own: total functions with exact invariants."""
    text = data.decode("latin-1")  # what an ASGI server hands over for a header value
    for config in (UNSIGNED, SIGNED):
        wanted = (config.cookie_name or "", config.csrf_cookie_name)
        cookies = parse_cookie_header(text, wanted)
        assert set(cookies) <= set(wanted)
        assert all(";" not in value for value in cookies.values())
        token = read_token(config, text, text)
        session_id = session_id_from_token(config, token.value)
        assert session_id is None or is_well_formed(session_id)
        session_id = session_id_from_token(config, text)
        if session_id is not None:
            assert is_well_formed(session_id)
            if config.signer is not None:  # only a genuine signature gets through
                assert text in (config.signer.sign(session_id), SIGNED.signer.sign(session_id) if SIGNED.signer else "")
    if SIGNED.signer is not None:
        unsigned = SIGNED.signer.unsign(text)
        assert unsigned is None or SIGNED.signer.unsign(SIGNED.signer.sign(unsigned)) == unsigned
        assert SIGNED.signer.unsign(SAMPLE_SIGNED + text) in (None, SAMPLE_ID) or text == ""
    token_from_form(data)
    secret = text[:64]
    assert csrf.token_matches(secret, text) == (bool(secret) and text == csrf.token_for(secret))


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    if data[0] & 1:
        check_pure(data[1:])
    else:
        harness(bool(data[0] & 2)).check(data[1:])


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
