"""Fixture format v1: a recorded long poll session as JSON Lines.

A fixture is UTF-8 text with one JSON object per line. Line 1 is the header: the format
version, the long poll settings of the capture and what was redacted. Every later line is one
HTTP exchange in the order it happened: the request, and either the response with its body
exactly as received or the transport error that ended it.

Bodies keep their exact bytes. A body is stored as parsed JSON only when serializing that JSON
again reproduces the bytes, else as text, else as base64 (see `encode_body`). Fields this
version does not know are kept and written back, so rewriting a file loses nothing.

Reading is JSON only, never pickle or eval, and every error names the file, the line and the
reason. This module does no logging and no I/O besides the fixture file itself.
"""

import base64
import binascii
import contextlib
import enum
import json
import math
import os
import string
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Self

FORMAT_VERSION = 1

#: Maximum size of a fixture file that `read_fixture` loads by default, in bytes.
MAX_FILE_SIZE = 256 * 1024 * 1024
#: Maximum size of one line that `read_fixture` parses by default, in bytes. The writer rejects
#: longer lines, so a file it writes can always be read with the defaults.
MAX_LINE_SIZE = 64 * 1024 * 1024

#: The value that replaces a secret parameter such as `access_token` or `key`.
REDACTED_VALUE = "<redacted>"

#: The body encodings, from most to least preferred by `encode_body`.
BODY_ENCODINGS = ("json", "json_ascii", "text", "base64")

# A fixture line nests three levels deeper than the body value inside it (line, response,
# body), and json.loads fails with RecursionError at roughly the interpreter's recursion
# limit. Bodies deeper than this cap are stored as text, which keeps their exact bytes too,
# so every written line reads back.
_MAX_JSON_BODY_DEPTH = 100

_HEADER_KEYS = frozenset(
    {
        "lprecord",
        "tool",
        "lp_version",
        "mode",
        "wait",
        "api_version",
        "user_id",
        "redacted",
        "scrubbed",
        "source",
    }
)
_EXCHANGE_KEYS = frozenset({"t", "elapsed", "kind", "request", "response", "error"})
_REQUEST_KEYS = frozenset({"method", "url", "params"})
_RESPONSE_KEYS = frozenset({"status", "headers", "body"})
_ERROR_KEYS = frozenset({"kind", "detail"})

_MIB = 1024 * 1024


def _tool_name() -> str:
    try:
        return f"lprecord {metadata.version('vk-longpoll-kit')}"
    except metadata.PackageNotFoundError:
        # Imported from a source tree that was never installed, so no version is known.
        return "lprecord"


#: The `tool` value written into new headers, such as "lprecord 0.1.0".
TOOL_NAME = _tool_name()


class _Marker(enum.Enum):
    REQUIRED = enum.auto()
    NOT_JSON = enum.auto()


class ExchangeKind(enum.StrEnum):
    """What an exchange was for, as written in its `kind` field."""

    #: A VK API method call, such as `messages.getLongPollServer`.
    API = "api"
    #: A long poll request (`act=a_check`) to the long poll server.
    POLL = "poll"
    #: A `messages.getLongPollHistory` call that fetches events a poll missed.
    HISTORY = "history"


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    """The first line of a fixture: how the session was captured."""

    #: The long poll `version` parameter the capture sent.
    lp_version: int
    #: The long poll `mode` bit mask the capture sent.
    mode: int
    #: The long poll `wait` parameter, in seconds.
    wait: int
    #: The VK API version `v`, such as "5.199".
    api_version: str
    #: The account the capture ran as, or None when not recorded.
    user_id: int | None = None
    #: Names of request parameters whose values were replaced by `REDACTED_VALUE`.
    redacted: tuple[str, ...] = ("access_token", "key")
    #: Whether ids and text were replaced by consistent fake values.
    scrubbed: bool = False
    #: The program and version that wrote the file.
    tool: str = TOOL_NAME
    #: Free text about the capture, such as where it was made.
    source: str = ""
    #: Header fields this version does not know, written back unchanged after the known ones.
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode < 0:
            raise ValueError(f"mode must be a non-negative bit mask, got {self.mode}")
        if self.wait < 0:
            raise ValueError(f"wait must be a non-negative number of seconds, got {self.wait}")
        _check_extra_keys(self.extra, _HEADER_KEYS, "header")


