#!/usr/bin/python3
"""plot_loss_overlay.py: the training loss of several runs in one picture.

    /usr/bin/python3 scripts/plot_loss_overlay.py OUT.png LABEL=RUN/log.csv ...
                                                 [--smooth N] [--title T]

Each LABEL=PATH is a run's log.csv (columns iter and loss, as `ddpm train`
writes it); its loss is drawn against the iteration, averaged over a
centred window of --smooth logged rows (default 9: the raw loss of one
batch of 32 is noisy), on a log scale. Runs whose label shares the part
before the first space (e.g. "fp32 seed 0", "fp32 seed 1") share a colour.
Needs matplotlib (Debian's python3-matplotlib).
"""
import argparse
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_log(path):
    it, loss = [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                it.append(int(row["iter"]))
                loss.append(float(row["loss"]))
            except (KeyError, TypeError, ValueError):
                sys.exit("plot_loss_overlay.py: %s: not a ddpm log.csv (iter, loss)" % path)
    if not it:
        sys.exit("plot_loss_overlay.py: %s: no rows" % path)
    return it, loss


def smooth(v, n):
    h = n // 2
    out = []
    for i in range(len(v)):
        w = v[max(0, i - h):i + h + 1]
        out.append(sum(w) / len(w))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("runs", nargs="+", metavar="LABEL=LOG")
    ap.add_argument("--smooth", type=int, default=9)
    ap.add_argument("--title", default="training loss")
    a = ap.parse_args()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    colours = {}
    styles = ["-", "--", ":", "-."]
    seen = {}
    for spec in a.runs:
        if "=" not in spec:
            sys.exit("plot_loss_overlay.py: '%s': expected LABEL=PATH" % spec)
        label, path = spec.split("=", 1)
        it, loss = read_log(path)
        group = label.split(" ")[0]
        if group not in colours:
            colours[group] = "C%d" % len(colours)
        k = seen.get(group, 0)
        seen[group] = k + 1
        ax.plot(it, smooth(loss, max(1, a.smooth)), styles[k % len(styles)], color=colours[group],
                label=label, linewidth=1.2)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (mean of %d logged rows)" % a.smooth)
    ax.set_title(a.title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(a.out)


if __name__ == "__main__":
    main()
