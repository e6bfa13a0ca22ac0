"""Plot the results of `python -m benchmarks` (results.json) as one PNG.

Usage: `python -m benchmarks.plot RESULTS_JSON [LONG_SEQUENCE_JSON ...] -o PNG`.
"""

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _bars(ax, groups, title, ylabel, reference=None):
    """groups: {group: {label: (median, min, max)}}."""
    labels = sorted({label for g in groups.values() for label in g})
    width = 0.8 / max(len(labels), 1)
    for k, label in enumerate(labels):
        xs, meds, lows, highs = [], [], [], []
        for i, g in enumerate(groups.values()):
            if label in g:
                med, lo, hi = g[label]
                xs.append(i + k * width)
                meds.append(med)
                lows.append(med - lo)
                highs.append(hi - med)
        ax.bar(xs, meds, width, yerr=[lows, highs], label=label, capsize=2)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(groups))])
    ax.set_xticklabels(list(groups))
    if reference is not None:
        ax.axhline(reference, color="black", linewidth=0.8, linestyle="--")
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)


def _triple(s, scale=1.0):
    return (s["median"] * scale, s["min"] * scale, s["max"] * scale)


def plot(results, long_sequence, output):
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    training, decoding = {}, {}
    for backend, cases in results["results"].items():
        enc = cases.get("encoder_training", {})
        if "tokens_per_second" in enc:
            training[backend] = {
                n: _triple(s, 1e-3) for n, s in enc["tokens_per_second"].items()
            }
        dec = cases.get("cached_decoding", {})
        if "speedup_of_generate" in dec:
            decoding[backend] = {
                f"vs {name}": _triple(s)
                for name, s in dec["speedup_of_generate"].items()
            }
    _bars(axes[0], training, "Encoder training (batch 8 x 256)", "k tokens/s")
    _bars(
        axes[1],
        decoding,
        "Cached decoding: keras_attn speed-up",
        "x (higher is better)",
        reference=1.0,
    )
    memory = {}
    for m in long_sequence:
        if m["status"] != "ok":
            continue
        c = m["config"]
        label = (
            f"{c['layer']} {c['implementation'] or 'auto'} {c['mode']} {c['length']}"
        )
        value = m["peak_rss_gib"]
        memory.setdefault(m["backend"], {})[label] = (value, value, value)
    _bars(axes[2], memory, "Long sequences: peak RSS", "GiB")
    axes[2].axhline(2.0, color="red", linewidth=0.8, linestyle="--")
    axes[2].axhline(4.0, color="orange", linewidth=0.8, linestyle="--")
    fig.tight_layout()
    fig.savefig(output, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("results")
    parser.add_argument("long_sequence", nargs="*")
    parser.add_argument("-o", "--output", default="docs/images/benchmarks.png")
    args = parser.parse_args(argv)
    with open(args.results) as f:
        results = json.load(f)
    long_sequence = []
    for path in args.long_sequence:
        with open(path) as f:
            long_sequence += json.load(f)
    if not args.long_sequence:  # the long-sequence case of the results themselves
        for backend, cases in results["results"].items():
            for m in cases.get("long_sequence", {}).get("measurements", []):
                long_sequence.append({**m, "backend": backend})
    plot(results, long_sequence, args.output)


if __name__ == "__main__":
    main()
