#!/usr/bin/env python3
"""soak.py - the moving part of contrib/soak/soak.sh: injects messages over
SMTP into a private Postfix with a few threads, runs the fault timetable
(Redis killed and restarted, Redis frozen, the DNS server silent, SIGHUP to
sift-milter), samples the daemon's memory, collects what smtp-sink received,
waits for the queue to drain and prints the report. soak.sh starts and stops
the processes; this script only signals them (and restarts Redis). Standard
library only. Exit status: 0 when every check passed, 1 otherwise.
"""

import argparse
import json
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time

SOAK_HEADER = b"X-Soak-Id: "
# Loaded messages are bounded so that a huge directory cannot exhaust memory.
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_TOTAL_BYTES = 512 * 1024 * 1024
MAX_FILES = 100000
SMTP_TIMEOUT_S = 120
# A sink file untouched this long is complete (smtp-sink writes as it reads).
SINK_SETTLE_S = 3
QUEUE_DIRS = ("maildrop", "incoming", "active", "deferred", "hold", "corrupt")


def now():
    return time.time()


def log(fmt, *a):
    sys.stderr.write("soak: " + (fmt % a if a else fmt) + "\n")
    sys.stderr.flush()


# ------------------------------------------------------------ messages


def load_messages(paths):
    """Every regular file under the given files or directories, in a stable
    order, line ends made CRLF (smtplib sends bytes as they are)."""
    files = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, names in os.walk(p):
                dirs.sort()
                for n in sorted(names):
                    files.append(os.path.join(root, n))
        elif os.path.isfile(p):
            files.append(p)
        else:
            sys.exit("soak: %s: no such file or directory" % p)
    msgs, total = [], 0
    for f in files:
        if len(msgs) >= MAX_FILES or total >= MAX_TOTAL_BYTES:
            log("loaded the first %d files (%d bytes); the rest are not used", len(msgs), total)
            break
        try:
            if not os.path.isfile(f) or os.path.getsize(f) > MAX_FILE_BYTES:
                continue
            with open(f, "rb") as fh:
                data = fh.read()
        except OSError as e:
            log("skipping %s: %s", f, e)
            continue
        if not data.strip():
            continue
        data = re.sub(rb"\r?\n", b"\r\n", data)
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        msgs.append(data)
        total += len(data)
    if not msgs:
        sys.exit("soak: no messages found in %s" % " ".join(paths))
    return msgs


# ------------------------------------------------------------ processes


def proc_state(pid):
    """The state letter of a process, or None when it is gone. A dead child of
    soak.sh stays a zombie (Z) until the shell waits for it."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
        return s[s.rindex(")") + 2]
    except (OSError, ValueError, IndexError):
        return None


def alive(pid):
    st = proc_state(pid)
    return st is not None and st not in "ZX"


def mem_sample(pid):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "RssAnon", "RssFile", "VmHWM", "Threads"):
                    out[k] = int(v.split()[0])
    except OSError:
        return None
    return out


def signal_pid(pid, sig):
    try:
        os.kill(pid, sig)
        return True
    except OSError:
        return False


class Redis:
    """The Redis server of the run: killed and started again with the same
    command line; its current PID is kept in a file soak.sh's trap reads."""

    def __init__(self, pid_file, argv_file, log_file):
        self.pid_file = pid_file
        with open(argv_file) as f:
            self.argv = [l.rstrip("\n") for l in f if l.strip()]
        self.log_file = log_file
        with open(pid_file) as f:
            self.pid = int(f.read().strip())
        self.child = None

    def kill(self):
        signal_pid(self.pid, signal.SIGCONT)
        signal_pid(self.pid, signal.SIGKILL)
        if self.child is not None:
            self.child.wait(timeout=10)
        else:
            end = now() + 10
            while alive(self.pid) and now() < end:
                time.sleep(0.05)

    def start(self):
        with open(self.log_file, "ab") as lf:
            self.child = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=lf,
                                          stderr=subprocess.STDOUT)
        self.pid = self.child.pid
        with open(self.pid_file + ".tmp", "w") as f:
            f.write("%d\n" % self.pid)
        os.rename(self.pid_file + ".tmp", self.pid_file)


