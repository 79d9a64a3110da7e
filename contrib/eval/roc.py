#!/usr/bin/env python3
"""Accuracy figures from "label<TAB>score" lines (label spam|ham, score: higher
means spammier): ROC AUC (ties count one half), and spam recall at ham
false-positive rates of 0.1% and 1% (the threshold is set just above the
k-th highest ham score, k = floor(rate * hams), so at most k hams are
flagged; spam tied with that ham score counts as missed)."""
import sys

def figures(rows):
    spam = sorted(s for l, s in rows if l == "spam")
    ham = sorted(s for l, s in rows if l == "ham")
    if not spam or not ham:
        raise SystemExit("need both spam and ham scores")
    # AUC by rank sums, ties averaged.
    allv = sorted([(s, 1) for s in spam] + [(s, 0) for s in ham])
    rank_sum, i = 0.0, 0
    while i < len(allv):
        j = i
        while j < len(allv) and allv[j][0] == allv[i][0]:
            j += 1
        avg = (i + 1 + j) / 2.0
        rank_sum += avg * sum(1 for k in range(i, j) if allv[k][1] == 1)
        i = j
    auc = (rank_sum - len(spam) * (len(spam) + 1) / 2.0) / (len(spam) * len(ham))
    out = {"spam": len(spam), "ham": len(ham), "auc": auc}
    hd = ham[::-1]
    for rate in (0.001, 0.01):
        k = int(rate * len(ham) + 1e-9)
        thr = hd[k] if k < len(hd) else float("-inf")
        out["recall@%g%%" % (rate * 100)] = sum(1 for s in spam if s > thr) / len(spam)
    return out

def main():
    rows = []
    for line in open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin:
        parts = line.split()
        if len(parts) >= 2:
            rows.append((parts[0], float(parts[1])))
    f = figures(rows)
    name = sys.argv[2] if len(sys.argv) > 2 else "scores"
    print("%-10s spam=%d ham=%d  AUC=%.5f  recall@0.1%%FPR=%.4f  recall@1%%FPR=%.4f" % (
        name, f["spam"], f["ham"], f["auc"], f["recall@0.1%"], f["recall@1%"]))

if __name__ == "__main__":
    main()
