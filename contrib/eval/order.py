#!/usr/bin/env python3
"""Orders corpus messages by date for the on-line evaluation.

usage: order.py CORPUS_DIR MANIFEST [GROUPS]
  prints "label<TAB>path<TAB>epoch<TAB>group<TAB>fold" for every manifest row (or only
  those whose group is in the comma-separated GROUPS), oldest first. A
  message's date is its Date header; when that is missing, unparsable or
  implausible (before 1995 or after 2010: forged and broken dates are
  common in spam), the newest date among its Received fields; when neither
  gives one, the date of the message before it in the manifest (so it keeps
  its place in its group). Ties keep manifest order."""
import email.utils
import re
import sys

LO, HI = 788918400, 1262304000  # 1995-01-01, 2010-01-01


def parse(s):
    try:
        d = email.utils.parsedate_tz(s.strip())
        if d is None:
            return None
        t = email.utils.mktime_tz(d)
        return t if LO <= t < HI else None
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


def headers(path):
    with open(path, "rb") as f:
        data = f.read(65536).decode("latin-1")
    head = re.split(r"\r?\n\r?\n", data, maxsplit=1)[0]
    return re.sub(r"\r?\n[ \t]+", " ", head).split("\n")


def date_of(path):
    date, rcvd = None, []
    for line in headers(path):
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "date" and date is None:
            date = parse(value)
        elif name == "received" and ";" in value:
            t = parse(value.rsplit(";", 1)[1])
            if t is not None:
                rcvd.append(t)
    if date is not None:
        return date, "date"
    if rcvd:
        return max(rcvd), "received"
    return None, "none"


def main():
    corpus, manifest = sys.argv[1], sys.argv[2]
    groups = set(sys.argv[3].split(",")) if len(sys.argv) > 3 and sys.argv[3] else None
    rows, prev, how = [], 0, {}
    with open(manifest) as f:
        next(f)
        for i, line in enumerate(f):
            f = line.rstrip("\n").split("\t")
            path, label, group, fold = f[0], f[1], f[2], f[5]
            if groups and group not in groups:
                continue
            full = corpus + "/" + path
            t, src = date_of(full)
            how[src] = how.get(src, 0) + 1
            if t is None:
                t = prev
            prev = t
            rows.append((t, i, label, full, group, fold))
    rows.sort()
    for t, _, label, full, group, fold in rows:
        print("%s\t%s\t%d\t%s\t%s" % (label, full, t, group, fold))
    sys.stderr.write("order.py: %d messages; dated by %s\n" % (
        len(rows), ", ".join("%s %d" % kv for kv in sorted(how.items()))))


if __name__ == "__main__":
    main()
