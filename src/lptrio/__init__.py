"""lptrio: a VK User Long Poll client on trio and h11, driven by lpcore."""

from ._http import (
    DEFAULT_USER_AGENT,
    HttpClient,
    HttpResponse,
    StreamOpener,
    TransportError,
    TransportErrorKind,
)
from ._longpoll import ExchangeObserver, LongPoll

__all__ = [
    "DEFAULT_USER_AGENT",
    "ExchangeObserver",
    "HttpClient",
    "HttpResponse",
    "LongPoll",
    "StreamOpener",
    "TransportError",
    "TransportErrorKind",
]
