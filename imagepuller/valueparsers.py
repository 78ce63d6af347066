"""Parsers of setting values, each a function of one string that returns the value or raises
ValueError whose text says what was expected. They know no setting's name: the reader that
calls them names the problem in its own words (see ``named``).

Quantities, DNS names, durations, choices and counts live here; JSON values in
``jsonparsers``, image references and image lists in ``imageparsers``.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from imagepuller.durations import DurationError, parse_duration

# Every pattern is used with fullmatch: `$` would also match before a final newline.
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

# Kubernetes' own quantity syntax (ASCII digits only, one suffix or exponent).
_QUANTITY = re.compile(
    r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?"
)

# What each suffix multiplies by (a decimal exponent, e3, is read by Decimal itself).
_QUANTITY_FACTORS = {
    **{s: Decimal(1024) ** p for p, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"), 1)},
    **{s: Decimal(10) ** p for s, p in (("n", -9), ("u", -6), ("m", -3), ("k", 3), ("M", 6))},
    **{s: Decimal(10) ** p for s, p in (("G", 9), ("T", 12), ("P", 15), ("E", 18))},
}

_QUANTITY_MAX = Decimal(2**63) / 1000  # what Kubernetes can hold (int64 milli-units)
_DECIMAL = re.compile(r"([0-9]+(\.[0-9]*)?|\.[0-9]+)")

# Problems quote the offending value; longer values are shortened to this many characters.
_SHOWN_MAX = 200

# Bounds that keep every duration a real, schedulable time (and out of float overflow).
INTERVAL_HOURS_RANGE = (0.001, 8760.0)  # 3.6 seconds .. one year
READY_TIMEOUT_RANGE = (1.0, 86400.0)  # one second .. one day

# maxSurge is an IntOrString: a count (int32) or a percentage of the nodes.
_SURGE_COUNT_MAX = 2**31 - 1
_SURGE = re.compile(r"(?P<number>[0-9]+)(?P<percent>%?)")

LOG_FORMATS = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")

# rolling: each refresh rolls the pods in place (maxUnavailable 0, maxSurge REFRESH_MAX_SURGE);
# recreate: the Go original's delete-and-create.
REFRESH_STRATEGIES = ("rolling", "recreate")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a value. ``where`` is what follows the setting's name in the
    report when the problem is about a part of the value (`` entry 2 'a=b'``); None means the
    whole value, shown after ``=``."""

    text: str
    where: str | None = None


class ValueProblems(ValueError):
    """Several problems with one value, each reported on its own line."""

    def __init__(self, problems: Sequence[Problem | str]):
        self.problems = [p if isinstance(p, Problem) else Problem(p) for p in problems]
        super().__init__("; ".join(problem.text for problem in self.problems))


def named(label: str, raw: str, problem: Problem) -> str:
    """``problem`` with ``raw`` as one report line, under the name its reader uses: the
    variable for the ConfigMap (``IMAGES``), the field for a resource (``spec.images``)."""
    where = f"={show(raw)}" if problem.where is None else problem.where
    return f"{label}{where}: {problem.text}"


def show(value: str) -> str:
    """``value`` quoted for a problem line, shortened when long (a value can be 256 KiB)."""
    if len(value) <= _SHOWN_MAX:
        return repr(value)
    return f"{value[:_SHOWN_MAX]!r}... ({len(value)} characters)"


def show_all(values: list[str]) -> str:
    return "[" + ", ".join(show(value) for value in values) + "]"


def show_json(value: Any) -> str:
    """A parsed JSON value as the administrator wrote it, shortened."""
    text = json.dumps(value)
    return text if len(text) <= 60 else f"{text[:60]}..."


def quantity_value(raw: str) -> Decimal:
    """A Kubernetes quantity's value (``20Mi``, ``.5``, ``200m``, ``1e3``). Our own few lines,
    not the client's ``parse_quantity``: importing that loads the whole Kubernetes client,
    which ``render``, ``check`` and ``images`` otherwise never need. ValueError when
    ``raw`` is not a quantity, ArithmeticError when it overflows."""
    match = _QUANTITY.fullmatch(raw)
    if match is None:
        raise ValueError(f"{raw!r} is not a quantity")
    number, suffix = match.group(1), match.group(2) or ""
    if suffix in _QUANTITY_FACTORS:
        return Decimal(number) * _QUANTITY_FACTORS[suffix]
    return Decimal(number + suffix)  # no suffix, or a decimal exponent


def positive_quantity(raw: str, expected: str) -> Decimal:
    try:
        value = quantity_value(raw)
    except (ValueError, ArithmeticError):
        raise ValueError(expected) from None
    if value > _QUANTITY_MAX:
        raise ValueError("too large: Kubernetes holds quantities up to about 9.2e15 (8Pi)")
    if value <= 0:
        raise ValueError(expected)
    return value


def memory_quantity(raw: str) -> str:
    value = positive_quantity(
        raw, "expected a memory quantity above zero, such as 20Mi, 1Gi or 500M"
    )
    if value != value.to_integral_value():
        raise ValueError(
            "expected a whole number of bytes, such as 20Mi (not a fraction of a byte)"
        )
    return raw


def cpu_quantity(raw: str) -> str:
    value = positive_quantity(raw, "expected a CPU quantity of at least 1m, such as .2, 200m or 1")
    if value < Decimal("0.001"):
        raise ValueError("expected a CPU quantity of at least 1m (one thousandth of a core)")
    return raw


