"""Run `imagepuller run` as a real process and follow its JSON log events.

Cluster tests and the benchmark use it: the controller runs exactly as in a pod (signals,
exit code, one JSON event per line on stderr), against the local control plane.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any


class ControllerProcess:
    def __init__(
        self, env: dict[str, str], *, argv: list[str] | None = None, cwd: str | None = None
    ):
        """``cwd``: where to start it; with ``python -m imagepuller`` (the default argv), the
        ``imagepuller`` package found there is the one that runs (a benchmark runs an older
        tree so)."""
        full_env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/root"),
            "LOG_FORMAT": "json",
            # No endpoints unless a test asks (with a free port): several controllers run at
            # once in some tests, and 8080 may be taken on the machine.
            "METRICS_PORT": "0",
            **env,
        }
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            argv or [sys.executable, "-m", "imagepuller", "run"],
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
        )
        self.events: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._seen = 0  # events already handed out by wait_for

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            try:
                event = json.loads(line)
            except ValueError:
                continue  # not ours (a library printing plain text): kept in self.lines
            event["_received"] = time.monotonic()
            self._queue.put(event)
        self._queue.put(None)

    def wait_for(
        self,
        name: str,
        timeout: float,
        where: Callable[[dict[str, Any]], bool] = lambda e: True,
    ) -> dict[str, Any]:
        """The next event called ``name`` matching ``where``; fail with the log on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no {name!r} event within {timeout}s; log so far:\n"
                    + "".join(self.lines[-40:])
                )
            try:
                event = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if event is None:
                self._queue.put(None)  # keep the end marker for later calls
                raise AssertionError(
                    f"controller exited ({self.process.poll()}) before {name!r}; log:\n"
                    + "".join(self.lines[-40:])
                )
            self.events.append(event)
            if event.get("event") == name and where(event):
                return event

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``signum`` and wait for the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            self._close()
            raise AssertionError(
                f"controller still running {timeout}s after signal {signum}; log:\n"
                + "".join(self.lines[-40:])
            ) from None
        finally:
            self._close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._close()

    def _close(self) -> None:
        self._reader.join(timeout=5)
        if self.process.stderr and not self._reader.is_alive():
            self.process.stderr.close()


def operator_process(
    kubeconfig: object, watched: str, lease_namespace: str, **env: str
) -> ControllerProcess:
    """`imagepuller operator` with ``kubeconfig``, serving the resources of ``watched``
    (WATCH_NAMESPACES) and keeping its Lease in ``lease_namespace`` (its pod's namespace)."""
    return ControllerProcess(
        {
            "KUBECONFIG": str(kubeconfig),
            "WATCH_NAMESPACES": watched,
            "POD_NAMESPACE": lease_namespace,
            **env,
        },
        argv=[sys.executable, "-m", "imagepuller", "operator"],
    )
