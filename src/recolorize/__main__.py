"""``python -m recolorize`` is the same as the ``recolorize`` command."""

from recolorize.cli import entry

entry()
