"""Conversion to Core ML and ONNX, kept apart from the model definitions."""
