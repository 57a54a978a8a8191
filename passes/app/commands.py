"""The work behind each command-line command. Everything is validated before anything is written."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
from rich.table import Table

from ir import io, runtime, shapes
from ir.errors import BackendError, UsageError
from passes.app.output import console, default_output_dir, errors, print_json
from passes.instruments import Instrument


def _load_with_shapes(path: str, input_shape_args: list[str]):
    fixed = shapes.parse_input_shapes(input_shape_args)
    model = io.load(path)
    shapes.fix_input_shapes(model, fixed)
    return model, fixed


def _writable_output_dir(path: Path) -> Path:
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"-o {path}: output folder is not writable")
    return path


def run_optimize(args) -> int:
    from passes import calibration, instruments, pipeline
    from passes.manager import PassContext, PassManager
    from passes.app import attribution_report
    from passes.app.report import build_report, write_json, write_markdown
    from passes.app.report_html import render_report_html
    from passes.attribution import AttributionInstrument, held_back_feeds
    from passes.verify import check_structure

    # Validate every argument before touching the model or the disk.
    pipe = pipeline.parse(args.passes)
    targets_given, build_options = _build_options(args) if args.target else ({}, None)
    out_dir = _writable_output_dir(Path(args.output) if args.output else default_output_dir(args.model))
    preprocess = calibration.ImagePreprocess.parse(args.calib_preprocess) if args.calib_preprocess else None
    model, fixed = _load_with_shapes(args.model, args.input_shape)
    check_structure(model)

    lossy = any(not p.lossless for p in pipe.passes())
    if args.min_sqnr is not None and args.verify == "off":
        raise UsageError("--min-sqnr needs the outputs measured: drop --verify off")
    warnings_list: list[str] = []
    if args.calib:
        calib = calibration.Calibration.from_path(args.calib, model, preprocess=preprocess, limit=args.calib_limit)
    else:
        calib = calibration.Calibration.generated_for(model)
    if calib.generated and lossy:
        warnings_list.append(attribution_report.RANDOM_INPUTS_WARNING)
        errors.print(f"[bold red]WARNING: {attribution_report.RANDOM_INPUTS_WARNING}[/bold red]", highlight=False)
    elif calib.generated:
        message = "no calibration data given (--calib): verifying on generated random inputs"
        warnings_list.append(message)
        errors.print(f"[yellow]warning:[/yellow] {message}")
    runtime.preflight(model, calib.take(1), what=f"the input model {args.model}")
    verify_feeds, verify_source = held_back_feeds(calib) if lossy else (calib.take(4), calib.source)
    attribution = AttributionInstrument(verify_feeds) if lossy and args.verify != "off" else None
    symbolic = shapes.has_symbolic_inputs(model)
    if symbolic:
        warnings_list.append(f"inputs with symbolic dimensions: {', '.join(symbolic)}; fix them with --input-shape to fold shape computations")

    with tempfile.TemporaryDirectory(prefix="graphpress-") as scratch:
        repro = instruments.Reproducer(out_dir / "reproducer")
        used = [instruments.StatisticsInstrument(), repro, ProgressInstrument()]
        if args.dump_dir:
            used.append(instruments.DumpAfterChange(args.dump_dir))
        if attribution is not None:
            used.insert(0, attribution)
        before = instruments.cost_snapshot(model)
        manager = PassManager(
            pipe, instruments=used, verify=args.verify, strict=args.strict, tolerance=args.tolerance, atol=args.atol,
            feeds=verify_feeds, feeds_source=verify_source, context=PassContext(fixed, calib),
        )
        with console.status("running passes") as status:
            used[-1].status = status
            result = manager.run(model)
        error_attribution = None
        if attribution is not None:
            error_attribution = attribution_report.summary(result.records, attribution.final(result.model), verify_source, random_inputs=calib.generated)
            if args.min_sqnr is not None:
                attribution_report.check_budget(error_attribution, args.min_sqnr)
        after = instruments.cost_snapshot(result.model)
        stem = Path(args.model).stem
        staged_model = io.save(result.model, Path(scratch) / f"{stem}.onnx")
        targets = None
        if build_options is not None:
            targets = _build_targets(result.model, targets_given, Path(scratch), out_dir, dict(build_options, input_shapes=fixed or None, name=stem))
        report = build_report(result, source=args.model, output=str(out_dir / staged_model.name), before=before, after=after, targets=targets, warnings=warnings_list + result.warnings)
        report["error_attribution"] = error_attribution
        (Path(scratch) / "report.json").write_text(write_json(report))
        (Path(scratch) / "report.md").write_text(write_markdown(report))
        (Path(scratch) / "report.html").write_text(render_report_html(report))
        out_dir.mkdir(parents=True, exist_ok=True)
        for produced in Path(scratch).iterdir():
            os.replace(produced, out_dir / produced.name)

    _print_summary(report, out_dir)
    failed = [t for t in targets or () if not t["compiled"] or (t.get("check") or {}).get("passed") is False]
    if failed:
        reasons = "; ".join(f"{t['target']}: {t.get('error') or 'does not match ONNX Runtime'}" for t in failed)
        raise BackendError(f"{len(failed)} of {len(targets)} targets failed ({reasons}); see {out_dir / 'report.md'}")
    return 0


def _build_options(args) -> tuple[dict, dict]:
    """(each ``--target`` as typed with its parsed spec, validated options for ``compile_model``),
    before the model is loaded. The targets are parsed here, once."""
    from backends.base import RemoteDevice
    from backends.target import parse_target
    from backends.tuning import validate_tuning

    targets = {text: parse_target(text) for text in args.target}
    if len(set(args.target)) != len(args.target):
        raise UsageError(f"--target given twice: {', '.join(sorted({t for t in args.target if args.target.count(t) > 1}))}")
    validate_tuning(args.tune_trials, args.tune_db)
    if args.measure < 0:
        raise UsageError(f"--measure {args.measure}: expected a number of runs >= 0")
    remote = RemoteDevice.parse(args.rpc) if args.rpc else None
    return targets, {"tune_trials": args.tune_trials, "tune_db": args.tune_db, "measure_repeat": args.measure, "remote": remote}


def _build_targets(model, targets: dict, scratch: Path, out_dir: Path, options: dict) -> list[dict]:
    """Compile for each target; one target writes into the output folder, several into a folder each.

    With one target its failure is the command's failure; with several, each target's outcome is
    reported and the command fails at the end if any did. Paths are reported where they will be.
    """
    from backends.dispatch import compile_model
    from backends.report import TargetReport, build_for_targets, report_dict

    with _progress(options, f"compiling for {', '.join(targets)} with TVM") as options:
        if len(targets) == 1:
            [(text, spec)] = targets.items()
            reports = [TargetReport(text, scratch, compile_model(model, spec, scratch, **options))]
        else:
            reports = build_for_targets(model, targets, scratch, **options)
    moved = [report_dict(r) for r in reports]
    return [_relocated(entry, str(scratch), str(out_dir)) for entry in moved]


def _relocated(value, old: str, new: str):
    if isinstance(value, str):
        return new + value[len(old):] if value.startswith(old) else value
    if isinstance(value, dict):
        return {k: _relocated(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_relocated(v, old, new) for v in value]
    return value


@contextlib.contextmanager
def _progress(options: dict, message: str):
    """A progress bar over the measured tuning trials when tuning is asked for, else a spinner
    (one live display at a time)."""
    if not options.get("tune_trials"):
        with console.status(message):
            yield options
        return
    from rich.progress import Progress

    with Progress(console=console, transient=True) as progress:
        total = options["tune_trials"] if isinstance(options["tune_trials"], int) else None  # Nx: known once the tasks are extracted
        task = progress.add_task("tuning (MetaSchedule)", total=total)
        yield dict(options, tune_progress=lambda done, total: progress.update(task, completed=done, total=total))


def run_targets(args) -> int:
    from backends.targets_table import format_targets, list_targets

    rows = list_targets()
    if args.json:
        print_json([dataclasses.asdict(row) for row in rows])
    else:
        console.print(format_targets(rows), markup=False, highlight=False, soft_wrap=True)
    return 0


class ProgressInstrument(Instrument):
    """Shows the pass being run on the spinner line."""

    status = None

    def before_pass(self, pass_, model):
        if self.status is not None:
            self.status.update(f"running {pass_.name} ({len(model.graph)} nodes)")

    def on_failure(self, pass_, model_before, pipeline_text, reason):
        errors.print(f"[yellow]rolled back[/yellow] {pass_.name}: {reason}", markup=True, highlight=False)


def _print_summary(report: dict, out_dir: Path) -> None:
    table = Table(title=f"optimized with {report['pipeline']}")
    for column in ("", "before", "after", "change"):
        table.add_column(column, justify="right")
    for key in ("nodes", "params", "macs", "weight_bytes", "stored_weight_bytes"):
        b, a = report["before"][key], report["after"][key]
        change = f"{(a - b) / b * 100:+.1f}%" if b else "-"
        table.add_row(key, f"{b:,}", f"{a:,}", change)
    console.print(table)
    changed = [r for r in report["passes"] if r["modified"]]
    console.print(f"{len(changed)} pass runs changed the model; {len(report['rolled_back'])} rolled back")
    final = report["verification"]["final_error"]
    if final:
        console.print(f"outputs vs input model: max relative error {final['max_rel']:.3g} on {report['verification']['inputs']}")
    for target in report.get("targets") or ():
        if target["compiled"]:
            library = next((a["path"] for a in target["artifacts"] if a["role"] == "library"), "-")
            console.print(f"{target['target']}: {library}")
            for note in target.get("notes", ()):
                if note.startswith("check skipped"):  # e.g. ARM without qemu: say how to get the check
                    hint = " (to check ARM libraries here: bash tools/setup_arm.sh)" if "setup_arm" in note else ""
                    console.print(f"[yellow]{target['target']}: NOT checked against ONNX Runtime: {note}{hint}[/yellow]", highlight=False)
        else:
            console.print(f"{target['target']}: not compiled: {target['error']}")
    attribution = report.get("error_attribution")
    if attribution and attribution.get("final"):
        final = attribution["final"]
        console.print(f"lossy pipeline: output SQNR {final['sqnr_db']:.1f} dB, cosine {final['cosine']:.4f} on {attribution['measured_on']}")
        if attribution["random_inputs"]:
            console.print("[bold red]measured on random inputs: pass --calib for figures that mean something[/bold red]")
    console.print(f"wrote {out_dir}/ (model, report.md, report.json, report.html)")


def run_inspect(args) -> int:
    from ir import cost, runtime

    html_path = _html_destination(args.html)
    model, _ = _load_with_shapes(args.model, args.input_shape)
    summary = cost.analyze(model)
    specs = runtime.input_specs(model)
    data = summary.to_dict()
    data["inputs"] = {name: {"dtype": np.dtype(dtype).name, "shape": dims} for name, (dtype, dims) in specs.items()}
    data["outputs"] = {v.name: {"dtype": _dtype_name(v.dtype), "shape": _dims(v.shape)} for v in model.graph.outputs}
    if html_path is not None:
        from ir.inspect_html import render_model_page

        io.write_text(html_path, render_model_page(model, str(Path(args.model).resolve())))
    if args.groups:
        from ir.channel_groups import describe_groups

        data["groups"] = describe_groups(model)
    if args.json:
        print_json(data)
        return 0
    io_table = Table(title=f"{Path(args.model).name}")
    for column in ("", "name", "dtype", "shape"):
        io_table.add_column(column)
    for kind in ("inputs", "outputs"):
        for name, info in data[kind].items():
            io_table.add_row(kind[:-1], name, info["dtype"], str(info["shape"]))
    console.print(io_table)
    totals = Table(title="totals")
    totals.add_column("")
    totals.add_column("value", justify="right")
    for key in ("nodes", "params", "macs", "weight_bytes", "activation_peak_bytes"):
        value = getattr(summary, key)
        totals.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    console.print(totals)
    ops = Table(title="op histogram")
    ops.add_column("op")
    ops.add_column("count", justify="right")
    for op, count in sorted(summary.op_histogram.items(), key=lambda kv: -kv[1]):
        ops.add_row(op, str(count))
    console.print(ops)
    layers = sorted(summary.per_node, key=lambda n: -(n.macs or 0))
    if args.layers:
        layers = layers[: args.layers]
    per_layer = Table(title="layers by MACs")
    for column in ("node", "op", "params", "MACs", "output bytes"):
        per_layer.add_column(column, justify="right" if column != "node" else "left")
    for node in layers:
        per_layer.add_row(node.name, node.op_type, f"{node.params:,}", "?" if node.macs is None else f"{node.macs:,}", f"{node.output_bytes:,}" if node.output_bytes is not None else "?")
    console.print(per_layer)
    if args.groups:
        _print_groups(data["groups"])
    if html_path is not None:
        console.print(f"wrote {html_path}")
    return 0


def _dtype_name(dtype) -> str:
    """numpy's name (float32), as inputs are printed, for an ONNX element type (FLOAT)."""
    try:
        return np.dtype(dtype.numpy()).name
    except (AttributeError, TypeError, ValueError):
        return str(dtype)


