"""`FakeServer`: a VK long poll server that replays a recorded session.

It serves the VK API under ``/method/<name>`` and long polls under the
path its messages.getLongPollServer replies name, over HTTP or HTTPS
(with a throwaway `trustme` certificate authority). Replies are decided
by `ReplayEngine`, or by `StrictReplay` in strict mode. This module only
moves them over trio, wakes held polls when an update is pushed, and
performs the injected faults that need I/O: stalls, resets, cut and
dribbled bodies.
"""

import dataclasses
import logging
import os
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import trio
import trustme

from lpcore import Update, encode_update, escape_text

from ._faults import (
    Endpoint,
    Fault,
    FaultInjector,
    FaultKind,
    FaultSchedule,
    FiredFault,
    ScheduledFault,
    describe_fault,
)
from ._fixture import Fixture, read_fixture
from ._httpserver import (
    BoundAddress,
    Cut,
    HttpReply,
    HttpRequest,
    MemoryConnector,
    Transport,
    serve_http,
)
from ._strict import PastEnd, ReceivedRequest, StrictMismatch, StrictReplay
from ._timeline import DEFAULT_KEY_TTL, EVENT_WINDOW, Hold, ReplayEngine, Reply, Timeline
from ._wire import MESSAGE_LAYOUT_CODES, unescaped_characters

logger = logging.getLogger(__name__)

_NOT_FOUND = b'{"error":"not found: the fake server serves /method/<name> and the long poll path"}'
_TEXT_TYPE = "text/plain; charset=utf-8"
# Index of the text in a message-layout update array.
_TEXT_INDEX = 5

_T = TypeVar("_T")


