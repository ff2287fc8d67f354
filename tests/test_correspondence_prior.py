"""The correspondence prior: a global colour map fitted along P_W's 1/8 matches (networks/colour_prior.py).

Why it exists: on the benchmark most of the model's error was a mis-estimated *global* grade (a best global
affine fix of its output cut MAE by 30 %), and MKL guesses that grade from colour distributions, which a
re-framed reference skews. Matching cells first and regressing colour on colour recovers the grade from the
content both photos show. These tests build pairs whose right answer is known.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from recolorize.config import get_config
from recolorize.networks.colour_prior import (
    apply_colour_affine,
    colour_terms,
    correspondence_map,
    mkl_affine,
    mutual_matches,
)
from recolorize.networks.model import RecolorModel

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

#: A strong global grade: warmer, more contrast, a cross-channel mix (column-vector [M | t]).
GRADE = torch.tensor(
    [[1.10, 0.08, -0.02, 0.04], [0.02, 0.95, 0.03, 0.01], [-0.05, 0.10, 0.80, -0.03]], dtype=torch.float32
)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def photo(size: int = 128) -> torch.Tensor:
    """The committed example source at ``size`` px, (1, 3, size, size) in [0, 1]."""
    with Image.open(EXAMPLES / "source.jpg") as im:
        array = np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BICUBIC), np.float32)
    return torch.from_numpy(array / 255.0).permute(2, 0, 1)[None].contiguous()


def graded(image: torch.Tensor) -> torch.Tensor:
    """``image`` under GRADE, with its top-left quarter re-coloured on its own (a local edit: outliers)."""
    out = apply_colour_affine(GRADE[None], image)
    h, w = image.shape[-2:]
    out[:, :, : h // 2, : w // 2] = out[:, [2, 0, 1], : h // 2, : w // 2] * 0.7 + 0.2  # channels rotated
    return out.clamp(0.0, 1.0)


def map_error(affine: torch.Tensor, image: torch.Tensor) -> float:
    """Mean |difference| (0-255 levels) between ``affine`` and GRADE on the photo's own colours."""
    return (
        float((apply_colour_affine(affine, image) - apply_colour_affine(GRADE[None], image)).abs().mean())
        * 255
    )


def test_aligned_fit_recovers_the_global_grade_despite_a_local_edit() -> None:
    source = photo()
    target = graded(source)
    robust = correspondence_map(source, target)
    plain = correspondence_map(source, target, iterations=0)  # one weighted least-squares solve
    mkl = mkl_affine(source, target)
    errors = {name: map_error(m, source) for name, m in (("robust", robust), ("plain", plain), ("mkl", mkl))}
    print(errors)
    assert robust.shape == (1, 3, 4)
    assert errors["robust"] < 2.5  # levels: the grade, not the edit
    assert errors["robust"] < 0.5 * errors["plain"]  # the reweighting is what discounts the edited quarter
    assert errors["robust"] < 0.3 * errors["mkl"]


def test_quadratic_fit_follows_a_tone_curve_the_affine_cannot() -> None:
    """A grade with a tone curve (a power of each channel after a gain): the degree-2 map recovers it
    closely, and applying it (the torch path) equals evaluating its terms by hand."""
    source = photo()
    target = (source * 1.1 - 0.05).clamp(0.0, 1.0) ** 1.5
    quadratic = correspondence_map(source, target, degree=2)
    affine = correspondence_map(source, target)
    assert quadratic.shape == (1, 3, 10) and affine.shape == (1, 3, 4)
    errors = [
        float((apply_colour_affine(m, source) - target).abs().mean()) * 255 for m in (quadratic, affine)
    ]
    print(f"MAE (levels): quadratic {errors[0]:.2f}, affine {errors[1]:.2f}")
    assert errors[0] < 0.7 * errors[1]
    pixels = source[0].flatten(1).T  # (N, 3)
    terms = torch.cat([colour_terms(pixels, 2), torch.ones(len(pixels), 1)], dim=1)  # (N, 10)
    by_hand = (terms @ quadratic[0].T).T.reshape(source.shape[1:])
    torch.testing.assert_close(apply_colour_affine(quadratic, source)[0], by_hand, atol=1e-5, rtol=0)
    # strength 0 of either map is the identity, strength 1 the map itself
    from recolorize.networks.colour_prior import lerp_affine

    torch.testing.assert_close(apply_colour_affine(lerp_affine(quadratic, 0.0), source), source)
    torch.testing.assert_close(lerp_affine(quadratic, 1.0), quadratic)


def test_mutual_matches_keep_only_cycle_consistent_pairs() -> None:
    # 4 source cells, 3 reference cells: 0<->1 and 2<->0 are mutual; 1 and 3 both prefer 2, which prefers 3
    attention = torch.tensor(
        [[0.1, 0.9, 0.2], [0.0, 0.1, 0.5], [0.8, 0.2, 0.1], [0.1, 0.0, 0.7]], dtype=torch.float32
    )[None]
    best, weight = mutual_matches(attention)
    assert best.tolist() == [[1, 2, 0, 2]]
    np.testing.assert_allclose(weight[0].numpy(), [0.9, 0.0, 0.8, 0.7])


