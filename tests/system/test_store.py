"""Object storage: every durable record streamed to a store (file:// and s3://)
as segments, read back here with an independent parser (wal/segment.c and
wal/record.c formats); point-in-time restore with `dobj restore` (--at and
--lsn) checked against what the workload wrote at each moment; `dobj ls`;
restore errors; uploads that were pending at a kill -9; databases rebuilt from
the store after DATA/objects is wiped; two real S3 servers (s3rver, Swift with
SigV4 checks), a wrong secret key, listings past 1000 keys; a store outage
under load; a store that never answers (SIGTERM, a new object's first write).

Every server here runs with --idle-timeout-ms 600000, so that a probe object is
activated (on_activate writes a row into `activations`, which is a record of
its own only when it is an event's only write) once per server start: the
records of an object are then exactly its writes, and lsn k is its k-th write.
"""

import calendar
import hashlib
import json
import os
import random
import re
import socket
import struct
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
import zstandard

try:
    import xxhash
except ImportError:  # the XXH3 trailers are then not checked
    xxhash = None

from dobjtest import DOBJ, new_session, object_path, q, remove_db, sqlite_json, wait_until
from s3servers import SERVERS, ServerError

SEED = int(os.environ.get("DOBJ_TEST_SEED", str(time.time_ns() % (1 << 32))))

UPLOAD_TIMEOUT = 30.0
CLI_TIMEOUT = 60.0
# One probe activation per server start (see the module docstring).
BASE_ARGS = ["--idle-timeout-ms", "600000"]


def now_us():
    return time.time_ns() // 1000


def rfc3339(us, offset_minutes=0):
    """`us` (microseconds since the epoch) as RFC 3339 with microseconds, in UTC
    ('Z') or at the given UTC offset."""
    secs, frac = divmod(us + offset_minutes * 60_000_000, 1_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:06d}"
    if offset_minutes == 0:
        return text + "Z"
    sign, m = ("+" if offset_minutes > 0 else "-"), abs(offset_minutes)
    return text + f"{sign}{m // 60:02d}:{m % 60:02d}"


def parse_rfc3339_us(text):
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?Z", text)
    assert m, f"{text!r} is not an RFC 3339 UTC time"
    secs = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    return secs * 1_000_000 + int((m.group(2) or "0").ljust(6, "0"))


def object_id(cls, name):
    return hashlib.sha256(f"{cls}/{name}".encode("utf-8")).digest()[:16]


def object_prefix(cls, name):
    """The object's key prefix in the store: CLASS/HEX/."""
    return f"{cls}/{object_id(cls, name).hex()}/"


# -- the segment and record formats, read independently -------------------------

SEG_MAGIC = b"DSG1"
REC_MAGIC = b"DRC1"
SEG_HEADER = 64
SEG_ENTRY = 24
REC_HEADER = 64
SEG_KEY_RE = re.compile(r"(?:^|/)segments/(\d{20})-(\d{20})-(\d{20})\.seg$")
SNAP_KEY_RE = re.compile(r"^snapshots/(\d{20})\.db$")


def xxh3(data):
    return xxhash.xxh3_64_intdigest(data)


class Record:
    def __init__(self, raw, oid, epoch, lsn, commit_us, db_pages, page_size, pgnos, flags):
        self.raw, self.oid, self.epoch, self.lsn = raw, oid, epoch, lsn
        self.commit_us, self.db_pages, self.page_size = commit_us, db_pages, page_size
        self.pgnos, self.flags = pgnos, flags


def parse_record(raw, where):
    """One record (wal/record.c): magic, sizes, page order, checksum."""
    assert len(raw) >= REC_HEADER + 8, f"{where}: {len(raw)} bytes is too short for a record"
    magic, length = struct.unpack_from("<4sI", raw, 0)
    assert magic == REC_MAGIC, f"{where}: record magic {magic!r}, not {REC_MAGIC!r}"
    assert length == len(raw), f"{where}: record says {length} bytes, is {len(raw)}"
    oid = bytes(raw[8:24])
    epoch, lsn, commit_us = struct.unpack_from("<QQq", raw, 24)
    db_pages, page_size, npages, flags = struct.unpack_from("<IIII", raw, 48)
    assert page_size in [1 << k for k in range(9, 17)], f"{where}: page size {page_size}"
    assert length == REC_HEADER + npages * (4 + page_size) + 8, \
        f"{where}: {npages} pages of {page_size} bytes do not add up to {length} bytes"
    pgnos = [struct.unpack_from("<I", raw, REC_HEADER + i * (4 + page_size))[0] for i in range(npages)]
    assert all(1 <= p <= db_pages for p in pgnos), f"{where}: page numbers {pgnos} outside 1..{db_pages}"
    assert pgnos == sorted(set(pgnos)), f"{where}: page numbers not ascending and unique: {pgnos}"
    if xxhash is not None:
        want = struct.unpack_from("<Q", raw, len(raw) - 8)[0]
        assert xxh3(raw[:-8]) == want, f"{where}: record checksum mismatch"
    return Record(bytes(raw), oid, epoch, lsn, commit_us, db_pages, page_size, pgnos, flags)


class Segment:
    def __init__(self, key, oid, epoch, first, last, records):
        self.key, self.oid, self.epoch, self.first, self.last = key, oid, epoch, first, last
        self.records = records


def parse_segment(data, key, oid):
    """One segment (wal/segment.c), checked throughout: header, the name's lsns
    and epoch, sizes, checksum, the index (frames back to back, covering the
    data section), every frame decompressing to the record with the right lsn,
    object, epoch and commit time, commit times in order."""
    where = f"segment {key}"
    m = SEG_KEY_RE.search(key)
    assert m, f"{where}: not a segment name"
    k_first, k_last, k_epoch = (int(g) for g in m.groups())
    assert len(data) >= SEG_HEADER + 8, f"{where}: {len(data)} bytes is too short"
    magic, version = struct.unpack_from("<4sI", data, 0)
    assert magic == SEG_MAGIC, f"{where}: magic {magic!r}, not {SEG_MAGIC!r}"
    assert version == 1, f"{where}: version {version}"
    sid = bytes(data[8:24])
    epoch, first, last = struct.unpack_from("<QQQ", data, 24)
    n, flags = struct.unpack_from("<II", data, 48)
    (data_len,) = struct.unpack_from("<Q", data, 56)
    assert sid == oid, f"{where}: object id {sid.hex()}, not {oid.hex()}"
    assert (first, last, epoch) == (k_first, k_last, k_epoch), \
        f"{where}: header says lsns {first}..{last} epoch {epoch}, the name {k_first}..{k_last} epoch {k_epoch}"
    assert first >= 1 and n == last - first + 1, f"{where}: {n} records for lsns {first}..{last}"
    assert flags == 0, f"{where}: flags {flags}"
    assert len(data) == SEG_HEADER + n * SEG_ENTRY + data_len + 8, \
        f"{where}: {len(data)} bytes, the header says {SEG_HEADER} + {n} x {SEG_ENTRY} + {data_len} + 8"
    if xxhash is not None:
        assert xxh3(data[:-8]) == struct.unpack_from("<Q", data, len(data) - 8)[0], \
            f"{where}: segment checksum mismatch"
    dstart = SEG_HEADER + n * SEG_ENTRY
    dctx = zstandard.ZstdDecompressor()
    records, expect_off, prev_t = [], 0, None
    for i in range(n):
        commit_us, off, clen, rlen = struct.unpack_from("<qQII", data, SEG_HEADER + i * SEG_ENTRY)
        assert off == expect_off, f"{where}: frame {i} at {off}, the previous one ended at {expect_off}"
        assert off + clen <= data_len, f"{where}: frame {i} ends past the data section"
        expect_off += clen
        frame = data[dstart + off: dstart + off + clen]
        try:
            raw = dctx.decompress(frame, max_output_size=rlen)
        except zstandard.ZstdError as e:
            pytest.fail(f"{where}: frame {i} does not decompress: {e}")
        assert len(raw) == rlen, f"{where}: frame {i} gives {len(raw)} bytes, the index says {rlen}"
        rec = parse_record(raw, f"{where} record {i}")
        assert rec.lsn == first + i, f"{where}: record {i} has lsn {rec.lsn}, not {first + i}"
        assert rec.oid == oid, f"{where}: record {rec.lsn} belongs to {rec.oid.hex()}"
        assert rec.epoch == epoch, f"{where}: record {rec.lsn} epoch {rec.epoch}, segment epoch {epoch}"
        assert rec.commit_us == commit_us, \
            f"{where}: record {rec.lsn} committed at {rec.commit_us}, the index says {commit_us}"
        assert rec.flags == 0, f"{where}: record {rec.lsn} has flags {rec.flags} (an 'uploaded' marker?)"
        assert prev_t is None or commit_us >= prev_t, \
            f"{where}: record {rec.lsn} committed at {commit_us}, before the previous one ({prev_t})"
        prev_t = commit_us
        records.append(rec)
    assert expect_off == data_len, f"{where}: frames cover {expect_off} of {data_len} data bytes"
    return Segment(key, sid, epoch, first, last, records)


# -- stores, as the tests see them ---------------------------------------------

class FileStore:
    """A file:///DIR store: keys are files under DIR."""

    def __init__(self, root):
        self.root = Path(root)
        self.url = f"file://{self.root}"
        self.args = ["--store", self.url]
        self.env = None

    def list(self, prefix=""):
        """{key: size} of every file under prefix (temporary files too: none
        may be left once uploads are done)."""
        out = {}
        if not self.root.is_dir():
            return out
        for dirpath, _, files in os.walk(self.root):
            for f in files:
                key = (Path(dirpath) / f).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    try:
                        out[key] = (Path(dirpath) / f).stat().st_size
                    except FileNotFoundError:
                        pass  # a temporary file renamed into place since the walk read the directory
        return out

    def get(self, key):
        return (self.root / key).read_bytes()

    def path(self, key):
        return self.root / key


