#!/usr/bin/python3
"""tests/bench/store.py: the object-storage benchmark (`make bench` runs it
after tests/bench/run.sh).

Part 1, uploads under load. For each store, a fresh `DOBJ_BUILD/dobj serve`
(2 shards, the counter class, the default 10 s segment interval) driven by wrk
(-t2 -c64, tests/bench/spread.lua: POST /counter/bench-<0..999>) for a
WARMUP s warm-up and then DURATION s; /_metrics sampled every 0.5 s from the
start of the load until every record is in the store:

    none     --store none: no uploads, the reference req/s
    file     --store file://DIR
    s3rver   s3rver (npm), path style            } started with
    swift    OpenStack Swift with s3api (SigV4)  } tests/system/s3servers.py

REPEATS rounds of all four, in that order, interleaved (medians in the
table). Reported per store: wrk's req/s and its ratio to `none`, segment bytes
uploaded per second (dobj_upload_bytes_total) and the raw record bytes they
carry (dobj_journal_record_bytes_total), segments/s, the max and p99 of the
sampled dobj_upload_lag_seconds (also from the moment every object had its
first segment stored: an object's first upload also lists its keys and
writes its meta.json), and how long after wrk stopped
dobj_upload_records_pending reached 0. The check: the lag stays within the
segment interval + LAG_SLACK s (10 + 5).

Part 2, restore. One object of the probe test class gets ROWS rows of PAD
random bytes, one acknowledged POST /probe/rows/multi?k=..&count=1&pad=PAD
each (wrk with tests/bench/rows.lua, exactly ROWS/2 POSTs per thread; any
POST wrk did not send is sent afterwards), on a server with --store file://DIR,
--segment-interval-ms 2000 and the default snapshot rule. Once nothing is
pending it is stopped (SIGTERM), and with the page cache dropped before each
timing (when permitted):

    dobj restore --store file://DIR --object probe/rows --lsn LAST --out OUT.db
    cp OUT.db COPY.db

each timed alone and with `sync FILE` after it. The check: restore writes
>= 200 MB/s of database. OUT.db must pass PRAGMA integrity_check and hold
exactly the acknowledged rows. Then a restore to lsn ROWS/2 (the nearest
snapshot before it plus segments), and one to just before the newest
snapshot (the snapshot before that plus segments; skipped when the newest
snapshot is not past ROWS/2), each checked for count(*) = its lsn. When the
full restore misses the target (else the first of the others that does),
one more such restore under `perf record --call-graph dwarf` gives the top
functions (PERF=1: the full and the middle one, always).

The report (markdown) is printed and written to DOBJ_BUILD/bench/store.md;
wrk's output and the sampled metrics of every upload run (CSV) go to
DOBJ_BUILD/bench/raw/store-*, the servers' logs to DOBJ_BUILD/bench/store-*.log.

Environment: DOBJ_BUILD (build), DURATION (30), WARMUP (3), REPEATS (2),
STORES (none,file,s3rver,swift), ROWS (1000000), PAD (1000), PARTS
(upload,restore), LAG_SLACK (5), RESTORE_TARGET_MBS (200), PERF (auto, 1 or
0: see above), KEEP (0; 1 keeps the temporary directory), STRICT (0), TMPDIR.

Exit status: 0 when every correctness check held (no wrk errors, every record
uploaded, every server stopped cleanly, the restored database is whole and
holds exactly the acknowledged rows); 1 otherwise; 2 on a set-up problem. A
missed target (lag, restore MB/s) is reported as FAIL but does not change the
exit status unless STRICT=1.
"""

import ctypes
import datetime
import glob
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
os.chdir(ROOT)
sys.path.insert(0, str(ROOT / "tests" / "system"))

import s3servers  # noqa: E402  (sets NO_PROXY for 127.0.0.1 too)


def env_int(name, default):
    v = os.environ.get(name, str(default))
    if not re.fullmatch(r"[0-9]+", v):
        die(f"{name} must be a non-negative integer (got '{v}')")
    return int(v)


def die(msg):
    print(f"store-bench: {msg}", file=sys.stderr)
    sys.exit(2)


BUILD = os.environ.get("DOBJ_BUILD", "build")
DURATION = env_int("DURATION", 30)
WARMUP = env_int("WARMUP", 3)
REPEATS = env_int("REPEATS", 2)
ROWS = env_int("ROWS", 1000000)
PAD = env_int("PAD", 1000)
LAG_SLACK = env_int("LAG_SLACK", 5)
TARGET_MBS = env_int("RESTORE_TARGET_MBS", 200)
KEEP = os.environ.get("KEEP", "0") == "1"
STRICT = os.environ.get("STRICT", "0") == "1"
PERF = os.environ.get("PERF", "auto")
STORES = [s for s in os.environ.get("STORES", "none,file,s3rver,swift").split(",") if s]
PARTS = [s for s in os.environ.get("PARTS", "upload,restore").split(",") if s]
SEGMENT_INTERVAL_S = 10.0  # the server's default, which part 1 uses
RESTORE_INTERVAL_MS = 2000
THREADS, CONNS, OBJECTS = 2, 64, 1000
SHARDS = 2
SAMPLE_S = 0.5
DRAIN_TIMEOUT_S = 90.0

for s in STORES:
    if s not in ("none", "file", "s3rver", "swift"):
        die(f"STORES: unknown store '{s}' (none, file, s3rver, swift)")
for p in PARTS:
    if p not in ("upload", "restore"):
        die(f"PARTS: unknown part '{p}' (upload, restore)")
if DURATION < 1 or REPEATS < 1 or ROWS < 2:
    die("DURATION and REPEATS must be >= 1, ROWS >= 2")
if PERF not in ("auto", "0", "1"):
    die("PERF must be auto, 0 or 1")

BIN = Path(BUILD) / "dobj"
COUNTER = Path(BUILD) / "examples" / "counter.so"
PROBE = Path(BUILD) / "tests" / "probe.so"
OUT = Path(BUILD) / "bench"
BENCH = ROOT / "tests" / "bench"
for f in (BIN, COUNTER, PROBE):
    if not f.exists():
        die(f"{f} is missing: run make first (make BUILD={BUILD})")
