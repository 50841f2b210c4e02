"""A synchronous long poll client: lpcore's `Session` driven over the standard `http.client`.

Try it against a replay of a recorded session::

    uv run lprecord replay fixtures/chat_session.jsonl --tls --ca-out ca.pem --speed 50
    uv run python examples/sync_httpclient.py https://127.0.0.1:PORT/method --cafile ca.pem
"""

import argparse
import http.client
import logging
import os
import ssl
import sys
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import lpcore

logger = logging.getLogger("sync_httpclient")


class Connections:
    """Keep-alive connections, one per scheme, host and port."""

    def __init__(self, ssl_context: ssl.SSLContext | None) -> None:
        self._ssl_context = ssl_context
        self._idle: dict[str, http.client.HTTPConnection] = {}

    def send(self, request: lpcore.Request, timeout: float) -> tuple[int, bytes]:
        """Send `request` and return its status and body, or raise OSError or HTTPException."""
        url = urlsplit(request.url)
        origin = f"{url.scheme}://{url.netloc}"
        reused = origin in self._idle
        connection = self._idle.pop(origin, None) or self._connect(url.scheme, url.netloc)
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
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            # Servers close idle keep-alive connections without notice, so a reset on a reused
            # one is retried on a new connection. Every request of the session may be repeated.
            if reused and isinstance(error, ConnectionResetError | BrokenPipeError):
                return self.send(request, timeout)
            raise
        self._idle[origin] = connection
        return response.status, body

    def _connect(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        if scheme == "https":
            return http.client.HTTPSConnection(netloc, context=self._ssl_context)
        if scheme == "http":
            return http.client.HTTPConnection(netloc)
        raise ValueError(f"invalid URL scheme {scheme!r} for {netloc!r}, expected http or https")

    def close(self) -> None:
        """Close every idle connection."""
        for connection in self._idle.values():
            connection.close()
        self._idle.clear()


def poll_updates(
    token: str,
    api_url: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    stop_after: float | None = None,
) -> Iterator[lpcore.Update]:
    """Yield typed updates in server order, for `stop_after` seconds or until an error.

    A request still running at the deadline is abandoned. `VersionError`
    and `ApiError` from the session propagate and end the iteration.
    """
    session = lpcore.Session(token, api_url=api_url)
    connections = Connections(ssl_context)
    deadline = float("inf") if stop_after is None else time.monotonic() + stop_after
    try:
        while (now := time.monotonic()) < deadline:
            action = session.next_request(now)
            if isinstance(action, lpcore.Backoff):
                time.sleep(min(action.until, deadline) - now)
                continue
            try:
                status, body = connections.send(action, min(action.timeout, deadline - now))
            except (OSError, http.client.HTTPException) as error:
                if time.monotonic() >= deadline:
                    break
                reason = f"{action.method} {action.base_url} failed: {error!r}"
                events = session.receive_failure(action, reason, time.monotonic())
            else:
                events = session.receive_response(action, status, body, time.monotonic())
            for event in events:
                if isinstance(event, lpcore.UpdatesReceived | lpcore.HistoryRecovered):
                    yield from event.updates
                elif isinstance(event, lpcore.RetryScheduled | lpcore.EventsLost):
                    logger.warning("%r", event)
    finally:
        connections.close()


def main(argv: list[str] | None = None) -> int:
    """Print each update of the session at the API URL given on the command line."""
    parser = argparse.ArgumentParser(description="Print User Long Poll updates.")
    parser.add_argument("api_url", help="API base URL, such as https://127.0.0.1:8443/method")
    parser.add_argument("--cafile", help="PEM file of the only CA to trust (lprecord --ca-out)")
    args = parser.parse_args(argv)
    context = None if args.cafile is None else ssl.create_default_context(cafile=args.cafile)
    # A replay server accepts any token.
    token = os.environ.get("VK_TOKEN", "replay-token")
    try:
        for update in poll_updates(token, args.api_url, ssl_context=context):
            print(update, flush=True)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