# ------------------------------------------------------------ the run


class Run:
    def __init__(self, a, msgs):
        self.a = a
        self.msgs = msgs
        self.lock = threading.Lock()
        self.next_seq = 0
        self.done = 0
        self.stop = threading.Event()  # no new messages
        self.finished = threading.Event()  # injection over: faults end
        self.warm = threading.Event()
        self.phase = "warm-up"
        self.phases = []  # (start, end or None, name)
        self.events = []  # (time, text)
        self.results = open(os.path.join(a.dir, "results.tsv"), "w")
        self.results.write("#seq\tstart\tphase\toutcome\tcode\tlatency_ms\tsession_ms\treply\n")
        self.mem = []  # (time, phase, sample)
        self.hups = 0
        self.last_hup = None
        self.milter_died = None
        self.delivered = {}  # soak id -> copies
        self.delivered_unscored = 0
        self.delivered_error_field = 0
        self.run_id = "%x" % int(now())
        self.redis = None
        if not a.no_faults and not a.no_redis:
            self.redis = Redis(a.redis_pid_file, a.redis_argv, a.redis_log)
        self.frozen = set()
        self.interrupted = False

    # --- timeline

    def set_phase(self, name):
        t = now()
        with self.lock:
            if self.phases:
                s, _, n = self.phases[-1]
                self.phases[-1] = (s, t, n)
            self.phases.append((t, None, name))
            self.phase = name
        self.event("phase %s" % name)

    def event(self, text):
        t = now()
        with self.lock:
            self.events.append((t, "%s [%s]" % (text, self.phase)))
        log("%s", text)

    def sleep(self, s):
        """Sleeps up to s seconds; False when the run ended meanwhile."""
        return not self.finished.wait(s)

    # --- the injector

    def take(self):
        with self.lock:
            if self.stop.is_set() or self.next_seq >= self.a.count:
                return None
            self.next_seq += 1
            return self.next_seq, self.phase

    def client_for(self, seq):
        """Envelope variety that makes the DNS lists and Redis work: most
        clients and sender domains are new (cache misses); every 20th client
        is listed (rejected), every 25th sender domain is listed."""
        if seq % 20 == 0:
            ip = "192.0.2.2"
        elif seq % 20 == 7:
            ip = "192.0.2.3"
        else:
            n = seq % 131072
            ip = "198.%d.%d.%d" % (18 + (n >> 16), (n >> 8) & 255, n & 255 or 1)
        dom = "listed-sender.test" if seq % 25 == 0 else "s%d-%s.test" % (seq, self.run_id)
        return ip, "soak@" + dom

    def one(self, seq, phase):
        ip, sender = self.client_for(seq)
        body = self.msgs[(seq - 1) % len(self.msgs)]
        data = SOAK_HEADER + ("%s-%d" % (self.run_id, seq)).encode() + b"\r\n" + body
        t0 = now()
        t1 = None
        outcome, code, reply, lat = "error", 0, "", None
        s = None
        try:
            s = smtplib.SMTP("127.0.0.1", self.a.port, local_hostname="client.soak.test",
                             timeout=SMTP_TIMEOUT_S)
            c, r = s.ehlo()
            c, r = s.docmd("XCLIENT", "ADDR=%s NAME=[UNAVAILABLE] HELO=client.soak.test" % ip)
            if c != 220:
                raise smtplib.SMTPResponseException(c, r)
            s.ehlo_resp = None
            c, r = s.ehlo()
            t1 = now()
            c, r = s.mail(sender)
            if c == 250:
                c, r = s.rcpt("rcpt@sink.soak.test")
            if c in (250, 251):
                c, r = s.data(data)
            lat = (now() - t1) * 1000
            code, reply = c, r.decode("utf-8", "replace") if isinstance(r, bytes) else str(r)
            outcome = {2: "accept", 4: "tempfail", 5: "reject"}.get(c // 100, "error")
        except smtplib.SMTPDataError as e:
            code, reply = e.smtp_code, e.smtp_error.decode("utf-8", "replace")
            lat = (now() - t1) * 1000 if t1 is not None else None
            outcome = {4: "tempfail", 5: "reject"}.get(code // 100, "error")
        except (smtplib.SMTPException, OSError) as e:
            reply = "%s: %s" % (type(e).__name__, e)
        finally:
            if s is not None:
                try:
                    s.quit()
                except (smtplib.SMTPException, OSError):
                    s.close()
        session = (now() - t0) * 1000
        reply = reply.replace("\t", " ").replace("\n", " ").replace("\r", " ")
        with self.lock:
            self.results.write("%d\t%.3f\t%s\t%s\t%d\t%s\t%.1f\t%s\n" % (
                seq, t0, phase, outcome, code, "%.1f" % lat if lat is not None else "-", session,
                reply))
            self.done += 1
            if not self.warm.is_set() and self.done >= self.a.warmup:
                self.warm.set()

    def worker(self):
        while True:
            j = self.take()
            if j is None:
                return
            self.one(*j)

    # --- faults, signals, memory

    def undo_faults(self):
        for pid in list(self.frozen):
            signal_pid(pid, signal.SIGCONT)
        self.frozen.clear()
        if self.redis is not None and not alive(self.redis.pid):
            self.redis.start()
            self.event("redis started again (pid %d) at the end of the run" % self.redis.pid)

    def faults(self):
        a = self.a
        cycle = []
        if not a.no_redis:
            cycle += [("normal", a.gap), ("redis-killed", a.fault_time), ("normal", a.gap),
                      ("redis-frozen", a.freeze)]
        if not a.no_dns:
            cycle += [("normal", a.gap), ("dns-silent", a.fault_time)]
        if not cycle:
            cycle = [("normal", a.gap)]
        i = 0
        while not self.finished.is_set():
            if i == len(cycle):
                # The first outage fills the bounded queues (Redis writes
                # wait in rep_queue_max); later cycles must not add to it.
                m = mem_sample(a.milter_pid)
                if m:
                    with self.lock:
                        self.mem.append((now(), "cycle1", m))
                self.event("first fault cycle done")
            name, length = cycle[i % len(cycle)]
            i += 1
            self.set_phase(name)
            if name == "redis-killed":
                self.redis.kill()
                self.event("redis killed (SIGKILL)")
                ok = self.sleep(length)
                self.redis.start()
                self.event("redis restarted (pid %d)" % self.redis.pid)
            elif name == "redis-frozen":
                pid = self.redis.pid
                self.frozen.add(pid)
                signal_pid(pid, signal.SIGSTOP)
                self.event("redis frozen (SIGSTOP pid %d)" % pid)
                ok = self.sleep(length)
                signal_pid(pid, signal.SIGCONT)
                self.frozen.discard(pid)
                self.event("redis thawed (SIGCONT)")
            elif name == "dns-silent":
                self.frozen.add(a.unbound_pid)
                signal_pid(a.unbound_pid, signal.SIGSTOP)
                self.event("DNS server silent (SIGSTOP unbound pid %d)" % a.unbound_pid)
                ok = self.sleep(length)
                signal_pid(a.unbound_pid, signal.SIGCONT)
                self.frozen.discard(a.unbound_pid)
                self.event("DNS server answering again (SIGCONT)")
            else:
                ok = self.sleep(length)
            if not ok:
                break

    def hupper(self):
        while self.sleep(self.a.hup):
            if not alive(self.a.milter_pid):
                return
            signal_pid(self.a.milter_pid, signal.SIGHUP)
            with self.lock:
                self.hups += 1
                self.last_hup = now()
                if self.hups == 1:
                    self.events.append((self.last_hup, "first SIGHUP [%s]" % self.phase))

    def watch(self):
        """Memory every few seconds; stops the injection when the daemon dies."""
        next_mem = 0
        while True:
            t = now()
            if not alive(self.a.milter_pid):
                if self.milter_died is None:
                    self.milter_died = (t, self.phase)
                    self.event("sift-milter (pid %d) is gone (state %s)" % (
                        self.a.milter_pid, proc_state(self.a.milter_pid)))
                    self.stop.set()
                return
            if t >= next_mem:
                m = mem_sample(self.a.milter_pid)
                if m:
                    with self.lock:
                        self.mem.append((t, self.phase, m))
                next_mem = t + self.a.mem_interval
            if self.finished.wait(0.25):
                m = mem_sample(self.a.milter_pid)
                if m:
                    with self.lock:
                        self.mem.append((now(), "end", m))
                return

    # --- the sink and the queue

    def harvest(self, settle):
        """Reads the soak id of every complete sink file, then removes it."""
        limit = now() - settle
        n = 0
        try:
            ents = list(os.scandir(self.a.sink_dir))
        except OSError:
            return 0
        for e in ents:
            try:
                if not e.is_file() or e.stat().st_mtime > limit:
                    continue
                with open(e.path, "rb") as f:
                    head = f.read(256 * 1024)
            except OSError:
                continue
            i = head.find(b"\n" + SOAK_HEADER)
            hdr_end = head.find(b"\r\n\r\n", head.find(SOAK_HEADER) if i >= 0 else 0)
            hdrs = head[:hdr_end if hdr_end >= 0 else len(head)]
            if i >= 0:
                j = head.find(b"\n", i + 1)
                sid = head[i + 1 + len(SOAK_HEADER):j].strip().decode("ascii", "replace")
                self.delivered[sid] = self.delivered.get(sid, 0) + 1
                if b"\nX-Spam-Status: " not in hdrs:
                    self.delivered_unscored += 1
                if b"\nX-Sift-Error" in hdrs:
                    self.delivered_error_field += 1
            else:
                self.delivered["?"] = self.delivered.get("?", 0) + 1
            os.unlink(e.path)
            n += 1
        return n

    def harvester(self):
        while not self.finished.wait(2):
            self.harvest(SINK_SETTLE_S)

    def queued(self):
        n = 0
        for d in QUEUE_DIRS:
            for _, _, names in os.walk(os.path.join(self.a.queue_dir, d)):
                n += len(names)
        return n

    # --- main

    def run(self):
        a = self.a
        m = mem_sample(a.milter_pid)
        if m:
            self.mem.append((now(), "start", m))
        t_start = now()
        self.set_phase("warm-up")
        threads = [threading.Thread(target=self.worker, daemon=True) for _ in range(a.jobs)]
        helpers = [threading.Thread(target=self.watch, daemon=True),
                   threading.Thread(target=self.harvester, daemon=True)]
        for t in threads + helpers:
            t.start()
        deadline = t_start + a.time_limit
        fault_threads = []
        try:
            while any(t.is_alive() for t in threads):
                if now() >= deadline and not self.stop.is_set():
                    self.event("time limit (%d s) reached: no more messages" % a.time_limit)
                    self.stop.set()
                if self.warm.is_set() and not fault_threads and not self.stop.is_set():
                    self.event("warm-up done (%d messages)" % self.done)
                    with self.lock:
                        self.mem.append((now(), "warm", mem_sample(a.milter_pid) or {}))
                    if not a.no_faults:
                        fault_threads.append(threading.Thread(target=self.faults, daemon=True))
                    else:
                        self.set_phase("normal")
                    if a.hup > 0:
                        fault_threads.append(threading.Thread(target=self.hupper, daemon=True))
                    for t in fault_threads:
                        t.start()
                    fault_threads.append(None)  # started
                time.sleep(0.2)
                # A worker stuck past the time limit is bounded by the SMTP timeout.
                if now() > deadline + SMTP_TIMEOUT_S + 10:
                    self.event("workers did not finish %d s after the time limit" % SMTP_TIMEOUT_S)
                    break
        except KeyboardInterrupt:
            self.event("interrupted: no more messages, no drain")
            self.stop.set()
            self.interrupted = True
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        t_inject_end = now()
        self.finished.set()
        for t in fault_threads + helpers:
            if t is not None:
                t.join(30)
        self.undo_faults()
        self.set_phase("drain")
        self.results.flush()
        # Every accepted message must leave the queue: wait, bounded.
        drain_end = now() + (0 if self.interrupted else a.drain_timeout)
        q = self.queued()
        while q and now() < drain_end:
            self.harvest(SINK_SETTLE_S)
            time.sleep(1)
            q = self.queued()
        time.sleep(SINK_SETTLE_S)
        self.harvest(0)
        self.results.close()
        m = mem_sample(a.milter_pid)
        if m:
            self.mem.append((now(), "after-drain", m))
        return self.report(t_start, t_inject_end, q)

    # ------------------------------------------------------------ report

    def report(self, t_start, t_inject_end, queued):
        a = self.a
        rows = []
        with open(os.path.join(a.dir, "results.tsv")) as f:
            for line in f:
                if line.startswith("#"):
                    continue
                p = line.rstrip("\n").split("\t")
                rows.append(p)
        by_phase = {}
        order = []
        for p in rows:
            ph = p[2]
            if ph not in by_phase:
                by_phase[ph] = []
                order.append(ph)
            by_phase[ph].append(p)
        sid = lambda p: "%s-%s" % (self.run_id, p[0])
        # smtplib gives the reply text without its code.
        policy_tf = a.tempfail_reply.split(" ", 1)[-1]

        out = []
        w = out.append
        elapsed = t_inject_end - t_start
        w("soak report (%s)" % time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t_start)))
        w("  messages: %d injected in %.0f s (%.1f msgs/s through Postfix, %d threads), "
          "%d distinct files" % (len(rows), elapsed, len(rows) / elapsed if elapsed else 0,
                                 a.jobs, len(self.msgs)))
        hdr = "%-13s %8s %8s %9s %8s %9s %8s %6s %6s %8s %8s" % (
            "phase", "injected", "accepted", "delivered", "rejected", "tempfail", "(policy)",
            "errors", "LOST", "p50_ms", "p99_ms")
        w("")
        w(hdr)
        tot = {"inj": 0, "acc": 0, "dlv": 0, "rej": 0, "tf": 0, "tfp": 0, "err": 0, "lost": 0}
        all_lat = []
        lost_ids = []
        for ph in order:
            ps = by_phase[ph]
            acc = [p for p in ps if p[3] == "accept"]
            dlv = sum(1 for p in acc if sid(p) in self.delivered)
            rej = sum(1 for p in ps if p[3] == "reject")
            tfs = [p for p in ps if p[3] == "tempfail"]
            tfp = sum(1 for p in tfs if p[7].startswith(policy_tf))
            err = sum(1 for p in ps if p[3] == "error")
            lost = [sid(p) for p in acc if sid(p) not in self.delivered]
            lat = sorted(float(p[5]) for p in ps if p[5] != "-")
            all_lat += lat
            w("%-13s %8d %8d %9d %8d %9d %8d %6d %6d %8s %8s" % (
                ph, len(ps), len(acc), dlv, rej, len(tfs), tfp, err, len(lost), pct(lat, 50),
                pct(lat, 99)))
            for k, v in (("inj", len(ps)), ("acc", len(acc)), ("dlv", dlv), ("rej", rej),
                         ("tf", len(tfs)), ("tfp", tfp), ("err", err), ("lost", len(lost))):
                tot[k] += v
            lost_ids += lost
        all_lat.sort()
        w("%-13s %8d %8d %9d %8d %9d %8d %6d %6d %8s %8s" % (
            "total", tot["inj"], tot["acc"], tot["dlv"], tot["rej"], tot["tf"], tot["tfp"],
            tot["err"], tot["lost"], pct(all_lat, 50), pct(all_lat, 99)))
        # Accepted but neither delivered nor still queued is lost; what is
        # still queued after the drain timeout is reported apart.
        really_lost = max(0, tot["lost"] - queued)
        dup = sum(v - 1 for k, v in self.delivered.items() if v > 1 and k != "?")
        # Delivered though the injector saw no 250 (a reply lost to a reset):
        # not lost, but worth knowing.
        accepted_ids = set(sid(p) for p in rows if p[3] == "accept")
        unrecorded = sum(1 for k in self.delivered if k != "?" and k not in accepted_ids)
        w("")
        w("  latency: from MAIL FROM to the reply to the end of DATA, per message, by the phase "
          "its session started in")
        w("  delivered with no X-Spam-Status (unscored): %d; with X-Sift-Error: %d; "
          "delivered twice: %d; delivered but not seen accepted: %d; sink files without "
          "a soak id: %d" % (self.delivered_unscored, self.delivered_error_field, dup,
                             unrecorded, self.delivered.get("?", 0)))
        w("  still queued after the drain (%d s max): %d" % (a.drain_timeout, queued))
        reasons = {}
        for p in rows:
            if p[3] in ("tempfail", "error") and not p[7].startswith(policy_tf):
                k = "%s %s" % (p[3], p[7][:90])
                reasons[k] = reasons.get(k, 0) + 1
        for k, v in sorted(reasons.items(), key=lambda x: -x[1])[:8]:
            w("  not by policy: %6d x %s" % (v, k))

        # memory
        w("")
        marks = {}
        for t, ph, m in self.mem:
            if ph in ("start", "warm", "cycle1", "end", "after-drain") and m:
                marks[ph] = m
        after_warm = [m for t, ph, m in self.mem if m and ph not in ("start", "warm-up")]
        peak = max((m.get("VmRSS", 0) for m in after_warm), default=0)

        def fm(m):
            return "VmRSS %d KiB (anon %d, file %d), %d threads" % (
                m.get("VmRSS", 0), m.get("RssAnon", 0), m.get("RssFile", 0), m.get("Threads", 0))

        for k in ("start", "warm", "cycle1", "end", "after-drain"):
            if k in marks:
                w("  memory %-12s %s" % (k + ":", fm(marks[k])))
        w("  memory samples: %d (every %g s); largest VmRSS after warm-up %d KiB" % (
            len(self.mem), a.mem_interval, peak))

        # daemon
        reloads = refused = 0
        try:
            with open(a.milter_log, errors="replace") as f:
                for line in f:
                    if "configuration reloaded" in line:
                        reloads += 1
                    elif "reload refused" in line:
                        refused += 1
        except OSError:
            pass
        survived = self.milter_died is None and alive(a.milter_pid)
        w("  sift-milter pid %d: %s; SIGHUPs sent %d, reloads logged %d, refused %d" % (
            a.milter_pid, "alive (same pid)" if survived else "DIED", self.hups, reloads, refused))
        if self.milter_died:
            t, ph = self.milter_died
            w("  sift-milter gone %.1f s into the run, in phase %s, %d SIGHUP(s) sent%s" % (
                t - t_start, ph, self.hups, ", the last %.2f s before it was seen gone" % (
                    t - self.last_hup) if self.last_hup else ""))

        w("")
        w("timeline (s from start):")
        for t, e in self.events:
            w("  %7.1f  %s" % (t - t_start, e))

        # verdict
        checks = []
        checks.append(("nothing lost (accepted, not delivered, not queued): %d" % really_lost,
                       really_lost == 0))
        checks.append(("queue drained: %d left" % queued, queued == 0))
        checks.append(("sift-milter survived with the same pid", survived))
        checks.append(("tempfails only by policy (reply '%s'): %d others" % (
            policy_tf, tot["tf"] - tot["tfp"]), tot["tf"] == tot["tfp"]))
        checks.append(("no connection errors: %d" % tot["err"], tot["err"] == 0))
        checks.append(("every delivered message was scored: %d unscored" % (
            self.delivered_unscored), self.delivered_unscored == 0))
        checks.append(("every message injected: %d of %d" % (len(rows), a.count),
                       len(rows) == a.count))
        ref = "warm" if a.no_faults else "cycle1"
        if ref in marks and "end" in marks:
            wr, er = marks[ref].get("VmRSS", 0), marks["end"].get("VmRSS", 0)
            limit = wr + max(wr * a.rss_slack_pct // 100, a.rss_slack_kib)
            checks.append(("RSS after the warm-up%s %d KiB, at the end %d KiB (limit %d)" % (
                "" if a.no_faults else " and the first fault cycle", wr, er, limit),
                er <= limit))
        elif "end" in marks:
            w("  RSS growth not checked: the run ended within the %s" % (
                "warm-up" if "warm" not in marks else "first fault cycle"))
        else:
            checks.append(("RSS measured after warm-up and at the end (the daemon was gone)",
                           False))
        w("")
        bad = 0
        for text, ok in checks:
            w("%s  %s" % ("PASS" if ok else "FAIL", text))
            bad += not ok
        if lost_ids and really_lost:
            w("  lost ids (first 10): %s" % " ".join(lost_ids[:10]))
        text = "\n".join(out) + "\n"
        sys.stdout.write(text)
        with open(os.path.join(a.dir, "report.txt"), "w") as f:
            f.write(text)
        with open(os.path.join(a.dir, "memory.tsv"), "w") as f:
            f.write("#time\tphase\tVmRSS_kib\tRssAnon_kib\tRssFile_kib\tThreads\n")
            for t, ph, m in self.mem:
                f.write("%.1f\t%s\t%s\t%s\t%s\t%s\n" % (t - t_start, ph, m.get("VmRSS", ""),
                                                      m.get("RssAnon", ""), m.get("RssFile", ""),
                                                      m.get("Threads", "")))
        return 1 if bad else 0


def pct(sorted_vals, p):
    if not sorted_vals:
        return "-"
    i = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return "%.0f" % sorted_vals[i] if sorted_vals[i] >= 10 else "%.1f" % sorted_vals[i]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", required=True, help="the run's directory (results, report)")
    ap.add_argument("--port", type=int, required=True, help="Postfix smtpd port on 127.0.0.1")
    ap.add_argument("--count", type=int, default=100000)
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--time-limit", type=int, default=7200)
    ap.add_argument("--drain-timeout", type=int, default=600)
    ap.add_argument("--no-faults", action="store_true")
    ap.add_argument("--gap", type=float, default=20)
    ap.add_argument("--fault-time", type=float, default=20)
    ap.add_argument("--freeze", type=float, default=30)
    ap.add_argument("--hup", type=float, default=10)
    ap.add_argument("--mem-interval", type=float, default=2)
    ap.add_argument("--rss-slack-pct", type=int, default=10)
    ap.add_argument("--rss-slack-kib", type=int, default=4096)
    ap.add_argument("--milter-pid", type=int, required=True)
    ap.add_argument("--milter-log", required=True)
    ap.add_argument("--tempfail-reply", required=True)
    ap.add_argument("--no-redis", action="store_true", help="Redis not configured: no Redis faults")
    ap.add_argument("--no-dns", action="store_true", help="no DNS lists: no DNS faults")
    ap.add_argument("--unbound-pid", type=int)
    ap.add_argument("--redis-pid-file", help="default: DIR/redis.pid")
    ap.add_argument("--redis-argv", help="file: redis-server argv, one a line (DIR/redis.argv)")
    ap.add_argument("--redis-log", help="default: DIR/redis.log")
    ap.add_argument("--sink-dir", required=True)
    ap.add_argument("--queue-dir", required=True)
    ap.add_argument("messages", nargs="+")
    a = ap.parse_args()

    def on_term(signum, frame):
        raise KeyboardInterrupt

    # soak.sh's trap stops the processes; a TERM here still undoes the faults first.
    signal.signal(signal.SIGTERM, on_term)
    if a.count < 1 or a.jobs < 1 or a.jobs > 64:
        sys.exit("soak: --count must be >= 1 and --jobs 1..64")
    a.warmup = min(a.warmup, a.count)
    a.redis_pid_file = a.redis_pid_file or os.path.join(a.dir, "redis.pid")
    a.redis_argv = a.redis_argv or os.path.join(a.dir, "redis.argv")
    a.redis_log = a.redis_log or os.path.join(a.dir, "redis.log")
    if not a.no_faults and not a.no_dns and not a.unbound_pid:
        sys.exit("soak: DNS faults need --unbound-pid (or --no-dns)")
    msgs = load_messages(a.messages)
    log("%d messages loaded, %d to send with %d threads", len(msgs), a.count, a.jobs)
    sys.exit(Run(a, msgs).run())


if __name__ == "__main__":
    main()
