"""Where `imagepuller run` spends its start-up and its memory (prints profiles; asserts nothing).

    KUBECONFIG=... NAMESPACE=... IMAGES=... \
        .venv/bin/python benchmarks/profile_run.py [--refreshes 100]

Runs the puller in this process, against the cluster KUBECONFIG names, with
- a CPU profile (cProfile) of the main thread: the imports and the set-up before the
  controller starts (the controller's own work is in its threads: their CPU is printed);
- tracemalloc from the first import: the biggest holders by package and by line when
  `daemonset_ready` is logged, and what grew after ``--refreshes`` refreshes.
`python -X importtime -m imagepuller run` gives the import tree itself.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import signal
import sys
import time
import tracemalloc
from pathlib import Path

STARTED = time.monotonic()
FRAMES = 30  # deep enough to see past the import machinery to the module importing


def cpu_by_thread() -> dict[str, float]:
    ticks = os.sysconf("SC_CLK_TCK")
    threads = {}
    for task in Path("/proc/self/task").iterdir():
        name = (task / "comm").read_text().strip()
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        threads[f"{task.name} {name}"] = (int(fields[11]) + int(fields[12])) / ticks
    return threads


def holder(traceback: tracemalloc.Traceback) -> str:
    """The innermost frame not in the import machinery: for a module's code, its importer."""
    for frame in reversed(traceback):
        if not frame.filename.startswith("<frozen"):
            return frame.filename
    return traceback[-1].filename


def by_package(snapshot: tracemalloc.Snapshot, top: int) -> list[tuple[str, float]]:
    """Traced memory by the package that allocated it (or, for code, imported it)."""
    sizes: dict[str, int] = {}
    for stat in snapshot.statistics("traceback"):
        path = holder(stat.traceback)
        marker = "site-packages/"
        if marker in path:
            package = path.split(marker, 1)[1].split("/", 1)[0]
        elif "/imagepuller/" in path:
            package = "imagepuller"
        elif path.startswith("<"):
            package = path
        else:
            module = Path(path)
            package = "stdlib " + (module.parent.name if module.stem == "__init__" else module.stem)
        sizes[package] = sizes.get(package, 0) + stat.size
    ranked = sorted(sizes.items(), key=lambda item: -item[1])[:top]
    return [(name, size / 1024 / 1024) for name, size in ranked]


class Watcher(io.TextIOBase):
    """Standard error, passed through; acts on the controller's log events."""

    def __init__(self, stream, refreshes: int):
        self.stream = stream
        self.refreshes = refreshes
        self.completed = 0
        self.snapshots: dict[str, tracemalloc.Snapshot] = {}
        self.marks: dict[str, tuple[float, float]] = {}

    def write(self, text: str) -> int:
        for event in ("daemonset_created", "daemonset_ready", "refresh_complete"):
            if f'"event": "{event}"' in text or f"'event': '{event}'" in text:
                self.seen(event)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def seen(self, event: str) -> None:
        if event not in self.marks:
            self.marks[event] = (time.monotonic() - STARTED, sum(cpu_by_thread().values()))
        if event == "daemonset_ready" and "ready" not in self.snapshots:
            self.snapshots["ready"] = tracemalloc.take_snapshot()
        if event == "refresh_complete":
            self.completed += 1
            if self.completed == self.refreshes:
                self.snapshots["refreshed"] = tracemalloc.take_snapshot()
                os.kill(os.getpid(), signal.SIGINT)
        if event == "daemonset_ready" and self.refreshes == 0:
            os.kill(os.getpid(), signal.SIGINT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--refreshes", type=int, default=100)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    tracemalloc.start(FRAMES)
    profile = cProfile.Profile()
    profile.enable()
    from imagepuller import runcmd  # noqa: F401 - the imports `run` pays for
    from imagepuller.cli import main as cli_main

    imported = time.monotonic() - STARTED
    profile.disable()
    watcher = Watcher(sys.stderr, args.refreshes)
    sys.stderr = watcher  # type: ignore[assignment]
    if args.refreshes:
        os.environ.setdefault("CACHING_INTERVAL_HOURS", "0.001")
    os.environ.setdefault("LOG_FORMAT", "json")
    os.environ.setdefault("METRICS_PORT", "0")
    cli_main(["run"])
    sys.stderr = watcher.stream
    out = sys.stdout
    print("\n=== start-up ===", file=out)
    print(f"imports done at {imported:.3f}s", file=out)
    for event, (at, cpu) in watcher.marks.items():
        print(f"{event}: first at {at:.3f}s, process CPU {cpu:.2f}s by then", file=out)
    print(
        "CPU by thread at the end: "
        + ", ".join(f"{k} {v:.2f}s" for k, v in cpu_by_thread().items()),
        file=out,
    )
    print("\n=== CPU profile of the imports (main thread), top by cumulative time ===", file=out)
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("cumulative").print_stats(args.top)
    ready = watcher.snapshots.get("ready")
    if ready is not None:
        total = sum(stat.size for stat in ready.statistics("filename")) / 1024 / 1024
        print(f"\n=== tracemalloc at ready: {total:.1f} MiB traced ===", file=out)
        for name, mib in by_package(ready, args.top):
            print(f"{mib:7.2f} MiB  {name}", file=out)
        print("top lines (innermost frame outside the import machinery):", file=out)
        lines: dict[str, int] = {}
        for stat in ready.statistics("traceback"):
            frame = next(
                (f for f in reversed(stat.traceback) if not f.filename.startswith("<frozen")),
                stat.traceback[-1],
            )
            key = f"{frame.filename}:{frame.lineno}"
            lines[key] = lines.get(key, 0) + stat.size
        for key, size in sorted(lines.items(), key=lambda item: -item[1])[: args.top]:
            print(f"{size / 1024:9.1f} KiB  {key}", file=out)
    refreshed = watcher.snapshots.get("refreshed")
    if ready is not None and refreshed is not None:
        print(f"\n=== grown after {args.refreshes} refreshes (tracemalloc) ===", file=out)
        for stat in refreshed.compare_to(ready, "lineno")[: args.top]:
            print(f"{stat.size_diff / 1024:+9.1f} KiB  {stat.traceback[0]}", file=out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
