"""Request parsing as a handler sees it, through the probe class's echo route:
name decoding, raw rest path and query, parameters, headers, body length."""

import pytest


def echo(server, method, path, body=b"", headers=None):
    r = server.raw(method, path, body=body, headers=headers)
    assert r.status == 200, r
    return r.json()


def test_echo_decodes_name_and_parses_request(server):
    j = echo(server, "GET", "/probe/h%C3%A9llo%2Fx/echo?a=1&p=x+y%21", headers={"X-Test": "hi"})
    assert j == {
        "method": "GET",
        "path": "/echo",
        "query": "a=1&p=x+y%21",
        "p": "x y!",
        "x_test": "hi",
        "body_len": 0,
        "class": "probe",
        "name": "h\u00e9llo/x",
        "name_len": len("h\u00e9llo/x".encode()),
    }


@pytest.mark.parametrize("raw,name", [
    ("plain", "plain"),
    ("a+b", "a+b"),  # '+' is only a space in query parameters
    ("%c3%a9t%C3%A9", "\u00e9t\u00e9"),  # lower- and upper-case escapes
    ("sp%20ace", "sp ace"),
    ("%25percent", "%percent"),
    ("dots.and~tilde", "dots.and~tilde"),
])
def test_name_decoding(server, raw, name):
    assert echo(server, "GET", f"/probe/{raw}/echo")["name"] == name


def test_rest_path_is_raw_and_body_counted(server):
    j = echo(server, "POST", "/probe/n/echo/a%20b/c", body=b"z" * 1000)
    assert j["method"] == "POST"
    assert j["path"] == "/echo/a%20b/c"
    assert j["body_len"] == 1000
    assert j["query"] == ""
    assert j["p"] is None
    assert j["x_test"] is None
    assert echo(server, "GET", "/probe/n/echo/")["path"] == "/echo/"


def test_first_parameter_and_header_case(server):
    j = echo(server, "GET", "/probe/n/echo?p=first&p=second", headers={"x-TEST": "Mixed"})
    assert j["p"] == "first"
    assert j["x_test"] == "Mixed"
    assert echo(server, "GET", "/probe/n/echo?p=")["p"] == ""


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_all_methods_reach_a_class_accepting_all(server, method):
    assert echo(server, method, "/probe/methods/echo", body=b"abc" if method != "GET" else b"")[
        "method"] == method


def test_objects_of_same_name_in_two_classes_are_distinct(server):
    assert server.post("/counter/shared?by=9").json()["value"] == 9
    assert echo(server, "GET", "/probe/shared/echo")["class"] == "probe"
    r = server.get("/probe/shared/kv/value")
    assert r.status_code == 404
    assert server.get("/counter/shared").json()["value"] == 9


def test_keep_alive_many_requests_one_connection(server):
    for i in range(50):
        r = server.post(f"/counter/keepalive-{i % 5}")
        assert r.status_code == 200
    for i in range(5):
        assert server.get(f"/counter/keepalive-{i}").json()["value"] == 10