def _html_destination(path: str | None) -> Path | None:
    if path is None:
        return None
    html_path = Path(path)
    _writable_output_dir(html_path.parent if str(html_path.parent) else Path("."))
    return html_path


def _print_groups(groups: list[dict]) -> None:
    table = Table(title=f"channel groups ({sum(g['prunable'] for g in groups)} of {len(groups)} prunable)")
    for column in ("group", "channels", "prunable", "producers", "reason"):
        table.add_column(column)
    for group in groups:
        table.add_row(str(group["id"]), str(group["channels"]), "yes" if group["prunable"] else "no",
                      ", ".join(group["producers"][:3]) + (" ..." if len(group["producers"]) > 3 else ""), "; ".join(group["reasons"]))
    console.print(table)


def _dims(shape):
    if shape is None:
        return None
    return [d if isinstance(d, int) else str(d) for d in shape]


def run_diff(args) -> int:
    from ir import diff

    a, fixed = _load_with_shapes(args.a, args.input_shape)
    b = io.load(args.b)
    shapes.fix_input_shapes(b, fixed)
    html_path = _html_destination(args.html)
    structural = diff.structural_diff(a, b)
    numeric = None
    if not args.no_numeric:
        for model, name in ((a, args.a), (b, args.b)):
            runtime.preflight(model, [runtime.generate_inputs(model)], what=name)
        with console.status("running both models"):
            numeric = diff.numeric_diff(a, b)
    data = {"structural": structural.to_dict(), "numeric": numeric}
    if html_path is not None:
        from ir.diff_html import render_html

        from ir.diff_html import diff_title

        paths = (str(Path(args.a).resolve()), str(Path(args.b).resolve()))
        page = render_html(structural, numeric, title=diff_title(paths, b), models=(a, b), paths=paths)
        io.write_text(html_path, page)
    if args.json:
        print_json(data)
        return 0
    _print_diff(data, args)
    if html_path is not None:
        console.print(f"wrote {html_path}")
    return 0


