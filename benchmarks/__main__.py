"""`python -m benchmarks`: run the cases on each backend, write JSON and Markdown.

Each (backend, case) runs in its own child process with `KERAS_BACKEND` set, one
at a time. Children get `OMP_WAIT_POLICY=PASSIVE`: on a shared, loaded machine
torch's spinning OpenMP threads were measured 2-10x slower.
"""

import argparse
import json
import os
import subprocess
import sys
import time

from benchmarks import _report
from benchmarks._timing import loadavg

BACKENDS = ("tensorflow", "jax", "torch")
CASES = (
    "encoder_training",
    "vit_inference",
    "long_sequence",
    "cached_decoding",
    "structured_attention",
    "ring_decoding",
    "packed_training",
    "callback_overhead",
)


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--backend",
        default="all",
        help="comma-separated backends, or 'all' (default): " + ",".join(BACKENDS),
    )
    parser.add_argument(
        "--cases", default="all", help="comma-separated cases: " + ",".join(CASES)
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, 2 rounds: a smoke run"
    )
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds")
    parser.add_argument("--output-dir", default="benchmark-results")
    parser.add_argument(
        "--timeout", type=int, default=900, help="seconds per (backend, case)"
    )
    args = parser.parse_args(argv)
    args.backends = _choose(args.backend, BACKENDS, "--backend")
    args.case_list = _choose(args.cases, CASES, "--cases")
    return args


def _choose(value, allowed, flag):
    chosen = list(allowed) if value == "all" else value.split(",")
    unknown = [v for v in chosen if v not in allowed]
    if unknown:
        raise SystemExit(f"{flag}: unknown {unknown}; expected some of {allowed}")
    return chosen


def _run_case(backend, case, args, log):
    out = os.path.join(args.output_dir, f"{backend}-{case}.json")
    argv = [sys.executable, "-m", f"benchmarks.{case}", "--json-out", out]
    if args.quick:
        argv.append("--quick")
    if args.rounds:
        argv += ["--rounds", str(args.rounds)]
    env = dict(
        os.environ,
        KERAS_BACKEND=backend,
        OMP_WAIT_POLICY="PASSIVE",
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    started = time.time()
    try:
        completed = subprocess.run(
            argv, env=env, stdout=log, stderr=log, timeout=args.timeout
        )
        status = "ok" if completed.returncode == 0 else "error"
    except subprocess.TimeoutExpired:
        status = "timeout"
    seconds = time.time() - started
    print(f"{backend:10} {case:18} {status:7} {seconds:6.1f} s", flush=True)
    if status != "ok" or not os.path.exists(out):
        return {"case": case, "status": status, "wall_seconds": seconds}
    with open(out) as f:
        return json.load(f)


def main(argv=None):
    args = _parse(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    results = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "quick": args.quick,
        "loadavg_start": loadavg(),
        "results": {},
    }
    with open(os.path.join(args.output_dir, "log.txt"), "w") as log:
        for backend in args.backends:
            results["results"][backend] = {
                case: _run_case(backend, case, args, log) for case in args.case_list
            }
    results["loadavg_end"] = loadavg()
    json_path = os.path.join(args.output_dir, "results.json")
    with open(json_path, "w") as f:
        json.dump(results, f, indent=1)
    md_path = os.path.join(args.output_dir, "results.md")
    with open(md_path, "w") as f:
        f.write(_report.markdown(results))
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