@dataclass(frozen=True, slots=True, kw_only=True)
class Exchange:
    """One HTTP request and its response, or the transport error that ended it.

    A response sets `status` and `body` and leaves `error_kind` None. A transport error sets
    `error_kind` (and usually `error_detail`) and leaves `status` and `body` None.
    """

    #: Seconds from the start of the capture to when the request was sent.
    t: float
    #: Seconds from sending the request until the response completed or the error happened.
    elapsed: float
    kind: ExchangeKind
    #: The HTTP method, such as "GET" or "POST".
    method: str
    #: The URL without a query: scheme, host, port and path.
    url: str
    #: Request parameters from the query and the form body, secrets already redacted.
    params: Mapping[str, str]
    #: The HTTP status code of the response.
    status: int | None = None
    #: The response's header fields in the order received, duplicates kept. Names are
    #: lowercase; bytes are decoded as ISO-8859-1, so every header value round-trips.
    headers: tuple[tuple[str, str], ...] = ()
    #: The response body exactly as received.
    body: bytes | None = None
    #: The transport error kind, such as "timeout", "reset" or "tls".
    error_kind: str | None = None
    #: A human-readable description of the transport error.
    error_detail: str = ""
    #: Exchange fields this version does not know, written back after the known ones.
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: Unknown fields of the `request` object.
    request_extra: Mapping[str, Any] = field(default_factory=dict)
    #: Unknown fields of the `response` object.
    response_extra: Mapping[str, Any] = field(default_factory=dict)
    #: Unknown fields of the `error` object.
    error_extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_seconds("t", self.t)
        _check_seconds("elapsed", self.elapsed)
        if not isinstance(self.kind, ExchangeKind):
            raise TypeError(f"kind must be an ExchangeKind, got {self.kind!r}")
        if "?" in self.url:
            raise ValueError(
                f"url {self.url!r} contains a query; put its parameters in params instead"
            )
        self._check_outcome()
        _check_extra_keys(self.extra, _EXCHANGE_KEYS, "exchange")
        _check_extra_keys(self.request_extra, _REQUEST_KEYS, "request")
        _check_extra_keys(self.response_extra, _RESPONSE_KEYS, "response")
        _check_extra_keys(self.error_extra, _ERROR_KEYS, "error")

    def _check_outcome(self) -> None:
        has_response = self.status is not None or self.body is not None
        if self.error_kind is not None and has_response:
            raise ValueError("an exchange has either a response or an error, not both")
        if self.error_kind is None:
            self._check_response()
        elif not self.error_kind:
            raise ValueError("error_kind must not be empty")
        elif self.response_extra:
            raise ValueError("response_extra is set but the exchange has no response")

    def _check_response(self) -> None:
        if self.status is None and self.body is None:
            raise ValueError("an exchange needs a response (status and body) or an error_kind")
        if self.status is None or self.body is None:
            raise ValueError("a response needs both status and body")
        if not 100 <= self.status <= 599:
            raise ValueError(f"status {self.status} is not an HTTP status code (100-599)")
        if self.error_detail:
            raise ValueError("error_detail is set but the exchange has no error_kind")
        if self.error_extra:
            raise ValueError("error_extra is set but the exchange has no error")

    def json_body(self) -> Any:
        """Parse the body as JSON.

        Returns None for a transport error or a body that is not valid JSON, and also for the
        body `null`.
        """
        if self.body is None:
            return None
        try:
            return _loads_strict(self.body.decode("utf-8"))
        except (ValueError, RecursionError):
            # UnicodeDecodeError and JSONDecodeError are both ValueErrors.
            return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Fixture:
    """A whole fixture: the header and the exchanges in the order they happened."""

    header: Header
    exchanges: tuple[Exchange, ...]
    #: The file it was read from, or None when built in memory.
    path: Path | None = None
    #: Whether `read_fixture(..., allow_truncated_tail=True)` dropped an incomplete last line.
    truncated: bool = False


