#!/usr/bin/env python3
"""Replays other ways of adding the regression to Bayes over the dumps of
online-eval.sh runs made with bayes_lr=yes (WORK=DIR keeps DIR/sift.out):
each line of a dump carries Bayes's natural log-odds z and the
regression's unclipped sum r (bayes-onlinedrv.c), and the regression
learns from r alone, so any sum of the two can be scored again without
learning again. For each bound H of the regression's hammy side (the sum
counts r between -H and the spammy bound S, 10 in Sift), prints the
figures online.py prints of each dump, in the order given:
(1-ROCA)%, recall at 0.1% and 1% FPR, lam% (verdict: sum > 0).

usage: combine-replay.py [--spammy S] [--hammy H1,H2,...] DUMP..."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from online import lam  # noqa: E402
from roc import figures  # noqa: E402


def load(path):
    rows = []
    for line in open(path):
        if line.startswith("#"):
            continue
        f = line.rstrip("\n").split("\t")
        if len(f) < 8:
            raise SystemExit("%s: no Bayes and regression columns (an older driver?)" % path)
        rows.append((f[0], float(f[6]), float(f[7])))
    return rows


def verdict_lam(rows, scores):
    """online.py's lam% of the verdicts sum > 0."""
    hm = sum(1 for (l, _, _), s in zip(rows, scores) if l == "ham" and s > 0)
    sm = sum(1 for (l, _, _), s in zip(rows, scores) if l == "spam" and s <= 0)
    nh = sum(1 for l, _, _ in rows if l == "ham")
    return lam(hm, sm, nh, len(rows) - nh)


def main():
    args = sys.argv[1:]
    spammy, hammy = 10.0, [2.5, 3, 3.5, 4, 4.5, 5, 6, 7, 8, 10]
    while args and args[0].startswith("--"):
        if args[0] == "--spammy" and len(args) > 1:
            spammy = float(args[1])
        elif args[0] == "--hammy" and len(args) > 1:
            hammy = [float(x) for x in args[1].split(",")]
        else:
            raise SystemExit(__doc__)
        args = args[2:]
    if not args:
        raise SystemExit(__doc__)
    dumps = [load(p) for p in args]
    print("hammy bound  " + " | ".join(os.path.basename(os.path.dirname(p) or p) for p in args))
    for h in hammy:
        out = []
        for rows in dumps:
            scores = [z + max(-h, min(spammy, r)) for _, z, r in rows]
            fg = figures([(l, s) for (l, _, _), s in zip(rows, scores)])
            out.append("%.4f %.4f %.4f %.3f" % (100 * (1 - fg["auc"]), fg["recall@0.1%"],
                                                fg["recall@1%"], verdict_lam(rows, scores)))
        print("%-11g  %s" % (h, " | ".join(out)))


if __name__ == "__main__":
    main()
