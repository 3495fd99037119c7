#!/usr/bin/env python3
"""Plots of bench/micro results (build/bench/micro.csv): store events/s vs batch size, one
PNG per sync mode, plus a ratio plot; and prints the tables as Markdown (for
docs/benchmarks/hot-path.md). Skips the plots, with a message, if matplotlib is missing.

    python3 bench/micro/plot.py build/bench/micro.csv docs/benchmarks
"""
import csv
import os
import sys


def load(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def tables(rows):
    out = []
    out.append("| bench | case | param | size | value | unit | reference | ref value | ratio |")
    out.append("|---|---|---|---:|---:|---|---|---:|---:|")
    for r in rows:
        ratio = f"{float(r['ratio']):.2f}" if r["ref_name"] else ""
        ref = f"{float(r['ref_value']):.4g}" if r["ref_name"] else ""
        out.append(f"| {r['bench']} | {r['case']} | {r['param']} | {r['size']} | "
                   f"{float(r['value']):.4g} | {r['unit']} | {r['ref_name']} | {ref} | {ratio} |")
    return "\n".join(out)


def plot(rows, outdir):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plots: matplotlib is not installed (pip install matplotlib); skipping the PNGs")
        return
    store = [r for r in rows if r["bench"] == "store"]
    if not store:
        print("plots: no store rows; nothing to plot")
        return
    os.makedirs(outdir, exist_ok=True)
    labels = {"bare_sqlite": "bare SQLite insert loop",
              "bare_sqlite_users": "bare loop + users row update",
              "vtable_add_event": "store add_event (vtable, group commit)",
              "api_add_event": "hd_server_add_event (public API)"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, sync in zip(axes, ["sync=FULL", "sync=NORMAL"]):
        for case, style in [("bare_sqlite", "k--o"), ("bare_sqlite_users", "k:x"),
                            ("vtable_add_event", "b-o"), ("api_add_event", "r-s")]:
            pts = sorted((int(r["size"]), float(r["value"])) for r in store
                         if r["case"] == case and r["param"] == sync)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=labels[case],
                        markersize=4)
        ax.axhline(100000, color="grey", linewidth=0.8)
        ax.text(1, 110000, "target 100k/s", color="grey", fontsize=8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"store append, 100 B events, {sync}")
        ax.set_xlabel("rows per transaction (batch size)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("events/s (median)")
    axes[0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    p1 = os.path.join(outdir, "store-throughput.png")
    fig.savefig(p1, dpi=80)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for case, sync, style in [("vtable_add_event", "sync=FULL", "b-o"),
                              ("vtable_add_event", "sync=NORMAL", "b:o"),
                              ("api_add_event", "sync=FULL", "r-s"),
                              ("api_add_event", "sync=NORMAL", "r:s")]:
        pts = sorted((int(r["size"]), float(r["ratio"])) for r in store
                     if r["case"] == case and r["param"] == sync)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style,
                    label=f"{labels[case]}, {sync}", markersize=4)
    ax.axhline(0.8, color="grey", linewidth=0.8)
    ax.text(1, 0.82, "target 0.8", color="grey", fontsize=8)
    ax.set_xscale("log")
    ax.set_ylim(0, 1.5)
    ax.set_xlabel("rows per transaction (batch size)")
    ax.set_ylabel("ratio to the bare SQLite loop (median of reps)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    p2 = os.path.join(outdir, "store-ratio.png")
    fig.savefig(p2, dpi=80)
    plt.close(fig)
    print(f"plots: {p1} {p2}")


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "build/bench/micro.csv"
    outdir = sys.argv[2] if len(sys.argv) > 2 else "docs/benchmarks"
    rows = load(src)
    md = os.path.splitext(src)[0] + "-tables.md"
    with open(md, "w") as f:
        f.write(tables(rows) + "\n")
    print(f"tables: {md}")
    plot(rows, outdir)


if __name__ == "__main__":
    main()
