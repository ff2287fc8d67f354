"""Inference on ONNX Runtime (issue 22): the exported graphs compute what the torch networks compute, the
whole ONNX pipeline stays within a level of the torch pipeline on real photos, and the commands a
photographer runs never import torch.

Tolerances: the graphs run the same float32 operations as torch, in another order (a fused matmul, a
softmax): 1e-4 on any output (measured: 3e-5 on the predictor's maps, 3e-6 on the generator's colours).
End to end, a pixel may differ by one level of 255 where a float lands beside a rounding boundary.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from recolorize.export.graphs import FeaturesGraph, GeneratorGraph, PredictorGraph
from recolorize.imaging import load_image, resize_array, resize_for_network
from recolorize.inference.carry import apply_affine, fit_local_affine
from recolorize.inference.pipeline import Recolorizer, default_weights_path
from recolorize.networks.blocked import render_image
from recolorize.networks.model import RecolorModel
from recolorize.networks.pointwise import lab_features

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def shipped() -> tuple[RecolorModel, Recolorizer]:
    """The shipped torch weights and the shipped graphs exported from them."""
    torch.manual_seed(0)
    return RecolorModel.load(default_weights_path() / "model.safetensors"), Recolorizer.from_pretrained()


def _low(path: Path, size: int = 128) -> torch.Tensor:
    return resize_for_network(load_image(path).tensor(), size)


def test_the_feature_graph_equals_the_frozen_network(shipped) -> None:
    model, recolorizer = shipped
    images = torch.rand(2, 3, 384, 256, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = FeaturesGraph(model)(images)
    got = recolorizer.model.features(images.numpy())
    for a, b in zip(got, expected, strict=True):
        assert a.shape == tuple(b.shape)
        assert np.abs(a - b.numpy()).max() < TOLERANCE


@pytest.mark.parametrize("count", [1, 2, 3])
def test_the_predictor_graph_equals_the_torch_networks_for_any_number_of_references(shipped, count) -> None:
    """Traced with two references, the graph runs one or three: P_W's maps, W0_S and the hint equal the
    model's own ``predictor_inputs`` + ``forward_with_hint`` (which lay several references side by side)."""
    model, recolorizer = shipped
    source = _low(EXAMPLES / "source.jpg")
    references = [
        _low(EXAMPLES / "reference.jpg"),
        _low(EXAMPLES / "source.jpg").flip(-1),
        torch.rand(1, 3, 128, 128),
    ]
    references = references[:count]
    reference = references[0] if count == 1 else references
    with torch.no_grad():
        inputs = model.predictor_inputs(source, reference)
        canvas, _ = model.reference_canvas(reference)
        maps, hint = model.predictor.forward_with_hint(source, canvas, inputs)
        graph = PredictorGraph(model)(source, torch.cat(references))
    predicted = recolorizer.model.predict(source.numpy(), torch.cat(references).numpy())
    expected = [*maps, inputs.source_maps, hint]
    got = [*predicted.maps, predicted.self_maps, predicted.hint]
    for a, b, c in zip(got, expected, graph, strict=True):
        assert a.shape == tuple(b.shape)
        assert np.abs(a - b.numpy()).max() < TOLERANCE
        assert torch.equal(c, b) or float((c - b).abs().max()) < 1e-5  # the wrapper's batching: same numbers


