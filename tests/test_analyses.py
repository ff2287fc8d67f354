"""`recolorize analyse`: each paper analysis runs on 4 photos with tiny weights and writes its files."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from recolorize.cli import main
from recolorize.evaluation.analyses.similarity import cosine_matrix, histogram_matrix, self_similarity

FAST = ["--n", "4", "--steps-code", "2", "--steps-maps", "2", "--k", "2", "--queries", "2"]
FAST += ["--others", "2", "--show", "2", "--batch", "4"]


@pytest.fixture(scope="module")
def photos(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 4 BSDS500 test photos (no masks: table3 falls back to superpixels)."""
    folder = tmp_path_factory.mktemp("photos")
    for path in sorted((shared_data / "bsds500" / "images" / "test").glob("*.jpg"))[:4]:
        shutil.copy(path, folder / path.name)
    if len(list(folder.iterdir())) < 4:
        pytest.skip("bsds500/images/test has fewer than 4 photos")
    return folder


@pytest.fixture(scope="module")
def tiny_weights(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    tiny_model.save(path)
    return path


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


@pytest.mark.parametrize("analysis", ["table3", "fig4", "fig5", "w0"])
def test_analysis_writes_png_and_numbers(
    analysis: str, photos: Path, tiny_weights: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    code = main(
        ["analyse", analysis, "--images", str(photos), "--weights", str(tiny_weights), "--out", str(out)]
        + FAST
    )
    assert code == 0
    with Image.open(out / f"{analysis}.png") as png:
        assert png.width > 100 and png.height > 100
    numbers = json.loads((out / f"{analysis}.json").read_text())
    assert numbers["analysis"] == analysis
    assert numbers["settings"]["n"] == 4 and numbers["settings"]["resolution"] == 64
    assert (out / f"{analysis}.md").read_text().startswith("# ")

    if analysis == "table3":
        mae = numbers["mae_255"]
        assert set(mae) == {"identity", "encoder", "online_1d", "online_2d"}
        assert all(_finite(v) and 0 <= v <= 255 for v in mae.values())
        assert all(len(v) == 4 for v in numbers["per_pair"].values())
        assert mae["identity"] > 1.0  # the augmented pairs really differ in colour
        assert len(numbers["curve_1d"]) == 2 and len(numbers["curve_2d"]) == 2
    elif analysis == "fig4":
        assert len(numbers["queries"]) == 2
        for query in numbers["queries"]:
            for key in ("w0", "histogram"):
                listed = [entry["image"] for entry in query[key]]
                assert len(listed) == 2 and query["query"] not in listed
        w0 = np.array(numbers["w0_cosine"])
        assert w0.shape == (4, 4) and np.allclose(np.diag(w0), 1.0, atol=1e-5)
    elif analysis == "fig5":
        assert len(numbers["per_image"]) == 4
        assert all(0.0 <= c <= 1.0 for entry in numbers["per_image"] for c in entry["point"])
        assert _finite(numbers["mean_w0_colour_correlation"]) and _finite(
            numbers["mean_vgg_colour_correlation"]
        )
    else:
        assert len(numbers["own"]) == 4 and len(numbers["others"]) == 4 * 2
        assert all(entry["image"] != entry["code_of"] for entry in numbers["others"])
        assert _finite(numbers["own_mae_255"]) and _finite(numbers["others_mae_255"])


def test_bad_point_is_one_line_exit_2(photos: Path, tiny_weights: Path, tmp_path: Path, capsys) -> None:
    args = [
        "analyse",
        "fig5",
        "--images",
        str(photos),
        "--weights",
        str(tiny_weights),
        "--out",
        str(tmp_path),
    ]
    assert main(args + ["--point", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--point" in err[0]


def test_self_similarity_is_cosine_to_the_query() -> None:
    features = torch.zeros(2, 2, 3)
    features[:, 0, 0] = torch.tensor([1.0, 0.0])  # query
    features[:, 0, 1] = torch.tensor([3.0, 0.0])  # same direction, other length -> 1
    features[:, 1, 0] = torch.tensor([0.0, 2.0])  # orthogonal -> 0
    features[:, 1, 1] = torch.tensor([-1.0, 0.0])  # opposite -> -1
    features[:, 0, 2] = torch.tensor([1.0, 1.0])  # 45 degrees
    features[:, 1, 2] = torch.tensor([1.0, 1.0])
    heat = self_similarity(features, (0, 0))
    expected = np.array([[1.0, 1.0, 2**-0.5], [0.0, -1.0, 2**-0.5]])
    assert np.allclose(heat, expected, atol=1e-6)


def test_similarity_matrices() -> None:
    codes = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    assert np.allclose(cosine_matrix(codes), [[1, 1, 0], [1, 1, 0], [0, 0, 1]], atol=1e-6)
    red = np.zeros((4, 4, 3), np.float32)
    red[..., 0] = 1.0
    half = red.copy()
    half[:2] = 0.0  # half red, half black
    matrix = histogram_matrix([red, half, red])
    assert np.allclose(matrix, [[1, 0.5, 1], [0.5, 1, 0.5], [1, 0.5, 1]])
