"""Error responses: status, a JSON {"error": ...} naming what was wrong, and no
write reaching the object."""

import json

import pytest

from dobjtest import send_oversized

MAX_BODY = 4096


@pytest.fixture
def srv(server_factory):
    return server_factory(name="errors", shards=2, extra_args=["--max-body", str(MAX_BODY)])


def error_of(resp, status, *needles):
    """Checks a JSON error response and returns its message."""
    body = resp.body.decode("utf-8", "replace")
    assert resp.status == status, f"expected {status}, got {resp.status}: {body[:300]}"
    ctype = resp.headers.get("content-type", "")
    assert ctype.startswith("application/json"), f"error content-type {ctype!r}: {body[:300]}"
    j = json.loads(body)
    assert isinstance(j, dict) and isinstance(j.get("error"), str), f"not an error object: {j!r}"
    msg = j["error"]
    assert msg.strip(), "empty error message"
    for n in needles:
        assert n.lower() in msg.lower(), f"error message {msg!r} does not mention {n!r}"
    return msg


def counter_value(srv, name):
    r = srv.raw("GET", f"/counter/{name}")
    assert r.status == 200, r
    return r.json()["value"]


def set_counter(srv, name, value):
    r = srv.raw("POST", f"/counter/{name}?by={value}")
    assert r.status == 200, r
    assert r.json()["value"] == value


# -- unknown class ------------------------------------------------------------

@pytest.mark.parametrize("method", ["GET", "POST"])
def test_unknown_class(srv, method):
    r = srv.raw(method, "/nosuchclass/x", body=b"1" if method == "POST" else b"")
    error_of(r, 404, "nosuchclass")


# -- invalid names ------------------------------------------------------------

INVALID_NAMES = {
    "empty": "/counter/",
    "empty-with-rest": "/counter//x",
    "513-bytes": "/counter/" + "a" * 513,
    "513-bytes-encoded": "/counter/" + "%41" * 513,
    "513-bytes-multibyte": "/counter/" + "%C3%A9" * 256 + "a",
    "ff": "/counter/%FF",
    "ff-inside": "/counter/abc%FFdef",
    "truncated-sequence": "/counter/ab%C3",
    "overlong": "/counter/%C0%AF",
    "surrogate": "/counter/%ED%A0%80",
    "nul": "/counter/a%00b",
    "only-nul": "/counter/%00",
}


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("case", sorted(INVALID_NAMES))
def test_invalid_name(srv, case, method):
    r = srv.raw(method, INVALID_NAMES[case], body=b"1" if method == "POST" else b"")
    error_of(r, 400, "name")


@pytest.mark.parametrize("path,expected", [
    ("/probe/" + "a" * 512 + "/echo", "a" * 512),
    ("/probe/" + "%41" * 512 + "/echo", "A" * 512),
    ("/probe/" + "%C3%A9" * 256 + "/echo", "\u00e9" * 256),
    ("/probe/%F0%9F%98%80/echo", "\U0001F600"),
])
def test_longest_and_multibyte_names_accepted(srv, path, expected):
    r = srv.raw("GET", path)
    assert r.status == 200, r
    j = r.json()
    assert j["name"] == expected
    assert j["name_len"] == len(expected.encode("utf-8"))


# -- body limit ---------------------------------------------------------------

def test_body_at_limit_accepted_one_byte_over_refused(srv):
    at_limit = b"v" * MAX_BODY
    r = srv.raw("PUT", "/probe/bodies/kv/k", body=at_limit)
    assert r.status == 200, r
    r = srv.raw("PUT", "/probe/bodies/kv/k", body=b"w" * (MAX_BODY + 1))
    error_of(r, 413, "body")
    r = srv.raw("GET", "/probe/bodies/kv/k")
    assert r.status == 200 and r.json() == {"v": at_limit.decode()}, "the refused body was written"


def test_counter_body_over_limit_writes_nothing(srv):
    set_counter(srv, "big-body", 5)
    r = srv.raw("POST", "/counter/big-body", body=b"0" * MAX_BODY + b"1")
    error_of(r, 413)
    assert counter_value(srv, "big-body") == 5


def test_body_far_over_limit(srv):
    set_counter(srv, "huge-body", 3)
    status = send_oversized(srv.port, "/counter/huge-body", 8 * 1024 * 1024)
    assert status == 413
    assert counter_value(srv, "huge-body") == 3
    assert srv.alive()


# -- methods ------------------------------------------------------------------

@pytest.mark.parametrize("method", ["DELETE", "PUT", "PATCH"])
def test_method_not_allowed(srv, method):
    set_counter(srv, "methods", 7)
    r = srv.raw(method, "/counter/methods", body=b"5")
    error_of(r, 405, method)
    allow = r.headers.get("allow")
    assert allow, "405 without an Allow header"
    allowed = {m.strip().upper() for m in allow.split(",")}
    assert {"GET", "POST"} <= allowed, f"Allow: {allow}"
    assert method not in allowed, f"Allow: {allow}"
    assert counter_value(srv, "methods") == 7


# -- handler failures ---------------------------------------------------------

def test_handler_failure_is_500_with_its_message(srv):
    assert srv.raw("PUT", "/probe/failing/kv/warm", body=b"up").status == 200
    r = srv.raw("POST", "/probe/failing/fail?k=written&v=1")
    msg = error_of(r, 500)
    assert msg == "probe failure requested"
    assert srv.raw("GET", "/probe/failing/kv/written").status == 404, "a failed event's write stayed"


@pytest.mark.parametrize("how", ["query-word", "query-fraction", "query-suffix", "body-word",
                                 "body-fraction", "body-suffix"])
def test_counter_invalid_amount(srv, how):
    set_counter(srv, "amounts", 11)
    where, bad = how.split("-")
    value = {"word": "abc", "fraction": "1.5", "suffix": "12x"}[bad]
    if where == "query":
        r = srv.raw("POST", f"/counter/amounts?by={value}")
    else:
        r = srv.raw("POST", "/counter/amounts", body=value.encode())
    error_of(r, 400)
    assert counter_value(srv, "amounts") == 11


def test_errors_leave_server_usable(srv):
    srv.raw("GET", "/nosuchclass/x")
    srv.raw("GET", "/counter/%FF")
    srv.raw("DELETE", "/counter/usable")
    srv.raw("POST", "/probe/usable/fail")
    r = srv.raw("POST", "/counter/usable?by=2")
    assert r.status == 200 and r.json() == {"name": "usable", "value": 2}
    assert srv.alive()
