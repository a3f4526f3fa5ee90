"""The counter example under concurrent load: exact values over HTTP, then the
same values read from the object files with the sqlite3 CLI."""

import queue
import random
import threading
import time
from collections import defaultdict

from dobjtest import (integer_locations, new_session, objects_by_key, q, table_columns, user_rows,
                      user_rows_sql)

N_NAMES = 1000
N_THREADS = 16
LOAD_DEADLINE = 100.0  # seconds for all increments


def counter_names():
    names = []
    for i in range(N_NAMES):
        kind = i % 5
        if kind == 0:
            names.append(f"user-{i}")
        elif kind == 1:
            names.append(f"h\u00e9llo w\u00f6rld {i}")  # non-ASCII and a space
        elif kind == 2:
            names.append(f"a/b/{i}")  # '/' inside a name, sent as %2F
        elif kind == 3:
            names.append(f"emoji-\U0001F600-{i}")  # 4-byte UTF-8
        else:
            names.append(f"Mixed.Case_{i}~")
    return names


def plan_increments(names, rng):
    """[(name, mode, amount)] and the expected final value of each name."""
    ops = []
    expected = defaultdict(int)
    for i, name in enumerate(names):
        for _ in range(rng.randint(1, 4)):
            mode = rng.choice(["plain", "query", "body"])
            if mode == "plain":
                amount = 1
            elif i % 97 == 0:
                amount = rng.randint(1, 10**12)  # beyond 32 bits
            else:
                amount = rng.randint(1, 1000)
            ops.append((name, mode, amount))
            expected[name] += amount
    rng.shuffle(ops)
    return ops, expected


def run_pool(n_threads, items, work, deadline):
    """Runs work(session, item) for each item on n_threads threads, each with its
    own requests.Session. Returns the list of error strings."""
    todo = queue.Queue()
    for it in items:
        todo.put(it)
    errors = []
    lock = threading.Lock()

    def worker():
        s = new_session()
        try:
            while time.monotonic() < deadline:
                try:
                    it = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    err = work(s, it)
                except Exception as e:  # noqa: BLE001 - reported below
                    err = f"{it!r}: {e.__class__.__name__}: {e}"
                if err:
                    with lock:
                        errors.append(err)
        finally:
            s.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic() + 5))
    if not todo.empty():
        errors.append(f"{todo.qsize()} items not done before the deadline")
    return errors


def test_new_counter_reads_zero(server):
    r = server.get("/counter/never-touched")
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "never-touched", "value": 0}


def test_increment_forms(server):
    assert server.post("/counter/forms").json() == {"name": "forms", "value": 1}
    assert server.post("/counter/forms?by=5").json() == {"name": "forms", "value": 6}
    assert server.post("/counter/forms", data=b"10").json() == {"name": "forms", "value": 16}
    r = server.get("/counter/forms")
    assert r.status_code == 200
    assert r.headers.get("content-type", "").startswith("application/json")
    assert r.json() == {"name": "forms", "value": 16}


def test_thousand_counters_concurrently(server):
    rng = random.Random(20240601)
    names = counter_names()
    ops, expected = plan_increments(names, rng)
    returned = defaultdict(list)
    returned_lock = threading.Lock()

    def increment(s, op):
        name, mode, amount = op
        url = server.url(f"/counter/{q(name)}")
        if mode == "plain":
            r = s.post(url, timeout=30)
        elif mode == "query":
            r = s.post(url, params={"by": str(amount)}, timeout=30)
        else:
            r = s.post(url, data=str(amount).encode(), timeout=30)
        if r.status_code != 200:
            return f"POST {name!r} {mode} {amount}: {r.status_code} {r.text[:200]}"
        j = r.json()
        if j.get("name") != name:
            return f"POST {name!r}: response names {j.get('name')!r}"
        if not isinstance(j.get("value"), int) or j["value"] < amount:
            return f"POST {name!r} by {amount}: value {j.get('value')!r}"
        with returned_lock:
            returned[name].append(j["value"])
        return None

    t0 = time.monotonic()
    errors = run_pool(N_THREADS, ops, increment, t0 + LOAD_DEADLINE)
    assert not errors, f"{len(errors)} failed increments, first: {errors[:5]}"

    # Events of one object are serialized: every increment saw a distinct
    # running total, and the largest is the final value.
    for name in names:
        vals = returned[name]
        assert len(vals) == len(set(vals)), f"{name!r}: repeated running totals {sorted(vals)}"
        assert max(vals) == expected[name], f"{name!r}: last total {max(vals)} != {expected[name]}"

    finals = {}
    finals_lock = threading.Lock()

    def read(s, name):
        r = s.get(server.url(f"/counter/{q(name)}"), timeout=30)
        if r.status_code != 200:
            return f"GET {name!r}: {r.status_code} {r.text[:200]}"
        j = r.json()
        with finals_lock:
            finals[name] = j
        return None

    errors = run_pool(N_THREADS, names, read, time.monotonic() + 60)
    assert not errors, f"{len(errors)} failed reads, first: {errors[:5]}"
    wrong = [(n, finals[n], expected[n]) for n in names
             if finals[n] != {"name": n, "value": expected[n]}]
    assert not wrong, f"{len(wrong)} counters wrong, first: {wrong[:5]}"

    # The files, read with the sqlite3 CLI once the server has stopped.
    rc, killed = server.stop()
    assert rc == 0 and not killed, f"SIGTERM: status {rc}, killed={killed}\n{server.log_tail()}"
    objs = objects_by_key(server.data_dir)
    counter_objs = {name: v for (cls, name), v in objs.items() if cls == "counter"}
    assert set(counter_objs) == set(names), (
        f"counter files: {len(counter_objs)}, missing {sorted(set(names) - set(counter_objs))[:5]},"
        f" unexpected {sorted(set(counter_objs) - set(names))[:5]}")

    first_path, tables = counter_objs[names[0]]
    assert tables, f"{first_path} has no table besides _dobj_*"
    schema = {t: table_columns(first_path, t) for t in tables}
    sql = user_rows_sql(schema)
    # Schema-agnostic: some column holds each counter's value (or sums to it),
    # and it is the same column in every file.
    common = None
    bad = []
    for name in names:
        path, _ = counter_objs[name]
        rows = user_rows(path, sql)
        where = integer_locations(rows, expected[name])
        if not where:
            bad.append((name, str(path), expected[name], rows))
            continue
        common = where if common is None else common & where
    assert not bad, f"{len(bad)} files do not hold their counter's value, first: {bad[:3]}"
    assert common, "no single column holds the value in every counter file"
