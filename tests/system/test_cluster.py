"""Quorum replication across six real processes on loopback (issue 5).

The first live host of an object's ranks 0..5 leads it (the others forward
to it: test_router.py); a host becomes its leader through recovery (a new
epoch, promises from three of the five replicas), which deposes the one
before. Every test checks what a client saw against what survives.
"""
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest
import requests

from cluster import Cluster
from dobjtest import DOBJ, Server, sqlite_json


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    crashed = [f"host {i} exited with status {s.proc.returncode}:\n{s.log_tail()}"
               for i, s in c.servers.items()
               if s.proc is not None and s.proc.poll() is not None and not s.expected_exit]
    c.stop()
    if crashed:
        pytest.fail("\n\n".join(crashed), pytrace=False)


def kv_put(session, server, obj, key, value, timeout=10):
    return session.put(server.url(f"/probe/{obj}/kv/{key}"), data=value, timeout=timeout)


def kv_get(server, obj, key):
    return requests.get(server.url(f"/probe/{obj}/kv/{key}"), timeout=15)


def retrying(call, tries=5):
    """What a client does with a 503 that says retry: a host that led the
    object before refuses to answer from a state it can not confirm."""
    for _ in range(tries):
        r = call()
        if r.status_code != 503:
            return r
        time.sleep(0.05)
    return r


def counter_value(server, name):
    r = requests.get(server.url(f"/counter/{name}"), timeout=15)
    assert r.status_code == 200, r.text
    return r.json()["value"]


# ---- configuration ------------------------------------------------------------


def test_bad_quorums_and_cluster_files_are_refused(tmp_path):
    def refused(*args):
        s = Server(tmp_path / f"r{len(args)}", extra_args=[str(a) for a in args])
        rc, out, err = s.run_to_exit()
        assert rc != 0, out + err
        return out + err

    msg = refused("--replicas", 5, "--quorum", 2)
    assert "quorum = 2 with replicas = 5" in msg and "more than half" in msg
    assert "quorum = 4 with replicas = 3" in refused("--replicas", 3, "--quorum", 4)
    c = Cluster(tmp_path)
    assert "share one object storage" in refused("--cluster", c.file, "--host-id", 1)
    store = ["--store", f"file://{tmp_path}/store"]
    assert "host_id" in refused("--cluster", c.file, *store)
    assert "not in the cluster file" in refused("--cluster", c.file, "--host-id", 9, *store)
    small = tmp_path / "small.conf"
    small.write_text("secret long-enough-secret\nhost 1 127.0.0.1:1 127.0.0.1:2\nhost 2 127.0.0.1:3 127.0.0.1:4\n")
    assert "5 replicas need at least 5 members" in refused("--cluster", small, "--host-id", 1, *store)
    nosecret = tmp_path / "nosecret.conf"
    nosecret.write_text("".join(f"host {i} 127.0.0.1:{i * 2 + 1000} 127.0.0.1:{i * 2 + 1001}\n"
                                for i in range(1, 7)))
    assert "shared secret" in refused("--cluster", nosecret, "--host-id", 1, *store)
    bad = tmp_path / "bad.conf"
    bad.write_text("host 1 127.0.0.1 127.0.0.1:2\n")
    assert "bad.conf line 1" in refused("--cluster", bad, "--host-id", 1, *store)


# ---- replication ------------------------------------------------------------


def test_writes_reach_a_quorum_and_every_candidate_serves_one_state(cluster):
    cluster.start()
    obj = "ledger"
    rank = cluster.rank("probe", obj)
    s = requests.Session()
    for i in range(30):
        r = kv_put(s, cluster[rank[0]], obj, f"k{i}", f"v{i}")
        assert r.status_code == 200, r.text
    # The leader counts its quorum commits (the barrier of its epoch too).
    assert 30 <= cluster[rank[0]].metrics()["dobj_commits_total"] <= 33
    # The replica set holds the records in its journals; rank 0 is no replica.
    replicas = cluster.replica_set("probe", obj)
    assert rank[0] not in replicas
    for i in replicas:
        seg = sorted((cluster.dir / f"h{i}" / "replica").glob("*.log"))
        assert seg and sum(p.stat().st_size for p in seg) > 1000, f"host {i} journaled nothing"
    # Through any candidate the same state: they forward to the leader.
    for host in rank[1:4]:
        for i in (0, 17, 29):
            r = retrying(lambda: kv_get(cluster[host], obj, f"k{i}"))
            assert r.status_code == 200 and r.json() == {"v": f"v{i}"}, (host, r.text)
        assert retrying(lambda: kv_put(s, cluster[host], obj, f"from{host}", "x")).status_code == 200
    # The first leader has not heard it was replaced: it must not answer from
    # its old state. Either it refuses (503) or it answers the newest state.
    back = cluster[rank[0]]
    r = kv_get(back, obj, f"from{rank[3]}")
    assert r.status_code in (200, 503), r.text
    if r.status_code == 200:
        assert r.json() == {"v": "x"}
    for host in rank[1:4]:
        r = retrying(lambda: kv_get(back, obj, f"from{host}"))
        assert r.json() == {"v": "x"}, r.text


