"""The ``chipfit`` command line: a thin layer over the library (Typer + Rich).

Exit codes: 0 success, 1 failure, 2 bad usage / contract / target, 3 infeasible (``check``).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from chipfit.errors import ChipfitError, ProblemsError, UsageError
from chipfit.search.callbacks import SearchCallbacks

app = typer.Typer(add_completion=True, no_args_is_help=True, rich_markup_mode=None,
                  help="chipfit: constraint-first edge AI. State the budgets first; get models that hold them.")
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
_STATE = {"debug": False}

EXIT_FAIL, EXIT_USAGE, EXIT_INFEASIBLE = 1, 2, 3


def _plural(n: int, word: str) -> str:
    """``1 device``, ``2 devices``.

    >>> _plural(1, "device"), _plural(2, "device"), _plural(0, "trial")
    ('1 device', '2 devices', '0 trials')
    """
    return f"{n} {word}{'' if n == 1 else 's'}"


def _print_version(value: bool) -> None:
    if value:
        import chipfit

        out.print(f"chipfit {chipfit.__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
          verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress to stderr.")] = False,
          version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                help="Print chipfit's version and exit.")] = False) -> None:
    _STATE["debug"] = debug
    if verbose:
        import logging

        from chipfit.logging import set_verbosity

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logging.getLogger("chipfit").addHandler(handler)
        set_verbosity("INFO")


@contextlib.contextmanager
def _errors(run_dir: Path | None = None, doing: str = "") -> Iterator[None]:
    """Turn errors into a message on stderr and an exit code, never a traceback (unless --debug): chipfit's
    own errors say what to do (exit 2 for usage, 1 otherwise); an unexpected error is one line saying what
    failed, and where its full trace was written (the run's log, or chipfit's cache)."""
    try:
        yield
    except (typer.Exit, KeyboardInterrupt):
        raise
    except ChipfitError as exc:
        if _STATE["debug"]:
            raise
        if isinstance(exc, ProblemsError):
            err.print(f"[bold red]error:[/] {_plural(len(exc.problems), 'problem')} in the {exc.kind}:",
                      highlight=False)
            for p in exc.problems:
                err.print("  " + p.format(), markup=False, highlight=False, soft_wrap=True)
        else:
            err.print("[bold red]error:[/]", end=" ", highlight=False)
            err.print(str(exc), highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(EXIT_USAGE if isinstance(exc, UsageError) else EXIT_FAIL) from None
    except Exception as exc:  # a bug or an environment failure: one line, the trace in a file
        if _STATE["debug"]:
            raise
        trace = _trace_file(run_dir, exc, doing)
        what = f"{doing} failed" if doing else "chipfit failed"
        first = str(exc).splitlines()[0][:300] if str(exc) else ""
        err.print(f"error: {what}: {type(exc).__name__}{': ' + first if first else ''} (full trace in {trace}; "
                  "rerun with --debug to see it here)", highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(EXIT_FAIL) from None


def _trace_file(run_dir: Path | None, exc: BaseException, doing: str) -> Path:
    from chipfit.logging import LOG_FILE, write_trace
    from chipfit.paths import cache_dir

    for path in ([run_dir / LOG_FILE] if run_dir is not None and run_dir.is_dir() else []) + [
            cache_dir() / "last-error.log"]:
        try:
            return write_trace(path, exc, context=doing)
        except OSError:
            continue
    return Path("(nowhere: no writable log)")


def _json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=_jsonable) + "\n")


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, tuple | set):
        return list(x)
    return str(x)


def _fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "-"
    if x == float("inf"):
        return "inf"
    s = f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"
    return f"{s} {unit}".strip()


@app.command("devices")
def devices(
    args: Annotated[list[str] | None, typer.Argument(help="PATTERN: part of a name ('nrf', 'stm32') or a glob "
                                                          "('stm32h7*'); or: show NAME")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    sources: Annotated[bool, typer.Option("--sources", help="With show NAME: list the numbered references its "
                                                            "facts cite (title, URL, what each supports).")] = False,
) -> None:
    """List the device catalog, or show one device's facts and their sources (``devices show NAME``)."""
    from chipfit.targets import create_target, list_targets

    with _errors():
        args = args or []
        if args and args[0] == "show":
            if len(args) != 2:
                err.print("usage: chipfit devices show NAME [--sources]")
                raise typer.Exit(EXIT_USAGE)
            _show_device(create_target(args[1]), as_json, sources)
            return
        if len(args) > 1:
            err.print("usage: chipfit devices [PATTERN] | chipfit devices show NAME [--sources]")
            raise typer.Exit(EXIT_USAGE)
        if sources:
            raise UsageError("--sources lists one device's references: chipfit devices show NAME --sources")
        pattern = args[0] if args else "*"
        names = list_targets(pattern)
        if not names:
            from chipfit.naming import did_you_mean

            err.print(f"error: no device matches '{pattern}'.{did_you_mean(pattern, list_targets())} "
                      "Run 'chipfit devices' for the catalog.", highlight=False)
            raise typer.Exit(EXIT_USAGE)
        targets = [create_target(n) for n in names]
        if as_json:
            _json([{"name": t.name, "core": t.core, "clock_mhz": t.clock_mhz, "sram_kb": t.sram_kb,
                    "flash_kb": t.flash_kb, "runtimes": list(t.runtimes), "accelerator": t.accelerator.kind
                    if t.accelerator else None, "active_power_mw": t.active_power_mw,
                    "sleep_power_uw": t.sleep_power_uw, "sources": dict(t.sources)} for t in targets])
            return
        table = Table(title=_plural(len(targets), "device"), title_justify="left")
        for col in ("name", "core", "MHz", "SRAM kB", "flash kB", "runtimes (default first)", "accel"):
            table.add_column(col, justify="right" if col in ("MHz", "SRAM kB", "flash kB") else "left")
        for t in targets:
            table.add_row(t.name, t.core, _fmt(t.clock_mhz), _fmt(t.sram_kb), _fmt(t.flash_kb),
                          ", ".join(t.runtimes), t.accelerator.kind if t.accelerator else "")
        out.print(table)


