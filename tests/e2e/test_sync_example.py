"""The synchronous `http.client` example against a fake server in a thread, in real time."""

import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from e2e_helpers import FIXTURES, recorded_updates
from sync_httpclient import Connections, poll_updates

from lpcore import Request, RequestKind, Update
from lprecord import run_fake_server_in_thread
from lprecord._history import history_form

TOKEN = "fake-token-0123456789abcdefghijklmnopqrstuvwxyz"
# Both fixtures last under 200 s recorded, so under 0.2 s at speed 1000. After
# that the server holds each poll for its whole 25 s wait, which the deadline cuts.
SPEED = 1000
STOP_AFTER = 1.0


def poll_fixture(fixture_name: str) -> tuple[list[Update], float]:
    """Return the updates the example received from a replay, and the seconds it took."""
    with run_fake_server_in_thread(FIXTURES / fixture_name, tls=True, speed=SPEED) as server:
        context = server.client_ssl_context()
        started = time.monotonic()
        updates = list(
            poll_updates(TOKEN, server.api_url, ssl_context=context, stop_after=STOP_AFTER)
        )
        return updates, time.monotonic() - started


def test_sync_example_gets_every_recorded_update() -> None:
    received, elapsed = poll_fixture("chat_session.jsonl")

    expected = recorded_updates(FIXTURES / "chat_session.jsonl")
    assert len(expected) >= 30
    assert [update.raw for update in received] == expected
    # The poll held after the last update is abandoned at the deadline.
    assert elapsed < STOP_AFTER + 0.5


def test_sync_example_recovers_after_failed_codes() -> None:
    received, _ = poll_fixture("failures_session.jsonl")

    recorded: list[Any] = recorded_updates(FIXTURES / "failures_session.jsonl")
    assert len(received) == len(recorded)
    # In real time, updates that arrive while the session handles failed: 1
    # come from getLongPollHistory, where message events keep four fields.
    expected = [
        history_form(raw) if update.recovered else raw
        for update, raw in zip(received, recorded, strict=True)
    ]
    assert [update.raw for update in received] == expected


@contextmanager
def ok_server(*, close_after_reply: bool) -> Iterator[tuple[str, list[int]]]:
    """Serve 200 "ok" to every GET on 127.0.0.1.

    Yields the base URL and a list that gets the client port of each new
    connection. With `close_after_reply` the server closes the connection
    after each reply without a ``Connection: close`` header, as servers do
    with idle keep-alive connections.
    """
    connections: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            connections.append(self.client_address[1])

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            self.close_connection = close_after_reply

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="ok-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", connections
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def get(url: str) -> Request:
    return Request(kind=RequestKind.POLL, method="GET", url=url, params={}, timeout=5.0)


def test_connections_reuse_keepalive_connection() -> None:
    connections = Connections(ssl_context=None)
    with ok_server(close_after_reply=False) as (base_url, opened):
        replies = [connections.send(get(f"{base_url}/poll?ts={ts}"), 5.0) for ts in range(3)]
        connections.close()

    assert replies == [(200, b"ok")] * 3
    assert len(opened) == 1


def test_connections_reconnect_after_server_close() -> None:
    connections = Connections(ssl_context=None)
    with ok_server(close_after_reply=True) as (base_url, opened):
        replies = [connections.send(get(f"{base_url}/poll?ts={ts}"), 5.0) for ts in range(3)]
        connections.close()

    assert replies == [(200, b"ok")] * 3
    assert len(opened) == 3
