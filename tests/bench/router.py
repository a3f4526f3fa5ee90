#!/usr/bin/python3
"""tests/bench/router.py: routing in a cluster (`make bench` runs it).

Six `dobj serve --cluster` hosts on loopback (one shard each, replicas 5,
quorum 3, a shared file:// store, the counter class), as in cluster.py:

  1. Through a host that does not lead: wrk (-t2 -c64) on host 2 for counter
     objects that host 1 leads, so every request is forwarded over the peer
     connection and its reply relayed, against wrk on host 1 itself, in
     alternating runs (RUNS of DURATION s), one object and 1,000; medians and
     the ratio.
  2. Failover, KILLS times each way: the host that leads a counter (read
     from `dobj-host`) is killed with SIGKILL (a crash: the kernel resets
     its connections, so its peers know at once) or frozen with SIGSTOP (a
     hang: its connections go silent, and its peers notice after
     peer_dead_ms, 1 s by default); then POSTs go through another host until
     one is acknowledged: the time from the signal to that answer. The host
     is then killed if frozen, started again, and must lead the counter again
     before the next round. Median and max. The counter's value is checked at
     the end against the acknowledged POSTs (a 503 during a failover has an
     unknown outcome: it may count).

Environment: DOBJ_BUILD (build), DURATION (10), WARMUP (2), RUNS (3),
KILLS (20). The report goes to stdout and DOBJ_BUILD/bench/router.md.
"""
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cluster as cb  # noqa: E402

KILLS = int(os.environ.get("KILLS", "20"))


def post(url, timeout=10):
    """(status, dobj-host) of a POST; (0, None) when the connection fails."""
    req = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers.get("dobj-host")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("dobj-host")
    except (urllib.error.URLError, OSError):
        return 0, None


def restart(p, tmp, host):
    log = open(tmp / f"dobj-{host}.log", "ab")
    q = subprocess.Popen(p.args, stdout=log, stderr=subprocess.STDOUT)
    return q


def failover(procs, urls, tmp, sig, obj):
    status, leader = post(f"{urls[1]}/counter/{obj}")
    assert status == 200, status
    acked, unknown, times = 1, 0, []
    for k in range(KILLS):
        leader = int(leader)
        entry = next(h for h in urls if h != leader)
        for _ in range(20):
            status, _ = post(f"{urls[entry]}/counter/{obj}")
            acked += status == 200
            unknown += status != 200
        procs[leader - 1].send_signal(sig)
        if sig == signal.SIGKILL:
            procs[leader - 1].wait()
        t0 = time.monotonic()
        while True:
            status, host = post(f"{urls[entry]}/counter/{obj}")
            if status == 200:
                acked += 1
                break
            unknown += 1
            if time.monotonic() - t0 > 30:
                sys.exit(f"bench: no write acknowledged 30 s after killing host {leader}")
            time.sleep(0.01)
        times.append(time.monotonic() - t0)
        print(f"bench: {sig.name} {k + 1}/{KILLS}: host {leader}, host {host} acknowledged after "
              f"{times[-1] * 1000:.0f} ms", flush=True)
        if sig != signal.SIGKILL:
            procs[leader - 1].kill()
            procs[leader - 1].wait()
        procs[leader - 1] = restart(procs[leader - 1], tmp, leader)
        if not cb.wait_http(f"{urls[leader]}/_hello"):
            sys.exit(f"bench: host {leader} did not start again")
        # It catches up, then leads its objects again through recovery.
        deadline = time.monotonic() + 30
        while True:
            status, host = post(f"{urls[entry]}/counter/{obj}")
            acked += status == 200
            unknown += status != 200
            if status == 200 and host == str(leader):
                break
            if time.monotonic() > deadline:
                sys.exit(f"bench: host {leader} did not lead again within 30 s")
            time.sleep(0.05)
    with urllib.request.urlopen(f"{urls[1]}/counter/{obj}", timeout=10) as r:
        value = json.loads(r.read())["value"]
    if not acked <= value <= acked + unknown:
        sys.exit(f"bench: counter {value}, acknowledged {acked}, unknown {unknown}: a write was lost or invented")
    return times, acked, unknown, value


def main():
    tmp = Path(tempfile.mkdtemp(prefix="dobj-bench-router-"))
    procs = []
    try:
        procs, urls = cb.dobj_cluster(tmp)
        names = cb.led_by(1, 1000)
        (tmp / "names.txt").write_text("\n".join(names) + "\n")
        env = {"NAMES": str(tmp / "names.txt")}
        res = cb.measure({"owner one": ("one.lua", f"{urls[1]}/counter/{names[0]}", None),
                          "other one": ("one.lua", f"{urls[2]}/counter/{names[0]}", None)})
        res.update(cb.measure({"owner spread": ("names.lua", urls[1], env),
                               "other spread": ("names.lua", urls[2], env)}))
        fail = {s: failover(procs, urls, tmp, s, f"failover-{s.name}") for s in (signal.SIGKILL, signal.SIGSTOP)}
    finally:
        cb.stop(procs)
        if os.environ.get("KEEP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)
    lines = ["| shape | to the leader req/s | p99 | through another host req/s | p99 | ratio |",
             "|---|--:|--:|--:|--:|--:|"]
    for shape, label in (("one", "1 object"), ("spread", "1,000 objects")):
        o, t = res[f"owner {shape}"], res[f"other {shape}"]
        lines.append(f"| {label} | {o['rps']:.0f} | {o['p99_us'] / 1000:.2f} ms | {t['rps']:.0f} | "
                     f"{t['p99_us'] / 1000:.2f} ms | {t['rps'] / o['rps']:.2f} |")
    lines += ["", "| failover of the leader | rounds | median | max | target | counter | acknowledged | unknown |",
              "|---|--:|--:|--:|---|--:|--:|--:|"]
    for sig, what in ((signal.SIGKILL, "kill -9 (connections reset)"), (signal.SIGSTOP, "SIGSTOP (silent host)")):
        times, acked, unknown, value = fail[sig]
        ms = sorted(t * 1000 for t in times)
        lines.append(f"| {what} | {len(ms)} | {statistics.median(ms):.0f} ms | {ms[-1]:.0f} ms | < 2000 ms | "
                     f"{value} | {acked} | {unknown} |")
    errors = sum(r["errors"] for r in res.values())
    report = "\n".join(lines) + "\n"
    print(report)
    out = cb.BUILD / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "router.md").write_text(report)
    if errors:
        print("bench: errors during the runs (see above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
