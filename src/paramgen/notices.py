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
