"""The exceptions lpcore raises.

`LocalProtocolError` means the caller misused the core; `RemoteProtocolError`
means the server sent something the protocol does not allow. The other two
carry what the server reported.
"""

from typing import Any

_MAX_SHOWN_BODY = 200


class LongPollError(Exception):
    """Base class of every error lpcore raises."""


class LocalProtocolError(LongPollError):
    """The caller used the core in a way the protocol does not allow."""


class RemoteProtocolError(LongPollError):
    """The server sent a body that cannot be read as a long poll reply.

    `body` holds the offending bytes, cut to 200 bytes so that a huge HTML
    page does not flood a log.
    """

    def __init__(self, reason: str, body: bytes | None = None) -> None:
        self.reason = reason
        self.body = None if body is None else body[:_MAX_SHOWN_BODY]
        message = reason
        if self.body is not None:
            cut = "..." if len(body or b"") > _MAX_SHOWN_BODY else ""
            message = f"{reason}; body: {self.body!r}{cut}"
        super().__init__(message)


class ApiError(LongPollError):
    """The VK API answered with an ``{"error": ...}`` object.

    Captcha (code 14) and validation (code 17) errors carry the fields a
    person needs to pass the check: `captcha_sid`, `captcha_img`,
    `redirect_uri`.
    """

    def __init__(
        self,
        code: int,
        message: str,
        *,
        method: str = "",
        captcha_sid: str | None = None,
        captcha_img: str | None = None,
        redirect_uri: str | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.method = method
        self.captcha_sid = captcha_sid
        self.captcha_img = captcha_img
        self.redirect_uri = redirect_uri
        where = f" in {method}" if method else ""
        super().__init__(f"VK API error {code}{where}: {message}")

    @classmethod
    def from_object(cls, error: dict[str, Any], *, method: str = "") -> "ApiError":
        """Build the error from the value of an API reply's ``"error"`` key."""
        code = error.get("error_code")
        message = error.get("error_msg")

        def text(name: str) -> str | None:
            value = error.get(name)
            return None if value is None else str(value)

        return cls(
            code if isinstance(code, int) and not isinstance(code, bool) else -1,
            message if isinstance(message, str) else "(no error_msg)",
            method=method,
            captcha_sid=text("captcha_sid"),
            captcha_img=text("captcha_img"),
            redirect_uri=text("redirect_uri"),
        )


class VersionError(LongPollError):
    """The server rejected the `version` parameter (``failed: 4``).

    This is a configuration error: polling again with the same version
    would fail the same way, so the session stops.
    """

    def __init__(self, version: int, min_version: int | None, max_version: int | None) -> None:
        self.version = version
        self.min_version = min_version
        self.max_version = max_version
        super().__init__(
            f"the long poll server rejected version={version} (failed: 4); it accepts "
            f"{min_version} to {max_version}: pass a version in that range"
        )
