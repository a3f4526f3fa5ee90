#!/usr/bin/python3
"""tests/bench/cluster.py: replicated durable writes (`make bench` runs it).

dobj: six `DOBJ_BUILD/dobj serve --cluster` hosts on loopback (one shard
each, replicas 5, quorum 3, a shared file:// store), the counter class. wrk
(-t2 -c64 --latency) sends every request to host 1, and the objects are ones
whose rank 0 is host 1 (as the router will send an object's requests to its
leader): host 1 leads, the five others replicate, and each acknowledged write
is on three of the five hosts' fsync'd journals:

    one      POST /counter/<name>               (tests/bench/one.lua)
    spread   POST /counter/<one of 1,000>       (tests/bench/names.lua)

etcd, the reference a user would pick for replicated durable writes: three
Debian `etcd` 3.4 members on loopback, the same wrk against the leader's JSON
gateway, a 16-byte value per put (tests/bench/etcd_put.lua), one key or 1,000.

Both clusters run side by side on the same two cores (an idle one costs
under 1% of a core) and the runs alternate, dobj then etcd, RUNS times of
DURATION s after a WARMUP s warm-up each, so that the machine's minute-to-
minute noise falls on both alike; medians. The target: dobj >= 3x etcd's
throughput with a lower p99, for both shapes. A second table gives the CPU
time per acknowledged write (every thread of each server process, from
/proc/PID/stat, and wrk's) and the rate both cores would allow at that cost:
the ceiling the ratio is bound by on this machine. The report goes to stdout
and DOBJ_BUILD/bench/cluster.md.

Environment: DOBJ_BUILD (build), DURATION (10), WARMUP (2), RUNS (3),
KEEP (0), STRICT (0: a missed target is reported, not an error).
"""
import hashlib
import json
import os
import struct
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / os.environ.get("DOBJ_BUILD", "build")
DURATION = int(os.environ.get("DURATION", "10"))
WARMUP = int(os.environ.get("WARMUP", "2"))
RUNS = int(os.environ.get("RUNS", "3"))
STRICT = os.environ.get("STRICT", "0") == "1"
HOSTS = 6


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=20, method="GET", body=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(url, data=body, method=method)
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status < 300:
                    return True
        except Exception:
            time.sleep(0.1)
    return False


def cpu_ms(pids):
    """CPU time (user + system, every thread, ms) of each process."""
    tick = os.sysconf("SC_CLK_TCK")
    out = []
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out.append((int(f[11]) + int(f[12])) * 1000 / tick)
        except OSError:
            out.append(0.0)
    return out


def children_cpu_ms():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (ru.ru_utime + ru.ru_stime) * 1000


def wrk(script, url, secs, env=None, pids=()):
    """One wrk run. With `pids`, the result also has the CPU time those
    processes used per acknowledged request (us), each ("cpu_us", a list) and
    wrk's own ("wrk_cpu_us")."""
    cmd = ["wrk", "-t2", "-c64", f"-d{secs}s", "--latency", "-s", str(REPO / "tests/bench" / script), url]
    c0, w0 = cpu_ms(pids), children_cpu_ms()
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=secs + 60)
    c1, w1 = cpu_ms(pids), children_cpu_ms()
    m = re.search(r"RESULT (.*)", out.stdout)
    if not m:
        sys.exit(f"bench: wrk printed no RESULT ({' '.join(cmd)}):\n{out.stdout}\n{out.stderr}")
    r = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    n = max(r["requests"], 1)
    r["cpu_us"] = [(b - a) * 1000 / n for a, b in zip(c0, c1)]
    r["wrk_cpu_us"] = (w1 - w0) * 1000 / n
    return r, " ".join(cmd)


