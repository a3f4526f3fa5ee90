"""Transactions: rollback on handler failure, the authorizer, nested savepoints
and one-event-at-a-time execution per object (through the probe class)."""

import threading
import time

import pytest

from dobjtest import new_session


def kv_get(srv, obj, key):
    r = srv.get(f"/probe/{obj}/kv/{key}")
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    return r.json()["v"]


def kv_put(srv, obj, key, value):
    r = srv.put(f"/probe/{obj}/kv/{key}", data=value.encode())
    assert r.status_code == 200, r.text
    assert r.json() == {"ok": True}


def test_kv_roundtrip(server):
    assert kv_get(server, "kv1", "missing") is None
    kv_put(server, "kv1", "k", "hello")
    assert kv_get(server, "kv1", "k") == "hello"
    kv_put(server, "kv1", "k", "again")
    assert kv_get(server, "kv1", "k") == "again"
    assert kv_get(server, "kv2", "k") is None, "objects share data"


def test_rollback_on_handler_failure(server):
    kv_put(server, "rb", "existing", "before")
    r = server.post("/probe/rb/fail?k=new&v=1")
    assert r.status_code == 500
    assert r.json() == {"error": "probe failure requested"}
    assert kv_get(server, "rb", "new") is None
    # An overwrite in a failed event is undone as well.
    r = server.post("/probe/rb/fail?k=existing&v=after")
    assert r.status_code == 500
    assert kv_get(server, "rb", "existing") == "before"
    # The object keeps working.
    kv_put(server, "rb", "later", "x")
    assert kv_get(server, "rb", "later") == "x"


def test_failure_as_first_event_of_an_object(server):
    r = server.post("/probe/first-fails/fail?k=k&v=v")
    assert r.status_code == 500
    assert r.json() == {"error": "probe failure requested"}
    assert kv_get(server, "first-fails", "k") is None
    kv_put(server, "first-fails", "k", "ok")
    assert kv_get(server, "first-fails", "k") == "ok"
    # The runtime's own metadata survived the failed first event.
    r = server.post("/probe/first-fails/query", data=b"SELECT key, value FROM _dobj_meta ORDER BY key")
    assert r.status_code == 200, r.text
    # The stamped lsn counts committed writes only: the first read created the
    # object's schema (lsn 1), the put is lsn 2; the failed event and the
    # later read wrote nothing.
    # The origin is the epoch of the leader that made the record: 0 on a
    # single host.
    assert r.json()["rows"] == [{"key": "class", "value": "probe"},
                                {"key": "lsn", "value": 2},
                                {"key": "name", "value": "first-fails"},
                                {"key": "origin", "value": 0}]


REFUSED = [
    "BEGIN",
    "BEGIN IMMEDIATE",
    "COMMIT",
    "END",
    "ROLLBACK",
    "ATTACH 'x' AS y",
    "ATTACH ':memory:' AS mem",
    "DETACH y",
    "PRAGMA journal_mode=DELETE",
    "PRAGMA journal_mode=OFF",
    "PRAGMA synchronous=OFF",
    "PRAGMA locking_mode=EXCLUSIVE",
    "PRAGMA wal_autocheckpoint=0",
    "INSERT INTO _dobj_meta(key, value) VALUES('x', 'y')",
    "UPDATE _dobj_meta SET value = 'other' WHERE key = 'name'",
    "DELETE FROM _dobj_meta",
    "DROP TABLE _dobj_meta",
]


@pytest.mark.parametrize("sql", REFUSED)
def test_authorizer_refuses(server, sql):
    kv_put(server, "auth", "k", "v")
    r = server.post("/probe/auth/sql", data=sql.encode())
    assert r.status_code == 400, f"{sql!r} was not refused: {r.status_code} {r.text}"
    j = r.json()
    assert isinstance(j.get("error"), str) and j["error"].strip(), f"{sql!r}: no message: {j!r}"
    # The object and its metadata are intact and still usable.
    assert kv_get(server, "auth", "k") == "v"
    r = server.post("/probe/auth/query", data=b"SELECT key, value FROM _dobj_meta ORDER BY key")
    assert r.status_code == 200, r.text
    rows = [row for row in r.json()["rows"] if row["key"] not in ("lsn", "origin")]
    assert rows == [{"key": "class", "value": "probe"}, {"key": "name", "value": "auth"}]
    kv_put(server, "auth", "k2", "v2")
    assert kv_get(server, "auth", "k2") == "v2"


