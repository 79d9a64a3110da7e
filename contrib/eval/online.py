#!/usr/bin/env python3
"""Figures of an on-line run (TREC spam track measures) from lines
"label<TAB>score<TAB>verdict<TAB>score_us<TAB>learn_us..." (label spam|ham;
score higher = spammier; verdict 1 when the filter called it spam):
(1-ROCA)% (ties count one half), spam recall at 0.1% and 1% ham false
positives, lam% (the logistic average of the ham and spam misclassification
rates of the filter's own verdicts, as TREC reports it), the mean and median
per-message score and learn cost in microseconds.

usage: online.py FILE NAME"""
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from roc import figures  # noqa: E402


def logit(p):
    return math.log(p / (1 - p))


def lam(hm, sm, nh, ns):
    # TREC: rates of 0 are taken as 0.5 errors so the logit stays finite.
    hm = max(hm, 0.5) / nh
    sm = max(sm, 0.5) / ns
    x = (logit(hm) + logit(sm)) / 2
    return 100.0 / (1 + math.exp(-x))


def median(v):
    v = sorted(v)
    return v[len(v) // 2] if v else float("nan")


def main():
    rows, hm, sm, sc, lc = [], 0, 0, [], []
    for line in open(sys.argv[1]):
        if line.startswith("#"):
            continue
        f = line.rstrip("\n").split("\t")
        label, score, verdict = f[0], float(f[1]), f[2] == "1"
        rows.append((label, score))
        if label == "ham" and verdict:
            hm += 1
        if label == "spam" and not verdict:
            sm += 1
        sc.append(float(f[3]))
        if float(f[4]) > 0:
            lc.append(float(f[4]))
    fg = figures(rows)
    name = sys.argv[2] if len(sys.argv) > 2 else "scores"
    print("%-12s n=%d (spam %d, ham %d)  (1-ROCA)%%=%.4f  recall@0.1%%FPR=%.4f  "
          "recall@1%%FPR=%.4f  lam%%=%.3f (fp %d, fn %d)  score us mean %.0f median %.0f  "
          "learn us mean %.0f median %.0f (%d learned)" % (
              name, len(rows), fg["spam"], fg["ham"], 100 * (1 - fg["auc"]), fg["recall@0.1%"],
              fg["recall@1%"], lam(hm, sm, fg["ham"], fg["spam"]), hm, sm,
              sum(sc) / len(sc), median(sc), sum(lc) / len(lc) if lc else 0, median(lc), len(lc)))


if __name__ == "__main__":
    main()
