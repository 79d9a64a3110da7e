#!/usr/bin/env python3
"""worst-case.py OUTDIR - writes messages built to cost the most to score

Each file is a message a sender could write and an MTA would pass (at
most 10 MB, the default message_size_limit of Postfix and max_message_size
of Sift), shaped after a cost that grew faster than the message once, or
that could: many copies of one field, a huge header, encoded words cycling
through charsets, deep or unclosed HTML, thousands of URIs, long lines,
many MIME parts. Score them one by one and read the time sift check prints:

    contrib/bench/worst-case.py /tmp/worst
    for f in /tmp/worst/*.eml; do sift -c CONF check "$f" | head -1; done

contrib/bench/README lists what they took when last measured; a message
that takes much longer than its neighbours is a defect to look into.
"""
import base64
import os
import random
import sys

HEAD = ("From: Alice <alice@example.com>\nTo: bob@example.org\n"
        "Date: Mon, 1 Dec 2025 10:00:00 +0000\nMessage-ID: <w@example.com>\n")
MIME = "MIME-Version: 1.0\n"
CHARSETS = ["iso-8859-2", "iso-8859-5", "iso-8859-7", "koi8-r", "windows-1251",
            "gb2312", "big5", "shift_jis", "euc-jp", "euc-kr", "tis-620", "cp850",
            "macintosh", "cp437", "koi8-u", "iso-8859-4", "windows-1250",
            "windows-1253", "cp866", "iso-8859-9"]


def shapes(rnd):
    """(name, text) of each message."""
    yield "many-to-fields", (HEAD.replace("To: bob@example.org\n", "") + "Subject: s\n"
                             + "".join("To: u%d@example.com\n" % i for i in range(200000))
                             + "\nbody\n")
    yield "many-received", ("".join(
        "Received: from h%d.example.net (h%d.example.net [10.%d.%d.1]) by mx.example.org "
        "with ESMTP id X%d; Mon, 1 Dec 2025 09:00:00 +0000\n"
        % (i, i, i % 250, i // 250 % 250, i) for i in range(50000)) + HEAD + "Subject: s\n\nbody\n")
    yield "huge-header", (HEAD + "Subject: s\n" + "".join(
        "To: " + ", ".join("u%d.%d@example.com" % (i, j) for j in range(400)) + "\n"
        for i in range(990)) + "\nbody\n")
    # in the Subject (within max_header_size) and in the parts' file names
    words = lambda n: " ".join("=?%s?B?%s?=" % (CHARSETS[i % len(CHARSETS)],
                                               base64.b64encode(b"word").decode())
                               for i in range(n))
    yield "charset-cycle", (HEAD + "Subject: " + words(9000) + "\n" + MIME
                            + "Content-Type: multipart/mixed; boundary=B\n\n"
                            + "".join("--B\nContent-Type: application/octet-stream\n"
                                      "Content-Disposition: attachment; filename=\"%s\"\n\nAAAA\n"
                                      % words(400) for _ in range(490)) + "--B--\n")
    yield "long-content-type", (HEAD + "Subject: s\n" + MIME
                                + "Content-Type: multipart/mixed; boundary=B\n\n--B\n"
                                + "Content-Type: application/octet-stream"
                                + "".join(";\n p%d=v%d" % (i, i) for i in range(250000))
                                + "\n\nTVqQAAMAAAAEAAAA\n--B--\n")
    yield "html-deep", (HEAD + "Subject: s\n" + MIME + "Content-Type: text/html\n\n<html><body>"
                        + "<div><font color=#ffffff style=\"color:#fefefe\">" * 100000 + "x"
                        + "</font></div>" * 100000 + "</body></html>\n")
    yield "html-unclosed", (HEAD + "Subject: s\n" + MIME + "Content-Type: text/html\n\n"
                            + "<a href=\"http://x.example/<b title='" * 150000 + "\n")
    yield "many-uris", (HEAD + "Subject: s\n\n" + "\n".join(
        "http://h%d.example%d.com/r?u=http%%3A%%2F%%2Fy%d.example.net%%2F&p=%d" % (i, i % 977, i, i)
        for i in range(120000)) + "\n")
    yield "long-domain", (HEAD + "Subject: s\n\nhttp://" + ".".join("a" * 3 for _ in range(1000000))
                          + ".com/x\n")
    yield "one-long-line", HEAD + "Subject: s\n\n" + "x" * 9000000 + "\n"
    yield "many-parts", (HEAD + "Subject: s\n" + MIME + "Content-Type: multipart/mixed; boundary=B\n\n"
                         + "".join("--B\nContent-Type: text/%s; charset=%s\n\n%s\n"
                                   % ("html" if i % 2 else "plain", CHARSETS[i % len(CHARSETS)],
                                      "<p>free money</p> " * 400 if i % 2 else "cheap pills " * 600)
                                   for i in range(600)) + "--B--\n")
    yield "nested-parts", (HEAD + "Subject: s\n" + MIME + "".join(
        "Content-Type: multipart/mixed; boundary=B%d\n\n--B%d\n" % (i, i) for i in range(300))
        + "Content-Type: text/plain\n\ninnermost\n"
        + "".join("--B%d--\n" % i for i in reversed(range(300))))
    yield "bad-base64", (HEAD + "Subject: s\n" + MIME + "Content-Type: text/plain\n"
                         + "Content-Transfer-Encoding: base64\n\n"
                         + "".join("QUJD!@#$%^&*()==\n" for _ in range(500000)))
    words = ["".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(4, 12)))
             for _ in range(200000)]
    yield "random-words", (HEAD + "Subject: s\n\n" + "\n".join(
        " ".join(rnd.choice(words) for _ in range(12)) for _ in range(80000)) + "\n")
    yield "form-phrases", (HEAD + "Subject: s\n" + MIME + "Content-Type: multipart/mixed; boundary=B\n\n"
                           + "".join("--B\nContent-Type: text/plain\n\n"
                                     + "your name: your address: your phone: " * 1300 + "\n"
                                     for _ in range(150)) + "--B--\n")


def main():
    if len(sys.argv) != 2:
        sys.stderr.write("usage: worst-case.py OUTDIR\n")
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rnd = random.Random(1)
    for name, text in shapes(rnd):
        data = text.encode("utf-8")
        if len(data) > 10 * 1024 * 1024:
            sys.stderr.write("worst-case.py: %s is %d bytes, over 10 MB\n" % (name, len(data)))
            return 1
        with open(os.path.join(out, name + ".eml"), "wb") as f:
            f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