@pytest.mark.parametrize("size", [(321, 481), (97, 64), (1, 1), (600, 413)])
@pytest.mark.parametrize("strength", [1.0, 0.3])
def test_the_generator_graph_equals_the_generator_at_any_size(shipped, size, strength) -> None:
    """Traced at 200 x 300, the graph renders any size as ``PointwiseGenerator.forward`` does."""
    model, recolorizer = shipped
    source = _low(EXAMPLES / "source.jpg")
    with torch.no_grad():
        inputs = model.predictor_inputs(source, _low(EXAMPLES / "reference.jpg"))
        maps, hint = model.predictor.forward_with_hint(source, _low(EXAMPLES / "reference.jpg"), inputs)
    generator = torch.Generator().manual_seed(2)
    image = torch.rand(*size, 3, generator=generator)
    base = (image * 0.8 + 0.1).clamp(0, 1)
    args = (
        image,
        base,
        source,
        inputs.source_maps,
        *maps,
        hint,
        torch.tensor([strength]),
        torch.tensor([0, size[0]]),
    )
    with torch.no_grad():
        expected = GeneratorGraph(model)(*args)
    predicted = recolorizer.model.predict(source.numpy(), _low(EXAMPLES / "reference.jpg").numpy())
    got = recolorizer.model.generate(image.numpy(), base.numpy(), source.numpy(), predicted, strength)
    assert got.shape == (*size, 3)
    assert np.abs(got - expected.numpy()).max() < TOLERANCE


@pytest.mark.parametrize("size", [(64, 64), (37, 101), (130, 70), (2, 3)])
def test_the_blocked_rendering_equals_the_generator_forward(tiny_model, size) -> None:
    """``networks.blocked`` (what the generator graph exports) is ``PointwiseGenerator.forward`` laid out cell
    by cell: the same colours on images whose sides the grids do and do not divide."""
    model = tiny_model
    source = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        maps, conditioning = model.predict(
            source, torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
        )
        image = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(5))
        expected = model.generator(image, maps, conditioning, guide_low=lab_features(source))
        got = render_image(model.generator, image, maps, conditioning, lab_features(source))
    assert float((got - expected).abs().max()) < 1e-5


@pytest.fixture(scope="module")
def tiny_model() -> RecolorModel:
    from recolorize.config import get_config

    torch.manual_seed(0)
    model = RecolorModel(get_config("tiny-lut")).eval()
    with torch.no_grad():
        model.generator.to_rgb.weight.normal_(0.0, 0.5)
    return model


def test_resize_array_is_the_network_resize() -> None:
    """The NumPy/Pillow resize inference uses equals torch's antialiased bilinear (training's) to 1e-4."""
    rgb = np.random.default_rng(0).random((321, 481, 3), dtype=np.float32)
    for size in [(128, 128), (384, 384), (700, 900), (321, 481), (5, 3)]:
        expected = resize_for_network(torch.from_numpy(rgb).permute(2, 0, 1)[None], size)[0].permute(1, 2, 0)
        assert np.abs(resize_array(rgb, size) - expected.numpy()).max() < 1e-4, size


def test_the_numpy_carry_up_equals_the_torch_one() -> None:
    """The local affine carry-up (fit on the copy, applied at full size) in NumPy is the torch one's maths."""
    from recolorize.torch_inference import fullres

    rng = np.random.default_rng(1)
    before = rng.random((90, 120, 3), dtype=np.float32)
    after = np.clip(before[..., ::-1] * 0.7 + 0.2 * before + 0.05, 0, 1).astype(np.float32)
    dmat, c = fit_local_affine(before, after, radius=1, eps=3e-6)
    tb, ta = (torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None] for x in (before, after))
    tdmat, tc = fullres.fit_local_affine(tb, ta, radius=1, eps=3e-6)
    assert np.abs(dmat - tdmat[0].numpy()).max() < 1e-5 and np.abs(c - tc[0].numpy()).max() < 1e-5
    source = rng.random((301, 407, 3), dtype=np.float32)
    out = np.empty_like(source)
    apply_affine(source, dmat, c, out)
    expected = fullres.apply_affine(torch.from_numpy(source).permute(2, 0, 1)[None], tdmat, tc)
    assert np.abs(out - expected[0].permute(1, 2, 0).numpy()).max() < 1e-5
    levels = np.empty(source.shape, dtype=np.uint8)
    apply_affine(source, dmat, c, levels)
    assert np.abs(levels.astype(int) - np.rint(out * 255).astype(int)).max() <= 1


