"""``python -m recolorize`` is the same as the ``recolorize`` command."""

import sys

from recolorize.cli import main

sys.exit(main())
