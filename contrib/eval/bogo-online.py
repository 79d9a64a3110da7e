#!/usr/bin/env python3
"""The on-line protocol for bogofilter: each message of the stream is scored
with `bogofilter -T` (its terse verdict and spamicity, full precision), then
learned with its true label (-s or -n); warm-up lines ("warm-spam|warm-ham")
are only learned; LEARN_TEST=0 scores the other lines without learning
them (a batch test). One process per step, so the per-message costs include
starting bogofilter (about what a site running it per message pays).

usage: bogo-online.py DBDIR < stream   (lines "label<TAB>path")
prints "label<TAB>spamicity<TAB>verdict(1 = S)<TAB>score us<TAB>learn us",
and "#" lines with the wordlist's size every 1000 messages."""
import os
import subprocess
import sys
import time

db = sys.argv[1]
os.makedirs(db, exist_ok=True)
if not os.path.exists(os.path.join(db, "wordlist.db")):
    # An empty wordlist, so the first messages are scored (as unsure) too.
    subprocess.run(["bogoutil", "-l", os.path.join(db, "wordlist.db")], input=b"", check=True)
base = ["bogofilter", "-C", "-d", db]
learn_test = os.environ.get("LEARN_TEST", "1") != "0"
n = 0
for line in sys.stdin:
    f = line.rstrip("\n").split("\t")
    if len(f) < 2:
        continue
    label, path = f[0], f[1]
    warm = label.startswith("warm-")
    label = label[5:] if warm else label
    with open(path, "rb") as fp:
        data = fp.read()
    t0 = time.perf_counter()
    out = ""
    if not warm:
        # -T prints "S|H|U spamicity"; %.15f keeps the order of scores near 0 and 1.
        out = subprocess.run(base + ["-T", "--terse-format=%1.1c %.15f"], input=data,
                             stdout=subprocess.PIPE).stdout.decode()
    t1 = time.perf_counter()
    if warm or learn_test:
        subprocess.run(base + ["-s" if label == "spam" else "-n"], input=data, check=True)
    t2 = time.perf_counter()
    if warm:
        continue
    v = out.split()
    print("%s\t%s\t%d\t%.1f\t%.1f" % (label, v[1], v[0] == "S", (t1 - t0) * 1e6, (t2 - t1) * 1e6))
    n += 1
    if n % 1000 == 0:
        size = os.path.getsize(os.path.join(db, "wordlist.db"))
        print("# after %d: wordlist %d bytes" % (n, size), flush=True)
size = os.path.getsize(os.path.join(db, "wordlist.db"))
print("# after %d: wordlist %d bytes" % (n, size))
