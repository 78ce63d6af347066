"""``imagepuller status``'s text: a puller's cache (a
:class:`~imagepuller.cachestatus.PullerStatus`) as a summary line and a table of nodes
grouped alike, failing first.

Pure but for the clock, read only when no time is passed in (``now``), so a test can fix it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from imagepuller.apitime import parse_time
from imagepuller.cachestatus import (
    DETAIL_WIDTH,
    STATES,
    NodeStatus,
    PullerStatus,
    natural_key,
    shorten,
)

# The NODES column: as many names as fit, then how many more.
NODES_WIDTH = 32


def render_table(status: PullerStatus, *, max_rows: int = 50, now: float | None = None) -> str:
    """A summary line, then one row per group of nodes alike (same state, images held and
    detail), failing first; at most ``max_rows`` rows, saying how many more were left off."""
    lines = [summary_line(status, now=now)]
    rows = _rows(status.nodes)
    shown = rows[: max(1, max_rows)]
    if shown:
        table = [("NODES", "IMAGES", "STATE", "DETAIL")]
        table += [
            (_node_list(names), f"{holds}/{of}", state, detail)
            for state, holds, of, detail, names in shown
        ]
        widths = [max(len(row[column]) for row in table) for column in range(3)]
        for row in table:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            lines.append("  ".join([*cells, row[3]]).rstrip())
    else:
        lines.append("(no node to show)")
    left_off = rows[len(shown) :]
    if left_off:
        nodes = sum(len(row[4]) for row in left_off)
        lines.append(
            f"... {len(left_off)} more rows ({nodes} nodes) left off; -o json lists every node"
        )
    lines.extend(f"note: {note}" for note in status.notes)
    return "\n".join(lines) + "\n"


def render_many(
    statuses: Sequence[PullerStatus], *, max_rows: int = 50, now: float | None = None
) -> str:
    """Every puller's table, one block each, and a last line counting the ready ones."""
    if not statuses:
        return "no puller found\n"
    blocks = [render_table(status, max_rows=max_rows, now=now) for status in statuses]
    ready = sum(1 for status in statuses if status.ready)
    total = len(statuses)
    footer = f"{ready} of {_plural(total, 'puller')} ready\n"
    return "\n".join([*blocks, footer])


def summary_line(status: PullerStatus, *, now: float | None = None) -> str:
    """'ns/name: 3 of 4 selected nodes hold all 2 images; 1 failing; ...; last refresh ...'."""
    counts = status.counts
    nodes = "node holds" if status.desired == 1 else "nodes hold"
    images = _plural(len(status.images), "image")
    parts = [
        f"{status.namespace}/{status.name}: {status.holding} of {status.desired} selected "
        f"{nodes} all {images}"
    ]
    if counts["failed"]:
        parts.append(f"{counts['failed']} failing")
    if counts["pulling"]:
        parts.append(f"{counts['pulling']} pulling")
    if counts["not_scheduled"]:
        parts.append(f"{counts['not_scheduled']} not scheduled")
    parts.append(_refresh(status.last_refresh, now))
    return "; ".join(parts)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _refresh(last_refresh: str | None, now: float | None) -> str:
    if not last_refresh:
        return "no refresh recorded"
    moment = parse_time(last_refresh)
    if moment is None:
        return f"last refresh {last_refresh}"
    return f"last refresh {last_refresh} ({age(moment, time.time() if now is None else now)})"


def age(moment: float, now: float) -> str:
    """How long ago, in its largest unit: '45s ago', '12m ago', '3h ago', '2d ago'."""
    seconds = int(now - moment)
    if seconds < 0:
        return "in the future: check the clocks"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


_Row = tuple[str, int, int, str, list[str]]  # state, holds, of, detail, node names


def _rows(nodes: Iterable[NodeStatus]) -> list[_Row]:
    """Nodes alike grouped into one row; failing rows first, then pulling, not scheduled and
    held, the largest group of each first."""
    groups: dict[tuple[str, int, int, str], list[str]] = {}
    for node in nodes:
        key = (node.state, node.holds, node.of, shorten(node.detail, DETAIL_WIDTH))
        groups.setdefault(key, []).append(node.node)
    rows = [(*key, sorted(names, key=natural_key)) for key, names in groups.items()]
    return sorted(rows, key=lambda r: (STATES.index(r[0]), -len(r[4]), natural_key(r[4][0])))


def _node_list(names: Sequence[str]) -> str:
    """'node-0, node-1, ... (+997)': as many names as fit NODES_WIDTH, at least one."""
    shown = [names[0]]
    for name in names[1:]:
        if len(", ".join([*shown, name])) > NODES_WIDTH:
            break
        shown.append(name)
    rest = len(names) - len(shown)
    return ", ".join(shown) + (f", ... (+{rest})" if rest else "")