def test_idle_leaders_are_not_ticked(cluster):
    """A leader with nothing to time (every record durable, every replica
    matched and told) leaves its shard's 25 ms tick: with many objects led,
    the tick costs in proportion to the busy ones only. 60 counters written
    once each: a second later every host still leads its share, and no
    leader is ticking; writes keep working; a leader whose replica went
    silent keeps ticking (it resends)."""
    cluster.start()
    s = requests.Session()
    names = [f"idle-{i}" for i in range(60)]
    for n in names:
        r = s.post(cluster[cluster.leader("counter", n)].url(f"/counter/{n}"), timeout=10)
        assert r.status_code == 200, r.text

    def ticking():
        return sum(cluster[i].metrics()["dobj_leaders_ticking"] for i in cluster.ids)

    deadline = time.monotonic() + 10
    while ticking() > 0:
        assert time.monotonic() < deadline, f"{ticking()} leaders still ticking 10 s after their last write"
        time.sleep(0.1)
    assert sum(int(cluster.status(i)["leading"]) for i in cluster.ids) == 60
    # They serve as before: a write to each is acknowledged and counted.
    for n in names[:10]:
        r = s.post(cluster[cluster.leader("counter", n)].url(f"/counter/{n}"), timeout=10)
        assert r.status_code == 200 and r.json()["value"] == 2, r.text
    # A replica frozen: the leaders that write to it keep ticking (resends).
    n = names[0]
    lead, frozen = cluster.leader("counter", n), cluster.replica_set("counter", n)[0]
    cluster[frozen].proc.send_signal(signal.SIGSTOP)
    try:
        r = s.post(cluster[lead].url(f"/counter/{n}"), timeout=10)
        assert r.status_code == 200 and r.json()["value"] == 3, r.text
        time.sleep(0.5)
        assert cluster[lead].metrics()["dobj_leaders_ticking"] >= 1, "a leader with a silent replica stopped ticking"
    finally:
        cluster[frozen].proc.send_signal(signal.SIGCONT)
    deadline = time.monotonic() + 10
    while cluster[lead].metrics()["dobj_leaders_ticking"] > 0:
        assert time.monotonic() < deadline, "the leader kept ticking after its replica came back"
        time.sleep(0.1)


def test_kill9_leader_under_load_loses_no_acknowledged_write(cluster):
    cluster.start()
    obj = "kill9"
    rank = cluster.rank("probe", obj)
    acked, unknown = set(), set()
    lock = threading.Lock()
    stop = threading.Event()
    killed = threading.Event()

    def writer(t):
        s = requests.Session()
        i = 0
        while not stop.is_set():
            key = f"w{t}-{i}"
            i += 1
            target = cluster[rank[1]] if killed.is_set() else cluster[rank[0]]
            try:
                r = kv_put(s, target, obj, key, key, timeout=10)
                ok = r.status_code == 200
            except requests.RequestException:
                ok = False
            with lock:
                (acked if ok else unknown).add(key)
            if not ok:
                time.sleep(0.05)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    before = len(acked)
    cluster[rank[0]].kill9()
    killed.set()
    time.sleep(2.5)
    stop.set()
    for t in threads:
        t.join()
    assert before > 50, f"only {before} writes acknowledged before the kill"
    assert len(acked) > before + 20, "no writes acknowledged after the new leader took over"
    new = cluster[rank[1]]
    r = new.post(f"/probe/{obj}/query", data="SELECT k FROM kv")
    assert r.status_code == 200, r.text
    present = {row[0] if isinstance(row, list) else row["k"] for row in r.json()["rows"]}
    missing = acked - present
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {sorted(missing)[:5]}"
    assert present <= acked | unknown, "a write nobody sent appeared"


