"""pytest plugin: fake VK long poll servers as fixtures, and a record mode for their files.

Registered through the ``pytest11`` entry point, so installing the
package is enough. This module imports the toolkit only when a fixture is
used, and lprecord's package loads its modules on first use too.

The ``lp_fixture`` marker on a test (or its class or module) names the
fixture file its server replays. A relative path is taken from the fixture
directory: ``--lprecord-fixture-dir``, else the ``lprecord_fixture_dir``
ini option, else the rootdir. Without the marker the shipped demo chat session is replayed.

The record mode decides whether a marked file is first recorded from VK
(with the token in ``VK_TOKEN``) and then replayed:

- ``none`` replays only;
- ``once`` records the file if it does not exist;
- ``new`` records the file if it does not exist or is incomplete: its last
  line was cut off by an interrupted capture, it contains no long poll
  session, or it has fewer updates than the marker's ``record_updates``;
- ``all`` records every marked file again, once per test run.

Without ``VK_TOKEN`` every mode replays. Each setting is taken from the
first of these that gives it: the marker's keyword arguments, the command
line, the ini file, the default.
"""

import contextlib
import enum
import inspect
import math
import os
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ._fixture import Fixture
    from ._server import FakeServer

MARKER = "lp_fixture"
TOKEN_VARIABLE = "VK_TOKEN"
#: Repeats lpcore.DEFAULT_API_URL (a test keeps them equal), so that
#: registering the options needs no import of lpcore.
VK_API_URL = "https://api.vk.com/method"
DEFAULT_RECORD_DURATION = 60.0
#: The `wait` (seconds) of the polls made while recording.
RECORD_WAIT = 25


class RecordMode(enum.StrEnum):
    """When a marked fixture file is recorded from VK before it is replayed."""

    #: Replay only.
    NONE = "none"
    #: Record a file that does not exist.
    ONCE = "once"
    #: Record a file that does not exist or is incomplete.
    NEW = "new"
    #: Record every marked file again.
    ALL = "all"


#: Marker keyword arguments that control recording; the others go to the FakeServer.
RECORD_KWARGS = frozenset({"record_mode", "record_duration", "record_updates"})


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordSettings:
    """The recording settings of one marked fixture file, after precedence is applied."""

    path: Path
    mode: RecordMode
    api_url: str
    duration: float
    #: Stop recording after this many updates; None records for `duration`.
    updates: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSettings:
    """The settings of a whole test run: the command line over the ini file over the defaults."""

    mode: RecordMode
    fixture_dir: Path
    api_url: str
    duration: float


@dataclass(slots=True, kw_only=True)
class _RunState:
    """The plugin's state for one pytest run."""

    settings: RunSettings
    #: Files recorded in this run with their update counts, in order.
    recorded: dict[Path, int]


_STATE = pytest.StashKey[_RunState]()