for tool in ("wrk", "sqlite3"):
    if shutil.which(tool) is None:
        die(f"'{tool}' is not installed (make deps installs it)")

_libc = ctypes.CDLL(None, use_errno=True)


def _child_setup():
    _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with us


def log(msg):
    print(f"store-bench: {msg}", flush=True)


FAILURES = []  # correctness problems: exit status 1
TARGETS = []   # (name, passed, text)
COMMANDS = []  # what ran, for the report


def fail(msg):
    FAILURES.append(msg)
    log(f"FAILED: {msg}")


def note_cmd(argv):
    s = " ".join(str(a) for a in argv)
    if s not in COMMANDS:
        COMMANDS.append(s)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    k = max(0, min(len(xs) - 1, int(round(p / 100 * len(xs) + 0.5)) - 1))
    return xs[k]


def fmt(x, nd=1, unit=""):
    if x is None:
        return "—"
    if isinstance(x, int) or nd == 0:
        return f"{int(round(x)):,}{unit}"
    return f"{x:,.{nd}f}{unit}"


# ---- the server ---------------------------------------------------------------


def metrics(port, timeout=2.0):
    """/_metrics as {name: float}, None when the server does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_metrics", timeout=timeout) as r:
            text = r.read().decode()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.partition(" ")
            try:
                out[k] = float(v)
            except ValueError:
                pass
    return out


class Server:
    def __init__(self, data, cls, store_args, log_path, extra=()):
        self.port = s3servers.free_port()
        self.argv = [str(BIN), "serve", "--listen", f"127.0.0.1:{self.port}", "--data", str(data),
                     "--shards", str(SHARDS), "--class", str(cls), *store_args, *extra, "--log-level", "warn"]
        self.log_path = Path(log_path)
        self.proc = None
        self.stop_text = None

    def start(self, timeout=30.0):
        note_cmd(self.argv)
        self.logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdout=self.logf, stderr=subprocess.STDOUT,
                                     preexec_fn=_child_setup)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dobj serve exited with status {self.proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_hello", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"dobj serve did not answer in {timeout} s: {self.log_tail()}")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace=60.0):
        """SIGTERM, SIGKILL after grace; returns (clean, text)."""
        if self.proc is None:
            return True, "not started"
        if self.proc.poll() is not None:
            self.stop_text = f"had already exited (status {self.proc.returncode})"
            return False, self.stop_text
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=grace)
            self.stop_text = f"stopped by SIGTERM in {time.monotonic() - t0:.1f} s, exit status {rc}"
            clean = rc == 0
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.stop_text = f"did not stop within {grace:.0f} s of SIGTERM: killed"
            clean = False
        self.logf.close()
        return clean, self.stop_text

    def log_tail(self, n=15):
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def log_lines(self):
        try:
            return [l for l in self.log_path.read_text(errors="replace").splitlines() if l.strip()]
        except OSError:
            return []


class Sampler(threading.Thread):
    """/_metrics every SAMPLE_S seconds: [(monotonic, {metrics})]."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.samples = []
        self.halt = threading.Event()

    def run(self):
        nxt = time.monotonic()
        while not self.halt.is_set():
            m = metrics(self.port, timeout=SAMPLE_S * 4)
            if m is not None:
                self.samples.append((time.monotonic(), m))
            nxt += SAMPLE_S
            self.halt.wait(max(0.0, nxt - time.monotonic()))

    def stop(self):
        self.halt.set()
        self.join()


# ---- wrk ----------------------------------------------------------------------

RESULT_RE = re.compile(r"^RESULT (.*)$", re.M)


def parse_kv(line):
    return {k: float(v) for k, v in (x.split("=", 1) for x in line.split())}


def run_wrk(port, secs, script, raw_path, extra_args=()):
    argv = ["wrk", f"-t{THREADS}", f"-c{CONNS}", f"-d{secs}s", "--latency", "-s", f"tests/bench/{script}",
            f"http://127.0.0.1:{port}", *extra_args]
    note_cmd([a.replace(str(port), "PORT") if isinstance(a, str) else a for a in argv])
    p = subprocess.run(argv, capture_output=True, text=True, preexec_fn=_child_setup)
    Path(raw_path).write_text(p.stdout + p.stderr)
    m = RESULT_RE.search(p.stdout)
    if p.returncode != 0 or m is None:
        raise RuntimeError(f"wrk failed (status {p.returncode}): {(p.stdout + p.stderr)[-800:]}")
    return parse_kv(m.group(1))


# ---- part 1: uploads under load -------------------------------------------------


def store_args(kind, s3, tmp, name):
    if kind == "none":
        return ["--store", "none"]
    if kind == "file":
        return ["--store", f"file://{tmp / name / 'store'}"]
    return ["--store", f"s3://{s3.bucket}/{name}", "--store-endpoint", s3.endpoint, "--store-path-style",
            "--store-access-key", s3.access_key, "--store-secret-key", s3.secret_key]


