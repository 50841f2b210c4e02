"""pytest plugin: fake VK long poll servers as fixtures.

Registered through the ``pytest11`` entry point, so installing the
package is enough. Heavy imports wait until a fixture is used.

Which recorded session a server replays: the ``lp_fixture`` marker on the
test (or its class or module) names a fixture file; a relative path is
taken from the pytest rootdir. Without the marker the shipped demo chat
session is replayed.
"""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ._server import FakeServer

MARKER = "lp_fixture"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(path, *, tls=False, speed=1.0, key_ttl=3600.0): the fixture file the lp_server "
        "and lp_trio_server fixtures replay (relative to the rootdir), and server options: "
        "tls serves HTTPS, speed divides recorded times (2.0 replays twice as fast), key_ttl is "
        "the key lifetime in seconds",
    )


def _server_options(request: pytest.FixtureRequest) -> tuple[Path, dict[str, Any]]:
    from ._cli import demo_fixture_path

    marker = request.node.get_closest_marker(MARKER)
    if marker is None:
        return demo_fixture_path(), {}
    if len(marker.args) != 1:
        raise pytest.UsageError(
            f"@pytest.mark.{MARKER} takes one path argument, got {marker.args!r}"
        )
    path = Path(marker.args[0])
    if not path.is_absolute():
        path = request.config.rootpath / path
    return path, dict(marker.kwargs)


@pytest.fixture
def lp_server(request: pytest.FixtureRequest) -> Iterator["FakeServer"]:
    """A fake long poll server in a background thread, in real time; give clients its `api_url`."""
    from ._server import run_fake_server_in_thread

    path, options = _server_options(request)
    with run_fake_server_in_thread(path, **options) as server:
        yield server


@pytest.fixture
async def lp_trio_server(request: pytest.FixtureRequest) -> AsyncIterator["FakeServer"]:
    """A fake long poll server in the test's trio loop (virtual time with `autojump_clock`)."""
    from ._server import open_fake_server

    path, options = _server_options(request)
    async with open_fake_server(path, **options) as server:
        yield server
