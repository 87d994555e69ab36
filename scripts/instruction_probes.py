"""Write the probe networks of the instruction table (``chipfit/measure/data/probe_*.tflite``) with chipfit's
own int8 exporter: small networks in the search spaces' style (narrow, strided, residual, wide, dense; global
pooling as the exporter writes it, TFLM's MEAN), seeded weights and calibration data. Then regenerate the
table on the farm:

    .venv/bin/python scripts/instruction_probes.py
    .venv/bin/python -m chipfit.measure.instructions
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chipfit.measure.instructions import PROBE_DIR, PROBES  # noqa: E402


def _probe_modules() -> dict[str, tuple[Any, tuple[int, ...]]]:
    """The probe networks: (torch module, input shape), in the search spaces' style."""
    import torch
    from torch import nn

    class Residual(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(x + self.b(torch.relu(self.a(x))))

    def head(c: int, k: int) -> list[nn.Module]:
        return [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, k)]

    return {
        "probe_image": (nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 1, 1, groups=8),
                                      nn.ReLU(), nn.Conv2d(8, 16, 1), nn.ReLU(), nn.Conv2d(16, 16, 3, 2, 1, groups=16),
                                      nn.ReLU(), nn.Conv2d(16, 32, 1), nn.ReLU(), *head(32, 10)), (1, 3, 32, 32)),
        "probe_audio": (nn.Sequential(nn.Conv2d(1, 24, (10, 4), (2, 2), (5, 1)), nn.ReLU(),
                                      nn.Conv2d(24, 24, 3, 1, 1, groups=24), nn.ReLU(), nn.Conv2d(24, 24, 1),
                                      nn.ReLU(), *head(24, 12)), (1, 1, 49, 10)),
        "probe_residual": (nn.Sequential(nn.Conv2d(1, 12, 3, 1, 1), nn.ReLU(), Residual(12),
                                         nn.Conv2d(12, 24, 3, 2, 1), nn.ReLU(), Residual(24), *head(24, 5)),
                           (1, 1, 24, 24)),
        "probe_wide": (nn.Sequential(nn.Conv2d(4, 40, 3, 1, 1), nn.ReLU(), nn.Conv2d(40, 40, 3, 2, 1), nn.ReLU(),
                                     nn.Conv2d(40, 40, 3, 1, 1, groups=40), nn.ReLU(), nn.Conv2d(40, 80, 1),
                                     nn.ReLU(), *head(80, 8)), (1, 4, 20, 20)),
        "probe_dense": (nn.Sequential(nn.Flatten(), nn.Linear(96, 48), nn.ReLU(), nn.Linear(48, 24), nn.ReLU(),
                                      nn.Linear(24, 6)), (1, 96)),
    }


def export_probes(out: Path = PROBE_DIR) -> list[Path]:
    """Write the probe networks as int8 .tflite with chipfit's exporter (seeded weights and calibration data)."""
    import numpy as np
    import torch

    from chipfit.export.tflite_export import convert_int8_tflite

    paths = []
    for name, (module, shape) in _probe_modules().items():
        torch.manual_seed(0)
        for p in module.parameters():  # seeded, not the default init's global state
            torch.nn.init.uniform_(p, -0.3, 0.3)
        rep = np.random.default_rng(0).random((16, *shape[1:]), dtype=np.float32)
        paths.append(convert_int8_tflite(module.eval(), shape, rep, out / f"{name}.tflite"))
    return paths


def main() -> int:
    paths = export_probes()
    assert [p.stem for p in paths] == list(PROBES), "PROBES and the modules defined here must agree"
    sys.stderr.write("wrote " + ", ".join(str(p) for p in paths) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
