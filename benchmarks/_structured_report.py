"""Markdown tables of the structured-attention case (`structured_attention.py`)."""

import argparse
import json
import os

from benchmarks._report import summary_text
from benchmarks._report import table


def markdown(r):
    """The case's section as Markdown lines, in the style of `_report.py`."""
    s = r["settings"]
    out = [
        f"### Structured attention: window {s['window']:,}, packed documents "
        f"(batch 1, 8 heads x 64, causal)",
        "",
        f"Peak resident memory of one child per row; target under "
        f"{r['target_gib']:g} GiB, children killed above {r['memory_cap_gib']:g} GiB.",
        "",
    ]
    rows = []
    for m in r["memory"]:
        spec, res = m["spec"], m.get("result") or {}
        step = res.get("step_seconds")
        rows.append(
            [
                spec["mode"],
                f"{spec['length']:,}",
                spec["pattern"],
                ", ".join(res.get("paths", [])) or "auto",
                m["status"],
                f"{m['peak_rss_gib']:.2f}" if m["peak_rss_gib"] else "",
                "yes" if m["under_target"] else "**no**",
                f"{res['first_step_seconds']:.1f}" if step else "",
                f"{step:.1f}" if step else "",
            ]
        )
    out += table(
        [
            "mode",
            "length",
            "pattern",
            "path taken",
            "status",
            "peak RSS GiB",
            "under target",
            "first step s",
            "second step s",
        ],
        rows,
    )
    out += [
        f"Interleaved rounds: {r['rounds']}; ratios per round, median [min, max].",
        "",
    ]
    rows = []
    for g in r["timing"]:
        rows.append(_group_row(g))
    out += table(
        ["comparison", "length", "seconds per contender", "ratio", "target", "met"],
        rows,
    )
    notes = [_notes(g) for g in r["timing"]]
    out += [n for n in notes if n]
    return out + ([""] if any(notes) else [])


def _group_row(g):
    length = _length(g)
    seconds = "; ".join(
        f"{name} {summary_text(s, 3)}" + _path(g, name)
        for name, s in g["seconds"].items()
    )
    ratio = g.get("ratio")
    target = g.get("target")
    met = "" if "met" not in g else ("yes" if g["met"] else "**no**")
    return [
        g["name"],
        length,
        seconds or "failed",
        f"{ratio['of']}: {summary_text(ratio, 2)}" if ratio else "",
        f"{target[0]} {target[1]:g}" if target else "",
        met,
    ]


def _length(g):
    requested, measured = g["requested_length"], g["measured_length"]
    if measured is None:
        return f"{requested:,} (not measured)"
    if measured != requested:
        return f"{measured:,} (asked {requested:,})"
    return f"{measured:,}"


def _path(g, name):
    paths = g.get("paths", {}).get(name)
    return f" ({', '.join(paths)})" if paths else ""


def _notes(g):
    parts = []
    for a in g["attempts"]:
        if a["status"] != "ok" or a["failures"]:
            why = "; ".join(f"{k}: {v}" for k, v in a["failures"].items())
            parts.append(
                f"at {a['length']:,} tokens: {a['status']}, "
                f"{a['peak_rss_gib']:.2f} GiB" + (f" ({why})" if why else "")
            )
    if "flex_training" in g:
        parts.append(f"FlexAttention training step on CPU: {g['flex_training']}")
    return f"- *{g['name']}*: " + "; ".join(parts) if parts else ""


def write_markdown_beside(argv):
    """After `case_main`: write `<json-out minus .json>.md` from its JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--json-out", required=True)
    path = parser.parse_known_args(argv)[0].json_out
    with open(path) as f:
        result = json.load(f)
    lines = markdown(result)
    env = result["environment"]
    lines += [
        f"{env['processor']}, {env['affinity']} cores usable; keras {env['keras']}, "
        f"{env['backend']} {env.get(env['backend'], '')}; load average "
        f"{_load(result['loadavg_start'])} -> {_load(result['loadavg_end'])}; "
        f"{result['wall_seconds']:.0f} s"
        + (" (`--quick`)." if result["quick"] else "."),
        "",
    ]
    with open(os.path.splitext(path)[0] + ".md", "w") as f:
        f.write("\n".join(lines))


def _load(values):
    return ", ".join(f"{v:.1f}" for v in values)
