"""Membership changes (issue 6): hosts join and leave a running cluster.

The cluster file names a version and, while the members change, the members
it replaces (`previous`) and the hosts on their way out (`leaving`). SIGHUP
loads it. Objects whose replica set changed are led with both sets until
their state is durable on the new one (joint configurations); `GET /_status`
says how many objects each host still holds that have not moved. Placement is
recomputed here (cluster.py), independently of the C code.
"""
import random
import signal
import statistics
import subprocess
import threading
import time

import requests

from cluster import Cluster
from dobjtest import DOBJ


def wait_moved(cluster, ids, version, timeout=60):
    """Until every host in ids has loaded `version` and holds nothing that
    has still to move; returns how long that took."""
    t0 = time.monotonic()
    while True:
        st = {i: cluster.status(i) for i in ids}
        if all(int(s["version"]) == version and int(s["moving"]) == 0 for s in st.values()):
            return time.monotonic() - t0
        assert time.monotonic() - t0 < timeout, f"objects still moving after {timeout} s: {st}"
        time.sleep(0.2)


def roles(cluster, i):
    """{host id: role} as host i's /_status lists them."""
    text = requests.get(cluster[i].url("/_status"), timeout=10).text
    return {int(f[1]): f[5] for f in (line.split() for line in text.splitlines()) if f[0] == "host"}


def wait_loaded(cluster, ids, version, members, timeout=15):
    """Until every host in ids has loaded `version` with no change under way."""
    deadline = time.monotonic() + timeout
    while not all(cluster.status(i)["version"] == str(version) and
                  roles(cluster, i) == {m: "member" for m in members} for i in ids):
        assert time.monotonic() < deadline, [(cluster.status(i), roles(cluster, i)) for i in ids]
        time.sleep(0.05)


def wait_log(server, text, timeout=10):
    deadline = time.monotonic() + timeout
    while text not in server.log_text():
        assert time.monotonic() < deadline, f"no '{text}' in the log"
        time.sleep(0.05)


class Load:
    """Writers incrementing counters through the listed hosts; per object the
    acknowledged count, the unknown outcomes and when each ack came."""

    def __init__(self, cluster, names, hosts, writers=6):
        self.cluster, self.names = cluster, names
        self.hosts = list(hosts)
        self.lock = threading.Lock()
        self.acked = {n: 0 for n in names}
        self.unknown = {n: 0 for n in names}
        self.times = {n: [] for n in names}
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(k,)) for k in range(writers)]

    def _run(self, k):
        rnd = random.Random(k)
        s = requests.Session()
        while not self.stop.is_set():
            name = rnd.choice(self.names)
            with self.lock:
                host = rnd.choice(self.hosts)
            try:
                r = s.post(self.cluster[host].url(f"/counter/{name}"), timeout=10)
            except requests.RequestException:
                r = None
            with self.lock:
                if r is not None and r.status_code == 200:
                    self.acked[name] += 1
                    self.times[name].append(time.monotonic())
                else:
                    self.unknown[name] += 1
            if r is None or r.status_code != 200:
                time.sleep(0.01)

    def set_hosts(self, hosts):
        with self.lock:
            self.hosts = list(hosts)

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()

    def longest_gap(self, name, t0, t1):
        """The longest time between acknowledged writes of `name` from t0 to t1."""
        ts = [t0] + [t for t in self.times[name] if t0 < t < t1] + [t1]
        return max(b - a for a, b in zip(ts, ts[1:]))


