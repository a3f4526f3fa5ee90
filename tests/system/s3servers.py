"""Two real S3-compatible servers on 127.0.0.1 for the system tests.

    from s3servers import S3rver, Swift

    s = Swift(tmp_path / "swift").start()      # or S3rver(...)
    try:
        c = s.boto3_client()
        c.put_object(Bucket=s.bucket, Key="k", Body=b"v")
        s.pause(); ...; s.resume()               # the store "goes away" and comes back
        s.stop(); s.start()                      # same port, same state
    finally:
        s.stop()

Both classes have the same interface:

  start(timeout=START_TIMEOUT) -> self   starts on a free loopback port (the same
                                          port again after a stop()), waits until
                                          it answers, creates the bucket
  stop(timeout=STOP_TIMEOUT)             SIGTERM, SIGKILL after timeout, every
                                          process of the server; idempotent
  pause() / resume()                     SIGSTOP / SIGCONT of every process: TCP
                                          connections are still accepted by the
                                          kernel but nothing answers until resume()
  running                                True between start() and stop()
  pids()                                 the server's live process ids
  endpoint, host, port, region, access_key, secret_key, bucket, path_style
  boto3_client(access_key=None, secret_key=None, **config)
                                         a boto3 S3 client: path style, SigV4
  log_tail(n=60)                         the end of the server's output
  workdir                                all the server's state, config and logs

S3rver is the npm package `s3rver`, installed by `make deps` into tests/.node (or
S3RVER_JS=/path/to/s3rver.js). It does not verify SigV4 signatures, only that the
access key exists.

Swift is OpenStack Swift (Debian's swift-proxy/-account/-container/-object) with
the s3api and tempauth middlewares: one proxy and one account, container and
object server, each a single process (workers = 0), a one-device ring with one
replica, devices as directories under workdir. It verifies SigV4 signatures.
Its access key is tempauth's "account:user", so it contains a colon: with libcurl
set CURLOPT_USERNAME and CURLOPT_PASSWORD separately (CURLOPT_USERPWD and curl's
--user split at the first colon); with the curl tool put the credentials in the
URL as dobj%3Atester:SECRET@.

Every child is started in its own session with PR_SET_PDEATHSIG=SIGKILL, so
nothing outlives the test process even when that is killed.
"""

import ctypes
import errno
import http.client
import json
import os
import pwd
import re
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

# Loopback traffic must never go through a proxy, whatever the environment says
# (boto3 and requests read these).
for _var in ("NO_PROXY", "no_proxy"):
    _cur = os.environ.get(_var, "")
    if "127.0.0.1" not in _cur:
        os.environ[_var] = ",".join(x for x in (_cur, "127.0.0.1", "localhost") if x)

REPO = Path(__file__).resolve().parents[2]
NODE_DIR = REPO / "tests" / ".node"
S3RVER_JS = Path(os.environ.get("S3RVER_JS",
                                str(NODE_DIR / "node_modules" / "s3rver" / "bin" / "s3rver.js")))
NODE = os.environ.get("NODE", "node")
SYS_PYTHON = "/usr/bin/python3"  # Debian's, where python3-swift lives

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
BUCKET = "dobj-test"


class ServerError(RuntimeError):
    """A server did not start; the message has its output."""


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def xattrs_work(directory):
    """True when the filesystem under directory takes user.* extended attributes
    (the Swift object server stores its metadata in them)."""
    path = Path(directory) / f".xattr-probe-{os.getpid()}"
    try:
        path.write_bytes(b"")
        os.setxattr(path, "user.dobj.probe", b"1")
        return os.getxattr(path, "user.dobj.probe") == b"1"
    except OSError:
        return False
    finally:
        try:
            path.unlink()
        except OSError:
            pass


_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _child_setup():
    # Runs in the child between fork and exec: die with the test process.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _proc_table():
    """{pid: (ppid, pgid, state)} of every process, from /proc."""
    table = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name is in parentheses and may contain anything
        fields = stat[stat.rfind(b")") + 2:].split()
        table[int(d)] = (int(fields[1]), int(fields[2]), fields[0])
    return table


