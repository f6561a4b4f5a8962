"""Fuzzing: mutated model files and argument sets through ``load``, a ``ForwardValueAndGrad`` call
and ``inspect``, in guarded subprocesses.

Each case takes one seed model (the bundled ``models/`` and small inline models), applies a few
seeded mutations (flipped bytes, dropped or duplicated nodes, changed types, shapes, attributes,
names, opsets), writes the file, then loads it, builds ``ForwardValueAndGrad`` over every input
and weight and calls it with (sometimes mutated) arguments. Cases run in batches in worker
processes; a worker that dies is a crash and is restarted, a case past ``--timeout`` is a hang.

Usage::

    python scripts/fuzz.py -n 10000 --start 0 --workers 1 --timeout 30 [--json out.json]

Prints counts: typed (an ``OnnxGradError``), ok (no error), other (any other exception, by class
and message), crash, hang. Exit status 1 when other + crash + hang is not 0. Cases are
reproducible: ``--start K -n 1`` reruns case K (``--inline`` runs it in this process).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Small models written inline: the op families whose validation matters (control flow, functions,
# non-tensor types, losses, shapes).
INLINE_SEEDS = [
    """<ir_version: 8, opset_import: ["": 17]>
    g (float[2, 3] x) => (float y) {
        w = Constant <value = float[3, 2] {1., 2., 3., 4., 5., 6.}> ()
        h = MatMul(x, w)
        r = Relu(h)
        y = ReduceSum(r)
    }""",
    """<ir_version: 8, opset_import: ["": 17]>
    g (float[1, 1, 4, 4] x, float[2, 1, 3, 3] w) => (float[1, 2, 2, 2] y) {
        c = Conv <kernel_shape = [3, 3]> (x, w)
        y = Sigmoid(c)
    }""",
    """<ir_version: 8, opset_import: ["": 17]>
    g (float[3] x) => (float[3] y) {
        m = Constant <value = int64 {3}> ()
        c = Constant <value = bool {1}> ()
        y = Loop(m, c, x) <body = body (int64 i, bool cin, float[3] a) => (bool cout, float[3] b) {
            cout = Identity(cin)
            b = Mul(a, a)
        }>
    }""",
    """<ir_version: 8, opset_import: ["": 17]>
    g (float[2, 3] x) => (float[3] s, float[2, 3] ys) {
        init = Constant <value = float[3] {0., 0., 0.}> ()
        s, ys = Scan <num_scan_inputs = 1, body = body (float[3] acc, float[3] row) => (float[3] out, float[3] row2) {
            out = Add(acc, row)
            row2 = Tanh(row)
        }> (init, x)
    }""",
    """<ir_version: 8, opset_import: ["": 17, "local": 1]>
    g (float[2] x) => (float[2] y) {
        y = local.square(x)
    }
    <domain: "local", opset_import: ["": 17]>
    square (a) => (b) {
        b = Mul(a, a)
    }""",
    """<ir_version: 8, opset_import: ["": 17]>
    g (float[2] x, bool c) => (float[2] y) {
        y = If(c) <then_branch = t () => (float[2] a) { a = Exp(x) },
                   else_branch = e () => (float[2] b) { b = Neg(x) }>
    }""",
    """<ir_version: 8, opset_import: ["": 17]>
    g (float[4, 5] x, int64[4] t) => (float l) {
        l = SoftmaxCrossEntropyLoss <reduction = "mean"> (x, t)
    }""",
    """<ir_version: 8, opset_import: ["": 17]>
    g (float[2, 3] x) => (float[3, 2] y, float[6] z) {
        s = Constant <value = int64[1] {6}> ()
        z = Reshape(x, s)
        y = Transpose <perm = [1, 0]> (x)
    }""",
]

ELEM_TYPES = list(range(0, 24))
OPS = ["Relu", "Add", "MatMul", "Loop", "Scan", "If", "Reshape", "Cast", "Concat", "Gather", "Softmax",
       "Identity", "Sum", "Split", "ConstantOfShape", "Expand", "Tile", "SequenceConstruct", "Unknown"]


def seed_models() -> list[bytes]:
    """The serialized seed models: models/*.onnx, then the inline ones."""
    import onnx
    from onnx import parser

    seeds = [p.read_bytes() for p in sorted((ROOT / "models").glob("*.onnx"))]
    for text in INLINE_SEEDS:
        seeds.append(parser.parse_model(text).SerializeToString())
    for blob in seeds:
        onnx.checker.check_model(onnx.load_from_string(blob))
    return seeds


def _all_graphs(graph):
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _all_graphs(attr.g)
            for g in attr.graphs:
                yield from _all_graphs(g)


def _values(graph):
    return [*graph.input, *graph.output, *graph.value_info]


def _mutate_proto(model, rng: random.Random) -> None:
    """One structural mutation of ``model``, in place."""
    import onnx

    graphs = list(_all_graphs(model.graph))
    graph = rng.choice(graphs)
    nodes = graph.node
    kind = rng.randrange(16)
    if kind == 0 and len(nodes):
        del nodes[rng.randrange(len(nodes))]
    elif kind == 1 and len(nodes):
        nodes.add().CopyFrom(nodes[rng.randrange(len(nodes))])
    elif kind == 2 and _values(graph):
        value = rng.choice(_values(graph))
        what = rng.randrange(5)
        if what == 0:
            value.type.tensor_type.elem_type = rng.choice(ELEM_TYPES)
        elif what == 1:
            value.type.sequence_type.elem_type.tensor_type.elem_type = 1
        elif what == 2:
            value.type.optional_type.elem_type.tensor_type.elem_type = 1
        elif what == 3:
            value.type.map_type.key_type = 7
            value.type.map_type.value_type.tensor_type.elem_type = 1
        else:
            value.type.tensor_type.elem_type = onnx.TensorProto.STRING
    elif kind == 3 and _values(graph):
        value = rng.choice(_values(graph))
        shape = value.type.tensor_type.shape
        choice = rng.randrange(4)
        if choice == 0 and len(shape.dim):
            shape.dim[rng.randrange(len(shape.dim))].dim_value = rng.choice([0, 1, 7, 2**31, 2**40, 2**62])
        elif choice == 1:
            shape.dim.add().dim_value = rng.choice([1, 3, 2**33])
        elif choice == 2 and len(shape.dim):
            del shape.dim[rng.randrange(len(shape.dim))]
        else:
            shape.dim.add().dim_param = rng.choice(["N", "x_grad", ""])
    elif kind == 4 and len(nodes):
        node = rng.choice(nodes)
        if len(node.attribute):
            attr = rng.choice(node.attribute)
            change = rng.randrange(6)
            if change == 0:
                attr.i = rng.choice([-1, 0, 2, 2**40, -(2**62)])
            elif change == 1:
                attr.f = rng.choice([float("nan"), -1.0, 1e30])
            elif change == 2:
                attr.ints.extend([rng.choice([-5, 0, 9, 2**35])])
            elif change == 3:
                attr.name = rng.choice(["axis", "perm", "body", "to", "bogus"])
            elif change == 4:
                attr.type = rng.randrange(15)
            else:
                attr.s = bytes([rng.randrange(256) for _ in range(3)])
        else:
            node.attribute.add().CopyFrom(onnx.helper.make_attribute(rng.choice(["axis", "to", "perm"]), 1))
    elif kind == 5 and len(nodes):
        node = rng.choice(nodes)
        names = [n for nd in nodes for n in [*nd.input, *nd.output]] + [v.name for v in graph.input] + [""]
        if len(node.input) and rng.random() < 0.5:
            node.input[rng.randrange(len(node.input))] = rng.choice(names)
        elif rng.random() < 0.5:
            node.input.append(rng.choice(names))
        elif len(node.output):
            node.output[rng.randrange(len(node.output))] = rng.choice(names + ["y_grad", "onnxgrad/loss"])
    elif kind == 6 and len(nodes):
        rng.choice(nodes).op_type = rng.choice(OPS)
    elif kind == 7:
        # Rename a tensor everywhere, sometimes to one of onnxgrad's internal names.
        values = _values(graph)
        if values:
            old = rng.choice(values).name
            new = rng.choice(["x_grad", "onnxgrad/loss", "onnxgrad/sens_0", "out_grad", old + "_grad", "é/ü"])
            for g in graphs:
                for v in _values(g):
                    if v.name == old:
                        v.name = new
                for nd in g.node:
                    nd.input[:] = [new if n == old else n for n in nd.input]
                    nd.output[:] = [new if n == old else n for n in nd.output]
                for init in g.initializer:
                    if init.name == old:
                        init.name = new
    elif kind == 8 and len(model.opset_import):
        model.opset_import[0].version = rng.choice([1, 7, 13, 16, 18, 21, 22, 23, 24, 25, 99])
    elif kind == 9:
        model.ir_version = rng.choice([0, 3, 7, 9, 10, 11, 12, 99])
    elif kind == 10 and len(graph.initializer):
        init = rng.choice(graph.initializer)
        change = rng.randrange(5)
        if change == 0:
            init.dims.append(rng.choice([2, 2**40]))
        elif change == 1:
            init.data_type = rng.choice(ELEM_TYPES)
        elif change == 2:
            init.raw_data = init.raw_data[: len(init.raw_data) // 2]
        elif change == 3:
            init.ClearField("raw_data")
            ext = init.external_data.add()
            ext.key, ext.value = "location", rng.choice(["data.bin", "link.bin", "../x", "/etc/passwd"])
            init.data_location = onnx.TensorProto.EXTERNAL
        else:
            del init.dims[:]
    elif kind == 11:
        # A Loop trip count or Constant value made absurd.
        for node in nodes:
            for attr in node.attribute:
                if attr.name == "value" and attr.HasField("t") and attr.t.data_type == onnx.TensorProto.INT64:
                    attr.t.CopyFrom(onnx.numpy_helper.from_array(
                        __import__("numpy").array(rng.choice([2**40, -1, 0, 2**62]), dtype="int64")))
                    return
    elif kind == 12 and len(model.functions):
        fn = rng.choice(model.functions)
        if len(fn.node):
            fn.node[rng.randrange(len(fn.node))].op_type = fn.name  # recursion
            fn.node[rng.randrange(len(fn.node))].domain = fn.domain
    elif kind == 13 and len(graph.output) and len(graph.input):
        graph.output.add().CopyFrom(rng.choice(graph.input) if rng.random() < 0.5 else graph.output[0])
    elif kind == 14:
        model.metadata_props.add().key, model.metadata_props[-1].value = (
            rng.choice(["onnxgrad.parameters", "onnxgrad.buffers"]), rng.choice(["{", "[]", '{"a": 1}', "\xff", "null"]))
    elif len(nodes):
        node = rng.choice(nodes)
        node.domain = rng.choice(["", "com.microsoft", "local", "ai.onnx.ml", "bogus"])


def _random_attribute(attr, rng: random.Random):
    import onnx

    kind = attr.type
    A = onnx.defs.OpSchema.AttrType
    if kind == A.INT:
        return rng.choice([-1, 0, 1, 2, 3, 2**31])
    if kind == A.FLOAT:
        return rng.choice([0.0, 0.5, 1.0, -2.0, float("inf")])
    if kind == A.INTS:
        return [rng.choice([-1, 0, 1, 2]) for _ in range(rng.randint(1, 4))]
    if kind == A.FLOATS:
        return [rng.random() for _ in range(rng.randint(1, 3))]
    if kind == A.STRING:
        return rng.choice(["mean", "sum", "none", "linear", "NOTSET", "", "constant"])
    if kind == A.TENSOR:
        import numpy as np

        return onnx.numpy_helper.from_array(np.array(rng.choice([0.0, 1.0, 3.0]), np.float32))
    return None


def single_op_model(rng: random.Random) -> bytes:
    """A model of one random standard op (opset 17), random float/int inputs and attributes."""
    import numpy as np
    import onnx
    from onnx import helper

    schemas = [s for s in onnx.defs.get_all_schemas() if s.domain == "" and not s.deprecated
               and s.since_version <= 17 and s.name not in ("Loop", "Scan", "If")]
    schema = rng.choice(sorted(schemas, key=lambda s: s.name))
    inputs, inits, names = [], [], []
    count = len(schema.inputs) if rng.random() < 0.7 else rng.randint(schema.min_input, max(schema.min_input, min(schema.max_input, 6)))
    for k in range(count):
        name = f"i{k}"
        shape = [rng.randint(1, 4) for _ in range(rng.randint(0, 4))]
        if rng.random() < 0.6:
            inputs.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape))
        else:
            values = np.array([rng.randint(-2, 4) for _ in range(int(np.prod(shape)))], np.int64).reshape(shape)
            inits.append(onnx.numpy_helper.from_array(values, name))
        names.append(name)
    attrs = {}
    for name, attr in schema.attributes.items():
        if attr.required or rng.random() < 0.3:
            value = _random_attribute(attr, rng)
            if value is not None:
                attrs[name] = value
    outs = [f"o{k}" for k in range(max(1, min(len(schema.outputs), 3)))]
    node = helper.make_node(schema.name, names, outs, **attrs)
    graph = helper.make_graph([node], "single", inputs, [], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    # Outputs typed as shape inference has them (a guess where it cannot tell), so more cases reach ORT.
    # ONNX's inference segfaults on some ill-typed models: infer only what onnxgrad's checks let
    # through (a crash here is then one onnxgrad's own inference would have).
    from onnxgrad import OnnxGradError, _validate

    inferred = {}
    try:
        _validate.validate(model)
        inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    except (OnnxGradError, onnx.shape_inference.InferenceError, RuntimeError):
        pass
    for o in outs:
        guess = helper.make_tensor_value_info(o, rng.choice([onnx.TensorProto.FLOAT, onnx.TensorProto.INT64]), [])
        graph.output.append(inferred.get(o, guess))
    return model.SerializeToString()


def make_case(seeds: list[bytes], case: int) -> tuple[bytes, random.Random]:
    """The mutant for case number ``case``, and the RNG its arguments are drawn from."""
    rng = random.Random(case)
    return make_mutant(seeds, rng), rng


def make_mutant(seeds: list[bytes], rng: random.Random) -> bytes:
    """A mutated seed (or a one-op model), every choice drawn from ``rng``."""
    import onnx

    if rng.random() < 0.3:
        return single_op_model(rng)
    blob = seeds[rng.randrange(len(seeds))]
    if rng.random() < 0.15:
        data = bytearray(blob)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    # Half the mutants are redrawn (a few times) until onnx.checker accepts them, so that the cases
    # reach onnxgrad's own checks, the builder and ONNX Runtime instead of stopping at the checker.
    tries = 5 if rng.random() < 0.5 else 1
    for _ in range(tries):
        model = onnx.load_from_string(blob)
        for _ in range(rng.randint(1, 3)):
            _mutate_proto(model, rng)
        try:
            onnx.checker.check_model(model)
            break
        except Exception:
            continue
    return model.SerializeToString()


def _arguments(net, rng: random.Random) -> list:
    import numpy as np

    args = []
    for info in net.inputs:
        shape = [d if isinstance(d, int) and 0 < d < 64 else 2 for d in (info.shape or [])]
        dtype = info.dtype if info.dtype is not None else np.float32
        try:
            arr = np.asarray(np.random.default_rng(rng.randrange(2**32)).standard_normal(shape)).astype(dtype)
        except (TypeError, ValueError):
            arr = np.zeros(shape, np.float32)
        if np.issubdtype(arr.dtype, np.integer):
            arr = np.abs(arr) % 3
        args.append(arr)
    if args and rng.random() < 0.2:
        k = rng.randrange(len(args))
        args[k] = rng.choice(["text", {"a": 1}, [[1.0], [1.0, 2.0]], np.zeros([0, 3], np.float32), None,
                              np.zeros([2] * 3, np.float64), 2.0])
    return args


def run_case(path: str, rng: random.Random) -> None:
    """Loads ``path``, inspects it and calls ForwardValueAndGrad over every input and weight."""
    import onnxgrad
    from onnxgrad import _inspect

    net = onnxgrad.load(path)
    if rng.random() < 0.3:
        _inspect.inspect_model(path)
    args = _arguments(net, rng)
    weights = onnxgrad.ParameterTuple(net.trainable_params())
    fn = onnxgrad.ForwardValueAndGrad(net, weights, get_all=True, get_by_list=bool(weights))
    fn(*args)


def classify(path: str, rng: random.Random) -> dict:
    """Runs one case in this process; returns ``{"kind": ..., "detail": ...}``."""
    import onnxgrad

    try:
        run_case(path, rng)
    except onnxgrad.OnnxGradError as err:
        return {"kind": "typed", "detail": f"{type(err).__name__}: {str(err)[:60]}"}
    except Exception as err:  # what the fuzzer is for: anything else is a finding
        tb = traceback.extract_tb(err.__traceback__)
        ours = [f for f in tb if "onnxgrad" in f.filename and "fuzz" not in f.filename]
        frame = (ours or tb)[-1] if tb else None
        where = f"{Path(frame.filename).name}:{frame.lineno}" if frame else ""
        return {"kind": "other", "detail": f"{type(err).__name__} at {where}: {str(err)[:160]}"}
    return {"kind": "ok", "detail": ""}


def _worker() -> None:
    """Reads case numbers from stdin, prints one JSON result per line."""
    import resource

    limit = int(os.environ.get("ONNXGRAD_FUZZ_MEMORY", str(4 << 30)))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    seeds = seed_models()
    workdir = tempfile.mkdtemp(prefix="onnxgrad-fuzz-")
    (Path(workdir) / "data.bin").write_bytes(b"\0" * 64)
    link = Path(workdir) / "link.bin"
    if not link.exists():
        link.symlink_to("/etc/hostname")
    for line in sys.stdin:
        case = int(line)
        blob, rng = make_case(seeds, case)
        path = os.path.join(workdir, "m.onnx")
        with open(path, "wb") as f:
            f.write(blob)
        result = classify(path, rng)
        result["case"] = case
        print(json.dumps(result), flush=True)


def run(cases: list[int], timeout: float) -> list[dict]:
    """Runs ``cases`` in a worker subprocess, restarting it after a crash or a hang."""
    results: list[dict] = []
    env = dict(os.environ)
    env.setdefault("ONNXGRAD_CACHE_DIR", tempfile.mkdtemp(prefix="onnxgrad-fuzz-cache-"))
    todo = list(cases)
    while todo:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, env=env,
        )
        try:
            while todo:
                case = todo[0]
                proc.stdin.write(f"{case}\n")
                proc.stdin.flush()
                line = _readline(proc, timeout)
                if line is None:
                    results.append({"case": case, "kind": "hang", "detail": f"no result in {timeout:g} s"})
                    todo.pop(0)
                    break
                if not line:
                    results.append({"case": case, "kind": "crash", "detail": f"worker exit {proc.wait()}"})
                    todo.pop(0)
                    break
                results.append(json.loads(line))
                todo.pop(0)
        except BrokenPipeError:
            results.append({"case": todo.pop(0), "kind": "crash", "detail": "worker died"})
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    return results


def _readline(proc: subprocess.Popen, timeout: float) -> str | None:
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    if not sel.select(timeout):
        return None
    return proc.stdout.readline()


def summarize(results: list[dict]) -> dict:
    """Counts by kind, and the distinct findings (other/crash/hang) with their first case."""
    counts = {"typed": 0, "ok": 0, "other": 0, "crash": 0, "hang": 0}
    findings: dict[str, list[int]] = {}
    for r in results:
        counts[r["kind"]] += 1
        if r["kind"] in ("other", "crash", "hang"):
            findings.setdefault(f"{r['kind']}: {r['detail']}", []).append(r["case"])
    return {"counts": counts, "findings": {k: v[:5] for k, v in sorted(findings.items())}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="number of cases")
    parser.add_argument("--start", type=int, default=0, help="first case number")
    parser.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per case before it counts as a hang")
    parser.add_argument("--json", help="write every result to this file")
    parser.add_argument("--inline", action="store_true", help="run the cases in this process (to debug one)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker()
        return 0
    cases = list(range(args.start, args.start + args.n))
    start = time.time()
    if args.inline:
        seeds = seed_models()
        with tempfile.TemporaryDirectory() as tmp:
            results = []
            for case in cases:
                blob, rng = make_case(seeds, case)
                path = os.path.join(tmp, "m.onnx")
                Path(path).write_bytes(blob)
                results.append({"case": case, **classify(path, rng)})
    else:
        from concurrent.futures import ThreadPoolExecutor

        chunks = [cases[k :: args.workers] for k in range(args.workers)]
        with ThreadPoolExecutor(args.workers) as pool:
            results = [r for part in pool.map(lambda c: run(c, args.timeout), chunks) for r in part]
    summary = summarize(results)
    summary["seconds"] = round(time.time() - start, 1)
    summary["cases"] = f"{args.start}..{args.start + args.n - 1}"
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results))
    c = summary["counts"]
    return 1 if c["other"] + c["crash"] + c["hang"] else 0


if __name__ == "__main__":
    sys.exit(main())
