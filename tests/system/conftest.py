"""Fixtures for the dobj system tests: each starts the real build/dobj binary on
a free 127.0.0.1 port with a temporary data directory."""

import pytest

import dobjtest
from dobjtest import Server


@pytest.fixture
def server_factory(tmp_path):
    """make(**kw) starts a Server (see dobjtest.Server for the options) and
    returns it once GET /_hello answers 200. On teardown every server still
    running gets SIGTERM, then SIGKILL after 10 s; a server that exited on its
    own (a crash) fails the test."""
    dobjtest.require_build()
    servers = []

    def make(name=None, **kw):
        workdir = tmp_path / (name or f"server{len(servers)}")
        s = Server(workdir, **kw)
        servers.append(s)
        return s.start()

    yield make

    crashed = []
    for s in servers:
        if s.proc is None:
            continue
        if s.proc.poll() is not None and not s.expected_exit:
            crashed.append(f"server on port {s.port} exited on its own with status "
                           f"{s.proc.returncode}:\n{s.log_tail()}")
        s.stop()
    if crashed:
        pytest.fail("\n\n".join(crashed), pytrace=False)


@pytest.fixture
def server(server_factory):
    """A server with the counter, chat and probe classes and 2 shards."""
    return server_factory(name="server", shards=2)
