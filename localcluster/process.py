"""Start and stop one local process, and small polling helpers.

Every process is stopped through its own pid (SIGTERM, then SIGKILL after a deadline), never by
name: other clusters (another test run, a developer's `make cluster-up`) may be running the same
binaries on this machine.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1
try:
    # Loaded here, in the parent: loading a library between fork and exec is not safe.
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:  # not glibc Linux: children simply do not die with us
    _LIBC = None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Linux only: the child gets SIGTERM when the process that started it exits, so a test run
    # that is killed hard (SIGKILL, OOM) does not leave etcd & co. running. Best effort.
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ProcessExited(RuntimeError):
    """A process we were waiting for has exited; waiting longer is pointless."""


def wait_for(
    condition: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.2,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Poll ``condition`` until it returns a truthy value or ``timeout`` seconds pass.

    Exceptions raised by ``condition`` count as "not yet" (the thing we wait for is usually a
    server that is still starting). On timeout a TimeoutError names ``what`` and the last error.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = condition()
            if result:
                return result
        except ProcessExited:
            raise
        except Exception as exc:  # noqa: BLE001 - see docstring
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            extra = f"\n{on_timeout()}" if on_timeout else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}{extra}")
        time.sleep(interval)


def free_ports(count: int, address: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free TCP ports on ``address``."""
    # Hold all sockets open until every port is chosen, so the kernel hands out distinct ones.
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((address, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) counts as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True


def _status_field(pid: int, field: str) -> int | None:
    """The first number of ``field`` in /proc/``pid``/status (None when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mib(pid: int) -> float | None:
    """Resident set size of ``pid`` in MiB, from /proc (None when it is gone)."""
    kib = _status_field(pid, "VmRSS")
    return None if kib is None else kib / 1024


def thread_count(pid: int) -> int | None:
    """How many threads ``pid`` has, from /proc (None when it is gone)."""
    return _status_field(pid, "Threads")


def terminate_pid(
    pid: int, timeout: float = 15.0, reap: Callable[[], object] | None = None
) -> None:
    """SIGTERM ``pid``, wait up to ``timeout`` seconds, then SIGKILL and wait again."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if reap is not None:
                reap()  # Popen.poll() reaps our own children so they do not linger as zombies
            if not pid_alive(pid):
                return
            time.sleep(0.05)
    if reap is not None:
        reap()


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return f"--- last {lines} lines of {path} ---\n" + "\n".join(text[-lines:])


class Process:
    """One control-plane process: argv, its log file, and its Popen handle while running."""

    def __init__(
        self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None
    ):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.popen: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None
        self.ready_seconds: float | None = None  # spawn -> ready, filled in by the cluster

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Append: after a restart the log keeps the earlier run for debugging.
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== starting: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                # Own session: a Ctrl-C in the developer's terminal reaches only the supervisor,
                # which then stops the processes in order.
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads are started before
            )
        self.started_at = time.monotonic()

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def check_running(self) -> None:
        """Raise with the log tail if the process has exited (used while waiting for it)."""
        if self.popen is not None and self.popen.poll() is not None:
            raise ProcessExited(
                f"{self.name} exited with code {self.popen.returncode}\n{tail(self.log_path)}"
            )

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            terminate_pid(self.popen.pid, timeout, reap=self.popen.poll)
        # Reap it: no zombie, and no "still running" ResourceWarning from Popen.__del__.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        self.popen = None
