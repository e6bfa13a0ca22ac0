"""Markdown tables from the results of `python -m benchmarks`."""


def markdown(results):
    lines = [
        f"Run started {results['started']}; load average (1, 5, 15 min) "
        f"{_load(results['loadavg_start'])} at the start, "
        f"{_load(results.get('loadavg_end'))} at the end"
        + (" (`--quick`: smoke sizes, not the targets)." if results["quick"] else "."),
        "",
        "Figures are medians over interleaved rounds with [min, max].",
        "",
    ]
    for backend, cases in results["results"].items():
        lines += [f"## {backend}", ""]
        first = next(iter(cases.values()), {})
        if "environment" in first:
            env = first["environment"]
            lines += [
                f"{env['processor']}, {env['affinity']} cores usable; keras "
                f"{env['keras']}, {backend} {env.get(backend, '')}; "
                f"OMP_WAIT_POLICY={env['omp_wait_policy']}.",
                "",
            ]
        for case, result in cases.items():
            writer = _WRITERS.get(case)
            if result.get("status") in ("error", "timeout"):
                lines += [f"### {case}", "", f"**{result['status']}**", ""]
            elif writer:
                lines += writer(result) + [
                    f"Load average {_load(result['loadavg_start'])} -> "
                    f"{_load(result['loadavg_end'])}; "
                    f"{result['wall_seconds']:.0f} s.",
                    "",
                ]
    return "\n".join(lines) + "\n"


def _load(values):
    return "n/a" if values is None else ", ".join(f"{v:.1f}" for v in values)


def summary_text(s, digits=0, scale=1.0):
    """`median [min, max]` of a `_timing.summary`, with thousands separators."""
    f = f"{{:,.{digits}f}}"
    return (
        f"{f.format(s['median'] * scale)} "
        f"[{f.format(s['min'] * scale)}, {f.format(s['max'] * scale)}]"
    )


def table(header, rows):
    """Markdown table lines (and a blank line after)."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out + [""]


def _encoder(r):
    fraction = r["fraction_of_blas_peak"]
    share = r.get("step_gemm_share", {})
    rows = [
        [
            name,
            summary_text(tps),
            summary_text(fraction[name], 2),
            summary_text(share[name], 2) if name in share else "",
            summary_text(r["inference_ms"][name], 1)
            if name in r["inference_ms"]
            else "",
        ]
        for name, tps in r["tokens_per_second"].items()
    ]
    rows.append(["BLAS peak (GFLOP/s)", summary_text(r["blas_gflops"]), "1", "", ""])
    if "step_gemm_ms" in r:
        rows.append(
            ["step GEMMs alone (ms)", summary_text(r["step_gemm_ms"], 1), "", "1", ""]
        )
    out = [
        "### Encoder training and inference (batch 8 x 256, width 256)",
        "",
    ]
    out += table(
        [
            "contender",
            "training tokens/s",
            "fraction of BLAS peak",
            "GEMM share of step",
            "inference ms",
        ],
        rows,
    )
    ratios = [
        [
            n,
            summary_text(s, 2),
            summary_text(r["inference_speedup_vs_faster_anchor"][n], 2),
        ]
        for n, s in r["train_speedup_vs_faster_anchor"].items()
    ]
    out += table(
        ["ours", "training vs faster Keras anchor", "inference vs faster anchor"],
        ratios,
    )
    if "train_speedup_vs_torch_loop" in r:
        out += table(
            ["ours", "training vs plain torch loop"],
            [
                [n, summary_text(s, 2)]
                for n, s in r["train_speedup_vs_torch_loop"].items()
            ],
        )
    return out


def _vit(r):
    rows = []
    for batch, contenders in r["latency_ms"].items():
        for name, s in contenders.items():
            rows.append([batch, name, summary_text(s, 1)])
        rows.append(
            [
                batch,
                "speed-up vs keras_hub",
                summary_text(r["speedup_vs_keras_hub"][batch], 2),
            ]
        )
    return ["### ViT-S/16 forward, 224 x 224", ""] + table(
        ["batch", "contender", "latency ms"], rows
    )


def _long(r):
    rows = []
    for m in r["measurements"]:
        c, res = m["config"], m.get("result") or {}
        step = res.get("step_seconds")
        rows.append(
            [
                c["mode"],
                f"{c['length']:,}",
                c["layer"],
                c["implementation"] or "auto",
                m["status"],
                f"{m['peak_rss_gib']:.2f}" if m["peak_rss_gib"] else "",
                _first_step(res),
                f"{step:.1f}" if step else "",
                f"{res['step_cpu_seconds']:.1f}" if step else "",
            ]
        )
    return [
        "### Long-sequence causal self-attention (batch 1, 8 heads x 64)",
        "",
    ] + table(
        [
            "mode",
            "length",
            "layer",
            "path",
            "status",
            "peak RSS GiB",
            "first step s (compiling)",
            "step s",
            "CPU s",
        ],
        rows,
    )


def _first_step(res):
    """The first step's wall seconds where a second one was timed after it."""
    first = res.get("first_step_seconds")
    return "" if first is None or first == res.get("step_seconds") else f"{first:.1f}"


