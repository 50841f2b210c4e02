"""Checking fixtures before they are shared: schema errors, secrets and exchange order.

`check_fixture` reads a file with `read_fixture`, so any schema error is reported with its file,
line and reason. It then looks at every string in the file: header fields, URLs, request
parameters, response headers, bodies (the strings inside a JSON body, else the body as text),
transport error texts, and unknown fields, and at the order of the exchanges. These count as
findings:

- an unredacted secret: an `access_token` or `key` request parameter, or the `key` of a
  getLongPollServer reply or of getLongPollHistory's `credentials`, whose value is neither
  `<redacted>` nor empty;
- a token-like value: a string containing `vk1.a.` followed by a token character, which is
  how current VK user tokens start. Or a run of 85 or more characters from `[A-Za-z0-9_-]`
  that mixes letters and digits, because older VK tokens are 85 characters long. Long words
  and long numbers do not count;
- a key-like value: exactly 40 hex digits in a row, the form of every long poll key seen;
- an exchange that ends before an exchange on an earlier line, which a recorder that appends
  each exchange as it ends cannot write.

Each location gets at most one finding, the first that applies in the order above. The checks
are heuristics: a value in another form can still be a secret.
"""

import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lpcore import SECRET_PARAMS

from ._fixture import REDACTED_VALUE, Exchange, FixtureError, header_to_json, read_fixture

_TOKEN_CHARACTERS = "A-Za-z0-9_-"
_VK_TOKEN = re.compile(rf"vk1\.a\.[{_TOKEN_CHARACTERS}]")
_LONG_TOKEN = re.compile(rf"(?<![{_TOKEN_CHARACTERS}])[{_TOKEN_CHARACTERS}]{{85,}}")
_KEY = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{40}(?![0-9A-Fa-f])")

# Paths of the long poll key in API replies: in getLongPollServer's response, and in the
# credentials of getLongPollHistory.
_BODY_SECRET_PATHS = frozenset({"body.response.key", "body.response.credentials.key"})

