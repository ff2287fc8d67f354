"""``python -m recolorize`` is the same as the ``recolorize`` command."""

from recolorize.cli import entry

if __name__ == "__main__":  # not when a helper process (``transfer --jobs N``) re-imports this module
    entry()