def test_a_seventh_host_joins_under_load_then_one_leaves(tmp_path):
    cluster = Cluster(tmp_path, n=6)
    try:
        cluster.start()
        names = [f"m{k}" for k in range(16)]
        before = {n: (cluster.leader("counter", n), set(cluster.replica_set("counter", n))) for n in names}
        load = Load(cluster, names, [1, 2, 3, 4, 5, 6]).start()
        time.sleep(1.5)

        # A seventh host joins: version 2, the previous members named.
        cluster.add_host(7)
        cluster.write_file(version=2, previous=[1, 2, 3, 4, 5, 6])
        cluster.members = [1, 2, 3, 4, 5, 6, 7]
        cluster.start(ids=[7], connected=False)
        t_join = time.monotonic()
        cluster.hup([1, 2, 3, 4, 5, 6])
        load.set_hosts([1, 2, 3, 4, 5, 6, 7])
        cluster.wait_connected([1, 2, 3, 4, 5, 6, 7])
        join_took = wait_moved(cluster, [1, 2, 3, 4, 5, 6, 7], 2)
        t_joined = time.monotonic()
        after = {n: (cluster.leader("counter", n), set(cluster.replica_set("counter", n))) for n in names}
        moved = [n for n in names if before[n] != after[n]]
        assert moved, "no object's placement changed: pick more objects"
        assert any(7 in after[n][1] or after[n][0] == 7 for n in moved)
        assert int(cluster.status(7)["replicating"]) > 0, "host 7 holds replicas of the objects that moved to it"
        assert roles(cluster, 1)[7] == "joining"
        # The change is done: the previous line goes.
        cluster.write_file(version=2)
        cluster.hup()
        wait_loaded(cluster, cluster.ids, 2, [1, 2, 3, 4, 5, 6, 7])
        assert "cluster file not loaded" not in "".join(cluster[i].log_text() for i in cluster.ids)
        time.sleep(1)

        # Host 3 leaves: version 3, previous = the seven, 3 leaving.
        before = after
        cluster.write_file(version=3, previous=[1, 2, 3, 4, 5, 6, 7], leaving=[3])
        cluster.members = [1, 2, 4, 5, 6, 7]
        load.set_hosts([1, 2, 4, 5, 6, 7])
        t_leave = time.monotonic()
        cluster.hup()
        leave_took = wait_moved(cluster, [1, 2, 3, 4, 5, 6, 7], 3)
        t_left = time.monotonic()
        after = {n: (cluster.leader("counter", n), set(cluster.replica_set("counter", n))) for n in names}
        moved_out = [n for n in names if before[n] != after[n]]
        assert all(3 in before[n][1] or before[n][0] == 3 for n in moved_out)
        assert moved_out, "no object had host 3: pick more objects"
        assert roles(cluster, 1)[3] == "leaving"
        # Done: host 3's lines go, every member loads that, then host 3 stops.
        cluster.ids.remove(3)
        cluster.write_file(version=3)
        cluster.hup()
        wait_loaded(cluster, cluster.ids, 3, cluster.ids)
        cluster[3].stop()
        time.sleep(1.5)
        load.finish()

        print(f"join: every object moved {join_took:.2f} s after SIGHUP; leave: {leave_took:.2f} s")
        for label, objs, t0, t1 in (("join", moved, t_join, t_joined), ("leave", moved_out, t_leave, t_left)):
            gaps = [load.longest_gap(n, t0 - 0.5, t1 + 0.5) for n in objs]
            still = [load.longest_gap(n, t0 - 0.5, t1 + 0.5) for n in names if n not in objs]
            print(f"{label}: {len(objs)} of {len(names)} objects moved; longest gap between acknowledged writes "
                  f"per moved object: median {statistics.median(gaps) * 1000:.0f} ms, max {max(gaps) * 1000:.0f} ms"
                  + (f"; unmoved objects: median {statistics.median(still) * 1000:.0f} ms" if still else ""))
        # Nothing acknowledged was lost, through every host left.
        for n in names:
            values = {requests.get(cluster[i].url(f"/counter/{n}"), timeout=10).json()["value"]
                      for i in cluster.ids}
            assert len(values) == 1, (n, values)
            value = values.pop()
            assert load.acked[n] <= value <= load.acked[n] + load.unknown[n], \
                (n, value, load.acked[n], load.unknown[n])
        assert sum(load.acked.values()) > 500
    finally:
        cluster.stop()


def test_a_cluster_file_that_can_not_follow_is_refused_and_the_loaded_one_stays(tmp_path):
    cluster = Cluster(tmp_path, n=6)
    try:
        cluster.start()
        assert cluster[1].post("/counter/x").status_code == 200
        cluster.add_host(7)
        refused = [
            (dict(version=None), "the version did not go up"),            # members changed, version 1
            (dict(version=2), "'previous' must list the members"),         # no previous line
            (dict(version=2, previous=[1, 2, 3]), "'previous' must list"),  # the wrong previous members
        ]
        for kw, why in refused:
            cluster.write_file(**kw)
            cluster.hup([1])
            wait_log(cluster[1], why)
        cluster.write_file()
        cluster.file.write_text(cluster.file.read_text() + "version banana\n")
        cluster.hup([1])
        wait_log(cluster[1], "version 'banana' is not a number")
        assert cluster[1].alive()
        assert cluster.status(1)["version"] == "1"
        assert cluster[1].post("/counter/x").status_code == 200
        assert cluster[2].get("/counter/x").json()["value"] == 2
        # A change under way: a second one, a changed 'previous', dropping
        # 'previous' while a host of the change does not answer, and changed
        # addresses are refused.
        cluster.write_file(version=2, previous=[1, 2, 3, 4, 5, 6])
        cluster.hup([1])
        deadline = time.monotonic() + 10
        while cluster.status(1)["version"] != "2":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        steps = [
            (dict(version=3, previous=[1, 2, 3, 4, 5, 6, 7], leaving=[7]), "the change to version 2 is not done yet"),
            (dict(version=2, previous=[1, 2, 3, 4, 5]), "'previous' changed during the change"),
            # hosts 2..6 are on version 1, host 7 does not run
            (dict(version=2), "'previous' goes only once every host has nothing left to move"),
        ]
        for kw, why in steps:
            cluster.write_file(**kw)
            cluster.hup([1])
            wait_log(cluster[1], why)
        cluster.client_ports[2] += 1
        cluster.write_file(version=2, previous=[1, 2, 3, 4, 5, 6])
        cluster.hup([1])
        wait_log(cluster[1], "host 2's addresses or zone changed")
        assert cluster[1].alive()
        assert cluster.status(1)["version"] == "2"
    finally:
        cluster.stop()


