"""``profile``: the predicted cost of one model on one target, and its verdict against a contract.

>>> from chipfit import profile
>>> r = profile("resnet8", target="stm32h743", input_shape=(32, 32, 3))
>>> r.cost.macs, r.cost.params, r.cost.source
(12501632, 77706, 'predicted')
>>> d = profile("resnet8", target="stm32h743.x-cube-ai@10.2", input_shape=(32, 32, 3)).to_dict()
>>> d["runtime"], d["predicted_by"], d["latency_interval_ms"][0] < d["latency_ms"] < d["latency_interval_ms"][1]
('x-cube-ai@10.2', 'analogous core', True)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chipfit.budgets import BudgetCheck, check_budgets
from chipfit.contract.schema import Contract, InputSpec
from chipfit.cost.model import Cost, CostModel
from chipfit.errors import GraphError, ModelFileError
from chipfit.graph import load_graph
from chipfit.graph.opgraph import OpGraph
from chipfit.targets.registry import create_target, pin_runtime
from chipfit.targets.target import Target


@dataclass(frozen=True)
class ProfileReport:
    """A model's predicted cost on a target, with budget verdicts when a contract was given."""

    model: str
    target: Target
    cost: Cost
    budgets: tuple[BudgetCheck, ...] = ()

    @property
    def verdict(self) -> str | None:
        """PASS, AT RISK (no budget fails, one or more predicted intervals cross a limit), FAIL, or None."""
        results = [b.result for b in self.budgets if b.result != "pending"]
        if not results:
            return None
        return "FAIL" if "FAIL" in results else "AT RISK" if "AT RISK" in results else "PASS"

    def figure_sources(self) -> dict[str, str]:
        """How each figure was obtained: counted from the graph, or predicted (and by what)."""
        c, t = self.cost, self.target
        return {
            "macs": "counted from the model graph", "params": "counted from the model graph",
            "flash_bytes": f"predicted: weights at {c.dtype} + {c.runtime} code and metadata (runtime catalog)",
            "ram_bytes": f"predicted: planned tensor arena + {c.runtime} state (runtime catalog)",
            "latency_ms": f"predicted for {c.basis} (path: {c.predicted_by}): {c.efficiency_source}",
            "energy_mj": f"predicted: latency x {c.power_source or t.sources.get('active_power_mw', 'active power')}",
        }

    def to_dict(self) -> dict[str, Any]:
        c = self.cost.to_dict()
        out = {
            "model": self.model,
            "target": self.target.name,
            "runtime": f"{c['runtime']}@{c['runtime_version']}" if c["runtime_version"] else c["runtime"],
            "dtype": c["dtype"],
            "source": c["source"],
            "basis": c["basis"],
            "params": c["params"],
            "macs": c["macs"],
            "flash_bytes": c["flash_bytes"],
            "ram_bytes": c["ram_bytes"],
            "arena_bytes": c["arena_bytes"],
            "arena_lower_bound_bytes": c["arena_lower_bound_bytes"],
            "weights_bytes": c["weights_bytes"],
            "latency_ms": c["latency_ms"],
            "latency_interval_ms": c["latency_interval_ms"],  # 80 %, from cross-validation of the path
            "energy_mj": c["energy_mj"],
            "energy_interval_mj": c["energy_interval_mj"],
            "predicted_by": c["predicted_by"],
            "energy_predicted_by": c["energy_predicted_by"],  # latency path x power path
            "power_source": c["power_source"],
            "memory_factor": c["memory_factor"],  # cycles on this memory system over one with wait states hidden
            "memory_note": c["memory_note"],
            "interval_note": "80 % interval from cross-validation of this prediction path over published MLPerf "
                             "Tiny rows" if c["latency_interval_ms"] else
                             "no cross-validated error for this device (interval not stated)",
            "efficiency_source": c["efficiency_source"],
            "unsupported": c["unsupported"],
            "layers": [
                {k: layer[k] for k in ("name", "op", "op_type", "macs", "params", "out_shape", "ram_bytes",
                                       "latency_ms", "bound", "unit", "activation")}
                for layer in c["layers"]
            ],
        }
        out["figure_sources"] = self.figure_sources()
        if self.budgets:
            out["verdict"] = self.verdict
            out["budgets"] = [b.to_dict() for b in self.budgets]
        return out


def load_model_graph(model: str | Path | Any, *, input_shape: tuple[int, ...] | None = None,
                     num_classes: int = 10) -> tuple[OpGraph, int, int]:
    """An OpGraph from a model file, a reference-architecture name or a torch module.

    Returns ``(graph, frontend_ops, frontend_ram_bytes)``.
    """
    from chipfit.space import create_space, reference_config, reference_modality, reference_names

    if isinstance(model, str | Path) and Path(model).suffix.lower() in (".onnx", ".tflite"):
        return load_graph(model), 0, 0
    if isinstance(model, str) and model in reference_names():
        modality = reference_modality(model)
        spec = {"image": InputSpec(modality="image", shape=list(input_shape or (32, 32, 3))),
                "audio": InputSpec(modality="audio", sample_rate_hz=16000, duration_s=1.0)
                if input_shape is None else InputSpec(modality="audio", shape=list(input_shape)),
                "series": InputSpec(modality="series", shape=list(input_shape or (128, 9)))}[modality]
        cand = create_space(spec, num_classes).candidate(reference_config(model))
        return cand.graph, cand.frontend_ops, cand.frontend_ram_bytes
    if isinstance(model, str | Path):
        p = Path(model)
        if p.exists():
            raise ModelFileError(f"unsupported model file '{p.name}': expected .onnx or .tflite.")
        raise ModelFileError(f"'{model}' is neither a model file (.onnx, .tflite) nor a reference architecture "
                             f"({', '.join(reference_names())}).")
    from chipfit.graph import from_torch

    if input_shape is None:
        raise GraphError("profiling a torch module needs input_shape, e.g. (1, 3, 32, 32)")
    return from_torch(model, input_shape), 0, 0


def profile(model: str | Path | Any, *, target: str | Path | Target = "host", runtime: str | None = None,
            contract: Contract | None = None, dtype: str | None = None,
            input_shape: tuple[int, ...] | None = None, cost_model: CostModel | None = None) -> ProfileReport:
    """Predict ``model``'s cost on ``target`` (and judge it against ``contract``'s budgets)."""
    t = target if isinstance(target, Target) else create_target(target)
    if runtime is not None:
        t = pin_runtime(t, runtime)
    if input_shape is None and contract is not None and contract.task.input is not None:
        input_shape = tuple(contract.task.input.shape) if contract.task.input.shape else None
    classes = 10
    if contract is not None and isinstance(model, str) and not Path(model).suffix:  # a reference architecture
        from chipfit.data.sources import peek_classes

        classes = len(peek_classes(contract))  # the data's classes: the head the contract's model would have
    graph, fe_ops, fe_ram = load_model_graph(model, input_shape=input_shape, num_classes=classes)
    if not graph.nodes:  # never judge (or pass) a model that was not read
        raise ModelFileError(f"'{model}' has no operators chipfit can cost (an empty graph); nothing to profile.")
    cm = cost_model or CostModel()
    cost = cm.estimate(graph, t, dtype=dtype or (contract.dtype if contract else "int8"),
                       frontend_ops=fe_ops, frontend_ram_bytes=fe_ram)
    budgets = tuple(check_budgets(cost, contract, target=t)) if contract is not None else ()
    return ProfileReport(str(model) if not hasattr(model, "forward") else type(model).__name__, t, cost, budgets)