def _show_device(t: Any, as_json: bool, sources: bool = False) -> None:
    from chipfit.cost.instructions import published_cpi
    from chipfit.targets.knowledge import boards_of, efficiency
    from chipfit.targets.references import references_for

    refs = references_for(t)
    effs = {}
    for r in t.runtimes:
        with contextlib.suppress(KeyError):
            from chipfit.targets.knowledge import version_table

            e = efficiency(t.core, r, t.runtime_version(r), board=t.name if t.origin == "builtin" else None,
                           clock_mhz=t.clock_mhz)
            effs[r] = {"macs_per_cycle": dict(e.macs_per_cycle), "source": e.source, "version": e.version,
                       "predicted_by": e.path, "interval_80": list(e.interval) if e.interval else None,
                       "versions": version_table(r)}
            if t.origin == "builtin":
                fit = published_cpi(boards_of(t.name, t.clock_mhz), r, e.version)
                if fit is not None:
                    effs[r]["cpi"] = {"cpi": fit.cpi, "source": fit.source, "per_model": dict(fit.per_bench)}
    from chipfit.cost.model import CostModel

    cal = CostModel().calibration_for(t, t.runtime, "int8")
    if as_json:
        _json({**t.to_dict(), "efficiency": effs, "latency_calibration": cal.to_dict() if cal else None,
               "references": [r.to_dict() for r in refs]})
        return
    table = Table(title=f"{t.name}: {t.description}", title_justify="left")
    table.add_column("fact")
    table.add_column("value", justify="right")
    table.add_column("source")
    rows = [("core", t.core, "")] + [
        (k, _fmt(getattr(t, k)), t.sources.get(k, "")) for k in
        ("cores", "clock_mhz", "sram_kb", "arena_kb", "flash_kb", "active_power_mw", "run_current_ua_per_mhz",
         "supply_v", "board_overhead_mw", "sleep_power_uw", "mem_bandwidth_gbps") if getattr(t, k) is not None]
    if t.memory is not None:  # flash wait states, caches, TCM, where weights and arena live
        rows += [(f"memory.{k}", _fmt(v) if not isinstance(v, bool | str) else str(v).lower(),
                  t.sources.get(f"memory.{k}", "")) for k, v in t.memory.to_dict().items() if k != "clock_mhz"]
    if t.accelerator:
        a = t.accelerator
        rows += [("accelerator", a.kind, ""), ("accelerator MAC/cycle", _fmt(a.macs_per_cycle),
                                                 t.sources.get("accelerator.macs_per_cycle", ""))]
    if t.peak_gmacs:
        rows.append(("peak GMAC/s", ", ".join(f"{k} {v:g}" for k, v in t.peak_gmacs.items()),
                     t.sources.get("peak_gmacs", "")))
    rows += [("runtimes", ", ".join(t.runtimes), "first is the default")]
    rows.append(("latency calibration (int8)", "yes" if cal else "none",
                 cal.describe() if cal else "analytical; `chipfit calibrate` fits it to measurements"
                 if t.runtime == "onnxruntime" else "analytical"))
    for r, e in effs.items():
        label = f"{r}@{e['version']}" if e["version"] else r
        iv = f"; 80 % interval x{e['interval_80'][0]:.2f}-x{e['interval_80'][1]:.2f}" if e["interval_80"] else ""
        cpi = e.get("cpi")
        rows.append((f"{label} MAC/cycle", ", ".join(f"{k} {v:.2f}" for k, v in e["macs_per_cycle"].items()),
                     f"not used for this board: instructions x CPI (next row) takes precedence; {e['source']}"
                     if cpi else f"path: {e['predicted_by']}{iv}; {e['source']}"))
        if cpi:
            rows.append((f"{label} cycles/instruction", f"{cpi['cpi']:.2f}",
                         f"path: instructions x CPI, fitted board; {cpi['source']}"))
        if e["versions"]:
            rows.append((f"{r} versions", ", ".join(v["version"] + ("*" if v["latest"] else "")
                                                   for v in e["versions"]),
                         "; ".join(f"{v['version']}: fitted on {', '.join(v['fitted_on'])}" if v["fitted_on"]
                                   else f"{v['version']}: not published on a fitted board" for v in e["versions"])
                         + " (* = what the bare name means)"))
    for r in rows:
        table.add_row(*r)
    out.print(table)
    if t.notes:
        out.print(f"notes: {t.notes}", highlight=False)
    if sources and not refs:
        out.print(f"{t.name}: its facts cite no numbered source (measured here, declared in a file, or estimated; "
                  "see the source column)", highlight=False, markup=False)
    elif sources:
        _print_references(refs, f"sources cited for {t.name}")
    elif refs:
        out.print(f"[n] cites a numbered source ({_plural(len(refs), 'reference')} here): 'chipfit devices show "
                  f"{t.name} --sources' lists them", highlight=False, markup=False)


def _print_references(refs: Any, title: str) -> None:
    table = Table(title=title, title_justify="left")
    for col in ("#", "source", "supports"):
        table.add_column(col, justify="right" if col == "#" else "left")
    for r in refs:
        table.add_row(f"[{r.number}]", f"{r.title}\n{r.url}", r.supports)
    out.print(table)


@app.command("profile")
def profile_cmd(
    model: Annotated[str, typer.Argument(help="A .onnx or .tflite file, or a reference architecture "
                                              "(dscnn-kws, resnet8, mobilenetv1-0.25, cnn1d-har).")],
    target: Annotated[str | None, typer.Option("--target", "-t", help="Device name or target file.")] = None,
    runtime: Annotated[str | None, typer.Option("--runtime", "-r", help="Runtime (default: the device's).")] = None,
    contract: Annotated[Path | None, typer.Option("--contract", "-c", help="Judge against this contract.")] = None,
    dtype: Annotated[str | None, typer.Option(help="Deployed dtype: int8 or float32.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 3 when a budget fails.")] = False,
) -> None:
    """Predict a model's MACs, params, flash, RAM, latency and energy on a device, layer by layer."""
    from chipfit.contract import load_contract
    from chipfit.profiling import profile
    from chipfit.targets import create_target

    with _errors():
        if Path(model).suffix.lower() in (".onnx", ".tflite") and not Path(model).is_file():
            from chipfit.space import reference_names

            raise UsageError(f"no model file at '{model}': expected the path to an .onnx or .tflite file (e.g. "
                             f"best/model.int8.onnx of a run), or a reference architecture: "
                             f"{', '.join(reference_names())}.")
        c = load_contract(contract) if contract else None
        if target is not None:
            t = create_target(target)
        elif c is not None:
            t = c.get_target()
        else:
            t = create_target("host")
        report = profile(model, target=t, runtime=runtime or (c.runtime if c and target is None else None),
                         contract=c, dtype=dtype)
        if as_json:
            _json(report.to_dict())
        else:
            _print_profile(report)
    if strict and report.verdict == "FAIL":
        raise typer.Exit(EXIT_INFEASIBLE)


def _print_profile(report: Any) -> None:
    c = report.cost
    table = Table(title=f"{report.model} on {report.target.name} — predicted ({c.basis})", title_justify="left")
    for col in ("layer", "op", "out shape", "MACs", "params", "live RAM B", "latency ms", "bound"):
        table.add_column(col, justify="right" if col in ("MACs", "params", "live RAM B", "latency ms") else "left")
    for layer in c.layers:
        op = layer.op_type + (f"+{layer.activation}" if layer.activation else "")
        table.add_row(layer.name, op, "x".join(map(str, layer.out_shape)), f"{layer.macs:,}", f"{layer.params:,}",
                      f"{layer.ram_bytes:,}", f"{layer.latency_ms:.4f}", layer.bound)
    out.print(table)
    totals = Table(title="totals (predicted)", title_justify="left", show_header=False)
    totals.add_column("k")
    totals.add_column("v", justify="right")
    for k, v in (("MACs", f"{c.macs:,}"), ("params", f"{c.params:,}"), ("flash", f"{c.flash_bytes:,} B"),
                 ("RAM (arena + runtime + front-end)", f"{c.ram_bytes:,} B"),
                 ("tensor arena: planned / lower bound", f"{c.arena_bytes:,} / {c.arena_lower_bound_bytes:,} B"),
                 ("latency", f"{c.latency_ms:.4g} ms" + _interval(c.latency_interval_ms, "ms")),
                 ("energy / inference", f"{c.energy_mj:.4g} mJ" + _interval(c.energy_interval_mj, "mJ"))):
        totals.add_row(k, v)
    out.print(totals)
    out.print(f"latency: predicted for {c.basis} by path '{c.predicted_by}'; {c.efficiency_source}",
              highlight=False, soft_wrap=True)
    for u in c.unsupported:
        out.print(f"[red]unsupported:[/] {u}", highlight=False)
    if report.budgets:
        _print_budgets(report.budgets, title=f"verdict: {report.verdict}")


