"""Durability: data survives a clean restart, and every acknowledged write
survives kill -9 under load."""

import random
import threading
import time

import requests

from dobjtest import new_session, q, ws_connect, ws_recv_until


def test_hello(server):
    r = server.get("/_hello")
    assert r.status_code == 200
    assert r.text.strip() == "hello"


def test_sigterm_exits_zero(server):
    server.post("/counter/term?by=3")
    rc, killed = server.stop()
    assert not killed, f"SIGTERM did not stop the server within 10s\n{server.log_tail()}"
    assert rc == 0, f"exit status {rc} after SIGTERM\n{server.log_tail()}"


def test_data_survives_clean_restart(server):
    names = [f"persist-{i}" for i in range(20)] + ["caf\u00e9 / \U0001F600"]
    for i, n in enumerate(names):
        r = server.post(f"/counter/{q(n)}?by={i + 1}")
        assert r.status_code == 200, r.text
    assert server.put("/probe/persist/kv/key", data=b"value").status_code == 200
    ws = ws_connect(server, "/chat/persist-room/?nick=ann")
    try:
        ws_recv_until(ws, lambda m: m.get("type") == "history", what="history")
        ws.send("before restart")
        ws_recv_until(ws, lambda m: m.get("type") == "message", what="own message")
    finally:
        ws.close()

    for round_ in range(2):
        server.restart()
        for i, n in enumerate(names):
            r = server.get(f"/counter/{q(n)}")
            assert r.status_code == 200, r.text
            assert r.json() == {"name": n, "value": i + 1}, f"after restart {round_ + 1}"
        r = server.get("/probe/persist/kv/key")
        assert r.status_code == 200 and r.json() == {"v": "value"}
        r = server.get("/chat/persist-room/messages")
        assert r.status_code == 200, r.text
        msgs = r.json()
        assert [(m["nick"], m["text"]) for m in msgs] == [("ann", "before restart")]

    # Still writable after restarts.
    assert server.post(f"/counter/{q(names[0])}").json()["value"] == 2


def test_kill9_under_load_keeps_acknowledged_writes(server_factory):
    srv = server_factory(name="kill9", shards=2)
    names = [f"load-{i}" for i in range(50)]
    n_threads = 8
    attempted = {n: 0 for n in names}
    acked = {n: 0 for n in names}
    lock = threading.Lock()
    stop = threading.Event()
    hard_deadline = time.monotonic() + 60

    def worker(seed):
        rng = random.Random(seed)
        s = new_session()
        try:
            while not stop.is_set() and time.monotonic() < hard_deadline:
                n = rng.choice(names)
                with lock:
                    attempted[n] += 1
                try:
                    r = s.post(srv.url(f"/counter/{n}"), timeout=10)
                except requests.RequestException:
                    if not srv.alive():
                        return
                    continue
                if r.status_code == 200:
                    with lock:
                        acked[n] += 1
        finally:
            s.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n_threads)]
    for t in threads:
        t.start()
    # Let some writes through, then kill at a random moment.
    t_start = time.monotonic()
    while time.monotonic() - t_start < 20:
        with lock:
            total = sum(acked.values())
        if total >= 200:
            break
        time.sleep(0.01)
    time.sleep(random.uniform(0.05, 1.0))
    srv.kill9()
    stop.set()
    for t in threads:
        t.join(20)
    assert not any(t.is_alive() for t in threads), "load threads did not stop"
    total_acked = sum(acked.values())
    assert total_acked > 0, f"no write was acknowledged before kill -9\n{srv.log_tail()}"

    srv.start()
    too_low, too_high = [], []
    for n in names:
        r = srv.get(f"/counter/{n}")
        assert r.status_code == 200, r.text
        v = r.json()["value"]
        if v < acked[n]:
            too_low.append((n, v, acked[n]))
        if v > attempted[n]:
            too_high.append((n, v, attempted[n]))
    assert not too_low, f"acknowledged increments lost (name, value, acked): {too_low[:10]}"
    assert not too_high, f"more increments than attempted (name, value, attempted): {too_high[:10]}"
    # And the recovered server keeps working.
    before = srv.get(f"/counter/{names[0]}").json()["value"]
    assert srv.post(f"/counter/{names[0]}").json()["value"] == before + 1


def test_restart_on_data_dir_of_killed_server_twice(server_factory):
    """Recovery is repeatable: kill -9 twice in a row without clean stops."""
    srv = server_factory(name="kill-twice", shards=1)
    for i in range(10):
        assert srv.post(f"/counter/twice?by={i + 1}").status_code == 200
    srv.kill9()
    srv.start()
    assert srv.get("/counter/twice").json()["value"] == 55
    assert srv.post("/counter/twice").json()["value"] == 56
    srv.kill9()
    srv.start()
    assert srv.get("/counter/twice").json()["value"] == 56
