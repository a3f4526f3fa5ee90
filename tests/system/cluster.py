"""A cluster of real `dobj serve` processes on loopback, for the cluster tests.

Placement is computed here independently of the C code (router/cluster.c):
the object id is the first 16 bytes of SHA-256("class/name"); a host's weight
is XXH3-64(id || host id as 4 little-endian bytes, seed); ranks go by
descending weight. The replica set is ranks 1..replicas or, with zones, the
ranking taken round by round, each round one more host per zone; the leader
is the first live host of rank 0 and the replica set.
"""
import hashlib
import signal
import struct
import subprocess
import time
from pathlib import Path

import requests
import xxhash

from dobjtest import ALL_CLASSES, Server, free_port

SECRET = "cluster-test-secret"


def object_id(cls, name):
    return hashlib.sha256(f"{cls}/{name}".encode()).digest()[:16]


class Cluster:
    def __init__(self, tmp_path, n=6, replicas=5, quorum=3, seed=0, extra_args=(), secret=SECRET, own_ips=False,
                 zones=None, netns=None):
        self.dir = Path(tmp_path) / "cluster"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.n, self.replicas, self.quorum, self.seed = n, replicas, quorum, seed
        self.ids = list(range(1, n + 1))
        self.client_ports = {i: free_port() for i in self.ids}
        self.peer_ports = {i: free_port() for i in self.ids}
        self.store = self.dir / "store"
        self.file = self.dir / "cluster.conf"
        # own_ips: host i on 127.0.0.(20 + i), so a firewall rule can cut one
        # host off while the test's client (127.0.0.1) still reaches it.
        self.ip = {i: f"127.0.0.{20 + i}" if own_ips else "127.0.0.1" for i in self.ids}
        # netns (a Netns): host i in its own network namespace, reached over a
        # veth on a bridge, at netns.ip(i).
        self.netns = netns
        if netns is not None:
            self.ip = {i: netns.ip(i) for i in self.ids}
        self.zones = zones or {}
        self.secret, self.extra_args = secret, list(extra_args)
        self.members = list(self.ids)  # placement ranks these (the cluster file's members)
        self.write_file()
        self.servers = {}
        for i in self.ids:
            self._server(i)

    def _server(self, i):
        args = ["--cluster", self.file, "--host-id", i, "--data", self.dir / f"h{i}", "--shards", 2,
                "--replicas", self.replicas, "--quorum", self.quorum, "--peer-heartbeat-ms", 50,
                "--peer-dead-ms", 600, "--commit-timeout-ms", 2000, "--store", f"file://{self.store}"]
        for c in ALL_CLASSES:
            args += ["--class", c]
        self.servers[i] = Server(self.dir / f"w{i}", data_dir=self.dir / f"h{i}", use_flags=False,
                                 port=self.client_ports[i], extra_args=list(args) + self.extra_args,
                                 host=self.ip[i], wrap=self.netns.wrap(i) if self.netns is not None else ())

    def write_file(self, version=None, previous=None, leaving=()):
        """The cluster file: a host line for every id in self.ids; `version`,
        `previous` and `leaving` lines when given."""
        lines = [f"seed {self.seed}", f"secret {self.secret}"]
        if version is not None:
            lines.append(f"version {version}")
        if previous:
            lines.append("previous " + " ".join(map(str, previous)))
        if leaving:
            lines.append("leaving " + " ".join(map(str, leaving)))
        lines += [f"host {i} {self.ip[i]}:{self.client_ports[i]} {self.ip[i]}:{self.peer_ports[i]} "
                  f"{self.zones.get(i, '')}".rstrip() for i in self.ids]
        self.file.write_text("\n".join(lines) + "\n")

    def add_host(self, i):
        """A new host id, listed in the next write_file (not started)."""
        self.ids.append(i)
        self.client_ports[i], self.peer_ports[i] = free_port(), free_port()
        self.ip[i] = self.ip[self.ids[0]] if self.netns is None else self.netns.ip(i)
        self._server(i)
        return self.servers[i]

    def hup(self, ids=None):
        """SIGHUP: the hosts load the cluster file again."""
        for i in ids or self.ids:
            if self.servers[i].alive():
                self.servers[i].proc.send_signal(signal.SIGHUP)

    def status(self, i):
        """GET /_status of host i as {key: value} (host lines left out)."""
        text = requests.get(self.servers[i].url("/_status"), timeout=10).text
        return {k: v for k, _, v in (line.partition(" ") for line in text.splitlines()) if k != "host"}

    def start(self, ids=None, connected=True):
        """Starts hosts; with `connected`, waits until every running host has
        its peer connections to every other running host up (redials back off
        up to 2 s, and a host routes only to peers it is connected to)."""
        for i in ids or self.ids:
            self.servers[i].start()
        if connected:
            self.wait_connected([i for i, s in self.servers.items() if s.alive()])
        return self

    def wait_connected(self, ids, timeout=15):
        """Until each host in ids has its peer connections up to the others."""
        deadline = time.monotonic() + timeout
        for i in ids:
            while self.servers[i].metrics().get("dobj_peer_connected", 0) < len(ids) - 1:
                assert time.monotonic() < deadline, f"host {i} did not connect to its {len(ids) - 1} peers"
                time.sleep(0.02)

    def stop(self):
        for s in self.servers.values():
            s._force_stop()

    def __getitem__(self, i):
        return self.servers[i]

    def rank(self, cls, name):
        oid = object_id(cls, name)
        w = {i: xxhash.xxh3_64_intdigest(oid + struct.pack("<I", i), seed=self.seed) for i in self.members}
        return sorted(self.members, key=lambda i: (-w[i], i))

    def leader(self, cls, name):
        return self.rank(cls, name)[0]

    def replica_set(self, cls, name):
        r = self.rank(cls, name)
        pool = r[1:] if len(self.members) > self.replicas else r
        out, rnd = [], 0
        while len(out) < self.replicas and len(out) < len(pool):
            for h in pool:
                z = self.zones.get(h)
                if h not in out and len(out) < self.replicas and \
                        (z is None or sum(self.zones.get(o) == z for o in out) <= rnd):
                    out.append(h)
            rnd += 1
        return sorted(out, key=r.index)

    def candidates(self, cls, name):
        """Who may lead, in order of succession: rank 0, then the replicas."""
        lead = self.rank(cls, name)[0]
        return [lead] + [h for h in self.replica_set(cls, name) if h != lead]