def parse_hours(raw: str) -> float:
    low, high = INTERVAL_HOURS_RANGE
    expected = f"expected a positive number of hours from {low:g} to {high:g}, such as 1 or 0.5"
    if not _DECIMAL.fullmatch(raw):
        raise ValueError(expected)
    hours = float(raw)
    if not low <= hours <= high:
        raise ValueError(expected)
    return hours


def parse_max_surge(raw: str) -> int | str:
    """A count of nodes (an int) or a percentage of them (the string with `%`): IntOrString."""
    expected = (
        f"expected a whole number of nodes from 1 to {_SURGE_COUNT_MAX}, such as 5, "
        "or a percentage of the nodes from 1% to 100%, such as 10%"
    )
    match = _SURGE.fullmatch(raw)
    if match is None:
        raise ValueError(expected)
    number = int(match["number"])
    if match["percent"]:
        if not 1 <= number <= 100:
            raise ValueError(expected)
        return f"{number}%"
    if not 1 <= number <= _SURGE_COUNT_MAX:
        raise ValueError(expected)
    return number


def bounded_duration(bounds: tuple[float, float], example: str) -> Callable[[str], float]:
    low, high = bounds

    def parse(raw: str) -> float:
        expected = f"expected a duration from {low:g}s to {high:g}s, {example}"
        try:
            seconds = parse_duration(raw)
        except DurationError:
            raise ValueError(expected) from None
        if not (math.isfinite(seconds) and low <= seconds <= high):
            raise ValueError(expected)
        return seconds

    return parse


def parse_ready_timeout(raw: str) -> float:
    try:
        seconds = parse_duration(raw)
    except DurationError as err:
        raise ValueError(str(err)) from None
    low, high = READY_TIMEOUT_RANGE
    if not (math.isfinite(seconds) and low <= seconds <= high):
        raise ValueError("expected a duration from 1s to 24h, such as 5m or 300s")
    return seconds


def whole_number(bounds: tuple[int, int], what: str, example: int) -> Callable[[str], int]:
    """A parser of a count from ``bounds``, in ASCII digits only (int() would take "١٢")."""
    low, high = bounds

    def parse(raw: str) -> int:
        if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
            raise ValueError(
                f"expected a whole number of {what} from {low} to {high}, such as {example}"
            )
        return int(raw)

    return parse


def parse_port(raw: str) -> int:
    if not raw.isascii() or not raw.isdigit() or not 0 <= int(raw) <= 65535:
        raise ValueError("expected a TCP port from 1 to 65535, or 0 to turn the endpoints off")
    return int(raw)


def parse_listen_address(raw: str) -> str:
    try:
        ipaddress.ip_address(raw)
    except ValueError:
        raise ValueError(
            "expected an IP address to listen on, such as 127.0.0.1 or ::, or empty for every "
            "interface"
        ) from None
    return raw


def dns_label(raw: str) -> str:
    if len(raw) > 63 or not _DNS1123_LABEL.fullmatch(raw):
        raise ValueError(
            "expected a DNS-1123 label: at most 63 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return raw


def is_dns_subdomain(name: str) -> bool:
    return len(name) <= 253 and bool(_DNS1123_SUBDOMAIN.fullmatch(name))


def dns_subdomain(raw: str) -> str:
    if not is_dns_subdomain(raw):
        raise ValueError(
            "expected a DNS-1123 name: lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit, at most 253 characters"
        )
    return raw


def secret_names(raw: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in raw.split(";") if name.strip())
    bad = [name for name in names if not is_dns_subdomain(name)]
    if bad:
        raise ValueError(
            f"secret names {show_all(bad)} are not DNS-1123 names; expected `secret1;secret2`"
        )
    twice = sorted(name for name, count in Counter(names).items() if count > 1)
    if twice:
        raise ValueError(
            f"secret names {show_all(twice)} are given twice; expected `secret1;secret2`"
        )
    return names


def namespace_list(raw: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(name.strip() for name in raw.split(",") if name.strip()))
    bad = [name for name in names if len(name) > 63 or not _DNS1123_LABEL.fullmatch(name)]
    if bad:
        raise ValueError(
            f"invalid namespaces {show_all(bad)}: expected namespace names separated by ',', "
            "such as team-a,team-b (empty: every namespace)"
        )
    return names


def choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.lower() not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return raw.lower()

    return parse


def list_entries(
    raw: str, separators: str, read: Callable[[str], str | None]
) -> tuple[list[str], list[str]]:
    """The entries of a list setting, each as ``read`` gives it (None: invalid), once each in
    order; and the invalid ones, as written."""
    good: list[str] = []
    bad: list[str] = []
    for entry in re.split(separators, raw):
        if not entry:
            continue
        value = read(entry)
        if value is None:
            bad.append(entry)
        elif value not in good:
            good.append(value)
    return good, bad


# HEALTHZ_STUCK_AFTER: /healthz fails after this long without a word from the API.
HEALTHZ_STUCK_AFTER_RANGE = (1.0, 3600.0)
parse_stuck_after = bounded_duration(HEALTHZ_STUCK_AFTER_RANGE, "such as 3m or 90s")


def as_written(raw: str) -> str:
    """A value taken as it is written (a path, a name checked elsewhere)."""
    return raw