# -- options and hooks ------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lprecord", "VK long poll fixtures (lprecord)")
    group.addoption(
        "--lprecord-mode",
        choices=[mode.value for mode in RecordMode],
        default=None,
        help="when to record marked fixture files from VK (needs VK_TOKEN): none replays only; "
        "once records a file that does not exist; new also records an incomplete one (cut "
        "off, no session, or fewer updates than the marker's record_updates); all records "
        "every marked file again. Without VK_TOKEN every mode replays. Default: the "
        "lprecord_mode ini option, else none",
    )
    group.addoption(
        "--lprecord-fixture-dir",
        default=None,
        metavar="DIR",
        help="directory that relative lp_fixture paths are taken from (relative to the "
        "current directory); default: the lprecord_fixture_dir ini option, else the rootdir",
    )
    group.addoption(
        "--lprecord-api-url",
        default=None,
        metavar="URL",
        help=f"API base URL that fixtures are recorded from; default: the lprecord_api_url ini "
        f"option, else {VK_API_URL}",
    )
    group.addoption(
        "--lprecord-record-duration",
        default=None,
        metavar="SECONDS",
        help="seconds to record each fixture for; default: the lprecord_record_duration ini "
        f"option, else {DEFAULT_RECORD_DURATION:g}",
    )
    parser.addini("lprecord_mode", "record mode: none, once, new or all", default="none")
    parser.addini(
        "lprecord_fixture_dir",
        "directory that relative lp_fixture paths are taken from, relative to the rootdir",
        default="",
    )
    parser.addini("lprecord_api_url", "API base URL to record fixtures from", default=VK_API_URL)
    parser.addini(
        "lprecord_record_duration",
        "seconds to record each fixture for",
        default=str(DEFAULT_RECORD_DURATION),
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(path, *, tls=False, speed=1.0, key_ttl=3600.0, record_mode=None, "
        "record_duration=None, record_updates=None): the fixture file the lp_server and "
        "lp_trio_server fixtures replay (relative to the fixture directory) and server "
        "options: tls serves HTTPS, speed divides recorded times (2.0 replays twice as fast), "
        "key_ttl is the key lifetime in seconds. record_mode and record_duration (seconds) "
        "override --lprecord-mode and --lprecord-record-duration for this file; "
        "record_updates stops a recording after that many updates",
    )
    config.stash[_STATE] = _RunState(settings=_run_settings(config), recorded={})


def pytest_report_header(config: pytest.Config) -> str:
    settings = config.stash[_STATE].settings
    if not os.environ.get(TOKEN_VARIABLE):
        recording = f"{TOKEN_VARIABLE} not set, so fixtures are only replayed"
    else:
        recording = f"{TOKEN_VARIABLE} set, so the record mode may record from {settings.api_url}"
    return (
        f"lprecord: record mode {settings.mode}, fixture dir {settings.fixture_dir}, {recording}"
    )


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    recorded = config.stash[_STATE].recorded
    if not recorded:
        return
    terminalreporter.section("lprecord")
    for path, updates in recorded.items():
        terminalreporter.write_line(f"recorded {path} ({updates} updates)")


# -- fixtures -----------------------------------------------------------------------


@pytest.fixture
def lp_fixture_path(request: pytest.FixtureRequest) -> Path:
    """The fixture file the servers replay, recorded first if the record mode requires it."""
    from ._cli import demo_fixture_path

    marker = request.node.get_closest_marker(MARKER)
    if marker is None:
        return demo_fixture_path()
    settings = _record_settings(request.config, marker)
    state = request.config.stash[_STATE]
    token = os.environ.get(TOKEN_VARIABLE, "")

    # A file is recorded at most once per run, however many tests replay it.
    if token and settings.path not in state.recorded:
        reason = _recording_reason(settings)
        if reason is not None:
            state.recorded[settings.path] = _record(request.config, settings, token, reason)
    if not settings.path.exists():
        pytest.fail(_missing_file_message(settings, token_set=bool(token)), pytrace=False)
    return settings.path


@pytest.fixture
def lp_server(_lp_served: "tuple[Fixture, dict[str, Any]]") -> Iterator["FakeServer"]:
    """A fake long poll server in a background thread, in real time; give clients its `api_url`."""
    from ._server import run_fake_server_in_thread

    fixture, options = _lp_served
    with run_fake_server_in_thread(fixture, **options) as server:
        yield server


@pytest.fixture
async def lp_trio_server(
    _lp_served: "tuple[Fixture, dict[str, Any]]",
) -> AsyncIterator["FakeServer"]:
    """A fake long poll server in the test's trio loop (virtual time with `autojump_clock`).

    Its `open_memory_stream` is an lptrio `stream_opener` that connects with no socket.
    """
    from ._server import open_fake_server

    fixture, options = _lp_served
    async with open_fake_server(fixture, **options) as server:
        yield server


@pytest.fixture
def _lp_served(
    request: pytest.FixtureRequest, lp_fixture_path: Path
) -> "tuple[Fixture, dict[str, Any]]":
    """Read the marked fixture file and check the marker's server options.

    A plain fixture, so a file or an option the server cannot use fails the test's setup
    with one line, under `lp_trio_server` too, where pytest-trio would wrap the error in
    an exception group.
    """
    from ._cli import describe_error
    from ._fixture import FixtureError, read_fixture
    from ._server import FakeServer

    options = _server_options(request)
    try:
        fixture = read_fixture(lp_fixture_path)
        # Built once and dropped: the constructor checks every option.
        FakeServer(fixture, **options)
    except (FixtureError, OSError, ValueError) as error:
        problem = describe_error(error)
    else:
        return fixture, options
    pytest.fail(f"lprecord: cannot serve {lp_fixture_path}: {problem}", pytrace=False)


# -- settings -----------------------------------------------------------------------


def _run_settings(config: pytest.Config) -> RunSettings:
    mode = _option_or_ini(config, "--lprecord-mode", "lprecord_mode")
    duration = _option_or_ini(config, "--lprecord-record-duration", "lprecord_record_duration")
    return RunSettings(
        mode=_parse_mode(mode, "--lprecord-mode or the lprecord_mode ini option"),
        fixture_dir=_fixture_dir(config),
        api_url=_option_or_ini(config, "--lprecord-api-url", "lprecord_api_url"),
        duration=_parse_duration(
            duration, "--lprecord-record-duration or the lprecord_record_duration ini option"
        ),
    )


def _option_or_ini(config: pytest.Config, option: str, ini: str) -> str:
    value = config.getoption(option)
    if value is not None:
        return str(value)
    return str(config.getini(ini))


def _fixture_dir(config: pytest.Config) -> Path:
    option = config.getoption("--lprecord-fixture-dir")
    if option is not None:
        return config.invocation_params.dir / str(option)
    ini = str(config.getini("lprecord_fixture_dir"))
    return config.rootpath / ini if ini else config.rootpath


def _parse_mode(value: object, source: str) -> RecordMode:
    try:
        return RecordMode(str(value))
    except ValueError:
        choices = ", ".join(mode.value for mode in RecordMode)
        raise pytest.UsageError(
            f"invalid record mode {value!r} in {source}; choose one of {choices}"
        ) from None


def _parse_duration(value: object, source: str) -> float:
    duration = math.nan
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):
            duration = float(value)
    if not (math.isfinite(duration) and duration > 0):
        raise pytest.UsageError(
            f"invalid record duration {value!r} in {source}; give a positive number of seconds"
        )
    return duration


