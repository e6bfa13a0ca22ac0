"""Interleaved timing, summaries and the machine description shared by every case."""

import json
import os
import platform
import statistics
import sys
import time


def interleave(contenders, rounds, warmup=1):
    """Time each contender once per round, rotating the order every round.

    Args:
        contenders: dict name -> callable returning elapsed seconds (or None to
            time the call itself).
        rounds: timed rounds.
        warmup: untimed calls per contender first (compilation, caches).

    Returns:
        dict name -> list of seconds, one per round.
    """
    names = list(contenders)
    for name in names:
        for _ in range(warmup):
            _timed(contenders[name])
    times = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(_timed(contenders[name]))
    return times


def _timed(fn):
    start = time.perf_counter()
    elapsed = fn()
    return elapsed if elapsed is not None else time.perf_counter() - start


def summary(values):
    """Median, min, max and the raw values of a list of numbers."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": list(values),
    }


def rate_summary(seconds, work):
    """`work / seconds` per round, summarised (e.g. tokens/s)."""
    return summary([work / s for s in seconds])


def ratio_summary(numerator, denominator):
    """Per-round ratios of two equally long lists, summarised."""
    return summary([a / b for a, b in zip(numerator, denominator)])


def loadavg():
    return list(os.getloadavg())


def environment():
    """The machine and software a result was measured on."""
    import keras

    info = {
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    backend = info["backend"]
    if backend == "torch":
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    elif backend == "jax":
        import jax

        info["jax"] = jax.__version__
    else:
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
    return info


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def case_main(run, argv=None):
    """Entry point of a case module run as a child: writes its result as JSON."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--json-out", required=True)
    args = parser.parse_args(argv)
    start_load = loadavg()
    started = time.time()
    result = run(quick=args.quick, rounds=args.rounds)
    result.update(
        environment=environment(),
        loadavg_start=start_load,
        loadavg_end=loadavg(),
        wall_seconds=time.time() - started,
        quick=args.quick,
    )
    with open(args.json_out, "w") as f:
        json.dump(result, f, indent=1)
