"""The global oracles of ``recolorize eval`` (oracle-cubic, oracle-lut): exact where a global map is the
answer, clearly worse on make-bench's local pairs than on its global ones, and marked as oracles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from recolorize.cli import main
from recolorize.data.augment import ColourAugmenter
from recolorize.errors import UserError
from recolorize.evaluation.bench import make_bench
from recolorize.evaluation.methods import parse_methods
from recolorize.evaluation.metrics import mae
from recolorize.evaluation.oracles import (
    CUBIC_TERMS,
    FIT_PIXELS,
    apply_cubic,
    cubic_features,
    fit_cubic,
    oracle_cubic,
    oracle_lut,
)
from recolorize.evaluation.pairs import load_pair, read_pairs
from recolorize.evaluation.tables import markdown_table


def _random_image(seed: int, shape: tuple[int, int] = (60, 70)) -> np.ndarray:
    return np.random.default_rng(seed).random((*shape, 3))


def _known_cubic() -> np.ndarray:
    """A cubic map with every kind of term, keeping [0, 1] inside [0.05, 0.95] (no clipping)."""
    coefficients = np.zeros((len(CUBIC_TERMS), 3))
    coefficients[0] = [0.05, 0.08, 0.02]
    coefficients[1:4] = [[0.5, 0.1, 0.05], [0.1, 0.45, 0.1], [0.0, 0.15, 0.55]]
    coefficients[4:10] = 0.04 * np.random.default_rng(1).random((6, 3))
    coefficients[10:20] = 0.02 * np.random.default_rng(2).random((10, 3))
    return coefficients


def test_cubic_features_are_the_twenty_terms_in_order() -> None:
    r, g, b = 0.2, 0.3, 0.5
    expected = [1, r, g, b, r * r, g * g, b * b, r * g, r * b, g * b]
    expected += [
        r**3,
        g**3,
        b**3,
        r * r * g,
        r * r * b,
        g * g * r,
        g * g * b,
        b * b * r,
        b * b * g,
        r * g * b,
    ]
    assert len(CUBIC_TERMS) == 20
    np.testing.assert_allclose(cubic_features(np.array([[r, g, b]]))[0], expected, rtol=1e-12)


def test_oracle_cubic_reproduces_a_cubic_map_exactly() -> None:
    source = _random_image(0)
    coefficients = _known_cubic()
    target = cubic_features(source.reshape(-1, 3)) @ coefficients
    assert 0.0 < target.min() and target.max() < 1.0
    target = target.reshape(source.shape)
    output = oracle_cubic(source, source[::-1], target)
    assert output.dtype == np.float32 and output.shape == source.shape
    assert np.abs(output - target).max() < 1e-3
    np.testing.assert_allclose(fit_cubic(source, target), coefficients, atol=1e-6)
    # and what a global method without the target would get is far off: identity is no cubic oracle
    assert np.abs(source - target).max() > 0.1


def test_oracle_cubic_subsamples_large_images_with_a_fixed_seed() -> None:
    source = _random_image(3, (500, 420))  # 210,000 pixels > FIT_PIXELS
    assert source.shape[0] * source.shape[1] > FIT_PIXELS
    target = np.clip(source**1.7 + 0.03 * np.random.default_rng(4).normal(size=source.shape), 0, 1)
    first, second = fit_cubic(source, target), fit_cubic(source, target)
    np.testing.assert_array_equal(first, second)
    output = apply_cubic(source, first)
    assert output.min() >= 0.0 and output.max() <= 1.0  # clipped


def test_oracle_lut_fits_a_non_polynomial_map_better_than_the_cubic() -> None:
    source = _random_image(5, (80, 90))
    target = np.where(source < 0.5, 0.2 * source, 0.1 + 1.8 * (source - 0.5))  # a kink: no cubic fits it
    target = np.stack([target[..., 0], target[..., 2] ** 0.5, 1 - target[..., 1]], axis=-1)
    lut_error = np.abs(oracle_lut(source, source, target) - target).mean()
    cubic_error = np.abs(oracle_cubic(source, source, target) - target).mean()
    assert lut_error < 0.01 and lut_error < 0.5 * cubic_error


def test_oracles_are_marked_and_need_a_target() -> None:
    cubic, identity = parse_methods("oracle-cubic,identity")
    assert cubic.oracle and cubic.label == "oracle-cubic (oracle)"
    assert not identity.oracle and identity.label == "identity"
    image = _random_image(6, (8, 9)).astype(np.float32)
    assert cubic(image, image, image).shape == image.shape
    with pytest.raises(UserError, match="oracle"):
        cubic(image, image, None)


def test_markdown_table_gives_oracle_rows_no_bold() -> None:
    means = {"a": {"mae": 4.0}, "b": {"mae": 5.0}, "o (oracle)": {"mae": 1.0}}
    lines = markdown_table(means, ["mae"], unranked=["o (oracle)"]).strip().splitlines()
    assert lines[2] == "| a | **4.00** |" and lines[4] == "| o (oracle) | 1.00 |"


@pytest.fixture(scope="module")
def benches(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same 8 BSDS500 test photos (dataset masks, 128 px) as a global and as a local make-bench."""
    images = shared_data / "bsds500" / "images" / "test"
    assert len(list(images.glob("*.jpg"))) >= 8, f"BSDS500 test photos missing from {images}"
    root = tmp_path_factory.mktemp("benches")
    return {
        kind: make_bench(images, root / kind, n=8, seed=1, size=128, kind=kind)
        for kind in ("global", "local")
    }


