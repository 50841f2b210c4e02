"""Helpers for the fake server tests: in-memory fixtures and a plain HTTP client for them."""

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import trio

from lprecord import Exchange, ExchangeKind, FakeServer, Fixture, Header
from lptrio import HttpClient

USER_ID = 100001
FIRST_TS = 1800000000
FIRST_PTS = 500000
TOKEN = "fake-token-0123456789abcdefghijklmnopqrstuvwxyz"
#: The mode the fixtures below are recorded with: 2, 8, 32, 64 and 128.
RECORDED_MODE = 234
#: Seconds a request may take on the virtual clock before a test gives up on it.
REQUEST_TIMEOUT = 120.0


def to_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def server_call(
    *,
    group_id: int | None = None,
    headers: tuple[tuple[str, str], ...] = (),
    elapsed: float = 0.05,
) -> Exchange:
    """Build a recorded messages.getLongPollServer call at time 0."""
    params = {"access_token": "<redacted>", "v": "5.199", "need_pts": "1", "lp_version": "3"}
    if group_id is not None:
        params["group_id"] = str(group_id)
    result = {"key": "<redacted>", "server": f"im.vk.com/nim{USER_ID}", "ts": FIRST_TS}
    result["pts"] = FIRST_PTS
    return Exchange(
        t=0.0,
        elapsed=elapsed,
        kind=ExchangeKind.API,
        method="POST",
        url="https://api.vk.com/method/messages.getLongPollServer",
        params=params,
        status=200,
        headers=headers,
        body=to_json({"response": result}),
    )


def poll_reply(*, done: float, updates: list[Any], mode: int | None = RECORDED_MODE) -> Exchange:
    """Build a recorded poll sent at 0.1 s whose reply with `updates` completed at `done` s."""
    params = {"act": "a_check", "key": "<redacted>", "ts": str(FIRST_TS), "wait": "25"}
    if mode is not None:
        params["mode"] = str(mode)
    return Exchange(
        t=0.1,
        elapsed=done - 0.1,
        kind=ExchangeKind.POLL,
        method="GET",
        url=f"https://im.vk.com/nim{USER_ID}",
        params=params,
        status=200,
        body=to_json({"ts": FIRST_TS + len(updates), "updates": updates}),
    )


def api_call(method: str, params: Mapping[str, str], reply: Any, *, t: float = 0.2) -> Exchange:
    """Build a recorded call to an API method with its JSON reply."""
    return Exchange(
        t=t,
        elapsed=0.05,
        kind=ExchangeKind.API,
        method="POST",
        url=f"https://api.vk.com/method/{method}",
        params={"access_token": "<redacted>", "v": "5.199", **params},
        status=200,
        body=to_json(reply),
    )


def fixture_of(*exchanges: Exchange, mode: int = RECORDED_MODE) -> Fixture:
    header = Header(lp_version=3, mode=mode, wait=25, api_version="5.199", user_id=USER_ID)
    return Fixture(header=header, exchanges=exchanges)


class Client:
    """Calls a fake server the way a consumer does, returning parsed JSON bodies."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.http = HttpClient()
        self.credentials: dict[str, Any] = {}

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.http.aclose()

    async def api(self, method: str, **params: str) -> Any:
        query = urlencode({"access_token": TOKEN, "v": "5.199", **params})
        url = f"{self.server.api_url}/{method}?{query}"
        response = await self.http.request("GET", url, timeout=REQUEST_TIMEOUT)
        assert response.status == 200, response
        return json.loads(response.body)

    async def connect(self) -> dict[str, Any]:
        """Call messages.getLongPollServer and keep the credentials for `poll`."""
        reply = await self.api("messages.getLongPollServer", need_pts="1", lp_version="3")
        self.credentials = reply["response"]
        return self.credentials

    async def poll(self, ts: int, *, mode: int, wait: int = 25) -> Any:
        query = urlencode(
            {
                "act": "a_check",
                "key": self.credentials["key"],
                "ts": ts,
                "wait": wait,
                "mode": mode,
                "version": 3,
            }
        )
        url = f"{self.credentials['server']}?{query}"
        response = await self.http.request("GET", url, timeout=REQUEST_TIMEOUT)
        assert response.status == 200, response
        return json.loads(response.body)


async def poll_after(client: Client, ts: int, *, mode: int, seconds: float) -> Any:
    """Sleep `seconds` of virtual time, then poll from `ts` without waiting."""
    await trio.sleep(seconds)
    return await client.poll(ts, mode=mode, wait=0)