class FixtureError(Exception):
    """Invalid content in a fixture file, with the file, the line and the reason.

    `str()` gives "PATH:LINE: REASON", and the reason ends with what to do about it.
    """

    def __init__(self, path: Path | None, line: int | None, reason: str) -> None:
        super().__init__(path, line, reason)
        self.path = path
        #: The 1-based line number, or None when the error is about the whole file.
        self.line = line
        self.reason = reason

    def __str__(self) -> str:
        location = "" if self.path is None else str(self.path)
        if self.line is not None:
            location = f"{location}:{self.line}"
        return f"{location}: {self.reason}" if location else self.reason


# --- bodies ---------------------------------------------------------------------------


def encode_body(body: bytes) -> dict[str, Any]:
    """Encode response bytes as the `body` object of a fixture line.

    The result is {"json": value} when compact JSON with raw non-ASCII characters reproduces
    the bytes exactly, {"json_ascii": value} when compact JSON with \\u escapes does,
    {"text": str} for other UTF-8, and {"base64": str} for anything else.
    `decode_body` returns the original bytes for every input.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(body).decode("ascii")}

    value = _parse_json_body(text)
    if value is not _Marker.NOT_JSON:
        # A value with a lone surrogate fails the first dump, because a UTF-8 fixture line
        # cannot hold it unescaped. Such bodies are stored as text.
        compact = _dump_compact(value, ensure_ascii=False)
        if compact == body:
            return {"json": value}
        if compact is not None and _dump_compact(value, ensure_ascii=True) == body:
            return {"json_ascii": value}
    return {"text": text}


def decode_body(obj: Mapping[str, Any]) -> bytes:
    """Decode the `body` object of a fixture line back into the bytes received.

    Raises ValueError when the object is not exactly one known encoding with a valid value,
    and TypeError when it is not a mapping at all.
    """
    if not isinstance(obj, Mapping):
        raise TypeError(f'body must be an object such as {{"text": "..."}}, got {_describe(obj)}')
    if len(obj) != 1:
        keys = ", ".join(repr(key) for key in obj) or "none"
        raise ValueError(
            f"body must have exactly one key, the encoding ({', '.join(BODY_ENCODINGS)}); "
            f"got {keys}"
        )
    [(encoding, value)] = obj.items()
    decoder = _BODY_DECODERS.get(encoding)
    if decoder is None:
        raise ValueError(
            f"unknown body encoding {encoding!r}; expected one of {', '.join(BODY_ENCODINGS)}"
        )
    return decoder(value)


def _decode_json(value: Any) -> bytes:
    data = _dump_compact(value, ensure_ascii=False)
    if data is None:
        raise ValueError(
            "body 'json' value cannot be written as UTF-8 JSON because it contains a lone "
            "surrogate or a non-finite number; store the body as 'json_ascii' or 'text'"
        )
    return data


def _decode_json_ascii(value: Any) -> bytes:
    data = _dump_compact(value, ensure_ascii=True)
    if data is None:
        raise ValueError(
            "body 'json_ascii' value cannot be written as JSON because it contains "
            "a non-finite number; store the body as 'text'"
        )
    return data


def _decode_text(value: Any) -> bytes:
    if not _is_str(value):
        raise ValueError(f"body 'text' must be a string, got {_describe(value)}")
    text: str = value
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(
            f"body 'text' contains a lone surrogate at character {err.start + 1}, "
            "which UTF-8 cannot encode; store such a body as 'base64'"
        ) from None


def _decode_base64(value: Any) -> bytes:
    if not _is_str(value):
        raise ValueError(f"body 'base64' must be a string, got {_describe(value)}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        # A non-ASCII string raises a plain ValueError rather than binascii.Error.
        raise ValueError(f"body 'base64' is not valid base64: {_base64_problem(value)}") from None


_BASE64_ALPHABET = frozenset(string.ascii_letters + string.digits + "+/=")


def _base64_problem(text: str) -> str:
    """Return the reason that `text`, which b64decode rejected, is not base64."""
    for index, character in enumerate(text):
        if character not in _BASE64_ALPHABET:
            return (
                f"character {character!r} at index {index} is not in the base64 alphabet "
                "(A-Z, a-z, 0-9, + and /, with = as padding)"
            )
    return f"its {len(text)} characters are not whole groups of 4 with '=' only as padding"


_BODY_DECODERS: dict[str, Callable[[Any], bytes]] = {
    "json": _decode_json,
    "json_ascii": _decode_json_ascii,
    "text": _decode_text,
    "base64": _decode_base64,
}


def _parse_json_body(text: str) -> Any:
    """Parse a body as strict JSON, or return _Marker.NOT_JSON."""
    try:
        value = _loads_strict(text)
    except (ValueError, RecursionError):
        return _Marker.NOT_JSON
    if _nests_deeper_than(value, _MAX_JSON_BODY_DEPTH):
        return _Marker.NOT_JSON
    return value


def _dump_compact(value: Any, *, ensure_ascii: bool) -> bytes | None:
    """Serialize as compact JSON in UTF-8, or return None when that is impossible."""
    try:
        text = json.dumps(value, ensure_ascii=ensure_ascii, separators=(",", ":"), allow_nan=False)
        return text.encode("utf-8")
    except (ValueError, TypeError, RecursionError):
        # UnicodeEncodeError (a lone surrogate) is a ValueError, and so is NaN or infinity.
        return None


def _nests_deeper_than(value: Any, limit: int) -> bool:
    # Iterative, so a deep value cannot hit the recursion limit here.
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity, but JSON does not, and other languages'
    # parsers reject them.
    raise ValueError(f"{name} is not valid JSON")


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _loads_strict(text: str) -> Any:
    return json.loads(text, parse_constant=_reject_constant)


# --- header and exchange objects --------------------------------------------------------


def header_to_json(header: Header) -> dict[str, Any]:
    """Build the JSON object of a header line, known fields first and then `extra`."""
    obj: dict[str, Any] = {
        "lprecord": FORMAT_VERSION,
        "tool": header.tool,
        "lp_version": int(header.lp_version),
        "mode": int(header.mode),
        "wait": int(header.wait),
        "api_version": header.api_version,
        "user_id": header.user_id,
        "redacted": list(header.redacted),
        "scrubbed": header.scrubbed,
        "source": header.source,
    }
    obj.update(header.extra)
    return obj


def header_from_json(obj: Mapping[str, Any]) -> Header:
    """Build a Header from the JSON object of a header line of the current format version.

    `lp_version`, `mode`, `wait` and `api_version` are required. When a hand-written header
    leaves out the others, `user_id` reads as None, `redacted` as empty, `scrubbed` as false,
    and `tool` and `source` as "". Raises ValueError naming the field at fault.
    """
    version = _check_format_version(obj)
    if version != FORMAT_VERSION:
        raise ValueError(
            f"format version {version} must be migrated first; load the file with read_fixture"
        )
    where = "header"
    return Header(
        lp_version=_get(obj, "lp_version", where, _is_int, "an integer"),
        mode=_get(obj, "mode", where, _is_int, "an integer"),
        wait=_get(obj, "wait", where, _is_int, "an integer"),
        api_version=_get(obj, "api_version", where, _is_str, "a string"),
        user_id=_get(obj, "user_id", where, _is_int_or_null, "an integer or null", default=None),
        redacted=tuple(
            _get(obj, "redacted", where, _is_str_list, "an array of strings", default=())
        ),
        scrubbed=_get(obj, "scrubbed", where, _is_bool, "true or false", default=False),
        tool=_get(obj, "tool", where, _is_str, "a string", default=""),
        source=_get(obj, "source", where, _is_str, "a string", default=""),
        extra=_unknown_fields(obj, _HEADER_KEYS),
    )


def exchange_to_json(exchange: Exchange) -> dict[str, Any]:
    """Build the JSON object of an exchange line, known fields first and then `extra`."""
    obj: dict[str, Any] = {
        "t": exchange.t,
        "elapsed": exchange.elapsed,
        "kind": exchange.kind.value,
        "request": {
            "method": exchange.method,
            "url": exchange.url,
            "params": dict(exchange.params),
            **exchange.request_extra,
        },
    }
    if exchange.body is not None:
        response: dict[str, Any] = {"status": exchange.status}
        if exchange.headers:
            response["headers"] = [[name, value] for name, value in exchange.headers]
        obj["response"] = {
            **response,
            "body": encode_body(exchange.body),
            **exchange.response_extra,
        }
    else:
        obj["error"] = {
            "kind": exchange.error_kind,
            "detail": exchange.error_detail,
            **exchange.error_extra,
        }
    obj.update(exchange.extra)
    return obj


def exchange_from_json(obj: Mapping[str, Any]) -> Exchange:
    """Build an Exchange from the JSON object of an exchange line.

    Raises ValueError naming the field at fault.
    """
    if "lprecord" in obj:
        raise ValueError(
            "line is a second header, but a fixture has one header, on line 1 "
            "(were two fixtures joined into one file?)"
        )
    if "response" in obj and "error" in obj:
        raise ValueError("exchange has both 'response' and 'error'; keep the one that happened")
    if "response" not in obj and "error" not in obj:
        raise ValueError("exchange is missing 'response' (or 'error' for a transport error)")

    request = _get(obj, "request", "exchange", _is_object, "an object")
    outcome = _response_fields(obj) if "response" in obj else _error_fields(obj)
    return Exchange(
        t=_get(obj, "t", "exchange", _is_number, "a number"),
        elapsed=_get(obj, "elapsed", "exchange", _is_number, "a number"),
        kind=_exchange_kind(obj),
        method=_get(request, "method", "request", _is_str, "a string"),
        url=_get(request, "url", "request", _is_str, "a string"),
        params=_request_params(request),
        extra=_unknown_fields(obj, _EXCHANGE_KEYS),
        request_extra=_unknown_fields(request, _REQUEST_KEYS),
        **outcome,
    )


def _exchange_kind(obj: Mapping[str, Any]) -> ExchangeKind:
    value = _get(obj, "kind", "exchange", _is_str, "a string")
    try:
        return ExchangeKind(value)
    except ValueError:
        expected = ", ".join(kind.value for kind in ExchangeKind)
        raise ValueError(f"unknown exchange kind {value!r}; expected one of {expected}") from None


def _request_params(request: Mapping[str, Any]) -> dict[str, str]:
    params = _get(request, "params", "request", _is_object, "an object")
    for key, value in params.items():
        if not _is_str(value):
            raise ValueError(
                f"request param {key!r} must be a string as sent on the wire, "
                f"got {_describe(value)}"
            )
    return dict(params)


def _response_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    response = _get(obj, "response", "exchange", _is_object, "an object")
    body = _get(response, "body", "response", _is_object, "an object")
    headers = _get(
        response,
        "headers",
        "response",
        _is_header_list,
        "a list of [name, value] string pairs",
        default=[],
    )
    return {
        "status": _get(response, "status", "response", _is_int, "an integer"),
        "headers": tuple((name, value) for name, value in headers),
        "body": decode_body(body),
        "response_extra": _unknown_fields(response, _RESPONSE_KEYS),
    }


def _error_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    error = _get(obj, "error", "exchange", _is_object, "an object")
    return {
        "error_kind": _get(error, "kind", "error", _is_str, "a string"),
        "error_detail": _get(error, "detail", "error", _is_str, "a string", default=""),
        "error_extra": _unknown_fields(error, _ERROR_KEYS),
    }


def _get(
    obj: Mapping[str, Any],
    key: str,
    where: str,
    check: Callable[[Any], bool],
    expected: str,
    *,
    default: Any = _Marker.REQUIRED,
) -> Any:
    """Return obj[key] after checking its JSON type, or `default` when the key is absent."""
    if key not in obj:
        if default is _Marker.REQUIRED:
            raise ValueError(f"{where} is missing {key!r}")
        return default
    value = obj[key]
    if not check(value):
        raise ValueError(f"{where} field {key!r} must be {expected}, got {_describe(value)}")
    return value


def _is_int(value: Any) -> bool:
    # bool is a subclass of int in Python, but true is no integer in JSON.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_header_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(part, str) for part in pair)
        for pair in value
    )


def _is_int_or_null(value: Any) -> bool:
    return value is None or _is_int(value)


def _is_number(value: Any) -> bool:
    return _is_int(value) or isinstance(value, float)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_object(value: Any) -> bool:
    return isinstance(value, dict)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _unknown_fields(obj: Mapping[str, Any], known: frozenset[str]) -> dict[str, Any]:
    return {key: value for key, value in obj.items() if key not in known}


def _check_extra_keys(extra: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    shadowed = sorted(key for key in extra if key in known)
    if shadowed:
        raise ValueError(
            f"extra fields {shadowed} of the {where} clash with known fields; "
            "set those through their attributes"
        )


def _check_seconds(name: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite, non-negative number of seconds, got {value}")


def _describe(value: Any) -> str:
    """Describe a JSON value for an error message: its type and a short excerpt."""
    if value is None:
        return "null"
    try:
        excerpt = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        excerpt = repr(value)
    if len(excerpt) > 40:
        excerpt = excerpt[:37] + "..."
    return f"{_json_type(value)} {excerpt}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a Python {type(value).__name__}"


# --- format versions ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Migration:
    """Rewrites of header and exchange objects from one format version to the next."""

    header: Callable[[dict[str, Any]], dict[str, Any]]
    exchange: Callable[[dict[str, Any]], dict[str, Any]]


# Migration policy. A new field that old readers may ignore needs no new version, because
# unknown fields are kept. For a change that an old reader would misread, such as a renamed
# or retyped field or a new meaning, raise FORMAT_VERSION by one and add _MIGRATIONS[n],
# which turns version n objects into version n + 1. read_fixture chains the steps, so every
# older file stays readable, and it rejects a file when a step is missing. A migration takes
# the parsed JSON object of a header or an exchange line and returns the rewritten object.
# It may raise ValueError, which read_fixture reports with the file and the line. The reader
# sets "lprecord" in the header after the last step, so a migration need not. Files are
# migrated in memory only, and writing one back writes the current version. Version 1 is the
# first, so there are no migrations yet.
_MIGRATIONS: dict[int, _Migration] = {}


def _check_format_version(obj: Mapping[str, Any]) -> int:
    if "lprecord" not in obj:
        raise ValueError(
            "missing header: the line has no 'lprecord' field "
            '(a fixture starts with a header line such as {"lprecord": 1, ...})'
        )
    version = obj["lprecord"]
    if not _is_int(version):
        raise ValueError(f"format version must be an integer, got {_describe(version)}")
    if version < 1:
        raise ValueError(f"format version {version} is not valid; versions start at 1")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"format version {version} is newer than this lprecord supports "
            f"({FORMAT_VERSION}); upgrade lprecord"
        )
    return int(version)


def _migrations_from(version: int) -> list[_Migration]:
    missing = [step for step in range(version, FORMAT_VERSION) if step not in _MIGRATIONS]
    if missing:
        raise ValueError(
            f"format version {version} cannot be upgraded because this lprecord has no "
            f"migration from version {missing[0]}; read the file with the lprecord that wrote it"
        )
    return [_MIGRATIONS[step] for step in range(version, FORMAT_VERSION)]


def _migrate_header(obj: dict[str, Any], migrations: list[_Migration]) -> dict[str, Any]:
    for migration in migrations:
        obj = migration.header(obj)
    obj["lprecord"] = FORMAT_VERSION
    return obj


def _migrate_exchange(obj: dict[str, Any], migrations: list[_Migration]) -> dict[str, Any]:
    for migration in migrations:
        obj = migration.exchange(obj)
    return obj


# --- reading ------------------------------------------------------------------------------


def read_fixture(
    path: str | os.PathLike[str],
    *,
    allow_truncated_tail: bool = False,
    max_file_size: int = MAX_FILE_SIZE,
    max_line_size: int = MAX_LINE_SIZE,
) -> Fixture:
    """Read and validate a whole fixture file.

    A last line that has no newline and is not valid JSON is what a capture killed mid-write
    leaves behind. It is an error unless `allow_truncated_tail` is true, in which case the line
    is dropped and `Fixture.truncated` is set. Files of an older format version are migrated.

    Raises FixtureError naming the file, the line and the reason for any invalid content,
    and OSError when the file cannot be opened or read.
    """
    fixture_path = Path(path)
    data = _read_limited(fixture_path, max_file_size)
    lines, truncated = _split_lines(fixture_path, data, allow_truncated_tail)

    header_obj = _load_line(fixture_path, 1, lines[0], max_line_size)
    with _reason_at(fixture_path, 1):
        migrations = _migrations_from(_check_format_version(header_obj))
        header = header_from_json(_migrate_header(header_obj, migrations))

    exchanges = []
    for number, line in enumerate(lines[1:], start=2):
        obj = _load_line(fixture_path, number, line, max_line_size)
        with _reason_at(fixture_path, number):
            exchanges.append(exchange_from_json(_migrate_exchange(obj, migrations)))
    return Fixture(
        header=header, exchanges=tuple(exchanges), path=fixture_path, truncated=truncated
    )


@contextlib.contextmanager
def _reason_at(path: Path, line: int) -> Iterator[None]:
    """Turn a ValueError raised while reading a line into a FixtureError for that line."""
    try:
        yield
    except ValueError as err:
        raise FixtureError(path, line, str(err)) from err


def _read_limited(path: Path, max_file_size: int) -> bytes:
    with path.open("rb") as file:
        # Reading one byte past the limit detects an oversized file even when it grows
        # between a stat() call and the read.
        data = file.read(max_file_size + 1)
    if len(data) > max_file_size:
        raise FixtureError(
            path,
            None,
            f"file is over the {_format_size(max_file_size)} limit for a fixture; "
            "pass a larger max_file_size to read it",
        )
    return data


def _split_lines(path: Path, data: bytes, allow_truncated_tail: bool) -> tuple[list[bytes], bool]:
    """Split into lines and deal with an incomplete last line.

    Only b"\\n" ends a line. str.splitlines() would also split at U+2028 or U+0085, which
    JSON strings may contain unescaped.
    """
    if not data:
        raise FixtureError(path, None, "file is empty; a fixture starts with a header line")
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline, as the writer leaves it
    truncated = False
    if tail and _is_complete_json(tail):
        lines.append(tail)
    elif tail and allow_truncated_tail:
        truncated = True
    elif tail:
        raise FixtureError(
            path,
            len(lines) + 1,
            "line is cut off: it has no newline at the end and is not valid JSON, as when a "
            "capture is killed mid-write; delete that last line (or, from Python, pass "
            "allow_truncated_tail=True to read_fixture) to keep the exchanges before it",
        )
    if not lines:
        raise FixtureError(
            path, 1, "the header line is cut off, so the file has no complete line to read"
        )
    return lines, truncated


def _is_complete_json(line: bytes) -> bool:
    try:
        _loads_strict(line.decode("utf-8"))
    except (ValueError, RecursionError):
        return False
    return True


def _load_line(path: Path, number: int, line: bytes, max_line_size: int) -> dict[str, Any]:
    """Parse one line into a JSON object, raising FixtureError for anything else."""
    if len(line) > max_line_size:
        raise FixtureError(
            path,
            number,
            f"line is over the {_format_size(max_line_size)} limit for one line; "
            "pass a larger max_line_size to read it",
        )
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FixtureError(
            path, number, f"line is not valid UTF-8 at byte {err.start + 1}; save it as UTF-8"
        ) from None
    if not text.strip():
        raise FixtureError(path, number, "line is blank; JSON Lines allows no blank lines")

    obj = _parse_line_json(path, number, text)
    if not isinstance(obj, dict):
        raise FixtureError(
            path,
            number,
            f"line is {_json_type(obj)}, not an object; every fixture line is one JSON object",
        )
    return obj


def _parse_line_json(path: Path, number: int, text: str) -> Any:
    try:
        return json.loads(
            text, parse_constant=_reject_constant, object_pairs_hook=_reject_duplicate_keys
        )
    except json.JSONDecodeError as err:
        # json's messages read "Expecting ',' delimiter", "Unterminated string starting at".
        reason = f"line is not valid JSON: {err.msg}: column {err.colno}"
    except RecursionError:
        reason = "line nests too deeply to parse"
    except ValueError as err:
        # Raised by the hooks: NaN or Infinity, or a duplicate key.
        reason = f"line is not valid JSON: {err}"
    raise FixtureError(path, number, reason)


def _format_size(size: int) -> str:
    if size % _MIB == 0:
        return f"{size // _MIB} MiB"
    return f"{size} bytes"


# --- writing ------------------------------------------------------------------------------


def _dump_line(obj: Mapping[str, Any]) -> bytes:
    """Serialize one fixture line: keys in insertion order, raw UTF-8, a space after , and :."""
    text = json.dumps(obj, ensure_ascii=False, separators=(", ", ": "), allow_nan=False)
    try:
        data = (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            "line contains a lone surrogate, which UTF-8 cannot encode; "
            "check the params and extra fields"
        ) from None
    if len(data) > MAX_LINE_SIZE:
        raise ValueError(
            f"line would be {len(data)} bytes, over the {_format_size(MAX_LINE_SIZE)} "
            "that read_fixture accepts by default"
        )
    return data


class FixtureWriter:
    """Write a fixture one line at a time, so a killed capture keeps every finished exchange.

    Each line is written whole and flushed to the operating system at once, which keeps it
    when the process is killed. With `sync=True` each line is also passed to os.fsync, which
    should keep it through an OS crash or power loss as well, at the cost of one disk sync
    per line.

    After a failed write the file may end with a partial line, so the writer rejects further
    lines. Such a file still reads with `read_fixture(..., allow_truncated_tail=True)`.
    """

    def __init__(self, file: BinaryIO, *, path: Path | None = None, sync: bool = False) -> None:
        """Wrap an open binary file. Use `create` to start a fixture file with its header."""
        self._file = file
        self._sync = sync
        self._failed = False
        self.path = path

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        header: Header,
        *,
        overwrite: bool = False,
        sync: bool = False,
    ) -> Self:
        """Create a fixture file and write its header line.

        Raises FileExistsError when the file exists, unless `overwrite` is true.
        """
        fixture_path = Path(path)
        line = _dump_line(header_to_json(header))
        file = fixture_path.open("wb" if overwrite else "xb")
        writer = cls(file, path=fixture_path, sync=sync)
        try:
            writer._write(line)
        except BaseException:
            file.close()
            raise
        return writer

    @property
    def closed(self) -> bool:
        return self._file.closed

    def append(self, exchange: Exchange) -> None:
        """Write one exchange line and flush it, and fsync it when the writer syncs."""
        self._write(_dump_line(exchange_to_json(exchange)))

    def close(self) -> None:
        """Close the file. Closing again does nothing."""
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _write(self, line: bytes) -> None:
        target = "the fixture file" if self.path is None else str(self.path)
        if self._file.closed:
            raise ValueError(f"cannot write to {target}: the writer is closed")
        if self._failed:
            raise ValueError(
                f"cannot write to {target}: an earlier write failed and may have left "
                "a partial line; start a new fixture file"
            )
        try:
            self._file.write(line)
            self._file.flush()
            if self._sync:
                os.fsync(self._file.fileno())
        except OSError:
            self._failed = True
            raise


def write_fixture(
    path: str | os.PathLike[str],
    header: Header,
    exchanges: Iterable[Exchange],
    *,
    overwrite: bool = False,
) -> None:
    """Write a whole fixture file: the header line, then one line per exchange."""
    with FixtureWriter.create(path, header, overwrite=overwrite) as writer:
        for exchange in exchanges:
            writer.append(exchange)