class FakeServer:
    """A fake long poll server for one recorded session.

    Start it inside a nursery with ``await nursery.start(server.serve)``,
    or use `open_fake_server` (trio) or `run_fake_server_in_thread` (sync
    and asyncio code). Binds to 127.0.0.1 unless given another host.
    In its own trio run, `open_memory_stream` connects a client with no
    socket.

    `faults` schedules injected faults, and `inject` adds more while
    serving. `push` adds an update while serving. With `strict=True` the
    server instead replays the recorded exchanges in order. It stops with a
    `StrictMismatch` at the first request that differs from the recorded
    one. Strict mode takes no faults and no pushed updates.

    Each poll reply is written for the poll's `mode`. A poll that sends the
    fixture's mode gets the recorded arrays unchanged. A poll whose mode
    lacks a bit that the recording had gets the arrays VK sends without it:
    no additional-data and attachments objects without 2 (`random_id` then
    follows the text), no events 114, 115 and 119 without 8, 0 as event 8's
    `extra` without 64, no `random_id` without 128, and no `pts` without 32.
    Bits that the recording lacked cannot be added, so such a poll gets the
    arrays as recorded. Recorded text is served as recorded, already
    escaped by VK.

    A call to an API method other than the long poll ones gets the recorded
    reply when the fixture contains a call to that method (the one with the
    same parameters if there is one), else a reply from this default set,
    else VK's error 3, "Unknown method passed":

    * ``users.get``: fake names ("Test User") for the ids in `user_ids`, or
      for the recorded account when none is given.
    * ``groups.getById``: fake names for the ids in `group_ids`, or for the
      community of the recorded session (its messages.getLongPollServer
      `group_id`) when none is given.
    * ``utils.getServerTime``: `server_time()`, the virtual clock.

    As on VK, a key expires after `key_ttl` seconds and works only from the
    IP address that asked for it (`bind_keys`). A poll's ts may lag the
    newest event by `event_window` events; an older one gets failed 1. VK
    does not document the window, and 256 is what its servers were seen to
    keep.
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
        strict: bool = False,
        faults: FaultSchedule | None = None,
        event_window: int = EVENT_WINDOW,
        bind_keys: bool = True,
    ) -> None:
        if type(speed) not in (int, float) or not speed > 0:
            raise ValueError(
                f"speed={speed!r} must be a positive number; 1.0 replays in recorded time"
            )
        if type(key_ttl) not in (int, float) or not key_ttl > 0:
            raise ValueError(f"key_ttl={key_ttl!r} must be a positive number of seconds")
        if type(tls) is not bool:
            raise ValueError(f"tls={tls!r} must be True or False")
        if type(event_window) is not int or event_window < 1:
            raise ValueError(f"event_window={event_window!r} must be a whole number of 1 or more")
        if strict and faults:
            raise ValueError(
                "strict mode replays the recorded replies and takes no faults; record a "
                "session with faults and replay that recording strictly instead"
            )
        self.fixture = fixture if isinstance(fixture, Fixture) else read_fixture(fixture)
        self.timeline = Timeline.from_fixture(self.fixture)
        self.host = host
        self.port = port
        self.ca: trustme.CA | None = trustme.CA() if tls else None
        self._speed = speed
        self._event_window = event_window
        self._bind_keys = bind_keys
        self._key_ttl = key_ttl
        self._seed = seed
        self.strict = strict
        self._faults = FaultInjector(faults or FaultSchedule())
        self._engine: ReplayEngine | None = None
        self._strict_replay: StrictReplay | None = None
        self._trio_token: trio.lowlevel.TrioToken | None = None
        # Set and replaced on every push, to wake the held polls.
        self._pushed = trio.Event()
        self._memory = MemoryConnector()

    @property
    def tls(self) -> bool:
        """Whether the server speaks HTTPS."""
        return self.ca is not None

    @property
    def api_url(self) -> str:
        """The API base URL to give a client, like ``https://127.0.0.1:8443/method``."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self._authority}/method"

    @property
    def _authority(self) -> str:
        """The host and port as a URL writes them, with an IPv6 address in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def engine(self) -> ReplayEngine:
        """The replay engine deciding the replies (available once serving)."""
        if self._engine is None:
            raise RuntimeError("the fake server is not serving yet; start it with serve()")
        return self._engine

    @property
    def strict_replay(self) -> StrictReplay:
        """The strict replay's progress: `position`, `complete`, `past_end` (once serving)."""
        if not self.strict:
            raise RuntimeError("the fake server is not in strict mode; pass strict=True")
        if self._strict_replay is None:
            raise RuntimeError("the fake server is not serving yet; start it with serve()")
        return self._strict_replay

    @property
    def fired_faults(self) -> tuple[FiredFault, ...]:
        """The faults injected so far, in the order they fired."""
        return tuple(self._faults.fired)

    @property
    def pending_faults(self) -> tuple[ScheduledFault, ...]:
        """The scheduled faults that have not fired yet."""
        return self._faults.pending

    def inject(self, fault: Fault, *, on: Endpoint | str = Endpoint.POLL) -> ScheduledFault:
        """Give `fault` to the next request to `on` that arrives.

        A poll that the server is already holding does not get it. Returns the schedule
        entry, which `fired_faults` lists once it fires.
        """
        if self.strict:
            raise RuntimeError("strict mode replays the recorded replies and takes no faults")
        return self._faults.add_next(fault, Endpoint(on))

    def push(self, update: Update | list[Any], *, text: str | None = None) -> int:
        """Add `update` to the replay: it becomes available at once, after the due updates.

        `update` is an `lpcore.Update` or an update array. Its array is served
        as given, for consumers that poll with every mode bit, and is gated
        for those that poll with fewer (see the class docstring). A message
        event's text is the text as VK sends it: `raw_text` of a typed update
        or element 5 of an array. `text` instead gives the text as a user
        typed it, and the server escapes it the way VK does: ``& < > "`` as
        entities and newlines as ``<br>``.

        Returns the update's `ts`. Can be called from the server's trio task,
        another trio task of its loop, or another thread (a server run by
        `run_fake_server_in_thread`). Raises RuntimeError before a consumer
        has called messages.getLongPollServer, and ValueError for a message
        text that VK would have escaped but is not.
        """
        if self.strict:
            raise RuntimeError("strict mode replays the recorded replies and takes no updates")
        raw = _wire_array(update, text)
        return self._in_server_loop(lambda: self._push_now(raw))

    def server_time(self) -> int:
        """Return the server's virtual clock in Unix seconds, as utils.getServerTime does.

        It starts at the recorded session's start time and runs at the replay's speed.
        """
        return self._in_server_loop(lambda: self.engine.server_time(trio.current_time()))

    def _push_now(self, raw: list[Any]) -> int:
        ts = self.engine.push(raw, trio.current_time())
        self._pushed.set()
        self._pushed = trio.Event()
        return ts

    def _in_server_loop(self, function: Callable[[], _T]) -> _T:
        """Run `function` in the server's trio loop, from that loop or another thread."""
        token = self._serving_token()
        if self._runs_in(token):
            return function()
        return trio.from_thread.run_sync(function, trio_token=token)

    def _serving_token(self) -> trio.lowlevel.TrioToken:
        """Return the token of the trio run that serves this server."""
        token = self._trio_token
        if token is None:
            raise RuntimeError("the fake server is not serving yet; start it with serve()")
        return token

    @staticmethod
    def _runs_in(token: trio.lowlevel.TrioToken) -> bool:
        """Return whether the caller runs inside the trio run of `token`."""
        try:
            return trio.lowlevel.current_trio_token() is token
        except RuntimeError:
            return False

    async def open_memory_stream(self, host: str, port: int) -> trio.abc.Stream:
        """Open an in-memory connection to this server and return the client's end.

        Matches lptrio's `stream_opener`, so ``LongPoll(..., stream_opener=
        server.open_memory_stream)`` reaches the server with no socket. The connection
        is served like a TCP one from 127.0.0.1, with TLS when `tls` is set and with
        faults: a reset reaches the client as BrokenResourceError, as over TCP. `host`
        and `port` are not checked, because every stream reaches this server.

        Works only in the trio run that serves the server, so not with
        `run_fake_server_in_thread`, and raises RuntimeError elsewhere. Raises
        ConnectionRefusedError once the server has stopped, as a TCP connect would.
        """
        if not self._runs_in(self._serving_token()):
            raise RuntimeError(
                "open_memory_stream works only in the trio run that serves the fake server; "
                "a server in another thread or run (run_fake_server_in_thread, lp_server) "
                f"takes TCP connections at {self.api_url}"
            )
        stream = self._memory.connect()
        await trio.lowlevel.checkpoint()
        return stream

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
                    memory=self._memory,
                    task_status=task_status,
                )
            )
            self.port = bound.port
            self._trio_token = trio.lowlevel.current_trio_token()
            # VK names its long poll server as host:port/path with no
            # scheme, which clients read as HTTPS; a plain fake must say so.
            base = self._authority if self.tls else f"http://{self._authority}"
            if self._faults.origin is None:
                self._faults.origin = trio.current_time()
            self._engine = ReplayEngine(
                self.timeline,
                server_base=base,
                speed=self._speed,
                key_ttl=self._key_ttl,
                seed=self._seed,
                faults=self._faults,
                event_window=self._event_window,
                bind_keys=self._bind_keys,
            )
            if self.strict:
                self._strict_replay = StrictReplay(
                    self.fixture.exchanges, server_base=base, speed=self._speed, seed=self._seed
                )
            task_status.started(bound)

    def _server_ssl_context(self) -> ssl.SSLContext | None:
        if self.ca is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(self.host, "localhost", "127.0.0.1").configure_cert(context)
        return context

    def _handle(self, request: HttpRequest) -> HttpReply | Awaitable[HttpReply]:
        # A reply that is due at once is returned as it is, which spares the HTTP server
        # its watch for the client hanging up. A poll to hold gets the coroutine that
        # builds its reply, so that a held poll keeps one coroutine frame fewer in memory.
        if self._strict_replay is not None:
            return self._answer_strictly(request, self._strict_replay)
        engine = self.engine
        arrived = trio.current_time()
        endpoint = engine.endpoint_of(request.path, request.params)
        fired = None if endpoint is None else engine.take_fault(endpoint, arrived)
        if endpoint is None or fired is None:
            decision = self._decide_now(request, arrived)
            if isinstance(decision, Hold):
                return self._hold(request, arrived, decision, _http_reply)
            return _http_reply(decision)
        logger.info(
            "injecting %s into request %d to %s at %.3f s",
            describe_fault(fired.fault),
            fired.step,
            endpoint,
            fired.at,
        )
        return self._perform(fired.fault, endpoint, request)

    def _decide_now(self, request: HttpRequest, arrived: float) -> Reply | Hold:
        """Return the engine's reply to `request`, or how long to hold it if it is a poll."""
        engine = self.engine
        if request.path.startswith("/method/"):
            method = request.path.removeprefix("/method/")
            client_host = request.client_host
            return engine.call_api(method, request.params, arrived, client_host=client_host)
        if request.path != engine.server_path or request.params.get("act") != "a_check":
            return Reply(status=404, body=_NOT_FOUND)
        return engine.poll(request.params, arrived, arrived, client_host=request.client_host)

    async def _decide(self, request: HttpRequest, convert: Callable[[Reply], _T]) -> _T:
        """Return the engine's reply passed through `convert`, holding a poll until it comes."""
        arrived = trio.current_time()
        decision = self._decide_now(request, arrived)
        if isinstance(decision, Hold):
            return await self._hold(request, arrived, decision, convert)
        return convert(decision)

    async def _hold(
        self, request: HttpRequest, arrived: float, hold: Hold, convert: Callable[[Reply], _T]
    ) -> _T:
        """Hold the poll `request` until the engine replies, and pass the reply to `convert`.

        `hold` is the engine's decision on the poll at the time `arrived`.
        """
        decision: Reply | Hold = hold
        decided_at = arrived
        while isinstance(decision, Hold):
            if decision.until <= decided_at:
                raise RuntimeError(
                    f"replay engine asked to hold until {decision.until}, "
                    f"which is not after now ({decided_at})"
                )
            pushed = self._pushed
            with trio.move_on_at(decision.until):
                await pushed.wait()
            decided_at = trio.current_time()
            decision = self.engine.poll(
                request.params, arrived, decided_at, client_host=request.client_host
            )
        return convert(decision)

    async def _perform(self, fault: Fault, endpoint: Endpoint, request: HttpRequest) -> HttpReply:
        """Build the reply to a request that got `fault`, performing the fault."""
        if fault.replaces_reply:
            return _http_reply(self.engine.fault_reply(fault, endpoint, trio.current_time()))
        if fault.kind is FaultKind.RESET_BEFORE_HEADERS:
            return HttpReply(transport=Transport(cut=Cut.BEFORE_HEADERS, reset=True))
        if fault.kind is FaultKind.STALL:
            assert fault.seconds is not None
            # Cancelled when the client gives up, because the HTTP server then cancels
            # the handler.
            await trio.sleep(fault.seconds)
            return await self._decide(request, _http_reply)

        reply = await self._decide(request, _identity)
        return _http_reply(reply, _send_faultily(fault, len(reply.body)))

    async def _answer_strictly(self, request: HttpRequest, replay: StrictReplay) -> HttpReply:
        arrived = trio.current_time()
        received = ReceivedRequest.classify(request.method, request.path, request.params)
        decision = replay.answer(received)
        if isinstance(decision, StrictMismatch):
            return HttpReply(
                status=500, body=f"{decision}\n".encode(), content_type=_TEXT_TYPE, error=decision
            )
        if isinstance(decision, PastEnd):
            # Held until the client gives up or the server stops, as PastEnd explains.
            await trio.sleep_forever()

        await trio.sleep_until(arrived + decision.delay)
        if decision.reply is not None:
            return _http_reply(decision.reply)
        if decision.error_kind == "timeout":
            await trio.sleep_forever()
        # NOTE: every other recorded transport error (reset, protocol, TLS, connect) is
        # replayed as a reset after the headers, which any client reports as a failure.
        # A reset before the headers could instead make a client resend silently.
        return HttpReply(body=b"\n", transport=Transport(cut=Cut.IN_BODY, reset=True))


