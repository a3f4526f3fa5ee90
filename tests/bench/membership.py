#!/usr/bin/python3
"""tests/bench/membership.py: moving objects when hosts join and leave
(`make bench` runs it).

Six `dobj serve --cluster` hosts on loopback (one shard each, replicas 5,
quorum 3, a shared file:// store, the counter class). Under load (wrk -t2
-c64 on 1,000 counters through host 1, tests/bench/names.lua, for the whole
run), PROBES more counters are each written by a closed-loop client of their
own through hosts 1 and 2 in turn, so that each one's acknowledged writes
come every few milliseconds. Then:

  join    a seventh host starts with a version-2 file (`previous 1..6`) and
          the six get SIGHUP; once every host's /_status says `moving 0`, the
          `previous` line goes (SIGHUP again);
  leave   a version-3 file with `leaving 6` (so the probes' entry hosts stay);
          SIGHUP; once nothing moves, host 6's lines go (SIGHUP), then it stops.

Per change: how long until no host had anything left to move, and for each
probed object whose placement changed, the longest gap between two of its
acknowledged writes around the change (its unavailability; the same for
objects that did not move shows the baseline); medians and max. At the end
every probed counter must equal its acknowledged writes (503s are unknown
outcomes and may count). The report goes to stdout and
DOBJ_BUILD/bench/membership.md.

Environment: DOBJ_BUILD (build), PROBES (48), SETTLE (3: seconds of load
before and after each change).
"""
import hashlib
import json
import os
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cluster as cb  # noqa: E402

PROBES = int(os.environ.get("PROBES", "48"))
SETTLE = float(os.environ.get("SETTLE", "3"))


def placement(name, members):
    """(leader, replica set) under `members` (router/cluster.c's placement)."""
    import xxhash
    oid = hashlib.sha256(f"counter/{name}".encode()).digest()[:16]
    w = {h: xxhash.xxh3_64_intdigest(oid + struct.pack("<I", h), seed=0) for h in members}
    rank = sorted(members, key=lambda h: (-w[h], h))
    return rank[0], frozenset(rank[1:6])


class Host:
    def __init__(self, tmp, i, conf):
        self.i, self.client, self.peer = i, cb.free_port(), cb.free_port()
        self.tmp, self.conf, self.proc = tmp, conf, None

    def line(self):
        return f"host {self.i} 127.0.0.1:{self.client} 127.0.0.1:{self.peer}\n"

    def url(self):
        return f"http://127.0.0.1:{self.client}"

    def start(self):
        log = open(self.tmp / f"dobj-{self.i}.log", "ab")
        self.proc = subprocess.Popen(
            [str(cb.BUILD / "dobj"), "serve", "--cluster", str(self.conf), "--host-id", str(self.i), "--data",
             str(self.tmp / f"h{self.i}"), "--shards", "1", "--store", f"file://{self.tmp}/store", "--class",
             str(cb.BUILD / "examples/counter.so"), "--log-level", os.environ.get("LOG_LEVEL", "warn")],
            stdout=log, stderr=subprocess.STDOUT)
        if not cb.wait_http(f"{self.url()}/_hello"):
            sys.exit(f"bench: dobj host {self.i} did not start; see {self.tmp}/dobj-{self.i}.log")

    def status(self):
        with urllib.request.urlopen(f"{self.url()}/_status", timeout=10) as r:
            return dict(line.split(" ", 1) for line in r.read().decode().splitlines() if not line.startswith("host "))


def write_conf(conf, hosts, version=1, previous=(), leaving=()):
    text = f"secret bench-cluster-secret\nversion {version}\n"
    if previous:
        text += "previous " + " ".join(map(str, previous)) + "\n"
    if leaving:
        text += "leaving " + " ".join(map(str, leaving)) + "\n"
    conf.write_text(text + "".join(h.line() for h in hosts))


def hup(hosts):
    for h in hosts:
        h.proc.send_signal(signal.SIGHUP)


def wait_moved(hosts, version, timeout=120):
    t0, said = time.monotonic(), 0
    while True:
        try:
            st = [h.status() for h in hosts]
            if all(int(s["version"]) == version and int(s["moving"]) == 0 for s in st):
                return time.monotonic() - t0
            if os.environ.get("VERBOSE") == "1" and time.monotonic() - t0 > said:
                said += 1
                print(f"bench: {time.monotonic() - t0:.1f} s: moving " +
                      " ".join(f"{h.i}:{s['version']}/{s['moving']}" for h, s in zip(hosts, st)), flush=True)
        except (urllib.error.URLError, OSError, KeyError):
            pass
        if time.monotonic() - t0 > timeout:
            sys.exit(f"bench: objects still moving {timeout} s after the change")
        time.sleep(0.05)


class Probe(threading.Thread):
    """One counter written in a closed loop through the entry hosts in turn."""

    def __init__(self, name, urls):
        super().__init__()
        self.name, self.urls = name, urls
        self.acked, self.unknown, self.times = 0, 0, []
        self.stop = threading.Event()

    def run(self):
        k = 0
        while not self.stop.is_set():
            url = f"{self.urls[k % len(self.urls)]}/counter/{self.name}"
            k += 1
            try:
                req = urllib.request.Request(url, data=b"", method="POST")
                with urllib.request.urlopen(req, timeout=10) as r:
                    ok = r.status == 200
            except (urllib.error.URLError, OSError):
                ok = False
            if ok:
                self.acked += 1
                self.times.append(time.monotonic())
            else:
                self.unknown += 1
                time.sleep(0.005)

    def gap(self, t0, t1):
        ts = [t0] + [t for t in self.times if t0 < t < t1] + [t1]
        return max(b - a for a, b in zip(ts, ts[1:]))


