"""``python -m llmasos`` runs the command line (the same as the ``llmasos`` console script)."""

import sys

from .cli import main

sys.exit(main())
