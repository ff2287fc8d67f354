"""The fast paths give the same results as the paths they replace (one thread, real example photos).

The blocked pointwise rendering (``networks.blocked``, what the ONNX generator graph exports) equals
``PointwiseGenerator.forward``; the torch reference's strip-wise fit and uint8 output equal its whole-image
float versions; ``render_array(dtype=np.uint8)`` holds the samples that saving the float result writes; the
saver takes such samples as they are.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from recolorize.config import NUM_STYLES, get_config
from recolorize.errors import UserError
from recolorize.imaging import LoadedImage, encode_image, load_image, takes_8bit_srgb
from recolorize.inference import carry, pipeline
from recolorize.networks.blocked import render_image
from recolorize.networks.colour_prior import correspondence_map, mkl_affine
from recolorize.networks.pointwise import LOCAL_HINT_CHANNELS, Conditioning, PointwiseGenerator, lab_features
from recolorize.torch_inference import fullres

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def photo(name: str, size: tuple[int, int]) -> torch.Tensor:
    """An example photo resized to ``size`` = (width, height), as (1, 3, H, W) in [0, 1]."""
    with Image.open(EXAMPLES / name) as im:
        array = np.asarray(im.convert("RGB").resize(size, Image.Resampling.BICUBIC), dtype=np.float32) / 255
    return torch.from_numpy(array.copy()).permute(2, 0, 1)[None].contiguous()


def generator_for(name: str, seed: int = 0, **changes) -> PointwiseGenerator:
    """A pointwise generator with random weights everywhere (f is far from 0, sigma not the default)."""
    torch.manual_seed(seed)
    generator = PointwiseGenerator(get_config(name).replace(**changes)).eval()
    with torch.no_grad():
        generator.to_rgb.weight.normal_()
        for bias in generator.biases:
            bias.normal_(0.0, 0.1)
        generator.upsampler.log_sigma.fill_(-1.7)
    return generator


def latents(generator: PointwiseGenerator, resolution: int, seed: int, code: bool = False) -> list:
    """W1, W2, W3 at 1/16, 1/8, 1/4 of the working resolution expanded to the 20 inputs (or 1d codes)."""
    g = torch.Generator().manual_seed(seed)
    if code:
        return torch.randn(1, generator.latent_dim, generator=g)
    levels = [
        torch.randn(1, generator.latent_dim, resolution // f, resolution // f, generator=g)
        for f in (16, 8, 4)
    ]
    return [levels[0]] * 9 + [levels[1]] * 3 + [levels[2]] * (NUM_STYLES - 12)


CASES = {
    "shipped config": ("pointwise", {}, (133, 75), False, True),
    "tiny config": ("tiny-pointwise", {}, (97, 64), False, True),
    "local transfer": ("pointwise", {"local_transfer": True}, (150, 96), False, True),
    "no prior, no hint": (
        "pointwise",
        {"prior": "none", "colour_correspondence": False},
        (120, 80),
        False,
        False,
    ),
    "1d code": ("pointwise", {}, (90, 70), True, True),
    "quadratic prior": ("pointwise", {"prior": "correspondence-quadratic"}, (110, 72), False, True),
    "no conditioning": ("pointwise", {}, (64, 200), False, None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fast_rendering_equals_the_generator(case: str) -> None:
    name, changes, size, code, hint = CASES[case]
    generator = generator_for(name, **changes)
    resolution = get_config(name).resolution
    image = photo("source.jpg", size)
    low = photo("source.jpg", (resolution, resolution))
    conditioning = None
    if hint is not None:
        reference = photo("reference.jpg", (resolution, resolution))
        channels = generator.hint_channels
        cell_hint = torch.rand(
            1, channels, resolution // 8, resolution // 8, generator=torch.Generator().manual_seed(3)
        )
        prior = mkl_affine(low, reference)
        if changes.get("prior") == "correspondence-quadratic":  # an aligned degree-2 fit: Q is not 0
            prior = correspondence_map(low, (low * 1.1 - 0.05).clamp(0, 1) ** 1.4, degree=2)
            assert prior.shape == (1, 3, 10) and prior[:, :, 3:-1].abs().max() > 0.05
        conditioning = Conditioning(prior=prior, hint=cell_hint if hint else None)
    maps = latents(generator, resolution, seed=1, code=code)
    guide_low = lab_features(low)
    with torch.no_grad():
        expected = generator(image, maps, conditioning, guide_low=guide_low)
        fast = render_image(generator, image, maps, conditioning or Conditioning(), guide_low)
    assert (expected - image).abs().max() > 0.05  # the generator really changes the photo
    torch.testing.assert_close(fast, expected, atol=2e-5, rtol=0)
    if changes.get("local_transfer"):
        assert generator.hint_channels == LOCAL_HINT_CHANNELS


def test_fit_in_strips_equals_the_whole_image(monkeypatch) -> None:
    torch.manual_seed(0)
    before = photo("source.jpg", (120, 97))
    after = (before.flip(1) * 0.8 + 0.1 + 0.02 * torch.randn_like(before)).clamp(0, 1)
    monkeypatch.setattr(fullres, "FIT_STRIP_ROWS", 10_000)
    whole = fullres.fit_local_affine(before, after)
    for rows in (1, 5, 16):
        monkeypatch.setattr(fullres, "FIT_STRIP_ROWS", rows)
        strips = fullres.fit_local_affine(before, after)
        # running sums that start at another row round differently: equal to float64 precision
        torch.testing.assert_close(strips[0], whole[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(strips[1], whole[1], atol=1e-6, rtol=0)


def test_uint8_output_is_the_quantised_float_output() -> None:
    torch.manual_seed(1)
    hwc = torch.rand(61, 83, 3)
    src = hwc.permute(2, 0, 1)[None]  # a view of an (H, W, 3) photo, as the pipeline passes it
    dmat, c = 0.4 * torch.randn(1, 3, 3, 9, 13), 0.3 * torch.randn(1, 3, 9, 13)
    floats = fullres.apply_affine(src, dmat, c)
    expected = np.round(np.clip(floats[0].permute(1, 2, 0).numpy(), 0, 1) * 255).astype(np.uint8)
    assert 0 < (expected == 0).mean() < 0.5 and 0 < (expected == 255).mean() < 0.5  # both clips happen
    for rows in (None, 1, 7):
        samples = np.empty((61, 83, 3), dtype=np.uint8)
        fullres.apply_affine(
            src, dmat, c, tile_rows=rows, out=torch.from_numpy(samples).permute(2, 0, 1)[None]
        )
        assert np.array_equal(samples, expected)
    with pytest.raises(ValueError):
        fullres.apply_affine(src, dmat, c, clamp=False, out=torch.empty(1, 3, 61, 83, dtype=torch.uint8))


@pytest.fixture(scope="module")
def shipped() -> pipeline.Recolorizer:
    return pipeline.Recolorizer.from_pretrained()


@pytest.mark.parametrize("direct_max", [pipeline.DIRECT_MAX_PIXELS, 1 << 15])
def test_render_uint8_is_what_saving_the_float_result_writes(shipped, monkeypatch, direct_max: int) -> None:
    """Both full-resolution paths: the generator on every pixel, and (above the limit) the local affine
    transform carrying a smaller rendering up."""
    monkeypatch.setattr(pipeline, "DIRECT_MAX_PIXELS", direct_max)
    source = load_image(EXAMPLES / "source.jpg")
    prepared = shipped.prepare(source, EXAMPLES / "reference.jpg")
    for strength in (1.0, 0.5, 0.0):
        floats = shipped.render_array(prepared, strength)
        samples = shipped.render_array(prepared, strength, dtype=np.uint8)
        assert samples.dtype == np.uint8 and samples.shape == floats.shape
        assert np.array_equal(samples, np.round(np.clip(floats, 0, 1) * 255).astype(np.uint8))
        assert encode_image(samples, like=source, fmt="PNG") == encode_image(floats, like=source, fmt="PNG")
        lean = encode_image(samples, like=source.metadata_only(), fmt="JPEG")
        assert lean == encode_image(floats, like=source, fmt="JPEG")
    with pytest.raises(ValueError):
        shipped.render_array(prepared, 1.0, dtype=np.float64)


def test_takes_8bit_srgb_only_when_saving_just_quantises() -> None:
    rgb = np.random.default_rng(0).random((40, 50, 3), dtype=np.float32)
    plain = LoadedImage(pixels=rgb)
    assert takes_8bit_srgb(plain, "JPEG") and takes_8bit_srgb(plain, "PNG") and takes_8bit_srgb(None, None)
    sixteen = LoadedImage(pixels=rgb, bit_depth=16)
    assert not takes_8bit_srgb(sixteen, "PNG") and not takes_8bit_srgb(sixteen, "TIFF")
    assert takes_8bit_srgb(sixteen, "JPEG")  # JPEG is 8-bit whatever the source
    srgb_icc = Image.new("RGB", (1, 1)).info.get("icc_profile") or _srgb_icc()
    assert takes_8bit_srgb(LoadedImage(pixels=rgb, icc_profile=srgb_icc), "JPEG")
    # a source that kept its own samples is wide-gamut: the change is carried in float
    wide = LoadedImage(pixels=rgb, icc_profile=srgb_icc, samples=(rgb * 255).astype(np.uint8))
    assert not takes_8bit_srgb(wide, "JPEG")
    assert takes_8bit_srgb(wide, "BMP")  # BMP carries no profile: sRGB


def _srgb_icc() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def test_uint8_pixels_are_encoded_as_they_are_with_alpha_and_exif() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.random((30, 40, 3), dtype=np.float32)
    alpha = rng.integers(0, 256, (30, 40), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x010F] = "camera"
    like = LoadedImage(pixels=rgb, alpha=alpha, exif=b"Exif\x00\x00" + exif.tobytes())
    samples = np.round(rgb * 255).astype(np.uint8)
    data = encode_image(samples, like=like, fmt="PNG")
    assert data == encode_image(samples.astype(np.float32) / 255, like=like, fmt="PNG")
    with Image.open(io.BytesIO(data)) as im:
        decoded = np.asarray(im)
        assert im.getexif().get(0x010F) == "camera"
    assert np.array_equal(decoded[..., :3], samples) and np.array_equal(decoded[..., 3], alpha)


def test_metadata_only_keeps_everything_but_the_pixels() -> None:
    source = load_image(EXAMPLES / "source.jpg")
    lean = source.metadata_only()
    assert lean.rgb.shape == source.rgb.shape and lean.rgb.strides == (0, 0, 0) and not lean.rgb.any()
    assert (lean.height, lean.width, lean.path, lean.format) == (
        source.height,
        source.width,
        source.path,
        "JPEG",
    )
    assert lean.exif == source.exif and lean.icc_profile == source.icc_profile


def test_pieces_in_threads_equal_one_thread_and_record_no_graph() -> None:
    """Bands, strips and tiles run in torch's thread count of threads (parallel.for_each): the same
    numbers up to float rounding, and no autograd graph although the generator's biases require grad."""
    generator = generator_for("pointwise")
    image = photo("source.jpg", (300, 200))
    low = photo("source.jpg", (128, 128))
    maps = latents(generator, 128, seed=4)
    guide_low = lab_features(low)
    results = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        with torch.no_grad():
            rendered = render_image(generator, image, maps, Conditioning(), guide_low)
            dmat, c = fullres.fit_local_affine(image, rendered.clamp(0, 1))
            samples = torch.empty(1, 3, 200, 300, dtype=torch.uint8)
            fullres.apply_affine(image, dmat, c, tile_rows=7, out=samples)
        assert not rendered.requires_grad and rendered.grad_fn is None
        results[threads] = (rendered, dmat, c, samples)
    for one, two in zip(results[1][:3], results[2][:3], strict=True):
        torch.testing.assert_close(one, two, atol=1e-5, rtol=0)
    assert (results[1][3].int() - results[2][3].int()).abs().max() <= 1


