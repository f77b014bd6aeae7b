"""Periodic progress lines (done/total, rate, ETA) for long steps, through :mod:`logging`."""

from __future__ import annotations

import logging
import time

__all__ = ["Progress"]


class Progress:
    """Log ``what: done/total (pct), rate/s, ETA`` at most every ``every`` seconds.

    >>> p = Progress(1000, "cw iterations", unit="nodes")
    >>> for _ in range(10):
    ...     p.update(100)
    >>> p.close()
    """

    def __init__(
        self,
        total: float,
        what: str,
        *,
        unit: str = "items",
        every: float = 10.0,
        logger: logging.Logger | None = None,
    ):
        self.total = float(total)
        self.what = what
        self.unit = unit
        self.every = float(every)
        self.log = logger or logging.getLogger("facecluster.progress")
        self.done = 0.0
        self.t0 = self._last = time.perf_counter()

    def update(self, n: float = 1) -> None:
        """Count ``n`` more units done; log a line if ``every`` seconds have passed."""
        self.done += n
        now = time.perf_counter()
        if now - self._last >= self.every:
            self._last = now
            self.log.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        """The progress line as it would be logged now."""
        elapsed = (now or time.perf_counter()) - self.t0
        rate = self.done / elapsed if elapsed > 0 else float("inf")
        left = max(0.0, self.total - self.done)
        eta = left / rate if rate > 0 else float("inf")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return (
            f"{self.what}: {self.done:,.0f}/{self.total:,.0f} {self.unit} ({pct:.0f} %), "
            f"{rate:,.1f} {self.unit}/s, ETA {eta:.0f} s"
        )

    def close(self) -> None:
        """Log the final line (total time and mean rate)."""
        elapsed = time.perf_counter() - self.t0
        rate = self.done / elapsed if elapsed > 0 else float("inf")
        self.log.info(
            "%s: %s %s in %.1f s (%.1f %s/s)",
            self.what,
            f"{self.done:,.0f}",
            self.unit,
            elapsed,
            rate,
            self.unit,
        )
