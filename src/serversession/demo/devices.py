"""Name a device from its User-Agent header: "Chrome on Linux", "curl".

The "your active sessions" list needs a short label a person recognises, not a
full User-Agent parser: a few ordered substring checks cover the browsers and
systems people actually use, and anything else falls back to the product token
(``python-httpx/0.28`` -> "python-httpx"). Order matters because browsers claim
each other's names (Edge says Chrome, Chrome says Safari).
"""

from __future__ import annotations

import re

# (marker in the User-Agent, browser name); first match wins.
_BROWSERS: tuple[tuple[str, str], ...] = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("HeadlessChrome/", "Headless Chrome"),
    ("Chromium/", "Chromium"),
    ("CriOS/", "Chrome"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
)
_SYSTEMS: tuple[tuple[str, str], ...] = (
    ("Windows", "Windows"),
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("CrOS", "ChromeOS"),
    ("Mac OS X", "macOS"),
    ("Macintosh", "macOS"),
    ("Linux", "Linux"),
)
_PRODUCT = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,40}")


def describe(user_agent: str) -> str:
    """Return "Browser on OS" for ``user_agent``; "Unknown device" when empty."""
    ua = user_agent.strip()
    if not ua:
        return "Unknown device"
    browser = next((name for marker, name in _BROWSERS if marker in ua), None)
    system = next((name for marker, name in _SYSTEMS if marker in ua), None)
    if browser is None:
        match = _PRODUCT.match(ua)
        browser = match.group(0) if match and not ua.startswith("Mozilla") else "Unknown browser"
    return f"{browser} on {system}" if system else browser