class S3Store:
    """A prefix of a bucket on one of the test S3 servers, read with boto3."""

    def __init__(self, s3, root, creds="flags"):
        self.s3 = s3
        self.root = root.strip("/") + "/"
        self.url = f"s3://{s3.bucket}/{self.root.rstrip('/')}"
        self.client = s3.boto3_client()
        self.args = ["--store", self.url, "--store-endpoint", s3.endpoint, "--store-region", s3.region,
                     "--store-path-style"]
        env = {k: v for k, v in os.environ.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
        if creds == "flags":
            self.args += ["--store-access-key", s3.access_key, "--store-secret-key", s3.secret_key]
        else:
            env.update(AWS_ACCESS_KEY_ID=s3.access_key, AWS_SECRET_ACCESS_KEY=s3.secret_key)
        self.env = env

    def list(self, prefix=""):
        out = {}
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.s3.bucket, Prefix=self.root + prefix)
        for page in pages:
            for o in page.get("Contents", []):
                out[o["Key"][len(self.root):]] = o["Size"]
        return out

    def get(self, key):
        return self.client.get_object(Bucket=self.s3.bucket, Key=self.root + key)["Body"].read()


class InStore:
    """What the store holds for one object, checked (see check_object)."""

    def __init__(self, keys, meta, segments, records, snapshots):
        self.keys, self.meta, self.segments, self.records = keys, meta, segments, records
        self.snapshots = snapshots  # lsn -> (user tables, _dobj_meta) of the snapshot

    @property
    def last_lsn(self):
        return max(self.records) if self.records else 0


def check_object(store, cls, name, last_lsn=None, allow_overlap=False):
    """Reads and checks everything the store holds for cls/name: only
    meta.json, segments and snapshots; meta.json says the class, name and id;
    the segments parse (parse_segment) and cover lsn 1 .. their last with no
    gap and, unless allow_overlap, no overlap (where they overlap, the records
    are the same bytes: one history). With last_lsn, the newest record is that."""
    prefix = object_prefix(cls, name)
    what = f"{cls}/{name} ({prefix} in {store.url})"
    keys = {k[len(prefix):]: size for k, size in store.list(prefix).items()}
    assert keys, f"{what}: nothing in the store"
    odd = [k for k in keys if k != "meta.json" and not SEG_KEY_RE.match(k) and not SNAP_KEY_RE.match(k)]
    assert not odd, f"{what}: unexpected keys {odd}"
    assert "meta.json" in keys, f"{what}: no meta.json among {sorted(keys)}"
    meta = json.loads(store.get(prefix + "meta.json").decode("utf-8"))
    oid = object_id(cls, name)
    assert set(meta) == {"class", "name", "id", "created"}, f"{what}: meta.json {meta}"
    assert (meta["class"], meta["name"], meta["id"]) == (cls, name, oid.hex()), f"{what}: meta.json {meta}"
    created = parse_rfc3339_us(meta["created"])
    assert abs(created - now_us()) < 3600 * 1_000_000, f"{what}: meta.json created {meta['created']}"
    segs = []
    for k in sorted(keys):
        if SEG_KEY_RE.match(k):
            data = store.get(prefix + k)
            assert len(data) == keys[k], f"{what}: {k} listed with {keys[k]} bytes, read {len(data)}"
            segs.append(parse_segment(data, prefix + k, oid))
    assert segs, f"{what}: no segments"
    segs.sort(key=lambda s: (s.first, s.last))
    records, covered = {}, 0
    for s in segs:
        assert s.first <= covered + 1, \
            f"{what}: records {covered + 1}..{s.first - 1} are in no segment ({[x.key for x in segs]})"
        if not allow_overlap:
            assert s.first == covered + 1, \
                f"{what}: {s.key} overlaps records up to {covered} of an earlier segment"
        for r in s.records:
            if r.lsn in records:
                assert records[r.lsn].raw == r.raw, \
                    f"{what}: two segments hold different records {r.lsn} ({s.key})"
            records[r.lsn] = r
        covered = max(covered, s.last)
    if last_lsn is not None:
        assert covered == last_lsn, f"{what}: the store holds records up to {covered}, expected {last_lsn}"
    ts = [records[lsn].commit_us for lsn in sorted(records)]
    assert ts == sorted(ts), f"{what}: commit times do not ascend with the lsns"
    snapshots = {}
    for k in sorted(keys):
        m = SNAP_KEY_RE.match(k)
        if m:
            lsn = int(m.group(1))
            assert 1 <= lsn <= covered, f"{what}: snapshot {k} is past the newest record {covered}"
            snapshots[lsn] = read_snapshot(store.get(prefix + k), f"{what} {k}", cls, name, lsn)
    return InStore(keys, meta, segs, records, snapshots)


def read_snapshot(data, where, cls, name, lsn):
    """A snapshot: one zstd frame (nothing after it) holding an SQLite database
    that passes integrity_check and says it is cls/name at lsn. Returns
    (user tables, _dobj_meta)."""
    d = zstandard.ZstdDecompressor().decompressobj()
    try:
        db = d.decompress(data)
    except zstandard.ZstdError as e:
        pytest.fail(f"{where}: does not decompress: {e}")
    assert d.eof and not d.unused_data, f"{where}: not exactly one whole zstd frame"
    assert db[:16] == b"SQLite format 3\x00", f"{where}: not an SQLite database ({db[:16]!r})"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "snapshot.db"
        path.write_bytes(db)
        tables, meta = db_state(path)
    assert (meta.get("class"), meta.get("name"), meta.get("lsn")) == (cls, name, lsn), \
        f"{where}: _dobj_meta {meta}, expected {cls}/{name} at lsn {lsn}"
    return tables, meta


def store_last_lsn(store, cls, name):
    """The newest lsn among the object's segment names (0 if none)."""
    last = 0
    for k in store.list(object_prefix(cls, name)):
        m = SEG_KEY_RE.search(k)
        if m:
            last = max(last, int(m.group(2)))
    return last


def wait_store(store, want, srv=None, timeout=UPLOAD_TIMEOUT):
    """Waits until the store holds records up to want[(cls, name)] for every
    object; fails naming those that are behind."""
    def behind():
        return {o: (store_last_lsn(store, *o), lsn) for o, lsn in want.items()
                if store_last_lsn(store, *o) < lsn}
    if wait_until(lambda: not behind(), timeout, interval=0.1):
        return
    late = behind()
    m = srv.metrics() if srv is not None and srv.alive() else {}
    pytest.fail(f"the store did not get every record within {timeout:.0f}s: (have, want) {late}\n"
                f"upload metrics: { {k: v for k, v in m.items() if 'upload' in k} }\n"
                + (srv.log_tail() if srv is not None else ""), pytrace=False)


def upload_metrics(srv):
    return {k[len("dobj_upload_"):]: v for k, v in srv.metrics().items() if k.startswith("dobj_upload_")}


def wait_uploaded(srv, records_total=None, timeout=UPLOAD_TIMEOUT):
    """Waits until nothing is pending (and, if given, records_total records were
    uploaded) and the lag is 0; returns the upload metrics."""
    def done():
        m = upload_metrics(srv)
        ok = (m["records_pending"] == 0 and m["lag_seconds"] == 0
              and (records_total is None or m["records_total"] >= records_total))
        return m if ok else None
    m = wait_until(done, timeout, interval=0.1)
    if not m:
        pytest.fail(f"uploads not done within {timeout:.0f}s (want {records_total} records): "
                    f"{upload_metrics(srv)}\n{srv.log_tail()}", pytrace=False)
    return m