def _decoding(r):
    s = r["settings"]
    out = [
        f"### Greedy decoding of {r['generated_tokens']} tokens, {s['num_layers']} "
        f"layers, width {s['width']}",
        "",
    ]
    out += table(
        ["contender", "seconds"],
        [[n, summary_text(t, 2)] for n, t in r["seconds"].items()],
    )
    if "speedup_of_generate" not in r:  # results before `generate` was compiled
        return out
    ratios = [
        [f"vs {name}", summary_text(ratio, 2)]
        for name, ratio in r["speedup_of_generate"].items()
    ]
    out += table(["speed-up of keras_attn generate", "ratio"], ratios)
    c = r["compile"]
    return out + [
        f"First call of a new model {c['first_call_s']:.2f} s, second call "
        f"{c['second_call_s']:.2f} s, median call {c['median_call_s']:.2f} s.",
        "",
    ]


def _structured(r):
    from benchmarks._structured_report import markdown as structured_markdown

    return list(structured_markdown(r))


def _ring(r):
    s = r["settings"]
    early, late = r["steps_window_to_2window_s"], r["last_window_steps_s"]
    bytes_ = ", ".join(
        f"{v / 2**10:.0f} KiB after step {k}"
        for k, v in r["cache_bytes_after_step"].items()
    )
    title = (
        f"### ring_decoding: {s['tokens']} tokens, window {s['window']}, "
        f"{s['num_layers']} layers of width {s['width']}"
    )
    rows = [
        [f"{s['window']}..{2 * s['window']}", summary_text(early, 2, 1e3)],
        [f"last {s['window']}", summary_text(late, 2, 1e3)],
    ]
    return (
        [title, ""]
        + table(["steps", "ms per step"], rows)
        + [
            f"Last / early median: **{r['late_over_early']:.2f}** (target <= 1.2). "
            f"Cache: {bytes_}. Tokens equal the uncached windowed forward at "
            f"{r['positions_agreeing']} of {r['positions']} positions. "
            f"{r['tokens_per_s']:.0f} tokens/s; first (compiling) step "
            f"{r['first_step_s']:.2f} s.",
            "",
        ]
    )


def _packed(r):
    from benchmarks.packed_training import markdown as packed_markdown

    return list(packed_markdown(r))


def _callback(r):
    from benchmarks.callback_overhead import markdown as callback_markdown

    return list(callback_markdown(r))


_WRITERS = {
    "encoder_training": _encoder,
    "vit_inference": _vit,
    "long_sequence": _long,
    "cached_decoding": _decoding,
    "structured_attention": _structured,
    "ring_decoding": _ring,
    "packed_training": _packed,
    "callback_overhead": _callback,
}
