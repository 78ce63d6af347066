"""Memory of the HTTP endpoints (METRICS_PORT) while many clients hold idle connections:
the RSS of a process serving them, before and with ``--connections`` idle connections open
(prints figures; asserts nothing). Only 127.0.0.1; no cluster needed.

    .venv/bin/python benchmarks/bench_endpoints.py [--connections 3000] [--source DIR]

``--source`` serves the endpoints of another checkout, to compare with an earlier version:

    mkdir /tmp/before && git archive 3fb3a04 imagepuller | tar -x -C /tmp/before
    .venv/bin/python benchmarks/bench_endpoints.py --source /tmp/before

The server runs in a child process (its RSS is read from /proc); the clients connect one after
the other and then send nothing. Printed: RSS and threads of the server before, with the
connections held (once its thread count has settled) and its peak RSS, how many of them the
server closed,
and how long until /healthz answered again. Bounded: at most ``MAX_CONNECTIONS`` clients and
``--seconds`` in all; the child is killed at the end whatever happens.
"""

from __future__ import annotations

import argparse
import resource
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.machine import describe  # noqa: E402
from localcluster.process import rss_mib  # noqa: E402

MAX_CONNECTIONS = 10_000
HOST = "127.0.0.1"

# The server: the endpoints of the checkout on PYTHONPATH, with a /metrics like the
# controller's. It prints its port, then serves until its standard input closes.
SERVER = """
import sys
from imagepuller.endpoints import Endpoints
from imagepuller.metrics import PrometheusMetrics

class Probes:
    def alive(self): return True, "ok"
    def ready(self): return True, "ok"

metrics = PrometheusMetrics()
metrics.daemonset_observed("ns", "kubernetes-image-puller", desired=5, holding=5, images=3)
endpoints = Endpoints("127.0.0.1", 0, metrics, Probes()).start()
print(endpoints.port, flush=True)
sys.stdin.read()
"""


def status_field(pid: int, field: str) -> int:
    """A number from /proc/PID/status: Threads, or VmHWM (the peak RSS, in KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def threads(pid: int) -> int:
    return status_field(pid, "Threads")


def peak_rss_mib(pid: int) -> float:
    return status_field(pid, "VmHWM") / 1024


def settle(pid: int, deadline: float) -> None:
    """Until the server's thread count has not changed for 2 s (it is accepting no more)."""
    last, since = threads(pid), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < 2:
        time.sleep(0.2)
        now = threads(pid)
        if now != last:
            last, since = now, time.monotonic()


def closed_by_server(client: socket.socket) -> bool:
    client.setblocking(False)
    try:
        return client.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def healthz(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def raise_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, needed), hard))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--source", type=Path, default=ROOT, help="checkout to serve from")
    parser.add_argument("--seconds", type=float, default=120, help="bound on the whole run")
    args = parser.parse_args()
    count = max(1, min(args.connections, MAX_CONNECTIONS))
    deadline = time.monotonic() + args.seconds
    raise_file_limit(count + 256)
    print(describe())
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        # `python -c` imports from its working directory first: the source's, then.
        cwd=args.source.resolve(),
        env={"PYTHONPATH": str(args.source.resolve()), "PATH": "/usr/bin:/bin"},
        preexec_fn=lambda: raise_file_limit(count + 256),
    )
    clients: list[socket.socket] = []
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        healthz(port)  # one answer first: the code that serves is loaded
        before, threads_before = rss_mib(server.pid) or 0.0, threads(server.pid)
        for _ in range(count):
            if time.monotonic() > deadline:
                break
            clients.append(socket.create_connection((HOST, port), timeout=5))
        settle(server.pid, deadline)
        held, threads_held = rss_mib(server.pid) or 0.0, threads(server.pid)
        peak = peak_rss_mib(server.pid)
        closed = sum(1 for client in clients if closed_by_server(client))
        started = time.monotonic()
        while not healthz(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        answered = time.monotonic() - started
        print(f"source: {args.source}")
        print(f"server before: RSS {before:.1f} MiB, {threads_before} threads")
        print(
            f"with {len(clients)} idle connections: RSS {held:.1f} MiB "
            f"(+{held - before:.1f} MiB), peak RSS {peak:.1f} MiB (+{peak - before:.1f} MiB), "
            f"{threads_held} threads; {closed} closed by the server"
        )
        print(f"/healthz answered again after {answered:.1f} s")
    finally:
        for client in clients:
            client.close()
        server.kill()
        server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
