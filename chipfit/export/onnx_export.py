"""ONNX fp32 and int8 (QDQ) files of the best candidate, checked with onnx.checker."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from chipfit.export.base import Exporter, register_exporter

if TYPE_CHECKING:
    from chipfit.bestmodel import BestModel


class OnnxExporter(Exporter):
    name = "onnx"

    def export(self, best: BestModel) -> list[Path]:
        out = []
        for key, fname in (("onnx", "model.onnx"), ("int8", "model.int8.onnx")):
            dst = best.dir / fname
            src = best.run_dir / best.record.artifacts[key]
            if src.resolve() != dst.resolve():
                shutil.copyfile(src, dst)
            onnx.checker.check_model(str(dst))
            out.append(dst)
        return out


register_exporter(OnnxExporter())
