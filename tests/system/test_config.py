"""Start-up configuration: errors name the option (and file:line for config
files), and a config file can replace the command-line flags."""

import subprocess

import pytest

from dobjtest import (COUNTER_SO, DOBJ, PROBE_SO, REPO, free_port, require_build,
                      send_oversized)

RUN_TIMEOUT = 10


def run_dobj(args, timeout=RUN_TIMEOUT):
    """Runs build/dobj expecting it to exit on its own; returns (status, stderr)."""
    require_build()
    try:
        r = subprocess.run([str(DOBJ)] + [str(a) for a in args], cwd=str(REPO),
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"dobj {' '.join(map(str, args))} was still running after {timeout}s "
                    f"instead of refusing its configuration", pytrace=False)
    return r.returncode, r.stderr.decode("utf-8", "replace")


def valid_flags(tmp_path):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    return ["--listen", f"127.0.0.1:{free_port()}", "--data", data, "--shards", "1",
            "--class", COUNTER_SO]


def write_config(tmp_path, lines, name="dobj.conf"):
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines))
    return path


BAD_CONFIG_LINES = {
    "unknown-key": ("bogus_option = 1", ["bogus_option"]),
    "shards-not-a-number": ("shards = abc", ["shards"]),
    "shards-zero": ("shards = 0", ["shards"]),
    "max-body-not-a-number": ("max_body = lots", ["max_body"]),
    "idle-timeout-negative": ("idle_timeout_ms = -5", ["idle_timeout_ms"]),
    "max-open-fraction": ("max_open = 1.5", ["max_open"]),
    "listen-without-port": ("listen = nowhere", ["listen"]),
    "no-equals-sign": ("this line has no equals sign", []),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIG_LINES))
def test_config_file_error_names_option_and_line(tmp_path, case):
    bad, needles = BAD_CONFIG_LINES[case]
    data = tmp_path / "data"
    data.mkdir()
    lines = [
        "# dobj test configuration",
        "",
        f"data = {data}",
        f"class = {COUNTER_SO}",
        "   # an indented comment",
        bad,
        f"class = {PROBE_SO}",
    ]
    if not bad.startswith("listen"):
        lines.insert(2, f"listen = 127.0.0.1:{free_port()}")
    lineno = lines.index(bad) + 1
    path = write_config(tmp_path, lines, name="bad.conf")
    rc, err = run_dobj(["serve", "--config", path])
    assert rc != 0, f"exit status 0 for a config with {bad!r}"
    for n in needles:
        assert n in err, f"stderr does not name {n!r}:\n{err}"
    assert f"bad.conf:{lineno}" in err, f"stderr does not name bad.conf:{lineno}:\n{err}"


def test_config_example_from_the_spec(tmp_path):
    """The documented example: `bogus_option = 1` on line 3."""
    path = write_config(tmp_path, ["# line 1", f"listen = 127.0.0.1:{free_port()}",
                                   "bogus_option = 1", f"class = {COUNTER_SO}"])
    rc, err = run_dobj(["serve", "--config", path])
    assert rc != 0
    assert "bogus_option" in err and ":3" in err, err


def test_missing_config_file(tmp_path):
    rc, err = run_dobj(["serve", "--config", tmp_path / "does-not-exist.conf"])
    assert rc != 0
    assert "does-not-exist.conf" in err, err


def test_unknown_flag(tmp_path):
    rc, err = run_dobj(["serve"] + valid_flags(tmp_path) + ["--bogus-flag", "1"])
    assert rc != 0
    assert "bogus-flag" in err or "bogus_flag" in err, err


def test_flag_missing_its_value(tmp_path):
    rc, err = run_dobj(["serve"] + valid_flags(tmp_path) + ["--max-open"])
    assert rc != 0
    assert "max-open" in err or "max_open" in err, err


@pytest.mark.parametrize("flag,value", [
    ("--shards", "abc"),
    ("--shards", "0"),
    ("--max-body", "-1"),
    ("--idle-timeout-ms", "soon"),
    ("--max-open", "many"),
    ("--listen", "nowhere"),
])
def test_bad_flag_value(tmp_path, flag, value):
    rc, err = run_dobj(["serve"] + valid_flags(tmp_path) + [flag, value])
    assert rc != 0, f"{flag} {value} accepted"
    names = {flag.lstrip("-"), flag.lstrip("-").replace("-", "_")}
    assert any(n in err for n in names), f"stderr does not name {flag}:\n{err}"


def test_missing_class_file(tmp_path):
    missing = tmp_path / "no-such-class.so"
    rc, err = run_dobj(["serve"] + valid_flags(tmp_path) + ["--class", missing])
    assert rc != 0
    assert "no-such-class.so" in err, err


def test_not_a_class_file(tmp_path):
    junk = tmp_path / "junk.so"
    junk.write_bytes(b"this is not a shared library\n")
    rc, err = run_dobj(["serve"] + valid_flags(tmp_path) + ["--class", junk])
    assert rc != 0
    assert "junk.so" in err, err


def test_unknown_command():
    rc, err = run_dobj(["no-such-command"])
    assert rc != 0
    assert err.strip(), "no message for an unknown command"


def test_config_file_sets_listen_and_classes(tmp_path, server_factory):
    port = free_port()
    data = tmp_path / "cfgdata"
    data.mkdir()
    path = write_config(tmp_path, [
        "# everything from the file",
        f"listen = 127.0.0.1:{port}",
        f"data = {data}",
        "",
        "shards = 2",
        f"class = {COUNTER_SO}",
        f"class = {PROBE_SO}",
        "max_body = 100",
        "idle_timeout_ms = 5000",
        "max_open = 64",
    ], name="good.conf")
    srv = server_factory(name="cfg", port=port, use_flags=False, data_dir=data,
                         extra_args=["--config", path])
    r = srv.post("/counter/from-config?by=4")
    assert r.status_code == 200 and r.json() == {"name": "from-config", "value": 4}
    assert srv.put("/probe/from-config/kv/k", data=b"v" * 100).status_code == 200
    r = srv.put("/probe/from-config/kv/k", data=b"v" * 101)
    assert r.status_code == 413, "max_body from the config file not applied"
    assert send_oversized(srv.port, "/counter/from-config", 1 << 20) == 413
    # chat.so was not listed, so the class is unknown.
    r = srv.get("/chat/room/messages")
    assert r.status_code == 404
    assert "chat" in r.json()["error"]
    # The objects landed in the configured data directory.
    assert list((data / "objects").glob("*/*.db")), "no object file under the configured data dir"
