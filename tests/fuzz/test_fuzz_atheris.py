"""Run the atheris target for a bounded time: CI's coverage-guided fuzzing.

``SERVERSESSION_FUZZ_SECONDS`` (default 15) sets the budget; a long run by hand::

    SERVERSESSION_FUZZ_SECONDS=600 .venv/bin/python -m pytest tests/fuzz/test_fuzz_atheris.py

The corpus starts from seeds written here (a genuine-looking ID, signed values,
JSON and form bodies) plus a dictionary of the tokens the parsers look for, so a
short run gets past the first checks quickly. A crash fails the test with the
fuzzer's report and the path of the saved input.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris is in the test extra; pip install atheris")

TARGET = Path(__file__).with_name("fuzz_request.py")
SECONDS = int(os.environ.get("SERVERSESSION_FUZZ_SECONDS", "15"))
DICTIONARY = [
    "session=", "session-csrf=", "Session ", "; ", "=", ".", '"', "csrf_token=", "application/json",
    "application/x-www-form-urlencoded", '{"sku":"tea-sencha","qty":1}', '{"username":"alice","password":"wonderland"}',
    '{"theme":"dark"}', "A" * 43, "\x00", "\xff",
]  # fmt: skip
SEEDS = [
    b"\x00\x01\x05" + b"A" * 43,
    b"\x00\x05\x07\xff\xff\xff\xff" + b'{"sku":"tea-sencha","qty":1}',
    b"\x00\x01\x03\xff\xff\xff\xff" + b'{"username":"alice","password":"wonderland"}',
    b"\x02\x01\x04" + b"A" * 43 + b".AAAAAAAAAAAAAAAAAAAAAA",
    b"\x00\x10\x13\xff\xff\xff\xff" + b"csrf_token=x&sku=tea-sencha&qty=2",
    b"\x01session=" + b"A" * 43 + b"; session-csrf=x",
    b"\x01Session " + b"A" * 43,
]


def dict_escape(token: str) -> str:
    """A libFuzzer dictionary entry: backslash and quote escaped, other bytes as \\xHH."""
    return "".join(
        "\\" + c if c in '\\"' else c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in token
    )


def test_fuzz_the_request_path(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(SEEDS):
        (corpus / f"seed-{i}").write_bytes(seed)
    dictionary = tmp_path / "tokens.dict"
    dictionary.write_text("".join(f'"{dict_escape(token)}"\n' for token in DICTIONARY))
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    argv = [
        sys.executable, str(TARGET), f"-max_total_time={SECONDS}", "-timeout=10", "-rss_limit_mb=2048",
        "-max_len=512", f"-dict={dictionary}", f"-artifact_prefix={artifacts}/", "-print_final_stats=1", str(corpus),
    ]  # fmt: skip
    done = subprocess.run(
        argv, cwd=tmp_path, capture_output=True, text=True, timeout=SECONDS + 120, check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TARGET.parent), os.environ.get("PYTHONPATH", "")])},
    )  # fmt: skip
    report = done.stderr[-6000:]
    crashes = sorted(p.name for p in artifacts.iterdir())
    assert done.returncode == 0 and not crashes, f"fuzzer found a crash {crashes}:\n{report}"
    runs = re.search(r"Done (\d+) runs", done.stderr)
    assert runs is not None, report
    edges = re.findall(r"cov: (\d+)", done.stderr)
    print(f"\natheris: {runs.group(1)} runs in {SECONDS}s, {edges[-1] if edges else '?'} edges covered")
    assert int(runs.group(1)) >= 100 * SECONDS  # it really ran (about 3,000 inputs a second here)
