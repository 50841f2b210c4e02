"""`LongPoll`: lpcore's session driven over HTTP on trio."""

import functools
import inspect
import json
import logging
import os
import re
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import trio

import lpcore
from lpcore import (
    Backoff,
    Checkpoint,
    EventsLost,
    HistoryRecovered,
    Mode,
    Request,
    RequestKind,
    RetryScheduled,
    ServerObtained,
    Session,
    SessionEvent,
    Update,
    UpdatesReceived,
)

from ._checkpoint import read_checkpoint, write_checkpoint
from ._http import DEFAULT_USER_AGENT, HttpClient, HttpResponse, StreamOpener, TransportError
from ._logging import RepeatLimiter

logger = logging.getLogger("lptrio")

#: The longest `wait` that middleboxes closing idle connections at about 30 s let through.
IDLE_CUT_SAFE_WAIT = 25

U = TypeVar("U", bound=Update)
Handler = Callable[[Any], Awaitable[None] | None]

_ACCOUNT_IN_SERVER = re.compile(r"/nim(\d+)")


class ExchangeObserver(Protocol):
    """Something that sees every HTTP exchange of a `LongPoll`, for example a recorder."""

    def exchange(
        self,
        request: Request,
        *,
        started: float,
        finished: float,
        response: HttpResponse | None,
        error: TransportError | None,
    ) -> None:
        """Take one finished exchange: `response` or `error` is set. Times are trio's clock."""


def check_api_url(api_url: str) -> None:
    """Raise ValueError unless `api_url` is an http(s) URL with a host and valid port."""
    if not api_url.startswith(("https://", "http://")):
        raise ValueError(f"api_url {api_url!r} must start with https:// or http://")
    try:
        parts = urlsplit(api_url)
        parts.port  # noqa: B018 - reading it validates the port
    except ValueError as error:
        raise ValueError(f"api_url {api_url!r} is invalid: {error}") from None
    if not parts.hostname:
        raise ValueError(f"api_url {api_url!r} has no host")