def test_counter_failover_neither_loses_nor_duplicates(cluster):
    cluster.start()
    rank = cluster.rank("counter", "c")
    s = requests.Session()
    ok = 0
    for _ in range(100):
        assert s.post(cluster[rank[0]].url("/counter/c"), timeout=10).status_code == 200
        ok += 1
    cluster[rank[0]].kill9()
    # Until rank 1 has noticed, it forwards to the dead host and answers 503
    # (an unknown outcome a client would retry); a read is safe to retry.
    assert retrying(lambda: requests.get(cluster[rank[1]].url("/counter/c"), timeout=10), tries=100).status_code == 200
    for _ in range(50):
        assert s.post(cluster[rank[1]].url("/counter/c"), timeout=10).status_code == 200
        ok += 1
    assert counter_value(cluster[rank[2]], "c") == ok == 150


def test_two_replicas_down_writes_go_on_three_down_they_stop_and_resume(cluster):
    cluster.start()
    obj = "quorum"
    leader = cluster[cluster.leader("probe", obj)]
    reps = cluster.replica_set("probe", obj)
    s = requests.Session()
    assert kv_put(s, leader, obj, "a", "1").status_code == 200
    cluster[reps[0]].kill9()
    cluster[reps[1]].kill9()
    for i in range(20):
        r = kv_put(s, leader, obj, f"two-down-{i}", "x")
        assert r.status_code == 200, r.text
    cluster[reps[2]].kill9()
    t0 = time.monotonic()
    r = kv_put(s, leader, obj, "three-down", "lost?", timeout=20)
    took = time.monotonic() - t0
    assert r.status_code == 503, r.text
    assert "quorum" in r.json()["error"]
    assert 1.5 < took < 6, f"the 503 came after {took:.1f}s (commit timeout 2s)"
    # Reads wait for a quorum too: a new leader can not recover without one.
    r = kv_get(leader, obj, "a")
    assert r.status_code == 503, r.text
    for i in reps[:3]:
        cluster[i].start()
    deadline = time.monotonic() + 15
    while True:
        r = kv_put(s, leader, obj, "after", "1", timeout=10)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 200, r.text
    for i in range(20):
        assert kv_get(leader, obj, f"two-down-{i}").json() == {"v": "x"}
    # The write that got 503 is wholly there or wholly not.
    r = kv_get(leader, obj, "three-down")
    assert r.status_code in (200, 404)
    if r.status_code == 200:
        assert r.json() == {"v": "lost?"}


def test_a_host_with_the_wrong_secret_gets_nothing(cluster, tmp_path):
    cluster.start()
    obj = "secret"
    rank = cluster.rank("probe", obj)
    s = requests.Session()
    assert kv_put(s, cluster[rank[0]], obj, "k", "v").status_code == 200
    # Restart one replica with another secret: its peers drop it, and it
    # counts for nothing (writes still reach the other four).
    bad = cluster.replica_set("probe", obj)[0]
    srv = cluster[bad]
    rc, killed = srv.stop()
    assert rc == 0 and not killed, f"SIGTERM: status {rc}, killed={killed}\n{srv.log_tail()}"
    srv.extra_args += ["--cluster-secret", "not-the-cluster-secret"]
    srv.start()
    for i in range(10):
        assert kv_put(s, cluster[rank[0]], obj, f"k{i}", "v").status_code == 200
    time.sleep(0.5)
    assert "does not know the cluster secret" in cluster[rank[0]].log_text()
    m = cluster[rank[0]].metrics()
    assert m["dobj_peer_auth_failures_total"] > 0 and m["dobj_peer_connected"] == 4, m
    # Its promise does not count: with two others down, no quorum.
    for i in cluster.replica_set("probe", obj)[1:3]:
        cluster[i].kill9()
    r = kv_put(s, cluster[rank[0]], obj, "nope", "v", timeout=20)
    assert r.status_code == 503


# ---- a leader cut off, a leader dead -------------------------------------------


def nft(*args):
    return subprocess.run(["nft", *args], capture_output=True, text=True, timeout=10)


needs_nft = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("nft") is None,
                               reason="cutting a host off needs root and nft (nftables)")


