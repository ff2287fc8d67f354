"""The model run end to end in torch: the reference the ONNX runtime (``recolorize.inference``) is held equal
to, and how ``eval`` scores a training checkpoint without exporting it. Needs ``recolorize[train]``."""

__all__: list[str] = []
