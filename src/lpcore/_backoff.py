"""Retry delays: capped exponential backoff with seeded jitter."""

from dataclasses import dataclass

_MASK64 = (1 << 64) - 1


def _splitmix64(state: int) -> int:
    """Mix a 64-bit counter into a well-spread 64-bit value (SplitMix64).

    The core may not import `random` or read a clock, so jitter comes from
    this function applied to (seed, attempt number): the same seed always
    gives the same delays, which keeps tests deterministic.
    """
    z = (state + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


@dataclass(frozen=True, slots=True, kw_only=True)
class BackoffPolicy:
    """How long to wait before retry number `attempt` (1-based), in seconds.

    The delay doubles from `initial` per attempt, plus up to `jitter` of
    itself, and never exceeds `maximum`. The jitter adds at most the delay
    itself while the base doubles, so successive delays never decrease.
    """

    initial: float = 1.0
    maximum: float = 60.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError(
                f"backoff initial={self.initial} and maximum={self.maximum} must satisfy "
                "0 < initial <= maximum"
            )
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"backoff jitter={self.jitter} must be between 0 and 1")

    def delay(self, attempt: int, *, seed: int) -> float:
        """Return the delay before retry `attempt`, jittered by `seed`."""
        base = self.initial * 2.0 ** min(max(attempt - 1, 0), 64)
        fraction = _splitmix64((seed << 20) ^ attempt) / _MASK64
        return min(self.maximum, base * (1.0 + self.jitter * fraction))