def test_for_each_raises_the_first_error() -> None:
    from recolorize.torch_inference.parallel import for_each

    torch.set_num_threads(2)
    seen = []

    def work(item: int) -> None:
        if item == 3:
            raise ValueError("piece 3")
        seen.append(item)

    with pytest.raises(ValueError, match="piece 3"):
        for_each(work, range(6))
    assert torch.get_num_threads() == 2


def test_a_large_photo_carried_up_stays_close_to_rendering_every_pixel(shipped, monkeypatch) -> None:
    """The carry-up of photos over ``DIRECT_MAX_PIXELS`` (the README pair's source at 1200x800):
    close to the generator on every pixel, and closer with the shipped radius and eps than with the
    previous ones (radius 3, eps 3e-5) at the same copy size (benchmarks/carry_fidelity.py measures it
    on 20 DPST photos)."""
    from recolorize.evaluation.metrics import delta_e2000

    with Image.open(EXAMPLES / "source.jpg") as im:
        large = np.asarray(im.convert("RGB").resize((1200, 800), Image.Resampling.BICUBIC))
    prepared = shipped.prepare(load_image(large), EXAMPLES / "reference.jpg")
    monkeypatch.setattr(pipeline, "DIRECT_MAX_PIXELS", 1 << 21)
    every_pixel = shipped.render_array(prepared)  # 0.96 MP, under this limit: the generator on every pixel
    monkeypatch.undo()
    carried = shipped.render_array(prepared)  # over the shipped limit: a 0.26-MP copy, carried up
    monkeypatch.setattr(carry, "CARRY_RADIUS", 3)
    monkeypatch.setattr(carry, "CARRY_EPS", 3e-5)
    before = shipped.render_array(prepared)
    shipped_error, previous_error = delta_e2000(carried, every_pixel), delta_e2000(before, every_pixel)
    assert 0.0 < shipped_error < 1.0
    assert shipped_error < 0.9 * previous_error, (shipped_error, previous_error)