def _wire_array(update: Update | list[Any], text: str | None) -> list[Any]:
    """Return the update array to push, with `text` escaped into a message event."""
    if text is not None and isinstance(update, Update) and hasattr(update, "raw_text"):
        # Set before encoding, so that the fields after the text may be set too. The
        # message event classes have `raw_text`; the Update base class does not.
        changes: dict[str, Any] = {"raw_text": escape_text(text)}
        update = dataclasses.replace(update, **changes)
        text = None
    # A copy, because encode_update returns the `raw` list of an UnknownUpdate itself.
    raw = list(update) if isinstance(update, list) else list(encode_update(update))
    code = raw[0] if raw and type(raw[0]) is int else None
    if text is not None:
        if code not in MESSAGE_LAYOUT_CODES or len(raw) < _TEXT_INDEX:
            raise ValueError(
                f"text is only for message events (codes {sorted(MESSAGE_LAYOUT_CODES)}) "
                f"that have the fields before the text, got {raw!r}"
            )
        escaped = escape_text(text)
        if len(raw) == _TEXT_INDEX:
            raw.append(escaped)
        else:
            raw[_TEXT_INDEX] = escaped
        return raw

    if code in MESSAGE_LAYOUT_CODES and len(raw) > _TEXT_INDEX and type(raw[_TEXT_INDEX]) is str:
        unescaped = unescaped_characters(raw[_TEXT_INDEX])
        if unescaped:
            raise ValueError(
                f"message text {raw[_TEXT_INDEX]!r} contains {unescaped!r}, which VK sends "
                "escaped; pass the text as typed with push(update, text=...) to have it escaped"
            )
    return raw


def _identity(reply: Reply) -> Reply:
    return reply


def _http_reply(reply: Reply, transport: Transport | None = None) -> HttpReply:
    if transport is None:
        # HttpReply's default transport, shared by every reply, spares building one.
        return HttpReply(status=reply.status, body=reply.body, content_type=reply.content_type)
    return HttpReply(
        status=reply.status, body=reply.body, content_type=reply.content_type, transport=transport
    )


def _send_faultily(fault: Fault, body_length: int) -> Transport:
    """Return how to send the real reply for a fault that changes only the sending."""
    if fault.kind is FaultKind.TRUNCATED:
        return Transport(cut=Cut.IN_BODY, cut_after=fault.truncate_at(body_length))
    if fault.kind is FaultKind.RESET_AFTER_HEADERS:
        return Transport(cut=Cut.IN_BODY, cut_after=0, reset=True)
    if fault.kind is FaultKind.DRIBBLE:
        assert fault.chunk_size is not None
        assert fault.delay is not None
        return Transport(chunk_size=fault.chunk_size, chunk_delay=fault.delay)
    raise ValueError(f"a {fault.kind} fault does not change how a reply is sent")


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