@needs_nft
def test_a_leader_cut_off_by_a_firewall_fails_what_it_holds(tmp_path):
    c = Cluster(tmp_path, own_ips=True)
    table = f"dobjtest{os.getpid()}"
    try:
        c.start()
        obj = "cutoff"
        rank = c.rank("probe", obj)
        old, new = c[rank[0]], c[rank[1]]
        s = requests.Session()
        for i in range(10):
            assert kv_put(s, old, obj, f"before{i}", "v").status_code == 200
        # Everything to and from the old leader's address is dropped, except
        # its client port, where this test still talks to it.
        ip, port = c.ip[rank[0]], c.client_ports[rank[0]]
        rules = f"""table inet {table} {{
            chain out {{ type filter hook output priority 0; policy accept;
                ip saddr {ip} tcp sport != {port} drop
                ip daddr {ip} tcp dport != {port} drop
            }}
        }}"""
        r = subprocess.run(["nft", "-f", "-"], input=rules, capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stderr
        held = {}

        def write_to_old():
            held["r"] = kv_put(requests.Session(), old, obj, "held", "lost", timeout=20)

        t = threading.Thread(target=write_to_old)
        t.start()
        acked = []
        for i in range(20):
            r = retrying(lambda: kv_put(s, new, obj, f"after{i}", "v"))
            assert r.status_code == 200, r.text
            acked.append(f"after{i}")
        t.join()
        assert held["r"].status_code == 503, held["r"].text
        # Reads at the old leader do not answer from its old state either.
        r = kv_get(old, obj, "after0")
        assert r.status_code == 503, r.text
        for k in [f"before{i}" for i in range(10)] + acked:
            assert kv_get(new, obj, k).json() == {"v": "v"}, k
        assert kv_get(new, obj, "held").status_code == 404, "a write no replica took appeared"
        # Healed: the old host steps down, recovers, and serves the new state.
        assert nft("delete", "table", "inet", table).returncode == 0
        r = retrying(lambda: kv_get(old, obj, "after19"), tries=40)
        assert r.status_code == 200 and r.json() == {"v": "v"}, r.text
        assert kv_get(old, obj, "held").status_code == 404
    finally:
        nft("delete", "table", "inet", table)
        c.stop()


def test_replicas_upload_what_a_dead_leader_had_not(tmp_path):
    c = Cluster(tmp_path, extra_args=["--segment-interval-ms", 3000, "--replica-upload-timeout-ms", 4000])
    try:
        c.start()
        obj = "orphan"
        rank = c.rank("probe", obj)
        s = requests.Session()
        for i in range(40):
            assert kv_put(s, c[rank[0]], obj, f"k{i}", f"v{i}").status_code == 200
        time.sleep(0.2)  # the commit point reaches the replicas within a tick
        c[rank[0]].kill9()  # before its first segment was cut (3 s)
        last = None
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            out = subprocess.run([str(DOBJ), "ls", "--store", f"file://{c.store}"], capture_output=True, text=True,
                                 timeout=30)
            for line in out.stdout.splitlines():
                f = line.split()
                if len(f) >= 4 and f[0] == "probe" and f[1].strip('"') == obj:
                    last = int(f[3])
            if last is not None and last >= 41:  # 40 writes after the barrier
                break
            time.sleep(0.5)
        assert last is not None and last >= 41, f"the replicas uploaded up to {last}:\n{out.stdout}{out.stderr}"
        # Nobody leads the object now: the store alone restores every write.
        db = tmp_path / "restored.db"
        r = subprocess.run([str(DOBJ), "restore", "--store", f"file://{c.store}", "--object", f"probe/{obj}",
                            "--lsn", str(last), "--out", str(db)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        rows = {r["k"]: r["v"] for r in sqlite_json(db, "SELECT k, v FROM kv")}
        assert rows == {f"k{i}": f"v{i}" for i in range(40)}
        logs = "".join(c[i].log_text() for i in c.replica_set("probe", obj))
        assert "replica uploads records its leader has not" in logs
    finally:
        c.stop()


def test_replica_journals_are_compacted_and_survive_kill9_of_every_host(tmp_path):
    c = Cluster(tmp_path, extra_args=["--journal-segment-bytes", "64K"])
    try:
        c.start()
        obj = "compact"
        rank = c.rank("probe", obj)
        s = requests.Session()
        for i in range(600):  # about 4 MB of random bytes: many 64 KB segments
            r = s.post(c[rank[0]].url(f"/probe/{obj}/multi"), params={"k": f"k{i}", "count": 1, "pad": 3000},
                       timeout=15)
            assert r.status_code == 200, r.text
        time.sleep(0.5)
        for i in c.replica_set("probe", obj):
            segs = sorted((c.dir / f"h{i}" / "replica").glob("*.log"))
            assert len(segs) <= 8, f"host {i} keeps {len(segs)} journal segments"
            assert c[i].metrics()["dobj_replica_checkpoints_total"] > 0
        for srv in c.servers.values():
            srv.kill9()
        c.start()
        r = retrying(lambda: c[rank[1]].post(f"/probe/{obj}/query", data="SELECT count(*) AS n FROM multi"))
        assert r.status_code == 200, r.text
        assert r.json()["rows"] == [{"n": 600}]
    finally:
        c.stop()