class Netns:
    """n network namespaces, each with a veth to one bridge in the test's own
    namespace: namespace i has 10.<net>.0.i, the bridge 10.<net>.0.254 (the
    test's address on that network). cut(i) drops, inside namespace i, all
    traffic with the other hosts (not with the test); heal(i) undoes it."""

    def __init__(self, n, tag):
        self.n, self.tag = n, tag
        self.net = 100 + tag % 100
        self.bridge = f"dobjbr{tag}"
        self.created = []
        self._run("ip", "link", "add", self.bridge, "type", "bridge")
        self._run("ip", "addr", "add", f"10.{self.net}.0.254/24", "dev", self.bridge)
        self._run("ip", "link", "set", self.bridge, "up")
        for i in range(1, n + 1):
            ns, outer = self.name(i), f"dobjv{tag}h{i}"
            self._run("ip", "netns", "add", ns)
            self.created.append(ns)
            self._run("ip", "link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self._run("ip", "link", "set", outer, "master", self.bridge, "up")
            self._in(i, "ip", "addr", "add", f"{self.ip(i)}/24", "dev", "eth0")
            self._in(i, "ip", "link", "set", "eth0", "up")
            self._in(i, "ip", "link", "set", "lo", "up")

    def name(self, i):
        return f"dobjns{self.tag}h{i}"

    def ip(self, i):
        return f"10.{self.net}.0.{i}"

    def wrap(self, i):
        return ["ip", "netns", "exec", self.name(i)]

    def _run(self, *cmd, inp=None):
        r = subprocess.run(cmd, input=inp, capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, f"{' '.join(cmd)}: {r.stderr}"

    def _in(self, i, *cmd, inp=None):
        self._run(*self.wrap(i), *cmd, inp=inp)

    def cut(self, i):
        me, net, test = self.ip(i), f"10.{self.net}.0.0/24", f"10.{self.net}.0.254"
        self._in(i, "nft", "-f", "-", inp=f"""table inet cut {{
            chain in {{
                type filter hook input priority 0; policy accept;
                ip saddr {net} ip saddr != {test} ip saddr != {me} drop
            }}
            chain out {{
                type filter hook output priority 0; policy accept;
                ip daddr {net} ip daddr != {test} ip daddr != {me} drop
            }}
        }}""")

    def heal(self, i):
        self._in(i, "nft", "delete", "table", "inet", "cut")

    def destroy(self):
        for ns in self.created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=20)
