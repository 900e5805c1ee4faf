"""A TCP proxy on 127.0.0.1 that tests use to cut and delay connections.

::

    async with trio.open_nursery() as nursery:
        proxy = LoopbackProxy(("127.0.0.1", server_port))
        await nursery.start(proxy.run)
        ...  # dial proxy.listen_address instead of the server
        proxy.cut_all()        # abort every connection through it
        proxy.delay = 0.01     # hold each chunk 10 ms (order kept)
        proxy.refusing = True  # close new connections at once

It forwards bytes unchanged and in order in each direction; a cut closes both
sides at once, so whatever was in flight inside the proxy is lost — exactly the
"written to the socket, never delivered" case a transport must tolerate.
"""

from __future__ import annotations

import attrs
import trio


@attrs.define
class LoopbackProxy:
    """Forward connections accepted on a free loopback port to ``target``."""

    target: tuple[str, int]
    delay: float = 0.0
    refusing: bool = False
    cuts: int = 0
    accepted: int = 0
    listen_address: tuple[str, int] | None = None
    _scopes: set[trio.CancelScope] = attrs.field(factory=set)

    def cut_all(self) -> None:
        """Abort every connection currently open through the proxy."""
        for scope in list(self._scopes):
            scope.cancel()
        self.cuts += 1

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; reports started once listening."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.listen_address = listeners[0].socket.getsockname()[:2]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started()

    async def _handle(self, client: trio.SocketStream) -> None:
        self.accepted += 1
        if self.refusing:
            await trio.aclose_forcefully(client)
            return
        scope = trio.CancelScope()
        self._scopes.add(scope)
        try:
            with scope:
                try:
                    server = await trio.open_tcp_stream(*self.target)
                except OSError:
                    return
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._pump, client, server, nursery.cancel_scope)
                        nursery.start_soon(self._pump, server, client, nursery.cancel_scope)
                finally:
                    await trio.aclose_forcefully(server)
        finally:
            self._scopes.discard(scope)
            await trio.aclose_forcefully(client)

    async def _pump(
        self, src: trio.SocketStream, dst: trio.SocketStream, both: trio.CancelScope
    ) -> None:
        try:
            while data := await src.receive_some(65536):
                if self.delay:
                    await trio.sleep(self.delay)
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        both.cancel()
