"""A TCP proxy on 127.0.0.1 in front of a real service (PostgreSQL, Redis) that the harness can cut.

The service itself stays up: :meth:`TcpProxy.cut` resets every proxied
connection and refuses new ones (the listening socket is closed, so connecting
fails at once, as when a database host is down); :meth:`TcpProxy.restore`
listens again on the same port. :meth:`TcpProxy.stall` is the other way a network
fails: connections stay open but no byte moves (and new ones are accepted but
not forwarded) until :meth:`TcpProxy.resume`, as in a partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target_host``:``target_port`` while up."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.connections = 0
        self._server: asyncio.base_events.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    @property
    def up(self) -> bool:
        """Whether the proxy is forwarding."""
        return self._server is not None

    async def start(self) -> "TcpProxy":
        """Listen (on a free port the first time, on the same port afterwards)."""
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._serve, sock=sock)
        return self

    async def restore(self) -> None:
        """Forward again after :meth:`cut`."""
        if self._server is None:
            await self.start()

    async def cut(self) -> None:
        """Stop listening and reset every connection in flight."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for pair in list(self._pairs):
            for writer in pair:
                _abort(writer)
        self._pairs.clear()
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    async def stall(self) -> None:
        """Keep every connection open but move no byte (a black hole)."""
        self._flowing.clear()

    async def resume(self) -> None:
        """Move bytes again after :meth:`stall`."""
        self._flowing.set()

    async def stop(self) -> None:
        """Cut for good."""
        await self.cut()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._flowing.wait()
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*self.target), 5)
        except (OSError, asyncio.TimeoutError):
            _abort(writer)
            return
        self.connections += 1
        pair = (writer, up_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(_pipe(reader, up_writer, self._flowing), _pipe(up_reader, writer, self._flowing))
        finally:
            self._pairs.discard(pair)
            for w in pair:
                w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event) -> None:
    try:
        while data := await reader.read(65536):
            await flowing.wait()
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


def _abort(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
