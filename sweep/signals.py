"""Signals: SIGINT, SIGTERM and SIGHUP become an `Interrupted` exception on the main thread, except
inside `shielded()` blocks (ask + register, a group's tells), where the signal waits until the block
ends; the exit codes each signal leaves (130, 143, 129). Also `checkpoint`, the lifecycle tests'
way to stop a real `sweep run` at one step.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

__all__ = ["EXIT_CODES", "Interrupted", "Interrupts", "checkpoint", "pending"]

EXIT_CODES: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}


class Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP arrived (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signum, 128 + self.signum)


class Interrupts:
    """Installs handlers for SIGINT, SIGTERM and SIGHUP while active (main thread only).

    The first signal raises `Interrupted` where the main thread is, unless it is inside
    `shielded()`, in which case it is raised when the block ends. Later signals are remembered
    but raise nothing: the cleanup that the first one started is not cut short.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._depth = 0
        self._raised = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        global _active
        if threading.current_thread() is threading.main_thread():
            for signum in EXIT_CODES:
                self._previous[signum] = signal.signal(signum, self._handle)
            _active = self
        return self

    def __exit__(self, *exc: object) -> None:
        global _active
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        if _active is self:
            _active = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
        if self._depth == 0:
            self._raise()

    def _raise(self) -> None:
        if self.received is not None and not self._raised:
            self._raised = True
            raise Interrupted(self.received)

    def raise_now(self) -> None:
        """Raise the signal received, if it has not been raised yet, even inside a shielded
        block: for a block that cannot end (it waits on a database that does not answer)."""
        self._raise()

    @contextmanager
    def shielded(self) -> Iterator[None]:
        """A block no signal splits: one that arrives inside is raised when it ends."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if self._depth == 0:
            self._raise()


_active: Interrupts | None = None  # the one in force on the main thread


def pending() -> Interrupts | None:
    """The active `Interrupts`, if a signal has arrived: a wait that may not end (a database
    that does not answer) gives up at once then, on any thread."""
    if _active is not None and _active.received is not None:
        return _active
    return None


# -- a fault-injection point for the lifecycle tests -------------------------------------------
_PAUSE_ENV = "SOFTSWEEP_PAUSE_AT"


def checkpoint(step: str) -> None:
    """The tests' way to stop a real `sweep run` at one step of the lifecycle: with
    SOFTSWEEP_PAUSE_AT=<step> the process says `paused at <step>` on stderr the first time it
    reaches that step and waits there (up to 60 s, or SOFTSWEEP_PAUSE_S seconds, or until a
    signal arrives) for the test's signal or fault. A no-op otherwise."""
    if os.environ.get(_PAUSE_ENV) != step:
        return
    os.environ.pop(_PAUSE_ENV)  # once
    print(f"paused at {step}", file=sys.stderr, flush=True)
    deadline = time.monotonic() + float(os.environ.get("SOFTSWEEP_PAUSE_S", "60"))
    while time.monotonic() < deadline and (_active is None or _active.received is None):
        time.sleep(0.05)
