"""Inference: what re-colouring a photo needs, on ONNX Runtime and NumPy, without torch (issue 22).

``pipeline`` (the Recolorizer), ``onnx_model`` (the exported graphs' sessions), ``carry`` (the carry-up to
full size), ``jobs`` (the transfer job as one library call) and ``lut`` (3D LUTs). Kept import-light on
purpose: each is imported from its module, so importing this package loads neither ONNX Runtime nor a model.
"""

__all__: list[str] = []