def test_the_onnx_pipeline_is_within_a_level_of_the_torch_pipeline(shipped, shared_data: Path) -> None:
    """End to end on real photos (BSDS500 at their own size, the direct path; the demo photo upscaled past
    0.5 MP, the carried path) at strength 1 and 0.5: no pixel more than one level from the torch pipeline."""
    from PIL import Image

    from recolorize.torch_inference.recolorizer import TorchRecolorizer

    _, recolorizer = shipped
    reference_model = TorchRecolorizer.from_pretrained(default_weights_path() / "model.safetensors")
    photos = sorted((shared_data / "bsds500" / "images" / "test").glob("*.jpg"))[:4]
    large = np.asarray(Image.open(EXAMPLES / "source.jpg").resize((1200, 800), Image.Resampling.BICUBIC))
    pairs = [(photos[0], photos[1]), (photos[2], photos[3]), (large, EXAMPLES / "reference.jpg")]
    for source, reference in pairs:
        for strength in (1.0, 0.5):
            ours = recolorizer.render_array(recolorizer.prepare(source, reference), strength, np.uint8)
            theirs = reference_model.render_array(
                reference_model.prepare(source, reference), strength, np.uint8
            )
            difference = np.abs(ours.astype(int) - theirs.astype(int))
            assert difference.max() <= 1, (getattr(source, "name", "large"), strength, difference.max())


COMMANDS_WITHOUT_TORCH = {
    "transfer": ["transfer", "{source}", "{reference}", "-o", "{out}/out.jpg"],
    "lut": ["lut", "{source}", "{reference}", "-o", "{out}/look.cube"],
    "lut-apply": ["lut-apply", "{out}/look.cube", "{source}", "-o", "{out}/applied.jpg"],
}