def _http_status(port, path, timeout=2.0):
    """The status of GET path on 127.0.0.1:port, None when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


class _Proc:
    """One child process with its log file."""

    def __init__(self, name, argv, log_path, env=None, cwd=None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        log = open(log_path, "ab")
        try:
            self.popen = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, cwd=cwd, start_new_session=True, preexec_fn=_child_setup)
        finally:
            log.close()

    def exited(self):
        return self.popen.poll() is not None

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class _Server:
    """What S3rver and Swift share: processes, waiting, signals, boto3."""

    kind = "?"
    region = "us-east-1"
    bucket = BUCKET
    path_style = True
    access_key = secret_key = None

    def __init__(self, workdir, port=None):
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.procs = []
        self._prev_procs = []  # for log_tail() after a failed start
        self.paused = False
        self.starts = 0
        self.start_seconds = None  # how long the last start() took

    # -- attributes -------------------------------------------------------

    host = "127.0.0.1"

    @property
    def endpoint(self):
        return f"http://{self.host}:{self.port}"

    @property
    def running(self):
        return bool(self.procs)

    def __repr__(self):
        return f"<{type(self).__name__} {self.endpoint if self.port else '(no port)'} {self.workdir}>"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- lifecycle --------------------------------------------------------

    def start(self, timeout=START_TIMEOUT):
        if self.procs:
            raise ServerError(f"{self!r} is already running")
        t0 = time.monotonic()
        self.starts += 1
        (self.workdir / "logs").mkdir(exist_ok=True)
        try:
            self._start(time.monotonic() + timeout)
            self._create_bucket()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM to every process of the server (their process groups and
        descendants), SIGKILL to what is left after timeout seconds."""
        if not self.procs:
            return
        pids = self.pids()
        self._signal(pids, signal.SIGTERM)
        self._signal(pids, signal.SIGCONT)  # a stopped process acts on SIGTERM only now
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._alive(pids):  # an exited child stays a zombie until wait()
                break
            time.sleep(0.02)
        else:
            self._signal(self.pids() | pids, signal.SIGKILL)
        for p in self.procs:
            try:
                p.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.procs = []
        self.paused = False

    def pause(self):
        """SIGSTOP to every process: requests hang (the kernel still accepts
        connections) until resume(); nothing is lost."""
        self._require_running()
        self._signal(self.pids(), signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self._require_running()
        self._signal(self.pids(), signal.SIGCONT)
        self.paused = False

    def pids(self):
        """The live processes of the server: the ones it started that have not
        exited, their process groups (each was started in its own session) and
        all their descendants."""
        # (not reaped yet: their pids can not have been reused)
        roots = {p.popen.pid for p in self.procs if p.popen.returncode is None}
        if not roots:
            return set()
        table = _proc_table()
        found = {pid for pid, (_, pgid, _) in table.items() if pgid in roots} | roots
        todo = list(found)
        while todo:
            pid = todo.pop()
            for kid, (ppid, _, _) in table.items():
                if ppid == pid and kid not in found:
                    found.add(kid)
                    todo.append(kid)
        return {pid for pid in found if pid in table and table[pid][2] != b"Z"}

    def log_tail(self, n=60):
        out = []
        for p in self.procs or self._prev_procs:
            lines = p.log_text().splitlines()[-n:]
            out.append(f"--- {p.name} ({p.log_path}) ---\n" + "\n".join(lines))
        return "\n".join(out)

    # -- clients ------------------------------------------------------------

    def boto3_client(self, access_key=None, secret_key=None, **config):
        """A boto3 S3 client for this server: path-style addressing, SigV4, no
        retries; other credentials if given; config overrides botocore Config
        arguments."""
        import boto3
        from botocore.config import Config
        kw = dict(signature_version="s3v4", s3={"addressing_style": "path"},
                  retries={"max_attempts": 1, "mode": "standard"},
                  connect_timeout=5, read_timeout=30)
        kw.update(config)
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name=self.region,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            config=Config(**kw))

    # -- internals ------------------------------------------------------------

    def _require_running(self):
        if not self.procs:
            raise ServerError(f"{self!r} is not running")

    def _spawn(self, name, argv, **kw):
        log_path = self.workdir / "logs" / f"{name}-{self.starts}.log"
        p = _Proc(name, argv, log_path, **kw)
        self.procs.append(p)
        self._prev_procs = list(self.procs)
        return p

    def _check_alive(self):
        for p in self.procs:
            if p.exited():
                raise _Exited(p)

    def _wait(self, what, deadline, ready):
        while True:
            self._check_alive()
            if ready():
                return
            if time.monotonic() > deadline:
                raise ServerError(f"{self.kind}: {what} did not answer in time\n{self.log_tail()}")
            time.sleep(0.05)

    def _create_bucket(self):
        from botocore.exceptions import ClientError
        c = self.boto3_client()
        try:
            c.create_bucket(Bucket=self.bucket)
        except ClientError as e:
            if e.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise ServerError(f"{self.kind}: creating bucket {self.bucket}: {e}\n{self.log_tail()}")

    @staticmethod
    def _pid_alive(pid):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            return False
        return stat[stat.rfind(b")") + 2:][:1] != b"Z"  # a zombie is gone

    def _alive(self, pids):
        return any(self._pid_alive(p) for p in pids)

    @staticmethod
    def _signal(pids, sig):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError as e:
                if e.errno != errno.ESRCH:
                    raise


