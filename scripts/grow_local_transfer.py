#!/usr/bin/env python
"""Grow trained pointwise weights for the local colour transfer (RecolorModel.with_local_transfer).

    .venv/bin/python scripts/grow_local_transfer.py IN.safetensors OUT.safetensors

Used by scripts/train_default.sh between phase 2 and phase 3; OUT is an ``--init`` for ``recolorize train``.
"""

import sys

from recolorize.networks.model import RecolorModel

if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    RecolorModel.load(sys.argv[1]).with_local_transfer().save(sys.argv[2])
    print(f"wrote {sys.argv[2]}")
