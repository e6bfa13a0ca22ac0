"""Structured attention: a sliding window and packed documents, memory and time.

Every call is `keras_attn.ops.dot_product_attention` on raw q, k, v (batch 1,
8 heads x 64, float32), causal, with `sliding_window=W` or with `segment_ids` of
documents of random (seeded) lengths, `T // W` of them (mean length W). A
training step is the gradients of `sum(output)` with respect to q, k and v
(`_attention_steps.py`: `jax.jit`, `tf.function`, eager torch).

- Memory: peak resident memory (VmHWM) of a child process running a forward
  pass at the long length and a training step at the training length, for each
  pattern, on the automatic choice; target: under 2 GiB. Children are killed
  above 4 GiB.
- Time, interleaved rounds in one child per comparison: the window's training
  step against plain causal attention on the chunked path (target >= 5x); the
  window's forward at 4x the length (linear cost, target ratio <= 4.5); the
  packed row's training step against `keras.ops.dot_product_attention` with the
  dense causal block-diagonal mask (target >= 5x); on torch, forward passes
  against FlexAttention, compiled and eager, with the same masks. A comparison
  whose other contender passes the 6 GiB cap (or runs out of memory) is
  measured again at half the length, until it fits.
"""

import json
import os
import sys
import time

TARGET_GIB = 2.0
MEMORY_CAP_GIB = 4.0
TIMING_CAP_GIB = 6.0
_OUT_OF_MEMORY = ("RESOURCE_EXHAUSTED", "out of memory", "MemoryError", "OOM")


def _settings(quick):
    if quick:
        return dict(window=256, train_length=2048, forward_length=4096, min_length=512)
    return dict(window=1024, train_length=16384, forward_length=65536, min_length=1024)


def _spec(label, pattern, mode, length, api="keras_attn", implementation=None):
    return dict(
        label=label,
        api=api,
        pattern=pattern,
        mode=mode,
        length=length,
        implementation=implementation,
    )


def _memory_configs(s):
    return [
        _spec(f"{pattern} {mode}", pattern, mode, length)
        for mode, length in (
            ("forward", s["forward_length"]),
            ("train", s["train_length"]),
        )
        for pattern in ("documents", "window")
    ]


def _timing_groups(s):
    train, long = s["train_length"], s["forward_length"]
    short = long // 4
    groups = [
        dict(
            name="window vs causal, chunked training step",
            contenders=[
                _spec("causal", "causal", "train", train, implementation="chunked"),
                _spec("window", "window", "train", train, implementation="chunked"),
            ],
            ratio=("causal", "window"),
            target=("at least", 5.0),
        ),
        dict(
            name="window forward, linear cost",
            contenders=[
                _spec(f"{n:,} tokens", "window", "forward", n, implementation="chunked")
                for n in (short, long)
            ],
            ratio=(f"{long:,} tokens", f"{short:,} tokens"),
            target=("at most", 4.5),
        ),
        dict(
            name="documents vs keras dense mask, training step",
            # The other contender first: one that passes the cap dies before
            # ours has spent its time.
            contenders=[
                _spec("keras dense mask", "documents", "train", train, "keras_dense"),
                _spec("keras_attn", "documents", "train", train),
            ],
            ratio=("keras dense mask", "keras_attn"),
            target=("at least", 5.0),
            fallback=True,
        ),
    ]
    if os.environ.get("KERAS_BACKEND") == "torch":
        for pattern in ("window", "documents"):
            for flex in ("flex_compiled", "flex_eager"):
                groups.append(
                    dict(
                        name=f"{pattern} vs {flex}, forward",
                        contenders=[
                            _spec(flex, pattern, "forward", train, flex),
                            _spec("keras_attn", pattern, "forward", train),
                        ],
                        ratio=(flex, "keras_attn"),
                        fallback=flex == "flex_eager",  # it builds the (T, S) scores
                        probe=flex if pattern == "window" else None,
                    )
                )
    return groups