def test_the_cubic_oracle_is_clearly_worse_on_local_pairs(benches: dict[str, Path]) -> None:
    """The best global map leaves most of a local pair's change unexplained, little of a global one's."""
    errors, unexplained = {}, {}
    for kind, csv_path in benches.items():
        pairs = [load_pair(pair) for pair in read_pairs(csv_path)]
        oracle = np.array([mae(oracle_cubic(s, r, t), t) for s, r, t in pairs])
        identity = np.array([mae(s, t) for s, _, t in pairs])
        errors[kind], unexplained[kind] = oracle.mean(), (oracle / identity).mean()
    # the share of the change (identity's error) that the oracle cannot fit: make-bench's global kind has
    # mild local grades, so some; the local kind much more
    assert unexplained["local"] > 2.0 * unexplained["global"], unexplained
    # and against a purely global grade of the same sources, in plain MAE
    grade = ColourAugmenter()
    pure = []
    for row, pair in enumerate(read_pairs(benches["local"])):
        source = load_pair(pair)[0]
        graded = grade.apply_global(torch.from_numpy(source).permute(2, 0, 1), np.random.default_rng(row))
        target = np.round(graded.permute(1, 2, 0).numpy() * 255) / 255
        pure.append(mae(oracle_cubic(source, source, target), target))
    assert errors["local"] > 3.0 * np.mean(pure), (errors, np.mean(pure))


def test_eval_labels_the_oracle_and_refuses_pairs_without_target(
    benches: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "report"
    csv_path = str(benches["local"])
    argv = ["eval", "--pairs", csv_path, "--methods", "identity,mkl,oracle-cubic", "--out", str(out)]
    assert main([*argv, "--grid-every", "0", "--metrics", "mae,psnr", "--limit", "3"]) == 0
    summary = (out / "summary.md").read_text()
    row = next(line for line in summary.splitlines() if line.startswith("| oracle-cubic (oracle) |"))
    assert "**" not in row  # a bound, not the winner
    assert summary.count("**") >= 4  # the other rows compete for the bold (2 columns)
    assert "read the ground-truth target" in summary
    metrics = (out / "metrics.csv").read_text()
    assert "oracle-cubic," in metrics and "(oracle)" not in metrics  # the CSV keeps the plain name
    no_target = tmp_path / "no_target.csv"
    bench = benches["local"].parent
    no_target.write_text(f"source,reference\n{bench / 'source/0000.png'},{bench / 'reference/0000.png'}\n")
    code = main(
        ["eval", "--pairs", str(no_target), "--methods", "oracle-cubic", "--out", str(tmp_path / "x")]
    )
    assert code == 2
    assert "oracle" in capsys.readouterr().err
    with Image.open(bench / "target" / "0000.png") as image:
        assert image.mode == "RGB"