def upload_run(kind, rep, s3, tmp):
    name = f"up-{kind}-{rep}"
    d = tmp / name
    (d / "data").mkdir(parents=True)
    srv = Server(d / "data", COUNTER, store_args(kind, s3, tmp, name), OUT / f"store-{name}.log")
    srv.start()
    r = {"kind": kind, "rep": rep}
    sampler = Sampler(srv.port)
    sampler.start()
    try:
        t_load = time.monotonic()
        if WARMUP > 0:
            w = run_wrk(srv.port, WARMUP, "spread.lua", OUT / "raw" / f"store-{name}-warmup.txt")
            r["warm_errors"] = int(w["errors"])
        res = run_wrk(srv.port, DURATION, "spread.lua", OUT / "raw" / f"store-{name}.txt")
        t1 = time.monotonic()
        r.update(rps=res["rps"], p99_ms=res["p99_us"] / 1000, errors=int(res["errors"]) + r.get("warm_errors", 0))
        if kind != "none":
            # Drain: until every record is in the store.
            drained = None
            while time.monotonic() - t1 < DRAIN_TIMEOUT_S:
                m = metrics(srv.port)
                if m is None:
                    break
                if m.get("dobj_upload_records_pending", 1) == 0:
                    drained = time.monotonic()
                    break
                time.sleep(0.1)
            r["drain_s"] = drained - t1 if drained is not None else None
            sampler.stop()
            mend = metrics(srv.port) or {}
            lags = [m["dobj_upload_lag_seconds"] for t, m in sampler.samples
                    if t >= t_load and "dobj_upload_lag_seconds" in m]
            cols = ("dobj_commits_total", "dobj_upload_records_pending", "dobj_upload_lag_seconds",
                    "dobj_upload_segments_total", "dobj_upload_bytes_total", "dobj_upload_failures_total",
                    "dobj_upload_store_down")
            with open(OUT / "raw" / f"store-{name}-metrics.csv", "w") as f:
                f.write("seconds_since_load_start," + ",".join(cols) + "\n")
                for t, m in sampler.samples:
                    f.write(f"{t - t_load:.2f}," + ",".join(f"{m.get(c, 0):g}" for c in cols) + "\n")
            r["lag_max"] = max(lags) if lags else None
            r["lag_p99"] = pct(lags, 99)
            r["lag_n"] = len(lags)
            # Once every object has had its first segment uploaded (the first
            # upload of an object also lists its keys and writes meta.json).
            t_first = next((t for t, m in sampler.samples if m.get("dobj_upload_segments_total", 0) >= OBJECTS), None)
            # (+ 2 s: the server refreshes the gauge once a second)
            steady = [m["dobj_upload_lag_seconds"] for t, m in sampler.samples
                      if t_first is not None and t >= t_first + 2 and "dobj_upload_lag_seconds" in m]
            r["lag_steady"] = max(steady) if steady else None
            r["first_cycle_s"] = t_first - t_load if t_first is not None else None
            r["failures"] = int(mend.get("dobj_upload_failures_total", 0))
            r["pending_end"] = int(mend.get("dobj_upload_records_pending", -1))
            r["commits"] = int(mend.get("dobj_commits_total", 0))
            r["uploaded"] = int(mend.get("dobj_upload_records_total", 0))
            up_total = mend.get("dobj_upload_bytes_total", 0)
            rec_total = mend.get("dobj_journal_record_bytes_total", 0)
            r["compress"] = up_total / rec_total if rec_total else None
            # Everything the load wrote, once it is all in the store, per
            # second of load (warm-up + measured run).
            load_s = t1 - t_load
            r["up_mbs"] = up_total / load_s / 1e6
            r["rec_mbs"] = rec_total / load_s / 1e6
            r["segs_s"] = mend.get("dobj_upload_segments_total", 0) / load_s
            if drained is None:
                fail(f"{name}: {int(mend.get('dobj_upload_records_pending', -1))} records still pending "
                     f"{DRAIN_TIMEOUT_S:.0f} s after wrk stopped (lag {mend.get('dobj_upload_lag_seconds')} s, "
                     f"failures {mend.get('dobj_upload_failures_total')}); server log: {srv.log_tail(5)}")
            elif r["uploaded"] != r["commits"]:
                fail(f"{name}: after the drain dobj_upload_records_total = {r['uploaded']} but "
                     f"dobj_commits_total = {r['commits']}")
        else:
            sampler.stop()
        if r["errors"]:
            fail(f"{name}: wrk saw {r['errors']} errors (non-2xx or socket), see {OUT}/raw/store-{name}.txt")
    finally:
        if sampler.is_alive():
            sampler.stop()
        clean, text = srv.stop()
        r["stop"] = text
        r["log_lines"] = len(srv.log_lines())
        if not clean:
            fail(f"{name}: the server {text}; its log: {srv.log_tail(5)}")
    lag = f"lag max {fmt(r.get('lag_max'), 2)} s p99 {fmt(r.get('lag_p99'), 2)} s, drain {fmt(r.get('drain_s'), 1)} s, " \
          f"upload {fmt(r.get('up_mbs'), 2)} MB/s" if kind != "none" else ""
    log(f"  {name}: {fmt(r['rps'], 0)} req/s {lag}; server {r['stop']}")
    if kind != "none":
        shutil.rmtree(d, ignore_errors=True)
    return r


def part_upload(tmp):
    servers, status = {}, {}
    for kind, cls in (("s3rver", s3servers.S3rver), ("swift", s3servers.Swift)):
        if kind not in STORES:
            continue
        try:
            t0 = time.monotonic()
            servers[kind] = cls(tmp / kind).start()
            status[kind] = "ok"
            log(f"{kind} started on {servers[kind].endpoint} in {time.monotonic() - t0:.1f} s")
        except Exception as e:  # noqa: BLE001: a missing server is a row saying why
            status[kind] = f"unavailable: {str(e).splitlines()[0]}"
            log(f"{kind} {status[kind]}")
    runs = []
    try:
        for rep in range(1, REPEATS + 1):
            for kind in STORES:
                if kind in status and status[kind] != "ok":
                    continue
                log(f"upload run {rep}/{REPEATS}: {kind}")
                try:
                    runs.append(upload_run(kind, rep, servers.get(kind), tmp))
                except Exception as e:  # noqa: BLE001
                    fail(f"upload run {kind} {rep}: {e}")
    finally:
        for s in servers.values():
            s.stop()
    return runs, status


# ---- part 2: restore --------------------------------------------------------------


def drop_caches():
    """sync, then drop the page cache; False when not permitted."""
    subprocess.run(["sync"])
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def timed(argv, **kw):
    """(wall seconds, CPU seconds user + system, CompletedProcess)."""
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    p = subprocess.run(argv, capture_output=True, text=True, **kw)
    wall = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime), p


