# config.capnp: workerd serving the counter Durable Object of worker.js, the
# reference point of tests/bench/run.sh. Checked with workerd 1.20261123.1
# (npm package `workerd`, which run.sh pins).
#
#   workerd serve config.capnp --experimental \
#       --socket-addr http=127.0.0.1:PORT \
#       --directory-path do-storage=/some/writable/dir
#
# `--experimental` is needed for durableObjectStorage.localDisk. The socket's
# address below is only a default; run.sh overrides it with --socket-addr and
# gives the storage directory with --directory-path (the disk service has no
# path of its own here, so the command line must give one). Each object is a
# SQLite file do-storage/<uniqueKey>/<id>.sqlite (+ -wal, -shm).
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .counterWorker),
    (name = "do-storage", disk = (writable = true)),
  ],
  sockets = [
    (name = "http", address = "127.0.0.1:8787", http = (), service = "main"),
  ],
);

const counterWorker :Workerd.Worker = (
  compatibilityDate = "2026-11-01",
  modules = [
    (name = "worker.js", esModule = embed "worker.js"),
  ],
  durableObjectNamespaces = [
    (className = "Counter", uniqueKey = "dobj-bench-counter", enableSql = true),
  ],
  durableObjectStorage = (localDisk = "do-storage"),
  bindings = [
    (name = "COUNTER", durableObjectNamespace = "Counter"),
  ],
);
