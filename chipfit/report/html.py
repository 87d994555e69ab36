"""``report.html``: one self-contained page (figures embedded as PNG, no scripts, opens offline).

Sections: verdict table (every budget, achieved figure, margin, and whether it was predicted or measured),
the Pareto front with the budget lines (infeasible candidates, costed and never trained, in a strip of their
own), the winner's per-layer latency and memory (layers named by op, index, kernel and channels), the
tensor-arena timeline, the robustness grid with its mean / worst summary, predicted vs measured, the search
history, the device and its sources, and the numbered references the page cites.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chipfit.contract import Contract
    from chipfit.cost.model import Cost, LayerCost
    from chipfit.graph.opgraph import OpGraph
    from chipfit.runreport import RunReport
    from chipfit.store import CandidateRecord
    from chipfit.targets.target import Target

CSS = """body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}
th{background:#f3f3f3}.PASS{color:#0a7d22;font-weight:bold}.FAIL{color:#b00020;font-weight:bold}.AT-RISK{color:#b06000;font-weight:bold}
.pending{color:#a66a00}.num{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%}
.verdict-banner{font-size:1.4rem;padding:.5rem 1rem;border-radius:6px;display:inline-block}
.banner-PASS{background:#e3f6e7}.banner-FAIL{background:#fde7ea}small{color:#666}"""


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _qat_words(qat: dict[str, Any] | None) -> str:
    """The best model's quantization-aware fine-tuning in words."""
    if not qat:
        return "no quantization-aware fine-tuning (off, or post-training quantization lost no more than its threshold)"
    return (f"quantization-aware fine-tuning {qat['epochs']} epochs took int8 validation accuracy "
            f"{qat['accuracy_int8_before']:.3f} -> {qat['accuracy_int8_after']:.3f} "
            f"({'kept' if qat['kept'] else 'not kept: the post-training model is shipped'})")


def _e(x: Any) -> str:
    return html.escape(str(x))


def _fmt(x: Any, unit: str = "") -> str:
    if x is None:
        return "-"
    s = (f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}") if isinstance(x, float) else str(x)
    return _e(f"{s} {unit}".strip())


def _table(headers: list[str], rows: list[list[str]], table_id: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(rows_cell for rows_cell in r) + "</tr>" for r in rows)
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _td(x: str, cls: str = "") -> str:
    return f'<td class="{cls}">{x}</td>' if cls else f"<td>{x}</td>"


DEVICE_FACTS = ("clock_mhz", "sram_kb", "arena_kb", "flash_kb", "active_power_mw", "sleep_power_uw")
_SHORT = {"conv": "conv", "depthwise": "dwconv", "dense": "dense", "dsp": "front-end"}


def layer_labels(layers: list[LayerCost], graph: OpGraph | None = None) -> list[str]:
    """Readable, unique names for a model's layers: op, its index among ops of that kind, and kernel and
    channels (from ``graph``, the winner's OpGraph, when given) or the output shape.

    >>> from chipfit.cost.model import LayerCost
    >>> layers = [LayerCost("0.0", "conv", "conv2d", 9216, 160, (1, 16, 8, 8), 0, 0.1, "compute", "cpu"),
    ...           LayerCost("0.1", "activation", "relu", 0, 0, (1, 16, 8, 8), 0, 0.0, "compute", "cpu"),
    ...           LayerCost("1.0", "conv", "conv2d", 73728, 4640, (1, 32, 8, 8), 0, 0.2, "compute", "cpu"),
    ...           LayerCost("3.pool", "pool", "avgpool", 0, 0, (1, 32, 1, 1), 0, 0.0, "memory", "cpu"),
    ...           LayerCost("4", "dense", "linear", 320, 330, (1, 10), 0, 0.0, "compute", "cpu")]
    >>> layer_labels(layers)
    ['conv#1 →16', 'activation#1 16x8x8', 'conv#2 3x3 16→32', 'pool#1 32x1x1', 'dense#1 32→10']
    """
    nodes = {n.name: n for n in graph.nodes} if graph is not None else {}
    counts: dict[str, int] = {}
    labels: list[str] = []
    prev_channels: int | None = None  # the input's channels are known from the graph only
    for layer in layers:
        kind = _SHORT.get(layer.op, layer.op)
        counts[kind] = counts.get(kind, 0) + 1
        shape = tuple(layer.out_shape[1:]) if len(layer.out_shape) > 1 else tuple(layer.out_shape)
        channels = shape[0] if shape else None
        node = nodes.get(layer.name)
        cin = prev_channels
        if node is not None and node.inputs and graph is not None and node.inputs[0] in graph.tensors:
            in_shape = graph.tensors[node.inputs[0]].shape
            cin = in_shape[1] if len(in_shape) > 1 else cin
        label = f"{kind}#{counts[kind]}"
        if layer.op == "dsp":
            label = f"front-end ({layer.op_type})"
        elif layer.op in ("conv", "depthwise") and channels:
            kernel = _kernel(layer, node, cin, channels)
            label += f" {kernel + ' ' if kernel else ''}" + (f"{cin or ''}→{channels}" if layer.op == "conv"
                                                             else f"{channels}ch")
        elif layer.op == "dense" and channels:
            label += f" {cin or ''}→{channels}"
        elif shape:
            label += " " + "x".join(map(str, shape))
        labels.append(label)
        if channels:
            prev_channels = channels
    return labels


def _kernel(layer: LayerCost, node: Any, cin: int | None, cout: int) -> str:
    """``3x3``: from the graph's node, else from the parameter count (weights + bias) when it is exact."""
    if node is not None and getattr(node, "kernel", ()):
        return "x".join(map(str, node.kernel))
    if cin is None and layer.op == "conv":
        return ""
    per = (cin or 1) * cout if layer.op == "conv" else cout
    for weights in (layer.params - cout, layer.params):
        k2 = weights / per if per else 0
        k = round(k2 ** 0.5)
        if k >= 1 and k * k == k2:
            return f"{k}x{k}"
    return ""


def _references(report: RunReport, target: Target, cost: Cost | None) -> str:
    """The numbered sources the page cites (device facts, efficiency sources), as a list with their URLs."""
    from chipfit.targets.references import cited, resolve

    texts = [target.sources.get(k, "") for k in DEVICE_FACTS] if target.origin == "builtin" else []
    texts += [cost.efficiency_source] if cost is not None else []
    texts += [f"{b.source} {b.basis}" for b in report.budgets]
    refs = resolve(cited(*texts), strict=False)
    if not refs:
        return ""
    items = "".join(f'<li id="ref-{r.number}" value="{r.number}">{_e(r.title)} — <a href="{_e(r.url)}">'
                    f"{_e(r.url)}</a><br><small>supports: {_e(r.supports)}</small></li>" for r in refs)
    return (f"<h2>References</h2><p><small>[n] in this page cites entry n (shipped in chipfit/targets/knowledge/"
            f"references.yaml; <code>chipfit devices show {_e(target.name)} --sources</code> lists a device's)"
            f"</small></p><ol id=\"references\">{items}</ol>")


def render(run_dir: Path, report: RunReport, *, contract: Contract, target: Target,
           records: list[CandidateRecord], best_cost: Cost | None, best_graph: OpGraph | None = None) -> Path:
    """Write ``run_dir/report.html`` from the typed ``report``, the run's candidate ``records`` (Pareto plot)
    and the winner's predicted ``best_cost`` (per layer, arena plan; ``best_graph``, its OpGraph, names the
    layers by kernel and channels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from chipfit.runreport import MeasuredRow
    from chipfit.search.selection import pareto

    v = report.verdict
    parts = [f"<h1>chipfit report: {_e(contract.name)}</h1>",
             f'<p class="verdict-banner banner-{_e(v)}">verdict: <span class="{_e(v)}">{_e(v)}</span></p>',
             f"<p>target <b>{_e(report.target)}</b> with <b>{_e(report.runtime)}</b>; "
             f"wall time {report.wall_seconds:.0f} s"
             f"{'; search stopped: ' + _e(report.stopped) if report.stopped else ''}</p>"]
    # verdict table
    rows = []
    for b in report.budgets:
        res = b.result
        margin = "-" if b.margin is None else f"{b.margin:+.1%}"
        achieved = _fmt(b.achieved, b.unit) + (f" (80 % interval {_fmt(b.interval[0], b.unit)} to "
                                               f"{_fmt(b.interval[1], b.unit)})" if b.interval else "")
        source = b.source + (f"; predicted by: {b.path}" if b.path else "")
        rows.append([_td(_e(b.name)), _td(_fmt(b.limit, b.unit), "num"), _td(achieved, "num"),
                     _td(_e(margin), "num"), _td(res, res.replace(" ", "-")), _td(_e(source)), _td(_e(b.basis))])
    parts += ["<h2>Budgets</h2>", _table(["budget", "limit", "achieved", "margin", "result", "how obtained",
                                         "limit from"], rows, "verdict-table")]
    if report.best is not None:
        b = report.best
        parts.append(f"<p>best candidate {b.id}: <code>{_e(json.dumps(b.config))}</code>; int8 validation "
                     f"accuracy {_fmt(b.accuracy_int8)}, test accuracy int8 {_fmt(report.test_accuracy_int8)} "
                     f"(float {_fmt(report.test_accuracy_float)}) — {_e(report.accuracy_source)}</p>")
        from chipfit.train.recipes import describe_recipe

        parts.append(f"<p>trained {b.epochs} epochs: {_e(describe_recipe(b.recipe))}; {_e(_qat_words(b.qat))}</p>")
    if v != "PASS":
        closest = report.closest.model_dump(mode="json") if report.closest else None
        parts.append(f"<p class='FAIL'>no model holds every budget{': ' + _e(report.reason) if report.reason else ''}"
                     f"; binding: {_e(', '.join(report.binding) or '-')}</p>"
                     f"<p>closest: <code>{_e(json.dumps(closest))}</code></p>")
    # pareto front
    cands = records
    done = [r for r in cands if r.state == "COMPLETE" and r.accuracy_int8 is not None]
    infeasible = [r for r in cands if r.state == "INFEASIBLE" and "latency_ms" in r.predicted]
    if infeasible:  # costed, never trained: a strip of their own below the plot, never at accuracy 0
        fig, (ax, strip) = plt.subplots(2, 1, figsize=(7, 5), sharex=True, gridspec_kw={"height_ratios": [4, 1]})
    else:
        fig, ax = plt.subplots(figsize=(7, 4))
    if done:
        ax.scatter([r.predicted["latency_ms"] for r in done], [r.accuracy_int8 for r in done], c="#999", s=18,
                   label="trained candidates")
    front = pareto(records)
    if front:
        ax.plot([r.predicted["latency_ms"] for r in front], [r.accuracy_int8 for r in front], "o-", c="#1565c0",
                label="Pareto front")
    lat = contract.budgets.latency_ms
    if lat:
        ax.axvline(lat.max, ls="--", c="#b00020", label=f"latency budget {lat.max:g} ms")
    if contract.budgets.accuracy:
        ax.axhline(contract.budgets.accuracy, ls=":", c="#0a7d22", label="accuracy budget")
    ax.set_ylabel("int8 validation accuracy (measured)")
    if done or front or lat or contract.budgets.accuracy:
        ax.legend(fontsize=8)
    note = ""
    if infeasible:
        import numpy as np

        jitter = np.random.default_rng(0).uniform(0.2, 0.8, len(infeasible))
        strip.scatter([r.predicted["latency_ms"] for r in infeasible], jitter, marker="x", c="#b00020", s=18)
        if lat:
            strip.axvline(lat.max, ls="--", c="#b00020")
        strip.set_ylim(0, 1)
        strip.set_yticks([])
        strip.set_ylabel("costed,\nnever trained", fontsize=8, rotation=0, ha="right", va="center")
        strip.set_xlabel("predicted latency (ms)")
        note = (f"<p id='never-trained'>{len(infeasible)} candidate{'s' if len(infeasible) != 1 else ''} "
                "costed, never trained: each breaks a budget before training (predicted), so it has no "
                "accuracy; drawn in the strip below the plot.</p>")
    else:
        ax.set_xlabel("predicted latency (ms)")
    parts += ["<h2>Pareto front</h2>", _png(fig), note]
    # per-layer + arena timeline of the winner
    if best_cost is not None:
        cost = best_cost
        names = layer_labels(list(cost.layers), best_graph)
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, max(3, 0.22 * len(names))))
        a1.barh(names, [layer.latency_ms for layer in cost.layers], color="#1565c0")
        a1.invert_yaxis()
        a1.set_xlabel("predicted latency (ms)")
        a2.barh(names, [layer.ram_bytes / 1024 for layer in cost.layers], color="#6a1b9a")
        a2.invert_yaxis()
        a2.set_xlabel("live tensor memory (kB)")
        a2.set_yticklabels([])
        layer_rows = [[_td(_e(label)), _td(_e(layer.name)), _td(f"{layer.macs:,}", "num"),
                       _td(f"{layer.latency_ms:.4f}", "num"), _td(f"{layer.ram_bytes:,}", "num")]
                      for label, layer in zip(names, cost.layers, strict=True)]
        parts += ["<h2>Winner per layer (predicted)</h2>", f"<p><small>{_e(cost.basis)}; efficiency: "
                  f"{_e(cost.efficiency_source)}</small></p>", _png(fig),
                  "<details><summary>layers</summary>", _table(["layer", "module", "MACs", "latency ms",
                                                                "live RAM B"], layer_rows, "layers-table"),
                  "</details>"]
        plan = cost.arena_plan
        fig, ax = plt.subplots(figsize=(9, 3.5))
        for buf in plan["buffers"]:
            ax.add_patch(matplotlib.patches.Rectangle((buf["first"] - 0.4, buf["offset"] / 1024), buf["last"] -
                                                      buf["first"] + 0.8, buf["size"] / 1024, alpha=0.6))
        ax.set_xlim(-1, max((b["last"] for b in plan["buffers"]), default=0) + 1)
        ax.set_ylim(0, max(plan["arena"], 1) / 1024 * 1.05)
        ax.axhline(plan["lower_bound"] / 1024, ls=":", c="k", label="lifetime lower bound")
        ax.set_xlabel("op (execution order)")
        ax.set_ylabel("arena offset (kB)")
        ax.legend(fontsize=8)
        parts += [f"<h2>Tensor arena timeline</h2><p>planned arena {plan['arena']:,} B, lower bound "
                  f"{plan['lower_bound']:,} B (predicted)</p>", _png(fig)]
    # robustness
    rob = report.robustness
    if rob:
        rob_rows = [[_td(_e(r.condition)), _td(_fmt(r.severity), "num"), _td(_fmt(r.accuracy), "num")] for r in rob]
        fa = report.field_accuracy
        if fa is not None:
            rob_rows.append([_td("<b>mean / worst</b>"), _td(""), _td(f"<b>{_fmt(fa.mean)} / {_fmt(fa.worst)}</b>",
                                                                      "num")])
        parts += ["<h2>Robustness (measured, int8)</h2>",
                  _table(["condition", "severity", "accuracy"], rob_rows, "robustness-table")]
        if fa is not None:
            judged = (f"the field_accuracy budget is judged on the {_e(fa.over)}; "
                      if contract.budgets.field_accuracy else "")
            parts.append(f"<p><small>{judged}{_e(fa.source)}</small></p>")
    else:
        parts.append("<h2>Robustness</h2><p>No field conditions were evaluated for this run.</p>")
    # the exported .tflite under TFLM
    if report.tflm is not None:
        t = report.tflm
        if not t.loaded:
            parts.append(f"<h2>TFLM</h2><p class='FAIL'>TFLM cannot run the exported model.tflite: {_e(t.failure)}</p>")
        else:
            cls = "FAIL" if t.flagged else "PASS"
            parts += ["<h2>int8 numerics under TFLM</h2>", _table(
                ["runtime", "test accuracy", "agreement with ONNX Runtime", "gap"],
                [[_td("TFLM (tflite-micro, reference kernels)"), _td(_fmt(t.accuracy_tflm), "num"),
                  _td(_fmt(t.agreement), "num"), _td(f"{_fmt(t.gap_points)} points", cls)],
                 [_td("ONNX Runtime (int8 ONNX)"), _td(_fmt(t.accuracy_onnxruntime), "num"), _td("-"), _td("-")]],
                "tflm-table"), f"<p><small>{_e(t.source)}; a gap over 1 point is flagged</small></p>"]
    # predicted vs measured
    meas = report.measured
    if meas:
        mrows = []
        for m in meas:
            if not isinstance(m, MeasuredRow):
                mrows.append([_td("-"), _td("-"), _td("-"), _td("-"), _td("-"), _td("-"),
                              _td(_e(f"not measured on {m.device}: {m.failure}"), "FAIL")])
                continue
            mem = m.measured.get("peak_memory_bytes")
            err = "-" if m.relative_error is None else f"{m.relative_error:+.1%}"
            mrows.append([_td(f"{m.id} ({_e(m.role)})"), _td(_fmt(m.accuracy_int8), "num"),
                          _td(_fmt(m.predicted_latency_ms, "ms"), "num"),
                          _td(_fmt(m.measured_latency_ms, "ms"), "num"), _td(err, "num"),
                          _td("-" if mem is None else f"{mem / 2**20:.2f} MiB", "num"), _td(_e(m.label))])
        basis = next((m.predicted_basis for m in report.measured_rows), "cost model")
        parts += ["<h2>Predicted vs measured</h2>",
                  f"<p><small>predicted: {_e(basis)}; network only (the front-end is not in the model file). "
                  "Measured: the minimum over interleaved rounds (see each row).</small></p>",
                  _table(["finalist", "int8 val acc", "predicted latency", "measured latency", "error",
                          "peak memory (measured)", "how measured"], mrows, "measured-table")]
    elif contract.measure.finalists == 0:
        parts.append("<h2>Predicted vs measured</h2><p>The contract asks for no measurement of finalists "
                     "(<code>measure.finalists: 0</code>); every cost figure is predicted.</p>")
    else:
        parts.append("<h2>Predicted vs measured</h2><p>Every cost figure of this run is predicted by the cost model: "
                     "no runtime could measure its models (the target is not this machine and the contract lists no "
                     "device agent). Accuracies are measured on the int8 ONNX model with ONNX Runtime.</p>")
    # history
    parts += ["<h2>Search history</h2>", _table(["state", "candidates"], [[_td(_e(k)), _td(str(n), "num")]
                                                                          for k, n in report.counts.items()]),
              f"<p>training time {report.train_seconds_total:.1f} s in total, "
              f"{report.train_seconds_infeasible:.1f} s on infeasible candidates.</p>"]
    if report.compute:
        parts += ["<h3>Where the compute went</h3>",
                  _table(["outcome", "candidates", "training s", "wall s"],
                         [[_td(_e(c.outcome)), _td(str(c.candidates), "num"), _td(f"{c.train_seconds:.1f}", "num"),
                           _td(f"{c.wall_seconds:.1f}", "num")] for c in report.compute], "compute-table"),
                  "<p>Training seconds are optimizer steps and validation; wall seconds add pricing, export, "
                  "quantization and the int8 measurement (for a failed candidate, up to its failure). Outcomes are "
                  "judged on validation accuracy, as the search saw them.</p>"]
    if report.crossval is not None and report.crossval.decided:
        cv = report.crossval
        parts.append(f"<p>The best was chosen by {cv.folds}-fold cross-validation ({_e(cv.metric)} accuracy on "
                     f"held-out folds of train + validation) among {len(cv.candidates)} candidates tied on "
                     f"validation accuracy: " + ", ".join(f"candidate {i} {a:.3f}" for i, a in cv.candidates.items())
                     + f"; {cv.train_seconds:.1f} s training, {cv.wall_seconds:.1f} s wall, not in the table "
                     "above.</p>")
    # device
    t = target
    rows = [[_td(_e(k)), _td(_fmt(getattr(t, k)), "num"), _td(_e(t.sources.get(k, "")))] for k in DEVICE_FACTS
            if getattr(t, k) is not None]
    parts += [f"<h2>Device: {_e(t.name)}</h2><p>{_e(t.description)} — core {_e(t.core)}, runtimes "
              f"{_e(', '.join(t.runtimes))}</p>", _table(["fact", "value", "source"], rows, "device-table"),
              _references(report, t, best_cost)]
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>chipfit report: "
            f"{_e(contract.name)}</title><style>{CSS}</style></head><body>{''.join(parts)}</body></html>")
    out = Path(run_dir) / "report.html"
    out.write_text(page, encoding="utf-8")
    return out
