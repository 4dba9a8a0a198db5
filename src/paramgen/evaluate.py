"""Public entry point of evaluation: ``from paramgen.evaluate import evaluate, EvalReport, ...``.

The implementation lives in the `paramgen.evaluation` package (split by concern because it
outgrew one file); this module is the stable import path the rest of the project and users use.
"""

from paramgen.evaluation import *  # noqa: F401,F403  (re-export the documented API)
from paramgen.evaluation import __all__  # noqa: F401