def test_the_photographers_commands_run_with_torch_unimportable(tmp_path: Path) -> None:
    """``transfer``, ``lut``, ``lut-apply`` (run) and ``app`` (modules imported, model loaded), each in a
    fresh interpreter where ``import torch`` and ``import scipy`` fail (the base install has neither): each
    succeeds, and torch never enters sys.modules."""
    fields = {"source": EXAMPLES / "source.jpg", "reference": EXAMPLES / "reference.jpg", "out": tmp_path}
    for name, argv in COMMANDS_WITHOUT_TORCH.items():
        args = [a.format(**fields) for a in argv]
        code = (
            "import sys; sys.modules['torch'] = None; sys.modules['scipy'] = None\n"
            "from recolorize.cli import main\n"
            f"status = main({args!r})\n"
            "assert 'torch' not in sys.modules or sys.modules['torch'] is None\n"
            "sys.exit(status)\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (name, done.stderr[-2000:])
    assert (tmp_path / "out.jpg").is_file() and (tmp_path / "applied.jpg").is_file()
    code = (
        "import sys\n"
        "import recolorize.commands.transfer, recolorize.commands.lut, recolorize.commands.lut_apply\n"
        "import recolorize.commands.app, recolorize.app.server, recolorize.app.jobs\n"
        "from recolorize import Recolorizer\n"
        "Recolorizer.from_pretrained()\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


def test_a_model_trained_on_the_local_field_gets_it_in_its_base_in_both_pipelines(tmp_path: Path) -> None:
    """``local_field="base"`` (config ``pointwise-lut-local``): both pipelines hand f the lattice plus the
    prior's local field as its base, within a level of each other, and that is not the shipped placement
    (the field on f's output) that the same networks give under ``pointwise-lut``."""
    from recolorize.config import get_config
    from recolorize.export.onnx import export_onnx
    from recolorize.torch_inference.recolorizer import TorchRecolorizer

    shipped_weights = RecolorModel.load(default_weights_path() / "model.safetensors")
    model = RecolorModel(get_config("pointwise-lut-local"), semantic=shipped_weights.semantic).eval()
    model.load_state_dict(shipped_weights.state_dict())
    export_onnx(model, tmp_path)
    in_base = Recolorizer.from_pretrained(tmp_path)
    assert in_base.config.local_field == "base"
    torch_in_base = TorchRecolorizer(model, "cpu", "direct")
    source, reference = EXAMPLES / "source.jpg", EXAMPLES / "reference.jpg"
    prepared = in_base.prepare(source, reference)
    assert prepared.local is not None
    ours = in_base.render_array(prepared, 1.0, np.uint8).astype(int)
    theirs = torch_in_base.render_array(torch_in_base.prepare(source, reference), 1.0, np.uint8).astype(int)
    assert np.abs(ours - theirs).max() <= 1
    after = Recolorizer.from_pretrained()
    shipped = after.render_array(after.prepare(source, reference), 1.0, np.uint8).astype(int)
    assert np.abs(ours - shipped).mean() > 0.05  # the placement changes f's input, so its output


def test_the_carry_up_of_8bit_samples_is_that_of_their_float_pixels(monkeypatch) -> None:
    """An 8-bit photo is carried up from its samples (no float copy of the photo): the same numbers as from
    its float pixels (samples / 255), the uint8 output ``round(x * 255)`` of the float one, whatever the
    thread count (each piece writes its own rows)."""
    from recolorize import threads
    from recolorize.inference import carry

    rng = np.random.default_rng(2)
    samples = rng.integers(0, 256, (203, 307, 3), dtype=np.uint8)
    dmat = (0.3 * rng.standard_normal((3, 3, 17, 23))).astype(np.float32)
    c = (0.2 * rng.standard_normal((3, 17, 23))).astype(np.float32)
    floats = np.empty(samples.shape, np.float32)
    apply_affine(samples.astype(np.float32) / np.float32(255), dmat, c, floats)
    assert 0 < (floats == 0).mean() < 0.5 and 0 < (floats == 1).mean() < 0.5  # both clips happen
    from_samples = np.empty(samples.shape, np.float32)
    apply_affine(samples, dmat, c, from_samples)
    assert np.array_equal(from_samples, floats)
    expected = np.round(floats * 255).astype(np.uint8)
    for count in (1, 2, 3):
        monkeypatch.setattr(threads, "cores", lambda count=count: count)
        monkeypatch.setattr(carry, "cores", lambda count=count: count)
        levels = np.empty(samples.shape, np.uint8)
        apply_affine(samples, dmat, c, levels)
        assert np.array_equal(levels, expected), count


def test_a_large_8bit_photo_is_recoloured_without_its_float_copy(shipped) -> None:
    """The transfer of an 8-bit photo over ``DIRECT_MAX_PIXELS`` to 8-bit samples never makes the photo's
    float pixels (144 MB and ~0.2 s at 12 MP): the decoded image still holds only its samples after."""
    from PIL import Image

    _, recolorizer = shipped
    with Image.open(EXAMPLES / "source.jpg") as im:
        large = im.convert("RGB").resize((1000, 700), Image.Resampling.BICUBIC)
    source = load_image(large)
    assert source.srgb8 is not None
    prepared = recolorizer.prepare(source, EXAMPLES / "reference.jpg")
    result = recolorizer.render_array(prepared, 1.0, np.uint8)
    assert result.shape == (700, 1000, 3) and "_rgb" not in vars(source)
    assert np.abs(result.astype(int) - source.srgb8).mean() > 5  # it was re-coloured


def test_optimised_graphs_are_cached_and_give_the_same_numbers(tmp_path: Path, monkeypatch) -> None:
    """The first load keeps ONNX Runtime's optimised graphs in the cache folder; the next load runs them
    (not optimising again) with the same outputs; a damaged cached graph is made again, an unwritable
    cache folder only means no cache, and the cache keeps the most recently used graphs."""
    from recolorize.inference import onnx_model
    from recolorize.inference.onnx_model import OnnxModel
    from recolorize.io_utils import CACHE_DIR_ENV

    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    folder = default_weights_path()
    first = OnnxModel(folder).wait()
    cached = sorted((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert [p.name.split("-")[0] for p in cached] == ["features", "generator", "predictor"]
    second = OnnxModel(folder)
    assert {Path(s._model_path) for s in second.sessions.values()} == set(cached)
    images = np.random.default_rng(4).random((2, 3, 96, 128), dtype=np.float32)
    for one, two in zip(first.features(images), second.features(images), strict=True):
        assert np.array_equal(one, two)
    features = next(p for p in cached if p.name.startswith("features"))
    features.write_bytes(b"not a graph")
    third = OnnxModel(folder)
    assert Path(third.sessions["features"]._model_path) == folder / "features.onnx"
    assert features.stat().st_size > 1000  # written again, whole
    assert np.array_equal(third.features(images)[0], first.features(images)[0])
    (tmp_path / "a-file").write_text("x")
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "a-file"))
    assert np.array_equal(OnnxModel(folder).features(images)[0], first.features(images)[0])
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "small"))
    monkeypatch.setattr(onnx_model, "OPTIMISED_KEPT", 2)
    OnnxModel(folder).wait()
    assert len(list((tmp_path / "small" / "onnx").glob("*.onnx"))) == 2