def test_dobj_status_shows_the_change_and_when_it_is_done(tmp_path):
    cluster = Cluster(tmp_path, n=6)
    try:
        cluster.start()
        for k in range(8):
            assert cluster[1].post(f"/counter/s{k}").status_code == 200
        cluster.add_host(7)
        cluster.write_file(version=2, previous=[1, 2, 3, 4, 5, 6])
        cluster.members = [1, 2, 3, 4, 5, 6, 7]
        cluster.start(ids=[7], connected=False)
        cluster.hup([1, 2, 3, 4, 5, 6])
        cluster.wait_connected(cluster.ids)
        wait_moved(cluster, cluster.ids, 2)
        out = subprocess.run([str(DOBJ), "status", "--server", cluster[1].url("")], capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 0, out.stderr
        assert "membership version 2" in out.stdout
        assert "joining" in out.stdout
        assert "every object has moved to version 2" in out.stdout, out.stdout
        # Nobody asked for these objects since: their replicas woke their leaders.
        assert sum(cluster[i].metrics()["dobj_move_wakes_total"] for i in cluster.ids) > 0
        for k in range(8):
            assert cluster[7].get(f"/counter/s{k}").json()["value"] == 1
    finally:
        cluster.stop()


def test_a_host_that_has_not_loaded_the_new_file_is_fenced(tmp_path):
    """Host 6 misses the SIGHUP. An object it led under version 1 moves (host
    7 joins); once the new leader has it, host 6's old leadership is fenced
    by the epochs of version 2: its writes fail with 503 naming the reason,
    and no write is acknowledged twice or lost. Loading the file, it forwards
    again."""
    cluster = Cluster(tmp_path, n=6)
    try:
        cluster.start()
        v1 = Cluster.__new__(Cluster)
        v1.__dict__.update(cluster.__dict__)
        cluster.members = [1, 2, 3, 4, 5, 6, 7]
        name = next(f"f{k}" for k in range(10000)
                    if v1.leader("counter", f"f{k}") == 6 and cluster.leader("counter", f"f{k}") != 6)
        cluster.members = [1, 2, 3, 4, 5, 6]
        for _ in range(3):
            assert cluster[6].post(f"/counter/{name}").status_code == 200
        cluster.add_host(7)
        cluster.write_file(version=2, previous=[1, 2, 3, 4, 5, 6])
        cluster.members = [1, 2, 3, 4, 5, 6, 7]
        cluster.start(ids=[7], connected=False)
        cluster.hup([1, 2, 3, 4, 5])
        cluster.wait_connected([1, 2, 3, 4, 5, 7])
        time.sleep(0.3)  # connected both ways
        new_leader = cluster.leader("counter", name)
        r = cluster[1].post(f"/counter/{name}")
        assert r.status_code == 200 and r.json()["value"] == 4, (r.status_code, r.text)
        assert r.headers["dobj-host"] == str(new_leader)
        answers = [cluster[6].post(f"/counter/{name}") for _ in range(3)]
        assert all(a.status_code == 503 for a in answers), [(a.status_code, a.text) for a in answers]
        assert any("older than the cluster's (version 2)" in a.text for a in answers), [a.text for a in answers]
        cluster.hup([6])
        cluster.wait_connected(cluster.ids)  # until then host 6 may lead in host 7's place (safely)
        r = cluster[6].post(f"/counter/{name}")
        assert r.status_code == 200, r.text
        assert r.headers["dobj-host"] == str(new_leader)
        assert 5 <= r.json()["value"] <= 8  # the 503s are unknown outcomes: at most 3 of them ran
        assert cluster[2].get(f"/counter/{name}").json()["value"] == r.json()["value"]
    finally:
        cluster.stop()


def test_half_the_cluster_replaced_at_once_loses_nothing(tmp_path):
    """Hosts 1, 2 and 3 leave and 7, 8 and 9 join in one change, so some
    objects keep only two of their five replicas: a leader that recovered
    from the new set alone could miss their state. Writers keep going through
    hosts 4-6 all along, so leaders are recovering when the SIGHUP comes.
    Once nothing moves, the change is done and the three old hosts are
    killed; every counter still has every acknowledged write, and takes new
    ones."""
    cluster = Cluster(tmp_path, n=6)
    try:
        cluster.start()
        names = [f"h{k}" for k in range(24)]
        acked = {}
        for n in names:
            for _ in range(1 + len(n) % 3):
                assert cluster[1 + len(acked) % 6].post(f"/counter/{n}").status_code == 200
                acked[n] = acked.get(n, 0) + 1
        old_sets = {n: set(cluster.replica_set("counter", n)) for n in names}
        load = Load(cluster, names, [4, 5, 6], writers=4).start()
        time.sleep(0.5)
        for i in (7, 8, 9):
            cluster.add_host(i)
        cluster.write_file(version=2, previous=[1, 2, 3, 4, 5, 6], leaving=[1, 2, 3])
        cluster.members = [4, 5, 6, 7, 8, 9]
        cluster.start(ids=[7, 8, 9], connected=False)
        cluster.hup([1, 2, 3, 4, 5, 6])
        cluster.wait_connected(cluster.ids)
        wait_moved(cluster, cluster.ids, 2)
        new_sets = {n: set(cluster.replica_set("counter", n)) for n in names}
        assert any(len(old_sets[n] & new_sets[n]) <= 2 for n in names), "no object lost three replicas: more objects"
        # Half-way writes through a leaving host are forwarded to the new leaders.
        for n in names[:4]:
            r = cluster[1].post(f"/counter/{n}")
            assert r.status_code == 200 and int(r.headers["dobj-host"]) in cluster.members, (r.status_code, r.text)
            acked[n] += 1
        cluster.ids = [4, 5, 6, 7, 8, 9]
        cluster.write_file(version=2)
        cluster.hup()
        wait_loaded(cluster, cluster.ids, 2, cluster.ids)
        for i in (1, 2, 3):
            cluster[i].kill9()
        time.sleep(0.5)
        load.finish()
        assert sum(load.acked.values()) > 100
        for n in names:
            r = cluster[4].post(f"/counter/{n}")
            assert r.status_code == 200, (n, r.status_code, r.text)
            low = acked[n] + load.acked[n] + 1
            assert low <= r.json()["value"] <= low + load.unknown[n], (n, r.json(), acked[n], load.acked[n],
                                                                      load.unknown[n])
    finally:
        cluster.stop()


def test_a_leader_still_recovering_when_the_file_changes_recovers_from_both_sets(tmp_path):
    """An object's leader is recovering (three of its five replicas are
    frozen: no quorum) when a change replaces exactly those three. It starts
    again under the new file, joint: it must still wait for the old set's
    quorum (a leader that recovered from the new set alone, two old replicas
    and three empty new hosts, could start the object from nothing). Once the
    three run again, the write that waited all along counts on top of the
    old ones."""
    cluster = Cluster(tmp_path, n=6, extra_args=["--commit-timeout-ms", "10000"])
    try:
        cluster.start()
        for i in (7, 8, 9):
            cluster.add_host(i)
        after = Cluster.__new__(Cluster)
        after.__dict__.update(cluster.__dict__)
        name = None
        for k in range(10000):
            n = f"r{k}"
            rank = cluster.rank("counter", n)
            leaving = rank[1:4]
            after.members = [h for h in range(1, 10) if h not in leaving]
            if after.leader("counter", n) == rank[0]:
                name, lead = n, rank[0]
                break
        assert name is not None
        for _ in range(5):
            assert cluster[lead].post(f"/counter/{name}").status_code == 200
        cluster[lead].kill9()  # its leader goes; it comes back leading nothing
        cluster[lead].start()
        cluster.wait_connected([1, 2, 3, 4, 5, 6])
        for h in leaving:
            cluster[h].proc.send_signal(signal.SIGSTOP)
        got = {}
        t = threading.Thread(target=lambda: got.update(r=cluster[lead].post(f"/counter/{name}", timeout=30)))
        t.start()
        time.sleep(0.5)  # its new leader waits for promises
        cluster.write_file(version=2, previous=[1, 2, 3, 4, 5, 6], leaving=leaving)
        cluster.members = after.members
        cluster.start(ids=[7, 8, 9], connected=False)
        cluster.hup()  # the frozen three load it when they run again
        time.sleep(1.5)
        assert t.is_alive(), f"the write did not wait for the old replicas: {got['r'].status_code} {got['r'].text}"
        for h in leaving:
            cluster[h].proc.send_signal(signal.SIGCONT)
        t.join()
        r = got["r"]
        assert r.status_code == 200, r.text
        assert r.json()["value"] == 6, r.json()
        assert cluster[9].get(f"/counter/{name}").json()["value"] == 6
    finally:
        for i in cluster.ids:
            if cluster[i].alive():
                cluster[i].proc.send_signal(signal.SIGCONT)
        cluster.stop()
