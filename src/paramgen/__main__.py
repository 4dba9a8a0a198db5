"""``python -m paramgen ...`` is ``paramgen ...`` (and ``accelerate launch -m paramgen ...``)."""

import sys

from paramgen.cli import main

sys.exit(main())
