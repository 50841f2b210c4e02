"""A synchronous long poll client: lpcore's `Session` driven over the standard `http.client`.

Try it against a replay of a recorded session::

    uv run lprecord replay fixtures/chat_session.jsonl --tls --ca-out ca.pem --speed 50
    uv run python examples/sync_httpclient.py https://127.0.0.1:PORT/method ca.pem
"""

import http.client
import os
import ssl
import sys
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import lpcore

HTTP_ERRORS = (OSError, http.client.HTTPException)


class Connections:
    """Keep-alive connections, one per host and port."""

    def __init__(self, ssl_context: ssl.SSLContext | None) -> None:
        self._ssl_context = ssl_context
        self._idle: dict[str, http.client.HTTPConnection] = {}

    def send(self, request: lpcore.Request, timeout: float) -> tuple[int, bytes]:
        """Send `request` and return its status and body, or raise one of HTTP_ERRORS."""
        url = urlsplit(request.url)
        reused = url.netloc in self._idle
        connection = self._idle.pop(url.netloc, None) or self._connect(url.scheme, url.netloc)
        # http.client applies the timeout to each socket operation, not to the whole request.
        connection.timeout = timeout
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        try:
            target = f"{url.path}?{url.query}" if url.query else url.path
            # None rather than b"" keeps http.client from adding Content-Length: 0 to a GET.
            connection.request(request.method, target, request.body or None, dict(request.headers))
            response = connection.getresponse()
            body = response.read()
        except HTTP_ERRORS as error:
            connection.close()
            # Servers close idle keep-alive connections without notice, so a reset on a reused
            # one is retried on a new connection. Every request of the session may be repeated.
            if reused and isinstance(error, ConnectionResetError | BrokenPipeError):
                return self.send(request, timeout)
            raise
        self._idle[url.netloc] = connection
        return response.status, body

    def _connect(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        if scheme == "https":
            return http.client.HTTPSConnection(netloc, context=self._ssl_context)
        return http.client.HTTPConnection(netloc)

    def close(self) -> None:
        while self._idle:
            self._idle.popitem()[1].close()


def poll_updates(
    token: str, api_url: str, *, ssl_context: ssl.SSLContext | None = None, stop_after: float = 1e9
) -> Iterator[lpcore.Update]:
    """Yield typed updates in server order for `stop_after` seconds, raising fatal errors."""
    session = lpcore.Session(token, api_url=api_url)
    connections = Connections(ssl_context)
    deadline = time.monotonic() + stop_after
    try:
        while (now := time.monotonic()) < deadline:
            action = session.next_request(now)
            if isinstance(action, lpcore.Backoff):
                time.sleep(min(action.until, deadline) - now)
                continue
            try:
                status, body = connections.send(action, min(action.timeout, deadline - now))
            except HTTP_ERRORS as error:
                reason = f"{action.method} {action.base_url} failed: {error!r}"
                events = session.receive_failure(action, reason, time.monotonic())
            else:
                events = session.receive_response(action, status, body, time.monotonic())
            for event in events:
                if isinstance(event, lpcore.UpdatesReceived | lpcore.HistoryRecovered):
                    yield from event.updates
                elif isinstance(event, lpcore.RetryScheduled | lpcore.EventsLost):
                    print(event, file=sys.stderr)
    finally:
        connections.close()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: sync_httpclient.py API_URL [CAFILE]; a replay server accepts any token")
    context = ssl.create_default_context(cafile=sys.argv[2] if len(sys.argv) > 2 else None)
    token = os.environ.get("VK_TOKEN", "replay")
    for update in poll_updates(token, sys.argv[1], ssl_context=context):
        print(update, flush=True)
