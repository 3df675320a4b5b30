"""``python -m bpbench``: the same command line as the ``bpbench`` script."""

import sys

from .cli import main

sys.exit(main())