class LongPoll:
    """A User Long Poll consumer on trio.

    Iterate it (``async for update in lp``) or register handlers with
    `on` and `on_response` and call `run`. `shutdown` stops either way:
    the held poll is cancelled at once and a running handler finishes.

    With `checkpoint` set to a file path, the resume point is saved there
    atomically after each delivered batch (and at shutdown), and a new
    `LongPoll` with the same path continues after the last update
    delivered. An explicit `resume` (an `lpcore.Checkpoint`, as
    `checkpoint()` returns) or `ts` (with `pts` and `skip`) takes
    precedence over the file.

    `loads` decodes poll bodies; ``orjson.loads`` is a faster choice.

    `key` is a secret: it never appears in `repr`, logs or errors.
    """

    def __init__(
        self,
        token: str,
        mode: Mode | int = Mode.DEFAULT,
        *,
        wait: int = 25,
        version: int = 3,
        api_url: str = lpcore.DEFAULT_API_URL,
        api_version: str = lpcore.DEFAULT_API_VERSION,
        group_id: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
        cafile: str | None = None,
        proxy: str | None = None,
        stream_opener: StreamOpener | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
        ts: int | None = None,
        pts: int | None = None,
        skip: int = 0,
        checkpoint: str | os.PathLike[str] | None = None,
        observer: ExchangeObserver | None = None,
        raise_handler_errors: bool = False,
        seed: int = 0,
        loads: Callable[[bytes], Any] = json.loads,
        resume: Checkpoint | None = None,
    ) -> None:
        if ssl_context is None and cafile is not None:
            if not Path(cafile).is_file():
                raise FileNotFoundError(f"cafile {cafile!r} is not a file; pass a PEM file of CAs")
            ssl_context = ssl.create_default_context(cafile=cafile)
        check_api_url(api_url)
        self._checkpoint_path = None if checkpoint is None else Path(checkpoint)
        if resume is None and ts is not None:
            resume = Checkpoint(ts=ts, pts=pts, skip=skip)
        elif resume is not None and (ts is not None or pts is not None or skip):
            raise ValueError("pass either resume= or ts=, pts= and skip=, not both")
        elif pts is not None or skip:
            raise ValueError(f"pts={pts} and skip={skip} need the ts they go with; pass ts too")
        if resume is None and self._checkpoint_path is not None:
            resume = read_checkpoint(self._checkpoint_path)
        self._session = Session(
            token,
            mode=mode,
            wait=wait,
            version=version,
            api_version=api_version,
            api_url=api_url,
            group_id=group_id,
            seed=seed,
            loads=loads,
            resume=resume,
        )
        self._new_http = functools.partial(
            HttpClient,
            ssl_context=ssl_context,
            user_agent=user_agent,
            proxy=proxy,
            stream_opener=stream_opener,
        )
        self._http = self._new_http()
        self._http_closed = False
        self._observer = observer
        self._raise_handler_errors = raise_handler_errors
        self._handlers: dict[type[Update], list[Handler]] = {}
        self._response_handlers: list[Handler] = []
        self._lost_handlers: list[Handler] = []
        self._pending: deque[Update] = deque()
        # Where the batch being delivered started, and how much of it is
        # delivered: together they make an exact resume point.
        self._batch_start: Checkpoint | None = resume
        self._batch_end: Checkpoint | None = None
        self._batch: tuple[Update, ...] = ()
        self._delivered_in_batch = 0 if resume is None else resume.skip
        self._handed_out = False
        self._saved: Checkpoint | None = None
        self._request_scope: trio.CancelScope | None = None
        self._stopping = False
        self._account = ""
        self._repeats = RepeatLimiter()
        self._poll_start: Checkpoint | None = None

    def __repr__(self) -> str:
        return f"<LongPoll {self._session!r}>"

    # Attributes the Go SDK's users know, read from the session.
    @property
    def server(self) -> str | None:
        """The long poll server (host and path) from messages.getLongPollServer."""
        return self._session.server

    @property
    def key(self) -> str | None:
        """The current long poll key: a secret, do not log it."""
        return self._session._key

    @property
    def ts(self) -> int | None:
        """The ts the next poll asks from."""
        return self._session.ts

    @property
    def pts(self) -> int | None:
        """The last pts seen, when mode includes `Mode.PTS`."""
        return self._session.pts

    @property
    def mode(self) -> Mode:
        """The `mode` flags sent with each poll."""
        return self._session.mode

    @property
    def version(self) -> int:
        """The long poll protocol version."""
        return self._session.version

    @property
    def wait(self) -> int:
        """How long the server may hold each poll, in seconds."""
        return self._session.wait

    def checkpoint(self) -> Checkpoint | None:
        """Return the resume point right after the last update delivered, or None before any.

        An update counts as delivered once the iterator was asked for the
        one after it (with `run`, once its handlers returned).
        """
        if self._batch_start is None:
            return None
        if not self._pending and not self._handed_out and self._batch_end is not None:
            return self._batch_end
        start = self._batch_start
        return start.advanced(self._batch[: self._delivered_in_batch - start.skip])

    # -- handler API ----------------------------------------------------------

    def on(self, update_type: type[U]) -> Callable[[Callable[[U], Any]], Callable[[U], Any]]:
        """Register a handler (sync or async) for one update type; several may share a type."""

        def register(handler: Callable[[U], Any]) -> Callable[[U], Any]:
            self._handlers.setdefault(update_type, []).append(handler)
            return handler

        return register

    def on_response(
        self, handler: Callable[[UpdatesReceived], Any]
    ) -> Callable[[UpdatesReceived], Any]:
        """Register a handler for each whole successful poll reply (the Go SDK's FullResponse)."""
        self._response_handlers.append(handler)
        return handler

    def on_lost(self, handler: Callable[[EventsLost], Any]) -> Callable[[EventsLost], Any]:
        """Register a handler for events the server lost and history could not recover.

        It gets the `lpcore.EventsLost` with the `ts` range; a consumer that
        keeps state should resynchronize it through the ordinary API.
        """
        self._lost_handlers.append(handler)
        return handler

    async def run(self) -> None:
        """Poll and dispatch updates to the handlers until `shutdown` or a fatal error."""
        async for update in self:
            for handler in self._handlers.get(type(update), ()):
                await self._call(handler, update, code=update.code)

    def shutdown(self) -> None:
        """Stop polling: cancel the held poll now; `run` returns once its handler finishes.

        Updates received but not yet delivered are not delivered; the
        checkpoint (and its file) points right before them. A later `run`
        or ``async for`` starts polling again from there, with a new
        connection.
        """
        self._stopping = True
        if self._request_scope is not None:
            self._request_scope.cancel()

    async def aclose(self) -> None:
        """Save the checkpoint file (if any) and close the pooled connections.

        A loop left with ``break`` inside ``async with`` ends here, so the
        file then points right after the last update handled. Called while
        another task iterates, it cancels the request in flight, and that
        task's loop (or `run`) raises trio.ClosedResourceError, as a trio
        stream does when another task closes it. `shutdown` ends a loop
        without an error.
        """
        self._save_checkpoint()
        self._http_closed = True
        if self._request_scope is not None:
            self._request_scope.cancel()
        await self._http.aclose()

    async def __aenter__(self) -> "LongPoll":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- iteration ------------------------------------------------------------

    def __aiter__(self) -> "LongPoll":
        # A new iteration (or run) after shutdown or aclose polls again.
        self._stopping = False
        if self._http_closed:
            self._http = self._new_http()
            self._http_closed = False
        return self

    async def __anext__(self) -> Update:
        if self._handed_out:
            # Asking for the next update means the last one was handled.
            self._handed_out = False
            self._delivered_in_batch += 1
        while not self._pending or self._stopping or self._http_closed:
            self._save_checkpoint()
            if self._stopping:
                await self.aclose()
                raise StopAsyncIteration
            if self._http_closed:
                # The checkpoint points before any update still queued, so a consumer
                # resumed from it gets those updates again.
                raise trio.ClosedResourceError(
                    "this LongPoll was closed by aclose() during the iteration; "
                    "use shutdown() to end a loop, or start a new loop to poll again"
                )
            await self._step()
        self._handed_out = True
        return self._pending.popleft()

    def _save_checkpoint(self) -> None:
        if self._checkpoint_path is None:
            return
        checkpoint = self.checkpoint()
        if checkpoint is not None and checkpoint != self._saved:
            # NOTE: written in the event loop, not a worker thread: the file
            # is tens of bytes, and a thread would let trio's autojump clock
            # run ahead while it works. The fsync blocks the loop briefly.
            write_checkpoint(self._checkpoint_path, checkpoint)
            self._saved = checkpoint

    async def _step(self) -> None:
        """Send one request (or wait out one backoff) and take in what came back."""
        action = self._session.next_request(trio.current_time())
        if isinstance(action, Backoff):
            with trio.CancelScope() as self._request_scope:
                await trio.sleep_until(action.until)
            self._request_scope = None
            return

        started = trio.current_time()
        response: HttpResponse | None = None
        error: TransportError | None = None
        with trio.CancelScope() as self._request_scope:
            try:
                response = await self._http.request(
                    action.method,
                    action.url,
                    headers=action.headers,
                    body=action.body,
                    timeout=action.timeout,
                )
            except TransportError as caught:
                error = caught
            finally:
                if response is None and error is None:
                    # Cancelled, by shutdown() or from outside: the request
                    # never completed, so the session gets no outcome, will
                    # hand it out again, and nothing is recorded.
                    self._session.abandon(action)
        self._request_scope = None
        if response is None and error is None:
            return

        finished = trio.current_time()
        if error is not None and _certificate_rejected(error):
            # A certificate this client does not trust will not become
            # trusted by retrying: stop with the error, which says what to pass.
            raise error
        if self._observer is not None:
            self._observer.exchange(
                action, started=started, finished=finished, response=response, error=error
            )
        # Where a batch from this poll starts, for a checkpoint inside it.
        self._poll_start = self._session.checkpoint() if self._session.ts is not None else None
        if error is not None:
            self._hint_at_idle_cut(action, finished - started)
            events = self._session.receive_failure(action, str(error), finished)
        else:
            assert response is not None
            events = self._session.receive_response(
                action, response.status, response.body, finished
            )
        for event in events:
            await self._on_event(event)

    def _begin_batch(self, updates: tuple[Update, ...]) -> None:
        """Queue a batch; until it is delivered, the checkpoint counts into it."""
        # The session's checkpoints before and after the response bound the
        # batch: a ts (or, during a recovery, a pts) and the updates a
        # resumed consumer had already handled after it.
        end = self._session.checkpoint()
        start = self._poll_start or end
        self._batch_start, self._batch_end = start, end
        self._batch = updates
        self._delivered_in_batch = start.skip
        self._pending.extend(updates)

    async def _on_event(self, event: SessionEvent) -> None:
        if isinstance(event, UpdatesReceived):
            for handler in self._response_handlers:
                await self._call(handler, event, code=None)
            self._begin_batch(event.updates)
        elif isinstance(event, HistoryRecovered):
            self._log(
                logging.INFO,
                "recovered %d lost updates from history (pts %d to %d)",
                len(event.updates),
                event.from_pts,
                event.new_pts,
            )
            self._begin_batch(event.updates)
        elif isinstance(event, RetryScheduled):
            self._log(
                logging.WARNING,
                "retry %d in %.1f s: %s",
                event.attempt,
                event.delay,
                event.reason,
                repeat_key=f"retry: {event.reason}",
            )
        elif isinstance(event, EventsLost):
            self._log(
                logging.INFO if event.persistent_recovered else logging.WARNING,
                "events lost after ts %d (failed: %d); polling goes on from ts %d: %s",
                event.from_ts,
                event.failed,
                event.to_ts,
                event.reason,
            )
            for handler in self._lost_handlers:
                await self._call(handler, event, code=None)
        elif isinstance(event, ServerObtained):
            match = _ACCOUNT_IN_SERVER.search(event.server)
            self._account = f"[user {match.group(1)}] " if match else ""
            self._log(
                logging.DEBUG,
                "long poll server %s, ts %d (kept: %s)",
                event.server,
                event.ts,
                event.kept_ts,
            )

    def _hint_at_idle_cut(self, action: Request, elapsed: float) -> None:
        """Warn when a held poll with a long `wait` broke before its deadline.

        Proxies, NAT gateways and load balancers often close a connection
        that carried no data for about 30 s. A poll held longer than that is
        then cut every time, and each cut costs a retry.
        """
        if action.kind is not RequestKind.POLL or self.wait <= IDLE_CUT_SAFE_WAIT:
            return
        if not IDLE_CUT_SAFE_WAIT <= elapsed < action.timeout:
            return
        self._log(
            logging.WARNING,
            "a poll held with wait=%d broke after %.0f s; something on the way may close idle "
            "connections, so try wait=%d or less",
            self.wait,
            elapsed,
            IDLE_CUT_SAFE_WAIT,
            repeat_key="idle cut",
        )

    def _log(self, level: int, template: str, *args: Any, repeat_key: str = "") -> None:
        """Log with the account id, letting a repeated message through once a minute.

        Messages count as repeats when their `repeat_key` (by default the
        template) is the same; the count of those held back is added to the
        next one let through.
        """
        suppressed = self._repeats.admit(repeat_key or template, trio.current_time())
        if suppressed is None:
            return
        suffix = f" ({suppressed} similar messages suppressed)" if suppressed else ""
        logger.log(level, self._account + template + suffix, *args)

    async def _call(self, handler: Handler, argument: Any, *, code: int | None) -> None:
        try:
            result = handler(argument)
            if inspect.isawaitable(result):
                await result
        except Exception:
            if self._raise_handler_errors:
                raise
            what = "session event handler" if code is None else f"handler for update {code}"
            logger.exception("%s%s %r raised; skipping it", self._account, what, handler)


def _certificate_rejected(error: TransportError) -> bool:
    """Whether the TLS handshake failed because the server's certificate was not trusted."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        cause = cause.__cause__
    return False
