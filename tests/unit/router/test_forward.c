/*
 * Forwarded requests and replies (router/forward.c): the payload of a peer
 * APP frame between two hosts.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"

#define S(lit) ((struct router_str){lit, sizeof(lit) - 1})

static uint8_t *encode(const struct router_fwd *f, size_t *len)
{
    *len = router_fwd_size(f);
    uint8_t *buf = malloc(*len);
    router_fwd_encode(f, buf);
    return buf;
}

static void same(struct router_str a, struct router_str b)
{
    cr_assert_eq(a.len, b.len);
    cr_assert(a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

Test(forward, a_request_and_a_reply_come_back_as_they_were)
{
    static const char headers[] = "x-test\0hi\0content-type\0text/plain";
    struct router_fwd req = {.kind = ROUTER_FWD_REQUEST, .shard = 3, .id = 0x1122334455667788ull,
                             .cls = S("probe"), .name = S("h\xc3\xa9llo/x"), .method = S("POST"),
                             .path = S("/echo/a%20b"), .query = S("a=1"),
                             .headers = {headers, sizeof(headers)}, .body = S("z\0z")};
    size_t len;
    uint8_t *buf = encode(&req, &len);
    struct router_fwd got;
    cr_assert_eq(router_fwd_decode(&got, buf, len), 0);
    cr_assert_eq(got.kind, ROUTER_FWD_REQUEST);
    cr_assert_eq(got.shard, 3);
    cr_assert_eq(got.id, 0x1122334455667788ull);
    same(got.cls, req.cls);
    same(got.name, req.name);
    same(got.method, req.method);
    same(got.path, req.path);
    same(got.query, req.query);
    same(got.headers, req.headers);
    same(got.body, req.body);
    free(buf);

    struct router_fwd rep = {.kind = ROUTER_FWD_REPLY, .shard = 1, .id = 9, .status = 503, .served_by = 4,
                             .headers = S("retry-after\0" "1\0"), .body = S("{}")};
    buf = encode(&rep, &len);
    cr_assert_eq(router_fwd_decode(&got, buf, len), 0);
    cr_assert_eq(got.kind, ROUTER_FWD_REPLY);
    cr_assert_eq(got.status, 503);
    cr_assert_eq(got.served_by, 4);
    same(got.headers, rep.headers);
    same(got.body, rep.body);
    free(buf);
}

Test(forward, every_cut_and_every_lying_length_is_refused)
{
    struct router_fwd req = {.kind = ROUTER_FWD_REQUEST, .cls = S("c"), .name = S("n"), .method = S("GET"),
                             .headers = S("a\0b\0"), .body = S("body")};
    size_t len;
    uint8_t *buf = encode(&req, &len);
    struct router_fwd got;
    for (size_t cut = 0; cut < len; cut++)
        cr_assert_neq(router_fwd_decode(&got, buf, cut), 0, "cut at %zu accepted", cut);
    /* Each field's length made one too long, then as long as it gets. */
    for (size_t off = 32; off + 4 <= len;) {
        uint32_t n;
        memcpy(&n, buf + off, 4);
        for (uint32_t bad = n + 1; bad != 0 && bad <= n + 2; bad++) {
            memcpy(buf + off, &bad, 4);
            cr_assert_neq(router_fwd_decode(&got, buf, len), 0, "length %u at %zu accepted", bad, off);
        }
        uint32_t huge = UINT32_MAX;
        memcpy(buf + off, &huge, 4);
        cr_assert_neq(router_fwd_decode(&got, buf, len), 0);
        memcpy(buf + off, &n, 4);
        off += 4 + n;
    }
    cr_assert_eq(router_fwd_decode(&got, buf, len), 0, "the original still decodes");
    buf[0] = 7;
    cr_assert_neq(router_fwd_decode(&got, buf, len), 0, "an unknown kind");
    free(buf);
}

