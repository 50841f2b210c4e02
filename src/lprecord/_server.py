"""`FakeServer`: a VK long poll server that replays a recorded session.

It serves the VK API under ``/method/<name>`` and long polls under the
path its messages.getLongPollServer replies name, over HTTP or HTTPS
(with a throwaway `trustme` certificate authority). Replies are decided
by `ReplayEngine`; this module only moves them over trio.
"""

import os
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import trio
import trustme

from ._fixture import Fixture, read_fixture
from ._httpserver import BoundAddress, HttpReply, HttpRequest, serve_http
from ._timeline import DEFAULT_KEY_TTL, Hold, ReplayEngine, Timeline

_NOT_FOUND = b'{"error":"not found: the fake server serves /method/<name> and the long poll path"}'


class FakeServer:
    """A fake long poll server for one recorded session.

    Start it inside a nursery with ``await nursery.start(server.serve)``,
    or use `open_fake_server` (trio) or `run_fake_server_in_thread` (sync
    and asyncio code). Binds to 127.0.0.1 unless given another host.
    """

    def __init__(
        self,
        fixture: Fixture | str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
        speed: float = 1.0,
        key_ttl: float = DEFAULT_KEY_TTL,
        seed: int = 0,
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed={speed} must be positive; 1.0 replays in recorded time")
        self.fixture = fixture if isinstance(fixture, Fixture) else read_fixture(fixture)
        self.timeline = Timeline.from_fixture(self.fixture)
        self.host = host
        self.port = port
        self.ca: trustme.CA | None = trustme.CA() if tls else None
        self._speed = speed
        self._key_ttl = key_ttl
        self._seed = seed
        self._engine: ReplayEngine | None = None

    @property
    def tls(self) -> bool:
        """Whether the server speaks HTTPS."""
        return self.ca is not None

    @property
    def api_url(self) -> str:
        """The API base URL to give a client, like ``https://127.0.0.1:8443/method``."""
        scheme = "https" if self.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/method"

    @property
    def engine(self) -> ReplayEngine:
        """The replay engine deciding the replies (available once serving)."""
        if self._engine is None:
            raise RuntimeError("the fake server is not serving yet; start it with serve()")
        return self._engine

    def client_ssl_context(self) -> ssl.SSLContext:
        """Return a client context that trusts this server's certificate authority."""
        if self.ca is None:
            raise RuntimeError("the fake server runs plain HTTP; pass tls=True for HTTPS")
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    def write_ca(self, path: str | os.PathLike[str]) -> Path:
        """Write the certificate authority's PEM to `path` for clients in any language."""
        if self.ca is None:
            raise RuntimeError("the fake server runs plain HTTP; pass tls=True for HTTPS")
        target = Path(path)
        self.ca.cert_pem.write_to_path(str(target))
        return target

    async def serve(
        self, *, task_status: trio.TaskStatus[BoundAddress] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen and serve until cancelled; report the bound address to `nursery.start`."""
        context = self._server_ssl_context()

        async with trio.open_nursery() as nursery:
            bound: BoundAddress = await nursery.start(
                lambda task_status: serve_http(
                    self._handle,
                    host=self.host,
                    port=self.port,
                    ssl_context=context,
                    task_status=task_status,
                )
            )
            self.port = bound.port
            # VK names its long poll server as host:port/path with no
            # scheme, which clients read as HTTPS; a plain fake must say so.
            base = f"{self.host}:{bound.port}" if self.tls else f"http://{self.host}:{bound.port}"
            self._engine = ReplayEngine(
                self.timeline,
                server_base=base,
                speed=self._speed,
                key_ttl=self._key_ttl,
                seed=self._seed,
            )
            task_status.started(bound)

    def _server_ssl_context(self) -> ssl.SSLContext | None:
        if self.ca is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(self.host, "localhost", "127.0.0.1").configure_cert(context)
        return context

    async def _handle(self, request: HttpRequest) -> HttpReply:
        engine = self.engine
        arrived = trio.current_time()
        if request.path.startswith("/method/"):
            reply = engine.call_api(request.path.removeprefix("/method/"), request.params, arrived)
        elif request.path == engine.server_path and request.params.get("act") == "a_check":
            while True:
                now = trio.current_time()
                decision = engine.poll(request.params, arrived, now)
                if not isinstance(decision, Hold):
                    reply = decision
                    break
                if decision.until <= now:
                    raise RuntimeError(
                        f"replay engine asked to hold until {decision.until}, "
                        f"which is not after now ({now})"
                    )
                await trio.sleep_until(decision.until)
        else:
            return HttpReply(status=404, body=_NOT_FOUND)
        return HttpReply(status=reply.status, body=reply.body, content_type=reply.content_type)


@asynccontextmanager
async def open_fake_server(
    fixture: Fixture | str | os.PathLike[str], **options: Any
) -> AsyncIterator[FakeServer]:
    """Run a `FakeServer` in a trio task for the duration of the block.

    Errors inside the server propagate out of the block.
    """
    server = FakeServer(fixture, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        yield server
        nursery.cancel_scope.cancel()


@contextmanager
def run_fake_server_in_thread(
    fixture: Fixture | str | os.PathLike[str], **options: Any
) -> Iterator[FakeServer]:
    """Run a `FakeServer` in a background thread (real time) for the duration of the block.

    For synchronous and asyncio tests. An error inside the server is
    raised again when the block exits.
    """
    server = FakeServer(fixture, **options)
    started = threading.Event()
    failure: list[BaseException] = []
    token: list[trio.lowlevel.TrioToken] = []
    cancel_scopes: list[trio.CancelScope] = []

    async def main() -> None:
        token.append(trio.lowlevel.current_trio_token())
        with trio.CancelScope() as scope:
            cancel_scopes.append(scope)
            async with trio.open_nursery() as nursery:
                await nursery.start(server.serve)
                started.set()

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as error:  # reported to the test thread below
            failure.append(error)
        finally:
            started.set()

    thread = threading.Thread(target=run, name="lprecord-fake-server", daemon=True)
    thread.start()
    started.wait()
    if failure:
        thread.join()
        raise failure[0]
    try:
        yield server
    finally:
        if thread.is_alive() and token:
            trio.from_thread.run_sync(cancel_scopes[0].cancel, trio_token=token[0])
        thread.join()
        if failure:
            raise failure[0]
