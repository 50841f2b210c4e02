"""Helpers that several benchmarks share: a minimal fixture and a process's memory."""

from pathlib import Path

from lprecord import Exchange, ExchangeKind, FixtureWriter, Header

API_VERSION = "5.199"
USER_ID = 100001
#: Mode flags of the a_check polls: attachments, extended events, pts,
#: extra fields and random_id, as the recorded sessions use.
MODE = 234


def write_one_update_fixture(path: Path) -> None:
    """Write a session with one update that is due at once, so every later poll is held."""
    header = Header(lp_version=3, mode=MODE, wait=25, api_version=API_VERSION, user_id=USER_ID)
    server = (
        b'{"response":{"key":"<redacted>","server":"im.vk.com/nim100001",'
        b'"ts":1800000000,"pts":500000}}'
    )
    poll = b'{"ts":1800000001,"pts":500001,"updates":[[80,1,0]]}'
    with FixtureWriter.create(path, header, overwrite=True) as writer:
        writer.append(
            Exchange(
                t=0.0,
                elapsed=0.0,
                kind=ExchangeKind.API,
                method="POST",
                url="https://api.vk.com/method/messages.getLongPollServer",
                params={"v": API_VERSION},
                status=200,
                body=server,
            )
        )
        writer.append(
            Exchange(
                t=0.0,
                elapsed=0.0,
                kind=ExchangeKind.POLL,
                method="GET",
                url="https://im.vk.com/nim100001",
                params={"act": "a_check"},
                status=200,
                body=poll,
            )
        )


def rss_kib(pid: int | str = "self") -> int:
    """Return the resident set size of process `pid` in KiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"VmRSS not found in /proc/{pid}/status")