def measure(shapes, pids=None):
    """shapes: name -> (script, url, env). Warms each up, then runs them in
    turn RUNS times; the medians per name. pids: name -> the server's
    processes, whose CPU time per request is measured too."""
    pids = pids or {}
    for script, url, env in shapes.values():
        wrk(script, url, WARMUP, env)
    runs = {name: [] for name in shapes}
    for i in range(RUNS):
        for name, (script, url, env) in shapes.items():
            r, cmd = wrk(script, url, DURATION, env, pids.get(name, ()))
            runs[name].append((r, cmd))
            print(f"bench: run {i + 1}/{RUNS} {name}: {r['rps']:.0f} req/s, p99 {r['p99_us'] / 1000:.2f} ms",
                  flush=True)
    out = {}
    for name, rs in runs.items():
        res = [r for r, _ in rs]
        med = {k: statistics.median(r[k] for r in res) for k in ("rps", "p50_us", "p99_us", "wrk_cpu_us")}
        med["cpu_us"] = [statistics.median(r["cpu_us"][i] for r in res) for i in range(len(res[0]["cpu_us"]))]
        med["errors"] = sum(r["errors"] for r in res)
        med["cmd"] = rs[0][1]
        print(f"bench: {name}: {med['rps']:.0f} req/s, p50 {med['p50_us'] / 1000:.2f} ms, "
              f"p99 {med['p99_us'] / 1000:.2f} ms, errors {med['errors']:.0f}", flush=True)
        out[name] = med
    return out


def led_by(host, count, hosts=HOSTS):
    """Counter objects whose rank 0 is `host` (router/cluster.c's placement:
    XXH3-64 of the object id and the host id, seed 0)."""
    import xxhash
    names, i = [], 0
    while len(names) < count:
        name = f"bench-{i}"
        oid = hashlib.sha256(f"counter/{name}".encode()).digest()[:16]
        w = {h: xxhash.xxh3_64_intdigest(oid + struct.pack("<I", h), seed=0) for h in range(1, hosts + 1)}
        if max(w, key=lambda h: (w[h], -h)) == host:
            names.append(name)
        i += 1
    return names


def dobj_cluster(tmp):
    ports = {i: (free_port(), free_port()) for i in range(1, HOSTS + 1)}
    conf = tmp / "cluster.conf"
    conf.write_text("secret bench-cluster-secret\n" + "".join(
        f"host {i} 127.0.0.1:{c} 127.0.0.1:{p}\n" for i, (c, p) in ports.items()))
    procs = []
    for i in ports:
        log = open(tmp / f"dobj-{i}.log", "wb")
        procs.append(subprocess.Popen(
            [str(BUILD / "dobj"), "serve", "--cluster", str(conf), "--host-id", str(i), "--data", str(tmp / f"h{i}"),
             "--shards", "1", "--store", f"file://{tmp}/store", "--class", str(BUILD / "examples/counter.so"),
             "--log-level", "warn"], stdout=log, stderr=subprocess.STDOUT))
    for i, (c, _) in ports.items():
        if not wait_http(f"http://127.0.0.1:{c}/_hello"):
            sys.exit(f"bench: dobj host {i} did not start; see {tmp}/dobj-{i}.log")
    return procs, {i: f"http://127.0.0.1:{c}" for i, (c, _) in ports.items()}


def etcd_cluster(tmp):
    names = [f"e{i}" for i in range(1, 4)]
    ports = {n: (free_port(), free_port()) for n in names}
    initial = ",".join(f"{n}=http://127.0.0.1:{p}" for n, (_, p) in ports.items())
    procs = []
    for n, (c, p) in ports.items():
        log = open(tmp / f"etcd-{n}.log", "wb")
        procs.append(subprocess.Popen(
            ["etcd", "--name", n, "--data-dir", str(tmp / f"etcd-{n}"),
             "--listen-client-urls", f"http://127.0.0.1:{c}", "--advertise-client-urls", f"http://127.0.0.1:{c}",
             "--listen-peer-urls", f"http://127.0.0.1:{p}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{p}",
             "--initial-cluster", initial, "--initial-cluster-state", "new", "--log-level", "warn"],
            stdout=log, stderr=subprocess.STDOUT))
    urls = [f"http://127.0.0.1:{c}" for c, _ in ports.values()]
    for u in urls:
        if not wait_http(f"{u}/health", timeout=30):
            sys.exit(f"bench: etcd at {u} did not start; see {tmp}/etcd-*.log")
    # wrk goes to the leader, as dobj's goes to the objects' leader.
    out = subprocess.run(["etcdctl", "--endpoints", ",".join(urls), "endpoint", "status", "-w", "json"],
                         capture_output=True, text=True, timeout=30)
    leader = urls[0]
    for st in json.loads(out.stdout or "[]"):
        if st["Status"]["header"]["member_id"] == st["Status"]["leader"]:
            leader = st["Endpoint"]
    return procs, leader