#: Seconds an exchange may seem to end before an earlier one: two rounded times.
_END_TOLERANCE = 2e-6


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One problem in a fixture file: a schema error or a value that looks like a secret.

    `str()` gives "PATH:LINE: MESSAGE", or "PATH: MESSAGE" for the whole file.
    """

    path: Path
    #: The 1-based line number, or None when the finding is about the whole file.
    line: int | None
    message: str

    def __str__(self) -> str:
        location = str(self.path) if self.line is None else f"{self.path}:{self.line}"
        return f"{location}: {self.message}"


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckReport:
    """The result of checking one fixture file."""

    path: Path
    findings: tuple[Finding, ...]
    #: The number of exchange lines read, or None when a schema error stopped the reading.
    exchanges: int | None

    @property
    def ok(self) -> bool:
        """Whether the file has no schema error and no finding."""
        return not self.findings


def check_fixture(path: str | os.PathLike[str]) -> CheckReport:
    """Check one fixture file for schema errors and secret-looking values.

    Raises OSError when the file cannot be opened or read; invalid content is a finding.
    """
    fixture_path = Path(path)
    try:
        fixture = read_fixture(fixture_path)
    except FixtureError as error:
        finding = Finding(path=fixture_path, line=error.line, message=error.reason)
        return CheckReport(path=fixture_path, findings=(finding,), exchanges=None)

    findings = [
        Finding(path=fixture_path, line=1, message=message)
        for message in _scan(_json_strings(header_to_json(fixture.header), "header"))
    ]
    for number, exchange in enumerate(fixture.exchanges, start=2):
        findings.extend(
            Finding(path=fixture_path, line=number, message=message)
            for message in _scan(_exchange_strings(exchange))
        )
    findings.extend(
        Finding(path=fixture_path, line=line, message=message)
        for line, message in _order_findings(fixture.exchanges)
    )
    return CheckReport(
        path=fixture_path, findings=tuple(findings), exchanges=len(fixture.exchanges)
    )


def _seconds(value: float) -> str:
    """Format a time to the microsecond that fixtures keep, without trailing zeros."""
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _order_findings(exchanges: Sequence[Exchange]) -> Iterator[tuple[int, str]]:
    """Find exchanges that end before an earlier line's exchange.

    The recorder appends each exchange when it ends, so the ends (`t` plus
    `elapsed`) never go backwards in a recorded file. The start times may,
    because a poll held for 25 s ends after calls sent during it. Times are
    written rounded to the microsecond, hence the tolerance.
    """
    latest_end, latest_line = -math.inf, 0
    for line, exchange in enumerate(exchanges, start=2):
        end = exchange.t + exchange.elapsed
        if end < latest_end - _END_TOLERANCE:
            message = (
                f"exchange ends at {_seconds(end)} s, before the one on line {latest_line} "
                f"({_seconds(latest_end)} s); the recorder writes exchanges in the order they "
                "end, so lines were moved or times edited: put the lines back in order of "
                "t + elapsed"
            )
            yield line, message
        elif end >= latest_end:
            latest_end, latest_line = end, line


def find_secret(location: str, value: str) -> str | None:
    """Describe what makes `value` at `location` look like a secret, or return None."""
    if _is_secret_location(location) and value not in (REDACTED_VALUE, ""):
        return f"unredacted secret in {location}"
    if _VK_TOKEN.search(value) or any(_mixes(run) for run in _LONG_TOKEN.findall(value)):
        return f"token-like value in {location}"
    if _KEY.search(value):
        return f"key-like value in {location}"
    return None


def _scan(strings: Iterator[tuple[str, str]]) -> Iterator[str]:
    for location, value in strings:
        message = find_secret(location, value)
        if message is not None:
            yield message


def _is_secret_location(location: str) -> bool:
    name = location.removeprefix("params.")
    return (name != location and name in SECRET_PARAMS) or location in _BODY_SECRET_PATHS


def _mixes(run: str) -> bool:
    return any(character.isdigit() for character in run) and any(
        character.isalpha() for character in run
    )


def _exchange_strings(exchange: Exchange) -> Iterator[tuple[str, str]]:
    """Yield every string of an exchange with a name for where it is."""
    yield "url", exchange.url
    for name, value in exchange.params.items():
        yield f"params.{name}", value
    for name, value in exchange.headers:
        yield f"headers.{name}", value
    if exchange.body is not None:
        yield from _body_strings(exchange.body)
    if exchange.error_detail:
        yield "error.detail", exchange.error_detail
    yield from _extra_strings(exchange.extra, "")
    yield from _extra_strings(exchange.request_extra, "request.")
    yield from _extra_strings(exchange.response_extra, "response.")
    yield from _extra_strings(exchange.error_extra, "error.")


def _body_strings(body: bytes) -> Iterator[tuple[str, str]]:
    try:
        value = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        # Not JSON or not UTF-8: the text is scanned as it is, with undecodable bytes
        # replaced, because a secret is ASCII.
        yield "body", body.decode("utf-8", errors="replace")
        return
    yield from _json_strings(value, "body")


def _extra_strings(extra: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, str]]:
    for name, value in extra.items():
        yield from _json_strings(value, f"{prefix}{name}")


def _json_strings(value: Any, location: str) -> Iterator[tuple[str, str]]:
    """Yield every string inside a JSON value with its path, such as body.updates[0][5]."""
    # Iterative, so a deeply nested body cannot hit the recursion limit.
    pending: list[tuple[Any, str]] = [(value, location)]
    while pending:
        item, where = pending.pop()
        if isinstance(item, str):
            yield where, item
        elif isinstance(item, dict):
            pending.extend((child, f"{where}.{key}") for key, child in reversed(item.items()))
        elif isinstance(item, list):
            pending.extend(
                (child, f"{where}[{index}]") for index, child in reversed(list(enumerate(item)))
            )
