"""Recolorizer: the inference pipeline a user calls, on ONNX Runtime and NumPy (no torch).

    I_S, I_R (any size)     decoded (``recolorize.imaging``)
    prior                   the lattice prior from 384-px copies: frozen features (``features.onnx``),
                            matched and fitted in NumPy (``recolorize.prior``), once per pair; with the
                            local field of what the matches show that the lattice does not explain
    W, W0_S, hint           P_W(I_S, I_R) and E_W(I_S) at the working resolution (``predictor.onnx``), once
    output                  G'(I_S, W_alpha) on every pixel (``generator.onnx``),
                            W_alpha = W0_S + alpha (W - W0_S), over the base = the prior at strength alpha
                            applied in NumPy; plus alpha times the local field (sliced in NumPy), on f's
                            output or in its base (``ModelConfig.local_field``); a photo
                            over ``DIRECT_MAX_PIXELS`` is rendered on a ``CARRY_PIXELS`` copy and carried to
                            its size by a local affine colour transform fitted there (``carry``)

``prepare`` runs everything but the generator once, so moving the strength reruns only the rendering (the
web app relies on this). Strength 0 returns the source exactly; in between, the rendering is anchored to
the source: out(alpha) = G'(W_alpha) + (1 - alpha) (I - G'(W0_S)), exact at both ends.

Colour spaces: the network sees, and ``render_array`` returns, sRGB (``LoadedImage.rgb``). A source in a wider
profile keeps its own samples, and the savers (``to_pil``, ``encode_image``, ``save_image`` with
``like=source``) carry the sRGB change onto them (``recolorize.imaging``).

Example::

    from recolorize import Recolorizer
    rc = Recolorizer.from_pretrained()
    rc.transfer("examples/source.jpg", "examples/reference.jpg", strength=1.0).save("out.jpg")
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from recolorize.errors import UserError
from recolorize.imaging import (
    LoadedImage,
    load_image,
    resize_array,
    rgbx_array,
    takes_8bit_srgb,
    to_pil,
    to_uint8,
)
from recolorize.inference.carry import carry_up
from recolorize.inference.lut.table import Lut3D, apply_lut
from recolorize.inference.onnx_model import (  # the model's folder and device, re-exported for callers
    OnnxModel,
    PredictedMaps,
    check_device,
    default_weights_path,
    model_folder,
)
from recolorize.prior import (
    PRIOR_SIZE,
    LocalField,
    apply_local_field,
    descriptors,
    lerp_lattice,
    network_input,
)
from recolorize.prior import pair_prior as fit_pair_prior
from recolorize.threads import in_background, return_free_memory

__all__ = [
    "Recolorizer",
    "PreparedPair",
    "default_weights_path",
    "ImageInput",
    "check_device",
    "model_folder",
]

#: Largest photo (pixels) on which the generator runs on every pixel (0.5 MP); the benchmark's photos
#: (481x321) are all rendered so.
DIRECT_MAX_PIXELS = 1 << 19
#: A larger photo's networks read a copy of this many pixels (0.26 MP): the prior's 384-px and P_W's 128-px
#: inputs are made from it (``network_copy``), never from the full-size photo.
NETWORK_PIXELS = 1 << 18
#: ... and the generator renders a copy of this many (0.066 MP, made from the network copy), carried to the
#: photo's own size (``carry``). ``benchmarks/carry_fidelity.py``: against the generator on every pixel of
#: 20 1.2-MP photos, mean dE2000 1.06 (0.26 MP, the previous copy: 0.99) in 0.36x the time; on 100
#: make-bench pairs upscaled 2x, MAE to the ground truth 3.937 against 3.935 (every pixel: 3.963).
CARRY_PIXELS = 1 << 16
#: Above this many pixels a photo's freed memory is handed back to the system between steps
#: (``recolorize.threads.return_free_memory``: 12 MP peaked 421-466 MB without, 394-404 MB with). Below it
#: the pages would only fault back in for the next photo of a batch (torch-era measurement: 20 1-MP photos
#: took 420k minor page faults with the trims and 124k-255k without, 1.2 s against 0.7-1.0 s of system time).
TRIM_PIXELS = 4_000_000
#: Most references one pair may have (the app's limit too): P_W's attention grows with their number.
MAX_REFERENCES = 4

ImageInput = str | Path | Image.Image | np.ndarray | LoadedImage


def _smaller(image: LoadedImage) -> np.ndarray:
    """A reference's pixels for its network copies: its ``network_copy`` when it is large, else itself."""
    copy = network_copy(image)
    return copy if copy is not None else image.rgb


