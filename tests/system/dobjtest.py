"""Helpers shared by the dobj system tests: starting and stopping the real
server binary, raw HTTP, WebSocket and sqlite3-CLI helpers.

Every connection goes to 127.0.0.1. Every wait is bounded.
"""

import hashlib
import http.client
import json
import os
import random
import re
import select
import signal
import socket
import sqlite3
import struct
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest
import requests
import websocket

# Traffic must never go through a proxy, whatever the environment says.
for _var in ("NO_PROXY", "no_proxy"):
    _cur = os.environ.get(_var, "")
    if "127.0.0.0/8" not in _cur:
        os.environ[_var] = ",".join(x for x in (_cur, "127.0.0.1", "127.0.0.0/8", "10.0.0.0/8", "localhost") if x)

REPO = Path(__file__).resolve().parents[2]
# DOBJ_BUILD_DIR lets the suite run against another build tree (for instance a
# sanitizer build); it must have the same layout as build/.
BUILD = Path(os.environ.get("DOBJ_BUILD_DIR", str(REPO / "build"))).resolve()
DOBJ = BUILD / "dobj"
COUNTER_SO = BUILD / "examples" / "counter.so"
CHAT_SO = BUILD / "examples" / "chat.so"
PROBE_SO = BUILD / "tests" / "probe.so"
ALL_CLASSES = (COUNTER_SO, CHAT_SO, PROBE_SO)

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
HTTP_TIMEOUT = 15.0
WS_TIMEOUT = 5.0

DB_PATH_RE = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{32}\.db$")


def require_build(paths=(DOBJ,) + ALL_CLASSES):
    """Fails the calling test with a clear message when the build is missing."""
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        pytest.fail(
            "dobj build output missing: " + ", ".join(missing)
            + f"\nBuild it first (`make` in {REPO}) or point DOBJ_BUILD_DIR at a build tree.",
            pytrace=False,
        )


_given_ports = set()


def free_port():
    """A port to listen on, below the kernel's ephemeral range (32768 and up
    here): a port the kernel hands out itself (port 0) may be taken again by
    an outgoing connection (a host dialling its peers) before the server
    that was meant to listen on it starts."""
    low, high = 20000, 32000
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            high = min(high, int(f.read().split()[0]))
    except (OSError, ValueError):
        pass
    for _ in range(1000):
        port = random.randrange(low, high)
        if port in _given_ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given_ports.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


def q(name):
    """Percent-encodes a whole object name (including '/')."""
    return urllib.parse.quote(name, safe="")


def new_session():
    s = requests.Session()
    s.trust_env = False
    return s


_SESSION = new_session()


def http_request(method, url, **kw):
    kw.setdefault("timeout", HTTP_TIMEOUT)
    return _SESSION.request(method, url, **kw)


