"""A TCP forwarder: ``python -m localcluster.forward LISTEN_HOST:PORT TARGET_HOST:PORT``.

Pods on a real node reach the API server as every pod does, at the ``kubernetes`` Service's
address (``KUBERNETES_SERVICE_HOST``:443). This cluster has no kube-proxy and its API server
listens on 127.0.0.1 only, so that address is put on the machine's loopback device and this process
passes its connections through, bytes unchanged (TLS ends at the API server, whose certificate
names the Service address).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def serve(listen: tuple[str, int], target: tuple[str, int]) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(handle, *listen)
    print(f"forwarding {listen[0]}:{listen[1]} to {target[0]}:{target[1]}", flush=True)
    async with server:
        await server.serve_forever()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m localcluster.forward LISTEN_HOST:PORT TARGET_HOST:PORT")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(_address(sys.argv[1]), _address(sys.argv[2])))
