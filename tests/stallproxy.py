"""A TCP proxy on 127.0.0.1 in front of the API server that can stop passing bytes: a call
through it then blocks as on a connection that never answers (a wedged controller)."""

from __future__ import annotations

import contextlib
import select
import socket
import threading


class StallProxy:
    def __init__(self, target: tuple[str, int]):
        self.target = target
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> StallProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stall(self) -> None:
        """From now on no byte passes, either way (connections stay open)."""
        self._flowing.clear()

    def flow(self) -> None:
        self._flowing.set()

    def stop(self) -> None:
        self._closed.set()
        self._flowing.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while not self._closed.is_set():
                self._flowing.wait()
                readable, _, _ = select.select(list(peers), [], [], 0.2)
                for sock in readable:
                    if not self._flowing.is_set():
                        break  # stalled: hold the bytes where they are
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except OSError:
            return
        finally:
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.close()
