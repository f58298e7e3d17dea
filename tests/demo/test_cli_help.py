"""``serversession demo --help`` describes every flag: what it does, its default and its unit."""

from __future__ import annotations

import re
import subprocess
import sys


def demo_help() -> str:
    done = subprocess.run(
        [sys.executable, "-m", "serversession", "demo", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_demo_flag_has_a_description_and_a_default() -> None:
    text = demo_help()
    options = text.split("options:", 1)[1].split("\n\n", 1)[0]
    # One entry per flag: "--name METAVAR  help..." possibly wrapped onto indented lines.
    entries = re.split(r"\n(?=  -)", options.strip("\n"))
    flags = {entry.split()[0]: " ".join(entry.split()) for entry in entries}
    assert len(flags) >= 10, flags
    for flag, entry in flags.items():
        if flag.startswith("-h"):
            continue
        assert "default" in entry, f"{flag} names no default: {entry}"
    for timed in ("--idle-timeout", "--absolute-timeout", "--reauth-window"):
        assert re.search(r"default \d+ s\)", flags[timed]), flags[timed]
    assert "seconds" in text and "SERVERSESSION_STORE" in text
