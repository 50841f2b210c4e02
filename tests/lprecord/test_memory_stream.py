"""Tests of in-memory connections: `MemoryStream`, `MemoryConnector` and `open_memory_stream`."""

import json
from functools import partial
from typing import Any

import h11
import pytest
import trio
import trio.testing
from fixture_facts import CHAT_SESSION, update_arrays

from lpcore import Request
from lprecord import FakeServer, open_fake_server, run_fake_server_in_thread
from lprecord._faults import Endpoint, Fault, FaultSchedule, ScheduledFault
from lprecord._httpserver import (
    HttpReply,
    HttpRequest,
    MemoryConnector,
    MemoryStream,
    serve_http,
)
from lptrio import HttpResponse, LongPoll, TransportError

TOKEN = "memory-test-token-4b7d0c19e2"
# The chat session's third poll, which the server holds from 5.3 s to 11.3 s. The consumer
# has every earlier update by then, so a failed reply to it loses nothing.
HELD_POLL = 3
# Virtual seconds a consumer polls: the chat session's updates end at about 160 s, and a
# stall or a backoff adds a minute at most.
SESSION_SECONDS = 300.0


class OpenerLog:
    """A stream_opener that counts its calls and opens in-memory streams to `server`."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> trio.abc.Stream:
        self.calls.append((host, port))
        return await self.server.open_memory_stream(host, port)


class ErrorLog:
    """An lptrio observer that keeps the kind of every transport error, in order."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def exchange(
        self,
        request: Request,
        *,
        started: float,
        finished: float,
        response: HttpResponse | None,
        error: TransportError | None,
    ) -> None:
        if error is not None:
            self.errors.append(str(error.kind))


async def consume_in_memory(server: FakeServer, *, observer: Any = None) -> list[Any]:
    """Poll `server` over in-memory streams for the session's length in virtual time."""
    longpoll = LongPoll(
        TOKEN,
        api_url=server.api_url,
        stream_opener=server.open_memory_stream,
        observer=observer,
    )
    received: list[Any] = []
    try:
        with trio.move_on_after(SESSION_SECONDS):
            async for update in longpoll:
                received.append(update.raw)
    finally:
        await longpoll.aclose()
    return received


def count_tasks() -> int:
    """Return the number of tasks in the current trio run."""
    count = 0
    root = trio.lowlevel.current_root_task()
    assert root is not None
    nurseries = list(root.child_nurseries)
    while nurseries:
        nursery = nurseries.pop()
        for task in nursery.child_tasks:
            count += 1
            nurseries.extend(task.child_nurseries)
    return count


def server_target() -> str:
    return f"/method/messages.getLongPollServer?access_token={TOKEN}&lp_version=3&v=5.199"


def poll_target(path: str, key: str, ts: int) -> str:
    return f"{path}?act=a_check&key={key}&ts={ts}&wait=25&mode=234&version=3"