def _interval(iv: Any, unit: str) -> str:
    """`` (80 % interval a-b unit)`` for a predicted figure that has one."""
    return f" (80 % interval {iv[0]:.4g}-{iv[1]:.4g} {unit})" if iv else ""


def _print_budgets(checks: Any, title: str) -> None:
    table = Table(title=title, title_justify="left")
    for col in ("budget", "limit", "achieved", "margin", "result", "source", "limit from"):
        table.add_column(col, justify="right" if col in ("limit", "achieved", "margin") else "left")
    for b in checks:
        result = {"PASS": "[green]PASS[/]", "FAIL": "[red]FAIL[/]", "AT RISK": "[yellow]AT RISK[/]",
                  "pending": "[yellow]pending[/]"}[b.result]
        margin = "-" if b.margin is None else f"{b.margin:+.1%}"
        table.add_row(b.name, _fmt(b.limit, b.unit), _fmt(b.achieved, b.unit) + _interval(b.interval, b.unit),
                      margin, result, b.source + (f" ({b.predicted_by})" if b.predicted_by else ""), b.basis)
    out.print(table)


@app.command("check")
def check_cmd(
    contract: Annotated[Path, typer.Argument(help="The contract YAML.")],
    samples: Annotated[int, typer.Option(min=0, max=5000, help="Random candidates to cost.")] = 64,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Is the contract valid, and can any candidate of the search space hold each budget? (No training.)"""
    from chipfit.check import check_contract
    from chipfit.contract import load_contract

    with _errors():
        c = load_contract(contract)
        report = check_contract(c, samples=samples)
    if as_json:
        _json(report.to_dict())
    else:
        table = Table(title=f"{c.name}: {report.modality} on {report.target} ({report.runtime}) — "
                            f"{report.candidates} candidates costed in {report.seconds:.2f} s, predicted",
                      title_justify="left")
        for col in ("budget", "limit", "best reachable", "candidates holding", "result", "why / limit from"):
            table.add_column(col, justify="right" if col in ("limit", "best reachable") else "left")
        for b in report.budgets:
            result = {True: "[green]reachable[/]", False: "[red]INFEASIBLE[/]", None: "[yellow]pending[/]"}[b.reachable]
            table.add_row(b.name, _fmt(b.limit, b.unit), _fmt(b.best, b.unit),
                          f"{b.holding}/{report.candidates}" if b.reachable is not None else "-",
                          result, b.why or b.basis)
        out.print(table)
        for note in report.notes:
            out.print(f"note: {note}", highlight=False)
        if report.feasible:
            out.print(f"[green]FEASIBLE[/]: {report.feasible_candidates} of {report.candidates} costed candidates "
                      "hold every budget that can be judged before training.")
        else:
            out.print(f"[red]INFEASIBLE[/]: no costed candidate holds every budget; binding: "
                      f"{', '.join(report.binding)}.", highlight=False)
            if report.closest:
                out.print(f"closest candidate: {json.dumps(report.closest['config'])}", highlight=False)
    if not report.feasible:
        raise typer.Exit(EXIT_INFEASIBLE)


class _RichProgress(SearchCallbacks):
    """Search progress on stderr: one bar for candidates, one for the current candidate's epochs."""

    def __init__(self, enabled: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), console=err, disable=not enabled,
                                 transient=False)
        self.trials = None
        self.epochs = None
        self.enabled = enabled
        self.phases: list[str] = []

    def __enter__(self) -> _RichProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def on_start(self, total: int, done: int) -> None:
        self.trials = self.progress.add_task("candidates", total=total, completed=done)
        self.epochs = self.progress.add_task("training", total=1, visible=False)

    def on_candidate(self, number: int, config: dict[str, Any], predicted: dict[str, Any]) -> None:
        self.progress.update(self.trials, description=f"candidate {number} ({config['family']}, "
                                                      f"{predicted['latency_ms']:.3g} ms predicted)")

    def on_training(self, epochs: int) -> None:
        self.progress.reset(self.epochs, total=epochs, visible=True, description="  training epochs")

    def on_epoch(self, epoch: int, accuracy: float) -> None:
        self.progress.update(self.epochs, completed=epoch, description=f"  epoch {epoch}: val acc {accuracy:.3f}")

    def on_record(self, record: Any, done: int) -> None:
        self.progress.update(self.epochs, visible=False)
        self.progress.update(self.trials, completed=done)

    def on_phase(self, name: str, detail: str = "") -> None:
        """Each step of finishing the run on its own line, so the final measurement and export are never
        silent."""
        import time

        now = time.monotonic()
        if self.phases and self.enabled:
            self.progress.console.print(f"  done in {now - self._phase_t0:.1f} s", highlight=False)
        self.phases.append(name)
        self._phase_t0 = now
        if self.epochs is not None:
            self.progress.update(self.epochs, visible=False)
        if self.enabled:
            self.progress.console.print(f"finishing: {name}{f' ({detail})' if detail else ''} …", highlight=False)

    def finish(self) -> None:
        """The last phase's duration."""
        import time

        if self.phases and self.enabled:
            self.progress.console.print(f"  done in {time.monotonic() - self._phase_t0:.1f} s", highlight=False)