def sync_file(path):
    t0 = time.monotonic()
    subprocess.run(["sync", str(path)], check=True)
    return time.monotonic() - t0


RESTORED_RE = re.compile(r"restored \S+ to lsn (\d+) .*: (\d+) bytes; snapshot lsn (\d+), (\d+) records from "
                         r"(\d+) segments, (\d+) bytes downloaded in ([0-9.]+) s")


def restore(store_url, obj, lsn, out, label):
    dropped = drop_caches()
    argv = [str(BIN), "restore", "--store", store_url, "--object", obj, "--lsn", str(lsn), "--out", str(out)]
    note_cmd(argv)
    secs, cpu, p = timed(argv)
    if p.returncode != 0:
        raise RuntimeError(f"{label}: dobj restore failed (status {p.returncode}): {p.stderr.strip()[-800:]}")
    sync_s = sync_file(out)
    m = RESTORED_RE.search(p.stdout)
    if m is None:
        raise RuntimeError(f"{label}: can not parse dobj restore's output: {p.stdout!r}")
    r = dict(lsn=int(m.group(1)), db_bytes=int(m.group(2)), snap_lsn=int(m.group(3)), records=int(m.group(4)),
             segments=int(m.group(5)), downloaded=int(m.group(6)), self_s=float(m.group(7)), wall=secs,
             sync_s=sync_s, dropped=dropped, cpu=cpu, line=p.stdout.strip())
    size = os.path.getsize(out)
    r["size"] = size
    r["mbs"] = size / secs / 1e6
    r["mbs_sync"] = size / (secs + sync_s) / 1e6
    r["rec_s"] = r["records"] / secs if secs > 0 else None
    log(f"  {label}: {secs:.2f} s (+ sync {sync_s:.2f} s; CPU {cpu:.2f} s), {size / 1e6:,.0f} MB = {r['mbs']:.0f} MB/s; "
        f"snapshot lsn {r['snap_lsn']:,}, {r['records']:,} records from {r['segments']} segments, "
        f"{r['downloaded'] / 1e6:,.0f} MB downloaded")
    return r


def sqlite1(db, sql, timeout=600):
    p = subprocess.run(["sqlite3", "-readonly", str(db), sql], capture_output=True, text=True, timeout=timeout)
    return (p.stdout + p.stderr).strip()