class _Exited(ServerError):
    def __init__(self, proc):
        super().__init__(f"{proc.name} exited with status {proc.popen.returncode}")
        self.proc = proc


def _in_use(text):
    return bool(re.search(r"address already in use|EADDRINUSE|could not bind", text, re.I))


# ---- s3rver -------------------------------------------------------------------


class S3rver(_Server):
    """s3rver (npm) under node --openssl-legacy-provider; state in workdir/data."""

    kind = "s3rver"
    access_key = "S3RVER"  # s3rver's built-in account; it checks only the key id
    secret_key = "S3RVER"

    def _start(self, deadline):
        if not S3RVER_JS.is_file():
            raise ServerError(f"s3rver is not installed ({S3RVER_JS} missing): run `make deps`")
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        fixed = self.port is not None
        for attempt in range(5):
            # Port 0 lets the kernel choose on the first start: no race for it.
            port = self.port or 0
            p = self._spawn("s3rver", [NODE, "--openssl-legacy-provider", S3RVER_JS,
                                       "-d", data, "-a", "127.0.0.1", "-p", port,
                                       "--no-vhost-buckets"], cwd=str(self.workdir))
            try:
                while True:
                    self._check_alive()
                    m = re.search(r"listening on 127\.0\.0\.1:(\d+)", p.log_text())
                    if m:
                        self.port = int(m.group(1))
                        break
                    if time.monotonic() > deadline:
                        raise ServerError(f"s3rver did not start in time\n{self.log_tail()}")
                    time.sleep(0.02)
                self._wait("s3rver", deadline, lambda: _http_status(self.port, "/") is not None)
                return
            except _Exited as e:
                self.procs = []
                if fixed and _in_use(e.proc.log_text()) and attempt < 4 and time.monotonic() < deadline:
                    time.sleep(0.5)  # the old socket may linger a moment
                    continue
                raise ServerError(f"s3rver: {e}\n{self.log_tail()}") from None


# ---- OpenStack Swift with s3api -------------------------------------------------

