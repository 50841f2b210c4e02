"""Strict replay: serve a recording's exact request sequence and explain any departure from it.

No I/O and no clock. `StrictReplay` matches each incoming request against the next
recorded exchange with `diff_request`, which lists every field that differs. A request
matches when that list is empty. A matching request gets the recorded response, sent after
the recorded delay. A request that does not match gets a `StrictMismatch`, which the server
sends to the client as a 500 reply and raises to whoever runs it.

The client's `key` and `ts` come from this server's replies, so they are compared by the
role they play rather than with the recorded text. The key must be the one this server
issued last, because a recorded key is redacted or belonged to VK. The ts must equal the
recorded one, which is the ts the replayed replies gave the client.
"""

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from ._fixture import REDACTED_VALUE, Exchange, ExchangeKind
from ._timeline import Reply

_JSON_TYPE = "application/json; charset=utf-8"
_SERVER_METHOD = "messages.getLongPollServer"
_HISTORY_METHOD = "messages.getLongPollHistory"
_API_PREFIX = "/method/"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedRequest:
    """A request as strict replay compares it: its kind, HTTP method, path and parameters."""

    kind: ExchangeKind
    method: str
    path: str
    params: Mapping[str, str]

    @classmethod
    def classify(cls, method: str, path: str, params: Mapping[str, str]) -> "ReceivedRequest":
        """Build a request, taking its kind from the path as the fake server routes it."""
        if path == f"{_API_PREFIX}{_HISTORY_METHOD}":
            kind = ExchangeKind.HISTORY
        elif path.startswith(_API_PREFIX):
            kind = ExchangeKind.API
        else:
            kind = ExchangeKind.POLL
        return cls(kind=kind, method=method, path=path, params=dict(params))

    def describe(self) -> str:
        """Return the request in one line, with the access token hidden.

        The key stays visible: this server issued it, and a wrong key is a likely mismatch.
        """
        shown = {
            name: REDACTED_VALUE if name == "access_token" else value
            for name, value in self.params.items()
        }
        query = f"?{urlencode(shown, safe='<>')}" if shown else ""
        return f"{self.kind} {self.method} {self.path}{query}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Difference:
    """One field in which a request differs from the recorded one. None means absent."""

    field: str
    expected: str | None
    got: str | None

    def __str__(self) -> str:
        return f"{self.field}: expected {_show(self.expected)}, got {_show(self.got)}"


def _show(value: str | None) -> str:
    return "(absent)" if value is None else repr(value)


def recorded_path(exchange: Exchange) -> str:
    """Return the path of a recorded exchange's URL."""
    return urlsplit(exchange.url).path or "/"


def diff_request(
    expected: Exchange, request: ReceivedRequest, *, issued_key: str | None
) -> list[Difference]:
    """List the fields in which `request` differs from the recorded `expected` request.

    The request matches when the list is empty. A recorded ``<redacted>`` value matches
    any value, and so does any access token, whose value no difference shows. Once this
    server has issued a key, the key must be `issued_key`, the one issued last, whatever
    the recording holds.
    """
    differences = [
        Difference(field=name, expected=recorded, got=received)
        for name, recorded, received in (
            ("kind", str(expected.kind), str(request.kind)),
            ("method", expected.method, request.method),
            ("path", recorded_path(expected), request.path),
        )
        if recorded != received
    ]

    names = list(expected.params) + [n for n in request.params if n not in expected.params]
    for name in names:
        want = _expected_param(expected, name, issued_key)
        have = request.params.get(name)
        if _param_matches(name, want, have):
            continue
        if name == "access_token":
            want, have = _hide(want), _hide(have)
        differences.append(Difference(field=f"params.{name}", expected=want, got=have))
    return differences


def _hide(value: str | None) -> str | None:
    return None if value is None else REDACTED_VALUE


def _expected_param(expected: Exchange, name: str, issued_key: str | None) -> str | None:
    recorded = expected.params.get(name)
    # Before this server issues a key, the recorded value is all there is to compare with.
    if name == "key" and recorded is not None and issued_key is not None:
        return issued_key
    return recorded


def _param_matches(name: str, want: str | None, have: str | None) -> bool:
    if want is None or have is None:
        return want is have
    if want == REDACTED_VALUE or name == "access_token":
        return True
    return want == have


