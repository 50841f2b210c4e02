"""`Recorder`: writes every HTTP exchange of an lptrio `LongPoll` to a fixture.

Each exchange is appended and flushed the moment it completes, so a
capture that is killed loses at most the exchange in flight. Secrets are
redacted twice over: parameters named in `SECRET_PARAMS` are replaced by
name, and the token and every long poll key the session saw are replaced
by value wherever else they occur (other parameters, bodies, error
texts). Nothing else in a body is touched, unless the recorder scrubs:
then ids and message text are replaced as `Scrubber` describes.
"""

import json
from collections.abc import Callable
from typing import Any

from lpcore import SECRET_PARAMS, Request, RequestKind
from lptrio import HttpResponse, TransportError

from ._fixture import REDACTED_VALUE, Exchange, ExchangeKind, FixtureWriter
from ._scrub import Scrubber

_KINDS = {
    RequestKind.API: ExchangeKind.API,
    RequestKind.POLL: ExchangeKind.POLL,
    RequestKind.HISTORY: ExchangeKind.HISTORY,
}

#: Shorter secrets are redacted by name only: replacing a short value
#: everywhere would also rewrite ordinary text that happens to contain it.
#: Real VK tokens are 85 characters and keys 40.
MIN_SECRET_LENGTH = 8


class Recorder:
    """An `lptrio.ExchangeObserver` that appends each exchange to `writer`.

    `start` is the time (on the same clock the observer is called with)
    that offsets in the fixture count from.

    With `scrub` true, each exchange is scrubbed before it is written, with
    one mapping for the whole capture. The writer has already written the
    header, so scrub it first with `Scrubber.scrub_header` and pass that
    same `Scrubber` as `scrub`, which keeps the header's `user_id`
    consistent with the exchanges. `on_record` is called with each
    exchange after it is written, as written.
    """

    def __init__(
        self,
        writer: FixtureWriter,
        *,
        token: str,
        start: float,
        scrub: bool | Scrubber = False,
        on_record: Callable[[Exchange], None] | None = None,
    ) -> None:
        self._writer = writer
        self._start = start
        self._secrets: set[str] = set()
        self._add_secret(token)
        if scrub is True:
            scrub = Scrubber()
        self._scrubber = scrub if isinstance(scrub, Scrubber) else None
        self._on_record = on_record
        self.exchanges = 0

    def exchange(
        self,
        request: Request,
        *,
        started: float,
        finished: float,
        response: HttpResponse | None,
        error: TransportError | None,
    ) -> None:
        """Redact and append one finished exchange."""
        self._learn_secrets(request, response)
        kind = _KINDS[request.kind]
        common: dict[str, Any] = {
            "t": round(max(0.0, started - self._start), 6),
            "elapsed": round(max(0.0, finished - started), 6),
            "kind": kind,
            "method": request.method,
            "url": request.base_url,
            "params": {
                name: REDACTED_VALUE if name in SECRET_PARAMS else self._redact_text(value)
                for name, value in request.params.items()
            },
        }
        if response is not None:
            headers = tuple(
                (name.decode("latin-1"), self._redact_text(value.decode("latin-1")))
                for name, value in response.headers
            )
            record = Exchange(
                **common,
                status=response.status,
                headers=headers,
                body=self._redact_bytes(response.body),
            )
        else:
            assert error is not None
            record = Exchange(
                **common, error_kind=str(error.kind), error_detail=self._redact_text(str(error))
            )
        if self._scrubber is not None:
            record = self._scrubber.scrub_exchange(record)
        self._writer.append(record)
        self.exchanges += 1
        if self._on_record is not None:
            self._on_record(record)

    def _learn_secrets(self, request: Request, response: HttpResponse | None) -> None:
        self._add_secret(request.params.get("key"))
        if response is None or request.kind is RequestKind.POLL:
            return
        try:
            reply = json.loads(response.body)
        except ValueError:
            return
        result = reply.get("response") if isinstance(reply, dict) else None
        if not isinstance(result, dict):
            return
        # getLongPollServer returns the key at the top level,
        # getLongPollHistory inside `credentials`.
        for holder in (result, result.get("credentials")):
            if isinstance(holder, dict) and isinstance(holder.get("key"), str):
                self._add_secret(holder["key"])

    def _add_secret(self, value: str | None) -> None:
        if value is not None and len(value) >= MIN_SECRET_LENGTH:
            self._secrets.add(value)

    def _redact_text(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED_VALUE)
        return text

    def _redact_bytes(self, body: bytes) -> bytes:
        replacement = REDACTED_VALUE.encode()
        for secret in self._secrets:
            # A secret may sit in a JSON string escaped ("\/" for "/"), so
            # both its raw and its JSON-escaped forms are replaced.
            escaped = json.dumps(secret)[1:-1].replace("/", "\\/")
            for form in {secret, json.dumps(secret)[1:-1], escaped}:
                body = body.replace(form.encode(), replacement)
        return body
