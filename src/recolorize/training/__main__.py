"""``python -m recolorize.training ARGS`` = ``recolorize train ARGS``, the entry point for torchrun:

torchrun --nproc_per_node 8 -m recolorize.training --config base --data photos/ --run runs/x
"""

import sys

from recolorize.cli import main

sys.exit(main(["train", *sys.argv[1:]]))
