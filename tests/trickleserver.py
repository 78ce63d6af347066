"""A raw TCP server on 127.0.0.1 for tests: every connection gets the same bytes, sent at once
or one byte every ``interval`` seconds (a server trickling its status line and headers), with
no HTTP library on the server side to tidy up what a broken or hostile server would send."""

from __future__ import annotations

import contextlib
import socket
import threading


class TrickleServer:
    def __init__(self, answer: bytes, interval: float = 0.0):
        self.answer = answer
        self.interval = interval
        self.connections = 0
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = int(self._listener.getsockname()[1])
        self._threads: list[threading.Thread] = []

    def url(self, path: str = "/list.txt") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> TrickleServer:
        self._spawn(self._accept)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> TrickleServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        # Closing a socket does not wake a thread blocked in accept(): look at the stop flag
        # every 0.1 s instead.
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connection.settimeout(None)
            self.connections += 1
            self._spawn(self._answer, connection)

    def _answer(self, connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError):
            connection.recv(65536)  # the request, whatever it is
            if self.interval <= 0:
                connection.sendall(self.answer)
                return
            for byte in self.answer:
                if self._stop.wait(self.interval):
                    return
                connection.sendall(bytes([byte]))