def _parse_updates(value: object) -> int | None:
    if value is None:
        return None
    if type(value) is not int or value <= 0:
        raise pytest.UsageError(
            f"invalid record_updates={value!r} in @pytest.mark.{MARKER}; give a positive integer"
        )
    return value


def _record_settings(config: pytest.Config, marker: pytest.Mark) -> RecordSettings:
    """Resolve a marked file's settings: marker arguments over the run-wide settings."""
    if len(marker.args) != 1:
        raise pytest.UsageError(
            f"@pytest.mark.{MARKER} takes one path argument, got {marker.args!r}"
        )
    if not isinstance(marker.args[0], str | os.PathLike):
        raise pytest.UsageError(
            f"@pytest.mark.{MARKER} takes a file path, got {marker.args[0]!r}; pass a string "
            "such as 'fixtures/chat_session.jsonl'"
        )
    run = config.stash[_STATE].settings
    where = f"@pytest.mark.{MARKER}"
    kwargs = marker.kwargs
    mode = run.mode
    if kwargs.get("record_mode") is not None:
        mode = _parse_mode(kwargs["record_mode"], f"{where}(record_mode=...)")
    duration = run.duration
    if kwargs.get("record_duration") is not None:
        duration = _parse_duration(kwargs["record_duration"], f"{where}(record_duration=...)")
    return RecordSettings(
        path=Path(os.path.normpath(run.fixture_dir / marker.args[0])),
        mode=mode,
        api_url=run.api_url,
        duration=duration,
        updates=_parse_updates(kwargs.get("record_updates")),
    )


def _server_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker(MARKER)
    if marker is None:
        return {}
    options = {name: value for name, value in marker.kwargs.items() if name not in RECORD_KWARGS}
    from ._server import FakeServer

    known = [name for name in inspect.signature(FakeServer).parameters if name != "fixture"]
    unknown = sorted(set(options) - set(known))
    if unknown:
        pytest.fail(
            f"{MARKER} marker: unknown option {', '.join(map(repr, unknown))}; the options are "
            f"{', '.join(known)} (passed to FakeServer) and {', '.join(sorted(RECORD_KWARGS))}",
            pytrace=False,
        )
    return options


# -- recording ----------------------------------------------------------------------


def _recording_reason(settings: RecordSettings) -> str | None:
    """Return why the record mode requires recording `settings.path`, or None to replay it."""
    if settings.mode is RecordMode.NONE:
        return None
    if not settings.path.exists():
        return "the file does not exist"
    if settings.mode is RecordMode.ALL:
        return "record mode all"
    if settings.mode is RecordMode.NEW:
        return _incompleteness(settings)
    return None