# Runs each Swift server: swift.conf, the rings and the logs are under the
# server's own etc dir (never /etc/swift, never syslog), and the proxy builds the
# rings from ports.json first. Also the "cache" filter: an in-process dict in
# place of memcached (tempauth needs a cache; every server is one process).
_SWIFT_LAUNCHER = r'''
import json, logging, os, sys, time


class _DictCache(object):
    """The part of swift.common.memcached.MemcacheRing that Swift uses."""

    def __init__(self):
        self.data = {}

    def _live(self, key):
        v = self.data.get(key)
        if v is not None and v[1] and v[1] < time.time():
            del self.data[key]
            return None
        return v

    def get(self, key, raise_on_error=False):
        v = self._live(key)
        return None if v is None else v[0]

    def set(self, key, value, serialize=True, time=0, min_compress_len=0,
            raise_on_error=False):
        if serialize:
            value = json.loads(json.dumps(value))
        self.data[key] = (value, _expiry(time))
        return True

    def delete(self, key, server_key=None):
        self.data.pop(key, None)

    def incr(self, key, delta=1, time=0):
        v = self._live(key)
        n = int(v[0]) + delta if v else delta
        n = max(n, 0)
        self.data[key] = (n, v[1] if v else _expiry(time))
        return n

    def decr(self, key, delta=1, time=0):
        return self.incr(key, -delta, time)

    def get_multi(self, keys, server_key):
        return [self.get(k) for k in keys]

    def set_multi(self, mapping, server_key, serialize=True, time=0,
                  min_compress_len=0):
        for k, v in mapping.items():
            self.set(k, v, serialize, time)


def _expiry(t):
    import time as _t
    if not t:
        return 0
    return t if t > 30 * 24 * 3600 else _t.time() + t


def cache_filter_factory(global_conf, **local_conf):
    cache = _DictCache()

    def factory(app):
        def cache_middleware(env, start_response):
            env['swift.cache'] = cache
            return app(env, start_response)
        return cache_middleware
    return factory


def build_rings(etc):
    from swift.common.ring import RingBuilder
    with open(os.path.join(etc, 'ports.json')) as f:
        ports = json.load(f)
    for kind in ('account', 'container', 'object'):
        b = RingBuilder(6, 1, 1)
        b.add_dev({'id': 0, 'region': 1, 'zone': 1, 'ip': '127.0.0.1',
                   'port': ports[kind], 'replication_ip': '127.0.0.1',
                   'replication_port': ports[kind], 'device': 'd1',
                   'weight': 100.0, 'meta': ''})
        b.rebalance()
        tmp = os.path.join(etc, kind + '.ring.gz.tmp')
        b.get_ring().save(tmp)
        os.rename(tmp, os.path.join(etc, kind + '.ring.gz'))


def main():
    section, conf = sys.argv[1], os.path.abspath(sys.argv[2])
    etc = os.path.dirname(conf)
    from swift.common import utils

    class NoSyslog(logging.NullHandler):
        def __init__(self, *args, **kwargs):
            logging.NullHandler.__init__(self)

    # No syslog: every logger logs to stderr (verbose=True below), and that
    # is the one stdio fd that Swift does not point at /dev/null once ready.
    utils.ThreadSafeSysLogHandler = NoSyslog
    utils.set_swift_dir(etc)  # swift.conf from etc, not /etc/swift
    from swift.common import constraints, storage_policy
    storage_policy.reload_storage_policies()
    constraints.reload_constraints()
    if section == 'proxy-server':
        build_rings(etc)
    from swift.common.wsgi import run_wsgi
    kwargs = {'verbose': True}
    if section == 'object-server':
        from swift.obj import server
        kwargs['global_conf_callback'] = server.global_conf_callback
    sys.exit(run_wsgi(conf, section, **kwargs))


if __name__ == '__main__':
    main()
'''

_SWIFT_COMMON = """[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
bind_timeout = 1
workers = 0
user = {user}
swift_dir = {etc}
log_name = {name}
log_level = INFO
eventlet_debug = false
"""

_SWIFT_BACKEND = _SWIFT_COMMON + """devices = {srv}
mount_check = false
disable_fallocate = true
fallocate_reserve = 0
recon_cache_path = {cache}

[pipeline:main]
pipeline = healthcheck {name}

[filter:healthcheck]
use = egg:swift#healthcheck

[app:{name}]
use = egg:swift#{kind}
"""

