#!/usr/bin/env python
"""Grow trained pointwise weights for the local colour transfer (RecolorModel.with_local_transfer).

    .venv/bin/python scripts/grow_local_transfer.py IN.safetensors OUT.safetensors

OUT is an ``--init`` for ``recolorize train --stage predictor``. The experiment it served (a fine-tune
of the shipped model with the local transfer; no gain at 700 steps) is in docs/model-card.md; the shipped
model has no local transfer, so scripts/train_default.sh does not call this.
"""

import sys

from recolorize.networks.model import RecolorModel

if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    RecolorModel.load(sys.argv[1]).with_local_transfer().save(sys.argv[2])
    print(f"wrote {sys.argv[2]}")
