"""report.html of a finished run: infeasible candidates apart from trained ones (costed, never trained), readable
layer names, the robustness summary row, and the list of the references the page cites."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser

from chipfit import load_run
from chipfit.targets.references import references


class _Tables(HTMLParser):
    """Text of each table (by id) and of each list item of the references list."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.refs: list[tuple[str, str]] = []  # (id, text)
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._li: tuple[str, list[str]] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "li" and (a.get("id") or "").startswith("ref-"):
            self._li = (a["id"], [])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "li" and self._li:
            self.refs.append((self._li[0], "".join(self._li[1])))
            self._li = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._li is not None:
            self._li[1].append(data)


def _parse(html: str) -> _Tables:
    p = _Tables()
    p.feed(html)
    return p


def test_report_html_names_layers_summarises_robustness_and_lists_references(finished_run):
    run_dir, report = finished_run
    page = _parse((run_dir / "report.html").read_text(encoding="utf-8"))
    labels = [row[0] for row in page.tables["layers-table"][1:]]
    assert labels and len(set(labels)) == len(labels)
    assert not any(re.fullmatch(r"[\d.]+(\.\w+)?", label) for label in labels), labels  # not "0.0", "3.pool"
    first = next(label for label in labels if label.startswith(("conv#", "dwconv#", "dense#")))
    assert re.fullmatch(r"(conv#1 \d+x\d+ 1→\d+|dwconv#1 .*|dense#1 \d+→\d+)", first), first
    rob = page.tables["robustness-table"]
    summary = rob[-1]
    fa = report["field_accuracy"]
    assert summary[0] == "mean / worst" and summary[2] == f"{fa['mean']:.4g} / {fa['worst']:.4g}"
    # every [n] of the device table resolves to a listed reference, with its URL
    device_cites = {int(n) for row in page.tables["device-table"] for n in re.findall(r"\[(\d+)\]", row[-1])}
    listed = {int(i.removeprefix("ref-")): text for i, text in page.refs}
    assert device_cites and device_cites <= set(listed)
    for n in device_cites:
        assert references()[n].url in listed[n]
    # how the selected model was trained: its epochs and recipe as recorded, and its QAT
    best = report["best"]
    assert best["epochs"] > 0 and best["recipe"], best
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert f"trained {best['epochs']} epochs: " in html
    assert ("quantization-aware fine-tuning" in html) and (best["qat"] is None or "kept" in html)


def test_infeasible_candidates_are_drawn_apart_as_costed_never_trained(finished_run, tmp_path):
    run_dir, _ = finished_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    lines = (copy / "candidates.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    extra = []
    for k in range(3):  # three candidates that broke a budget before training
        r = dict(rec, id=10_000 + k, key=f"infeasible-{k}", state="INFEASIBLE", reason="latency_ms over budget",
                 accuracy_int8=None, accuracy_float=None, train_seconds=0.0)
        extra.append(json.dumps(r))
    (copy / "candidates.jsonl").write_text("\n".join([*lines, *extra]) + "\n")
    run = load_run(copy)
    html = run.render(run.load_report()).read_text(encoding="utf-8")
    m = re.search(r"<p id='never-trained'>(\d+) candidates? costed, never trained", html)
    assert m and int(m.group(1)) == sum(1 for r in run.candidates if r.state == "INFEASIBLE") >= 3