def _incompleteness(settings: RecordSettings) -> str | None:
    """Return how an existing fixture file is incomplete, or None if it is complete.

    Raises FixtureError for a file that is corrupt in any other way than a
    cut-off last line, so that a damaged file is reported, not overwritten.
    """
    from ._fixture import read_fixture
    from ._timeline import Timeline

    fixture = read_fixture(settings.path, allow_truncated_tail=True)
    if fixture.truncated:
        return "its last line is cut off, as an interrupted capture leaves it"
    try:
        updates = len(Timeline.from_fixture(fixture).updates)
    except ValueError:
        return "it contains no long poll session"
    if settings.updates is not None and updates < settings.updates:
        return f"it contains {updates} updates, fewer than record_updates={settings.updates}"
    return None


def _missing_file_message(settings: RecordSettings, *, token_set: bool) -> str:
    path = settings.path
    if token_set:
        # Only the none mode leaves a missing file unrecorded when a token is set.
        next_step = f"rerun with --lprecord-mode=once to record it from {settings.api_url}"
    else:
        next_step = (
            f"set {TOKEN_VARIABLE} to a user access token and rerun with --lprecord-mode=once"
        )
    return (
        f"lprecord fixture file {path} not found (record mode {settings.mode}). To record it, "
        f"{next_step}, or run `lprecord capture -o {path}`."
    )


def _record(config: pytest.Config, settings: RecordSettings, token: str, reason: str) -> int:
    """Record `settings.path` from `settings.api_url`; return the number of updates recorded.

    The capture is written next to the target and moved over it only when
    it ends without an error and holds a session (a successful
    messages.getLongPollServer reply), so a failed recording keeps the old
    file.
    """
    import trio

    import lpcore

    from ._cli import CommandError, _capture, check_api_url, session_problem, sole_cause

    try:
        check_api_url(settings.api_url, "--lprecord-api-url")
    except CommandError as error:
        pytest.fail(f"lprecord: cannot record {settings.path}: {error}", pytrace=False)
    limit = f" or {settings.updates} updates" if settings.updates is not None else ""
    _announce(
        config,
        f"lprecord: recording {settings.path} from {settings.api_url} ({reason}) for up to "
        f"{settings.duration:g} s{limit}",
    )
    partial = settings.path.with_name(settings.path.name + ".partial")
    settings.path.parent.mkdir(parents=True, exist_ok=True)
    try:
        trio.run(_capture, *_capture_arguments(settings, partial, token))
    except BaseException as error:
        partial.unlink(missing_ok=True)
        cause = sole_cause(error)
        if isinstance(cause, lpcore.LongPollError | OSError):
            pytest.fail(
                f"lprecord: recording {settings.path} from {settings.api_url} failed: {cause}",
                pytrace=False,
            )
        raise
    problem = session_problem(partial)
    if problem is not None:
        partial.unlink()
        kept = "the old file is kept" if settings.path.exists() else "no file was written"
        pytest.fail(
            f"lprecord: recording {settings.path} from {settings.api_url} got no long poll "
            f"session ({problem}); check the URL, VK_TOKEN and the network; {kept}",
            pytrace=False,
        )
    partial.replace(settings.path)
    return _count_updates(settings.path)


def _capture_arguments(settings: RecordSettings, output: Path, token: str) -> tuple[Any, ...]:
    """Build the arguments of the `lprecord capture` command's capture function."""
    import argparse

    import lpcore

    from ._fixture import Header

    args = argparse.Namespace(
        output=output,
        force=True,
        mode=int(lpcore.Mode.DEFAULT),
        wait=RECORD_WAIT,
        duration=settings.duration,
        updates=settings.updates,
    )
    header = Header(
        lp_version=3,
        mode=args.mode,
        wait=args.wait,
        api_version=lpcore.DEFAULT_API_VERSION,
        source=f"pytest --lprecord-mode={settings.mode} from {settings.api_url}",
    )
    # The default SSL context, which trusts the system's certificate authorities.
    context = None
    return args, token, settings.api_url, context, header


def _count_updates(path: Path) -> int:
    from ._fixture import read_fixture
    from ._summary import summarize

    return summarize(read_fixture(path)).total_updates


def _announce(config: pytest.Config, line: str) -> None:
    """Show a line on the terminal now, even while output is captured."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print(line, file=sys.stderr)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)
