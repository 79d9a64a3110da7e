#!/usr/bin/env python3
"""Accuracy figures from "label<TAB>score" lines (label spam|ham, score: higher
means spammier): ROC AUC (ties count one half), and spam recall at ham
false-positive rates of 0.1% and 1% (the threshold is set just above the
k-th highest ham score, k = floor(rate * hams), so at most k hams are
flagged; spam tied with that ham score counts as missed), and the partial
AUC over false-positive rates 0-1% (scaled to 0-1).

usage: roc.py FILE [NAME]
       roc.py --paired FILE_A FILE_B NAME_A,NAME_B   (paired bootstrap)"""
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
    # Partial AUC over ham false-positive rates 0..1%, scaled to 0..1: a
    # finer view of the low-FP end than two recall points, for comparing
    # settings whose recall points tie.
    limit = int(0.01 * len(ham) + 1e-9)
    area = 0.0
    for i in range(limit):
        # Spam above the i-th highest ham, ties with it counting one half.
        above = sum(1 for s in spam if s > hd[i]) + 0.5 * sum(1 for s in spam if s == hd[i])
        area += above / len(spam)
    out["pauc@1%"] = area / limit if limit else float("nan")
    return out

def load(path):
    rows = []
    for line in open(path) if path != "-" else sys.stdin:
        parts = line.split()
        if len(parts) >= 2:
            rows.append((parts[0], float(parts[1])))
    return rows

def paired(a, b, name_a, name_b, reps=1000):
    """Paired bootstrap over messages (both files list the same messages in
    the same order): how often, and by how much, A's figures beat B's. With
    about a thousand hams, recall at 0.1% rests on the two highest hams, so
    a single split says little without this."""
    import random
    if len(a) != len(b) or any(x[0] != y[0] for x, y in zip(a, b)):
        raise SystemExit("paired: the two files must list the same messages")
    rnd = random.Random(1)
    keys = ("auc", "recall@0.1%", "recall@1%")
    diffs = {k: [] for k in keys}
    n = len(a)
    for _ in range(reps):
        idx = [rnd.randrange(n) for _ in range(n)]
        try:
            fa = figures([a[i] for i in idx])
            fb = figures([b[i] for i in idx])
        except (SystemExit, IndexError):
            continue
        for k in keys:
            diffs[k].append(fa[k] - fb[k])
    for k in keys:
        d = sorted(diffs[k])
        lo, hi = d[int(0.025 * len(d))], d[int(0.975 * len(d)) - 1]
        ahead = sum(1 for x in d if x > 0)
        print("%s - %s %-12s mean %+.5f, 95%% interval [%+.5f, %+.5f], ahead in %d of %d"
              % (name_a, name_b, k, sum(d) / len(d), lo, hi, ahead, len(d)))

def main():
    args = sys.argv[1:]
    if len(args) == 4 and args[0] == "--paired":
        paired(load(args[1]), load(args[2]), *args[3].split(",", 1))
        return
    rows = load(args[0] if args else "-")
    f = figures(rows)
    name = args[1] if len(args) > 1 else "scores"
    print("%-10s spam=%d ham=%d  AUC=%.5f  recall@0.1%%FPR=%.4f  recall@1%%FPR=%.4f  pAUC@1%%=%.5f" % (
        name, f["spam"], f["ham"], f["auc"], f["recall@0.1%"], f["recall@1%"], f["pauc@1%"]))

if __name__ == "__main__":
    main()