def run(quick=False, rounds=None):
    s = _settings(quick)
    rounds = rounds or (2 if quick else 5)
    memory = []
    for spec in _memory_configs(s):
        config = dict(kind="memory", window=s["window"], spec=spec)
        report = _child(config, MEMORY_CAP_GIB, 180 if quick else 900)
        report.pop("seconds")
        report.update(
            spec=spec,
            under_target=report["status"] == "ok"
            and report["peak_rss_gib"] < TARGET_GIB,
        )
        memory.append(report)
        _log({**spec, "status": report["status"], "gib": report["peak_rss_gib"]})
    timing = [
        _time_group(group, rounds, s, 300 if quick else 1800)
        for group in _timing_groups(s)
    ]
    return {
        "case": "structured_attention",
        "settings": s,
        "rounds": rounds,
        "target_gib": TARGET_GIB,
        "memory_cap_gib": MEMORY_CAP_GIB,
        "timing_cap_gib": TIMING_CAP_GIB,
        "memory": memory,
        "timing": timing,
    }


def _child(config, cap_gib, timeout):
    from benchmarks import _memory

    return _memory.run_child(
        "benchmarks.structured_attention",
        config,
        cap_bytes=cap_gib * _memory.GIB,
        timeout=timeout,
        env=dict(os.environ),
    )


