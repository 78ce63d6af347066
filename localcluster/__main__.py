"""Command line: a local cluster that outlives the command which started it.

    python -m localcluster up --nodes 3 --dir .cluster    # start in the background, then return
    python -m localcluster up --nodes 5 --real-nodes 1    # 5 simulated nodes and 1 real one
    python -m localcluster down --dir .cluster            # stop it and remove .cluster

`up` starts a detached supervisor (`python -m localcluster _supervise ...`) that owns the
processes: it starts the cluster, records every pid in <dir>/state.json, then waits for SIGTERM
and stops the processes in order. The components also get SIGTERM from the kernel if the
supervisor dies (PR_SET_PDEATHSIG), so nothing is left behind. `down` stops the supervisor and
then, as a fallback, every recorded pid that still runs the recorded binary; never by name.
A real node (kubelet, containerd) changes the machine; what it changed is recorded before the
change (localcluster/host.py), and `down` puts it back even when the supervisor could not.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .cluster import LocalCluster
from .host import HostChanges
from .process import pid_alive, rss_mib, tail, terminate_pid, wait_for

STATE = "state.json"


def _read_state(directory: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((directory / STATE).read_text())
        return state
    except (OSError, ValueError):
        return None


def _write_state(directory: Path, state: dict[str, Any]) -> None:
    tmp = directory / (STATE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(directory / STATE)  # atomic: `up` polls this file


def _exe_of(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


# ---------------------------------------------------------------------------- supervisor


def supervise(directory: Path, nodes: int, real_nodes: int, timeout: float) -> int:
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if not stop.is_set():
            stop.set()
            # While start() runs, an exception is the only way to interrupt it; start() stops
            # whatever it already started before re-raising.
            raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    state: dict[str, Any] = {
        "status": "starting",
        "supervisor_pid": os.getpid(),
        "nodes": nodes,
        "real_nodes": real_nodes,
    }
    _write_state(directory, state)
    cluster = LocalCluster(directory, nodes=nodes, real_nodes=real_nodes)
    try:
        cluster.start(timeout=timeout)
    except BaseException as exc:  # noqa: BLE001 - report any failure to `up`
        state.update(status="failed", error=str(exc))
        _write_state(directory, state)
        return 1
    state.update(
        status="ready",
        server=cluster.server,
        kubeconfig=str(cluster.kubeconfig),
        registry=cluster.registry.host if cluster.registry else None,
        start_seconds=cluster.start_seconds,
        processes={
            name: {
                "pid": p["pid"],
                "exe": p["argv"][0],
                "ready_seconds": p["ready_seconds"],
                "log": p["log"],
            }
            for name, p in cluster.processes.items()
        },
    )
    _write_state(directory, state)
    try:
        while not stop.wait(1.0):
            pass
    except SystemExit:
        pass
    finally:
        cluster.stop()
        state["status"] = "stopped"
        _write_state(directory, state)
    return 0


# ---------------------------------------------------------------------------- up / down


def up(directory: Path, nodes: int, real_nodes: int, timeout: float) -> int:
    began = time.monotonic()
    old = _read_state(directory)
    if old and pid_alive(old.get("supervisor_pid", -1)) and old.get("status") != "stopped":
        print(
            f"a cluster is already running from {directory} "
            f"(supervisor pid {old['supervisor_pid']}); run `down` first",
            file=sys.stderr,
        )
        return 1
    directory.mkdir(parents=True, exist_ok=True)
    (directory / STATE).unlink(missing_ok=True)
    log = directory / "supervisor.log"
    with open(log, "ab") as out:
        supervisor = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "localcluster",
                "_supervise",
                "--dir",
                str(directory),
                "--nodes",
                str(nodes),
                "--real-nodes",
                str(real_nodes),
                "--timeout",
                str(timeout),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # detached: survives this command and its terminal
            cwd=Path(__file__).resolve().parent.parent,
        )

    def finished() -> dict[str, Any] | None:
        state = _read_state(directory)
        if state and state.get("status") in ("ready", "failed"):
            return state
        if supervisor.poll() is not None:
            return {
                "status": "failed",
                "error": f"supervisor exited with code {supervisor.returncode}\n{tail(log)}",
            }
        return None

    try:
        state = wait_for(finished, timeout + 30, "the cluster to start", interval=0.25)
    except TimeoutError as exc:
        terminate_pid(supervisor.pid, reap=supervisor.poll)
        print(f"{exc}\n{tail(log)}", file=sys.stderr)
        return 1
    if state["status"] != "ready":
        supervisor.wait(timeout=30)
        print(f"cluster failed to start:\n{state.get('error')}", file=sys.stderr)
        return 1

    total = time.monotonic() - began
    real = f" (simulated) and {real_nodes} real nodes" if real_nodes else " nodes"
    print(
        f"cluster with {nodes}{real} up in {total:.1f}s "
        f"(control plane + nodes Ready: {state['start_seconds']:.1f}s)"
    )
    print(f"{'component':<26}{'pid':>8}{'ready after s':>15}{'RSS MiB':>10}")
    total_rss = 0.0
    for name, proc in state["processes"].items():
        rss = rss_mib(proc["pid"]) or 0.0
        total_rss += rss
        ready = proc["ready_seconds"]
        print(f"{name:<26}{proc['pid']:>8}{(f'{ready:.1f}' if ready else '-'):>15}{rss:>10.0f}")
    print(f"{'total':<26}{'':>8}{'':>15}{total_rss:>10.0f}")
    print(f"\nAPI server: {state['server']}   logs: {directory / 'logs'}")
    if state.get("registry"):
        print(f"registry (plain HTTP, pushed to with crane --insecure): {state['registry']}")
    print(f"export KUBECONFIG={Path(state['kubeconfig']).resolve()}")
    print(f"stop with: python -m localcluster down --dir {directory}")
    return 0


def down(directory: Path) -> int:
    state = _read_state(directory)
    if state is None:
        print(f"no cluster state in {directory}; nothing to stop")
        return 0
    sup = state.get("supervisor_pid")
    if sup and pid_alive(sup) and "localcluster" in _cmdline(sup):
        terminate_pid(sup, timeout=30)
    # Fallback, e.g. the supervisor was SIGKILLed: stop each recorded pid that still runs the
    # recorded binary (a recycled pid running something else is left alone).
    for name, proc in (state.get("processes") or {}).items():
        pid = proc.get("pid")
        if pid and pid_alive(pid) and _exe_of(pid) == proc.get("exe"):
            print(f"stopping {name} (pid {pid})")
            terminate_pid(pid)
    changes = HostChanges.load(directory)
    if changes is not None:
        # Normally already done by the supervisor; after a hard kill this is what puts back the
        # mounts, cgroups, bridge, address and sysctls the real nodes changed.
        problems = changes.restore()
        for problem in problems:
            print(f"could not put back: {problem}", file=sys.stderr)
        if problems:
            return 1
    shutil.rmtree(directory, ignore_errors=True)
    print(f"cluster stopped; removed {directory}")
    return 0


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localcluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "_supervise"):
        p = sub.add_parser(
            name, help="start a cluster in the background" if name == "up" else argparse.SUPPRESS
        )
        p.add_argument("--nodes", type=int, default=3, help="number of simulated nodes")
        p.add_argument(
            "--real-nodes",
            type=int,
            default=0,
            help="number of real nodes (kubelet + containerd; needs root; built once)",
        )
        p.add_argument("--dir", type=Path, default=Path(".cluster"), help="state directory")
        p.add_argument("--timeout", type=float, default=300.0, help="start-up deadline, seconds")
    p = sub.add_parser("down", help="stop the cluster and remove its directory")
    p.add_argument("--dir", type=Path, default=Path(".cluster"))
    args = parser.parse_args(argv)
    directory = args.dir.resolve()
    if args.command == "up":
        return up(directory, args.nodes, args.real_nodes, args.timeout)
    if args.command == "_supervise":
        return supervise(directory, args.nodes, args.real_nodes, args.timeout)
    return down(directory)


if __name__ == "__main__":
    sys.exit(main())
