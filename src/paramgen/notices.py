"""paramgen's own warnings: something the user should know about what was generated.

They are ordinary `UserWarning`s to Python (filters and `pytest.warns` see them as usual); the
command line prints each as one line of the command, ``paramgen sample: warning: ...``.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path


class ParamgenWarning(UserWarning):
    """A warning raised by paramgen (not by a library it uses)."""


def warn(message: str) -> None:
    """Warn with a `ParamgenWarning` located at the first frame outside paramgen (and torch's
    decorators, such as ``no_grad``): the user's line, however deep in paramgen it was raised."""
    import torch

    roots = (str(Path(__file__).resolve().parent), str(Path(torch.__file__).resolve().parent))
    level, frame = 1, inspect.currentframe()
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(roots):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, ParamgenWarning, stacklevel=level)


# A bar on a terminal redraws in place; written to a file or CI log every redraw is a new line,
# so there it prints about this many times over a whole run (plus the final state).
LOG_UPDATES = 20


def progress_bar(total: int | None = None, desc: str = "", enabled: bool = True,
                 initial: int = 0, **kwargs):
    """paramgen's one progress bar (tqdm): redrawn freely on a terminal, and about every
    1/LOG_UPDATES of the run (and at least 10 s apart) when stderr is a file or pipe, so a
    3,000-step fit writes tens of log lines, not thousands."""
    import sys

    from tqdm.auto import tqdm  # imported late: keeps `import paramgen.notices` light

    file = kwargs.pop("file", sys.stderr)
    options: dict = dict(dynamic_ncols=True)
    cls = tqdm
    if not _is_terminal(file):
        cls = _log_bar(tqdm)
        # miniters set explicitly turns tqdm's adaptive skipping off: both limits then hold.
        step = max(1, -(-(int(total) - int(initial)) // LOG_UPDATES)) if total else 1
        options.update(miniters=step, mininterval=10.0, maxinterval=float("inf"), ascii=True)
    options.update(kwargs)
    return cls(total=total, initial=initial, desc=desc, disable=not enabled, file=file, **options)


def _log_bar(tqdm: type) -> type:
    class LogBar(tqdm):  # type: ignore[misc, valid-type]
        """A bar for logs: a new postfix (a loss) waits for the next scheduled line instead of
        writing one of its own."""

        def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
            super().set_postfix(ordered_dict, refresh=False, **kwargs)

    return LogBar


def _is_terminal(file) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):  # closed or file-like objects without isatty
        return False
