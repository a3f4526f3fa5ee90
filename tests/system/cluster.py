"""A cluster of real `dobj serve` processes on loopback, for the cluster tests.

Placement is computed here independently of the C code (router/cluster.c):
the object id is the first 16 bytes of SHA-256("class/name"); a host's weight
is XXH3-64(id || host id as 4 little-endian bytes, seed); ranks go by
descending weight. Rank 0 leads; ranks 1..replicas are the replica set.
"""
import hashlib
import struct
from pathlib import Path

import xxhash

from dobjtest import ALL_CLASSES, Server, free_port

SECRET = "cluster-test-secret"


def object_id(cls, name):
    return hashlib.sha256(f"{cls}/{name}".encode()).digest()[:16]


class Cluster:
    def __init__(self, tmp_path, n=6, replicas=5, quorum=3, seed=0, extra_args=(), secret=SECRET, own_ips=False):
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
        lines = [f"seed {seed}", f"secret {secret}"] + [
            f"host {i} {self.ip[i]}:{self.client_ports[i]} {self.ip[i]}:{self.peer_ports[i]}" for i in self.ids]
        self.file.write_text("\n".join(lines) + "\n")
        self.servers = {}
        for i in self.ids:
            args = ["--cluster", self.file, "--host-id", i, "--data", self.dir / f"h{i}", "--shards", 2,
                    "--replicas", replicas, "--quorum", quorum, "--peer-heartbeat-ms", 50,
                    "--peer-dead-ms", 600, "--commit-timeout-ms", 2000, "--store", f"file://{self.store}"]
            for c in ALL_CLASSES:
                args += ["--class", c]
            self.servers[i] = Server(self.dir / f"w{i}", data_dir=self.dir / f"h{i}", use_flags=False,
                                     port=self.client_ports[i], extra_args=list(args) + list(extra_args),
                                     host=self.ip[i])

    def start(self, ids=None):
        for i in ids or self.ids:
            self.servers[i].start()
        return self

    def stop(self):
        for s in self.servers.values():
            s._force_stop()

    def __getitem__(self, i):
        return self.servers[i]

    def rank(self, cls, name):
        oid = object_id(cls, name)
        w = {i: xxhash.xxh3_64_intdigest(oid + struct.pack("<I", i), seed=self.seed) for i in self.ids}
        return sorted(self.ids, key=lambda i: (-w[i], i))

    def leader(self, cls, name):
        return self.rank(cls, name)[0]

    def replica_set(self, cls, name):
        r = self.rank(cls, name)
        return r[1:1 + self.replicas] if self.n > self.replicas else r[:self.replicas]
