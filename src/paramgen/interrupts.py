"""Ctrl-C and SIGTERM as a request to stop at the next safe point, not an exception anywhere.

A long loop (the training engine, a collection run) wraps itself in :class:`StopRequests` and
asks :attr:`StopRequests.signal` between units of work; when a signal came it saves what it has
and raises :class:`Interrupted`, which the command line turns into one line and the
conventional exit status (130 for SIGINT, 143 for SIGTERM). Stopping takes at most the unit in
progress plus one save. A second signal while the first is being honoured acts as it would have
without paramgen (Ctrl-C raises KeyboardInterrupt, SIGTERM ends the process): a user who
really wants out gets out, and the last completed save is intact either way.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import Any

SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None))
                if s is not None)
# The StopRequests installed now in the main thread, outermost first (loops nest: collect's
# loop over runs encloses the Engine's loop over steps).
_ACTIVE: list["StopRequests"] = []


class Interrupted(KeyboardInterrupt):
    """A run stopped on a signal after saving its state (a KeyboardInterrupt, so code that
    handles Ctrl-C handles it, and ``except Exception`` does not swallow it)."""

    def __init__(self, signum: int, step: int | None = None,
                 saved_to: str | os.PathLike | None = None, what: str = "step",
                 of: int | None = None) -> None:
        # ``step``: how many units (``what``: steps, tasks) are done and saved, of ``of``.
        self.signum = int(signum)
        self.step = step
        self.saved_to = saved_to
        self.what = what
        self.of = of
        super().__init__(str(self))

    @property
    def signal_name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"

    @property
    def exit_code(self) -> int:
        """128 + the signal's number: what a shell reports for a process the signal ended."""
        return 128 + self.signum

    def __str__(self) -> str:
        at = f" at {self.what} {self.step}" if self.step is not None else ""
        if at and self.of is not None:
            at += f" of {self.of}"
        if self.saved_to is None:
            return f"interrupted{at} ({self.signal_name}); nothing was saved (no workdir)"
        return (f"interrupted{at} ({self.signal_name}); state saved to {self.saved_to}; run the "
                "same command again to resume")


class StopRequests:
    """Context manager: while open, SIGINT and SIGTERM are recorded instead of acted on.

    ``with StopRequests() as stop: ... if stop.signal is not None: save(); raise
    stop.interrupted(step, saved_to)``, or ``install()`` and ``uninstall()`` in a ``finally``.
    Outside the main thread (where Python cannot install handlers) it records nothing and the
    signals act as usual. Handlers are restored on exit.
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signum
        # The next signal acts as it would have: restore the handlers now.
        self._restore()
        # Enclosing loops (collect's loop over runs around the Engine's) learn of it too, and
        # give back their handlers in turn, so a second signal still gets the user out.
        for outer in reversed(_ACTIVE):
            if outer is not self and outer.signal is None:
                outer.signal = signum
                outer._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            try:
                signal.signal(signum, handler)
            except (ValueError, OSError, TypeError):
                pass
        self._previous = {}

    def install(self) -> "StopRequests":
        """Start recording the signals (what ``with`` does on entry); returns self."""
        if threading.current_thread() is not threading.main_thread():
            return self
        _ACTIVE.append(self)
        # An enclosing loop's request (a signal while this inner loop was being set up) is this
        # loop's too: it stops at its first safe point, not after all its work. The handlers
        # stay as that signal left them, so a second signal gets the user out.
        pending = [outer.signal for outer in _ACTIVE if outer.signal is not None]
        if pending:
            self.signal = self.signal or pending[-1]
            return self
        for signum in SIGNALS:
            try:
                if signal.getsignal(signum) is signal.SIG_IGN:
                    continue  # ignored on purpose (nohup, a background job): leave it so
                previous = signal.signal(signum, self._handle)
            except (ValueError, OSError):
                continue
            # A handler installed outside Python reads back as None; the default is the best
            # stand-in to restore.
            self._previous[signum] = signal.SIG_DFL if previous is None else previous
        return self

    def uninstall(self) -> None:
        """Give the signals back their earlier handlers (what ``with`` does on exit)."""
        self._restore()
        if self in _ACTIVE:
            _ACTIVE.remove(self)

    def __enter__(self) -> "StopRequests":
        return self.install()

    def __exit__(self, *exc: Any) -> None:
        self.uninstall()

    def interrupted(self, step: int | None = None, saved_to: str | os.PathLike | None = None,
                    what: str = "step", of: int | None = None) -> Interrupted:
        """The exception to raise once the requested stop's state is saved."""
        if self.signal is None:
            raise RuntimeError("no stop was requested")
        return Interrupted(self.signal, step=step, saved_to=saved_to, what=what, of=of)