@pytest.mark.parametrize("sql", [
    "SELECT 1",
    "PRAGMA journal_mode",
    "SELECT value FROM _dobj_meta WHERE key = 'name'",
    "CREATE TABLE IF NOT EXISTS extra(x); INSERT INTO extra VALUES (1)",
])
def test_authorizer_allows(server, sql):
    r = server.post("/probe/allowed/sql", data=sql.encode())
    assert r.status_code == 200, f"{sql!r}: {r.status_code} {r.text}"
    assert r.json() == {"ok": True}


def test_meta_readable_by_handler(server):
    r = server.post("/probe/caf%C3%A9/query",
                    data=b"SELECT value FROM _dobj_meta WHERE key = 'name'")
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == [{"value": "caf\u00e9"}]


def test_nested_savepoints(server):
    r = server.post("/probe/nest/nested")
    assert r.status_code == 200, r.text
    assert kv_get(server, "nest", "a") == "1"
    assert kv_get(server, "nest", "b") is None


def test_events_of_one_object_are_serialized(server):
    ms = 700
    results = [None, None]
    barrier = threading.Barrier(2, timeout=10)

    def call(i):
        s = new_session()
        try:
            barrier.wait()
            t0 = time.monotonic()
            r = s.get(server.url(f"/probe/sleepy/sleep?ms={ms}"), timeout=30)
            results[i] = (r.status_code, r.json() if r.status_code == 200 else r.text,
                          time.monotonic() - t0)
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            results[i] = (None, f"{e.__class__.__name__}: {e}", 0.0)
        finally:
            s.close()

    server.get("/probe/sleepy/kv/warm")  # activate the object first
    t0 = time.monotonic()
    threads = [threading.Thread(target=call, args=(i,), daemon=True) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    elapsed = time.monotonic() - t0
    assert all(r is not None for r in results), f"requests did not finish: {results}"
    for status, body, _ in results:
        assert status == 200, body
    assert elapsed >= 2 * ms / 1000 - 0.02, f"two {ms} ms events on one object took {elapsed:.3f}s"
    (a, b) = sorted((r[1]["start_us"], r[1]["end_us"]) for r in results)
    assert a[1] <= b[0], f"handler runs overlapped: {a} {b}"
    assert max(r[2] for r in results) >= 2 * ms / 1000 - 0.02


def test_sleep_on_other_objects_still_answers(server):
    """Two objects on a two-shard server: both answer (no overlap asserted)."""
    results = {}

    def call(name):
        s = new_session()
        try:
            results[name] = s.get(server.url(f"/probe/{name}/sleep?ms=300"), timeout=30).status_code
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            results[name] = f"{e.__class__.__name__}: {e}"
        finally:
            s.close()

    threads = [threading.Thread(target=call, args=(f"sleeper-{i}",), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {f"sleeper-{i}": 200 for i in range(4)}


def test_statement_that_rolls_back_the_event_fails_it(server):
    """INSERT OR ROLLBACK ends the event's transaction early; a handler that
    shrugs the error off and writes on must not get those writes committed on
    their own (outside any record): the event fails and nothing stays."""
    assert server.post("/probe/early/sql", data=b"CREATE TABLE IF NOT EXISTS t(k PRIMARY KEY, v)").status_code == 200
    assert server.post("/probe/early/sql", data=b"INSERT INTO t VALUES(1, 'first')").status_code == 200
    body = b"INSERT OR ROLLBACK INTO t VALUES(1, 'dup')\nINSERT INTO t VALUES(2, 'stray')"
    r = server.post("/probe/early/each", data=body)
    assert r.status_code == 500, r.text
    assert "rolled back" in r.json()["error"], r.text
    rows = server.post("/probe/early/query", data=b"SELECT k, v FROM t ORDER BY k").json()["rows"]
    assert rows == [{"k": 1, "v": "first"}]
    # And after a crash the object is where the acknowledged writes left it.
    server.kill9()
    server.start()
    rows = server.post("/probe/early/query", data=b"SELECT k, v FROM t ORDER BY k").json()["rows"]
    assert rows == [{"k": 1, "v": "first"}]


def test_transaction_over_the_record_limit_fails_cleanly(server):
    """A transaction changing more than 64 MB of pages fails with a clear error
    (SQLITE_FULL from the in-memory WAL); the host goes on."""
    server.post("/probe/big/sql", data=b"CREATE TABLE IF NOT EXISTS b(x)")
    sql = (b"WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 70) "
           b"INSERT INTO b SELECT zeroblob(1000000) FROM c")
    r = server.post("/probe/big/sql", data=sql)
    assert r.status_code == 500, r.text
    assert "full" in r.json()["error"], r.text
    assert server.alive()
    assert server.post("/probe/big/sql", data=b"INSERT INTO b VALUES(1)").status_code == 200
    n = server.post("/probe/big/query", data=b"SELECT count(*) AS n FROM b").json()["rows"]
    assert n == [{"n": 1}]