def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()


def main():
    for tool in ("wrk", "etcd", "etcdctl"):
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} is missing (make deps installs it)")
    tmp = Path(tempfile.mkdtemp(prefix="dobj-bench-cluster-"))
    res = {}
    procs = []
    try:
        dprocs, urls = dobj_cluster(tmp)
        base = urls[1]
        procs += dprocs
        eprocs, leader = etcd_cluster(tmp)
        procs += eprocs
        names = led_by(1, 1000)
        (tmp / "names.txt").write_text("\n".join(names) + "\n")
        pids = {}
        for shape in ("one", "spread"):
            pids[f"dobj {shape}"] = [p.pid for p in dprocs]  # host 1 (the leader) first
            pids[f"etcd {shape}"] = [p.pid for p in eprocs]
        res.update(measure({"dobj one": ("one.lua", f"{base}/counter/{names[0]}", None),
                            "etcd one": ("etcd_put.lua", leader, {"KEYS": "1"})}, pids))
        res.update(measure({"dobj spread": ("names.lua", base, {"NAMES": str(tmp / "names.txt")}),
                            "etcd spread": ("etcd_put.lua", leader, {"KEYS": "1000"})}, pids))
    finally:
        stop(procs)
        if os.environ.get("KEEP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)
    lines = ["| shape | dobj req/s | dobj p50 | dobj p99 | etcd req/s | etcd p50 | etcd p99 | throughput ratio | "
             "p99 lower | target |", "|---|---|---|---|---|---|---|---|---|---|"]
    ok = True
    for shape in ("one", "spread"):
        d, e = res[f"dobj {shape}"], res[f"etcd {shape}"]
        ratio = d["rps"] / e["rps"] if e["rps"] else 0
        met = ratio >= 3 and d["p99_us"] < e["p99_us"] and d["errors"] == 0
        ok = ok and met
        lines.append(f"| {'1 object / key' if shape == 'one' else '1,000 objects / keys'} | {d['rps']:.0f} | "
                     f"{d['p50_us'] / 1000:.2f} ms | {d['p99_us'] / 1000:.2f} ms | {e['rps']:.0f} | "
                     f"{e['p50_us'] / 1000:.2f} ms | {e['p99_us'] / 1000:.2f} ms | {ratio:.2f} | "
                     f"{'yes' if d['p99_us'] < e['p99_us'] else 'no'} | {'met' if met else 'FAIL'} |")
    # Where the two cores go: CPU time per acknowledged write, medians of the
    # runs, and the rate both cores would allow at that cost (with wrk's).
    ncpu = os.cpu_count() or 1
    lines += ["", "| shape | dobj leader | dobj 5 replicas | dobj total | etcd 3 members | wrk (dobj / etcd) | "
              f"dobj at {ncpu} busy cores | etcd at {ncpu} busy cores |", "|---|---|---|---|---|---|---|---|"]
    for shape in ("one", "spread"):
        d, e = res[f"dobj {shape}"], res[f"etcd {shape}"]
        dl, dr, et = d["cpu_us"][0], sum(d["cpu_us"][1:]), sum(e["cpu_us"])
        lines.append(f"| {'1 object / key' if shape == 'one' else '1,000 objects / keys'} | {dl:.0f} us | {dr:.0f} us | "
                     f"{dl + dr:.0f} us | {et:.0f} us | {d['wrk_cpu_us']:.0f} / {e['wrk_cpu_us']:.0f} us | "
                     f"{ncpu * 1e6 / (dl + dr + d['wrk_cpu_us']):.0f} req/s | "
                     f"{ncpu * 1e6 / (et + e['wrk_cpu_us']):.0f} req/s |")
    report = "\n".join(lines) + "\n\ncommands: " + "; ".join(sorted({r["cmd"] for r in res.values()})) + "\n"
    print(report)
    out = BUILD / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "cluster.md").write_text(report)
    if any(r["errors"] for r in res.values()):
        print("bench: errors during the runs (see above)")
        return 1
    return 0 if ok or not STRICT else 1


if __name__ == "__main__":
    sys.exit(main())
