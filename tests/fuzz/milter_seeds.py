#!/usr/bin/env python3
"""milter_seeds.py - writes the seed corpus of fuzz_milter (tests/fuzz/corpus_milter/).

Each seed is one session as an MTA sends it to a filter, in the packet form
fuzz_milter reads (4-byte big-endian length, command byte, data): the
sequence sift-mclient sends (see include/mclient.h: negotiation offering
everything, CONNECT, HELO, MAIL, RCPT, DATA, each header, EOH, the body in
CRLF chunks, end of message, QUIT, each stage preceded by its macros) for
the integration test messages under tests/data/milter/, plus a few sessions
in orders no MTA uses that libmilter lets through. Run it from anywhere;
it rewrites the corpus directory.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data", "milter")
OUT = os.path.join(HERE, "corpus_milter")


def pkt(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data


def macros(stage, pairs):
    return pkt(b"D", stage + b"".join(k + b"\0" + v + b"\0" for k, v in pairs))


def optneg():
    return pkt(b"O", struct.pack(">III", 6, 0x1FF, 0x1FFFFF))


def connect(ip=b"192.0.2.10", name=b"client.example.org", family=b"4"):
    return (macros(b"C", [(b"j", b"mx.sift.test"), (b"{daemon_name}", b"smtpd"),
                          (b"{client_addr}", ip), (b"_", name + b" [" + ip + b"]")])
            + pkt(b"C", name + b"\0" + family + struct.pack(">H", 4567) + ip + b"\0"))


def helo(h=b"client.example.org"):
    return macros(b"H", [(b"{tls_version}", b"TLSv1.3")]) + pkt(b"H", h + b"\0")


def split_message(raw):
    raw = raw.replace(b"\r\n", b"\n")
    head, _, body = raw.partition(b"\n\n")
    headers = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and headers:
            headers[-1][1] += b"\n" + line
        elif b":" in line:
            name, _, value = line.partition(b":")
            headers.append([name, value])
    return headers, body.replace(b"\n", b"\r\n")


def message(raw, qid=b"SEED0001", sender=b"<alice@example.org>",
            rcpts=(b"<bob@example.net>",), auth=None):
    m = [(b"i", qid), (b"{mail_addr}", sender.strip(b"<>"))]
    if auth:
        m.append((b"{auth_authen}", auth))
    out = macros(b"M", m) + pkt(b"M", sender + b"\0" + b"SIZE=1000\0")
    for r in rcpts:
        out += macros(b"R", [(b"{rcpt_addr}", r.strip(b"<>"))]) + pkt(b"R", r + b"\0")
    out += pkt(b"T")
    headers, body = split_message(raw)
    for name, value in headers:
        out += pkt(b"L", name + b"\0" + value + b"\0")
    out += pkt(b"N")
    for i in range(0, len(body), 65535):
        out += pkt(b"B", body[i:i + 65535])
    return out + macros(b"E", [(b"i", qid)]) + pkt(b"E")


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.unlink(os.path.join(OUT, f))
    seeds = {}
    for name in sorted(os.listdir(DATA)):
        with open(os.path.join(DATA, name), "rb") as fp:
            raw = fp.read()
        base = name.rsplit(".", 1)[0]
        seeds["session-" + base] = (optneg() + connect() + helo() + message(raw)
                                    + pkt(b"Q"))
    with open(os.path.join(DATA, "ham.eml"), "rb") as fp:
        ham = fp.read()
    with open(os.path.join(DATA, "spam.eml"), "rb") as fp:
        spam = fp.read()
    seeds["two-messages-abort-ipv6-auth"] = (
        optneg() + connect(b"2001:db8::1", b"v6.example.org", b"6") + helo()
        + message(spam, b"SEED0002", auth=b"alice")[:-5] + pkt(b"A")
        + message(ham, b"SEED0003", rcpts=(b"<a@example.net>", b"<b@example.net>"))
        + pkt(b"K") + connect() + message(ham, b"SEED0004") + pkt(b"Q"))
    flags = b"".join(b"X-Spam-Flag: YES\n" for _ in range(40))
    seeds["forty-forged-flags"] = (optneg() + connect() + helo()
                                   + message(b"Subject: flags\n" + flags + b"\nhi\n")
                                   + pkt(b"Q"))
    # Orders no MTA uses; the first one crashed sift-milter (issue 9).
    seeds["helo-before-negotiation"] = pkt(b"H", b"evil\0")
    seeds["no-connect-headers-without-mail"] = (
        optneg() + helo() + pkt(b"L", b"Subject\0x\0") + pkt(b"B", b"x") + pkt(b"E")
        + connect() + connect() + optneg() + pkt(b"M") + pkt(b"R") + pkt(b"E"))
    for name, data in seeds.items():
        with open(os.path.join(OUT, name), "wb") as fp:
            fp.write(data)


if __name__ == "__main__":
    main()
