"""Tests of the pytest plugin: the lp_server and lp_trio_server fixtures and the marker."""

from functools import partial

import pytest
import trio
from fixture_facts import CHAT_SESSION, receive_updates, update_arrays

from lprecord import FakeServer, Timeline, read_fixture

pytest_plugins = ["pytester"]

# Real seconds a consumer of the threaded server may take before the test fails.
REAL_TIMEOUT = 20.0


@pytest.mark.lp_fixture("fixtures/chat_session.jsonl", speed=1000)
def test_lp_server_serves_every_update(lp_server: FakeServer) -> None:
    expected = update_arrays(CHAT_SESSION)

    consumer = partial(receive_updates, lp_server.api_url, len(expected), timeout=REAL_TIMEOUT)
    received = trio.run(consumer)

    assert received == expected


@pytest.mark.lp_fixture("fixtures/chat_session.jsonl")
async def test_lp_trio_server_in_virtual_time(
    lp_trio_server: FakeServer, autojump_clock: trio.abc.Clock
) -> None:
    expected = update_arrays(CHAT_SESSION)
    last_due = Timeline.from_fixture(read_fixture(CHAT_SESSION)).updates[-1].due
    start = trio.current_time()

    received = await receive_updates(lp_trio_server.api_url, len(expected), timeout=600.0)

    assert received == expected
    # At speed 1 the last update arrives no earlier than it did in the recording.
    assert trio.current_time() - start >= last_due


def test_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")

    result.stdout.fnmatch_lines(["@pytest.mark.lp_fixture(path, *"])


def test_marker_with_two_paths_is_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.lp_fixture("first.jsonl", "second.jsonl")
        def test_two_paths(lp_server):
            pass
        """
    )

    result = pytester.runpytest()

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*UsageError: @pytest.mark.lp_fixture takes one path argument*"])


def test_marker_with_unknown_option_names_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.lp_fixture({str(CHAT_SESSION)!r}, key_lifetime=5)
        def test_misspelled(lp_server):
            pass
        """
    )

    result = pytester.runpytest()

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*lp_fixture marker: unknown option 'key_lifetime'; *key_ttl*"])
    result.stdout.no_fnmatch_line("*TypeError*")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("CHAT, speed='fast'", "*cannot serve *: speed='fast' must be a positive number*"),
        ("CHAT, key_ttl=-1", "*cannot serve *: key_ttl=-1 must be a positive number of seconds"),
        ("'.'", "*cannot serve *: * Is a directory"),
        ("'cut.jsonl'", "*cannot serve *cut.jsonl:3: *"),
        ("42", "*lp_fixture takes a file path, got 42; pass a string*"),
        ("CHAT, tls='yes'", "*cannot serve *: tls='yes' must be True or False"),
        ("CHAT, event_window=-5", "*cannot serve *: event_window=-5 must be a whole number*"),
    ],
    ids=["speed", "key-ttl", "directory", "cut-file", "not-a-path", "tls", "event-window"],
)
def test_unusable_marker_value_is_one_line(
    pytester: pytest.Pytester, arguments: str, message: str
) -> None:
    lines = CHAT_SESSION.read_text("utf-8").splitlines()
    (pytester.path / "cut.jsonl").write_text("\n".join([*lines[:2], lines[2][:40]]), "utf-8")
    pytester.makepyfile(
        f"""
        import pytest

        CHAT = {str(CHAT_SESSION)!r}

        @pytest.mark.lp_fixture({arguments})
        def test_marked(lp_server):
            pass
        """
    )

    result = pytester.runpytest()

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([message])
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.no_fnmatch_line("*During handling*")


def test_unusable_marker_value_under_trio(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.lp_fixture({str(CHAT_SESSION)!r}, speed="fast")
        async def test_marked(lp_trio_server):
            pass
        """
    )

    result = pytester.runpytest("-p", "trio", "-o", "trio_mode=true")

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*cannot serve *: speed='fast' must be a positive number*"])
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.no_fnmatch_line("*During handling*")
