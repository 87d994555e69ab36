"""Device-side runtime: the Predictor (numpy + ONNX Runtime or LiteRT, no torch)."""

from chipfit.runtime.predictor import Predictor

__all__ = ["Predictor"]