def test_a_reference_is_described_once_for_many_sources(shipped, monkeypatch) -> None:
    """The same decoded reference (one object) reuses its prior descriptors: the same lattice as a first
    preparation, the frozen network run on the source alone."""
    reference = load_image(EXAMPLES / "reference.jpg")
    sources = [
        load_image(EXAMPLES / "source.jpg"),
        load_image(np.asarray(photo("source.jpg", (300, 200))[0].permute(1, 2, 0))),
    ]
    fresh = [pipeline.Recolorizer(shipped.model).prepare(s, reference) for s in sources]
    batches = []
    recolorizer = pipeline.Recolorizer(shipped.model)
    original = shipped.model.features
    monkeypatch.setattr(
        shipped.model, "features", lambda images: batches.append(len(images)) or original(images)
    )
    reused = [recolorizer.prepare(s, reference) for s in sources]
    assert batches == [2, 1]  # source and reference, then the second source alone
    for a, b in zip(fresh, reused, strict=True):
        np.testing.assert_array_equal(a.lattice, b.lattice)
        for m, n in zip(a.predicted.maps, b.predicted.maps, strict=True):
            np.testing.assert_array_equal(m, n)
    recolorizer.prepare(sources[0], load_image(EXAMPLES / "reference.jpg"))  # another object: computed again
    assert batches == [2, 1, 2]


