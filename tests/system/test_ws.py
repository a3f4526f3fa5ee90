"""WebSockets: the chat example, sockets across shards, sockets that outlive
their object's eviction, and the probe class's echo/count/close."""

import contextlib
import os
import time

import pytest
import websocket

from dobjtest import (q, ws_connect, ws_expect_close, ws_recv, ws_recv_json, ws_recv_until,
                      wait_until)


@contextlib.contextmanager
def sockets():
    opened = []

    def connect(server, path):
        ws = ws_connect(server, path)
        opened.append(ws)
        return ws

    try:
        yield connect
    finally:
        for ws in opened:
            with contextlib.suppress(Exception):
                ws.close(timeout=1)


def join(connect, server, room, nick):
    """Connects to a chat room; returns (socket, history messages)."""
    ws = connect(server, f"/chat/{q(room)}/?nick={q(nick)}")
    first = ws_recv_json(ws)
    assert first.get("type") == "history", f"first message is not the history: {first!r}"
    assert isinstance(first.get("messages"), list), first
    return ws, first["messages"]


def expect_type(ws, type_, **fields):
    m = ws_recv_json(ws)
    assert m.get("type") == type_, f"expected {type_} {fields}, got {m!r}"
    for k, v in fields.items():
        assert m.get(k) == v, f"expected {type_} {fields}, got {m!r}"
    return m


def same_message(a, b):
    return all(a.get(k) == b.get(k) for k in ("id", "ts", "nick", "text"))


def test_chat_page_and_empty_room(server):
    r = server.get("/chat/page-room/")
    assert r.status_code == 200
    assert r.headers.get("content-type", "").startswith("text/html")
    assert "<" in r.text
    r = server.get("/chat/page-room/messages")
    assert r.status_code == 200
    assert r.json() == []


def test_chat_two_clients(server):
    with sockets() as connect:
        alice, hist = join(connect, server, "lobby", "alice")
        assert hist == []
        bob, hist = join(connect, server, "lobby", "bob")
        assert hist == []
        expect_type(alice, "join", nick="bob")

        alice.send("hi from alice")
        m_a = expect_type(alice, "message", nick="alice", text="hi from alice")
        m_b = expect_type(bob, "message", nick="alice", text="hi from alice")
        assert same_message(m_a, m_b), (m_a, m_b)
        for k in ("id", "ts"):
            assert k in m_a, m_a

        text = 'bob says "quoted" \\ back\\slash, caf\u00e9 \U0001F600 <b>&amp;</b>\nline 2'
        bob.send(text)
        m2_b = expect_type(bob, "message", nick="bob", text=text)
        m2_a = expect_type(alice, "message", nick="bob", text=text)
        assert same_message(m2_a, m2_b)
        assert m2_a["id"] != m_a["id"]
        if isinstance(m_a["id"], int) and isinstance(m2_a["id"], int):
            assert m2_a["id"] > m_a["id"]

        bob.close()
        expect_type(alice, "leave", nick="bob")

        r = server.get("/chat/lobby/messages")
        assert r.status_code == 200
        stored = r.json()
        assert len(stored) == 2, stored
        assert same_message(stored[0], m_a) and same_message(stored[1], m2_a), stored
        for m in stored:
            assert set(m) >= {"id", "ts", "nick", "text"}, m

        # A new connection gets the earlier messages, oldest first.
        carol, hist = join(connect, server, "lobby", "carol")
        assert len(hist) == 2 and same_message(hist[0], m_a) and same_message(hist[1], m2_a), hist
        expect_type(alice, "join", nick="carol")

        # So does bob when he comes back.
        bob2, hist = join(connect, server, "lobby", "bob")
        assert [(m["nick"], m["text"]) for m in hist] == [("alice", "hi from alice"), ("bob", text)]
        expect_type(alice, "join", nick="bob")
        expect_type(carol, "join", nick="bob")

        carol.send("from carol")
        for ws in (alice, carol, bob2):
            expect_type(ws, "message", nick="carol", text="from carol")

        # Other rooms are separate.
        r = server.get("/chat/other-room/messages")
        assert r.status_code == 200 and r.json() == []


@pytest.mark.parametrize("query", ["", "?other=1"])
def test_chat_without_nick_is_refused(server, query):
    with pytest.raises(websocket.WebSocketBadStatusException) as ei:
        ws = ws_connect(server, f"/chat/lobby/{query}")
        ws.close()
    assert ei.value.status_code == 400


def test_many_rooms_on_two_shards(server_factory):
    srv = server_factory(name="rooms", shards=2)
    rooms = [f"room-{i}" for i in range(16)]
    with sockets() as connect:
        pairs = {}
        for room in rooms:
            x, _ = join(connect, srv, room, "x")
            y, _ = join(connect, srv, room, "y")
            pairs[room] = (x, y)
        for room in rooms:
            expect_type(pairs[room][0], "join", nick="y")
        # Every x speaks before anyone reads, so deliveries interleave.
        for room in rooms:
            pairs[room][0].send(f"x in {room}")
        for room in rooms:
            x, y = pairs[room]
            for ws in (x, y):
                m, skipped = ws_recv_until(ws, lambda m: m.get("type") == "message",
                                           what=f"a message in {room}")
                assert m["text"] == f"x in {room}" and m["nick"] == "x", (room, m)
                assert not skipped, (room, skipped)
        for room in rooms:
            pairs[room][1].send(f"y in {room}")
        for room in rooms:
            for ws in pairs[room]:
                expect_type(ws, "message", nick="y", text=f"y in {room}")
        for room in rooms:
            r = srv.get(f"/chat/{room}/messages")
            assert [(m["nick"], m["text"]) for m in r.json()] == [("x", f"x in {room}"),
                                                                 ("y", f"y in {room}")]


