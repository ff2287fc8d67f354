"""``python -m recolorize.training ARGS`` = ``recolorize train ARGS``, the entry point for torchrun:

torchrun --nproc_per_node 8 -m recolorize.training --config base --data photos/ --run-dir runs/x

An entry point, imported by nothing: it reaches the ``train`` options of ``training/arguments.py`` (its
options and error handling), never ``recolorize.commands`` or ``recolorize.cli``.
"""

import sys

from recolorize.training.arguments import main

sys.exit(main(sys.argv[1:]))
