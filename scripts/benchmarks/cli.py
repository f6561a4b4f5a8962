"""The command line: ``python -m scripts.benchmarks [options]`` (see the package docstring)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import tempfile
import time

from scripts import benchmarks
from scripts.benchmarks import models
from scripts.benchmarks.common import CALLER_THREADS, FULL, QUICK, WORKERS, log, parse_names
from scripts.benchmarks.parent import run_all
from scripts.benchmarks.real import real_main
from scripts.benchmarks.report import machine, tables
from scripts.benchmarks.worker import worker_main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=benchmarks.__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run: few, short rounds")
    parser.add_argument("--models", help="comma-separated: tiny,mlp,lenet,block (default all); with --real: "
                        f"{','.join(models.REAL_MODELS)}")
    parser.add_argument("--real", action="store_true",
                        help="the real architectures (transformers, random weights; needs the 'bench' extra): "
                        "the module route and the ONNX file route against PyTorch eager")
    parser.add_argument("--systems", default=",".join(WORKERS), help=f"comma-separated: {','.join(WORKERS)}")
    parser.add_argument("--json", metavar="PATH", help="write the full report (all samples) as JSON")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 15, --quick 3)")
    parser.add_argument("--batch-seconds", type=float, help="target seconds per timed batch (default 0.2)")
    parser.add_argument("--threads", type=int, help="threads per system (default 2)")
    parser.add_argument("--caller-threads", type=int,
                        help=f"threads sharing one ForwardValueAndGrad in the onnxgrad_threads column "
                        f"(default {CALLER_THREADS}; 1 drops the column)")
    parser.add_argument("--check-only", action="store_true", help="cross-check the systems, time nothing")
    parser.add_argument("--no-gemm", action="store_true", help="skip ORT's GEMM measurement")
    parser.add_argument(
        "--plain-python", metavar="PYTHON", default=os.environ.get("ONNXGRAD_BENCH_PLAIN_PYTHON"),
        help="the Python of the onnxgrad_plain worker: plain onnxruntime and onnxgrad installed "
        "(default: $ONNXGRAD_BENCH_PLAIN_PYTHON)",
    )
    # Worker mode (internal).
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--results", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.threads or 2, args.results or tempfile.gettempdir(),
                           args.caller_threads or CALLER_THREADS)

    names = [] if args.real else parse_names(args.models or ",".join(models.MODELS), list(models.MODELS), "models")
    systems = parse_names(args.systems, list(WORKERS), "systems")
    settings = QUICK if args.quick else FULL
    overrides = {k: v for k, v in {"rounds": args.rounds, "batch_seconds": args.batch_seconds,
                                   "threads": args.threads, "plain_python": args.plain_python,
                                   "caller_threads": args.caller_threads}.items()
                 if v is not None}
    if args.check_only:  # first calls only
        overrides.update(warmup_seconds=0.0, warmup_calls=0)
    settings = dataclasses.replace(settings, **overrides)
    if args.real:
        return real_main(args, settings)
    started = time.perf_counter()
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    gemm = "ort" in systems and not args.check_only and not args.no_gemm
    report, all_ok = run_all(names, systems, settings, args.check_only, gemm)
    report = {"machine": machine(), "settings": dataclasses.asdict(settings), **report}
    report["loadavg"] = {"before": load_before, "after": os.getloadavg() if load_before else None}
    report["elapsed_s"] = time.perf_counter() - started
    if args.check_only:
        for model, entry in report["models"].items():
            for system, sys_record in entry["systems"].items():
                status = sys_record.get("check") or sys_record.get("skip") or sys_record.get("error")
                if isinstance(status, list):
                    status = "MISMATCH: " + "; ".join(status)
                print(f"{model:6s} {system:12s} {status}")
    else:
        print(tables(report, systems))
        print(f"\n({report['machine'].get('cpu')}, {os.cpu_count()} CPUs, {settings.threads} threads per system; "
              f"run took {report['elapsed_s']:.0f} s)")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=1))
        log(f"wrote {args.json}")
    return 0 if all_ok else 1