def build_rows(tmp, srv, res):
    """Drives exactly ROWS acknowledged POSTs into probe/rows; fills res."""
    mark = tmp / "marks"
    mark.mkdir()
    quota = ROWS // 2
    argv = ["wrk", f"-t{THREADS}", f"-c{CONNS}", "-d3600s", "-s", "tests/bench/rows.lua",
            f"http://127.0.0.1:{srv.port}", "--", str(quota), str(mark), "rows", str(PAD)]
    note_cmd([a.replace(str(srv.port), "PORT").replace(str(mark), "MARKDIR") for a in argv])
    raw = OUT / "raw" / "store-rows.txt"
    t0 = time.monotonic()
    wrk = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           preexec_fn=_child_setup)
    last_print, last_commits, stable = t0, -1, 0
    last_move = t0
    try:
        while True:
            time.sleep(0.25)
            if wrk.poll() is not None:
                raise RuntimeError(f"wrk exited early (status {wrk.returncode}): {wrk.stdout.read()[-800:]}")
            if not srv.alive():
                raise RuntimeError(f"the server died while the rows were written: {srv.log_tail()}")
            m = metrics(srv.port)
            c = int(m["dobj_commits_total"]) if m else -1
            if time.monotonic() - last_print >= 15:
                last_print = time.monotonic()
                log(f"  {c:,} rows committed ({c / (last_print - t0):,.0f}/s), "
                    f"upload pending {int(m.get('dobj_upload_records_pending', 0)):,}, "
                    f"lag {m.get('dobj_upload_lag_seconds', 0):.1f} s, snapshots {int(m.get('dobj_upload_snapshots_total', 0))}")
            if c != last_commits:
                last_move = time.monotonic()
            elif time.monotonic() - last_move > 60:
                raise RuntimeError(f"the server's commits stayed at {c:,} for 60 s while wrk ran (a hang?): "
                                   f"metrics {m}; log: {srv.log_tail(5)}")
            if all((mark / f"issued-{i}").exists() for i in range(1, THREADS + 1)):
                stable = stable + 1 if c == last_commits else 0
                if stable >= 3:  # the commits did not move for 0.75 s: every POST is answered
                    break
            last_commits = c
    finally:
        if wrk.poll() is None:
            wrk.send_signal(signal.SIGINT)
        out, _ = wrk.communicate(timeout=60)
    t1 = time.monotonic()
    raw.write_text(out)
    m = re.search(r"^ROWS posts=(\d+) acked=(\d+) failed=(\d+)", out, re.M)
    rr = RESULT_RE.search(out)
    if m is None or rr is None:
        raise RuntimeError(f"can not parse wrk's output: {out[-800:]}")
    posts, acked, failed = (int(x) for x in m.groups())
    wres = parse_kv(rr.group(1))
    res.update(build_s=t1 - t0, wrk_posts=posts, wrk_acked=acked, wrk_failed=failed,
               wrk_socket_errors=int(wres["socket_errors"]), wrk_non2xx=int(wres["non2xx"]))
    # What wrk did not send (see rows.lua), one by one.
    topup = ROWS - acked - failed
    top_ok = 0
    for i in range(max(0, topup)):
        req = urllib.request.Request(f"http://127.0.0.1:{srv.port}/probe/rows/multi?count=1&pad={PAD}&k=fill-{i}",
                                     data=b"", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                if r.status == 200:
                    top_ok += 1
        except OSError:
            pass
    res.update(topup=topup, acked=acked + top_ok, failed=failed + (max(0, topup) - top_ok))
    res["write_rps"] = res["acked"] / res["build_s"]


def part_restore(tmp):
    res = {}
    d = tmp / "restore"
    (d / "data").mkdir(parents=True)
    store = d / "store"
    store_url = f"file://{store}"
    srv = Server(d / "data", PROBE, ["--store", store_url], OUT / "store-restore.log",
                 extra=["--segment-interval-ms", str(RESTORE_INTERVAL_MS)])
    srv.start()
    log(f"restore: writing {ROWS:,} rows of {PAD} random bytes into probe/rows (server on port {srv.port})")
    try:
        build_rows(d, srv, res)
        log(f"  {res['acked']:,} acknowledged writes in {res['build_s']:.0f} s ({res['write_rps']:,.0f}/s); "
            f"wrk: {res['wrk_posts']:,} POSTs, {res['wrk_failed']} failed, {res['wrk_socket_errors']} socket errors; "
            f"{res['topup']} sent afterwards")
        t0 = time.monotonic()
        drained = None
        while time.monotonic() - t0 < 300:
            m = metrics(srv.port)
            if m is not None and m["dobj_upload_records_pending"] == 0:
                drained = time.monotonic()
                break
            time.sleep(0.2)
        m = metrics(srv.port) or {}
        res.update(drain_s=(drained - t0) if drained else None, commits=int(m.get("dobj_commits_total", 0)),
                   rec_bytes=m.get("dobj_journal_record_bytes_total"), up_bytes=m.get("dobj_upload_bytes_total"),
                   segs=int(m.get("dobj_upload_segments_total", 0)), snaps=int(m.get("dobj_upload_snapshots_total", 0)),
                   up_failures=int(m.get("dobj_upload_failures_total", 0)))
        if drained is None:
            fail(f"restore: {int(m.get('dobj_upload_records_pending', -1))} records still pending 300 s after the "
                 f"last write (lag {m.get('dobj_upload_lag_seconds')} s)")
        log(f"  nothing pending {res['drain_s'] or 0:.1f} s after the last write; {res['segs']:,} segments, "
            f"{res['snaps']} snapshots uploaded")
    finally:
        clean, text = srv.stop(grace=120)
        res["stop"] = text
        res["log_lines"] = srv.log_lines()
        if not clean:
            fail(f"restore: the server {text}: {srv.log_tail(5)}")
    dbs = glob.glob(str(d / "data" / "objects" / "*" / "*.db"))
    res["server_db_bytes"] = os.path.getsize(dbs[0]) if len(dbs) == 1 else None
    res["store_bytes"] = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
    res["store_snap_files"] = len(list(store.rglob("snapshots/*")))
    res["snap_lsns"] = sorted(int(f.name.split(".")[0]) for f in store.rglob("snapshots/*.db"))
    res["store_seg_files"] = len(list(store.rglob("segments/*")))
    # The newest lsn in the store, from dobj ls.
    argv = [str(BIN), "ls", "--store", store_url]
    note_cmd(argv)
    p = subprocess.run(argv, capture_output=True, text=True)
    last = None
    for line in p.stdout.splitlines():
        f = line.split()
        if len(f) >= 6 and f[0] == "probe" and f[1] == '"rows"':
            last = int(f[3])
    if last is None:
        raise RuntimeError(f"dobj ls shows no probe/rows: {p.stdout} {p.stderr}")
    res["last_lsn"] = last
    res["ls"] = p.stdout.strip()
    if last != res["commits"]:
        fail(f"restore: dobj ls says LAST_LSN {last:,} but the server committed {res['commits']:,}")
    if res["failed"] or res["wrk_socket_errors"] or res["wrk_non2xx"]:
        fail(f"restore: writes failed: {res['failed']} non-200 answers, {res['wrk_socket_errors']} socket errors")

    out, copy, mid, perfdb = d / "out.db", d / "copy.db", d / "mid.db", d / "perf.db"
    log(f"restore: dobj restore of probe/rows to lsn {last:,} (page cache dropped before each timing)")
    full = restore(store_url, "probe/rows", last, out, "full restore")
    res["full"] = full
    dropped = drop_caches()
    note_cmd(["cp", "OUT.db", "COPY.db"])
    secs, cpu, p = timed(["cp", str(out), str(copy)])
    if p.returncode != 0:
        raise RuntimeError(f"cp failed: {p.stderr}")
    res["cp"] = dict(wall=secs, sync_s=sync_file(copy), dropped=dropped, size=os.path.getsize(copy), cpu=cpu)
    res["cp"]["mbs"] = res["cp"]["size"] / secs / 1e6
    res["cp"]["mbs_sync"] = res["cp"]["size"] / (secs + res["cp"]["sync_s"]) / 1e6
    log(f"  cp: {secs:.2f} s (+ sync {res['cp']['sync_s']:.2f} s) = {res['cp']['mbs']:.0f} MB/s")
    copy.unlink()
    t0 = time.monotonic()
    res["integrity"] = sqlite1(out, "PRAGMA integrity_check")
    res["count"] = sqlite1(out, "SELECT count(*) FROM multi")
    res["check_s"] = time.monotonic() - t0
    log(f"  integrity_check: {res['integrity'][:200]}; count(*) = {res['count']} ({res['check_s']:.0f} s)")
    if res["integrity"] != "ok":
        fail(f"restore: PRAGMA integrity_check of the restored database says: {res['integrity'][:500]}")
    if res["count"] != str(res["acked"]):
        fail(f"restore: the restored database has {res['count']} rows, {res['acked']:,} writes were acknowledged")
    if full["lsn"] != last:
        fail(f"restore: restored to lsn {full['lsn']} instead of {last}")
    out.unlink()

    half = ROWS // 2
    log(f"restore: dobj restore of probe/rows to lsn {half:,}")
    res["mid"] = restore(store_url, "probe/rows", half, mid, "restore to the middle")
    res["mid_count"] = sqlite1(mid, "SELECT count(*) FROM multi")
    if res["mid_count"] != str(half):
        fail(f"restore: the database restored to lsn {half} has {res['mid_count']} rows, expected {half}")
    mid.unlink()

    # Just before the newest snapshot: what a restore to a recent moment
    # costs when that snapshot can not be used (the older one and the
    # records since).
    newest = max(res["snap_lsns"], default=0)
    res["before"] = None
    if newest - 1 > half:
        log(f"restore: dobj restore of probe/rows to lsn {newest - 1:,}, just before the newest snapshot")
        res["before"] = restore(store_url, "probe/rows", newest - 1, mid, "restore to just before the newest snapshot")
        res["before_count"] = sqlite1(mid, "SELECT count(*) FROM multi")
        if res["before_count"] != str(newest - 1):
            fail(f"restore: the database restored to lsn {newest - 1} has {res['before_count']} rows, "
                 f"expected {newest - 1}")
        mid.unlink()

    # One profile: of the full restore if it missed the target, else of the
    # first other one that did (PERF=1: of the full restore and the middle).
    res["perf"] = []
    cands = [("full", last), ("mid", half)] + ([("before", newest - 1)] if res["before"] else [])
    if PERF == "1":
        todo = cands[:2]
    elif PERF == "auto":
        todo = [c for c in cands if res[c[0]]["mbs"] < TARGET_MBS][:1]
    else:
        todo = []
    for key, lsn in todo:
        if shutil.which("perf") is None:
            break
        log(f"restore: perf record --call-graph dwarf of one more restore to lsn {lsn:,}")
        drop_caches()
        pdata = d / "perf.data"
        argv = ["perf", "record", "-F", "499", "--call-graph", "dwarf,16384", "-o", str(pdata), "--", str(BIN),
                "restore", "--store", store_url, "--object", "probe/rows", "--lsn", str(lsn), "--out", str(perfdb)]
        note_cmd(argv)
        p = subprocess.run(argv, capture_output=True, text=True)
        prof = {"lsn": lsn, "mbs": res[key]["mbs"]}

        def perf_report(*args):
            rep = subprocess.run(["perf", "report", "-i", str(pdata), "--stdio", "-g", "none", *args],
                                 capture_output=True, text=True)
            return [l.rstrip() for l in rep.stdout.splitlines() if l.strip() and not l.startswith("#")]
        if p.returncode == 0:
            prof["dso"] = perf_report("--no-children", "--sort", "dso")[:8]
            prof["self"] = perf_report("--no-children", "--sort", "dso,sym", "--percent-limit", "1")[:15]
            # The program's own functions with what they call: where the time goes.
            prof["children"] = [l for l in perf_report("--children", "--sort", "sym", "--percent-limit", "2")
                                if "[.]" in l and not re.search(r"\[\.\] (0x[0-9a-f]+|_start|__libc_start_\w+|_dl_\w+)( \(inlined\))?$", l)][:25]
        else:
            prof["self"] = [f"perf record failed: {p.stderr.strip()[-300:]}"]
        res["perf"].append(prof)
        for f in (perfdb, pdata):
            if f.exists():
                f.unlink()
    return res


# ---- the report ----------------------------------------------------------------------


def machine():
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    osname = ""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                osname = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}, {osname}, Linux {os.uname().release}"


