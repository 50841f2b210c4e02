"""Helpers that drive a `Session` by hand in tests: take requests, reply to them or fail them."""

from lpcore import Backoff, Request, RetryScheduled, Session, SessionEvent


def take_request(session: Session, now: float) -> Request:
    """Return the request due at `now`, failing the test when the session returns a Backoff."""
    action = session.next_request(now)
    assert isinstance(action, Request), f"expected a request at t={now}, got {action!r}"
    return action


def serve(
    session: Session, body: bytes, now: float = 0.0, *, status: int = 200
) -> tuple[Request, list[SessionEvent]]:
    """Pass `status` and `body` to the session as the response to the request due at `now`."""
    request = take_request(session, now)
    return request, session.receive_response(request, status, body, now)


def fail(
    session: Session, now: float = 0.0, reason: str = "connection reset"
) -> tuple[Request, list[SessionEvent]]:
    """Report a transport failure of the request due at `now`."""
    request = take_request(session, now)
    return request, session.receive_failure(request, reason, now)


def due_time(session: Session, now: float) -> float:
    """Return when the next request may go out, leaving no request in flight."""
    action = session.next_request(now)
    assert isinstance(action, Backoff), f"expected a Backoff at t={now}, got {action!r}"
    return action.until


def retry_of(events: list[SessionEvent]) -> RetryScheduled:
    [event] = events
    assert isinstance(event, RetryScheduled), f"expected RetryScheduled, got {event!r}"
    return event