def _print_diff(data: dict, args) -> None:
    from passes.app.diff_view import print_diff

    print_diff(console, data, args.a, args.b)


def run_list(args) -> int:
    from passes.base import option_docs, registered
    from passes.pipeline import preset_names, preset_text

    passes = registered()
    if args.json:
        print_json({
            "passes": {name: {"lossless": cls.lossless, "doc": (cls.__doc__ or "").strip(), "module_doc": _module_doc(cls),
                              "options": [dict(zip(("name", "type", "default", "doc"), row)) for row in option_docs(cls)]} for name, cls in passes.items()},
            "presets": {name: preset_text(name) for name in preset_names()},
        })
        return 0
    table = Table(title="passes")
    for column in ("pass", "kind", "options", "what it does"):
        table.add_column(column)
    for name, cls in passes.items():
        options = "\n".join(f"{n}: {t} = {d}" if d else f"{n}: {t}" for n, t, d, _ in option_docs(cls)) or "-"
        table.add_row(name, "lossless" if cls.lossless else "lossy", options, _summary_line(cls))
    console.print(table)
    presets = Table(title="presets")
    presets.add_column("name")
    presets.add_column("pipeline")
    for name in preset_names():
        presets.add_row(name, preset_text(name))
    console.print(presets)
    return 0


def _module_doc(cls) -> str:
    import sys

    return (sys.modules[cls.__module__].__doc__ or "").strip()


def _summary_line(cls) -> str:
    doc = _module_doc(cls) or (cls.__doc__ or "")
    first = doc.strip().splitlines()[0] if doc.strip() else ""
    return first.split(": ", 1)[1] if first.startswith(cls.name + ":") else first


warnings.filterwarnings("ignore", category=DeprecationWarning, module="onnx")
