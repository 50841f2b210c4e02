"""The fake server listens on 127.0.0.1 unless a caller names another address.

The kernel's socket table is the witness, not the server's own report: on
Linux /proc/net/tcp and /proc/net/tcp6 list every listening socket with
its local address.
"""

import ipaddress
import socket
import sys
from pathlib import Path

import pytest
import trio
from fixture_facts import CHAT_SESSION

from lpcore import Update
from lprecord import FakeServer, run_fake_server_in_thread
from lprecord._cli import build_parser
from lptrio import LongPoll

#: The TCP state code of a listening socket in /proc/net/tcp.
LISTEN = "0A"

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads Linux's /proc/net/tcp socket table"
)


def proc_address(field: str) -> tuple[str, int]:
    """Decode ``0100007F:1F90`` (IPv4) or its 32-digit IPv6 form from /proc/net/tcp*."""
    host_hex, port_hex = field.split(":")
    raw = bytes.fromhex(host_hex)
    # The kernel prints each 32-bit word of the address in host byte order.
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(raw)), int(port_hex, 16)


def listening_hosts(port: int) -> set[str]:
    """Return the local addresses of every listening TCP socket on `port`."""
    hosts = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            host, local_port = proc_address(fields[1])
            if local_port == port and fields[3] == LISTEN:
                hosts.add(host)
    return hosts


def test_proc_address_decodes_loopback() -> None:
    if sys.byteorder == "little":
        assert proc_address("0100007F:1F90") == ("127.0.0.1", 8080)
    else:
        assert proc_address("7F000001:1F90") == ("127.0.0.1", 8080)


async def test_in_loop_server_listens_on_loopback_only() -> None:
    server = FakeServer(CHAT_SESSION, tls=True)

    async with trio.open_nursery() as nursery:
        bound = await nursery.start(server.serve)
        hosts = listening_hosts(bound.port)
        nursery.cancel_scope.cancel()

    assert hosts == {"127.0.0.1"}


def test_thread_server_listens_on_loopback_only() -> None:
    with run_fake_server_in_thread(CHAT_SESSION) as server:
        hosts = listening_hosts(server.port)

    assert hosts == {"127.0.0.1"}


def test_replay_command_binds_loopback_by_default() -> None:
    args = build_parser().parse_args(["replay", str(CHAT_SESSION)])

    assert args.host == "127.0.0.1"


def test_other_host_only_when_named() -> None:
    # ::1 is loopback too, so the test reaches no other host. It shows that
    # the option is honoured rather than ignored.
    if not socket.has_ipv6:
        pytest.skip("this machine has no IPv6")
    try:
        with run_fake_server_in_thread(CHAT_SESSION, host="::1") as server:
            hosts = listening_hosts(server.port)
    except OSError as error:
        pytest.skip(f"cannot bind ::1 here: {error}")

    assert hosts == {"::1"}


async def test_ipv6_poll_server_in_brackets(
    autojump_clock: trio.abc.Clock,
) -> None:
    if not socket.has_ipv6:
        pytest.skip("this machine has no IPv6")
    server = FakeServer(CHAT_SESSION, host="::1")
    received: list[Update] = []
    async with trio.open_nursery() as nursery:
        try:
            await nursery.start(server.serve)
        except OSError as error:
            pytest.skip(f"cannot bind ::1 here: {error}")
        longpoll = LongPoll("fake-token-for-ipv6-test-0123456789", api_url=server.api_url)
        async for update in longpoll:
            received.append(update)
            if len(received) == 3:
                longpoll.shutdown()
        nursery.cancel_scope.cancel()

    assert server.api_url.startswith("http://[::1]:")
    assert len(received) == 3
