"""TorchRecolorizer: the model run end to end in torch, the reference the ONNX runtime is held equal to.

Inference ships on ONNX Runtime (``recolorize.inference.pipeline``); this is the same pipeline on the torch
networks, for the parity tests and benchmarks, and for evaluating a training checkpoint without exporting it.

    I_S, I_R (any size)  -> resized to the working resolution r x r
    W = P_W(I_S, I_R)    -> predicted latent maps (section 3.4), computed once per pair
    W0_S = E_W(I_S)      -> the source's self-reconstruction maps (section 3.3)
    W_alpha = W0_S + alpha (W - W0_S)      (strength, section 4.3.4, applied to the maps)
    output = G'(I_S, W_alpha) on every pixel of the photo (pointwise generator, "direct"; a photo over
             0.5 MP on a 0.26-MP copy, carried up by a local affine colour transform fitted there), or
             the local affine transform fitted G'(I_S, W0_S) -> G'(I_S, W_alpha) at r x r ("affine")

Fitting from the generator's own reconstruction (not the resized source) cancels its reconstruction
error, and strength 0 returns the source exactly. ``prepare`` runs the predictor once so that moving the
strength only reruns the generator and the full-resolution transfer (the web app relies on this).

Colour spaces: the network sees, and ``render_array`` returns, sRGB (``LoadedImage.rgb``, clipped to
sRGB's gamut). A source in a wider profile (Adobe RGB, Display P3, ProPhoto RGB) keeps its own samples
in ``LoadedImage.samples``, and the savers (``to_pil``, ``encode_image``, ``save_image`` with
``like=source``) carry the sRGB change onto them in the source's space (``recolorize.imaging``), so
what the transfer leaves unchanged keeps its out-of-sRGB colours and strength 0 writes the source's
samples back bit-exactly.

Example::

    from recolorize.torch_inference.recolorizer import TorchRecolorizer
    rc = TorchRecolorizer.from_pretrained("model.safetensors")
    rc.transfer("examples/source.jpg", "examples/reference.jpg", strength=1.0).save("out.jpg")
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from recolorize.config import ModelConfig
from recolorize.errors import UserError, WeightsError, one_line
from recolorize.imaging import LoadedImage, load_image, resize_for_network, takes_8bit_srgb, to_pil, to_uint8
from recolorize.inference.carry import CARRY_EPS, CARRY_RADIUS
from recolorize.inference.pipeline import TRIM_PIXELS, carry_copy, carry_size, network_copy
from recolorize.networks.blocked import render_image
from recolorize.networks.model import RecolorModel
from recolorize.networks.pointwise import Conditioning, PointwiseGenerator, lab_features
from recolorize.networks.prior_features import lattice_tensor
from recolorize.prior import LocalField, PairPrior, apply_local_field
from recolorize.torch_inference.fullres import apply_affine, fit_local_affine, full_resolution_transfer
from recolorize.torch_inference.parallel import one_thread, return_free_memory

__all__ = [
    "TorchRecolorizer",
    "PreparedPair",
    "default_weights_path",
    "ImageInput",
    "default_full_resolution",
    "check_device",
]

# The two pipelines' one set of sizes (direct rendering up to DIRECT_MAX_PIXELS, else a CARRY_PIXELS copy
# carried up with CARRY_RADIUS / CARRY_EPS, memory trimmed above TRIM_PIXELS): the ONNX pipeline's, so that
# they cannot drift apart

logger = logging.getLogger(__name__)

ImageInput = str | Path | Image.Image | np.ndarray | LoadedImage


def default_full_resolution(config: ModelConfig) -> str:
    """The full-resolution path a model uses unless told otherwise (docs/results.md measures both)."""
    return "direct" if config.generator == "pointwise" else "affine"


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device that exists here; ``UserError`` for a typo or a missing CUDA device."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise UserError(f"unknown device {str(device)!r}; use cpu or cuda (or cuda:N)") from None
    if parsed.type not in ("cpu", "cuda"):
        raise UserError(f"unsupported device {str(device)!r}; use cpu or cuda (or cuda:N)")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda was asked for but no CUDA device is available")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise UserError(f"--device {device}: there are only {torch.cuda.device_count()} CUDA device(s)")
    return parsed


def smaller_rgb(image: LoadedImage) -> np.ndarray:
    """The pixels a photo's network copies are made from: over ``DIRECT_MAX_PIXELS``, its ``NETWORK_PIXELS``
    copy (as ``recolorize.inference.pipeline.network_copy`` makes them, so the two pipelines agree), else
    the photo itself."""
    copy = network_copy(image)
    return image.rgb if copy is None else copy


def finite_output(image: torch.Tensor) -> torch.Tensor:
    """``image`` (a generator's output), refused (``UserError``) when it holds NaN or infinity: such a
    render is an error, never a black or white file. One sum over the pixels (NaN or inf anywhere makes it
    non-finite; only then the exact check, as a huge finite sum can overflow): the outputs checked are at
    the working resolution or at most ``DIRECT_MAX_PIXELS``, ~0.3 ms per 0.5 MP."""
    if not torch.isfinite(image.sum()) and not bool(torch.isfinite(image).all()):
        raise UserError("the model's output holds NaN or infinity (broken weights?); nothing was written")
    return image


def default_weights_path() -> Path:
    """The model shipped inside the package (``recolorize/weights/model.safetensors``)."""
    return Path(str(resources.files("recolorize") / "weights" / "model.safetensors"))  # the torch weights


@dataclass
class PreparedPair:
    """A source/reference pair after the predictor ran: everything ``render`` needs, nothing more.

    source: the loaded full-resolution source (pixels, alpha, ICC profile, EXIF).
    source_low: I_S at the working resolution, (1, 3, r, r).
    self_maps: W0_S = E_W(I_S), (1, C, r/16, r/16).
    predicted_maps: the 20 layer inputs P_W(I_S, I_R).
    before_low: G'(I_S, W0_S), the generator's reconstruction of the source at r x r; only the affine
        full-resolution path fits to it, so it is computed there, on first use.
    local: the prior's local field (``recolorize.prior.local``), added by the direct path as by the ONNX
        pipeline; None between different scenes and for models without the lattice prior.
    timings: seconds spent per step, for benchmarks.
    """

    source: LoadedImage
    source_low: torch.Tensor
    self_maps: torch.Tensor
    predicted_maps: list[torch.Tensor]
    conditioning: Conditioning | None = None
    before_low: torch.Tensor | None = None
    local: LocalField | None = None
    timings: dict[str, float] = field(default_factory=dict)


class TorchRecolorizer:
    """Re-colour photos after a reference with a trained RecolorModel."""

    def __init__(
        self, model: RecolorModel, device: str | torch.device = "cpu", full_resolution: str = "affine"
    ) -> None:
        """full_resolution: how the working-resolution result reaches the photo's own size: "affine" (the
        local affine colour transform fitted to G's output, any generator) or "direct" (the pointwise
        generator evaluated on every full-resolution pixel)."""
        if full_resolution not in ("affine", "direct"):
            raise ValueError(f"full_resolution must be 'affine' or 'direct', got {full_resolution!r}")
        if full_resolution == "direct" and model.config.generator != "pointwise":
            raise ValueError("direct full-resolution rendering needs the pointwise generator")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.resolution = model.config.resolution
        self.full_resolution = full_resolution
        # The last single reference's network copy and frozen features (``_reference_side``): a folder
        # re-coloured after one reference computes them once (~9 ms of ~0.3 s a 1-MP photo).
        self._reference_memo: tuple[weakref.ref, int, torch.Tensor, dict] | None = None
        self._reference_lock = threading.Lock()
        # the same for the lattice prior's reference descriptors (weakref to the decoded reference, them)
        self._prior_memo: tuple[weakref.ref, list[np.ndarray]] | None = None

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path | None = None,
        device: str | torch.device = "cpu",
        full_resolution: str | None = None,
    ) -> TorchRecolorizer:
        """Load weights (``.safetensors`` with its ``.json`` config beside it); None = the shipped model.

        full_resolution: "affine" or "direct" (see ``__init__``); None picks the model's default.
        Bad weights (missing, not safetensors, truncated, a config or tensors that do not fit) raise
        ``WeightsError``, a ``ValueError`` with one line naming the file; nothing is ever unpickled.
        """
        weights = Path(path) if path is not None else default_weights_path()
        if weights.is_dir():
            weights = weights / "model.safetensors"
        device = check_device(device)
        try:
            model = RecolorModel.load(weights, device=device)
        except WeightsError:
            raise
        except Exception as error:  # noqa: BLE001 - the promise is one clear error, never a traceback
            raise WeightsError(f"cannot load model weights {weights}: {one_line(error)}") from None
        if full_resolution is None:
            full_resolution = default_full_resolution(model.config)
        return cls(model, device, full_resolution)

    # --- steps ----------------------------------------------------------------------------------------
    def _to_low(self, image: LoadedImage) -> torch.Tensor:
        full = torch.from_numpy(np.ascontiguousarray(smaller_rgb(image))).permute(2, 0, 1)[None]
        return resize_for_network(full, self.resolution).to(self.device)

    @torch.no_grad()
    def prepare(self, source: ImageInput, reference: ImageInput | Sequence[ImageInput]) -> PreparedPair:
        """Load the images and run P_W once (section 3.4); greyscale sources are colourised alike.

        reference: one image, or a list or tuple of several: the attention then runs over all their
        positions, so each region of the source takes its colour from its best match in any of them.
        """
        start = time.perf_counter()
        source_image = source if isinstance(source, LoadedImage) else load_image(source)
        several = isinstance(reference, (list, tuple))
        references = list(reference) if several else [reference]
        if not references:
            raise UserError("at least one reference is needed")
        reference_images = [r if isinstance(r, LoadedImage) else load_image(r) for r in references]
        loaded = time.perf_counter()
        source_low = self._to_low(source_image)
        with one_thread() if self.device.type == "cpu" else contextlib.nullcontext():
            if several:
                reference_low = [self._to_low(image) for image in reference_images]
                inputs = self.model.predictor_inputs(source_low, reference_low)
            else:
                reference_low, side = self._reference_side(reference_images[0])
                inputs = self.model.predictor_inputs(source_low, reference_low, reference_side=side)
            self_maps = inputs.source_maps
            if self_maps is None:
                self_maps = self.model.self_maps(source_low)
            pair = self._pair_prior(source_image, reference_images)
            prior = None if pair is None else lattice_tensor(pair.lattice, self.device)
            predicted, conditioning = self.model.predict(
                source_low, reference_low, inputs=inputs, prior=prior
            )
        done = time.perf_counter()
        return PreparedPair(
            source=source_image,
            source_low=source_low,
            self_maps=self_maps,
            predicted_maps=predicted,
            conditioning=conditioning,
            local=None if pair is None else pair.local,
            timings={"load": loaded - start, "predict": done - loaded},
        )

    def _pair_prior(self, source: LoadedImage, references: list[LoadedImage]) -> PairPrior | None:
        """The lattice prior and its local field (``recolorize.prior``) from the photos themselves at 384 px,
        for a model whose config asks for it; a single reference's descriptors are kept for the next photo
        of a folder."""
        if self.model.config.prior != "correspondence-lut":
            return None
        from recolorize.networks.prior_features import photos_prior, prior_copy, prior_descriptors

        described = None
        if len(references) == 1:
            with self._reference_lock:
                memo = self._prior_memo
                if memo is not None and memo[0]() is references[0]:
                    described = memo[1]
            if described is None:
                described = prior_descriptors(self.model.semantic, [prior_copy(smaller_rgb(references[0]))])
                with self._reference_lock:
                    self._prior_memo = (weakref.ref(references[0]), described)
        return photos_prior(
            self.model.semantic, smaller_rgb(source), [smaller_rgb(r) for r in references], described
        )

    def _reference_side(self, image: LoadedImage) -> tuple[torch.Tensor, dict]:
        """I_R at the working resolution and its ``reference_features``, reused while the same decoded
        reference (the same object, at the same resolution) comes back."""
        with self._reference_lock:
            memo = self._reference_memo
            if memo is not None and memo[0]() is image and memo[1] == self.resolution:
                return memo[2], memo[3]
        low = self._to_low(image)
        side = self.model.reference_features(low)
        with self._reference_lock:
            self._reference_memo = (weakref.ref(image), self.resolution, low, side)
        return low, side

    @torch.no_grad()
    def render_array(
        self, prepared: PreparedPair, strength: float = 1.0, dtype: Any = np.float32
    ) -> np.ndarray:
        """The re-coloured full-resolution source as float32 (H, W, 3) in [0, 1] (sRGB).

        strength alpha in [0, 1]: W_alpha = W0_S + alpha (W - W0_S), the prior and the colour hint faded
        alike; 0 returns ``source.rgb`` itself (a copy, bit for bit), which the savers recognise and write
        back as the source's own samples. G' does not reproduce a photo exactly from its own latents (f is
        fine-tuned in stage 3), so in between the rendering is anchored to the source:
        out(alpha) = G'(W_alpha) + (1 - alpha) (I - G'(W0_S)), exact at both ends and continuous (without
        the anchor, strength 0.01 moved the demo by a median 3.9 levels). That costs a second rendering for
        0 < alpha < 1 only.
        dtype ``np.uint8`` returns ``round(clip(x, 0, 1) * 255)`` of that result instead, computed tile by
        tile into the 8-bit array at strength 1 (no full-size float copy): exactly the samples an 8-bit sRGB
        file of the float result holds, for callers that write one (``imaging.takes_8bit_srgb`` says when).
        """
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.uint8)):
            raise ValueError(f"dtype must be float32 or uint8, got {dtype}")
        if not 0.0 <= strength <= 1.0:
            raise UserError(f"strength must be between 0 and 1, got {strength}")
        if strength == 0.0:
            prepared.timings.update({"generate": 0.0, "full_resolution": 0.0})
            rgb = prepared.source.rgb
            return rgb.copy() if dtype == np.float32 else to_uint8(rgb)
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
        """G'(I_S, W_alpha) with the conditioning at ``strength``, at full resolution (see render_array)."""
        start = time.perf_counter()
        maps = [self._interpolate(prepared.self_maps, m, strength) for m in prepared.predicted_maps]
        conditioning = prepared.conditioning.at_strength(strength) if prepared.conditioning else None
        after_low = None  # the direct path renders the photo itself; only the affine fit needs G' at 128 px
        if self.full_resolution != "direct":
            after_low = self.model.generate(prepared.source_low, maps, conditioning)
            after_low = finite_output(after_low).clamp(0, 1)
        generated = time.perf_counter()
        source_full = torch.from_numpy(np.ascontiguousarray(prepared.source.rgb)).permute(2, 0, 1)[None]
        result = np.empty((prepared.source.height, prepared.source.width, 3), dtype=dtype)
        out = torch.from_numpy(result).permute(2, 0, 1)[None]  # writes land in ``result``
        if after_low is None:
            self._render_direct(prepared, source_full, maps, conditioning, out, strength)
        else:
            if prepared.before_low is None:
                prepared.before_low = finite_output(
                    self.model.generate(
                        prepared.source_low,
                        self.model.expand(prepared.self_maps),
                        self.model.self_conditioning(prepared.source_low),
                    )
                ).clamp(0, 1)
            full_resolution_transfer(source_full, prepared.before_low.cpu(), after_low.cpu(), out=out)
        prepared.timings.update(
            {"generate": generated - start, "full_resolution": time.perf_counter() - generated}
        )
        return result

    def _render_direct(
        self,
        prepared: PreparedPair,
        source_full: torch.Tensor,
        maps: list[torch.Tensor],
        conditioning: Conditioning | None,
        out: torch.Tensor,
        strength: float = 1.0,
    ) -> None:
        """The pointwise generator evaluated on every pixel, written into ``out`` (float32 or uint8): the
        styles are upsampled to each pixel guided by its own colour, so no fit is needed. A photo larger
        than :data:`DIRECT_MAX_PIXELS` is rendered so on a :data:`CARRY_PIXELS` copy and carried to its own
        size by the local affine transform fitted there (detail finer than the copy comes from the source
        itself)."""
        height, width = source_full.shape[-2:]
        size = carry_size(height, width)
        if size is not None:
            copy = carry_copy(prepared.source)  # the ONNX pipeline's copy (8-bit photos: Pillow's filter)
            source_mid = torch.from_numpy(np.ascontiguousarray(copy.transpose(2, 0, 1)))[None]
            rendered = self._render_pointwise(prepared, source_mid, maps, conditioning, strength)
            trim = height * width > TRIM_PIXELS
            if trim:
                return_free_memory()  # each step's temporaries go before the next one's (parallel.py)
            dmat, c = fit_local_affine(source_mid, rendered, radius=CARRY_RADIUS, eps=CARRY_EPS)
            del source_mid, rendered  # only the coefficients are needed at full size
            if trim:
                return_free_memory()
            apply_affine(source_full, dmat, c, out=out)
            return
        rendered = self._render_pointwise(prepared, source_full, maps, conditioning, strength)
        if out.dtype == torch.uint8:
            rendered.nan_to_num_(0.0).mul_(255.0).round_()
        out.copy_(rendered)

    def _render_pointwise(
        self,
        prepared: PreparedPair,
        source: torch.Tensor,
        maps: list[torch.Tensor],
        conditioning: Conditioning | None,
        strength: float = 1.0,
    ) -> torch.Tensor:
        """G'(source) on every pixel of ``source`` (1, 3, H, W) with ``strength`` times the prior's local
        field on its output or in its base (``ModelConfig.local_field``), clamped to [0, 1], on the CPU
        (``blocked.render_image``). Only the pointwise generator renders directly (``__init__`` refuses
        the others).
        """
        generator = self.model.generator
        assert isinstance(generator, PointwiseGenerator)
        image = source.to(self.device, torch.float32)
        guide_low = lab_features(prepared.source_low)
        conditioning = conditioning or Conditioning()
        offsets = None
        if prepared.local is not None and strength > 0.0:  # the prior's local field, at the strength
            pixels = image[0].permute(1, 2, 0).cpu().numpy()
            field = apply_local_field(prepared.local, pixels) * np.float32(strength)
            offsets = torch.from_numpy(field).permute(2, 0, 1)[None].to(image)
            if self.model.config.local_field == "base" and conditioning.prior is not None:
                conditioning, offsets = self.model.with_local_field(conditioning, image, offsets), None
        rendered = finite_output(render_image(generator, image, maps, conditioning, guide_low))
        if offsets is not None:
            rendered += offsets
        return rendered.clamp_(0.0, 1.0).cpu()

    @staticmethod
    def _interpolate(self_maps: torch.Tensor, predicted: torch.Tensor, strength: float) -> torch.Tensor:
        base = self_maps
        if base.shape[-2:] != predicted.shape[-2:]:
            base = F.interpolate(base, size=predicted.shape[-2:], mode="bilinear", align_corners=False)
        return base + strength * (predicted - base)

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
            "config": self.model.config.name,
            "resolution": self.resolution,
            "device": str(self.device),
            "full_resolution": self.full_resolution,
        }