def test_unmatched_pair_stays_near_the_identity() -> None:
    source = photo(64)
    attention = -torch.ones(1, 64, 64)  # no similarity is positive: every weight is 0
    affine = correspondence_map(source, source.flip(1), attention, (8, 8), (8, 8))
    assert torch.isfinite(affine).all()
    np.testing.assert_allclose(affine[0].numpy(), np.eye(3, 4), atol=1e-3)


@pytest.fixture(scope="module")
def backbone():
    from recolorize.networks.backbones import build_semantic_backbone

    return build_semantic_backbone("efficientnet_lite0")


def test_model_prior_follows_the_matched_content_of_a_cropped_mirrored_reference(backbone) -> None:
    """The reference shows only 60 % of the graded photo, mirrored: its colour distribution is skewed (MKL
    is misled), but the matched cells still carry the grade."""
    torch.manual_seed(0)
    model = RecolorModel(get_config("pointwise"), semantic=backbone).eval()
    source = photo(256)
    target = graded(source)
    crop = target[:, :, :, 100:].flip(-1)  # the right 60 %, mirrored
    reference = F.interpolate(crop, size=(128, 128), mode="bilinear", align_corners=False, antialias=True)
    source_low = F.interpolate(source, size=(128, 128), mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        _, conditioning = model.predict(source_low, reference)
    assert conditioning is not None and conditioning.prior is not None
    ours = map_error(conditioning.prior, source)
    mkl = map_error(mkl_affine(source_low, reference), source)
    print(f"map error (levels): correspondence {ours:.2f}, MKL {mkl:.2f}")
    assert ours < 0.6 * mkl


def test_correspondence_prior_needs_the_colour_correspondence() -> None:
    with pytest.raises(ValueError, match="colour correspondence"):
        get_config("pointwise").replace(prior="correspondence", colour_correspondence=False)


def test_warm_start_moves_weights_to_another_prior_and_refuses_a_misfit(backbone, tmp_path: Path) -> None:
    """The shipped recipe trains its first phases with the MKL prior, then fine-tunes under the
    correspondence prior from those weights (``train --config pointwise --init ...``)."""
    from recolorize.errors import UserError
    from recolorize.training.loop import TrainRequest, _resolve_model_config

    torch.manual_seed(0)
    old = RecolorModel(get_config("pointwise-mkl"), semantic=backbone)
    moved = old.with_config(get_config("pointwise"))
    assert moved.config.prior == "correspondence-quadratic"
    for name, value in old.trainable_state_dict().items():
        assert torch.equal(value, moved.trainable_state_dict()[name]), name
    with pytest.raises(ValueError, match="do not fit config tiny-pointwise"):
        old.with_config(get_config("tiny-pointwise"))

    request = TrainRequest(run_dir=tmp_path, data=(tmp_path,), config="pointwise", init=tmp_path / "w")
    assert _resolve_model_config(request, None, old.config).name == "pointwise"
    assert (
        _resolve_model_config(TrainRequest(tmp_path, (tmp_path,)), None, old.config).name == "pointwise-mkl"
    )

    class Found:  # a checkpoint of another config is still refused
        model_config = old.config

    with pytest.raises(UserError, match="does not match the checkpoint"):
        _resolve_model_config(request, Found(), None)  # type: ignore[arg-type]


def test_unrelated_photos_fall_back_to_mkl_but_a_grey_source_does_not() -> None:
    """Photos that share little content (few, weak mutual matches) take the MKL map; well-matched ones keep
    the fitted map; a greyscale source never falls back (MKL turns its noise into colour)."""
    source = photo(64)
    reference = graded(source)
    mkl = mkl_affine(source, reference)
    cells = 8 * 8
    strong = torch.eye(cells)[None] * 0.9  # every cell matches its twin, similarity 0.9
    weak = torch.eye(cells)[None] * 0.05  # the same matches, barely similar: unrelated photos
    args = (source, reference)
    kept = correspondence_map(*args, strong, (8, 8), (8, 8), fallback=mkl)
    fitted = correspondence_map(*args, strong, (8, 8), (8, 8))
    torch.testing.assert_close(kept, fitted)
    fell = correspondence_map(*args, weak, (8, 8), (8, 8), fallback=mkl)
    torch.testing.assert_close(fell, mkl, atol=1e-5, rtol=0)
    grey = source.mean(1, keepdim=True).expand(-1, 3, -1, -1).contiguous()
    grey_fitted = correspondence_map(grey, reference, weak, (8, 8), (8, 8))
    grey_kept = correspondence_map(
        grey, reference, weak, (8, 8), (8, 8), fallback=mkl_affine(grey, reference)
    )
    torch.testing.assert_close(grey_kept, grey_fitted)