def command_line():
    defaults = dict(DURATION="30", WARMUP="3", REPEATS="2", STORES="none,file,s3rver,swift", ROWS="1000000",
                    PAD="1000", PARTS="upload,restore", LAG_SLACK="5", RESTORE_TARGET_MBS="200", PERF="auto",
                    KEEP="0", STRICT="0")
    envs = [f"DOBJ_BUILD={BUILD}"] if BUILD != "build" else []
    envs += [f"{k}={os.environ[k]}" for k in defaults if k in os.environ and os.environ[k] != defaults[k]]
    return " ".join(envs + ["tests/bench/store.py"])


def report(runs, s3status, rres, started, total_s):
    L = []
    ver = subprocess.run([str(BIN), "version"], capture_output=True, text=True).stdout.strip()
    built = datetime.datetime.fromtimestamp(BIN.stat().st_mtime, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    L.append(f"## dobj object-storage benchmark, {started}")
    L.append("")
    L.append(f"- machine: {machine()}; **wrk, the server and the S3 servers share the same cores** (nothing pinned)")
    L.append(f"- source: git {REV} (at the start); {BIN} built {built}; {ver}")
    L.append(f"- temporary data (data directories, file:// stores, S3 servers' storage) on {FS}")
    L.append(f"- total runtime {total_s / 60:.1f} min")
    L.append("")
    if runs is not None:
        L.append(f"### Uploads while the counter runs ({REPEATS} round(s), medians)")
        L.append("")
        L.append(f"`dobj serve --shards {SHARDS} --class counter.so --store ...` (segment interval: the default "
                 f"{SEGMENT_INTERVAL_S:.0f} s), wrk -t{THREADS} -c{CONNS} tests/bench/spread.lua "
                 f"(POST /counter/bench-<0..{OBJECTS - 1}>): {WARMUP} s warm-up, then {DURATION} s measured; "
                 f"/_metrics every {SAMPLE_S} s from the start of the load until nothing is pending.")
        L.append("")
        L.append("| store | req/s | ÷ none | p99 | segment upload MB/s | record MB/s | uploaded ÷ record bytes | "
                 "segments/s | lag max | lag p99 | first 1,000 segments in after | lag max after them | "
                 f"pending = 0 after wrk stopped | upload failures | lag ≤ {SEGMENT_INTERVAL_S:.0f} + {LAG_SLACK} s |")
        L.append("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
        base = median([r["rps"] for r in runs if r["kind"] == "none"])
        for kind in STORES:
            rs = [r for r in runs if r["kind"] == kind]
            if kind in s3status and s3status[kind] != "ok":
                L.append(f"| {kind}: {s3status[kind]} |" + " — |" * 14)
                continue
            if not rs:
                L.append(f"| {kind}: no run completed |" + " — |" * 14)
                continue
            rps = median([r["rps"] for r in rs])
            ratio = f"{rps / base:.3f}" if base and kind != "none" else ("1.000" if kind == "none" else "—")
            if kind == "none":
                L.append(f"| none (no uploads) | {fmt(rps, 0)} | {ratio} | {fmt(median([r['p99_ms'] for r in rs]), 1)} ms |"
                         + " — |" * 11)
                continue
            lag_max = max((r["lag_max"] for r in rs if r.get("lag_max") is not None), default=None)
            drained_all = all(r.get("drain_s") is not None for r in rs)
            ok = drained_all and lag_max is not None and lag_max <= SEGMENT_INTERVAL_S + LAG_SLACK
            TARGETS.append((f"upload lag, {kind}", ok,
                            f"max sampled lag {fmt(lag_max, 2)} s over {len(rs)} run(s)"
                            + ("" if drained_all else ", and a run never drained")))
            L.append(f"| {kind} | {fmt(rps, 0)} | {ratio} | {fmt(median([r['p99_ms'] for r in rs]), 1)} ms "
                     f"| {fmt(median([r.get('up_mbs') for r in rs]), 2)} "
                     f"| {fmt(median([r.get('rec_mbs') for r in rs]), 1)} "
                     f"| {fmt(median([r.get('compress') for r in rs]), 3)} "
                     f"| {fmt(median([r.get('segs_s') for r in rs]), 1)} "
                     f"| {fmt(lag_max, 2)} s | {fmt(median([r.get('lag_p99') for r in rs]), 2)} s "
                     f"| {fmt(median([r.get('first_cycle_s') for r in rs]), 1)} s "
                     f"| {fmt(max((r['lag_steady'] for r in rs if r.get('lag_steady') is not None), default=None), 2)} s "
                     f"| {fmt(median([r.get('drain_s') for r in rs]), 1) if drained_all else '**never**'} s "
                     f"| {sum(r.get('failures', 0) for r in rs)} | {'PASS' if ok else '**FAIL**'} |")
        L.append("")
        L.append("Per run (round: req/s, segment MB/s, lag max, pending = 0 after): " + "; ".join(
            f"{r['kind']} {r['rep']}: {fmt(r['rps'], 0)}"
            + (f", {fmt(r.get('up_mbs'), 2)} MB/s, {fmt(r.get('lag_max'), 2)} s, {fmt(r.get('drain_s'), 1)} s"
               if r["kind"] != "none" else "") for r in runs) + ".")
        L.append("")
        L.append("segment upload MB/s: dobj_upload_bytes_total (compressed segments; snapshots are not counted) once "
                 "nothing was pending, ÷ the seconds of load (warm-up + measured run), i.e. the upload rate the load "
                 "needs; record MB/s: dobj_journal_record_bytes_total (the raw records, page images) ÷ the same; "
                 "segments/s likewise; uploaded ÷ record bytes: the two totals. lag: "
                 "dobj_upload_lag_seconds, the age of the oldest record not in the store yet (the server updates it "
                 "once a second); max over all rounds, p99 the median of the rounds' p99s. \"first 1,000 segments in after\": "
                 "seconds from the start of the load until dobj_upload_segments_total reached the number of objects "
                 "(about when every object had its first segment stored; an object's first upload also lists its "
                 "keys and writes its meta.json), and the max lag from 2 s later on (the gauge is refreshed once a "
                 "second). Every run checks that "
                 "after the drain dobj_upload_records_total = dobj_commits_total and that wrk saw no errors.")
        L.append("")
    if rres is not None:
        f, c = rres["full"], rres["cp"]
        L.append(f"### Restore of {ROWS:,} rows from file://")
        L.append("")
        db = rres.get("server_db_bytes")
        L.append(f"Built through the server: one object probe/rows, {rres['acked']:,} acknowledged "
                 f"`POST /probe/rows/multi?k=..&count=1&pad={PAD}` (one row of {PAD} random bytes each) in "
                 f"{rres['build_s']:.0f} s = {rres['write_rps']:,.0f} writes/s (wrk: {rres['wrk_posts']:,} POSTs, "
                 f"{rres['wrk_failed']} non-200, {rres['wrk_socket_errors']} socket errors; {rres['topup']} sent "
                 f"afterwards), `--segment-interval-ms {RESTORE_INTERVAL_MS}`, default snapshot rule. Nothing was "
                 f"pending {fmt(rres.get('drain_s'), 1)} s after the last write. The server's database: "
                 f"{fmt(db / 1e6 if db else None, 0)} MB; journal record bytes {rres['rec_bytes'] / 1e9:.2f} GB, "
                 f"segments uploaded {rres['up_bytes'] / 1e9:.2f} GB in {rres['segs']:,} segments, "
                 f"{rres['snaps']} snapshots; the store holds {rres['store_bytes'] / 1e9:.2f} GB "
                 f"({rres['store_seg_files']:,} segment and {rres['store_snap_files']} snapshot files; snapshots "
                 f"at lsn {', '.join(f'{x:,}' for x in rres['snap_lsns']) or 'none'}"
                 + (f": {rres['store_snap_files'] - rres['snaps']} of them uploaded after the last check, "
                    "while the server stopped" if rres['store_snap_files'] > rres['snaps'] else "")
                 + f"). Server {rres['stop']}.")
        L.append("")
        drop = "page cache dropped before" if f["dropped"] and c["dropped"] else "**page cache not dropped** (not permitted)"
        L.append(f"| operation ({drop} each) | wall | + sync FILE | CPU (user + sys) | DB MB/s | DB MB/s with sync | "
                 "records applied | records/s | snapshot lsn | segments | downloaded |")
        L.append("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")

        def row(name, r):
            return (f"| {name} | {r['wall']:.2f} s | {r['sync_s']:.2f} s | {r['cpu']:.2f} s | {r['mbs']:,.0f} "
                    f"| {r['mbs_sync']:,.0f} "
                    f"| {r['records']:,} | {fmt(r['rec_s'], 0)} | {r['snap_lsn']:,} | {r['segments']:,} "
                    f"| {r['downloaded'] / 1e6:,.0f} MB |")
        L.append(row(f"`dobj restore --lsn {f['lsn']:,}` (the last) → {f['size'] / 1e6:,.0f} MB", f))
        L.append(f"| `cp` of that file | {c['wall']:.2f} s | {c['sync_s']:.2f} s | {c['cpu']:.2f} s | {c['mbs']:,.0f} | "
                 f"{c['mbs_sync']:,.0f} | — | — | — | — | — |")
        m = rres["mid"]
        L.append(row(f"`dobj restore --lsn {m['lsn']:,}` (the middle) → {m['size'] / 1e6:,.0f} MB", m))
        b = rres.get("before")
        if b:
            L.append(row(f"`dobj restore --lsn {b['lsn']:,}` (just before the newest snapshot) → "
                         f"{b['size'] / 1e6:,.0f} MB", b))
        L.append("")
        if f["records"] == 0:
            L.append(f"The newest snapshot is at the last lsn, so the full restore applied no records: it is a "
                     f"snapshot download and decompression. Where no snapshot is that recent, a restore applies "
                     f"records as the other rows do.")
            L.append("")
        ok = f["mbs"] >= TARGET_MBS
        TARGETS.append((f"restore ≥ {TARGET_MBS} MB/s", ok, f"{f['mbs']:.0f} MB/s"))
        L.append(f"- restore ÷ cp (time): {f['wall'] / c['wall']:.2f}x; with sync: "
                 f"{(f['wall'] + f['sync_s']) / (c['wall'] + c['sync_s']):.2f}x")
        L.append(f"- target restore ≥ {TARGET_MBS} MB/s of database: {f['mbs']:.0f} MB/s "
                 f"({f['mbs_sync']:.0f} with sync): {'PASS' if ok else '**FAIL**'}")
        L.append(f"- restored file: `PRAGMA integrity_check` = {rres['integrity'][:200]}; `SELECT count(*) FROM multi` = "
                 f"{rres['count']} (acknowledged writes: {rres['acked']:,}): "
                 f"{'OK' if rres['integrity'] == 'ok' and rres['count'] == str(rres['acked']) else '**MISMATCH**'}; "
                 f"to the middle: count(*) = {rres['mid_count']} (expected {ROWS // 2:,})"
                 + (f"; just before the newest snapshot: count(*) = {rres['before_count']} (expected "
                    f"{rres['before']['lsn']:,})" if rres.get("before") else ""))
        L.append(f"- dobj restore said: `{f['line']}`")
        L.append(f"- and for the middle: `{m['line']}`")
        if b:
            L.append(f"- and just before the newest snapshot: `{b['line']}`")
        if rres.get("log_lines"):
            L.append(f"- the server's log (--log-level warn) has {len(rres['log_lines'])} line(s), the first: "
                     f"`{rres['log_lines'][0][:300]}`")
        for prof in rres.get("perf", []):
            L.append("")
            L.append(f"Where the time goes in a restore to lsn {prof['lsn']:,} ({prof['mbs']:.0f} MB/s), from "
                     "`perf record -F 499 --call-graph dwarf` of one more such restore (page cache dropped first). "
                     "By library (`perf report --no-children --sort dso`):")
            L.append("")
            L.append("```")
            L.extend(prof.get("dso", []))
            L.append("```")
            if prof.get("children"):
                L.append("")
                L.append("User-space functions including what they call (`--children --sort sym`, ≥ 2%):")
                L.append("")
                L.append("```")
                L.extend(prof["children"])
                L.append("```")
            L.append("")
            L.append("Self time (`--no-children --sort dso,sym`, ≥ 1%):")
            L.append("")
            L.append("```")
            L.extend(prof["self"])
            L.append("```")
        L.append("")
    L.append("Checks:")
    L.append("")
    for name, ok, text in TARGETS:
        L.append(f"- {'PASS' if ok else '**FAIL**'}: {name}: {text}")
    if FAILURES:
        for x in FAILURES:
            L.append(f"- **FAILED**: {x}")
    else:
        L.append("- correctness: OK (no wrk errors, every record uploaded, servers stopped cleanly"
                 + (", restored database whole and exact" if rres is not None else "") + ")")
    L.append("")
    L.append(f"Command: `{command_line()}`, which ran (PORT, DIR: per run):")
    L.append("")
    L.append("```")
    for c in COMMANDS:
        c = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", c)
        c = c.replace(str(TMP), "DIR")
        L.append(c)
    L.append("```")
    return "\n".join(L) + "\n"


def main():
    global TMP
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    t_start = time.monotonic()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "raw").mkdir(exist_ok=True)
    TMP = Path(tempfile.mkdtemp(prefix="dobj-store-bench."))
    global REV
    REV = subprocess.run(["git", "describe", "--always", "--dirty= + uncommitted changes"], capture_output=True,
                         text=True).stdout.strip() or "unknown"
    global FS
    df = subprocess.run(["df", "-PT", str(TMP)], capture_output=True, text=True).stdout.splitlines()
    FS = f"{df[1].split()[1]} on {df[1].split()[0]}" if len(df) > 1 else "unknown"
    log(f"{BIN}, temporary files in {TMP}; parts {','.join(PARTS)}")
    runs = s3status = rres = None
    try:
        if "upload" in PARTS:
            runs, s3status = part_upload(TMP)
        if "restore" in PARTS:
            try:
                rres = part_restore(TMP)
            except Exception as e:  # noqa: BLE001
                fail(f"restore: {e}")
    finally:
        if not KEEP:
            shutil.rmtree(TMP, ignore_errors=True)
        else:
            log(f"kept {TMP}")
    text = report(runs, s3status, rres, started, time.monotonic() - t_start)
    (OUT / "store.md").write_text(text)
    print()
    print(text)
    log(f"report written to {OUT / 'store.md'}")
    missed = [n for n, ok, _ in TARGETS if not ok]
    if missed:
        log(f"targets missed: {', '.join(missed)}")
    if FAILURES:
        log(f"{len(FAILURES)} check(s) failed (see above)")
        return 1
    return 1 if (STRICT and missed) else 0


TMP = None
FS = "unknown"
REV = "unknown"

if __name__ == "__main__":
    sys.exit(main())