Test(forward, headers_must_be_whole_pairs_and_requests_name_a_class)
{
    struct router_fwd f = {.kind = ROUTER_FWD_REQUEST, .cls = S("c"), .method = S("GET")};
    struct router_str bad[] = {S("a"), S("a\0"), S("a\0b"), S("\0b\0"), S("a\0b\0c\0")};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        f.headers = bad[i];
        size_t len;
        uint8_t *buf = encode(&f, &len);
        struct router_fwd got;
        cr_assert_neq(router_fwd_decode(&got, buf, len), 0, "headers %zu accepted", i);
        free(buf);
    }
    f.headers = S("");
    f.cls = S("");
    size_t len;
    uint8_t *buf = encode(&f, &len);
    struct router_fwd got;
    cr_assert_neq(router_fwd_decode(&got, buf, len), 0, "a request without a class");
    free(buf);
    struct router_fwd r = {.kind = ROUTER_FWD_REPLY, .status = 42};
    buf = encode(&r, &len);
    cr_assert_neq(router_fwd_decode(&got, buf, len), 0, "a reply with status 42");
    free(buf);
    struct router_fwd c = {.kind = ROUTER_FWD_WS_CLOSE, .status = 999, .ws = 5};
    buf = encode(&c, &len);
    cr_assert_neq(router_fwd_decode(&got, buf, len), 0, "a close with code 999");
    free(buf);
    struct router_fwd m = {.kind = ROUTER_FWD_WS_MESSAGE, .status = 1, .ws = 5, .name = S("n")};
    buf = encode(&m, &len);
    cr_assert_neq(router_fwd_decode(&got, buf, len), 0, "a message naming an object");
    free(buf);
}

Test(forward, websocket_traffic_keeps_both_socket_ids)
{
    struct router_fwd m = {.kind = ROUTER_FWD_WS_MESSAGE, .status = 2, .ws = 0xfeedull << 40 | 7, .id = 99,
                           .body = S("\x00\x01 binary")};
    size_t len;
    uint8_t *buf = encode(&m, &len);
    struct router_fwd got;
    cr_assert_eq(router_fwd_decode(&got, buf, len), 0);
    cr_assert_eq(got.kind, ROUTER_FWD_WS_MESSAGE);
    cr_assert_eq(got.ws, 0xfeedull << 40 | 7);
    cr_assert_eq(got.id, 99);
    cr_assert_eq(got.status, 2);
    same(got.body, m.body);
    free(buf);
    struct router_fwd c = {.kind = ROUTER_FWD_WS_CLOSE, .status = 1012, .ws = 1, .id = 2, .body = S("reconnect")};
    buf = encode(&c, &len);
    cr_assert_eq(router_fwd_decode(&got, buf, len), 0);
    cr_assert_eq(got.status, 1012);
    free(buf);
}

Test(forward, a_wake_names_an_object_and_nothing_else)
{
    struct router_fwd w = {.kind = ROUTER_FWD_WAKE, .cls = S("counter"), .name = S("room-1")};
    size_t len;
    uint8_t *buf = encode(&w, &len);
    struct router_fwd got;
    cr_assert_eq(router_fwd_decode(&got, buf, len), 0);
    cr_assert_eq(got.kind, ROUTER_FWD_WAKE);
    cr_assert_eq(got.name.len, 6);
    cr_assert_eq(memcmp(got.cls.p, "counter", 7), 0);
    free(buf);
    struct router_fwd bad[] = {{.kind = ROUTER_FWD_WAKE, .name = S("n")},
                               {.kind = ROUTER_FWD_WAKE, .cls = S("c"), .method = S("GET")},
                               {.kind = ROUTER_FWD_WAKE, .cls = S("c"), .body = S("x")}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        buf = encode(&bad[i], &len);
        cr_assert_neq(router_fwd_decode(&got, buf, len), 0, "wake %zu accepted", i);
        free(buf);
    }
}