class Server:
    """One `build/dobj serve` process on a free loopback port."""

    def __init__(self, workdir, data_dir=None, shards=2, classes=ALL_CLASSES, extra_args=(),
                 use_flags=True, port=None, binary=None, host="127.0.0.1", wrap=()):
        self.binary = Path(binary) if binary else DOBJ
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = Path(data_dir) if data_dir else self.workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.shards = shards
        self.classes = [str(c) for c in classes]
        self.extra_args = [str(a) for a in extra_args]
        self.use_flags = use_flags
        self.port = port or free_port()
        self.host = host
        self.wrap = [str(w) for w in wrap]  # a command prefix, e.g. ip netns exec NS
        self.proc = None
        self.expected_exit = False
        self.starts = 0
        self.log_path = None

    # -- lifecycle --------------------------------------------------------

    def argv(self):
        argv = self.wrap + [str(self.binary), "serve"]
        if self.use_flags:
            argv += ["--listen", f"127.0.0.1:{self.port}", "--data", str(self.data_dir),
                     "--shards", str(self.shards)]
            for c in self.classes:
                argv += ["--class", c]
        return argv + self.extra_args

    def start(self, timeout=START_TIMEOUT):
        require_build([self.binary])
        _SESSION.close()  # drop kept-alive connections to an earlier process
        for attempt in range(3):
            self.starts += 1
            self.log_path = self.workdir / f"server-{self.starts}.log"
            log = open(self.log_path, "wb")
            self.expected_exit = False
            self.proc = subprocess.Popen(self.argv(), cwd=str(REPO), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
            log.close()
            ok, why = self._wait_ready(timeout)
            if ok:
                return self
            if (self.proc.poll() is not None and self.use_flags and attempt < 2
                    and "in use" in self.log_text().lower()):
                self.port = free_port()  # lost a race for the port: try another
                continue
            self._force_stop()
            pytest.fail(f"dobj server did not become ready: {why}\n"
                        f"command: {' '.join(self.argv())}\n"
                        f"output:\n{self.log_tail()}", pytrace=False)
        raise AssertionError("unreachable")

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                return False, f"process exited with status {rc}"
            try:
                r = _SESSION.get(self.url("/_hello"), timeout=1.0)
                if r.status_code == 200:
                    return True, ""
                last = f"GET /_hello returned {r.status_code}"
            except requests.RequestException as e:
                last = f"GET /_hello failed: {e.__class__.__name__}"
            time.sleep(0.05)
        return False, f"not ready after {timeout:.0f}s ({last})"

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, then SIGKILL after `timeout`. Returns (exit status, was_killed)."""
        if self.proc is None:
            return None, False
        self.expected_exit = True
        if self.proc.poll() is not None:
            return self.proc.returncode, False
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout), False
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=timeout), True

    def kill9(self):
        self.expected_exit = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)

    def _force_stop(self):
        self.expected_exit = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass

    def restart(self):
        rc, killed = self.stop()
        assert not killed and rc == 0, f"SIGTERM did not stop the server cleanly (status {rc}, killed={killed})\n{self.log_tail()}"
        return self.start()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def run_to_exit(self, timeout=START_TIMEOUT * 2):
        """Runs `dobj serve` with this server's arguments, expecting it to exit
        by itself (a refused start). Returns (status, stdout, stderr) as text.
        Fails the test if it still runs after `timeout` (it is killed then)."""
        require_build([self.binary])
        try:
            r = subprocess.run(self.argv(), cwd=str(REPO), stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            out = (e.stderr or b"").decode("utf-8", "replace")
            pytest.fail(f"dobj serve did not exit within {timeout:.0f}s (expected it to refuse to start)\n"
                        f"command: {' '.join(self.argv())}\nstderr:\n{out[-4000:]}", pytrace=False)
        return (r.returncode, r.stdout.decode("utf-8", "replace"),
                r.stderr.decode("utf-8", "replace"))

    def metrics(self):
        """GET /_metrics as {name: value} (Prometheus text, no labels)."""
        r = self.get("/_metrics")
        assert r.status_code == 200, f"GET /_metrics: {r.status_code} {r.text[:200]}"
        return parse_metrics(r.text)

    def log_text(self):
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except (OSError, AttributeError):
            return ""

    def log_tail(self, n=4000):
        t = self.log_text()
        return t[-n:] if t else "(no output)"

    # -- addressing -------------------------------------------------------

    def url(self, path):
        return f"http://{self.host}:{self.port}{path}"

    def ws_url(self, path):
        return f"ws://{self.host}:{self.port}{path}"

    def get(self, path, **kw):
        return http_request("GET", self.url(path), **kw)

    def post(self, path, **kw):
        return http_request("POST", self.url(path), **kw)

    def put(self, path, **kw):
        return http_request("PUT", self.url(path), **kw)

    def request(self, method, path, **kw):
        return http_request(method, self.url(path), **kw)

    def raw(self, method, path, body=b"", headers=None, timeout=HTTP_TIMEOUT):
        return raw_request(self.port, method, path, body, headers, timeout)


# -- raw HTTP -----------------------------------------------------------------

class RawResponse:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case name -> value
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return f"<RawResponse {self.status} {self.body[:200]!r}>"


def raw_request(port, method, path, body=b"", headers=None, timeout=HTTP_TIMEOUT):
    """Sends `path` exactly as given (no re-quoting), returns a RawResponse."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        if body or method in ("POST", "PUT", "PATCH"):
            hdrs.setdefault("Content-Length", str(len(body)))
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders(body if body else None)
        r = conn.getresponse()
        data = r.read()
        return RawResponse(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        conn.close()


def send_oversized(port, path, size, method="POST", timeout=HTTP_TIMEOUT):
    """Sends a request announcing a `size`-byte body, streaming the body only as
    long as the server has not answered yet. Returns the status code of the
    response (the server may answer before reading the body, then close)."""
    deadline = time.monotonic() + timeout
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall((f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   f"Content-Type: application/octet-stream\r\n"
                   f"Content-Length: {size}\r\nConnection: close\r\n\r\n").encode())
        chunk = b"x" * 65536
        sent = 0
        s.setblocking(False)
        answer = b""
        while time.monotonic() < deadline:
            r, w, _ = select.select([s], [s] if sent < size else [], [], 0.5)
            if r:
                try:
                    data = s.recv(65536)
                except (ConnectionResetError, BlockingIOError):
                    data = b""
                if not data:
                    break
                answer += data
                if b"\r\n" in answer:
                    break
            elif w:
                try:
                    sent += s.send(chunk[: min(len(chunk), size - sent)])
                except BlockingIOError:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    sent = size  # the server stopped reading; wait for its answer
        m = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
        assert m, f"no HTTP status line received for a {size}-byte body (got {answer[:200]!r})"
        return int(m.group(1))
    finally:
        s.close()


# -- WebSockets ---------------------------------------------------------------

def ws_connect(server, path, timeout=WS_TIMEOUT):
    return websocket.create_connection(server.ws_url(path), timeout=timeout,
                                       http_no_proxy=["127.0.0.1"])


def ws_recv(ws, timeout=WS_TIMEOUT):
    """Next data message (str or bytes); fails on timeout or close."""
    ws.settimeout(timeout)
    try:
        opcode, frame = ws.recv_data_frame(False)
    except websocket.WebSocketTimeoutException:
        pytest.fail(f"no WebSocket message within {timeout}s")
    if opcode == websocket.ABNF.OPCODE_CLOSE:
        pytest.fail(f"WebSocket closed while waiting for a message: {close_info(frame)}")
    data = frame.data if hasattr(frame, "data") else frame
    if opcode == websocket.ABNF.OPCODE_TEXT:
        return data.decode("utf-8") if isinstance(data, bytes) else data
    return data


def ws_recv_json(ws, timeout=WS_TIMEOUT):
    msg = ws_recv(ws, timeout)
    assert isinstance(msg, str), f"expected a text frame, got {msg!r}"
    return json.loads(msg)


def ws_recv_until(ws, pred, timeout=WS_TIMEOUT, what="a matching message"):
    """Reads JSON messages until pred(msg) is true; returns (msg, skipped)."""
    deadline = time.monotonic() + timeout
    skipped = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"did not receive {what} within {timeout}s; got {skipped!r}")
        msg = ws_recv_json(ws, left)
        if pred(msg):
            return msg, skipped
        skipped.append(msg)


def ws_expect_close(ws, timeout=WS_TIMEOUT):
    """Waits for a close frame; returns (code, reason)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ws.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            opcode, frame = ws.recv_data_frame(True)
        except websocket.WebSocketTimeoutException:
            break
        except websocket.WebSocketConnectionClosedException:
            pytest.fail("connection dropped without a close frame")
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return close_info(frame)
    pytest.fail(f"no close frame within {timeout}s")


def close_info(frame):
    data = frame.data or b""
    if len(data) < 2:
        return None, ""
    return int.from_bytes(data[:2], "big"), data[2:].decode("utf-8", "replace")


# -- SQLite files -------------------------------------------------------------

def db_files(data_dir):
    """Every object database under DATA/objects, checked against the layout."""
    root = Path(data_dir) / "objects"
    files = sorted(root.glob("*/*.db")) if root.is_dir() else []
    for f in files:
        rel = f.relative_to(root).as_posix()
        assert DB_PATH_RE.match(rel), f"object file {f} does not match objects/<2 hex>/<32 hex>.db"
    return files


def sqlite_json(path, sql, timeout=30):
    """Runs one statement with the real sqlite3 CLI, read-only; returns rows."""
    r = subprocess.run(["sqlite3", "-readonly", "-json", str(path), sql],
                       capture_output=True, timeout=timeout)
    assert r.returncode == 0, f"sqlite3 {path} {sql!r} failed: {r.stderr.decode(errors='replace')}"
    out = r.stdout.decode("utf-8").strip()
    return json.loads(out) if out else []


META_SQL = ("SELECT json_object("
            "'meta', (SELECT json_group_object(key, value) FROM _dobj_meta),"
            "'tables', (SELECT json_group_array(name) FROM sqlite_master WHERE type = 'table'"
            " AND name NOT LIKE '\\_dobj\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\')"
            ") AS j")


def object_meta(path):
    """(class, name, [user tables]) of one object database."""
    rows = sqlite_json(path, META_SQL)
    j = json.loads(rows[0]["j"])
    meta = json.loads(j["meta"]) if isinstance(j["meta"], str) else j["meta"]
    tables = json.loads(j["tables"]) if isinstance(j["tables"], str) else j["tables"]
    return meta.get("class"), meta.get("name"), tables


def objects_by_key(data_dir):
    """{(class, name): (path, [user tables])} for every object file."""
    out = {}
    for f in db_files(data_dir):
        cls, name, tables = object_meta(f)
        assert (cls, name) not in out, f"two files for {cls}/{name}: {out[(cls, name)][0]} and {f}"
        out[(cls, name)] = (f, tables)
    return out


def table_columns(path, table):
    return [r["name"] for r in sqlite_json(path, f"SELECT name FROM pragma_table_info('{table}')")]


def _qi(ident):
    return '"' + ident.replace('"', '""') + '"'


def user_rows_sql(schema):
    """One statement returning every row of the given {table: [columns]} as JSON."""
    parts = []
    for table, cols in schema.items():
        obj = ", ".join(f"'{c}', {_qi(c)}" for c in cols)
        parts.append(f"'{table}', (SELECT json_group_array(json_object({obj})) FROM {_qi(table)})")
    return f"SELECT json_object({', '.join(parts)}) AS j"


def user_rows(path, sql):
    j = json.loads(sqlite_json(path, sql)[0]["j"])
    return {t: (json.loads(v) if isinstance(v, str) else v) for t, v in j.items()}


def integer_locations(rows_by_table, value):
    """The places holding integer `value`: ("cell", table, column) when some
    row's cell equals it, ("sum", table, column) when an integer column sums
    to it (a counter kept as a log of increments)."""
    found = set()
    for table, rows in rows_by_table.items():
        cols = {}
        for row in rows:
            for c, v in row.items():
                if isinstance(v, int) and not isinstance(v, bool):
                    if v == value:
                        found.add(("cell", table, c))
                    cols.setdefault(c, []).append(v)
        for c, vals in cols.items():
            if sum(vals) == value:
                found.add(("sum", table, c))
    return found


def wait_until(pred, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


# -- the host journal and object files -----------------------------------------

def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        out[name.strip()] = float(value)
    return out


def object_path(data_dir, cls, name):
    """DATA/objects/<2 hex>/<32 hex>.db of class/name (first 16 bytes of
    SHA-256("class/name") in hex)."""
    h = hashlib.sha256(f"{cls}/{name}".encode("utf-8")).hexdigest()[:32]
    return Path(data_dir) / "objects" / h[:2] / f"{h}.db"


def remove_db(path):
    """Deletes an object file and its -wal and -shm (those that exist)."""
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(str(path) + suffix)
        except FileNotFoundError:
            pass


SEGMENT_HEADER_BYTES = 32
BATCH_HEADER_BYTES = 32
SEGMENT_MAGIC = b"DJS1"
BATCH_MAGIC = b"DJB1"


def journal_segments(data_dir):
    """The journal's segment files (DATA/journal/<16 hex>.log), in order."""
    d = Path(data_dir) / "journal"
    segs = [p for p in d.glob("*.log") if re.fullmatch(r"[0-9a-f]{16}\.log", p.name)] if d.is_dir() else []
    return sorted(segs, key=lambda p: int(p.stem, 16))


class Batch:
    def __init__(self, offset, clen, ulen, nrecords, seq):
        self.offset = offset          # of the batch header in its segment
        self.clen = clen              # compressed payload bytes
        self.ulen = ulen
        self.nrecords = nrecords
        self.seq = seq

    @property
    def payload(self):
        return self.offset + BATCH_HEADER_BYTES

    @property
    def end(self):
        return self.offset + BATCH_HEADER_BYTES + self.clen

    def __repr__(self):
        return (f"<Batch @{self.offset} c={self.clen} u={self.ulen} "
                f"records={self.nrecords} seq={self.seq}>")


def journal_batches(segment):
    """Walks a segment's batch headers (journal.c's format; checksums are not
    verified). Returns (batches, end of the last whole batch)."""
    data = Path(segment).read_bytes()
    assert len(data) >= SEGMENT_HEADER_BYTES and data[:4] == SEGMENT_MAGIC, \
        f"{segment}: no segment header ({data[:8]!r})"
    off, out = SEGMENT_HEADER_BYTES, []
    while off + BATCH_HEADER_BYTES <= len(data):
        magic, clen, ulen, n, seq = struct.unpack_from("<4sIIIQ", data, off)
        if magic != BATCH_MAGIC or off + BATCH_HEADER_BYTES + clen > len(data):
            break
        out.append(Batch(off, clen, ulen, n, seq))
        off += BATCH_HEADER_BYTES + clen
    return out, off


def read_db(path, queries):
    """Runs {key: sql} read-only on a stopped server's object file (immutable:
    the main file exactly as it is, no -wal). A query failing with "no such
    table" gives None. Returns {key: [rows]}."""
    path = Path(path)
    out = {}
    con = sqlite3.connect(f"file:{path}?immutable=1", uri=True, timeout=5)
    try:
        for k, sql in queries.items():
            try:
                out[k] = con.execute(sql).fetchall()
            except sqlite3.OperationalError as e:
                if "no such table" not in str(e):
                    raise
                out[k] = None
    finally:
        con.close()
    return out