def wait_quiet(srv, timeout=UPLOAD_TIMEOUT):
    """Waits until nothing is pending and records_total stays the same for a
    second (the records of the last events have reached the uploader)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        m = upload_metrics(srv)
        if m["records_pending"] == 0 and m["lag_seconds"] == 0:
            if last is not None and last["records_total"] == m["records_total"]:
                return m
            last = m
            time.sleep(1.0)
        else:
            last = None
            time.sleep(0.1)
    pytest.fail(f"uploads did not settle within {timeout:.0f}s: {upload_metrics(srv)}\n{srv.log_tail()}",
                pytrace=False)


# -- the dobj tools -------------------------------------------------------------

RESTORED_RE = re.compile(r"^restored (\S+) to lsn (\d+) \((?:committed (\S+)|the snapshot's moment)\) "
                         r"into (.+?): (\d+) bytes; snapshot lsn (\d+),")


def dobj_cli(args, env=None, timeout=CLI_TIMEOUT):
    r = subprocess.run([str(DOBJ), *map(str, args)], capture_output=True, timeout=timeout, env=env,
                       stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def restore(store, obj, out, at=None, lsn=None, extra=()):
    """`dobj restore`; returns (status, stdout, stderr)."""
    args = ["restore", *store.args, "--object", obj, "--out", out, *extra]
    if at is not None:
        args += ["--at", at]
    if lsn is not None:
        args += ["--lsn", lsn]
    return dobj_cli(args, env=store.env)


def restore_ok(store, obj, out, snapshot_lsn=None, **kw):
    """A restore that must work; returns (lsn, commit time in us) from its
    output. snapshot_lsn: a list that gets the snapshot lsn it started from."""
    rc, out_text, err = restore(store, obj, out, **kw)
    assert rc == 0, f"dobj restore {obj} {kw} -> {rc}\nstdout: {out_text}\nstderr: {err}"
    m = RESTORED_RE.match(out_text.strip())
    assert m and m.group(1) == obj and m.group(4) == str(out), f"dobj restore output: {out_text!r}"
    assert Path(out).is_file(), f"dobj restore said it wrote {out}, which does not exist"
    if snapshot_lsn is not None:
        snapshot_lsn.append(int(m.group(6)))
    # "(the snapshot's moment)" when the restore applied no record (it ended
    # on a snapshot, whose commit time it does not download).
    committed = None if m.group(3) is None else parse_rfc3339_us(m.group(3))
    return int(m.group(2)), committed


def restore_fails(store, obj, out, status=1, **kw):
    """A restore that must fail with `status`, leaving nothing at out (no
    .part, -wal, -shm either); returns stderr."""
    rc, out_text, err = restore(store, obj, out, **kw)
    assert rc == status, (f"dobj restore {obj} {kw}: status {rc}, expected {status}\n"
                          f"stdout: {out_text}\nstderr: {err}")
    assert err.strip(), f"dobj restore {obj} {kw} failed without saying why"
    left = [str(p) for p in Path(out).parent.glob(Path(out).name + "*")]
    assert not left, f"dobj restore {obj} {kw} failed but left {left}"
    return err


LS_ROW_RE = re.compile(r'^(\S+)\s+("(?:[^"\\]|\\.)*"|\?)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\S+)\s*$')


def dobj_ls(store):
    """`dobj ls` as {(class, name): {bytes, last_lsn, segs, snaps, last_upload}}."""
    rc, out, err = dobj_cli(["ls", *store.args], env=store.env)
    assert rc == 0, f"dobj ls -> {rc}\n{out}\n{err}"
    lines = out.splitlines()
    assert lines and lines[0].split() == ["CLASS", "NAME", "BYTES", "LAST_LSN", "SEGS", "SNAPS", "LAST_UPLOAD"], \
        f"dobj ls header: {lines[:1]}"
    rows = {}
    for line in lines[1:]:
        m = LS_ROW_RE.match(line)
        assert m, f"dobj ls row not understood: {line!r}"
        name = json.loads(m.group(2)) if m.group(2) != "?" else None
        rows[(m.group(1), name)] = dict(bytes=int(m.group(3)), last_lsn=int(m.group(4)), segs=int(m.group(5)),
                                        snaps=int(m.group(6)), last_upload=m.group(7))
    return rows


# -- object databases -----------------------------------------------------------

USER_TABLES_SQL = ("SELECT name FROM sqlite_master WHERE type = 'table' "
                   "AND name NOT LIKE '\\_dobj\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
                   "ORDER BY name")


def db_state(path):
    """A stopped database by the sqlite3 CLI: integrity_check must say ok;
    returns ({table: rows in order}, {_dobj_meta key: value})."""
    r = subprocess.run(["sqlite3", "-readonly", str(path), "PRAGMA integrity_check"],
                       capture_output=True, timeout=30)
    out = r.stdout.decode(errors="replace").strip()
    assert r.returncode == 0 and out == "ok", \
        f"integrity_check {path}: status {r.returncode} {out!r} {r.stderr.decode(errors='replace')!r}"
    tables = {}
    for t in (row["name"] for row in sqlite_json(path, USER_TABLES_SQL)):
        tables[t] = sqlite_json(path, f'SELECT * FROM "{t}" ORDER BY 1')
    meta = {row["key"]: row["value"] for row in sqlite_json(path, "SELECT key, value FROM _dobj_meta")}
    return tables, meta


class Model:
    """What every object holds after each of its writes, and when each write
    was sent and answered (wall clock, microseconds)."""

    def __init__(self):
        self.states = {}   # (cls, name) -> [state after 0, 1, 2 ... writes]
        self.windows = {}  # (cls, name) -> [(sent, answered) of write 1, 2 ...]
        self.log = []      # ((cls, name), lsn, sent, answered) in order

    def state(self, obj, lsn):
        return self.states[obj][lsn]

    def lsn(self, obj):
        return len(self.states.get(obj, [None])) - 1

    def _add(self, obj, new_state, sent, answered):
        self.states.setdefault(obj, [None]).append(new_state)
        self.windows.setdefault(obj, []).append((sent, answered))
        self.log.append((obj, len(self.windows[obj]), sent, answered))

    def expected_tables(self, obj, lsn):
        s = self.state(obj, lsn)
        if obj[0] == "counter":
            return {"counter": [{"id": 1, "value": s}]}
        return {"kv": [{"k": k, "v": s[k]} for k in sorted(s)]}

    def put(self, srv, name, key, value, session=None):
        """PUT /probe/NAME/kv/KEY = value."""
        obj = ("probe", name)
        prev = self.states.get(obj, [None])[-1] or {}
        sent = now_us()
        r = (session or new_session()).put(srv.url(f"/probe/{q(name)}/kv/{q(key)}"), data=value.encode(),
                                           timeout=15)
        answered = now_us()
        assert r.status_code == 200, f"PUT probe/{name}/kv/{key}: {r.status_code} {r.text}\n{srv.log_tail()}"
        self._add(obj, {**prev, key: value}, sent, answered)

    def incr(self, srv, name, by, session=None):
        """POST /counter/NAME?by=BY."""
        obj = ("counter", name)
        prev = self.states.get(obj, [None])[-1] or 0
        sent = now_us()
        r = (session or new_session()).post(srv.url(f"/counter/{q(name)}?by={by}"), timeout=15)
        answered = now_us()
        assert r.status_code == 200, f"POST counter/{name}: {r.status_code} {r.text}\n{srv.log_tail()}"
        assert r.json()["value"] == prev + by, f"counter/{name}: {r.json()} after {prev} + {by}"
        self._add(obj, prev + by, sent, answered)


def check_restored(path, model, obj, lsn, activations=1):
    """A restored file: integrity_check ok, its _dobj_meta names the object at
    `lsn`, and its user tables hold what the model says (a probe also has its
    `activations` rows)."""
    tables, meta = db_state(path)
    cls, name = obj
    assert (meta.get("class"), meta.get("name"), meta.get("lsn")) == (cls, name, lsn), \
        f"{path}: _dobj_meta {meta}, expected {cls}/{name} at lsn {lsn}"
    want = model.expected_tables(obj, lsn)
    if cls == "probe":
        acts = tables.pop("activations", None)
        assert acts is not None and len(acts) == activations, \
            f"{path}: activations {acts}, expected {activations} row(s)"
    assert tables == want, f"{cls}/{name} restored at lsn {lsn} ({path}):\n got  {tables}\n want {want}"


def store_server(server_factory, name, store, interval_ms=300, extra=()):
    return server_factory(name=name, shards=2,
                          extra_args=[*store.args, "--segment-interval-ms", str(interval_ms), *BASE_ARGS, *extra])


def set_interval(srv, interval_ms):
    """Changes the server's --segment-interval-ms for its next start."""
    args = list(srv.extra_args)
    i = args.index("--segment-interval-ms")
    args[i + 1] = str(interval_ms)
    srv.extra_args = args


# -- 1. file:// basics ------------------------------------------------------------

def test_file_store_segments_meta_and_ls(server_factory, tmp_path):
    """Writes to three objects (one with a name that needs escaping: '/',
    a quote, spaces, non-ASCII), in two bursts so that segments are cut
    (--segment-interval-ms 300). Once dobj_upload_records_pending is 0: the
    store holds for each object a meta.json naming it, and segments named
    <first>-<last>-<epoch> that cover lsn 1 .. its number of writes with no
    gap or overlap, each parsed here independently of the server's code
    (every record decompresses, has the right lsn, object id and commit time);
    the upload metrics agree with the files (records, segments, bytes, no
    failures); `dobj ls` lists each object with its LAST_LSN, segment count
    and bytes."""
    store = FileStore(tmp_path / "store")
    srv = store_server(server_factory, "basics", store)
    model = Model()
    odd = 'we"ird/ü ñ'
    for burst in range(2):
        for i in range(5):
            model.incr(srv, "basic-c", i + 1)
        for i in range(4):
            model.put(srv, "basic-p", f"k{burst}-{i}", f"v{burst}-{i}")
        for i in range(3):
            model.put(srv, odd, f"x{burst}{i}", "ü" * (i + 1))
        if burst == 0:
            # Let the first burst's segments be cut and uploaded.
            wait_uploaded(srv, records_total=12)
    total = len(model.log)
    m = wait_uploaded(srv, records_total=total)
    objs = [("counter", "basic-c"), ("probe", "basic-p"), ("probe", odd)]
    seen_segments, seen_bytes = 0, 0
    for obj in objs:
        got = check_object(store, *obj, last_lsn=model.lsn(obj))
        assert len(got.records) == model.lsn(obj)
        assert len(got.segments) >= 2, f"{obj}: two bursts 300+ ms apart gave one segment {got.keys}"
        # Each record was committed while its write was in flight.
        for lsn, (sent, answered) in enumerate(model.windows[obj], 1):
            t = got.records[lsn].commit_us
            assert sent <= t <= answered, \
                f"{obj} lsn {lsn}: committed at {t}, but the write was sent at {sent} and answered at {answered}"
        seen_segments += len(got.segments)
        seen_bytes += sum(size for k, size in got.keys.items() if k.startswith("segments/"))
    assert m["records_total"] == total, f"upload metrics {m}, {total} writes"
    assert m["segments_total"] == seen_segments, f"upload metrics {m}, {seen_segments} segment files"
    assert m["bytes_total"] == seen_bytes, f"upload metrics {m}, {seen_bytes} segment bytes in the store"
    assert m["failures_total"] == 0 and m["store_down"] == 0, f"upload metrics {m}"
    assert set(store.list()) == {object_prefix(*o) + k for o in objs for k in check_object(store, *o).keys}, \
        f"the store holds keys of no object written: {sorted(store.list())}"

    rows = dobj_ls(store)
    assert set(rows) == set(objs), f"dobj ls lists {sorted(rows)}, expected {objs}"
    for obj in objs:
        got = check_object(store, *obj)
        row = rows[obj]
        assert row["last_lsn"] == model.lsn(obj), f"dobj ls {obj}: {row}, {model.lsn(obj)} writes"
        snaps = sum(1 for k in got.keys if SNAP_KEY_RE.match(k))
        assert row["segs"] == len(got.segments) and row["snaps"] == snaps, f"dobj ls {obj}: {row}"
        assert row["bytes"] == sum(got.keys.values()), f"dobj ls {obj}: {row}, keys {got.keys}"
        assert abs(parse_rfc3339_us(row["last_upload"]) - now_us()) < 600 * 1_000_000, f"dobj ls {obj}: {row}"


# -- 2. point-in-time restore ---------------------------------------------------------

PIT_MOMENTS = 20
PIT_VARIANTS = {
    # Segments only: a few per object (pauses of 400 ms cut them).
    "segments": dict(writes=60, extra=[]),
    # A segment per record (--segment-bytes 4096, the minimum: every record
    # holds a 4 KiB page) and snapshots as soon as the segments since the last
    # one outweigh the database (--snapshot-min-bytes 0): restores start from
    # snapshots.
    "snapshots": dict(writes=120, extra=["--segment-bytes", "4096", "--snapshot-min-bytes", "0"]),
}


