"""Write docs/images/example.jpg, the README's picture: source | reference | the shipped model's result.

.venv/bin/python scripts/make_example.py [--out docs/images/example.jpg]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from recolorize import Recolorizer
from recolorize.evaluation.grids import comparison_grid
from recolorize.imaging import load_image

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "example.jpg")
    args = parser.parse_args()
    source = load_image(ROOT / "examples" / "source.jpg")
    reference = load_image(ROOT / "examples" / "reference.jpg")
    recolorizer = Recolorizer.from_pretrained()
    result = recolorizer.render_array(recolorizer.prepare(source, reference))
    grid = comparison_grid(
        [("source", source.rgb), ("reference", reference.rgb), ("recolorize (shipped model)", result)],
        height=300,
    )
    grid.convert("RGB").save(args.out, quality=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
