"""Rate limiting for log messages that repeat (a server down for an hour, say)."""

from dataclasses import dataclass, field

#: A message with the same template is let through at most once per this many seconds.
REPEAT_INTERVAL = 60.0


@dataclass(slots=True)
class RepeatLimiter:
    """Let a message through once per `interval` and count the ones held back."""

    interval: float = REPEAT_INTERVAL
    _last: dict[str, float] = field(default_factory=dict)
    _held_back: dict[str, int] = field(default_factory=dict)

    def admit(self, template: str, now: float) -> int | None:
        """Return None to drop the message, else how many were dropped since the last one."""
        last = self._last.get(template)
        if last is not None and now - last < self.interval:
            self._held_back[template] = self._held_back.get(template, 0) + 1
            return None
        self._last[template] = now
        return self._held_back.pop(template, 0)
