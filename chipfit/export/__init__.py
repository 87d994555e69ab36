"""Exporters of a run's best model: ONNX (fp32, int8), TFLite int8, C array, manifest."""

from chipfit.export import c_array, manifest, onnx_export, tflite_export  # noqa: F401  (registers the exporters)
from chipfit.export.base import EXPORTERS, Exporter, export_best, list_exporters, register_exporter

__all__ = ["EXPORTERS", "Exporter", "export_best", "list_exporters", "register_exporter"]
