#!/usr/bin/env python3
"""Renders the benchmark charts in docs/img/ from the result data in loadtest/results/*.csv.

Each chart takes the newest file matching its pattern (the files are named
YYYY-MM-DD-<what>.csv), draws the median of the rounds per proxy as a bar with every round as a
dot, writes the ratio to nginx over each bar, and prints the command and date that produced the
data under the title. Run from anywhere:

    python3 loadtest/charts.py            # SVG charts into docs/img/
    python3 loadtest/charts.py --png DIR  # also PNG copies into DIR (to look at them)

Needs matplotlib (pip install matplotlib). The CSV columns are
date,command,tree,round,proxy,metric,value (one row per run and metric; loadtest/lib.sh writes
them as loadtest/out/<script>-<date>.csv).
"""

import argparse
import csv
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "loadtest" / "results"
OUT = ROOT / "docs" / "img"
PROXIES = ["nginx", "haproxy", "ringway"]
LABELS = {"nginx": "nginx 1.22", "haproxy": "HAProxy 2.6", "ringway": "ringway"}
COLORS = {"nginx": "#8c9aa6", "haproxy": "#b7a58c", "ringway": "#1f7a8c"}


def newest(pattern):
    files = sorted(RESULTS.glob(pattern))
    if not files:
        sys.exit(f"charts.py: no loadtest/results/{pattern}")
    return files[-1]


def load(path):
    """{metric: {proxy: [values by round]}} and the run's (date, command, tree)."""
    data, meta = {}, None
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            meta = meta or (row["date"], row["command"], row["tree"])
            by_proxy = data.setdefault(row["metric"], {})
            by_proxy.setdefault(row["proxy"], []).append(float(row["value"]))
    return data, meta


def source_line(path, meta):
    date, command, tree = meta
    at = f" at {tree}" if tree else ""
    return f"{command}\n{date.replace('T', ' ').replace('Z', ' UTC')}{at} · data: loadtest/results/{path.name}"


def bars(ax, values, unit, fmt, better):
    """One bar per proxy at the median of its rounds, the rounds as dots, ratios to nginx."""
    names = [p for p in PROXIES if p in values]
    medians = [statistics.median(values[p]) for p in names]
    x = range(len(names))
    ax.bar(x, medians, color=[COLORS[p] for p in names], width=0.6, zorder=2)
    for i, p in enumerate(names):
        pts = values[p]
        if len(pts) > 1:
            ax.scatter([i] * len(pts), pts, s=9, color="#333333", alpha=0.55, zorder=3, linewidths=0)
    top = max(max(v) for v in values.values())
    base = statistics.median(values["nginx"]) if "nginx" in values else None
    for i, m in enumerate(medians):
        label = fmt.format(m)
        if base and names[i] != "nginx":
            label += f"\n{m / base:.2f}× nginx"
        ax.text(i, max(m, max(values[names[i]])) + top * 0.03, label, ha="center", va="bottom", fontsize=9)
    ax.set_xticks(list(x), [LABELS[p] for p in names])
    ax.set_ylabel(unit)
    ax.set_ylim(0, top * 1.3)
    ax.set_title(f"{better} is better", fontsize=9, color="#555555", loc="right")
    ax.grid(axis="y", color="#dddddd", zorder=0)
    ax.spines[["top", "right"]].set_visible(False)


def figure(name, title, panels, sources, out_dirs):
    """panels: [(subtitle, values, unit, fmt, better)]; sources: [(path, meta)]."""
    fig, axes = plt.subplots(1, len(panels), figsize=(max(7.4, 4.2 * len(panels) + 0.6), 4.4), squeeze=False)
    for ax, (sub, values, unit, fmt, better) in zip(axes[0], panels):
        bars(ax, values, unit, fmt, better)
        ax.set_xlabel(sub, fontsize=9)
    fig.suptitle(title, fontsize=12, fontweight="bold", x=0.02, ha="left")
    text = "\n".join(source_line(p, m) for p, m in sources)
    fig.text(0.02, 0.01, text, fontsize=7, family="monospace", color="#444444", va="bottom")
    fig.tight_layout(rect=(0, 0.07 + 0.04 * len(sources), 1, 0.97))
    for d, ext in out_dirs:
        d.mkdir(parents=True, exist_ok=True)
        fig.savefig(d / f"{name}.{ext}", dpi=110, metadata={"Date": None} if ext == "svg" else {})
    plt.close(fig)
    print(f"charts.py: {name}: {', '.join(str(p.relative_to(ROOT)) for p, _ in sources)}")


def per_round_inverse(values, scale):
    """A cost per event (µs per handshake) as events per CPU-second, round by round."""
    return {p: [scale / v for v in vs] for p, vs in values.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--png", type=Path, help="also write PNG copies into this directory")
    args = ap.parse_args()
    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "ringway", "font.size": 9})
    outs = [(OUT, "svg")] + ([(args.png, "png")] if args.png else [])

    p = newest("*-http-keepalive-cpu.csv")
    d, m = load(p)
    figure("http-keepalive-cpu", "HTTP/1.1 keep-alive: proxy CPU per request",
           [("100-byte responses, 64 connections, one worker on one core",
             d["cpu_us_per_request"], "CPU µs per request", "{:.1f} µs", "lower")],
           [(p, m)], outs)

    p = newest("*-tls-cpu.csv")
    d, m = load(p)
    figure("tls-cpu", "TLS 1.3 termination (ECDSA P-256)",
           [("keep-alive: proxy CPU per request", d["keepalive_cpu_us_per_request"],
             "CPU µs per request", "{:.1f} µs", "lower"),
            ("full handshakes per proxy CPU-second",
             per_round_inverse(d["handshake_cpu_us_per_request"], 1e6),
             "handshakes per CPU-second", "{:,.0f}", "higher")],
           [(p, m)], outs)

    p = newest("*-body-1mib-cpu.csv")
    d, m = load(p)
    figure("body-1mib-cpu", "1 MiB responses: CPU per GB relayed",
           [("the proxy alone", d["proxy_cpu_s_per_gb"], "CPU seconds per GB", "{:.2f} s", "lower"),
            ("proxy + backend (loopback charges the receiver's work to the sender)",
             d["proxy_and_backend_cpu_s_per_gb"], "CPU seconds per GB", "{:.2f} s", "lower")],
           [(p, m)], outs)

    p = newest("*-ws-idle-memory.csv")
    d, m = load(p)
    kb = {k: [v / 1000 for v in vs] for k, vs in d["rss_bytes_per_connection"].items()}
    figure("ws-idle-memory", "Idle WebSockets: memory per connection",
           [("4,000 upgraded connections held idle", kb, "RSS growth per connection (KB)", "{:.1f} KB", "lower")],
           [(p, m)], outs)

    panels, sources = [], []
    for size, label in (("32b", "32-byte"), ("1k", "1 KiB"), ("16k", "16 KiB")):
        p = newest(f"*-ws-echo-{size}-cpu.csv")
        d, m = load(p)
        panels.append((f"{label} messages", d["proxy_cpu_ns_per_message"], "proxy CPU ns per message",
                       "{:,.0f} ns", "lower"))
        sources.append((p, m))
    figure("ws-echo-cpu", "WebSocket echo: proxy CPU per message (64 connections, 4 in flight)",
           panels, sources, outs)


if __name__ == "__main__":
    main()