def _time_group(group, rounds, s, timeout):
    """Time a comparison, halving its lengths while the other contender does not fit."""
    attempts, divisor = [], 1
    while True:
        contenders = [
            {**c, "length": c["length"] // divisor} for c in group["contenders"]
        ]
        config = dict(
            kind="timing",
            window=s["window"],
            rounds=rounds,
            contenders=contenders,
            fallback=bool(group.get("fallback")),
            probe=group.get("probe"),
        )
        report = _child(config, TIMING_CAP_GIB, timeout)
        result = report.get("result") or {}
        attempts.append(
            dict(
                length=max(c["length"] for c in contenders),
                status=report["status"],
                peak_rss_gib=report["peak_rss_gib"],
                failures=result.get("failures", {}),
                stderr_tail=report.get("stderr_tail", "")[-600:],
            )
        )
        _log({"group": group["name"], **attempts[-1]})
        too_big = report["status"] == "over_cap" or _mentions_memory(report, result)
        shorter = attempts[-1]["length"] // 2
        if not (group.get("fallback") and too_big and shorter >= s["min_length"]):
            break
        divisor *= 2
    return _summarise(group, attempts, result)


def _mentions_memory(report, result):
    text = report.get("stderr_tail", "") + " ".join(result.get("failures", {}).values())
    return any(marker.lower() in text.lower() for marker in _OUT_OF_MEMORY)


def _summarise(group, attempts, result):
    from benchmarks import _timing

    seconds = result.get("seconds", {})
    out = dict(
        name=group["name"],
        requested_length=max(c["length"] for c in group["contenders"]),
        measured_length=attempts[-1]["length"] if seconds else None,
        attempts=attempts,
        seconds={name: _timing.summary(v) for name, v in seconds.items()},
        first_call_seconds=result.get("first_call_seconds", {}),
        paths=result.get("paths", {}),
        target=group.get("target"),
    )
    if "flex_training" in result:
        out["flex_training"] = result["flex_training"]
    numerator, denominator = group["ratio"]
    if numerator in seconds and denominator in seconds:
        ratio = _timing.ratio_summary(seconds[numerator], seconds[denominator])
        out["ratio"] = dict(of=f"{numerator} / {denominator}", **ratio)
        if out["target"]:
            kind, bound = out["target"]
            median = ratio["median"]
            out["met"] = median >= bound if kind == "at least" else median <= bound
    return out


def _log(record):
    print(json.dumps(record), file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the children


def _one(config):
    from benchmarks import _memory

    paths = _spy_paths()
    if config["kind"] == "memory":
        spec = config["spec"]
        step = _contender(spec, config["window"])
        times = []
        for _ in range(2):  # the first compiles (JAX, TensorFlow); the second is timed
            wall, cpu = time.perf_counter(), time.process_time()
            step()
            times.append((time.perf_counter() - wall, time.process_time() - cpu))
        result = dict(
            first_step_seconds=times[0][0],
            step_seconds=times[1][0],
            step_cpu_seconds=times[1][1],
            paths=sorted(paths),
        )
    else:
        result = _timing_one(config)
    result.update(
        peak_rss_gib=_memory.own_peak_gib(),
        loadavg=list(os.getloadavg()),
    )
    return result


def _timing_one(config):
    from benchmarks import _attention_steps
    from benchmarks import _timing

    calls, failures, first, paths = {}, {}, {}, {}
    for spec in config["contenders"]:
        label = spec["label"]
        taken = _spy_paths()
        try:
            call = _contender(spec, config["window"])
            start = time.perf_counter()
            call()  # the warm-up: tracing and compilation
            first[label] = time.perf_counter() - start
        except Exception as error:  # noqa: BLE001 - the other contender's failure is data
            if spec["api"] == "keras_attn":
                raise
            failures[label] = f"{type(error).__name__}: {str(error)[:300]}"
            continue
        calls[label], paths[label] = call, sorted(taken)
    result = dict(failures=failures, first_call_seconds=first, paths=paths)
    if config["fallback"] and _mentions_memory({}, result):
        return dict(result, seconds={})  # to be measured again, shorter
    result["seconds"] = _timing.interleave(calls, config["rounds"], warmup=0)
    if config.get("probe"):
        # After the rounds: another shape would make torch.compile recompile.
        compiled = config["probe"] == "flex_compiled"
        result["flex_training"] = _attention_steps.flex_training_probe(compiled)
    return result


def _contender(spec, window):
    """A callable running one forward pass or training step of `spec`."""
    import keras

    from benchmarks import _attention_steps as steps
    from keras_attn.ops import dot_product_attention

    length, pattern, api = spec["length"], spec["pattern"], spec["api"]
    arrays, extras = steps.qkv(length), []
    if pattern == "documents":
        ids, _ = steps.document_ids(length, max(length // window, 1))
    if api == "keras_attn":
        options = dict(is_causal=True, implementation=spec["implementation"])
        if pattern == "window":
            options["sliding_window"] = window
        if pattern == "documents":
            extras = [ids]

        def fn(q, k, v, *segment_ids):
            given = dict(segment_ids=segment_ids[0]) if segment_ids else {}
            return dot_product_attention(q, k, v, **options, **given)
    elif api == "keras_dense":
        extras = [steps.dense_document_mask(ids)]

        def fn(q, k, v, mask):
            return keras.ops.dot_product_attention(q, k, v, mask=mask)
    else:
        fn = steps.flex_attention(
            pattern,
            length,
            window,
            ids if pattern == "documents" else None,
            compiled=api == "flex_compiled",
        )
    if spec["mode"] == "train":
        return steps.training_step(fn, arrays, extras)
    return steps.forward_step(fn, arrays + extras)


def _spy_paths():
    """The set of keras_attn paths (fused, chunked, math) the calls traced take."""
    from keras_attn.ops import _compiled
    from keras_attn.ops import attention

    taken = set()
    for module, name, label in (
        (attention, "fused_attention", "fused"),
        (_compiled, "chunked_attention", "chunked"),
        (attention, "math_attention", "math"),
    ):
        original = getattr(module, name)
        original = getattr(original, "_spied", original)

        def spy(*args, _original=original, _label=label, **kwargs):
            taken.add(_label)
            return _original(*args, **kwargs)

        spy._spied = original
        setattr(module, name, spy)
    return taken


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(_one(json.loads(sys.argv[2]))), flush=True)
    else:
        from benchmarks._structured_report import write_markdown_beside
        from benchmarks._timing import case_main

        case_main(run)
        write_markdown_beside(sys.argv[1:])