def image_copy(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``rgb`` (H, W, 3) resized to ``size`` as a network input (1, 3, h, w) float32."""
    return resize_array(rgb, size).transpose(2, 0, 1)[None]


def network_copy(source: LoadedImage) -> np.ndarray | None:
    """The ``NETWORK_PIXELS`` copy (h, w, 3) float32 of a photo over ``DIRECT_MAX_PIXELS`` (its aspect kept),
    else None. Why the networks' smaller copies are made from it: resizing a 12-MP photo costs ~0.25 s a
    copy through float planes (~0.08 s for 8-bit samples), and the copies from a 0.26-MP one differ from
    those of the photo by ~1e-3 of a level's worth where it matters."""
    size = scaled_size(source.height, source.width, NETWORK_PIXELS)
    return None if size is None else resize_array(source.pixels, size)


def carry_copy(source: LoadedImage, network: np.ndarray | None = None) -> np.ndarray | None:
    """The ``CARRY_PIXELS`` copy (h, w, 3) float32 the generator renders for a photo over
    ``DIRECT_MAX_PIXELS``, else None: made from its ``network`` copy (made here when not given)."""
    size = carry_size(source.height, source.width)
    if size is None:
        return None
    return resize_array(network if network is not None else network_copy(source), size)


def carry_size(height: int, width: int) -> tuple[int, int] | None:
    """(height, width) of the ``CARRY_PIXELS`` copy of a photo over ``DIRECT_MAX_PIXELS``, else None."""
    return scaled_size(height, width, CARRY_PIXELS)


def scaled_size(height: int, width: int, pixels: int) -> tuple[int, int] | None:
    """(height, width) of a copy of about ``pixels`` pixels of a photo over ``DIRECT_MAX_PIXELS`` (its aspect
    kept), else None."""
    if height * width <= DIRECT_MAX_PIXELS:
        return None
    scale = math.sqrt(pixels / (height * width))
    return max(1, round(height * scale)), max(1, round(width * scale))


@dataclass
class PreparedPair:
    """A source/reference pair after the networks that run once per pair: everything ``render`` needs.

    source: the loaded full-resolution source (pixels, alpha, ICC profile, EXIF).
    source_low: I_S at the working resolution (1, 3, r, r).
    predicted: P_W's maps, W0_S and the colour hint.
    lattice: the lattice prior (S, S, S, 3).
    local: the prior's local field (``recolorize.prior.local``), None between different scenes.
    copy: the ``CARRY_PIXELS`` copy (h, w, 3) the generator renders for a photo over ``DIRECT_MAX_PIXELS``,
        else None; made once (the networks' inputs came from the larger ``network_copy``).
    timings: seconds spent per step, for benchmarks.
    """

    source: LoadedImage
    source_low: np.ndarray
    predicted: PredictedMaps
    lattice: np.ndarray
    local: LocalField | None = None
    copy: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class _ReferenceInputs:
    """What the networks read of one reference: P_W's copy (1, 3, r, r), the prior's 384-px copy and, once
    computed, its cell descriptors (N, 152)."""

    low: np.ndarray
    prior_copy: np.ndarray
    descriptors: np.ndarray | None = None


class Recolorizer:
    """Re-colour photos after a reference with an exported model (``OnnxModel``)."""

    def __init__(self, model: OnnxModel) -> None:
        self.model = model
        self.config = model.config
        # the last single reference's network copies and descriptors: a folder re-coloured after one
        # reference makes them once (weakref to the decoded reference, its inputs)
        self._reference_memo: tuple[weakref.ref, _ReferenceInputs] | None = None
        self._memo_lock = threading.Lock()

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path | None = None,
        device: str = "cpu",
        threads: int | None = None,
        wait: bool = True,
    ) -> Recolorizer:
        """Load an exported model (a folder of graphs and ``model.json``, or a file in it); None = the shipped
        model. ``WeightsError`` (a ``ValueError`` with one line naming the file) when it cannot be loaded.
        ``wait=False`` returns while the graphs still load (``OnnxModel``): a graph's error is then raised
        by the first step that runs it."""
        model = OnnxModel(model_folder(path), device=check_device(device), threads=threads)
        return cls(model.wait() if wait else model)

    @property
    def resolution(self) -> int:
        """The working resolution r of P_W (the one the graphs were exported at)."""
        return self.model.resolution

    @resolution.setter
    def resolution(self, value: int | None) -> None:
        if value is not None and value != self.model.resolution:
            raise UserError(
                f"--size {value}: this model's graphs run at {self.model.resolution} px "
                "(export the model at another working resolution to use it)"
            )

    @property
    def device(self) -> str:
        return self.model.device

    # --- steps ----------------------------------------------------------------------------------------
    def prepare(self, source: ImageInput, reference: ImageInput | Sequence[ImageInput]) -> PreparedPair:
        """Load the images, fit the prior and run P_W once (section 3.4); greyscale sources are colourised
        alike. reference: one image, or a list of up to ``MAX_REFERENCES``: each region of the source then
        takes its colour from its best match in any of them."""
        start = time.perf_counter()
        source_image = source if isinstance(source, LoadedImage) else load_image(source)
        references = list(reference) if isinstance(reference, (list, tuple)) else [reference]
        if not references:
            raise UserError("at least one reference is needed")
        if len(references) > MAX_REFERENCES:
            raise UserError(f"at most {MAX_REFERENCES} references, got {len(references)}")
        reference_images = [r if isinstance(r, LoadedImage) else load_image(r) for r in references]
        loaded = time.perf_counter()
        network = network_copy(source_image)
        copy = carry_copy(source_image, network)
        trims = source_image.height * source_image.width > TRIM_PIXELS
        if trims:
            return_free_memory()  # the resize's plane copies, before the networks run
        source_rgb = network if network is not None else source_image.rgb
        inputs = [self._reference_inputs(image, len(reference_images) == 1) for image in reference_images]
        # the frozen features first (their graph loads first: ``OnnxModel``); then P_W (one thread:
        # ``ONE_THREAD_GRAPHS``) in a thread while this one fits the prior on the other core
        source_copy, source_descriptors = self._describe(source_rgb, inputs)
        if trims:
            return_free_memory()  # the frozen features' activations, before P_W's and the fit's
        described_at = time.perf_counter()
        source_low = image_copy(source_rgb, (self.resolution, self.resolution))
        references_low = np.concatenate([entry.low for entry in inputs])
        predicting = in_background(lambda: self.model.predict(source_low, references_low))
        try:
            prior = fit_pair_prior(
                source_copy,
                [entry.prior_copy for entry in inputs],
                source_descriptors,
                [entry.descriptors for entry in inputs],
            )
        finally:
            predicted = predicting.result()  # P_W's error, if any, after the fit's
        if trims:
            return_free_memory()  # the networks' activations, before the rendering
        done = time.perf_counter()
        return PreparedPair(
            source=source_image,
            source_low=source_low,
            predicted=predicted,
            lattice=prior.lattice,
            local=prior.local,
            copy=copy,
            timings={"load": loaded - start, "features": described_at - loaded, "prior": done - described_at},
        )

    def _reference_inputs(self, image: LoadedImage, keep: bool) -> _ReferenceInputs:
        """A reference's network copies (and, once the prior ran, its descriptors): kept while the same
        decoded object comes back when ``keep`` (a single reference), so a folder re-coloured after one
        reference copies and describes it once."""
        with self._memo_lock:
            memo = self._reference_memo
            if keep and memo is not None and memo[0]() is image:
                return memo[1]
        rgb = _smaller(image)
        size = self.resolution
        entry = _ReferenceInputs(
            low=image_copy(rgb, (size, size)), prior_copy=resize_array(rgb, (PRIOR_SIZE, PRIOR_SIZE))
        )
        if keep:
            with self._memo_lock:
                self._reference_memo = (weakref.ref(image), entry)
        return entry

    def _describe(
        self, source: np.ndarray, references: list[_ReferenceInputs]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The source's 384-px copy and its cell descriptors (N, 152), for the prior
        (``recolorize.prior.pair_prior``); the references' descriptors are computed where they are not known
        yet, in one network pass with the source's."""
        source_copy = resize_array(source, (PRIOR_SIZE, PRIOR_SIZE))
        missing = [entry for entry in references if entry.descriptors is None]
        copies = [source_copy, *(entry.prior_copy for entry in missing)]
        batch = np.stack([network_input(copy) for copy in copies]).transpose(0, 3, 1, 2)
        fine, coarse = self.model.features(batch)  # one network pass
        described = [descriptors(fine[i], coarse[i]) for i in range(len(copies))]
        for entry, found in zip(missing, described[1:], strict=True):
            entry.descriptors = found
        return source_copy, described[0]

    def render_array(
        self, prepared: PreparedPair, strength: float = 1.0, dtype: Any = np.float32
    ) -> np.ndarray:
        """The re-coloured full-resolution source as (H, W, 3) sRGB: float32 in [0, 1], or ``np.uint8``
        ``round(x * 255)`` of it (exactly the samples an 8-bit sRGB file of the float result holds; no
        full-size float copy is made at strength 1 above ``DIRECT_MAX_PIXELS``).

        strength alpha in [0, 1]: W_alpha = W0_S + alpha (W - W0_S), the prior and the hint faded alike;
        0 returns ``source.rgb`` itself (a copy, bit for bit), which the savers write back as the source's
        own samples; in between the rendering is anchored to the source (module docstring).
        """
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.uint8)):
            raise ValueError(f"dtype must be float32 or uint8, got {dtype}")
        if not 0.0 <= strength <= 1.0:
            raise UserError(f"strength must be between 0 and 1, got {strength}")
        if strength == 0.0:
            prepared.timings.update({"generate": 0.0, "full_resolution": 0.0})
            source = prepared.source
            if dtype == np.uint8 and source.srgb8 is not None:
                return source.srgb8.copy()
            return source.rgb.copy() if dtype == np.float32 else to_uint8(source.rgb)
        if strength == 1.0:
            return self._render_at(prepared, 1.0, dtype)
        mixed = self._render_at(prepared, strength, np.dtype(np.float32))
        timings = dict(prepared.timings)
        own = self._render_at(prepared, 0.0, np.dtype(np.float32))  # G'(W0_S): the self-reconstruction
        for key in ("generate", "full_resolution"):
            prepared.timings[key] += timings[key]
        own -= prepared.source.rgb
        mixed -= own * np.float32(1.0 - strength)
        np.clip(mixed, 0.0, 1.0, out=mixed)
        return mixed if dtype == np.float32 else to_uint8(mixed)

    def _render_at(self, prepared: PreparedPair, strength: float, dtype: np.dtype) -> np.ndarray:
        """G'(I_S, W_alpha) at full resolution: on every pixel up to ``DIRECT_MAX_PIXELS``, else on a
        ``CARRY_PIXELS`` copy carried up (module docstring)."""
        start = time.perf_counter()
        source = prepared.source
        height, width = source.height, source.width
        image = prepared.copy
        if image is None or image.shape[:2] != carry_size(height, width):
            # a caller swapped in another source (a preview, a LUT's sample): its own copy, if it needs one
            image = carry_copy(source)
        carried = image is not None
        if image is None:
            image = source.rgb
        # the prior at this strength on every pixel: the LUT module's threaded trilinear (5x apply_lattice's
        # speed on a 0.26-MP copy; the same numbers to 3e-7)
        base = apply_lut(Lut3D(lerp_lattice(prepared.lattice, strength)), image)
        offsets = None
        if prepared.local is not None and strength > 0.0:  # the prior's local field, at the strength
            offsets = apply_local_field(prepared.local, image)
            if strength != 1.0:
                offsets *= np.float32(strength)
            if self.config.local_field == "base":  # f was trained on lattice + field
                base += offsets
                offsets = None
        rendered = self.model.generate(image, base, prepared.source_low, prepared.predicted, strength)
        if not np.isfinite(rendered).all():
            raise UserError("the model's output holds NaN or infinity (broken weights?); nothing was written")
        if offsets is not None:  # f was trained on the lattice alone: the field goes on its output
            rendered += offsets
            del offsets
        np.clip(rendered, 0.0, 1.0, out=rendered)
        generated = time.perf_counter()
        if carried:
            trim = height * width > TRIM_PIXELS
            if trim:
                return_free_memory()  # the generator's bands, before the full-size output
            # 8-bit: in four-byte pixels, which the JPEG encoder reads without copying (``pillow_memory``)
            result = rgbx_array(height, width) if dtype == np.uint8 else np.empty((height, width, 3), dtype)
            carry_up(source.pixels, image, rendered, result, trim)
        elif dtype == np.uint8:
            result = to_uint8(rendered)
        else:
            result = rendered
        prepared.timings.update(
            {"generate": generated - start, "full_resolution": time.perf_counter() - generated}
        )
        return result

    def render(self, prepared: PreparedPair, strength: float = 1.0) -> Image.Image:
        """As ``render_array``, as a PIL image carrying the source's alpha, ICC profile and EXIF."""
        dtype = np.uint8 if takes_8bit_srgb(prepared.source, None) else np.float32  # same pixels, less memory
        return to_pil(self.render_array(prepared, strength, dtype=dtype), like=prepared.source)

    def transfer(
        self, source: ImageInput, reference: ImageInput | Sequence[ImageInput], strength: float = 1.0
    ) -> Image.Image:
        """Re-colour ``source`` after ``reference`` (one, or a list of several): paths, PIL images or arrays
        in, a PIL image out."""
        return self.render(self.prepare(source, reference), strength)

    def describe(self) -> dict[str, Any]:
        """Config name, resolution and device, for logs and reports."""
        return {
            "config": self.config.name,
            "resolution": self.resolution,
            "device": self.device,
            "runtime": "onnxruntime",
        }
