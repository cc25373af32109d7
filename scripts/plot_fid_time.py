#!/usr/bin/python3
"""plot_fid_time.py: FID against training time, one line per recipe and sampler.

    /usr/bin/python3 scripts/plot_fid_time.py [--budget MIN] [--target FID] [--xlabel TEXT] TABLE.tsv OUT.png

Reads a tab-separated table with a header and the columns
    recipe  iters  minutes  fid  sampler  note
(one row per checkpoint of a run; `minutes` is the time to that checkpoint
on 2 cores) and draws FID (log scale) against minutes, a line per (recipe,
sampler) pair, with the time budget (--budget, default 20 minutes), a
target line (--target FID, or a third of the FID of a row whose note is
"baseline", drawn as a cross) and the FID of 1000 real MNIST training
images against the test set (the row with recipe "real", if any).
Needs Debian's python3-matplotlib; only for the README's picture, never CI.
"""
import argparse
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description="FID against training time")
    ap.add_argument("--budget", type=float, default=20.0, help="the time budget in minutes (a vertical line)")
    ap.add_argument("--target", type=float, help="a target FID (a horizontal line)")
    ap.add_argument("--xlabel", default="quick start wall time on 2 cores (minutes)")
    ap.add_argument("table")
    ap.add_argument("out")
    a = ap.parse_args()
    with open(a.table, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows:
        sys.exit(f"plot_fid_time: {a.table}: no rows")
    lines, marks, real, baseline = {}, [], None, None
    for r in rows:
        if not r["fid"].strip():
            print(f'plot_fid_time: skipping {r["recipe"]} at {r["iters"]} (no FID)', file=sys.stderr)
            continue
        fid, minutes = float(r["fid"]), float(r["minutes"])
        if r["recipe"] == "real":
            real = fid
            continue
        if r.get("note") == "baseline":
            baseline = (minutes, fid, r["recipe"], r["sampler"])
            marks.append((minutes, fid, f'{r["recipe"]}, {r["sampler"]}'))
            continue
        lines.setdefault((r["recipe"], r["sampler"]), []).append((minutes, fid))
    fig, ax = plt.subplots(figsize=(7.5, 4.6), dpi=110)
    styles = ["o-", "s-", "^-", "d-"]
    for i, ((recipe, sampler), pts) in enumerate(lines.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], styles[i % len(styles)], label=f"{recipe}, {sampler}")
        ax.annotate(f"{pts[-1][1]:.1f}", pts[-1], textcoords="offset points", xytext=(6, -3), fontsize=8)
    for m, fid, label in marks:
        ax.plot([m], [fid], "kx", markersize=9, label=label)
        ax.annotate(f"{fid:.1f}", (m, fid), textcoords="offset points", xytext=(6, 2), fontsize=8)
    if a.target is not None:
        ax.axhline(a.target, color="tab:red", lw=0.8, ls="--", label=f"target: {a.target:g}")
    elif baseline:
        ax.axhline(baseline[1] / 3, color="tab:red", lw=0.8, ls="--", label=f"target: a third of {baseline[1]:.1f}")
    if real is not None:
        ax.axhline(real, color="gray", lw=0.8, ls=":", label=f"real MNIST images ({real:.2f})")
    ax.axvline(a.budget, color="gray", lw=0.8, ls="-.")
    ax.set_yscale("log")
    ax.text(a.budget, ax.get_ylim()[1], f" {a.budget:g} min", va="top", fontsize=8, color="gray")
    ax.set_xlim(0, a.budget * 1.05)
    ax.set_yticks([t for t in (5, 7, 10, 15, 20, 30, 50, 80, 120, 200) if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]])
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel(a.xlabel)
    ax.set_ylabel("FID, 1000 samples (ddpm eval)")
    ax.set_title("FID against time: old and new ddpm train defaults")
    ax.grid(True, which="both", lw=0.3)
    ax.legend(fontsize=8, loc="lower left")  # the curves fall to the right: the lower left stays empty
    fig.tight_layout()
    fig.savefig(a.out)


if __name__ == "__main__":
    main()
