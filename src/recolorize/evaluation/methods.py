"""The colour-transfer methods an evaluation compares: the classical baselines of
:mod:`recolorize.evaluation.baselines` and ``ours`` (the trained model through
:class:`recolorize.inference.pipeline.Recolorizer`, or in torch for weights without ONNX graphs);
``ours=PATH`` adds more weights (e.g. the ablations of Table 2), named by their file stem. The oracles
of :mod:`recolorize.evaluation.oracles` (``oracle-cubic``,
``oracle-lut``) read the ground-truth target too: bounds, not methods (``Method.oracle``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from recolorize.errors import UserError, require
from recolorize.evaluation.baselines import BASELINES
from recolorize.evaluation.oracles import ORACLE_DESCRIPTIONS, ORACLES

__all__ = [
    "Method",
    "MethodOptions",
    "METHOD_FACTORIES",
    "METHOD_EXTRAS",
    "known_methods",
    "parse_methods",
    "require_method_extras",
]

MethodFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: An oracle's function: (source, reference, target) -> output.
OracleFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Method:
    """A named colour-transfer method: ``fn(source, reference) -> output``, (H, W, 3) float in [0, 1].

    oracle: ``fn(source, reference, target)`` reads the ground-truth target (a bound no real method can
    use); it runs only on pairs with a target and is labelled "(oracle)" in summaries (:attr:`label`).
    """

    name: str
    fn: MethodFn | OracleFn
    description: str = ""
    oracle: bool = False

    @property
    def label(self) -> str:
        """The name as summaries show it: ``name (oracle)`` for an oracle."""
        return f"{self.name} (oracle)" if self.oracle else self.name

    def __call__(self, source: np.ndarray, reference: np.ndarray, target: np.ndarray | None) -> np.ndarray:
        """Run the method on one pair; ``target`` is passed on only to an oracle, which needs it."""
        if not self.oracle:
            return self.fn(source, reference)  # type: ignore[call-arg]
        if target is None:
            raise UserError(f"method {self.name} is an oracle: it needs pairs with a ground-truth target")
        return self.fn(source, reference, target)  # type: ignore[call-arg]


@dataclass(frozen=True)
class MethodOptions:
    """What model-based methods need: weights (None = the shipped model), device, strength alpha and the
    full-resolution path ("affine" or "direct"; None = the model's default)."""

    weights: Path | None = None
    device: str = "cpu"
    strength: float = 1.0
    full_resolution: str | None = None


def _baseline(name: str, options: MethodOptions) -> Method:
    return Method(name, BASELINES[name], f"classical baseline {name}")


def _oracle(name: str, options: MethodOptions) -> Method:
    return Method(name, ORACLES[name], ORACLE_DESCRIPTIONS[name], oracle=True)


def _ours(name: str, options: MethodOptions) -> Method:
    """The trained model: I_P = Recolorizer(weights).transfer(I_S, I_R) at the source's resolution.

    The shipped model, or weights with their ONNX graphs beside them (``recolorize export``), run as users
    run them, on ONNX Runtime; a training run's ``.safetensors`` without graphs (an ablation, a checkpoint)
    runs in torch (``torch_inference``), the same maths (the parity tests hold them within a level)."""
    from recolorize.inference.onnx_model import is_model_folder
    from recolorize.inference.pipeline import Recolorizer

    weights = options.weights
    try:
        folder = None if weights is None else (weights if weights.is_dir() else weights.parent)
        if weights is None or (is_model_folder(folder) and options.full_resolution in (None, "direct")):
            recolorizer = Recolorizer.from_pretrained(weights, device=options.device)
            config_name = recolorizer.config.name
        else:
            from recolorize.torch_inference.recolorizer import TorchRecolorizer

            recolorizer = TorchRecolorizer.from_pretrained(
                weights, device=options.device, full_resolution=options.full_resolution
            )
            config_name = recolorizer.model.config.name
    except ValueError as error:
        raise UserError(str(error)) from error
    strength = options.strength

    def run(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
        prepared = recolorizer.prepare(source, reference)
        return np.asarray(recolorizer.render_array(prepared, strength), dtype=np.float32)

    warm = np.random.default_rng(0).random((64, 64, 3), dtype=np.float32)
    run(warm, warm)  # the first call pays one-off set-up costs; keep them out of the timed pairs
    where = options.weights if options.weights is not None else "the shipped weights"
    return Method(name, run, f"{config_name} model from {where}")


#: Method name -> factory(name, options). "ours=PATH" entries use the "ours" factory with other weights.
METHOD_FACTORIES: Mapping[str, Callable[[str, MethodOptions], Method]] = MappingProxyType(
    {"ours": _ours, **{name: _baseline for name in BASELINES}, **{name: _oracle for name in ORACLES}}
)


#: Methods that need an optional package: name -> (import name, pip name, extra). hm-mkl-hm is
#: color-matcher's (GPL-3.0, so never a base need).
METHOD_EXTRAS: Mapping[str, tuple[str, str, str]] = MappingProxyType(
    {"hm-mkl-hm": ("color_matcher", "color-matcher", "compare")}
)


def require_method_extras(spec: str, command: str) -> None:
    """Refuse (one line with the pip command) a ``--methods`` list naming a method whose optional package is
    missing, before anything is read: otherwise it fails on the first pair, after the progress bar began.
    ``command`` names the command in the line (``eval --methods hm-mkl-hm needs color-matcher: ...``)."""
    for item in spec.split(","):
        name = item.partition("=")[0].strip()
        if name in METHOD_EXTRAS:
            module, package, extra = METHOD_EXTRAS[name]
            require(module, extra, f"{command} --methods {name}", package)


def known_methods() -> list[str]:
    """Every method name ``--methods`` accepts (plus ``ours=PATH``)."""
    return list(METHOD_FACTORIES)


def parse_methods(spec: str | Sequence[str], options: MethodOptions | None = None) -> list[Method]:
    """Build the methods named in ``spec`` ("ours,reinhard,ours=ablation/w1_only.safetensors").

    ``ours`` uses ``options.weights``; ``ours=PATH`` uses PATH and is named by its file stem. Unknown
    names, duplicate names and missing weight files are :class:`UserError`.
    """
    options = options if options is not None else MethodOptions()
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    items = [s for s in items if s]
    if not items:
        raise UserError(f"no method given; choose from {', '.join(known_methods())} (or ours=PATH)")
    plan: list[tuple[str, str, MethodOptions]] = []  # (factory key, name, options): check all, then build
    for item in items:
        key, _, value = item.partition("=")
        key = key.strip()
        if key not in METHOD_FACTORIES or (value and key != "ours"):
            raise UserError(
                f"unknown method {item!r}; choose from {', '.join(known_methods())} (or ours=PATH)"
            )
        if value:
            weights = Path(value.strip())
            if not weights.is_file():
                raise UserError(f"method {item!r}: weights file {weights} does not exist")
            plan.append((key, weights.stem, dataclasses.replace(options, weights=weights)))
        else:
            plan.append((key, key, options))
    names = [name for _, name, _ in plan]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise UserError(f"method {duplicates[0]!r} is listed twice in --methods")
    return [METHOD_FACTORIES[key](name, method_options) for key, name, method_options in plan]