@app.command("run")
def run_cmd(
    contract: Annotated[Path, typer.Argument(help="The contract YAML (or, with --resume, a run directory).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run directory (default runs/<name>).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json to stdout.")] = False,
    backend: Annotated[str | None, typer.Option(help="local or ray (overrides search.backend).")] = None,
    address: Annotated[str | None, typer.Option(help="Ray cluster address, e.g. 10.0.0.5:6379.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Parallel trainings (overrides search.workers).")] = None,
    trials: Annotated[int | None, typer.Option("--trials", help="Candidates to record (overrides search.trials; "
                                                                "recorded in the run's contract.yaml).")] = None,
    time_budget: Annotated[float | None, typer.Option("--time-budget", help="Seconds of search per start or "
                                                      "resume (overrides search.time_budget_s).")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Most epochs per candidate (overrides "
                                                                "search.epochs).")] = None,
) -> None:
    """Search, train and quantize models that hold the contract; exit 3 when none does.

    --trials, --time-budget and --epochs change the contract's search settings for this run (validated as the
    YAML is) and are recorded in RUN_DIR/contract.yaml; with --resume they change the run's settings from then on.
    """
    from chipfit.run import Run

    if backend not in (None, "local", "ray"):
        err.print(f"error: --backend must be local or ray; given '{backend}'", highlight=False)
        raise typer.Exit(EXIT_USAGE)
    overrides = {k: v for k, v in (("trials", trials), ("time_budget_s", time_budget), ("epochs", epochs))
                 if v is not None}
    run = None
    with _errors():
        if resume and contract.is_dir():
            run = Run.load(contract)
        elif overrides and not resume:
            from chipfit.contract import load_contract

            run = Run.create(load_contract(contract).with_updates({"search": overrides}), out=out)
        else:
            run = Run.create(contract, out=out, resume=resume)
    assert run is not None
    from chipfit.runlock import hold

    with _errors(run.dir, f"the run in {run.dir}"), hold(run.dir):  # one owner from the search to the report
        if overrides and resume:
            run.update_search(overrides)  # an invalid value is a ContractError: exit 2, as in the YAML
        progress = _RichProgress(enabled=not as_json)
        try:
            with progress:
                run.search(callbacks=progress, backend=backend, address=address, workers=workers)
                report = run.report(callbacks=progress)
                progress.finish()
        except KeyboardInterrupt:
            err.print(f"interrupted: finished candidates are kept in {run.dir}; continue with "
                      f"'chipfit run {run.dir} --resume'", highlight=False)
            raise typer.Exit(130) from None
    if as_json:
        sys.stdout.write(report.to_json() + "\n")
    else:
        _print_run(report, run)
    if report.verdict != "PASS":
        raise typer.Exit(EXIT_INFEASIBLE)


def _print_run(report: Any, run: Any) -> None:
    from rich.markup import escape

    from chipfit.runreport import MeasuredRow

    counts = report.counts
    out.print(f"{run.contract.name} on {report.target} ({report.runtime}): "
              + ", ".join(f"{v} {k.lower()}" for k, v in counts.items())
              + f"; {report.train_seconds_total:.1f} s training, {report.train_seconds_infeasible:.0f} s "
              f"on infeasible candidates", highlight=False)
    if report.compute:
        out.print("where the compute went: " + "; ".join(
            f"{c.outcome} {c.candidates} ({c.train_seconds:.0f} s training, {c.wall_seconds:.0f} s wall)"
            for c in report.compute), highlight=False, soft_wrap=True)
    if report.crossval is not None and report.crossval.decided:
        cv = report.crossval
        out.print(f"best chosen by {cv.folds}-fold cross-validation ({cv.metric}) among {len(cv.candidates)} "
                  f"candidates tied on validation accuracy: " + ", ".join(
                      f"{i} {a:.3f}" for i, a in cv.candidates.items())
                  + f" ({cv.train_seconds:.0f} s training, {cv.wall_seconds:.0f} s wall)", highlight=False,
                  soft_wrap=True)
    _print_stopped(report, run)
    if report.best is not None:
        b = report.best
        out.print(f"best: candidate {b.id} {json.dumps(b.config)}; int8 val acc {_fmt(b.accuracy_int8)}, "
                  f"test int8 acc {_fmt(report.test_accuracy_int8)} (float {_fmt(report.test_accuracy_float)})",
                  highlight=False)
        table = Table(title=f"verdict: {report.verdict}", title_justify="left")
        for col in ("budget", "limit", "achieved", "margin", "result", "source"):
            table.add_column(col, justify="right" if col in ("limit", "achieved", "margin") else "left")
        for row in report.budgets:
            result = {"PASS": "[green]PASS[/]", "FAIL": "[red]FAIL[/]", "AT RISK": "[yellow]AT RISK[/]",
                      "pending": "[yellow]pending[/]"}[row.result or "pending"]
            margin = "-" if row.margin is None else f"{row.margin:+.1%}"
            src = row.source + (f" — {row.basis}" if row.source == "measured" and row.name.startswith("latency")
                                else "")
            table.add_row(row.name, _fmt(row.limit, row.unit), _fmt(row.achieved, row.unit), margin, result,
                          escape(src))
        out.print(table)
    if report.measured:
        mt = Table(title="finalists: predicted vs measured latency", title_justify="left")
        for col in ("candidate", "predicted ms", "measured ms", "error", "how measured"):
            mt.add_column(col, justify="right" if col in ("predicted ms", "measured ms", "error") else "left")
        for m in report.measured:
            if not isinstance(m, MeasuredRow):
                mt.add_row("-", "-", "-", "-", f"[red]not measured on {escape(m.device)}[/]: {escape(m.failure)}")
                continue
            err_ = "-" if m.relative_error is None else f"{m.relative_error:+.1%}"
            mt.add_row(f"{m.id} ({m.role})", f"{m.predicted_latency_ms:.4g}", f"{m.measured_latency_ms:.4g}", err_,
                       escape(m.label))
        out.print(mt)
    if report.robustness:
        rob = Table(title="robustness of the int8 model on the test split (measured)", title_justify="left")
        for col in ("condition", "severity", "accuracy"):
            rob.add_column(col, justify="left" if col == "condition" else "right")
        for r in report.robustness:
            rob.add_row(r.condition, f"{r.severity:g}", _fmt(r.accuracy))
        fa = report.field_accuracy
        if fa is not None:
            rob.add_row("[b]mean / worst[/]", "", f"{_fmt(fa.mean)} / {_fmt(fa.worst)}")
        out.print(rob)
    ds = report.dataset
    if ds is not None and ds.skipped:
        shown = ", ".join(ds.skipped_files[:3]) if ds.skipped_files else ""
        more = " …" if len(ds.skipped_files) > 3 else ""
        out.print(f"[yellow]{ds.skipped} data files skipped[/] (skip_corrupt: true)"
                  f"{': ' + escape(shown) if shown else ''}{more}; all are listed in report.json", highlight=False)
    if report.tflm is not None:
        t = report.tflm
        if not t.loaded:
            out.print(f"[red]TFLM cannot run the exported model.tflite[/]: {escape(t.failure or '')}", highlight=False)
        else:
            flag = " [red](gap over 1 point)[/]" if t.flagged else ""
            out.print(f"TFLM (tflite-micro, reference kernels) on the test split: accuracy {_fmt(t.accuracy_tflm)} vs "
                      f"ONNX Runtime int8 {_fmt(t.accuracy_onnxruntime)}, predictions agree on "
                      f"{_fmt(t.agreement)}{flag}", highlight=False)
    if report.verdict != "PASS":
        out.print(f"[red]no model holds every budget[/]{': ' + escape(report.reason) if report.reason else ''}; "
                  f"binding: {', '.join(report.binding or ['-'])}", highlight=False)
        if report.closest:
            c = report.closest
            out.print(f"closest candidate: {c.id} {json.dumps(c.config)} — {c.reason}", highlight=False, markup=False)
    out.print(f"report: {run.dir / 'report.html'}", highlight=False, soft_wrap=True)
    if report.best is not None:
        out.print(f"model:  {run.dir / 'best'}", highlight=False, soft_wrap=True)