class RawClient:
    """A keep-alive h11 client on one stream, for requests whose reply comes at once."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._connection = h11.Connection(h11.CLIENT)

    async def get(self, target: str) -> bytes:
        request = h11.Request(method="GET", target=target, headers=[("Host", "127.0.0.1")])
        data = self._connection.send(request)
        end = self._connection.send(h11.EndOfMessage())
        assert data is not None
        assert end is not None
        await self._stream.send_all(data + end)
        body = bytearray()
        while True:
            event = self._connection.next_event()
            if event is h11.NEED_DATA:
                self._connection.receive_data(bytes(await self._stream.receive_some()))
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                self._connection.start_next_cycle()
                return bytes(body)
            else:
                assert isinstance(event, h11.Response), event


def one_fault(fault: Fault, on: Endpoint = Endpoint.POLL, step: int = HELD_POLL) -> FaultSchedule:
    return FaultSchedule((ScheduledFault(fault=fault, on=on, at_step=step),))


# -- MemoryStream ------------------------------------------------------------------------


async def test_memory_stream_passes_trio_checks() -> None:
    async def make_pair() -> tuple[MemoryStream, MemoryStream]:
        return MemoryStream.pair()

    await trio.testing.check_two_way_stream(make_pair, None)


async def test_memory_stream_close_is_eof() -> None:
    client, server = MemoryStream.pair()
    await server.send_all(b"partial")
    await server.aclose()

    assert await client.receive_some() == b"partial"
    assert await client.receive_some() == b""
    with pytest.raises(trio.BrokenResourceError):
        await client.send_all(b"more")


async def test_memory_stream_reset_breaks_receive() -> None:
    client, server = MemoryStream.pair()
    await server.send_all(b"head")
    server.reset_on_close()
    await server.aclose()

    # Bytes that arrived before the reset are still read, as from a TCP socket.
    assert await client.receive_some() == b"head"
    with pytest.raises(trio.BrokenResourceError):
        await client.receive_some()


async def test_memory_stream_reports_peer_close() -> None:
    client, server = MemoryStream.pair()
    closes: list[str] = []
    server.watch_peer_close(lambda: closes.append("first"))

    await client.aclose()
    server.watch_peer_close(lambda: closes.append("after close"))

    assert closes == ["first", "after close"]


async def test_memory_stream_unwatched_close_is_quiet() -> None:
    client, server = MemoryStream.pair()
    closes: list[str] = []
    server.watch_peer_close(lambda: closes.append("close"))
    server.watch_peer_close(None)

    await client.aclose()

    assert closes == []


# -- serve_http over memory -------------------------------------------------------------


def encode_get(target: str) -> bytes:
    connection = h11.Connection(h11.CLIENT)
    head = connection.send(h11.Request(method="GET", target=target, headers=[("Host", "x")]))
    end = connection.send(h11.EndOfMessage())
    assert head is not None
    assert end is not None
    return head + end


async def test_connector_serves_request(autojump_clock: trio.abc.Clock) -> None:
    seen: list[HttpRequest] = []

    async def handler(request: HttpRequest) -> HttpReply:
        seen.append(request)
        return HttpReply(body=b"{}")

    connector = MemoryConnector()
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve_http(handler, memory=connector, task_status=task_status)
        )
        stream = connector.connect()
        await stream.send_all(encode_get("/method/x?a=1"))
        reply = await stream.receive_some()
        await stream.aclose()
        nursery.cancel_scope.cancel()

    assert reply.startswith(b"HTTP/1.1 200 ")
    assert reply.endswith(b"\r\n\r\n{}")
    assert seen[0].params == {"a": "1"}
    assert seen[0].client_host == "127.0.0.1"
    assert not connector.serving


async def test_held_request_ends_when_client_closes(autojump_clock: trio.abc.Clock) -> None:
    started = trio.Event()
    cancelled = trio.Event()

    async def handler(request: HttpRequest) -> HttpReply:
        started.set()
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    connector = MemoryConnector()
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve_http(handler, memory=connector, task_status=task_status)
        )
        stream = connector.connect()
        await stream.send_all(encode_get("/poll"))
        await started.wait()
        await stream.aclose()
        # Virtual time: a handler that was not cancelled fails here without real waiting.
        with trio.fail_after(3600):
            await cancelled.wait()
        nursery.cancel_scope.cancel()

    assert cancelled.is_set()


async def test_connector_refuses_when_stopped() -> None:
    connector = MemoryConnector()

    with pytest.raises(ConnectionRefusedError):
        connector.connect()


# -- FakeServer.open_memory_stream ------------------------------------------------------


@pytest.mark.lp_fixture("fixtures/chat_session.jsonl")
async def test_longpoll_receives_every_update_in_memory(
    lp_trio_server: FakeServer, autojump_clock: trio.abc.Clock
) -> None:
    expected = update_arrays(CHAT_SESSION)
    opener = OpenerLog(lp_trio_server)
    longpoll = LongPoll(TOKEN, api_url=lp_trio_server.api_url, stream_opener=opener)
    received: list[Any] = []

    with trio.fail_after(600.0):
        async for update in longpoll:
            received.append(update.raw)
            if len(received) == len(expected):
                break
    await longpoll.aclose()

    assert received == expected
    # One keep-alive connection carries the whole session.
    assert opener.calls == [("127.0.0.1", lp_trio_server.port)]


async def test_held_poll_ends_when_client_closes(autojump_clock: trio.abc.Clock) -> None:
    # At a hundredth of the recorded speed, the session's first update is due after 100 s,
    # so the poll is held for its whole 25 s.
    async with open_fake_server(CHAT_SESSION, speed=0.01, key_ttl=3600.0) as server:
        stream = await server.open_memory_stream("127.0.0.1", server.port)
        client = RawClient(stream)
        credentials = json.loads(await client.get(server_target()))["response"]
        poll = poll_target(server.engine.server_path, credentials["key"], credentials["ts"])
        await stream.send_all(encode_get(poll))
        await trio.sleep(1.0)
        held = count_tasks()

        await stream.aclose()
        await trio.sleep(1.0)
        after_close = count_tasks()

    # The connection's task, which held the poll, is gone long before the poll's 25 s.
    assert after_close == held - 1


@pytest.mark.parametrize(
    ("fault", "errors"),
    [
        pytest.param(Fault.truncated(), ["reset"], id="truncated"),
        pytest.param(Fault.reset_after_headers(), ["reset"], id="reset-after-headers"),
        # lptrio resends a request whose pooled connection ended before any reply.
        pytest.param(Fault.reset_before_headers(), [], id="reset-before-headers"),
        pytest.param(Fault.stall(), ["timeout"], id="stall"),
        pytest.param(Fault.dribble(), [], id="dribble"),
    ],
)
async def test_fault_over_memory_reaches_client(
    fault: Fault, errors: list[str], autojump_clock: trio.abc.Clock
) -> None:
    log = ErrorLog()
    async with open_fake_server(CHAT_SESSION, faults=one_fault(fault)) as server:
        received = await consume_in_memory(server, observer=log)

    [fired] = server.fired_faults
    assert fired.fault == fault
    assert log.errors == errors
    assert received == update_arrays(CHAT_SESSION)


async def test_longpoll_over_memory_with_tls(autojump_clock: trio.abc.Clock) -> None:
    async with open_fake_server(CHAT_SESSION, tls=True) as server:
        longpoll = LongPoll(
            TOKEN,
            api_url=server.api_url,
            ssl_context=server.client_ssl_context(),
            stream_opener=server.open_memory_stream,
        )
        received: list[Any] = []
        with trio.move_on_after(SESSION_SECONDS):
            async for update in longpoll:
                received.append(update.raw)
        await longpoll.aclose()

    assert received == update_arrays(CHAT_SESSION)


async def test_open_memory_stream_before_serving() -> None:
    server = FakeServer(CHAT_SESSION)

    with pytest.raises(RuntimeError, match="not serving yet"):
        await server.open_memory_stream("127.0.0.1", 0)


async def test_open_memory_stream_after_stop_is_refused(autojump_clock: trio.abc.Clock) -> None:
    async with open_fake_server(CHAT_SESSION) as server:
        pass

    with pytest.raises(ConnectionRefusedError):
        await server.open_memory_stream("127.0.0.1", server.port)


def test_open_memory_stream_from_other_thread() -> None:
    with run_fake_server_in_thread(CHAT_SESSION) as server:
        opener = partial(server.open_memory_stream, "127.0.0.1", server.port)

        with pytest.raises(RuntimeError, match="only in the trio run that serves"):
            trio.run(opener)