@pytest.mark.parametrize("variant", list(PIT_VARIANTS))
def test_point_in_time_restore_matches_each_moment(server_factory, tmp_path, variant):
    """A workload of 60 (120) writes over two probes (kv puts, mostly new keys,
    some overwrites) and two counters (increments by random amounts), one at a
    time with a few ms between writes and three pauses of 400 ms, each
    write's send and answer time recorded. After upload: each record's
    commit time lies within its write's send/answer window (which is what
    makes --at meaningful); every snapshot in the store is the object's
    state at its lsn. `dobj restore --at T` for 20 random moments T strictly
    inside the gaps between one write's answer and the next write's send
    (RFC 3339 with microseconds, 'Z'; one also with a +05:30 offset), for
    every object: the file passes integrity_check (sqlite3 CLI) and holds
    exactly the object's state after the writes answered before T, at the
    lsn the output names, and the restore started from the newest snapshot
    at or before it; an object not yet written at T is refused ("before the
    object's first record"). Then `--lsn N` (every N, or with snapshots the
    ones around each snapshot and 20 others) the same way. Variants: see
    PIT_VARIANTS."""
    cfg = PIT_VARIANTS[variant]
    seed = SEED + list(PIT_VARIANTS).index(variant)
    rng = random.Random(seed)
    print(f"test_point_in_time[{variant}] seed={seed} (DOBJ_TEST_SEED={SEED} to repeat)")
    store = FileStore(tmp_path / "store")
    srv = store_server(server_factory, f"pit-{variant}", store, extra=cfg["extra"])
    model = Model()
    s = new_session()
    writes = cfg["writes"]
    # Objects start at different points, so that some moments come before an
    # object's first write.
    starts = {("probe", "pit-a"): 0, ("counter", "pit-c"): writes // 12,
              ("probe", "pit-b"): writes // 3, ("counter", "pit-d"): writes * 7 // 12}
    pauses = {writes // 4, writes // 2, writes * 3 // 4}
    # Right after each pause every object started is written once more, so
    # that each has records on both sides of a pause whatever the seed (a
    # random pick left one without: 1 seed in about 80).
    forced = {}
    for p in sorted(pauses):
        for k, o in enumerate(o for o, start in starts.items() if p + 1 >= start):
            forced[p + 1 + k] = o
    keyno = 0
    for i in range(writes):
        live = [o for o, start in starts.items() if i >= start]
        obj = live[-1] if i in starts.values() else forced.get(i) or rng.choice(live)
        if obj[0] == "counter":
            model.incr(srv, obj[1], rng.randint(1, 9), session=s)
        else:
            have = model.states.get(obj, [None])[-1] or {}
            if have and rng.random() < 0.2:
                key = rng.choice(sorted(have))
            else:
                key, keyno = f"k{keyno:03d}", keyno + 1
            model.put(srv, obj[1], key, f"v{i}-{rng.getrandbits(32):08x}", session=s)
        time.sleep(0.4 if i in pauses else rng.uniform(0.003, 0.008))
    objs = list(starts)
    wait_store(store, {o: model.lsn(o) for o in objs}, srv)
    wait_uploaded(srv, records_total=writes)
    if variant == "snapshots":
        ok = wait_until(lambda: upload_metrics(srv).get("snapshots_total", 0) >= 1, 15, interval=0.2)
        assert ok, f"no snapshot uploaded: {upload_metrics(srv)}\n{srv.log_tail()}"
        wait_quiet(srv)
    snaps, recs = {}, {}
    for obj in objs:
        got = check_object(store, *obj, last_lsn=model.lsn(obj))
        recs[obj] = got.records
        assert len(got.segments) >= 2, f"{obj}: one segment despite pauses of 400 ms: {sorted(got.keys)}"
        for lsn, (sent, answered) in enumerate(model.windows[obj], 1):
            t = got.records[lsn].commit_us
            assert sent <= t <= answered, \
                f"{obj} lsn {lsn}: committed at {t}, the write was sent at {sent} and answered at {answered}"
        for lsn, (tables, _) in got.snapshots.items():
            tables = dict(tables)
            if obj[0] == "probe":
                assert len(tables.pop("activations", [])) == 1, f"{obj} snapshot {lsn}: activations"
            assert tables == model.expected_tables(obj, lsn), \
                f"{obj}: snapshot at lsn {lsn} holds {tables}, expected {model.expected_tables(obj, lsn)}"
        snaps[obj] = sorted(got.snapshots)
    print(f"snapshots: { {f'{o[0]}/{o[1]}': v for o, v in snaps.items()} }")
    if variant == "snapshots":
        assert any(snaps.values()), "the snapshots variant made no snapshot"

    def check(obj, out, want_lsn, **kw):
        used = []
        lsn, committed = restore_ok(store, f"{obj[0]}/{obj[1]}", out, snapshot_lsn=used, **kw)
        assert lsn == want_lsn, f"restore {obj} {kw} gave lsn {lsn}, expected {want_lsn}"
        best = max([x for x in snaps[obj] if x <= lsn], default=0)
        assert used[0] == best, f"restore {obj} {kw} started from snapshot {used[0]}, the newest before is {best}"
        sent, answered = model.windows[obj][lsn - 1]
        if committed is None:
            # A restore that ends exactly on a snapshot applies no record and
            # does not download a segment for its time.
            assert used[0] == lsn, f"restore {obj} {kw}: no commit time after applying records"
        else:
            assert sent <= committed <= answered, f"restore {obj} {kw}: 'committed {committed}' outside its write"
        check_restored(out, model, obj, lsn)

    # Moments strictly inside the gaps between writes, the last gap being
    # "after the last write".
    log = model.log
    gaps = [(log[i][3] + 1, log[i + 1][2] - 1) for i in range(len(log) - 1)] + [(log[-1][3] + 1, now_us())]
    chosen = sorted(rng.sample(range(len(gaps) - 1), PIT_MOMENTS - 1)) + [len(gaps) - 1]
    out_dir = tmp_path / "restored"
    out_dir.mkdir()
    n = 0
    for gi in chosen:
        lo, hi = gaps[gi]
        assert lo <= hi, f"gap {gi} is empty: {lo}..{hi}"
        at_us = rng.randint(lo, hi)
        done = log[:gi + 1]  # the writes answered before at_us
        for obj in objs:
            want_lsn = sum(1 for o, *_ in done if o == obj)
            out = out_dir / f"at-{n}.db"
            n += 1
            if want_lsn == 0:
                name = f"{obj[0]}/{obj[1]}"
                err = restore_fails(store, name, out, at=rfc3339(at_us))
                assert "before the object's first record" in err, f"restore {name} at {rfc3339(at_us)}: {err}"
                continue
            check(obj, out, want_lsn, at=rfc3339(at_us))
    # The edges: a moment equal to a record's commit time restores that
    # record; a microsecond earlier, the one before.
    for obj in objs:
        r = recs[obj]
        for lsn in rng.sample(range(2, model.lsn(obj) + 1), min(2, model.lsn(obj) - 1)):
            t = r[lsn].commit_us
            check(obj, out_dir / f"edge-{obj[1]}-{lsn}.db", lsn, at=rfc3339(t))
            if r[lsn - 1].commit_us < t:
                check(obj, out_dir / f"edge-{obj[1]}-{lsn}-1.db", lsn - 1, at=rfc3339(t - 1))
    # The same moment written with a UTC offset names the same state.
    gi = chosen[len(chosen) // 2]
    at_us = (gaps[gi][0] + gaps[gi][1]) // 2
    want = {o: sum(1 for x, *_ in log[:gi + 1] if x == o) for o in objs}
    obj = next(o for o in objs if want[o] > 0)
    check(obj, out_dir / "offset.db", want[obj], at=rfc3339(at_us, 330))

    for obj in objs:
        last = model.lsn(obj)
        lsns = set(range(1, last + 1))
        if variant == "snapshots":
            near = {x + d for x in snaps[obj] for d in (-1, 0, 1)}
            lsns = ({1, last} | near | set(rng.sample(sorted(lsns), min(20, last)))) & lsns
        for lsn in sorted(lsns):
            check(obj, out_dir / f"lsn-{obj[0]}-{obj[1]}-{lsn}.db", lsn, lsn=lsn)


# -- 3. restore errors --------------------------------------------------------------------

def test_restore_errors_name_the_problem(server_factory, tmp_path):
    """Each way `dobj restore` must refuse, with status 1 (store and data
    problems) or 2 (usage), a message naming the problem, and nothing left at
    --out (no .part, -wal or -shm either): a moment before the object's first
    record; an lsn past the newest; an object the store does not have; --at
    outside the 30-day retention; malformed --at, --lsn and --object; both or
    neither of --at/--lsn; an --out that exists (left untouched); an --out in
    a directory that does not exist. Then damage
    in the store: a segment with bytes flipped in its middle, and one cut to
    half its length, each named by its key in the message (via --lsn and via
    --at), while a restore that needs only earlier segments still works; a
    segment deleted from the middle: the missing records are named."""
    store = FileStore(tmp_path / "store")
    srv = store_server(server_factory, "errors", store)
    model = Model()
    t_before = now_us()
    time.sleep(0.01)
    names = ("err-flip", "err-cut", "err-gone")
    for burst in range(3):  # three segments per object
        for name in names:
            for _ in range(3):
                model.incr(srv, name, 1)
        wait_store(store, {("counter", n): model.lsn(("counter", n)) for n in names}, srv)
    for name in names:
        got = check_object(store, "counter", name, last_lsn=9)
        assert len(got.segments) == 3, f"counter/{name}: segments {sorted(got.keys)}"
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "r.db"
    obj = "counter/err-flip"

    err = restore_fails(store, obj, out, at=rfc3339(t_before))
    assert "before the object's first record" in err, err
    err = restore_fails(store, obj, out, lsn=10)
    assert "lsn 10 is past the newest record" in err and "(9)" in err, err
    err = restore_fails(store, "counter/never-written", out, lsn=1)
    assert "no object" in err and object_prefix("counter", "never-written") in err, err
    err = restore_fails(store, "counter/never-written", out, at=rfc3339(now_us()))
    assert "no object" in err, err
    err = restore_fails(store, obj, out, status=2, at=rfc3339(now_us() - 31 * 86400 * 1_000_000))
    assert "retention" in err, err
    for bad in ("yesterday", "2026-13-01T00:00:00Z", "2026-01-01T00:00:00", "2026-01-01T25:00:00Z",
                "2026-01-01T00:00:00.Z", "2026-01-01T00:00:00+5"):
        err = restore_fails(store, obj, out, status=2, at=bad)
        assert "--at" in err and "RFC 3339" in err, f"--at {bad!r}: {err}"
    for bad in ("0", "-1", "abc", "1.5", "", "99999999999999999999999"):
        err = restore_fails(store, obj, out, status=2, lsn=bad)
        assert "--lsn" in err, f"--lsn {bad!r}: {err}"
    for bad in ("noslash", "Bad Class/x", "/x", "counter/"):
        err = restore_fails(store, bad, out, status=2, lsn=1)
        assert "--object" in err and "CLASS/NAME" in err, f"--object {bad!r}: {err}"
    err = restore_fails(store, obj, out, status=2, lsn=1, at=rfc3339(now_us()))
    assert "usage" in err, err
    err = restore_fails(store, obj, out, status=2)
    assert "usage" in err, err
    nodir = out_dir / "no-such-dir" / "r.db"
    err = restore_fails(store, obj, nodir, lsn=1)
    assert "no-such-dir" in err, f"--out in a missing directory: {err}"
    out.write_bytes(b"precious")
    rc, _, err = restore(store, obj, out, lsn=1)
    assert rc == 2 and "exists" in err and str(out) in err, f"--out existing: {rc} {err}"
    assert out.read_bytes() == b"precious", "restore overwrote an existing --out"
    remove_db(out)

    def seg_keys(name):
        return sorted(k for k in store.list(object_prefix("counter", name)) if "/segments/" in k)

    # Bytes flipped in the middle of the second segment.
    flip = seg_keys("err-flip")[1]
    data = bytearray(store.get(flip))
    mid = len(data) // 2
    for i in range(mid, mid + 4):
        data[i] ^= 0xFF
    store.path(flip).write_bytes(bytes(data))
    for kw in (dict(lsn=9), dict(lsn=5), dict(at=rfc3339(now_us()))):
        err = restore_fails(store, obj, out, **kw)
        assert flip in err and "damaged" in err, f"restore {obj} {kw} with {flip} damaged: {err}"
    lsn, _ = restore_ok(store, obj, out, lsn=3)  # the first segment is enough
    assert lsn == 3
    check_restored(out, model, ("counter", "err-flip"), 3)
    remove_db(out)

    # The last segment cut to half its length.
    cut = seg_keys("err-cut")[2]
    data = store.get(cut)
    store.path(cut).write_bytes(data[:len(data) // 2])
    for kw in (dict(lsn=9), dict(at=rfc3339(now_us()))):
        err = restore_fails(store, "counter/err-cut", out, **kw)
        assert cut in err and ("truncated" in err or "damaged" in err), f"restore with {cut} truncated: {err}"
    lsn, _ = restore_ok(store, "counter/err-cut", out, lsn=6)
    assert lsn == 6
    check_restored(out, model, ("counter", "err-cut"), 6)
    remove_db(out)

    # The middle segment deleted: records 4..6 are missing.
    gone = seg_keys("err-gone")[1]
    store.path(gone).unlink()
    err = restore_fails(store, "counter/err-gone", out, lsn=9)
    assert "records 4..6" in err and "missing" in err, f"restore with {gone} deleted: {err}"


# -- 4. kill -9 with uploads pending ---------------------------------------------------------

def test_kill9_with_uploads_pending_uploads_them_after_restart(server_factory, tmp_path):
    """Writes with --segment-interval-ms 60000: nothing reaches the store
    (checked: no key at all, every record pending). kill -9; restart with
    --segment-interval-ms 300: the journal's records go to the store (the
    log says how many; the metrics count them), every object's segments
    cover lsn 1 .. its writes with no gap. A second round: more writes, kill
    -9 right when the store has them (their "uploaded" markers may or may not
    be in the journal), restart: again no gap, and where segments overlap
    they hold the same records. The live values over HTTP are every
    acknowledged write; after a clean stop, each object's file and its
    restore at `dobj ls`'s LAST_LSN are the same database."""
    rng = random.Random(SEED + 4)
    store = FileStore(tmp_path / "store")
    srv = store_server(server_factory, "pending", store, interval_ms=60000)
    model = Model()
    counters = [f"pend-c{i}" for i in range(3)]
    probes = [f"pend-p{i}" for i in range(2)]
    for i in range(40):
        if i % 3 == 2:
            model.put(srv, rng.choice(probes), f"r1-{i}", f"v{i}")
        else:
            model.incr(srv, rng.choice(counters), rng.randint(1, 5))
    objs = sorted(model.states)
    m = wait_until(lambda: (lambda m: m if m["records_pending"] == 40 else None)(upload_metrics(srv)), 5)
    assert m and m["records_total"] == 0, f"before kill -9: {upload_metrics(srv)}"
    assert store.list() == {}, f"the store got keys with a 60 s segment interval: {sorted(store.list())}"
    srv.kill9()

    set_interval(srv, 300)
    srv.start()
    wait_store(store, {o: model.lsn(o) for o in objs}, srv)
    m = wait_uploaded(srv, records_total=40)
    assert m["records_total"] == 40, f"after the restart: {m} (40 records were pending)"
    assert re.search(r"records not yet in object storage go to the uploader again\" records=40\b",
                     srv.log_text()), f"no note of 40 records handed over again:\n{srv.log_tail()}"
    for o in objs:
        check_object(store, *o, last_lsn=model.lsn(o))

    # Round 2: the activation of each probe (its first event since the
    # start) is a write of its own only if nothing else is written; here
    # every probe event writes, so lsns still count the writes.
    for i in range(30):
        if i % 3 == 2:
            model.put(srv, rng.choice(probes), f"r2-{i}", f"w{i}")
        else:
            model.incr(srv, rng.choice(counters), rng.randint(1, 5))
    objs = sorted(model.states)
    wait_store(store, {o: model.lsn(o) for o in objs}, srv)
    srv.kill9()
    srv.start()
    for o in objs:
        if o[0] == "counter":
            r = srv.get(f"/counter/{o[1]}")
            assert r.status_code == 200 and r.json()["value"] == model.states[o][-1], \
                f"{o}: {r.status_code} {r.text}, expected {model.states[o][-1]}"
        else:
            for k, v in model.states[o][-1].items():
                r = srv.get(f"/probe/{o[1]}/kv/{k}")
                assert r.status_code == 200 and r.json() == {"v": v}, f"{o} {k}: {r.status_code} {r.text}"
    wait_quiet(srv)
    rows = dobj_ls(store)
    rc, killed = srv.stop()
    assert rc == 0 and not killed, f"SIGTERM: status {rc}, killed={killed}\n{srv.log_tail()}"
    out_dir = tmp_path / "restored"
    out_dir.mkdir()
    for o in objs:
        live_tables, live_meta = db_state(object_path(srv.data_dir, *o))
        got = check_object(store, *o, allow_overlap=True)
        assert rows[o]["last_lsn"] == got.last_lsn == live_meta["lsn"], \
            f"{o}: dobj ls {rows[o]}, store up to {got.last_lsn}, the file at lsn {live_meta['lsn']}"
        assert live_meta["lsn"] >= model.lsn(o), f"{o}: file at lsn {live_meta['lsn']}, {model.lsn(o)} writes"
        out = out_dir / f"{o[0]}-{o[1]}.db"
        lsn, _ = restore_ok(store, f"{o[0]}/{o[1]}", out, lsn=rows[o]["last_lsn"])
        tables, meta = db_state(out)
        assert tables == live_tables and meta == live_meta, \
            f"{o}: restored {tables} {meta}\n live {live_tables} {live_meta}"
        if o[0] == "counter":
            assert tables["counter"] == [{"id": 1, "value": model.states[o][-1]}], f"{o}: {tables}"
        else:
            assert {r["k"]: r["v"] for r in tables["kv"]} == model.states[o][-1], f"{o}: {tables['kv']}"


# -- 5. DATA/objects wiped ----------------------------------------------------------------------

def test_wiped_objects_come_back_from_store_and_journal(server_factory, tmp_path):
    """Writes to objects A (two counters, a probe) and B (a counter, a probe),
    all uploaded; a clean restart with --segment-interval-ms 60000; more
    writes to the A objects and to a new counter N, which stay in the journal
    (the store is checked not to have them); kill -9; DATA/objects deleted
    entirely; start again. At start the A objects are rebuilt from the store
    plus the journal, and N from the journal alone; the B objects, which
    have no journal records, have no file until their next use, which
    rebuilds them from the store. Every acknowledged write is there; the
    objects go on writing at the next lsn (the store's segments stay gap
    free up to the new writes)."""
    store = FileStore(tmp_path / "store")
    srv = store_server(server_factory, "wiped", store)
    model = Model()
    a_objs = [("counter", "wipe-a0"), ("counter", "wipe-a1"), ("probe", "wipe-ap")]
    b_objs = [("counter", "wipe-b0"), ("probe", "wipe-bp")]
    n_obj = ("counter", "wipe-n")

    def write(obj, i):
        if obj[0] == "counter":
            model.incr(srv, obj[1], i % 4 + 1)
        else:
            model.put(srv, obj[1], f"k{i}", f"v{i}-{obj[1]}")

    for i in range(6):
        for o in a_objs + b_objs:
            write(o, i)
    wait_store(store, {o: model.lsn(o) for o in a_objs + b_objs}, srv)
    phase1 = {o: model.lsn(o) for o in a_objs + b_objs}
    wait_uploaded(srv, records_total=len(model.log))
    rc, killed = srv.stop()
    assert rc == 0 and not killed, f"SIGTERM: {rc} {killed}\n{srv.log_tail()}"

    set_interval(srv, 60000)
    srv.start()
    for i in range(6, 12):
        for o in a_objs + [n_obj]:
            write(o, i)
    for o in a_objs:
        assert store_last_lsn(store, *o) == phase1[o], f"{o}: the store got records with a 60 s interval"
    assert store_last_lsn(store, *n_obj) == 0
    srv.kill9()
    objects_dir = srv.data_dir / "objects"
    assert objects_dir.is_dir()
    subprocess.run(["rm", "-rf", str(objects_dir)], check=True, timeout=30)

    set_interval(srv, 300)
    srv.start()
    log = srv.log_text()
    for o in a_objs:
        assert f"object={object_prefix(*o)}" in log and "rebuilt a missing database from object storage" in log, \
            f"{o}: no note of a rebuild from the store at start:\n{srv.log_tail()}"
    for o in b_objs:
        assert not object_path(srv.data_dir, *o).exists(), f"{o}: a file exists before the object's next use"

    def check_live(o):
        want = model.states[o][-1]
        if o[0] == "counter":
            r = srv.get(f"/counter/{o[1]}")
            assert r.status_code == 200 and r.json()["value"] == want, \
                f"{o}: {r.status_code} {r.text}, expected {want}\n{srv.log_tail()}"
        else:
            for k, v in want.items():
                r = srv.get(f"/probe/{o[1]}/kv/{k}")
                assert r.status_code == 200 and r.json() == {"v": v}, \
                    f"{o} key {k}: {r.status_code} {r.text}, expected {v}\n{srv.log_tail()}"

    for o in a_objs + b_objs + [n_obj]:
        check_live(o)
    log = srv.log_text()
    for o in b_objs:
        assert object_path(srv.data_dir, *o).exists(), f"{o}: no file after its use"
        assert f"object={object_prefix(*o)}" in log, f"{o}: no note of a rebuild from the store:\n{srv.log_tail()}"
    # They go on: one more write each, and the store gets everything.
    for o in a_objs + b_objs + [n_obj]:
        write(o, 100)
        check_live(o)
    wait_quiet(srv)
    rc, killed = srv.stop()
    assert rc == 0 and not killed, f"SIGTERM: {rc} {killed}\n{srv.log_tail()}"
    out_dir = tmp_path / "restored"
    out_dir.mkdir()
    for o in a_objs + b_objs + [n_obj]:
        live_tables, live_meta = db_state(object_path(srv.data_dir, *o))
        got = check_object(store, *o, allow_overlap=True)
        assert got.last_lsn == live_meta["lsn"] >= model.lsn(o), \
            f"{o}: store up to {got.last_lsn}, file at {live_meta['lsn']}, {model.lsn(o)} writes"
        out = out_dir / f"{o[0]}-{o[1]}.db"
        restore_ok(store, f"{o[0]}/{o[1]}", out, lsn=got.last_lsn)
        assert db_state(out) == (live_tables, live_meta), f"{o}: the restore differs from the file"


# -- S3 ---------------------------------------------------------------------------------------

class S3Farm:
    """The S3 servers of this module, each started on first use."""

    def __init__(self, tmp_path_factory):
        self.tmp = tmp_path_factory
        self.running = {}

    def get(self, kind):
        if kind not in self.running:
            s = SERVERS[kind](self.tmp.mktemp(kind))
            try:
                s.start()
            except ServerError as e:
                pytest.fail(f"{kind} did not start: {e}", pytrace=False)
            self.running[kind] = s
        s = self.running[kind]
        if s.paused:
            s.resume()
        return s

    def stop(self):
        for s in self.running.values():
            s.stop()


@pytest.fixture(scope="module")
def s3farm(tmp_path_factory):
    farm = S3Farm(tmp_path_factory)
    yield farm
    farm.stop()


def fresh_root(tag):
    return f"t-{uuid.uuid4().hex[:10]}/{tag}/some/prefix"


@pytest.mark.parametrize("kind,creds", [("s3rver", "flags"), ("swift", "env")])
def test_s3_store_upload_layout_and_restore(server_factory, s3farm, tmp_path, monkeypatch, kind, creds):
    """The server streams to s3://BUCKET/<prefix> (--store-endpoint,
    --store-path-style, --store-timeout-ms 2000), credentials by flags (s3rver)
    or by AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (Swift, which checks SigV4
    and whose key holds a ':'). Writes in two bursts; boto3 lists the keys
    under the prefix: per object meta.json and contiguous segments only,
    nothing outside the object prefixes; meta.json and every segment,
    downloaded with boto3, check out with the independent parser. `dobj ls`
    and `dobj restore` (the other way of giving credentials) read the S3
    store: the latest restore equals the live state, one --at between the
    bursts the state then."""
    s3 = s3farm.get(kind)
    store = S3Store(s3, fresh_root(kind), creds=creds)
    if creds == "env":
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
        server_store = S3Store(s3, store.root, creds="env")
        server_args = server_store.args
        cli = S3Store(s3, store.root, creds="flags")
    else:
        monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
        server_args = store.args
        cli = S3Store(s3, store.root, creds="env")

    class _Args:
        args = server_args
    srv = store_server(server_factory, f"s3-{kind}", _Args, extra=["--store-timeout-ms", "2000"])
    model = Model()
    objs = [("counter", "s3-c"), ("probe", "s3-p")]
    for i in range(5):
        model.incr(srv, "s3-c", i + 1)
        model.put(srv, "s3-p", f"a{i}", f"first-{i}")
    wait_store(store, {o: model.lsn(o) for o in objs}, srv)
    mid_us = now_us()
    time.sleep(0.01)
    for i in range(4):
        model.incr(srv, "s3-c", 10)
        model.put(srv, "s3-p", f"b{i}", f"second-{i}")
    wait_store(store, {o: model.lsn(o) for o in objs}, srv)
    m = wait_uploaded(srv, records_total=len(model.log))
    assert m["failures_total"] == 0 and m["store_down"] == 0, f"{kind}: {m}\n{srv.log_tail()}"

    keys = store.list()
    prefixes = {object_prefix(*o) for o in objs}
    assert all(any(k.startswith(p) for p in prefixes) for k in keys), \
        f"{kind}: keys outside the object prefixes: {sorted(keys)}"
    for o in objs:
        got = check_object(store, *o, last_lsn=model.lsn(o))
        assert len(got.segments) >= 2, f"{kind} {o}: {sorted(got.keys)}"
    rows = dobj_ls(cli)
    assert {o: rows[o]["last_lsn"] for o in rows} == {o: model.lsn(o) for o in objs}, f"{kind}: dobj ls {rows}"
    for o in objs:
        out = tmp_path / f"latest-{o[0]}.db"
        lsn, _ = restore_ok(cli, f"{o[0]}/{o[1]}", out, lsn=model.lsn(o))
        check_restored(out, model, o, lsn)
        out = tmp_path / f"mid-{o[0]}.db"
        lsn, _ = restore_ok(cli, f"{o[0]}/{o[1]}", out, at=rfc3339(mid_us))
        assert lsn == 5, f"{kind} {o}: --at between the bursts gave lsn {lsn}, expected 5"
        check_restored(out, model, o, 5)
    r = srv.get("/counter/s3-c")
    assert r.json()["value"] == model.states[("counter", "s3-c")][-1]


def test_s3_wrong_secret_key_keeps_acknowledging(server_factory, s3farm, tmp_path):
    """Swift checks SigV4 signatures. A server writes to Swift with the right
    key (uploaded, checked), stops, and starts again with a wrong secret key:
    every upload is refused, yet writes to its objects are still acknowledged
    (the journal keeps them); /_metrics shows dobj_upload_store_down 1,
    failures > 0, the new records pending and a growing lag; the log says
    why; nothing new reaches the bucket; the server neither crashes nor
    hangs on SIGTERM. A write to an object the host has never seen needs the
    store (is it a wiped object?): it gets an answer within 5 s, either 200
    or a 503 that names object storage. `dobj restore` with the wrong key
    fails with status 1 naming the refusal. Back with the right key, the
    store gets every record."""
    s3 = s3farm.get("swift")
    root = fresh_root("wrongkey")
    good = S3Store(s3, root)
    bad_args = [a if a != s3.secret_key else "not-the-secret" for a in good.args]
    assert bad_args != good.args

    srv = store_server(server_factory, "s3-wrongkey", good, extra=["--store-timeout-ms", "2000"])
    model = Model()
    obj = ("counter", "wk-c")
    for i in range(3):
        model.incr(srv, "wk-c", 1)
    wait_store(good, {obj: 3}, srv)
    rc, killed = srv.stop()
    assert rc == 0 and not killed, srv.log_tail()
    keys_before = good.list()

    srv.extra_args = [bad_args[i] if i < len(bad_args) else a for i, a in enumerate(srv.extra_args)]
    assert "not-the-secret" in srv.extra_args
    srv.start()
    for i in range(10):
        model.incr(srv, "wk-c", 1)
    m = wait_until(lambda: (lambda m: m if m["store_down"] == 1 and m["failures_total"] > 0
                            and m["lag_seconds"] > 0 else None)(upload_metrics(srv)), 20, interval=0.2)
    assert m, f"no store_down/failures/lag within 20 s: {upload_metrics(srv)}\n{srv.log_tail()}"
    assert m["records_pending"] == 10 and m["records_total"] == 0, m
    lag1 = m["lag_seconds"]
    time.sleep(2.2)
    m2 = upload_metrics(srv)
    assert m2["lag_seconds"] > lag1 and m2["store_down"] == 1, f"lag did not grow: {m} then {m2}"
    assert srv.alive(), srv.log_tail()
    model.incr(srv, "wk-c", 1)
    assert good.list() == keys_before, f"new keys under the prefix despite the wrong key: {good.list()}"
    assert re.search(r"(upload|request) failed.*(403|SignatureDoesNotMatch|AccessDenied)", srv.log_text()), \
        f"no log line saying why uploads fail:\n{srv.log_tail()}"
    t0 = time.monotonic()
    try:
        r = srv.post("/counter/wk-new", timeout=15)
        status, text = r.status_code, r.text
    except requests.RequestException as e:
        status, text = None, repr(e)
    took = time.monotonic() - t0
    print(f"wrong key: a new object's first write got {status} {text.strip()} after {took:.1f} s")
    assert status in (200, 503) and took < 5, \
        f"a new object's first write with the store refusing: {status} {text} after {took:.1f} s"
    if status == 503:
        assert "object storage" in text, text

    t0 = time.monotonic()
    rc, killed = srv.stop()
    assert rc == 0 and not killed, f"SIGTERM with the store refusing: status {rc}, killed={killed}\n{srv.log_tail()}"
    assert time.monotonic() - t0 < 8, f"SIGTERM took {time.monotonic() - t0:.1f}s"

    class _Cli:
        args = bad_args
        env = good.env
        url = good.url
    err = restore_fails(_Cli, "counter/wk-c", tmp_path / "r.db", lsn=1)
    assert "403" in err or "denied" in err.lower() or "signature" in err.lower(), err

    srv.extra_args = [good.args[i] if i < len(good.args) else a for i, a in enumerate(srv.extra_args)]
    srv.start()
    wait_store(good, {obj: model.lsn(obj)}, srv)
    check_object(good, *obj, last_lsn=model.lsn(obj))


def test_s3_listing_past_1000_keys(server_factory, s3farm, tmp_path):
    """S3 lists at most 1000 keys per answer. One counter written 1050 times
    with --segment-bytes 4096 (every record is a segment of its own) has 1051
    keys on s3rver: `dobj ls` shows LAST_LSN 1050 and 1050 segments, and
    `dobj restore --at now` (a binary search over all the segments, then all
    of them applied) gives lsn 1050 with the value written: every listing
    followed the continuation tokens."""
    s3 = s3farm.get("s3rver")
    store = S3Store(s3, fresh_root("many"))
    srv = store_server(server_factory, "s3-many", store, extra=["--segment-bytes", "4096"])
    s = new_session()
    n = 1050
    for i in range(n):
        r = s.post(srv.url("/counter/many?by=2"), timeout=15)
        assert r.status_code == 200, f"write {i}: {r.status_code} {r.text}"
    assert r.json()["value"] == 2 * n
    m = wait_uploaded(srv, records_total=n, timeout=60)
    assert m["segments_total"] == n, f"{m}: expected a segment per record"
    prefix = object_prefix("counter", "many")
    keys = store.list(prefix)
    names = sorted(SEG_KEY_RE.search(k).groups()[:2] for k in keys if SEG_KEY_RE.search(k))
    assert len(keys) == n + 1 and [(int(a), int(b)) for a, b in names] == [(i, i) for i in range(1, n + 1)], \
        f"{len(keys)} keys under {prefix}: {names[:3]} ... {names[-3:]}"
    row = dobj_ls(store)[("counter", "many")]
    assert row["last_lsn"] == n and row["segs"] == n, f"dobj ls: {row}"
    out = tmp_path / "many.db"
    lsn, _ = restore_ok(store, "counter/many", out, at=rfc3339(now_us()))
    assert lsn == n, f"restore --at now gave lsn {lsn}, expected {n}"
    tables, meta = db_state(out)
    assert tables == {"counter": [{"id": 1, "value": 2 * n}]} and meta["lsn"] == n, (tables, meta)


# -- 7. a store outage under load --------------------------------------------------------------

PAUSE_SECONDS = 30


def test_store_outage_under_load_loses_nothing(server_factory, s3farm, tmp_path):
    """Four threads write (counter increments and probe kv puts) to s3rver's
    store all along; s3rver is stopped (SIGSTOP) for 30 s in the middle.
    During the pause writes keep being acknowledged (counted),
    dobj_upload_store_down becomes 1 and dobj_upload_lag_seconds grows past
    15 s; after SIGCONT the pending records drain to 0 within 60 s and
    store_down goes back to 0. Then: every acknowledged write is live, and
    each object's restore at its latest lsn equals its file after a clean
    stop (the same tables and lsn)."""
    rng = random.Random(SEED + 7)
    s3 = s3farm.get("s3rver")
    store = S3Store(s3, fresh_root("outage"))
    srv = store_server(server_factory, "outage", store, extra=["--store-timeout-ms", "2000"])
    counters = [f"out-c{i}" for i in range(4)]
    probes = [f"out-p{i}" for i in range(2)]
    lock = threading.Lock()
    acked = {c: 0 for c in counters}
    attempted = {c: 0 for c in counters}
    kv = {p: {} for p in probes}
    n_acked = [0]
    failures = []
    stop = threading.Event()

    def worker(tid, seed):
        wrng = random.Random(seed)
        s = new_session()
        seq = 0
        while not stop.is_set():
            try:
                if wrng.random() < 0.7:
                    c = wrng.choice(counters)
                    with lock:
                        attempted[c] += 1
                    r = s.post(srv.url(f"/counter/{c}"), timeout=15)
                    if r.status_code == 200:
                        with lock:
                            acked[c] += 1
                            n_acked[0] += 1
                    else:
                        failures.append(f"{c}: {r.status_code} {r.text}")
                else:
                    p = wrng.choice(probes)
                    k, v = f"t{tid}-{seq}", f"{seed}-{seq}"
                    seq += 1
                    r = s.put(srv.url(f"/probe/{p}/kv/{k}"), data=v.encode(), timeout=15)
                    if r.status_code == 200:
                        with lock:
                            kv[p][k] = v
                            n_acked[0] += 1
                    else:
                        failures.append(f"{p}/{k}: {r.status_code} {r.text}")
            except requests.RequestException as e:
                failures.append(repr(e))
            time.sleep(0.008)

    threads = [threading.Thread(target=worker, args=(t, rng.getrandbits(32)), daemon=True) for t in range(4)]
    for t in threads:
        t.start()
    try:
        ok = wait_until(lambda: upload_metrics(srv)["records_total"] >= 50, 20, interval=0.2)
        assert ok, f"uploads did not start: {upload_metrics(srv)}\n{srv.log_tail()}"
        s3.pause()
        try:
            t_pause = time.monotonic()
            acked_at_pause = n_acked[0]
            saw_down, lags = False, []
            while time.monotonic() - t_pause < PAUSE_SECONDS:
                m = upload_metrics(srv)
                saw_down = saw_down or m["store_down"] == 1
                lags.append((round(time.monotonic() - t_pause, 1), m["lag_seconds"]))
                assert srv.alive(), f"the server died during the outage\n{srv.log_tail()}"
                time.sleep(1.0)
            during = n_acked[0] - acked_at_pause
            m_end = upload_metrics(srv)
        finally:
            s3.resume()
        print(f"outage: {during} writes acknowledged during the {PAUSE_SECONDS} s pause; lag samples {lags}; "
              f"metrics at the end of the pause {m_end}")
        assert during >= 100, f"only {during} writes acknowledged during the outage ({failures[:5]})"
        assert saw_down, f"dobj_upload_store_down never became 1 during the outage: {m_end}"
        assert m_end["failures_total"] > 0 and m_end["records_pending"] > 0, m_end
        assert m_end["lag_seconds"] >= PAUSE_SECONDS / 2, f"the lag did not grow: {lags}"
        late = [lag for t, lag in lags if t >= PAUSE_SECONDS - 5]
        early = [lag for t, lag in lags if 3 <= t <= 8]
        assert early and late and min(late) > max(early), f"the lag did not grow: {lags}"
        time.sleep(3)  # writes go on after the store is back
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not any(t.is_alive() for t in threads), "writer threads did not stop"
    assert not failures, f"writes failed: {failures[:10]}"
    t_resume = time.monotonic()
    m = wait_until(lambda: (lambda m: m if m["records_pending"] == 0 and m["store_down"] == 0
                            and m["lag_seconds"] == 0 else None)(upload_metrics(srv)), 60, interval=0.5)
    assert m, f"pending records did not drain within 60 s of the store's return: {upload_metrics(srv)}\n" \
              f"{srv.log_tail()}"
    print(f"outage: drained {time.monotonic() - t_resume:.1f} s after the writers stopped; {m}")
    for c in counters:
        r = srv.get(f"/counter/{c}")
        assert r.status_code == 200 and r.json()["value"] == acked[c] == attempted[c], \
            f"{c}: {r.text}, acked {acked[c]}, attempted {attempted[c]}"
    for p in probes:
        for k, v in kv[p].items():
            r = srv.get(f"/probe/{p}/kv/{k}")
            assert r.status_code == 200 and r.json() == {"v": v}, f"{p}/{k}: {r.status_code} {r.text}"
    wait_quiet(srv)
    rows = dobj_ls(store)
    rc, killed = srv.stop()
    assert rc == 0 and not killed, f"SIGTERM: {rc} {killed}\n{srv.log_tail()}"
    for o in [("counter", c) for c in counters] + [("probe", p) for p in probes]:
        live_tables, live_meta = db_state(object_path(srv.data_dir, *o))
        got = check_object(store, *o)
        assert rows[o]["last_lsn"] == got.last_lsn == live_meta["lsn"], \
            f"{o}: dobj ls {rows[o]}, store up to {got.last_lsn}, file at {live_meta['lsn']}"
        out = tmp_path / f"{o[0]}-{o[1]}.db"
        restore_ok(store, f"{o[0]}/{o[1]}", out, lsn=got.last_lsn)
        tables, meta = db_state(out)
        assert (tables, meta) == (live_tables, live_meta), f"{o}: the restore differs from the file"
        if o[0] == "counter":
            assert tables["counter"] == [{"id": 1, "value": acked[o[1]]}], f"{o}: {tables}"
        else:
            assert {r["k"]: r["v"] for r in tables["kv"]} == kv[o[1]], f"{o}: kv differs"


# -- 8. a store that does not answer at all -------------------------------------------------

class Blackhole:
    """An S3 endpoint that accepts connections and never answers (a socket that
    listens and is never read)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        port = self.sock.getsockname()[1]
        self.args = ["--store", "s3://dobj-test/hole", "--store-endpoint", f"http://127.0.0.1:{port}",
                     "--store-path-style", "--store-access-key", "AK", "--store-secret-key", "SK"]

    def close(self):
        self.sock.close()


@pytest.fixture
def blackhole():
    b = Blackhole()
    yield b
    b.close()


def test_sigterm_with_unanswering_store_stops_promptly(server_factory, tmp_path, blackhole):
    """An object written and uploaded to a file:// store; the server restarted
    against a store that never answers (--store-timeout-ms 5000). Writes to
    the object are acknowledged (its file exists: the store is not needed);
    once an upload request is in flight, SIGTERM must stop the server within
    8 s with status 0: the uploader gets 2 s to upload (wal.h: "uploads for
    at most wait_ms, then stops the thread"), the records stay in the
    journal. Back on the file:// store, they are all uploaded: lsn 1 .. 8
    with no gap."""
    store = FileStore(tmp_path / "store")
    srv = store_server(server_factory, "blackhole", store)
    model = Model()
    obj = ("counter", "hole-c")
    for i in range(3):
        model.incr(srv, "hole-c", 1)
    wait_store(store, {obj: 3}, srv)
    rc, killed = srv.stop()
    assert rc == 0 and not killed, srv.log_tail()

    srv.extra_args = [*blackhole.args, "--segment-interval-ms", "300", "--store-timeout-ms", "5000", *BASE_ARGS]
    srv.start()
    for i in range(5):
        model.incr(srv, "hole-c", 1)
    # The segment is cut after 300 ms and the store asked (the object's first
    # upload lists its keys); give the request time to be under way.
    ok = wait_until(lambda: upload_metrics(srv)["lag_seconds"] > 0, 5, interval=0.1)
    assert ok, upload_metrics(srv)
    time.sleep(0.5)
    t0 = time.monotonic()
    rc, killed = srv.stop()
    took = time.monotonic() - t0
    assert not killed and rc == 0, (f"SIGTERM with a store that does not answer: status {rc}, "
                                    f"SIGKILL needed after {took:.1f} s\n{srv.log_tail()}")
    assert took < 8, f"SIGTERM took {took:.1f} s with a store that does not answer\n{srv.log_tail()}"

    srv.extra_args = [*store.args, "--segment-interval-ms", "300", *BASE_ARGS]
    srv.start()
    wait_store(store, {obj: 8}, srv)
    check_object(store, *obj, last_lsn=8)
    assert srv.get("/counter/hole-c").json()["value"] == 8


def test_new_object_while_store_does_not_answer_gets_a_prompt_answer(server_factory, blackhole):
    """With a store that never answers (--store-timeout-ms 2000), the first
    write to an object the host has never seen asks the store whether the
    object exists there (a wiped disk). That must not hold the request for
    every retry of the store request: it gets an answer (200, or a 503
    naming object storage) within 2 x --store-timeout-ms + 2 s = 6 s, and
    so does a second write to it."""
    srv = store_server(server_factory, "blackhole-new", blackhole, extra=["--store-timeout-ms", "2000"])
    results = []
    for attempt in range(2):
        t0 = time.monotonic()
        try:
            r = srv.post("/counter/never-seen", timeout=20)
            status, text = r.status_code, r.text.strip()
        except requests.RequestException as e:
            status, text = None, repr(e)
        results.append((status, text, round(time.monotonic() - t0, 1)))
    print(f"new object, store not answering: {results}")
    for status, text, took in results:
        assert status in (200, 503) and took <= 6, (
            f"writes to a new object while the store does not answer: (status, body, seconds) {results}\n"
            f"{srv.log_tail()}")
        if status == 503:
            assert "object storage" in text, text


# -- 9. gc and tombstones -----------------------------------------------------------

def test_gc_keeps_every_restore_point_inside_the_window(server_factory, tmp_path):
    """`dobj gc` is a dry run unless --apply: it lists keys and deletes none.
    With a window that covers everything (30d) it plans nothing. With a window
    of 0 s (every key is older), it deletes the segments up to the newest
    snapshot and the older snapshots, and nothing else: a restore to the
    newest lsn still works and equals the live state, a restore to lsn 1
    names the missing records. An object whose newest record is a tombstone
    (dobj_delete_all) goes whole, meta.json included, once the tombstone is
    older than the window; one written to after its delete_all stays."""
    store = FileStore(tmp_path / "store")
    srv = store_server(server_factory, "gc", store, interval_ms=200, extra=["--snapshot-min-bytes", "0"])
    # Each record carries whole pages: its segments soon outweigh the
    # database, and snapshots follow.
    for i in range(120):
        assert srv.put(f"/probe/gc-keep/kv/k{i}", data=(f"v{i}-" * 40).encode()).status_code == 200
        if i % 20 == 19:
            wait_quiet(srv)
    for name in ("gc-dead", "gc-alive"):
        assert srv.put(f"/probe/{name}/kv/a", data=b"1").status_code == 200
        assert srv.post(f"/probe/{name}/delete_all").status_code == 200
    assert srv.put("/probe/gc-alive/kv/b", data=b"2").status_code == 200
    wait_quiet(srv)
    live = srv.get("/probe/gc-keep/kv/k119").json()
    srv.stop()
    before = store.list()
    keep_prefix = object_prefix("probe", "gc-keep")
    snaps = sorted(k for k in before if k.startswith(keep_prefix + "snapshots/"))
    assert snaps, f"no snapshot of probe/gc-keep with --snapshot-min-bytes 0: {sorted(before)}"
    newest_snap = int(snaps[-1].rsplit("/", 1)[1][:20])
    last = store_last_lsn(store, "probe", "gc-keep")

    rc, out, err = dobj_cli(["gc", *store.args, "--older-than", "30d"])
    assert rc == 0 and "would delete 0 keys" in out, f"30d window: rc {rc}\n{out}\n{err}"
    rc, out, err = dobj_cli(["gc", *store.args, "--older-than", "0s"])
    assert rc == 0 and "dry run" in out, f"dry run: rc {rc}\n{out}\n{err}"
    planned = {line.split()[2] for line in out.splitlines() if line.startswith("would delete ")}
    assert planned and store.list() == before, "the dry run deleted something"

    dead_prefix = object_prefix("probe", "gc-dead")
    alive_prefix = object_prefix("probe", "gc-alive")
    assert {k for k in before if k.startswith(dead_prefix)} <= planned, "the tombstoned object is not planned whole"
    assert not any(k.startswith(alive_prefix + "meta.json") for k in planned), \
        "an object written to after its delete_all would lose its meta.json"
    for k in planned:
        if k.startswith(keep_prefix):
            base = k.rsplit("/", 1)[1]
            if "/segments/" in k:
                assert int(base[21:41]) <= newest_snap, f"gc plans {k}, after the newest snapshot {newest_snap}"
            else:
                assert "/snapshots/" in k and int(base[:20]) < newest_snap, f"gc plans {k}"

    rc, out, err = dobj_cli(["gc", *store.args, "--older-than", "0s", "--apply"])
    assert rc == 0, f"gc --apply: rc {rc}\n{out}\n{err}"
    after = store.list()
    assert set(after) == set(before) - planned, "gc --apply deleted other keys than it planned"
    assert not any(k.startswith(dead_prefix) for k in after)
    assert keep_prefix + "meta.json" in after and snaps[-1] in after

    out_db = tmp_path / "after-gc.db"
    lsn, _ = restore_ok(store, "probe/gc-keep", out_db, lsn=last)
    assert lsn == last
    assert sqlite_json(out_db, "SELECT v FROM kv WHERE k = 'k119'") == [{"v": live["v"]}]
    rc, _, err = restore(store, "probe/gc-keep", tmp_path / "too-old.db", lsn=1)
    assert rc == 1 and "missing" in err, f"restore to lsn 1 after gc: rc {rc}: {err}"
    rc, _, err = restore(store, "probe/gc-dead", tmp_path / "dead.db", lsn=1)
    assert rc == 1 and "no object" in err, f"the tombstoned object after gc: rc {rc}: {err}"

    rc, out, err = dobj_cli(["gc", *store.args, "--older-than", "3x"])
    assert rc == 2 and "--older-than" in err, f"bad duration: rc {rc}: {err}"


# -- 10. in-place restore --------------------------------------------------------------

def test_in_place_restore_is_a_new_write_and_can_be_undone(server_factory, tmp_path):
    """POST /_admin/restore (and `dobj restore --in-place`) turns an earlier
    state into the object's next write: the counter at 10 restored to lsn 3
    reads 3 and its lsn moves on (3 -> 11, not back); an increment gives 4;
    restoring to the lsn before the first restore undoes it (10). The state
    survives kill -9 (it went through the journal) and the store has it as
    an ordinary record. Bad requests name what is wrong and change nothing."""
    store = FileStore(tmp_path / "store")
    srv = store_server(server_factory, "inplace", store, interval_ms=200)
    for _ in range(10):
        assert srv.post("/counter/ip").status_code == 200
    wait_quiet(srv)
    r = srv.post("/_admin/restore?object=counter/ip&lsn=3")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "counter/ip" and body["restored_lsn"] == 3 and body["previous_lsn"] == 10, body
    assert body["lsn"] == 11, f"the restore is not the next write: {body}"
    assert srv.get("/counter/ip").json()["value"] == 3
    assert srv.post("/counter/ip").json()["value"] == 4
    wait_quiet(srv)
    rc, out, err = dobj_cli(["restore", "--in-place", "--server", srv.url(""), "--object", "counter/ip",
                             "--lsn", "10"])
    assert rc == 0 and '"restored_lsn":10' in out, f"dobj restore --in-place: rc {rc}\n{out}\n{err}"
    assert srv.get("/counter/ip").json()["value"] == 10

    for query, status, word in (("object=counter/ip&lsn=999", 400, "past the newest"),
                                ("object=nope/ip&lsn=1", 404, "unknown class"),
                                ("object=counter/ip", 400, "exactly one"),
                                ("object=counter/ip&lsn=1&at=2026-01-01T00:00:00Z", 400, "exactly one"),
                                ("lsn=1", 400, "object"),
                                ("object=counter/ip&at=yesterday", 400, "RFC 3339"),
                                ("object=counter/never&lsn=1", 404, "no object")):
        r = srv.post(f"/_admin/restore?{query}")
        assert r.status_code == status and word in r.json()["error"], f"{query}: {r.status_code} {r.text}"
    r = srv.get("/_admin/restore?object=counter/ip&lsn=1")
    assert r.status_code == 405, r.text
    assert srv.get("/counter/ip").json()["value"] == 10, "a refused restore changed the object"

    srv.kill9()
    srv.start()
    assert srv.get("/counter/ip").json()["value"] == 10, "the in-place restore did not survive kill -9"
    wait_quiet(srv)
    last = store_last_lsn(store, "counter", "ip")
    out_db = tmp_path / "ip.db"
    lsn, _ = restore_ok(store, "counter/ip", out_db, lsn=last)
    assert sqlite_json(out_db, "SELECT value FROM counter")[0]["value"] == 10