def _print_stopped(report: Any, run: Any) -> None:
    """Why the search stopped, on its own line; a stop on the time budget is shown in colour with the two
    ways to search on."""
    if not report.stopped:
        return
    s = run.contract.search
    recorded = sum(report.counts.values())
    line = f"search stopped: {report.stopped}" + (
        "" if report.stopped.startswith("all ") else f" ({recorded} of {_plural(s.trials, 'trial')} recorded)")
    if report.stopped.startswith("time budget") and s.time_budget_s:
        out.print(f"[yellow]{line}[/]", highlight=False)
        out.print(f"to search on: 'chipfit run {run.dir} --resume' (another {s.time_budget_s:g} s), or give it "
                  f"longer: 'chipfit run {run.dir} --resume --time-budget {max(2 * s.time_budget_s, 60):g}'",
                  highlight=False, markup=False, soft_wrap=True)
    else:
        out.print(line, highlight=False, markup=False)


@app.command("export")
def export_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="onnx, tflite, c, manifest or all.")] = "all",
) -> None:
    """Write the best model's deployable forms into RUN_DIR/best (ONNX, TFLite int8, C array, manifest)."""
    from chipfit.run import Run

    with _errors(run_dir, f"exporting {run_dir}"):
        run = Run.load(run_dir)
        if not (run.dir / "report.json").exists():
            run.finalize()
        written = run.export(fmt, strict=fmt != "all")
        if fmt != "manifest" and "manifest" not in written:
            written.update(run.export("manifest"))
    for name, paths in written.items():
        for p in paths:
            out.print(f"{name}: {p}", highlight=False)


@app.command("report")
def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json to stdout.")] = False,
) -> None:
    """Regenerate report.json and report.html of a run (re-measuring the best model on the test split)."""
    from chipfit.run import Run

    with _errors(run_dir, f"the report of {run_dir}"):
        run = Run.load(run_dir)
        progress = _RichProgress(enabled=not as_json)
        with progress:
            report = run.report(export=False, callbacks=progress)
            progress.finish()
    if as_json:
        sys.stdout.write(report.to_json() + "\n")
    else:
        out.print(f"{run.dir / 'report.json'}\n{run.dir / 'report.html'}", highlight=False)


@app.command("schema")
def schema_cmd(
    what: Annotated[str, typer.Argument(help="report (report.json) or manifest (best/manifest.json).")],
) -> None:
    """Print the published JSON Schema of a chipfit record."""
    with _errors():
        if what == "report":
            from chipfit.runreport import report_schema

            _json(report_schema())
        elif what == "manifest":
            from chipfit.runtime.manifest import Manifest

            _json(Manifest.model_json_schema(by_alias=True, mode="serialization"))
        else:
            from chipfit.naming import did_you_mean

            hint = did_you_mean(what, ["report", "manifest"])
            raise UsageError(f"unknown schema '{what}': expected report or manifest.{hint}")