def test_work_in_the_background_gives_its_result_or_its_error() -> None:
    """``in_background`` (the model loads while the photos decode): the result when asked, or the error it
    raised, raised where it is asked for."""
    from recolorize.threads import in_background

    assert in_background(lambda: 6 * 7).result() == 42

    def fails() -> None:
        raise UserError("cannot load model weights here")

    with pytest.raises(UserError, match="cannot load"):
        in_background(fails).result()


def test_a_helpers_share_of_the_cores_holds_for_its_own_pieces_and_its_blas(monkeypatch) -> None:
    """A ``--jobs`` helper runs its NumPy pieces on its share of the cores (``limit_cores``), and helpers
    start with the BLAS thread variables at that share, which are put back after (its threads fighting the
    other helpers' made ``--jobs 2`` slower than one process)."""
    import os
    import threading

    from recolorize import threads
    from recolorize.inference import jobs

    monkeypatch.setattr(threads, "_limit", None)
    available = threads.cores()
    threads.limit_cores(1)
    assert threads.cores() == 1
    seen: set[str] = set()
    threads.in_threads(lambda _: seen.add(threading.current_thread().name), range(8))
    assert seen == {threading.current_thread().name}  # inline, one thread
    monkeypatch.setattr(threads, "_limit", None)
    assert threads.cores() == available
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    with jobs._thread_variables(1):
        assert all(os.environ[name] == "1" for name in threads.THREAD_VARIABLES)
    assert os.environ["OMP_NUM_THREADS"] == "7" and "OPENBLAS_NUM_THREADS" not in os.environ