class StrictMismatch(Exception):
    """A request that strict replay did not expect, with every field that differs.

    `step` counts recorded exchanges from 1; `expected` is the exchange at that step.
    """

    def __init__(
        self,
        *,
        step: int,
        total: int,
        request: ReceivedRequest,
        expected: Exchange,
        differences: list[Difference],
    ) -> None:
        self.step = step
        self.total = total
        self.request = request
        self.expected = expected
        self.differences = tuple(differences)
        lines = [
            f"request does not match step {step} of {total} of the recording "
            f"({expected.kind} {expected.method} {recorded_path(expected)})",
            f"got: {request.describe()}",
            *(str(difference) for difference in differences),
        ]
        super().__init__("\n".join(lines))


@dataclass(frozen=True, slots=True, kw_only=True)
class ScriptedReply:
    """Reply to a matched request: the recorded response or transport error."""

    #: The recorded exchange's number, counting from 1.
    step: int
    #: Seconds from the request's arrival to the reply: the recorded `elapsed`.
    delay: float
    #: The recorded response, or None when the recording has a transport error instead.
    reply: Reply | None
    #: The recorded transport error's kind, such as "timeout" or "reset".
    error_kind: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PastEnd:
    """A request after the last recorded exchange.

    A recording ends with the request that was in flight when the capture stopped, which
    the recorder never writes, so such a request is held rather than called a mismatch.
    """

    #: How many requests have arrived past the end, this one included.
    count: int


@dataclass(slots=True)
class StrictReplay:
    """The recorded exchanges of a session, served in order to one client.

    `server_base` is what messages.getLongPollServer replies name before the path, as
    in `ReplayEngine`. `speed` divides every recorded delay.
    """

    exchanges: tuple[Exchange, ...]
    server_base: str
    speed: float = 1.0
    seed: int = 0
    #: How many recorded exchanges have been served.
    position: int = 0
    #: How many requests arrived after the last recorded exchange.
    past_end: int = 0
    mismatches: list[StrictMismatch] = field(default_factory=list)
    _issued_key: str | None = None
    _keys_issued: int = 0

    @property
    def complete(self) -> bool:
        """Whether every recorded exchange has been served."""
        return self.position >= len(self.exchanges)

    def answer(self, request: ReceivedRequest) -> ScriptedReply | PastEnd | StrictMismatch:
        """Match `request` against the next recorded exchange and decide what to send."""
        if self.complete:
            self.past_end += 1
            return PastEnd(count=self.past_end)

        expected = self.exchanges[self.position]
        differences = diff_request(expected, request, issued_key=self._issued_key)
        if differences:
            mismatch = StrictMismatch(
                step=self.position + 1,
                total=len(self.exchanges),
                request=request,
                expected=expected,
                differences=differences,
            )
            self.mismatches.append(mismatch)
            return mismatch

        self.position += 1
        return ScriptedReply(
            step=self.position,
            delay=expected.elapsed / self.speed,
            reply=self._recorded_reply(expected),
            error_kind=expected.error_kind,
        )

    def _recorded_reply(self, exchange: Exchange) -> Reply | None:
        if exchange.status is None:
            return None
        content_type = dict(exchange.headers).get("content-type", _JSON_TYPE)
        body = exchange.body or b""
        if exchange.kind is not ExchangeKind.POLL:
            body = self._with_own_credentials(exchange, body)
        return Reply(status=exchange.status, body=body, content_type=content_type)

    def _with_own_credentials(self, exchange: Exchange, body: bytes) -> bytes:
        """Point recorded credentials at this server, with a key it issues now.

        A recorded messages.getLongPollServer result, or the `credentials` of a
        getLongPollHistory result, names VK's long poll server and a redacted key.
        """
        reply = exchange.json_body()
        result = reply.get("response") if isinstance(reply, dict) else None
        if not isinstance(result, dict):
            return body
        path = recorded_path(exchange)
        if path.endswith(f"/{_SERVER_METHOD}"):
            self._replace_credentials(result)
        elif path.endswith(f"/{_HISTORY_METHOD}") and isinstance(result.get("credentials"), dict):
            self._replace_credentials(result["credentials"])
        else:
            return body
        return json.dumps(reply, ensure_ascii=False, separators=(",", ":")).encode()

    def _replace_credentials(self, credentials: dict[str, Any]) -> None:
        if "key" in credentials:
            self._issued_key = hashlib.sha1(
                f"strict:{self.seed}:{self._keys_issued}".encode()
            ).hexdigest()
            self._keys_issued += 1
            credentials["key"] = self._issued_key
        if isinstance(credentials.get("server"), str):
            credentials["server"] = self.server_base + _server_path(credentials["server"])


def _server_path(server: str) -> str:
    """Return the path of a long poll server string, which may lack a scheme."""
    without_scheme = server.split("://", 1)[-1]
    _host, slash, path = without_scheme.partition("/")
    return slash + path