_TOKEN_HOWTO = ("create one with: python -c 'import secrets; print(secrets.token_urlsafe(32))' > agent.token "
                "&& chmod 600 agent.token")


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command("agent")
def agent_cmd(
    token_file: Annotated[Path | None, typer.Option("--token-file", help="File holding the shared token "
                                                                          "(chmod 600).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8765,
    max_upload_mb: Annotated[float, typer.Option(min=0.001, help="Upload limit per request, all files.")] = 64.0,
    max_models: Annotated[int, typer.Option(min=1, max=4096, help="Models per request (calibration sends its "
                                                                  "probes in batches of this size).")] = 64,
    max_concurrent: Annotated[int, typer.Option(min=1, help="Measurements at once (1 keeps them apart).")] = 1,
    max_queue: Annotated[int, typer.Option(min=0, help="Requests waiting; more get 503.")] = 8,
    timeout_s: Annotated[float, typer.Option(min=0.1, help="Seconds per measurement before it is killed.")] = 120.0,
    threads: Annotated[int, typer.Option(min=1, help="Runtime threads per measurement.")] = 1,
    max_memory_mb: Annotated[int | None, typer.Option(min=64, help="Address-space cap of the measuring process "
                                                      "(default: 1024 MiB or half the RAM); past it: 507.")] = None,
    per_client: Annotated[int, typer.Option(min=1, help="Uploads and queue places one client address may hold; "
                                                        "more get 429.")] = 2,
    max_uploads: Annotated[int, typer.Option(min=1, help="Uploads in progress at once; more get 503.")] = 8,
    header_timeout_s: Annotated[float, typer.Option(min=0.1, help="Seconds for a request's headers to arrive "
                                                                  "before 408 and close.")] = 10.0,
    body_timeout_s: Annotated[float, typer.Option(min=0.1, help="Seconds an upload may stall before 408 and "
                                                                "close.")] = 10.0,
) -> None:
    """Serve this device to other machines: they send model files, the agent measures them here."""
    import logging

    from chipfit.agent.client import read_token
    from chipfit.agent.server import serve

    if token_file is None:
        err.print(f"error: the agent needs --token-file FILE holding the token clients must send; {_TOKEN_HOWTO}",
                  highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)
    with _errors():
        read_token(token_file)
    if not _is_loopback(host):
        err.print(f"[yellow]warning:[/] listening on {host}: anyone who can reach port {port} and holds the token "
                  "can run models here, and over plain http the token travels unencrypted. Use this on a trusted "
                  "network (or behind a TLS proxy or an SSH tunnel).", highlight=False, soft_wrap=True)
    lg = logging.getLogger("chipfit")
    if not any(isinstance(h, logging.StreamHandler) for h in lg.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    err.print(f"chipfit agent listening on http://{host}:{port} (Ctrl-C to stop)", highlight=False)
    with _errors():
        serve(host, port, token_file, max_upload_bytes=int(max_upload_mb * 1024 * 1024), max_models=max_models,
              max_concurrent=max_concurrent, max_queue=max_queue, timeout_s=timeout_s, threads=threads,
              per_client=per_client, max_uploads=max_uploads, header_timeout_s=header_timeout_s,
              body_timeout_s=body_timeout_s, **({"max_memory_mb": max_memory_mb} if max_memory_mb else {}))


@app.command("measure")
def measure_cmd(
    model: Annotated[Path, typer.Argument(help="A .onnx or .tflite file.")],
    agent: Annotated[str | None, typer.Option("--agent", help="Measure on a device agent, e.g. "
                                                              "http://raspberrypi.local:8765.")] = None,
    token_file: Annotated[Path | None, typer.Option("--token-file", help="The agent's token file.")] = None,
    rounds: Annotated[int, typer.Option(min=1, max=100, help="Rounds of timed runs.")] = 5,
    runs: Annotated[int, typer.Option(min=1, max=1000, help="Timed runs per round.")] = 20,
    warmup: Annotated[int, typer.Option(min=0, max=1000, help="Untimed runs first.")] = 5,
    estimator: Annotated[str, typer.Option(help="min, p5, p10, p25 or median of all timed runs.")] = "min",
    memory: Annotated[bool, typer.Option("--memory", help="Also measure peak memory (fresh process).")] = False,
    threads: Annotated[int | None, typer.Option(min=1, help="Runtime threads (local; an agent uses its own "
                                                            "--threads).")] = None,
    energy: Annotated[bool, typer.Option("--energy", help="Also meter energy per inference with RAPL (here or on "
                                                          "the agent's device).")] = False,
    windows_out: Annotated[Path | None, typer.Option("--windows-out", help="Record inference time windows for an "
                                                                           "external power meter into this JSON "
                                                                           "file (see `chipfit energy`).")] = None,
    inferences: Annotated[int, typer.Option(min=1, max=1_000_000, help="Inferences for --windows-out.")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the Measurement as JSON.")] = False,
    runtime: Annotated[str | None, typer.Option("--runtime", "-r", help="Local runtime: onnxruntime, litert, tflm "
                                                "or tflm-cmsis-nn (default: by the file's format); --memory with "
                                                "tflm gives TFLM's arena on a 32-bit MCU.")] = None,
    board: Annotated[str | None, typer.Option("--board", help="An emulated board: qemu:cortex-m4 (m3, m4, m7, "
                                              "m33, m55): the model's TFLM + CMSIS-NN firmware under QEMU, in "
                                              "instructions per op, with TFLM's arena and outputs checked "
                                              "bit for bit.")] = None,
    serial_port: Annotated[str | None, typer.Option("--serial", help="A real board's serial port (e.g. "
                                                    "/dev/ttyACM0) running `chipfit firmware MODEL --serial`: "
                                                    "cycles per op from its DWT counter.")] = None,
    core: Annotated[str | None, typer.Option("--core", help="The board's core with --serial: cortex-m4, ...")] = None,
    clock_mhz: Annotated[float | None, typer.Option("--clock-mhz", min=0.001, help="The board's core clock with "
                                                    "--serial (cycles to ms).")] = None,
) -> None:
    """Time a model file with a real runtime, here or on a device agent; every figure is measured."""
    from chipfit.measure.modelfile import inspect_model
    from chipfit.measure.registry import runtime_for

    with _errors():
        if agent is not None:
            from chipfit.agent.client import AgentRuntime, read_token

            if token_file is None:
                raise UsageError(f"--agent {agent} needs --token-file FILE holding the agent's token (the same "
                                 "file the agent was started with, copied to this machine).")
            if threads is not None:
                raise UsageError("--threads applies to local measurements; the agent runs with the threads it was "
                                 "started with (chipfit agent --threads N).")
            rt = AgentRuntime(agent, read_token(token_file))
        elif token_file is not None:
            raise UsageError("--token-file is used only with --agent URL; given --token-file alone.")
        mf = inspect_model(model)
        if serial_port is not None:
            if board is not None or agent is not None or runtime is not None:
                raise UsageError("--serial measures the board on that port; it does not combine with --board, "
                                 "--agent or --runtime (give one of them).")
            if core is None or clock_mhz is None:
                raise UsageError(f"--serial {serial_port} needs --core (e.g. cortex-m4) and --clock-mhz (e.g. 120): "
                                 "the board's core and its clock.")
            from chipfit.measure.serial import SerialRuntime

            rt = SerialRuntime(serial_port, core, clock_mhz)
        elif core is not None or clock_mhz is not None:
            raise UsageError("--core and --clock-mhz go with --serial PORT (a real board); for an emulated core "
                             "use --board qemu:<core>.")
        elif board is not None:
            rt = _board_runtime(board, agent=agent, runtime=runtime)
        elif agent is None and runtime is not None:
            from chipfit.measure.registry import create_runtime

            rt = create_runtime(runtime, threads=threads or 1)
        elif agent is None:
            rt = runtime_for(mf, threads=threads or 1)
        if windows_out is not None and agent is not None:
            raise UsageError("--windows-out records windows on this machine's clock; run `chipfit measure` on the "
                             "device itself (where the meter is attached) instead of through --agent.")
        m = rt.measure(mf, rounds=rounds, runs=runs, warmup=warmup, estimator=estimator, memory=memory,
                       energy=energy)
        if windows_out is not None:
            _record_windows(rt, mf, windows_out, inferences)
    if as_json:
        _json(m.to_dict())
        return
    from rich.markup import escape

    table = Table(title=escape(f"{m.model}: {m.source}"), title_justify="left")
    for col in ("figure", "value", "source"):
        table.add_column(col, justify="right" if col == "value" else "left")
    table.add_row("latency", f"{m.latency_ms:.4g} ms", f"{m.source} ({m.estimator})")
    for name, v in (("p50", m.p50_ms), ("p90", m.p90_ms), ("p99", m.p99_ms)):
        table.add_row(f"latency {name}", f"{v:.4g} ms", f"{m.source} ({name} of {m.runs} runs)")
    if m.peak_memory_bytes is not None:
        table.add_row("peak memory", f"{m.peak_memory_bytes:,} B", f"{m.source} ({m.memory_method})")
    if m.energy_method is not None:
        table.add_row("energy / inference", "-" if m.energy_mj is None else f"{m.energy_mj:.4g} mJ",
                      escape(m.energy_method if m.energy_mj is None else f"{m.source} ({m.energy_method})"))
    if m.reference_ms is not None:
        base = f", baseline {m.reference_baseline_ms * 1e3:.0f} us" if m.reference_baseline_ms else ", no baseline yet"
        steal = f", steal {m.steal_pct:.1f}%" if m.steal_pct is not None else ""
        table.add_row("machine", "BUSY" if m.busy else "quiet",
                      escape(f"reference workload {m.reference_ms * 1e3:.0f} us{base}{steal}"
                             + (f": {m.busy_reason}; at the quiet machine's speed {m.rescaled_ms():.4g} ms"
                                if m.busy else "")))
    out.print(table)
    _print_ops(m)
    out.print(m.label(), highlight=False, markup=False, soft_wrap=True)


def _board_runtime(board: str, *, agent: str | None, runtime: str | None) -> Any:
    """The runtime of ``--board qemu:<core>`` (firmware on an emulated core)."""
    from chipfit.measure.registry import create_runtime

    if agent is not None or runtime is not None:
        raise UsageError(f"--board {board} measures the firmware on that board; it does not combine with --agent or "
                         "--runtime (give one of them).")
    if not board.startswith("qemu:"):
        raise UsageError(f"unknown board '{board}': expected qemu:<core> (qemu:cortex-m4; m3, m4, m7, m33, m55).")
    return create_runtime(board)


def _print_ops(m: Any) -> None:
    """Per-operator instructions (or cycles) of a firmware measurement."""
    ops = getattr(m, "ops", ())
    if not ops:
        return
    unit = "cycles" if getattr(m, "cycles", None) else "instructions"
    total = sum(n for _, n in ops) or 1
    table = Table(title=f"{unit} per operator on {m.board or m.device} (measured)", title_justify="left")
    for col in ("#", "op", unit, "share"):
        table.add_column(col, justify="left" if col == "op" else "right")
    for i, (op, n) in enumerate(ops):
        table.add_row(str(i), op, f"{n:,}", f"{100 * n / total:.1f}%")
    out.print(table)
    if m.arena_bytes is not None:
        out.print(f"arena: {m.arena_bytes:,} B (TFLM arena_used_bytes() on the 32-bit core); outputs "
                  f"{'identical to the tflite-micro interpreter' if m.bit_exact else 'not checked'}",
                  highlight=False)


@app.command("firmware")
def firmware_cmd(
    model: Annotated[Path, typer.Argument(help="A .tflite file (int8).")],
    core: Annotated[str, typer.Option("--core", help="cortex-m3, m4, m7, m33 or m55.")] = "cortex-m4",
    out_dir: Annotated[Path | None, typer.Option("--out", help="Project folder (default: "
                                                 "<model>-<core>-firmware).")] = None,
    serial: Annotated[bool, typer.Option("--serial", help="The serial-protocol build (a real board's UART) "
                                         "instead of semihosting.")] = False,
    arena_kb: Annotated[int | None, typer.Option("--arena-kb", min=1, help="Tensor arena to reserve.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the build's facts as JSON.")] = False,
) -> None:
    """Generate and build the model's firmware: TFLM + CMSIS-NN, the model as a C array and a harness that
    times every operator, for one Cortex-M core (Arm GNU toolchain; `make farm` installs it)."""
    from chipfit.firmware.build import build_firmware
    from chipfit.firmware.cores import get_core

    with _errors():
        c = get_core(core)
        dest = out_dir or Path(f"{model.stem}-{c.name}-firmware")
        fw = build_firmware(model, c, out=dest, serial=serial, arena_size=arena_kb * 1024 if arena_kb else None)
    if as_json:
        _json({k: v for k, v in fw.to_dict().items() if k != "sources"})
        return
    out.print(f"built {fw.elf} for {fw.core} in {fw.build_s:.1f} s ({fw.compiled} objects compiled, {fw.reused} "
              f"from the cache): flash {fw.flash_bytes:,} B, RAM {fw.ram_bytes:,} B (arena {fw.arena_size:,} B); "
              f"ops {', '.join(dict.fromkeys(fw.ops))}", highlight=False, soft_wrap=True)
    out.print(f"run it: cd {fw.project} && make run   (or chipfit measure {model} --board qemu:{fw.core})",
              highlight=False, soft_wrap=True)


@app.command("firmware-sources")
def firmware_sources_cmd(
    fetch: Annotated[bool, typer.Option("--fetch", help="Fetch TFLM at the pinned commit and build its Cortex-M "
                                        "tree when none is found (needs internet, make, unzip, patch; minutes).")]
    = False,
) -> None:
    """Where the TFLM + CMSIS-NN sources of the firmware come from, and the commits they are pinned to."""
    from chipfit.firmware.sources import PINNED, tflm_source

    with _errors():
        tree = tflm_source(fetch=fetch)
    out.print(f"TFLM + CMSIS-NN sources: {tree}", highlight=False, soft_wrap=True)
    for name, where in PINNED.items():
        out.print(f"  {name}: {where}", highlight=False, soft_wrap=True)


def _record_windows(rt: Any, mf: Any, path: Path, inferences: int) -> None:
    """Run ``inferences`` inferences after 1 s idle, keeping each one's wall-clock window, for a power meter."""
    import time

    from chipfit.measure.power import TraceMeter

    meter = TraceMeter(clock=time.time)
    meter.record(rt.open(mf, mf.random_inputs(0)), inferences=inferences, idle_s=1.0)
    path.write_text(json.dumps({"model": mf.name, "runtime": rt.describe(), "device": rt.device(),
                                "clock": "time.time (seconds since the epoch, this machine)",
                                "idle_window": meter.idle_window, "windows": meter.windows}))
    err.print(f"recorded {inferences} inference windows in {path}; export the meter's capture as CSV and run "
              f"`chipfit energy CAPTURE.csv --windows {path}`", highlight=False, soft_wrap=True)


@app.command("energy")
def energy_cmd(
    trace: Annotated[Path, typer.Argument(help="The power meter's capture as CSV (time + power, or time + "
                                               "current + voltage; Joulescope/Otii-style headers).")],
    windows: Annotated[Path, typer.Option("--windows", help="Inference windows from `chipfit measure "
                                                             "--windows-out`.")],
    offset_s: Annotated[float | None, typer.Option("--offset-s", help="Meter time minus host time; default: "
                                                                      "estimated from the trace.")] = None,
    voltage_v: Annotated[float | None, typer.Option("--voltage-v", help="Supply voltage when the capture has "
                                                                        "current only.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the reading as JSON.")] = False,
) -> None:
    """Energy per inference: integrate an external meter's power trace over recorded inference windows."""
    from chipfit.measure.power import align_offset, energy_per_inference, load_trace

    with _errors():
        try:
            rec = json.loads(windows.read_text())
            wins = [tuple(map(float, w)) for w in rec["windows"]]
            idle = tuple(map(float, rec["idle_window"])) if rec.get("idle_window") else None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UsageError(f"--windows {windows}: expected the JSON written by `chipfit measure --windows-out`; "
                             f"could not read it ({type(e).__name__}: {e}).") from None
        tr = load_trace(trace, voltage_v=voltage_v)
        offset = align_offset(tr, wins) if offset_s is None else offset_s
        reading = energy_per_inference(tr, wins, offset_s=offset, idle_window=idle)
    d = {**reading.to_dict(), "offset_s": offset, "offset_source": "estimated from the trace" if offset_s is None
         else "given", "model": rec.get("model"), "device": rec.get("device")}
    if as_json:
        _json(d)
        return
    out.print(f"{rec.get('model')}: {reading.energy_mj_per_inference:.4g} mJ per inference (measured: "
              f"{reading.method}; {reading.inferences} inferences, mean power {reading.mean_power_mw:.4g} mW, "
              f"clock offset {offset:+.6f} s {d['offset_source']})", highlight=False, soft_wrap=True)


@app.command("calibrate")
def calibrate_cmd(
    target: Annotated[str, typer.Option("--target", "-t", help="The device to calibrate (host: this machine).")]
    = "host",
    agent: Annotated[str | None, typer.Option("--agent", help="Measure on this device agent (needed for any "
                                                              "target but host).")] = None,
    token_file: Annotated[Path | None, typer.Option("--token-file", help="The agent's token file.")] = None,
    probes: Annotated[int, typer.Option(min=3, max=6000, help="Generated probe networks to measure.")] = 2700,
    dtype: Annotated[str, typer.Option(help="int8 (what runs ship) or float32.")] = "int8",
    as_json: Annotated[bool, typer.Option("--json", help="Print the calibration as JSON.")] = False,
    serial: Annotated[str | None, typer.Option("--serial", help="A real board on this serial port, running "
                                               "chipfit's firmware (chipfit firmware MODEL --core CORE --serial): "
                                               "fit its cycles per instruction.")] = None,
    core: Annotated[str | None, typer.Option("--core", help="With --serial: the board's core (cortex-m4...).")]
    = None,
    clock_mhz: Annotated[float, typer.Option("--clock-mhz", help="With --serial: the board's core clock (MHz).")]
    = 0.0,
    model: Annotated[list[Path] | None, typer.Option("--model", help="With --serial: the .tflite flashed on the "
                                                     "board (default: the MLPerf Tiny model of its size).")] = None,
    rounds: Annotated[int, typer.Option(min=1, max=100, help="With --serial: runs per model (minimum kept).")] = 3,
    allow_busy: Annotated[bool, typer.Option("--allow-busy", help="Calibrate even when chipfit's reference "
                                             "workload shows the machine busy (recorded in the calibration).")]
    = False,
    wait: Annotated[float, typer.Option("--wait", min=0, help="When the machine is busy, wait up to this many "
                                        "seconds for it to calm down before refusing.")] = 0.0,
    node_model: Annotated[str, typer.Option("--node-model", help="trees (the default): feature costs and "
                                            "gradient-boosted trees fitted to the probes' per-node profile times "
                                            "(where the runtime profiles per node); linear: feature costs only.")]
    = "trees",
) -> None:
    """Measure generated probe networks on a runtime and fit the cost model to them; later `profile`, `check`
    and `run` on that target use the calibration. Refuses while the machine is busy (a fixed reference
    workload runs slower than its quiet baseline, or the hypervisor steals CPU time) unless --allow-busy.
    With --serial: measure the model flashed on a real board and
    fit the board's cycles per instruction (run it once per model you flash; the CPI averages them)."""
    from chipfit.cost.calibration import calibration_path
    from chipfit.measure.calibrate import calibrate
    from chipfit.targets import create_target

    if serial is not None or core is not None or model:
        _calibrate_serial(serial, core, clock_mhz, model or [], "" if target == "host" else target, rounds,
                          as_json)
        return
    with _errors():
        if dtype not in ("int8", "float32"):
            raise UsageError(f"--dtype must be int8 or float32; given '{dtype}'.")
        if node_model not in ("linear", "trees"):
            raise UsageError(f"--node-model must be linear or trees; given '{node_model}'.")
        t = create_target(target)
        if t.runtime != "onnxruntime":
            raise UsageError(_calibrate_hint(t))
        rt = None
        if agent is not None and t.origin == "host":
            raise UsageError("--target host means this machine, measured here; to calibrate the device behind "
                             f"{agent}, name its target (e.g. --target rpi5.onnxruntime).")
        if agent is not None:
            from chipfit.agent.client import AgentRuntime, read_token

            if token_file is None:
                raise UsageError(f"--agent {agent} needs --token-file FILE holding the agent's token.")
            rt = AgentRuntime(agent, read_token(token_file))
        elif token_file is not None:
            raise UsageError("--token-file is used only with --agent URL; given --token-file alone.")
        cal = calibrate(t.name, runtime=rt, probes=probes, dtype=dtype, allow_busy=allow_busy, wait_s=wait,
                        node_model=None if node_model == "trees" else node_model)
        path = calibration_path(t.name, cal.runtime, dtype, cal.device)
    if as_json:
        _json({**cal.to_dict(), "path": str(path)})
        return
    table = Table(title=f"calibration of {t.name} ({cal.runtime}, {dtype})", title_justify="left", show_header=False)
    table.add_column("k")
    table.add_column("v")
    fit = cal.fit
    for k, v in (("measured by", cal.runtime_version), ("on", cal.device), ("probe networks", str(cal.measurements)),
                 ("estimator", cal.estimator),
                 ("fit (in-sample)", f"median error {fit.median_abs_error:.1%}, {fit.within_10:.0%} within ±10%, "
                                     f"{fit.within_20:.0%} within ±20%" if fit else "-"),
                 ("feature costs", f"{len(cal.coefficients)} non-zero (scheme {cal.scheme})"
                  + (f"; + {len(cal.trees.trees)} per-node trees" if cal.trees is not None else "")),
                 ("machine", "not checked" if cal.reference_ms is None else
                  f"reference workload {cal.reference_ms * 1e3:.0f} us"
                  + (f" (baseline {cal.reference_baseline_ms * 1e3:.0f} us)" if cal.reference_baseline_ms else "")
                  + (f"; BUSY: {cal.busy_reason}" if cal.busy else "; quiet")),
                 ("saved to", str(path))):
        table.add_row(k, v)
    out.print(table)


def _calibrate_serial(port: str | None, core: str | None, clock_mhz: float, models: list[Path], target: str,
                      rounds: int, as_json: bool) -> None:
    """``chipfit calibrate --serial PORT --core CORE --clock-mhz MHZ [--target NAME] [--model FILE]``."""
    from chipfit.measure.calibrate import calibrate_serial
    from chipfit.targets import create_target

    with _errors():
        if port is None or core is None:
            raise UsageError("calibrating a board over serial needs --serial PORT and --core CORE (and --clock-mhz "
                             f"MHZ or a --target that states it); given --serial {port}, --core {core}.")
        if target:
            t = create_target(target)
            clock_mhz = clock_mhz or t.clock_mhz
            from chipfit.firmware.cores import get_core

            if get_core(core).name != t.core:
                raise UsageError(f"--target {t.name} has a {t.core}; given --core {core}. Name the board's core or "
                                 "leave --target out (the calibration then applies to every target with this core "
                                 "and clock).")
            target = t.name
        if clock_mhz <= 0:
            raise UsageError(f"--clock-mhz is needed with --serial (the board's core clock, e.g. 120 for an "
                             f"STM32L4R5); given {clock_mhz}.")
        cal, path = calibrate_serial(port, core, clock_mhz, models, target=target, rounds=rounds)
    if as_json:
        from dataclasses import asdict

        _json({**asdict(cal), "path": str(path)})
        return
    applies = f"target {cal.target}" if cal.target else f"targets with a {cal.core} at {cal.clock_mhz:g} MHz"
    out.print(f"cycles per instruction of the {cal.core} board on {port}: {cal.cpi:.4g} (per model: "
              + ", ".join(f"{k} {v:.4g}" for k, v in cal.per_model.items())
              + f"); saved to {path}; used for {applies} running {cal.runtime}", highlight=False, soft_wrap=True)


def _calibrate_hint(t: Any) -> str:
    """Why ``t`` cannot be calibrated as named, and a command that works: pinning ONNX Runtime where the
    device runs it, otherwise a target that does."""
    from chipfit.targets.knowledge import runtimes

    head = f"probes run on ONNX Runtime, but {t.name}'s runtime is {t.runtime}"
    if t.core in runtimes()["onnxruntime"].cores:
        return (f"{head}: calibrate its ONNX Runtime instead, 'chipfit calibrate --target {t.name}.onnxruntime "
                "--agent URL --token-file F' (and pin `runtime: onnxruntime` in contracts to use it).")
    return (f"{head}, and ONNX Runtime does not run on its {t.core}, so it cannot be calibrated by measurement: "
            f"its latency comes from published measurements ('chipfit devices show {t.name}' says which). "
            "Calibration is for targets that run ONNX Runtime: this machine ('chipfit calibrate --target host'), "
            "or a board such as 'rpi5.onnxruntime' through its agent.")


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":
    main()
