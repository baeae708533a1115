"""A TCP proxy in front of a test server that can fail the ways a network does.

``silence()`` makes the connections open so far go quiet: the proxy keeps their sockets
open and drops every byte, both ways, as a network partition that sends no FIN or RST
does. ``cut_when_sent(b"COMMIT\\x00")`` (psycopg sends each statement's text with a NUL
after it) lets the next ``COMMIT`` a client sends reach the
server, then closes that client's connection before the server's answer reaches it: a
commit the client cannot know the outcome of. With ``deliver=False`` the statement never
reaches the server.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo


class _Link:
    def __init__(self) -> None:
        self.silent = False
        self.client_closed = asyncio.Event()


class FaultProxy:
    """Listens on 127.0.0.1 in a thread of its own; forwards to the server's Unix socket."""

    def __init__(self, server_url: str):
        params = conninfo_to_dict(server_url)
        self._upstream = str(Path(params["host"]) / f".s.PGSQL.{params.get('port', 5432)}")
        self._params = params
        self._links: list[_Link] = []
        self._cut: tuple[bytes, bool] | None = None
        self.cuts = 0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._started.wait(10)

    def url(self, **params: str) -> str:
        """The server URL, through the proxy."""
        return make_conninfo(make_conninfo(**self._params), host="127.0.0.1", port=str(self.port), **params)

    def silence(self) -> int:
        """Make every connection open so far go silent; return how many."""
        def silence() -> int:
            for link in self._links:
                link.silent = True
            return len(self._links)
        return self._call(silence)

    def silent_closed_by_client(self) -> int:
        """How many silent connections the client has closed."""
        return self._call(lambda: sum(link.silent and link.client_closed.is_set() for link in self._links))

    def cut_when_sent(self, statement: bytes, *, deliver: bool = True) -> None:
        """Cut the connection that next sends ``statement``, after the server received it
        (``deliver``) or before."""
        def arm() -> None:
            self._cut = (statement, deliver)
        self._call(arm)

    def close(self) -> None:
        """Close every connection and stop."""
        asyncio.run_coroutine_threadsafe(self._shut(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _shut(self) -> None:
        self._server.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _call(self, function):
        return asyncio.run_coroutine_threadsafe(self._in_loop(function), self._loop).result(10)

    @staticmethod
    async def _in_loop(function):
        return function()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._started.set()
        self._loop.run_forever()

    async def _serve(self, client_reader, client_writer) -> None:
        link = _Link()
        self._links.append(link)
        server_reader, server_writer = await asyncio.open_unix_connection(self._upstream)
        cut = asyncio.Event()

        async def to_server() -> None:
            while data := await client_reader.read(65536):
                if link.silent:
                    continue
                if self._cut is not None and self._cut[0] in data:
                    deliver, self._cut = self._cut[1], None
                    cut.set()  # no answer reaches the client from now on
                    if deliver:
                        server_writer.write(data)
                        await server_writer.drain()
                        await asyncio.sleep(0.5)  # the server commits meanwhile
                    self.cuts += 1
                    client_writer.transport.abort()
                    return
                server_writer.write(data)
                await server_writer.drain()
            link.client_closed.set()

        async def to_client() -> None:
            while data := await server_reader.read(65536):
                if link.silent or cut.is_set():
                    continue
                client_writer.write(data)
                await client_writer.drain()

        try:
            await asyncio.gather(to_server(), to_client(), return_exceptions=True)
        finally:
            link.client_closed.set()
            server_writer.close()
            client_writer.close()