def main():
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk is missing (make deps installs it)")
    tmp = Path(tempfile.mkdtemp(prefix="dobj-bench-membership-"))
    conf = tmp / "cluster.conf"
    hosts = {i: Host(tmp, i, conf) for i in range(1, 8)}
    six = [hosts[i] for i in range(1, 7)]
    probes, wrk_proc, results = [], None, {}
    try:
        write_conf(conf, six)
        for h in six:
            h.start()
        time.sleep(1.5)  # peer connections up
        names = [f"probe-{k}" for k in range(PROBES)]
        probes = [Probe(n, [hosts[1].url(), hosts[2].url()]) for n in names]
        wnames = tmp / "names.txt"
        wnames.write_text("\n".join(f"load-{k}" for k in range(1000)) + "\n")
        duration = int(4 * SETTLE + 60)
        wrk_proc = subprocess.Popen(
            ["wrk", "-t2", "-c64", f"-d{duration}s", "-s", str(cb.REPO / "tests/bench/names.lua"), hosts[1].url()],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "NAMES": str(wnames)})
        for p in probes:
            p.start()
        time.sleep(SETTLE)

        # join
        before = {n: placement(n, range(1, 7)) for n in names}
        write_conf(conf, six + [hosts[7]], version=2, previous=range(1, 7))
        hosts[7].start()
        t0 = time.monotonic()
        hup(six)
        took = wait_moved(list(hosts.values()), 2)
        t1 = time.monotonic()
        after = {n: placement(n, range(1, 8)) for n in names}
        results["join (host 7)"] = (t0, t1, took, [n for n in names if before[n] != after[n]])
        time.sleep(SETTLE)
        write_conf(conf, list(hosts.values()), version=2)
        hup(hosts.values())
        time.sleep(SETTLE)

        # leave
        before = after
        write_conf(conf, list(hosts.values()), version=3, previous=range(1, 8), leaving=[6])
        t0 = time.monotonic()
        hup(hosts.values())
        took = wait_moved(list(hosts.values()), 3)
        t1 = time.monotonic()
        members = [1, 2, 3, 4, 5, 7]
        after = {n: placement(n, members) for n in names}
        results["leave (host 6)"] = (t0, t1, took, [n for n in names if before[n] != after[n]])
        time.sleep(SETTLE)
        rest = [hosts[i] for i in members]
        write_conf(conf, rest, version=3)
        hup(rest)
        time.sleep(SETTLE)
        hosts[6].proc.send_signal(signal.SIGTERM)
        hosts[6].proc.wait(timeout=30)
        time.sleep(1)
        for p in probes:
            p.stop.set()
        for p in probes:
            p.join()
        wrk_proc.send_signal(signal.SIGINT)
        wrk_out = wrk_proc.communicate(timeout=60)[0]
        lost = []
        for p in probes:
            with urllib.request.urlopen(f"{hosts[1].url()}/counter/{p.name}", timeout=10) as r:
                value = json.loads(r.read())["value"]
            if not p.acked <= value <= p.acked + p.unknown:
                lost.append((p.name, value, p.acked, p.unknown))
    finally:
        for p in probes:
            p.stop.set()
        if wrk_proc is not None and wrk_proc.poll() is None:
            wrk_proc.kill()
        cb.stop([h.proc for h in hosts.values() if h.proc is not None])
        if os.environ.get("KEEP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)
    by_name = {p.name: p for p in probes}
    lines = [f"| change | objects moved (of {PROBES}) | nothing left to move after | longest gap per moved object: "
             "median | max | objects that stayed: median |", "|---|--:|--:|--:|--:|--:|"]
    for what, (t0, t1, took, moved) in results.items():
        gaps = sorted(by_name[n].gap(t0 - 0.5, t1 + 0.5) * 1000 for n in moved)
        still = [by_name[n].gap(t0 - 0.5, t1 + 0.5) * 1000 for n in by_name if n not in moved]
        lines.append(f"| {what} | {len(moved)} | {took:.2f} s | {statistics.median(gaps):.0f} ms | {gaps[-1]:.0f} ms | "
                     + (f"{statistics.median(still):.0f} ms |" if still else "- |"))
    acked = sum(p.acked for p in probes)
    unknown = sum(p.unknown for p in probes)
    rps = [line for line in wrk_out.splitlines() if "Requests/sec" in line]
    non2xx = [line for line in wrk_out.splitlines() if "Non-2xx" in line]
    lines += ["", f"Probed writes: {acked} acknowledged, {unknown} unknown (503 or reset), "
              f"{len(lost)} counters off; background load {rps[0].split()[-1] if rps else '?'} req/s, "
              f"{non2xx[0].split()[-1] if non2xx else 0} of its answers not 2xx."]
    report = "\n".join(lines) + "\n"
    print(report)
    out = cb.BUILD / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "membership.md").write_text(report)
    if lost:
        print(f"bench: acknowledged writes lost: {lost[:5]}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