_SWIFT_PROXY = _SWIFT_COMMON + """
[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo versioned_writes proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = true
node_timeout = 10
conn_timeout = 1
recheck_account_existence = 0
recheck_container_existence = 0

[filter:s3api]
use = egg:swift#s3api
location = {region}
storage_domain =
dns_compliant_bucket_names = true
s3_acl = false
max_bucket_listing = 1000
allowable_clock_skew = 900

[filter:tempauth]
use = egg:swift#tempauth
reseller_prefix = AUTH
user_{account}_{user_name} = {secret} .admin

[filter:cache]
paste.filter_factory = swiftlaunch:cache_filter_factory

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:copy]
use = egg:swift#copy

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo

[filter:versioned_writes]
use = egg:swift#versioned_writes
"""


class Swift(_Server):
    """OpenStack Swift 2.30 (Debian 12) with s3api + tempauth: a proxy and an
    account, container and object server, config, rings and devices in workdir."""

    kind = "swift"
    account = "dobj"
    user_name = "tester"
    access_key = f"{account}:{user_name}"  # tempauth's "account:user"
    secret_key = "dobj-swift-secret"
    BACKENDS = ("account", "container", "object")

    def __init__(self, workdir, port=None):
        super().__init__(workdir, port)
        self.backend_ports = {}

    def _write_config(self):
        etc, srv, cache = self.workdir / "etc", self.workdir / "srv", self.workdir / "cache"
        for d in (etc, srv / "d1", cache):
            d.mkdir(parents=True, exist_ok=True)
        conf = etc / "swift.conf"
        if not conf.exists():  # the hash must stay the same across restarts
            conf.write_text(
                "[swift-hash]\n"
                f"swift_hash_path_prefix = {secrets.token_hex(8)}\n"
                f"swift_hash_path_suffix = {secrets.token_hex(8)}\n\n"
                "[storage-policy:0]\nname = Policy-0\ndefault = yes\n\n"
                "[swift-constraints]\n")
        (etc / "swiftlaunch.py").write_text(_SWIFT_LAUNCHER)
        (etc / "ports.json").write_text(json.dumps(self.backend_ports))
        common = dict(user=pwd.getpwuid(os.getuid()).pw_name, etc=etc, srv=srv, cache=cache)
        for kind in self.BACKENDS:
            (etc / f"{kind}-server.conf").write_text(_SWIFT_BACKEND.format(
                port=self.backend_ports[kind], name=f"{kind}-server", kind=kind, **common))
        (etc / "proxy-server.conf").write_text(_SWIFT_PROXY.format(
            port=self.port, name="proxy-server", region=self.region, account=self.account,
            user_name=self.user_name, secret=self.secret_key, **common))

    def _start(self, deadline):
        if not Path("/usr/bin/swift-proxy-server").exists():
            raise ServerError("OpenStack Swift is not installed: run `make deps` "
                              "(swift-proxy swift-account swift-container swift-object)")
        if not xattrs_work(self.workdir):
            raise ServerError(f"{self.workdir}: the filesystem does not take user xattrs, "
                              "which the Swift object server needs")
        fixed = self.port is not None
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        etc = self.workdir / "etc"
        for attempt in range(5):
            if not fixed:
                self.port = free_port()
            for kind in self.BACKENDS:
                if kind not in self.backend_ports or attempt:
                    self.backend_ports[kind] = free_port()
            self._write_config()
            try:
                for kind in self.BACKENDS + ("proxy",):
                    self._spawn(f"{kind}-server",
                                [SYS_PYTHON, etc / "swiftlaunch.py", f"{kind}-server",
                                 etc / f"{kind}-server.conf"], env=env, cwd=str(etc))
                ports = [self.backend_ports[k] for k in self.BACKENDS] + [self.port]
                self._wait("swift servers", deadline,
                           lambda: all(_http_status(p, "/healthcheck") == 200 for p in ports))
                return
            except _Exited as e:
                text = e.proc.log_text()
                self.stop()
                if _in_use(text) and attempt < 4 and time.monotonic() < deadline:
                    if fixed and e.proc.name == "proxy-server":
                        time.sleep(0.5)
                    continue  # lost a race for a port: new backend ports
                raise ServerError(f"swift: {e}\n{text[-4000:]}") from None


SERVERS = {"s3rver": S3rver, "swift": Swift}
