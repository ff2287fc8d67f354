"""``python -m recolorize.training ARGS`` = ``recolorize train ARGS``, the entry point for torchrun:

torchrun --nproc_per_node 8 -m recolorize.training --config base --data photos/ --run-dir runs/x

An entry point, imported by nothing: it reaches the ``train`` command module (its options and error
handling), never ``recolorize.cli``.
"""

import sys

from recolorize.commands.train import main

sys.exit(main(sys.argv[1:]))
