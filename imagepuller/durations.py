"""Durations as administrators write them: `300`, `300s`, `5m`, `1h30m`, `1.5h`, `500ms`."""

from __future__ import annotations

import re

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ms|s|m|h)")
_NUMBER = re.compile(r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)$")


class DurationError(ValueError):
    pass


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a plain number of seconds or Go-style parts like `1h30m`."""
    text = text.strip()
    try:
        # ASCII only: float() would also take '1_000', '١٠', 'inf' and '1e999'.
        return float(text) if _NUMBER.match(text) else _parse_parts(text)
    except (ValueError, DurationError):
        raise DurationError(
            "expected a duration such as 300 (seconds), 45s, 5m, 1h30m or 500ms"
        ) from None


def _parse_parts(text: str) -> float:
    position, total = 0, 0.0
    while position < len(text):
        match = _PART.match(text, position)
        if not match:
            raise DurationError(text)
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position == 0:
        raise DurationError(text)
    return total


def format_duration(seconds: float) -> str:
    """A short human form for logs and `check`: 3600 -> '1h', 90 -> '1m30s'."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return "".join(parts) or "0s"