def test_the_radius_one_box_mean_is_the_running_sum_one() -> None:
    """The carry-up's shipped radius takes two shifted additions instead of a running sum: the same border-
    renormalised means, on grids down to one sample a side."""
    from recolorize.inference import carry

    rng = np.random.default_rng(5)
    for shape in [(3, 17, 29), (2, 1, 5), (1, 2, 1), (4, 1, 1)]:
        x = rng.random(shape)
        slow = carry._box_axis(carry._box_axis(x, 1, -1), 1, -2)
        assert np.abs(carry._box(x, 1) - slow).max() < 1e-12, shape


def test_the_frozen_features_pad_inside_their_convolutions(tmp_path: Path, monkeypatch) -> None:
    """The exported graphs name no omitted optional input (the exporter's empty ``constant_value`` of each
    Pad), so ONNX Runtime folds the backbone's "same" paddings into its convolutions: the optimised features
    and predictor graphs copy no padded tensor (and keep one layout through the backbone)."""
    import onnx

    from recolorize.inference.onnx_model import OnnxModel
    from recolorize.io_utils import CACHE_DIR_ENV

    folder = default_weights_path()
    for name in ("features", "predictor", "generator"):
        graph = onnx.load(str(folder / f"{name}.onnx"))
        assert all(node.input[-1] for node in graph.graph.node if len(node.input)), name
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    OnnxModel(folder).wait()
    for name in ("features", "predictor"):
        (optimised,) = (tmp_path / "cache" / "onnx").glob(f"{name}-*.onnx")
        ops = [node.op_type for node in onnx.load(str(optimised)).graph.node]
        assert "Conv" in "".join(ops) and "Pad" not in ops, name


def test_the_transfer_is_the_same_bits_on_any_number_of_threads(shared_data: Path, monkeypatch) -> None:
    """The graphs and the NumPy steps give the same numbers on 1, 2 or 3 threads (P_W's graph runs on one:
    its small convolutions summed in another order on more), so ``--jobs N`` writes ``--jobs 1``'s files
    and another machine's core count does not move a pixel. A real photo upscaled past
    ``DIRECT_MAX_PIXELS``: the copies, the prior, the generator and the carry-up all run."""
    from PIL import Image

    from recolorize import threads
    from recolorize.inference.onnx_model import OnnxModel
    from recolorize.inference.pipeline import DIRECT_MAX_PIXELS

    with Image.open(shared_data / "dpst" / "input" / "in1.png") as im:
        photo = im.convert("RGB").resize((im.width * 2, im.height * 2), Image.Resampling.BICUBIC)
    source = load_image(photo)
    assert source.height * source.width > DIRECT_MAX_PIXELS
    results = []
    for count in (1, 2, 3):
        monkeypatch.setattr(threads, "_limit", count)
        recolorizer = Recolorizer(OnnxModel(default_weights_path(), threads=count).wait())
        results.append(recolorizer.render_array(recolorizer.prepare(source, EXAMPLES / "reference.jpg"), 1.0))
    assert np.array_equal(results[0], results[1]) and np.array_equal(results[0], results[2])