def force_eviction(srv, wait_s=0.6):
    """With --max-open 1 and a short idle timeout: open other objects, then wait
    past the idle timeout."""
    for i in range(4):
        assert srv.post(f"/counter/evictor-{i}").status_code == 200
        assert srv.put(f"/probe/evictor-{i}/kv/k", data=b"v").status_code == 200
    time.sleep(wait_s)


def activations(srv, name):
    r = srv.get(f"/probe/{name}/activations")
    assert r.status_code == 200, r.text
    return r.json()["activations"]


def test_socket_survives_eviction(server_factory):
    srv = server_factory(name="evict", shards=1,
                         extra_args=["--idle-timeout-ms", "200", "--max-open", "1"])
    with sockets() as connect:
        before = activations(srv, "evicted")
        ws = connect(srv, "/probe/evicted/ws")
        ws2 = connect(srv, "/probe/evicted/ws")
        ws.send("a")
        assert ws_recv(ws) == "echo:a"
        force_eviction(srv)
        ws.send("b")
        assert ws_recv(ws) == "echo:b"
        after = activations(srv, "evicted")
        assert after > before, "the object was never evicted, so the test proved nothing"
        # The object still knows both sockets after coming back.
        ws2.send("count")
        assert ws_recv(ws2) == "2"
        force_eviction(srv)
        ws2.send("c")
        assert ws_recv(ws2) == "echo:c"


def test_chat_broadcast_after_eviction(server_factory):
    srv = server_factory(name="evict-chat", shards=1,
                         extra_args=["--idle-timeout-ms", "200", "--max-open", "1"])
    with sockets() as connect:
        alice, _ = join(connect, srv, "evict-room", "alice")
        bob, _ = join(connect, srv, "evict-room", "bob")
        expect_type(alice, "join", nick="bob")
        force_eviction(srv)
        alice.send("after eviction")
        for ws in (alice, bob):
            expect_type(ws, "message", nick="alice", text="after eviction")
        force_eviction(srv)
        bob.close()
        expect_type(alice, "leave", nick="bob")
        r = srv.get("/chat/evict-room/messages")
        assert [m["text"] for m in r.json()] == ["after eviction"]


def test_probe_echo_count_close(server):
    with sockets() as connect:
        s1 = connect(server, "/probe/wsp/ws")
        s2 = connect(server, "/probe/wsp/ws")
        other = connect(server, "/probe/wsp-other/ws")

        s1.send("hello")
        assert ws_recv(s1) == "echo:hello"
        s2.send("caf\u00e9")
        assert ws_recv(s2) == "echo:caf\u00e9"
        s1.send_binary(b"\x00\x01\xff")
        assert ws_recv(s1) == b"echo:\x00\x01\xff"

        s1.send("count")
        assert ws_recv(s1) == "2"
        other.send("count")
        assert ws_recv(other) == "1"

        s2.send("close")
        assert ws_expect_close(s2) == (4000, "bye")

        def count_is_one():
            s1.send("count")
            return ws_recv(s1) == "1"
        assert wait_until(count_is_one, 3.0, 0.1), "closed socket still listed"

        # A client-side close is noticed too.
        s3 = connect(server, "/probe/wsp/ws")
        s3.send("count")
        assert ws_recv(s3) == "2"
        s3.close()

        def back_to_one():
            s1.send("count")
            return ws_recv(s1) == "1"
        assert wait_until(back_to_one, 3.0, 0.1), "client-closed socket still listed"


def test_many_messages_keep_order(server):
    with sockets() as connect:
        ws = connect(server, "/probe/order/ws")
        n = 200
        for i in range(n):
            ws.send(f"m{i}")
        got = [ws_recv(ws) for _ in range(n)]
        assert got == [f"echo:m{i}" for i in range(n)]


def test_client_that_never_answers_our_close_is_dropped(server):
    """The probe closes a socket with 4000 when told "close". A client that
    never answers the close frame (it stopped reading) is dropped after the
    server's close wait (5 s), not kept forever."""
    import base64
    import socket as pysocket
    s = pysocket.create_connection(("127.0.0.1", server.port), timeout=15)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /probe/mute/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head
    mask = os.urandom(4)
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"close"))
    s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + payload)
    t0 = time.monotonic()
    data = b""
    while True:  # read our close frame, never answer it, wait for EOF
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    waited = time.monotonic() - t0
    s.close()
    assert data[:1] == b"\x88", f"no close frame first: {data[:16]!r}"
    assert 3.0 < waited < 12.0, f"dropped after {waited:.1f} s"
