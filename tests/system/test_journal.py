"""The host journal: group commit under load, a journal cut at any byte
offset (a crash in the middle of a write) recovers a consistent prefix, and
damage in the middle of the journal is refused at start unless --repair.

Journal format (replicate/journal.c): DATA/journal/<16 hex>.log, a 32-byte
segment header, then batches of a 32-byte header (magic "DJB1", compressed
length, raw length, record count, sequence, XXH3) and a zstd payload. These
tests walk the batch headers (dobjtest.journal_batches) but never decompress.
"""

import asyncio
import os
import random
import re
import shutil
import threading
import time

import pytest
import requests

from dobjtest import (BATCH_HEADER_BYTES, Server, journal_batches, journal_segments, new_session,
                      object_path, read_db)

SEED = int(os.environ.get("DOBJ_TEST_SEED", str(time.time_ns() % (1 << 32))))


# -- 2. group commit -------------------------------------------------------------

async def _counter_client(port, names, rng, stop_at, acked, errors):
    """One keep-alive HTTP/1.1 connection POSTing to random counters, one
    request at a time, until stop_at. Raw asyncio streams: a client that costs
    little CPU, so that the server sees its 32 clients concurrently."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 15)
    try:
        while time.monotonic() < stop_at:
            name = rng.choice(names)
            writer.write(f"POST /counter/{name} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         f"Content-Length: 0\r\n\r\n".encode())
            status = await asyncio.wait_for(reader.readline(), 15)
            length = None
            while True:
                line = await asyncio.wait_for(reader.readline(), 15)
                if line in (b"\r\n", b""):
                    break
                k, _, v = line.decode("latin-1").partition(":")
                if k.strip().lower() == "content-length":
                    length = int(v)
            if length is None:
                errors.append(f"no Content-Length in the response to POST /counter/{name}: {status!r}")
                return
            body = await asyncio.wait_for(reader.readexactly(length), 15)
            if not status.startswith(b"HTTP/1.1 200 "):
                errors.append(f"POST /counter/{name}: {status!r} {body[:200]!r}")
                return
            acked[name] = acked.get(name, 0) + 1
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
        errors.append(repr(e))
    finally:
        writer.close()


def run_counter_clients(port, names, n_clients, seconds, seed):
    """n_clients concurrent connections for `seconds`; returns (acked
    {name: n}, errors)."""
    acked, errors = {}, []

    async def main():
        stop_at = time.monotonic() + seconds
        await asyncio.gather(*(_counter_client(port, names, random.Random(seed + i), stop_at, acked, errors)
                               for i in range(n_clients)))

    asyncio.run(asyncio.wait_for(main(), seconds + 60))
    return acked, errors


def test_group_commit_fsyncs_far_below_commits(server_factory):
    """32 concurrent clients over 100 counters for a few seconds: commits grow,
    and the journal's fsyncs stay below half of them; every acknowledged
    increment is counted once."""
    srv = server_factory(name="group-commit", shards=2)
    names = [f"g-{i}" for i in range(100)]
    before = srv.metrics()
    t0 = time.monotonic()
    acked, errors = run_counter_clients(srv.port, names, 32, 3.0, SEED)
    took = time.monotonic() - t0
    assert not errors, f"requests failed under load: {errors[:5]}\n{srv.log_tail()}"
    after = srv.metrics()
    commits = after["dobj_commits_total"] - before["dobj_commits_total"]
    fsyncs = after["dobj_journal_fsyncs_total"] - before["dobj_journal_fsyncs_total"]
    batches = after["dobj_journal_batches_total"] - before["dobj_journal_batches_total"]
    total = sum(acked.values())
    print(f"group commit: {total} acked requests in {took:.1f}s, commits {commits:.0f}, "
          f"fsyncs {fsyncs:.0f}, batches {batches:.0f}, commits per fsync {commits / max(fsyncs, 1):.1f}")
    assert commits >= total, f"{commits} commits for {total} acknowledged writes"
    assert commits >= 200, f"only {commits} commits in {took:.1f}s under load"
    assert fsyncs > 0
    assert fsyncs < commits / 2, (f"no group commit: {fsyncs:.0f} fsyncs for {commits:.0f} commits "
                                  f"(ratio {commits / fsyncs:.2f})")
    for n in names:
        v = srv.get(f"/counter/{n}").json()["value"]
        assert v == acked.get(n, 0), f"counter {n} = {v}, {acked.get(n, 0)} increments acknowledged"


# -- 3. the journal cut at random byte offsets ------------------------------------

CUT_THREADS = 6
CUT_COUNTERS_PER_THREAD = 4
# Requests per thread: at most 50 commits per object, done in well under a
# second, so the runtime checkpoints no WAL into a file (it does past a frame
# budget, or once an object is quiet for 2 s): every record is only in the
# journal when the server is killed.
CUT_STEPS = 50


def build_cut_workload(srv, rng):
    """Each thread owns some counters and one probe object and writes to them in
    order (so the order of each object's records is known), all concurrently
    (so batches hold several records). Returns (counters {name: value},
    probes {name: [(K, rows), ...] in order})."""
    counters = {f"cut-{t}-{j}": 0 for t in range(CUT_THREADS) for j in range(CUT_COUNTERS_PER_THREAD)}
    probes = {f"cut-{t}": [] for t in range(CUT_THREADS)}
    errors = []
    seeds = [rng.getrandbits(32) for _ in range(CUT_THREADS)]

    def worker(t):
        wrng = random.Random(seeds[t])
        s = new_session()
        try:
            for step in range(CUT_STEPS):
                if wrng.random() < 0.7:
                    n = f"cut-{t}-{wrng.randrange(CUT_COUNTERS_PER_THREAD)}"
                    r = s.post(srv.url(f"/counter/{n}"), timeout=15)
                    if r.status_code != 200 or r.json()["value"] != counters[n] + 1:
                        errors.append(f"POST /counter/{n}: {r.status_code} {r.text[:200]}")
                        return
                    counters[n] += 1
                else:
                    k, rows = f"k{step}", wrng.randint(1, 30)
                    r = s.post(srv.url(f"/probe/cut-{t}/multi?k={k}&count={rows}&pad=300"), timeout=15)
                    if r.status_code != 200:
                        errors.append(f"POST multi cut-{t} {k}: {r.status_code} {r.text[:200]}")
                        return
                    probes[f"cut-{t}"].append((k, rows))
        except requests.RequestException as e:
            errors.append(repr(e))
        finally:
            s.close()

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(CUT_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "workload threads did not finish"
    assert not errors, f"workload failed: {errors[:5]}\n{srv.log_tail()}"
    return counters, probes


STATE_SQL = {
    "lsn": "SELECT value FROM _dobj_meta WHERE key = 'lsn'",
    "meta": "SELECT key, value FROM _dobj_meta WHERE key IN ('class', 'name')",
    "value": "SELECT value FROM counter",
    "groups": "SELECT grp, count(*), count(DISTINCT i) FROM multi GROUP BY grp",
    "check": "PRAGMA integrity_check",
}


def file_state(data_dir, cls, name):
    """(lsn, counter value or groups) of a stopped server's object file."""
    path = object_path(data_dir, cls, name)
    if not path.exists() or path.stat().st_size == 0:
        return 0, (0 if cls == "counter" else {})
    st = read_db(path, STATE_SQL)
    assert st["check"] == [("ok",)], f"{cls}/{name}: integrity_check {st['check'][:5]}"
    if st["lsn"] is None:  # never written: an empty database
        assert not st["value"] and not st["groups"], f"{cls}/{name}: data without _dobj_meta: {st}"
        return 0, (0 if cls == "counter" else {})
    assert dict(st["meta"]) == {"class": cls, "name": name}, f"{path}: {st['meta']}"
    lsn = st["lsn"][0][0]
    if cls == "counter":
        return lsn, (st["value"][0][0] if st["value"] else 0)
    groups = {}
    for grp, rows, distinct in st["groups"] or []:
        assert rows == distinct, f"{cls}/{name} group {grp}: {rows} rows, {distinct} distinct"
        groups[grp] = rows
    return lsn, groups


def test_journal_cut_at_random_offsets_recovers_a_prefix(server_factory, tmp_path):
    """A workload of whole-transaction writes (few per object and quick, so
    every record is still only in the journal), kill -9, then for several byte offsets X
    (random ones, batch boundaries, inside the segment header, and the full
    length): the segment truncated to X on a copy of the data dir. The server
    must start; then every file passes integrity_check, every multi-row
    transaction is all or nothing and a prefix of its object's, counters are
    at most their final value and never decrease as X grows, the objects hold
    exactly the records of the whole batches before X, and at the full length
    everything acknowledged is there."""
    print(f"test_journal_cut seed={SEED}")
    rng = random.Random(SEED)
    srv = server_factory(name="cut-source", shards=2)
    t0 = time.monotonic()
    counters, probes = build_cut_workload(srv, rng)
    took = time.monotonic() - t0
    srv.kill9()
    # The premise: every record is still only in the journal. The runtime
    # checkpoints an object's WAL into its file when it is big or the object
    # was quiet for 2 s; a file beyond its first page means that happened.
    grown = {}
    for cls, names in (("counter", counters), ("probe", probes)):
        for n in names:
            path = object_path(srv.data_dir, cls, n)
            if path.exists() and path.stat().st_size > 4096:
                grown[f"{cls}/{n}"] = path.stat().st_size
    assert not grown, (f"objects were checkpointed into their files before kill -9 (workload took "
                       f"{took:.1f}s), the cut offsets can not be judged: {grown}")

    segs = journal_segments(srv.data_dir)
    assert len(segs) == 1, f"expected one journal segment, found {segs}"
    seg = segs[0]
    size = seg.stat().st_size
    batches, end = journal_batches(seg)
    assert end == size, f"{seg}: batches end at {end}, the file at {size}"
    n_records = sum(b.nrecords for b in batches)
    expect_records = sum(counters.values()) + sum(len(v) for v in probes.values())
    assert n_records == expect_records, f"journal holds {n_records} records, {expect_records} writes were acked"
    print(f"journal: {size} bytes, {len(batches)} batches, {n_records} records "
          f"(max {max(b.nrecords for b in batches)} in a batch)")
    assert len(batches) >= 4

    offsets = {0, 17, 32, size}
    offsets.add(rng.choice(batches).end)          # exactly on a boundary
    offsets.add(rng.choice(batches).offset + 1)   # one byte into a header
    offsets.add(rng.choice(batches).offset + 20)  # inside a header
    while len(offsets) < 13:
        offsets.add(rng.randrange(33, size))
    offsets = sorted(offsets)

    prev = None
    for i, x in enumerate(offsets):
        copy = tmp_path / f"cut-{i}"
        shutil.copytree(srv.data_dir, copy / "data")
        os.truncate(copy / "data" / "journal" / seg.name, x)
        cut = Server(copy, data_dir=copy / "data", shards=2)
        try:
            cut.start()
            rc, killed = cut.stop()
            assert rc == 0 and not killed, f"X={x}: SIGTERM: {rc} {killed}\n{cut.log_tail()}"
        finally:
            cut._force_stop()
        # A torn tail is cut silently: logged at info, no warning or error.
        log = cut.log_text()
        noisy = [ln for ln in log.splitlines() if "level=error" in ln or "level=warn" in ln]
        assert not noisy, f"X={x}: cutting a torn tail logged warnings or errors:\n" + "\n".join(noisy)
        if x > 32 and x not in {b.end for b in batches}:
            assert re.search(r"level=info .*(torn|cut)", log), f"X={x}: no info line about the cut tail:\n{log}"
        state = {}
        lsn_sum = 0
        for n in counters:
            lsn, v = file_state(cut.data_dir, "counter", n)
            assert lsn == v, f"X={x}: counter {n} has value {v} at lsn {lsn} (one increment per record)"
            assert v <= counters[n], f"X={x}: counter {n} = {v}, more than the {counters[n]} acked"
            state[("counter", n)] = v
            lsn_sum += lsn
        for p, seq in probes.items():
            lsn, groups = file_state(cut.data_dir, "probe", p)
            order = [k for k, _ in seq]
            rows = dict(seq)
            for k, got in groups.items():
                assert k in rows, f"X={x}: probe {p} holds group {k} never written"
                assert got == rows[k], f"X={x}: probe {p} group {k}: {got} of {rows[k]} rows (partial transaction)"
            assert sorted(groups, key=order.index) == order[:len(groups)], \
                f"X={x}: probe {p} holds groups {sorted(groups)}, not a prefix of {order}"
            assert lsn == len(groups), f"X={x}: probe {p} at lsn {lsn} with {len(groups)} groups"
            state[("probe", p)] = set(groups)
            lsn_sum += lsn
        whole = sum(b.nrecords for b in batches if b.end <= x)
        assert lsn_sum == whole, (f"X={x}: the objects hold {lsn_sum} records; the whole batches "
                                  f"before X hold {whole}")
        if prev is not None:
            px, pstate = prev
            for key, v in state.items():
                if key[0] == "counter":
                    assert v >= pstate[key], f"{key}: {pstate[key]} at X={px}, {v} at X={x}"
                else:
                    assert v >= pstate[key], f"{key}: {sorted(pstate[key])} at X={px}, {sorted(v)} at X={x}"
        prev = (x, state)
        print(f"X={x}: {whole} records recovered")
        shutil.rmtree(copy / "data", ignore_errors=True)

    # At the full length, everything acknowledged is there; and the server
    # reports the same over HTTP.
    _, final = prev
    for n, v in counters.items():
        assert final[("counter", n)] == v, f"counter {n}: {final[('counter', n)]}, acked {v}"
    for p, seq in probes.items():
        assert final[("probe", p)] == {k for k, _ in seq}
    srv.start()
    for n, v in counters.items():
        r = srv.get(f"/counter/{n}")
        assert r.status_code == 200 and r.json()["value"] == v, f"{n}: {r.status_code} {r.text}"
    for p, seq in probes.items():
        r = srv.get(f"/probe/{p}/multi")
        assert r.status_code == 200 and r.json()["groups"] == dict(seq), f"{p}: {r.text}"


# -- 4. damage in the middle of the journal -------------------------------------

def test_damaged_middle_batch_refuses_start_unless_repair(server_factory):
    """Sequential writes, one batch each; bytes flipped inside an early batch's
    payload. Start must fail naming the segment and the batch's offset; with
    --repair it starts, objects the damaged batch did not touch have all their
    data, the damaged object stays at its record before the gap, and the
    server works (also after a restart without --repair)."""
    srv = server_factory(name="damaged", shards=2)
    writes = [("counter", "victim")] * 3 + [("counter", f"other-{i}") for i in range(5)]
    writes += [("kv", "keep"), ("multi", "keep"), ("counter", "other-0")]
    for kind, name in writes:
        if kind == "counter":
            r = srv.post(f"/counter/{name}")
        elif kind == "kv":
            r = srv.put(f"/probe/{name}/kv/a", data=b"alpha")
        else:
            r = srv.post(f"/probe/{name}/multi?k=m&count=25&pad=300")
        assert r.status_code == 200, f"{kind} {name}: {r.status_code} {r.text}"
    srv.kill9()

    segs = journal_segments(srv.data_dir)
    assert len(segs) == 1, segs
    seg = segs[0]
    batches, end = journal_batches(seg)
    assert end == seg.stat().st_size
    assert [b.nrecords for b in batches] == [1] * len(writes), \
        f"expected one record per batch for sequential writes, got {batches}"
    damaged = batches[1]  # the victim's second record
    damage_batch(seg, damaged)
    data = seg.read_bytes()

    rc, out, err = srv.run_to_exit()
    assert rc != 0, f"dobj serve started on a journal damaged in the middle\nstderr:\n{err[-3000:]}"
    assert seg.name in err, f"stderr does not name the segment {seg.name}:\n{err[-3000:]}"
    m = re.search(r"offset (\d+)", err)
    assert m, f"stderr names no offset:\n{err[-3000:]}"
    assert int(m.group(1)) == damaged.offset, f"stderr names offset {m.group(1)}, the damaged batch is at {damaged.offset}"
    assert seg.read_bytes() == data, "a refused start changed the journal"

    srv.extra_args = ["--repair"]
    srv.start()
    srv.extra_args = []
    assert srv.get("/counter/victim").json()["value"] == 1, "the victim is not at its record before the gap"
    for i in range(5):
        want = 2 if i == 0 else 1
        assert srv.get(f"/counter/other-{i}").json()["value"] == want, f"other-{i}"
    assert srv.get("/probe/keep/kv/a").json() == {"v": "alpha"}
    assert srv.get("/probe/keep/multi").json()["groups"] == {"m": 25}
    assert srv.post("/counter/victim").json()["value"] == 2
    assert srv.post("/counter/other-1").json()["value"] == 2
    assert srv.put("/probe/keep/kv/b", data=b"beta").status_code == 200

    srv.kill9()
    srv.start()  # the journal was emptied by the repaired start: no --repair needed
    assert srv.get("/counter/victim").json()["value"] == 2
    assert srv.get("/counter/other-1").json()["value"] == 2
    assert srv.get("/probe/keep/kv/b").json() == {"v": "beta"}


def damage_batch(seg, batch):
    data = bytearray(seg.read_bytes())
    mid = batch.payload + batch.clen // 2
    for i in range(mid, min(mid + 8, batch.end)):
        data[i] ^= 0xA5
    seg.write_bytes(bytes(data))


def only_segment(srv):
    segs = journal_segments(srv.data_dir)
    assert len(segs) == 1, segs
    batches, end = journal_batches(segs[0])
    assert end == segs[0].stat().st_size
    return segs[0], batches


# With --repair, a damaged batch that held an object's first records in the
# journal is a gap between the file and the journal: the object stays at what
# its file holds (recover.c, obj_begin compares with the file's stamped lsn).


def test_repair_gap_at_the_start_of_an_objects_journal_records(server_factory):
    """After a restart (the journal is emptied; c's file is at lsn 3), c's
    next record (lsn 4, +10) is in the damaged batch and lsn 5 (+100) after
    it. --repair must leave c at its last record before the gap: lsn 3,
    value 3 (not 113, which holds the +10 of the record it reports lost)."""
    srv = server_factory(name="repair-gap", shards=2)
    for _ in range(3):
        assert srv.post("/counter/c").status_code == 200
    assert srv.post("/counter/d").status_code == 200
    srv.restart()
    assert srv.post("/counter/c?by=10").json()["value"] == 13     # lsn 4: damaged below
    assert srv.post("/counter/c?by=100").json()["value"] == 113   # lsn 5
    assert srv.post("/counter/d").json()["value"] == 2
    srv.kill9()
    seg, batches = only_segment(srv)
    assert [b.nrecords for b in batches] == [1, 1, 1], batches
    damage_batch(seg, batches[0])
    rc, _, err = srv.run_to_exit()
    assert rc != 0 and f"offset {batches[0].offset}" in err, err[-2000:]
    srv.extra_args = ["--repair"]
    srv.start()
    assert srv.get("/counter/d").json()["value"] == 2
    r = srv.get("/counter/c")
    assert r.status_code == 200 and r.json()["value"] == 3, \
        f"c after --repair: {r.status_code} {r.text.strip()} (its record lsn 4 was in the damaged batch)"



def test_repair_loses_an_objects_first_record(server_factory):
    """Object a's first record (lsn 1) is in the damaged batch, lsn 2 after
    it. --repair must leave a at its state before the gap, the empty object
    (value 0, writable), not mark its database as damaged beyond repair."""
    srv = server_factory(name="repair-first", shards=2)
    assert srv.post("/counter/a").json()["value"] == 1   # lsn 1: damaged below
    assert srv.post("/counter/a").json()["value"] == 2   # lsn 2
    assert srv.post("/counter/b").json()["value"] == 1
    srv.kill9()
    seg, batches = only_segment(srv)
    assert [b.nrecords for b in batches] == [1, 1, 1], batches
    damage_batch(seg, batches[0])
    srv.extra_args = ["--repair"]
    srv.start()
    assert srv.get("/counter/b").json()["value"] == 1
    r = srv.get("/counter/a")
    assert r.status_code == 200 and r.json()["value"] == 0, f"a after --repair: {r.status_code} {r.text.strip()}"
    assert srv.post("/counter/a").json()["value"] == 1


def test_torn_batch_in_a_non_last_segment_refuses_start(server_factory):
    """Only the end of the LAST segment can be torn by a crash: a segment
    that ends inside a batch while a later segment exists is damage. Start
    must fail naming that segment and the batch's offset."""
    srv = server_factory(name="torn-middle-segment", shards=2,
                         extra_args=["--journal-segment-bytes", "65536"])
    for i in range(12):
        # Random padding does not compress: about 40 KB per batch.
        r = srv.post(f"/probe/big-{i % 3}/multi?k=k{i}&count=40&pad=1000")
        assert r.status_code == 200, r.text
    srv.kill9()
    segs = journal_segments(srv.data_dir)
    assert len(segs) >= 2, f"expected several segments with 64 KiB segments, got {segs}"
    first = segs[0]
    batches, end = journal_batches(first)
    assert batches and end == first.stat().st_size, (first, batches, end)
    last = batches[-1]
    os.truncate(first, last.offset + BATCH_HEADER_BYTES + last.clen // 2)
    rc, _, err = srv.run_to_exit()
    assert rc != 0, f"started on a journal whose segment {first.name} (not the last) is torn\n{err[-3000:]}"
    assert first.name in err, f"stderr does not name {first.name}:\n{err[-3000:]}"
    assert f"offset {last.offset}" in err, f"stderr does not name offset {last.offset}:\n{err[-3000:]}"


def test_old_segments_are_deleted_under_load(server_factory):
    """With 64 KiB segments, sustained writes rotate the journal many times;
    segments are deleted once no object's database needs them, so only a few
    stay on disk."""
    # Uploads every 200 ms: a segment also waits for its records to be in
    # object storage.
    s = server_factory(name="segs", shards=2,
                       extra_args=["--journal-segment-bytes", "65536", "--segment-interval-ms", "200"])
    sess = new_session()
    deadline = time.monotonic() + 4.0
    n = 0
    while time.monotonic() < deadline and n < 20000:
        r = sess.post(s.url(f"/counter/seg-{n % 20}"), timeout=10)
        assert r.status_code == 200, r.text
        n += 1
    m = s.metrics()
    rotated = int(m["dobj_journal_segment"])
    live = journal_segments(s.data_dir)
    print(f"{n} writes, segment number {rotated}, {len(live)} segment files left")
    assert rotated >= 5, f"only {rotated} segments for {n} writes: the test did not rotate the journal"
    assert len(live) <= 4, f"{len(live)} of {rotated} segments still on disk: {[p.name for p in live]}"


def test_journal_without_io_uring(server_factory, monkeypatch):
    """The pwrite + fdatasync fallback: said once in the log, and durable."""
    monkeypatch.setenv("DOBJ_NO_URING", "1")
    s = server_factory(name="nouring", shards=2)
    sess = new_session()
    for i in range(50):
        assert sess.post(s.url(f"/counter/nu-{i % 5}"), timeout=10).status_code == 200
    assert s.log_text().count("the journal uses pwrite and fdatasync") == 1, s.log_tail()
    m = s.metrics()
    assert m["dobj_journal_fsyncs_total"] >= 1
    s.kill9()
    s.start()
    for i in range(5):
        assert s.get(f"/counter/nu-{i}").json()["value"] == 10


def test_hot_object_keeps_writing_while_its_wal_drains(server_factory):
    """One object under 64 concurrent clients: its WAL (in memory) can only be
    checkpointed once every record in it is durable; past its bound the actor
    holds its next events for the journal (one fsync) instead of growing the
    WAL until it is full (64 MB) and failing writes. Every write succeeds and
    the value is exact. (These Python clients leave the object idle now and
    then, which lets the WAL drain by itself; `make bench`, with wrk's 64
    connections, is where a WAL without the bound filled up.)"""
    s = server_factory(name="hot", shards=2)
    acked, errors = run_counter_clients(s.port, ["hot"], 64, 6.0, SEED)
    assert not errors, errors[:5]
    total = acked.get("hot", 0)
    print(f"{total} writes of one 8 KB record each to one object in 6 s")
    assert total * 8192 > 64 << 20, "too few writes to have filled a 64 MB WAL without the bound"
    assert s.get("/counter/hot").json()["value"] == total


def test_idle_open_objects_leave_a_hot_objects_wal_its_full_size(server_factory):
    """The shard's in-memory WAL budget goes by the frames the WALs hold, not
    by how many databases are open: with 1,200 idle objects open, one object
    being written still checkpoints every WAL_FRAMES_MAX frames, not every
    16 (a 16-frame WAL held a hot object's events for the journal every few
    commits: half its throughput). Before the fix, these 400 writes (two
    frames each) cost about 50 checkpoints."""
    s = server_factory(name="budget", shards=1)
    sess = new_session()
    for i in range(1200):
        assert sess.post(s.url(f"/counter/idle-{i}"), timeout=10).status_code == 200
    # Quiet objects checkpoint after 2 s: wait until they all have.
    deadline = time.monotonic() + 20
    before = s.metrics()["dobj_wal_checkpoints_total"]
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = s.metrics()["dobj_wal_checkpoints_total"]
        if now >= 1200 and now == before:
            break
        before = now
    assert before >= 1200, f"the idle objects did not checkpoint when quiet: {before}"
    for _ in range(400):
        assert sess.post(s.url("/counter/hot"), timeout=10).status_code == 200
    used = s.metrics()["dobj_wal_checkpoints_total"] - before
    print(f"400 writes to one object among 1,200 open: {used} checkpoints")
    assert used <= 2, f"{used} checkpoints for 400 writes: the hot object's WAL is held small"
    assert s.get("/counter/hot").json()["value"] == 400


def test_backpressure_counts_records_not_yet_durable(server_factory):
    """--max-inflight bounds events queued plus records on their way to the
    journal, per shard: past it a request gets 503 with Retry-After and writes
    nothing; everything acknowledged is there. (Which of the two filled the
    slots is not visible from outside; this checks the refusal itself.)"""
    s = server_factory(name="bp", shards=1, extra_args=["--max-inflight", "4"])
    stop = time.monotonic() + 2.0
    ok, busy, other = [0] * 16, [0] * 16, []

    def worker(i):
        sess = new_session()
        while time.monotonic() < stop:
            r = sess.post(s.url("/counter/bp"), timeout=10)
            if r.status_code == 200:
                ok[i] += 1
            elif r.status_code == 503 and r.headers.get("retry-after") == "1" and "overloaded" in r.text:
                busy[i] += 1
            elif len(other) < 5:
                other.append(f"{r.status_code} {r.text}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not other, other
    print(f"{sum(ok)} acknowledged, {sum(busy)} refused with 503")
    assert sum(busy) > 0, "16 clients never found 4 slots taken"
    assert s.get("/counter/bp").json()["value"] == sum(ok)
