"""Fuzz graphpress's command line with mutated real models.

    python tools/fuzz.py --cases 300 --seed 0 --doc docs/fuzz.md [--exec] [--keep DIR]

Each case takes a seed model (PP-OCR's and onnx's real models where installed, and small built ones
with a subgraph and external data), applies one to three mutations (attributes, dims, data types,
input names, op types, opset numbers, external-data records, raw bytes), writes it into its own folder and runs
``optimize``, ``inspect`` and ``diff`` on it. A case passes when every command ends with exit 0, 1
or 2, prints no traceback and no "internal error", finishes within the time limit, leaves the case's
model unchanged, and writes nothing on failure (``optimize``'s output folder absent).

Commands run as children of this process: forked from it after graphpress is imported (the default:
the same ``passes.app.cli.main`` that ``python -m passes`` runs, without paying the interpreter start per
command), or with ``--exec`` as ``python -m passes`` subprocesses. Either way a crash kills only the
child and is seen as a signal. Failing cases are kept under ``--keep`` with the commands to replay.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

COMMANDS = ("optimize", "inspect", "diff")
TIMEOUT_S = 180
EXTREME_INTS = [0, -1, 1, 2, 3, 7, 1 << 31, -(1 << 31), 1 << 62, -(1 << 63), (1 << 63) - 1]
EXTREME_FLOATS = [0.0, -1.0, 1e38, -1e38, float("nan"), float("inf"), 1e-45]
OP_TYPES = ["Relu", "Identity", "Add", "MatMul", "Conv", "Reshape", "Transpose", "Concat", "Gather", "Slice",
            "Softmax", "BatchNormalization", "If", "Loop", "Einsum", "ConstantOfShape", "Expand", "Tile",
            "Resize", "Pad", "NoSuchOp", "QuantizeLinear", "TopK", "Split", "Squeeze", "Unsqueeze"]
LOCATIONS = ["../outside.bin", "/etc/passwd", "missing.bin", "sub/../../x.bin", "", "link.bin", "data.bin",
             "data.bin", "data.bin"]


# --- seed models ---------------------------------------------------------------------------------


def seed_models() -> list[tuple[str, onnx.ModelProto]]:
    seeds = [("tiny-conv", _tiny_conv()), ("if-external", _if_model())]
    light = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_squeezenet.onnx"
    if light.exists():
        seeds.append(("light_squeezenet", onnx.load(str(light))))
    try:
        from models import zoo

        if zoo.available("ppocr-cls"):
            seeds.append(("ppocr-cls", onnx.load(str(zoo.model_path("ppocr-cls")))))
    except Exception:  # the real-models extra is optional
        pass
    return seeds


def _tiny_conv() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    shape = numpy_helper.from_array(np.array([1, -1], np.int64), "shape")
    nodes = [
        helper.make_node("Identity", ["x"], ["t"], name="id"),
        helper.make_node("Conv", ["t", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "shape"], ["y"], name="flat"),
    ]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256])], [w, b, shape])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _if_model() -> onnx.ModelProto:
    """An If whose branches read a weight; the weight goes to external data in every case folder."""
    w = numpy_helper.from_array(np.linspace(-1, 1, 64, dtype=np.float32).reshape(8, 8), "w")
    then_branch = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["t_out"])], "then", [],
                                    [helper.make_tensor_value_info("t_out", TensorProto.FLOAT, [1, 8])])
    else_branch = helper.make_graph([helper.make_node("Neg", ["x"], ["e_out"])], "else", [],
                                    [helper.make_tensor_value_info("e_out", TensorProto.FLOAT, [1, 8])])
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0, np.float32))),
        helper.make_node("Greater", ["s", "zero"], ["cond"]),
        helper.make_node("If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch),
    ]
    graph = helper.make_graph(nodes, "if", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    _externalize(model.graph.initializer[0], "data.bin", 0)
    return model


def _externalize(tensor: TensorProto, location: str, offset: int, length: int | None = None) -> bytes:
    data = tensor.raw_data or numpy_helper.to_array(tensor).tobytes()
    tensor.ClearField("raw_data")
    for field in ("float_data", "int32_data", "int64_data", "double_data"):
        tensor.ClearField(field)
    tensor.data_location = TensorProto.EXTERNAL
    del tensor.external_data[:]
    tensor.external_data.add(key="location", value=location)
    tensor.external_data.add(key="offset", value=str(offset))
    tensor.external_data.add(key="length", value=str(len(data) if length is None else length))
    return data


# --- mutations -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
    seed: str
    model: onnx.ModelProto
    files: dict[str, bytes]  # extra files in the case folder (external data)
    notes: list[str]
    raw: bytes | None = None  # set by the raw-bytes mutation: written instead of the model
    symlink: bool = False


def _all_nodes(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _all_nodes(attribute.g)
            for sub in attribute.graphs:
                yield from _all_nodes(sub)


def mutate_attribute(case: Case, rng: random.Random) -> None:
    nodes = [n for n in _all_nodes(case.model.graph) if n.attribute]
    if not nodes:
        return mutate_op_type(case, rng)
    node = rng.choice(nodes)
    attribute = rng.choice(node.attribute)
    choice = rng.random()
    if choice < 0.15:
        node.attribute.remove(attribute)
        case.notes.append(f"attribute {node.op_type}.{attribute.name} removed")
    elif attribute.type == onnx.AttributeProto.INT:
        attribute.i = rng.choice(EXTREME_INTS)
        case.notes.append(f"attribute {node.op_type}.{attribute.name} = {attribute.i}")
    elif attribute.type == onnx.AttributeProto.INTS:
        values = [rng.choice(EXTREME_INTS) for _ in range(rng.choice([0, 1, len(attribute.ints), 9]))]
        del attribute.ints[:]
        attribute.ints.extend(values)
        case.notes.append(f"attribute {node.op_type}.{attribute.name} = {values}")
    elif attribute.type == onnx.AttributeProto.FLOAT:
        attribute.f = rng.choice(EXTREME_FLOATS)
        case.notes.append(f"attribute {node.op_type}.{attribute.name} = {attribute.f}")
    elif attribute.type == onnx.AttributeProto.STRING:
        attribute.s = rng.choice([b"", b"\xff\xfe", b"NOTSET", b"ij,jk->ikz", b"x" * 300])
        case.notes.append(f"attribute {node.op_type}.{attribute.name} = {attribute.s[:20]!r}")
    elif attribute.type == onnx.AttributeProto.TENSOR:
        del attribute.t.dims[:]
        attribute.t.dims.extend([rng.choice([0, 2, 1 << 20, 1 << 40])])
        case.notes.append(f"tensor attribute {node.op_type}.{attribute.name} dims {list(attribute.t.dims)}")
    else:
        attribute.type = rng.choice([onnx.AttributeProto.INT, onnx.AttributeProto.FLOAT, onnx.AttributeProto.STRING])
        case.notes.append(f"attribute {node.op_type}.{attribute.name} type changed to {attribute.type}")


def mutate_dims(case: Case, rng: random.Random) -> None:
    graph = case.model.graph
    value = rng.choice([0, 1]) if graph.initializer else 1
    dim = rng.choice([0, -1, 2, 1 << 20, 1 << 40, 1 << 62])
    if value == 0:
        tensor = rng.choice(graph.initializer)
        if tensor.dims and rng.random() < 0.7:
            tensor.dims[rng.randrange(len(tensor.dims))] = dim
        else:
            tensor.dims.append(dim)
        case.notes.append(f"initializer {tensor.name} dims {list(tensor.dims)}")
    else:
        info = rng.choice([*graph.input, *graph.output])
        shape = info.type.tensor_type.shape
        if shape.dim:
            target = shape.dim[rng.randrange(len(shape.dim))]
            if rng.random() < 0.2:
                target.dim_param = "N"
            else:
                target.dim_value = max(dim, 0) if dim >= 0 else 0
        else:
            shape.dim.add().dim_value = 3
        case.notes.append(f"{info.name} shape {[d.dim_value or d.dim_param for d in shape.dim]}")


def mutate_dtype(case: Case, rng: random.Random) -> None:
    graph = case.model.graph
    dtype = rng.choice([0, 2, 7, 8, 10, 16, 23, 65, -3])
    if graph.initializer and rng.random() < 0.4:
        tensor = rng.choice(graph.initializer)
        tensor.data_type = dtype
        case.notes.append(f"initializer {tensor.name} data_type {dtype}")
    else:
        info = rng.choice([*graph.input, *graph.output, *graph.value_info] or [None])
        if info is None:
            return mutate_dims(case, rng)
        info.type.tensor_type.elem_type = dtype
        case.notes.append(f"{info.name} elem_type {dtype}")


def mutate_input_name(case: Case, rng: random.Random) -> None:
    nodes = [n for n in _all_nodes(case.model.graph) if n.input or n.output]
    node = rng.choice(nodes)
    names = [v for n in _all_nodes(case.model.graph) for v in n.output] + [i.name for i in case.model.graph.input]
    replacement = rng.choice(["", "no_such_value", rng.choice(names) if names else "x"])
    if node.input and rng.random() < 0.7:
        index = rng.randrange(len(node.input))
        node.input[index] = replacement
        case.notes.append(f"{node.op_type} input {index} -> '{replacement}'")
    elif node.output:
        index = rng.randrange(len(node.output))
        node.output[index] = replacement
        case.notes.append(f"{node.op_type} output {index} -> '{replacement}'")


def mutate_op_type(case: Case, rng: random.Random) -> None:
    node = rng.choice(list(_all_nodes(case.model.graph)))
    old = node.op_type
    if rng.random() < 0.15:
        node.domain = rng.choice(["com.example", "ai.onnx.ml", "com.microsoft"])
        case.notes.append(f"{old} domain -> {node.domain}")
    else:
        node.op_type = rng.choice(OP_TYPES)
        case.notes.append(f"{old} -> {node.op_type}")


def mutate_opset(case: Case, rng: random.Random) -> None:
    opsets = case.model.opset_import
    choice = rng.random()
    if choice < 0.15 and opsets:
        del opsets[:]
        case.notes.append("opset_import removed")
    elif choice < 0.3:
        case.model.ir_version = rng.choice([1, 3, 11, 99, -1])
        case.notes.append(f"ir_version {case.model.ir_version}")
    else:
        version = rng.choice([1, 5, 7, 11, 13, 19, 21, 22, 23, 99, 10000, -1])
        for entry in opsets:
            if entry.domain in ("", "ai.onnx"):
                entry.version = version
        case.notes.append(f"opset {version}")


def mutate_external(case: Case, rng: random.Random) -> None:
    graph = case.model.graph
    candidates = [t for t in graph.initializer if t.data_type != TensorProto.STRING]
    if not candidates:
        return mutate_dims(case, rng)
    tensor = rng.choice(candidates)
    already = tensor.data_location == TensorProto.EXTERNAL
    data = case.files.get("data.bin", b"") if already else _externalize(tensor, "data.bin", 0)
    if not already:
        case.files["data.bin"] = data
    location = rng.choice(LOCATIONS)
    offset = rng.choice([0, 0, 1, len(data), len(data) + 1, 1 << 40, -4])
    length = rng.choice([None, len(data), len(data) - 1, len(data) * 2, 1 << 62, 0])
    entries = {"location": location, "offset": str(offset)}
    if length is not None:
        entries["length"] = str(length)
    if rng.random() < 0.1:
        entries["offset"] = "abc"
    del tensor.external_data[:]
    for key, text in entries.items():
        tensor.external_data.add(key=key, value=text)
    if location == "link.bin":
        case.symlink = True
    case.notes.append(f"external {tensor.name}: {entries}")


def mutate_raw_bytes(case: Case, rng: random.Random) -> None:
    data = bytearray(case.raw if case.raw is not None else case.model.SerializeToString())
    choice = rng.random()
    if choice < 0.4:
        for _ in range(rng.choice([1, 2, 8, 32])):
            data[rng.randrange(len(data))] = rng.randrange(256)
        case.notes.append("bytes flipped")
    elif choice < 0.6:
        cut = rng.randrange(len(data))
        data = data[:cut]
        case.notes.append(f"truncated to {cut} bytes")
    elif choice < 0.8:
        at = rng.randrange(len(data))
        data[at:at] = bytes(rng.randrange(256) for _ in range(rng.choice([1, 4, 64])))
        case.notes.append("bytes inserted")
    else:
        start = rng.randrange(len(data))
        chunk = data[start:start + rng.choice([16, 256, 4096])]
        at = rng.randrange(len(data))
        data[at:at] = chunk
        case.notes.append("chunk duplicated")
    case.raw = bytes(data)


MUTATIONS = {
    "attribute": mutate_attribute, "dims": mutate_dims, "dtype": mutate_dtype, "input-name": mutate_input_name,
    "op-type": mutate_op_type, "opset": mutate_opset, "external": mutate_external, "raw-bytes": mutate_raw_bytes,
}


def make_case(seeds, rng: random.Random) -> tuple[Case, str]:
    name, proto = rng.choice(seeds)
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    files: dict[str, bytes] = {}
    if name == "if-external":
        files["data.bin"] = _weight_bytes(model)
    case = Case(name, model, files, [])
    kinds = rng.sample(sorted(MUTATIONS), rng.choice([1, 1, 2, 3]))
    if "raw-bytes" in kinds:  # raw bytes last: it ends the structured mutations
        kinds.remove("raw-bytes")
        kinds.append("raw-bytes")
    for kind in kinds:
        MUTATIONS[kind](case, rng)
    return case, "+".join(kinds)


def _weight_bytes(model: onnx.ModelProto) -> bytes:
    return np.linspace(-1, 1, 64, dtype=np.float32).tobytes()


def write_case(case: Case, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name, data in case.files.items():
        (folder / name).write_bytes(data)
    (folder.parent / "outside.bin").write_bytes(b"\x00" * 4096)
    if case.symlink:
        os.symlink("/etc/passwd", folder / "link.bin")
    path = folder / "model.onnx"
    path.write_bytes(case.raw if case.raw is not None else case.model.SerializeToString())
    return path


# --- running the commands ------------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    command: str
    rc: int
    output: str
    seconds: float

    def problems(self, wrote_on_failure: bool, input_changed: bool) -> list[str]:
        found = []
        if self.rc is None:
            found.append("timeout")
        elif self.rc < 0:
            found.append(f"killed by {signal.Signals(-self.rc).name}")
        elif self.rc not in (0, 1, 2):
            found.append(f"exit {self.rc}")
        if "Traceback (most recent call last)" in self.output:
            found.append("traceback")
        if "internal error:" in self.output:
            found.append("internal error")
        if wrote_on_failure:
            found.append("wrote output on failure")
        if input_changed:
            found.append("input modified")
        return found


def command_argv(command: str, folder: Path, seed_path: Path) -> list[str]:
    model = str(folder / "model.onnx")
    if command == "optimize":
        return ["optimize", model, "-o", str(folder / "out"), "--passes", "fold"]
    if command == "inspect":
        return ["inspect", model, "--json"]
    return ["diff", str(seed_path), model, "--json"]


def run_forked(argv: list[str], cwd: Path, timeout: float) -> tuple[int | None, str]:
    with tempfile.TemporaryFile() as log:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: run the command line as `python -m passes` would
            code = 70
            try:
                os.chdir(cwd)
                os.dup2(log.fileno(), 1)
                os.dup2(log.fileno(), 2)
                from passes.app.cli import main

                code = main(argv)
            except BaseException:  # noqa: BLE001 - report anything, as the interpreter would
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code if isinstance(code, int) else 70)
        deadline = time.monotonic() + timeout
        status = None
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                status = None
                break
            time.sleep(0.02)
        log.seek(0)
        text = log.read().decode(errors="replace")
    if status is None:
        return None, text
    return (-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)), text


def run_exec(argv: list[str], cwd: Path, timeout: float) -> tuple[int | None, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    try:
        done = subprocess.run([sys.executable, "-m", "passes", *argv], cwd=cwd, env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, ""
    return done.returncode, done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")


def run_case(case: Case, folder: Path, seed_path: Path, *, runner, commands=COMMANDS, timeout=TIMEOUT_S) -> list[tuple[Outcome, list[str]]]:
    path = write_case(case, folder)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    results = []
    for command in commands:
        argv = command_argv(command, folder, seed_path)
        start = time.monotonic()
        rc, text = runner(argv, folder, timeout)
        outcome = Outcome(command, rc, text, time.monotonic() - start)
        wrote = command == "optimize" and rc != 0 and (folder / "out").exists()
        changed = hashlib.sha256(path.read_bytes()).hexdigest() != digest
        results.append((outcome, outcome.problems(wrote, changed)))
        shutil.rmtree(folder / "out", ignore_errors=True)
    return results


def fuzz(cases: int, seed: int, work: Path, *, runner=run_forked, commands=COMMANDS, keep: Path | None = None, log=print, every=None):
    seeds = seed_models()
    rng = random.Random(seed)
    seed_paths = {}
    for name, proto in seeds:
        path = work / "seeds" / name / "model.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        if name == "if-external":
            (path.parent / "data.bin").write_bytes(_weight_bytes(proto))
        path.write_bytes(proto.SerializeToString())
        seed_paths[name] = path
    records = []
    for index in range(cases):
        case, kinds = make_case(seeds, rng)
        folder = work / f"case{index:04d}"
        results = run_case(case, folder, seed_paths[case.seed], runner=runner, commands=commands)
        problems = [f"{o.command}: {p}" for o, found in results for p in found]
        records.append({"index": index, "seed": case.seed, "kinds": kinds, "notes": case.notes,
                        "rcs": {o.command: o.rc for o, _ in results}, "problems": problems,
                        "messages": {o.command: _last_line(o.output) for o, _ in results}})
        if problems:
            log(f"case {index} ({case.seed}, {kinds}: {'; '.join(case.notes)}): {'; '.join(problems)}")
            if keep is not None:
                target = keep / f"case{index:04d}"
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(folder, target, symlinks=True)
                (target / "output.txt").write_text("\n\n".join(f"$ python -m passes {' '.join(command_argv(o.command, folder, seed_paths[case.seed]))}\n{o.output}" for o, _ in results))
        shutil.rmtree(folder, ignore_errors=True)
        if every is not None and (index + 1) % 25 == 0:
            every(records)  # partial counts survive a run that is stopped
    return records


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def write_doc(records, path: Path, *, seconds: float, load: tuple, runner: str, seed: int) -> None:
    from collections import Counter

    exits = {c: Counter(r["rcs"].get(c) for r in records) for c in COMMANDS}
    kinds = Counter(k for r in records for k in r["kinds"].split("+"))
    seeds = Counter(r["seed"] for r in records)
    failing = [r for r in records if r["problems"]]
    lines = [
        "# Fuzzing the command line",
        "",
        f"`python tools/fuzz.py --cases {len(records)} --seed {seed}` ({runner}): {len(records)} mutated models, "
        f"each run through `optimize` (`--passes fold`), `inspect --json` and `diff SEED MODEL --json`, "
        f"{seconds:.0f} s in all, load average {load[0]:.1f} at the start and {load[1]:.1f} at the end (2 cores).",
        "",
        "A case passes when every command exits 0, 1 or 2 without a traceback or an \"internal error\", within "
        f"{TIMEOUT_S} s, leaves the model file unchanged, and `optimize` writes no output folder when it fails.",
        "",
        f"**Cases failing that: {len(failing)} of {len(records)}.**",
        "",
        "| command | exit 0 | exit 1 | exit 2 | other |",
        "|---|---|---|---|---|",
    ]
    for command in COMMANDS:
        counts = exits[command]
        other = sum(v for k, v in counts.items() if k not in (0, 1, 2))
        lines.append(f"| {command} | {counts.get(0, 0)} | {counts.get(1, 0)} | {counts.get(2, 0)} | {other} |")
    lines += ["", "Mutations applied (a case has one to three): " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) + ".",
              "Seeds: " + ", ".join(f"{k} {v}" for k, v in sorted(seeds.items())) + ".", ""]
    messages = Counter(_kind_of(r["messages"].get("inspect", "")) for r in records)
    lines += ["Most frequent refusals by `inspect` (first words of the message):", ""]
    lines += [f"- {count} x `{text}`" for text, count in messages.most_common(12)]
    if failing:
        lines += ["", "Failing cases:", ""]
        lines += [f"- case {r['index']} ({r['seed']}, {'; '.join(r['notes'])}): {'; '.join(r['problems'])}" for r in failing]
    path.write_text("\n".join(lines) + "\n")


def _kind_of(message: str) -> str:
    if not message.startswith("error:"):
        return "(accepted)" if message else "(no output)"
    text = message.split(": ", 2)[-1] if message.count(": ") >= 2 else message
    return " ".join(text.split()[:6])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exec", action="store_true", help="run `python -m passes` subprocesses instead of forked children")
    parser.add_argument("--keep", type=Path, help="copy failing cases into this folder")
    parser.add_argument("--doc", type=Path, help="write the counts as markdown here")
    args = parser.parse_args()
    import passes.app.cli  # noqa: F401 - imported once here, inherited by every forked child
    import passes.app.commands  # noqa: F401

    load_start = os.getloadavg()[0]
    start = time.monotonic()
    runner_text = "python -m passes subprocesses" if args.exec else "commands forked from one process"

    def document(records) -> None:
        if args.doc:
            write_doc(records, args.doc, seconds=time.monotonic() - start, load=(load_start, os.getloadavg()[0]), runner=runner_text, seed=args.seed)

    with tempfile.TemporaryDirectory(prefix="graphpress-fuzz-") as work:
        records = fuzz(args.cases, args.seed, Path(work), runner=run_exec if args.exec else run_forked, keep=args.keep, every=document)
    failing = sum(1 for r in records if r["problems"])
    print(f"{len(records)} cases, {failing} failing, {time.monotonic() - start:.0f} s")
    document(records)
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
