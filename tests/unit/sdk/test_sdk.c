/*
 * test_sdk.c: sdk/src/sdk.c: error names, the request accessors, the
 * response, dobj_fail, WebSockets and the outputs an event queues.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sdk.h"
#include "sdk_util.h"

static const dobj_class cls = {.abi_version = DOBJ_ABI_VERSION, .name = "probe"};
static struct dobj_ctx ctx;

static void ctx_setup(void) { sdk_ctx_init(&ctx, &cls, "alice", NULL); }
static void ctx_teardown(void) { sdk_ctx_close(&ctx); }

/* ---- errors -------------------------------------------------------------- */

Test(errors, every_code)
{
    int n = 0;
#define XX(name, val, msg)                                                   \
    cr_assert_eq(DOBJ_##name, (val));                                        \
    cr_assert_lt(DOBJ_##name, 0);                                            \
    cr_assert_str_eq(dobj_strerror(DOBJ_##name), (msg));                     \
    cr_assert_str_eq(dobj_err_name(DOBJ_##name), "DOBJ_" #name);             \
    n++;
    DOBJ_ERRNO_MAP(XX)
#undef XX
    cr_assert_eq(n, 11);
    cr_assert_str_eq(dobj_strerror(DOBJ_ENOTFOUND), "no such row");
    cr_assert_str_eq(dobj_err_name(DOBJ_ENOTFOUND), "DOBJ_ENOTFOUND");
}

Test(errors, codes_are_distinct)
{
    static const int codes[] = {
#define XX(name, val, msg) DOBJ_##name,
        DOBJ_ERRNO_MAP(XX)
#undef XX
    };
    size_t n = sizeof(codes) / sizeof(codes[0]);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            cr_assert_neq(codes[i], codes[j]);
}

Test(errors, unknown)
{
    static const int unknown[] = {-12, -100, -999, 1, 42, INT32_MIN};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        cr_assert_str_eq(dobj_strerror(unknown[i]), "unknown error");
        cr_assert_str_eq(dobj_err_name(unknown[i]), "DOBJ_EUNKNOWN");
    }
}

/* ---- the request --------------------------------------------------------- */

TestSuite(request, .init = ctx_setup, .fini = ctx_teardown);

Test(request, defaults)
{
    size_t len = 99;
    cr_assert_str_eq(dobj_class_name(&ctx), "probe");
    cr_assert_str_eq(dobj_name(&ctx), "alice");
    cr_assert_null(dobj_req_method(&ctx));
    cr_assert_str_eq(dobj_req_path(&ctx), "");
    cr_assert_str_eq(dobj_req_query(&ctx), "");
    const char *body = dobj_req_body(&ctx, &len);
    cr_assert_not_null(body);
    cr_assert_eq(len, 0);
    cr_assert_str_eq(body, "");
    cr_assert_null(dobj_req_header(&ctx, "host"));
    cr_assert_str_eq(dobj_errmsg(&ctx), "");
}

Test(request, headers_case_insensitive_first_value)
{
    static const struct sdk_header h[] = {{"Host", "a"}, {"X-Thing", "one"}, {"x-thing", "two"}};
    ctx.headers = h;
    ctx.nheaders = 3;
    cr_assert_str_eq(dobj_req_header(&ctx, "host"), "a");
    cr_assert_str_eq(dobj_req_header(&ctx, "X-THING"), "one");
    cr_assert_null(dobj_req_header(&ctx, "x-thin"));
}

Test(request, alloc_and_sprintf)
{
    char *p = dobj_alloc(&ctx, 10);
    cr_assert_not_null(p);
    cr_assert_eq((uintptr_t)p % 16, 0);
    memset(p, 1, 10);
    char *s = dobj_sprintf(&ctx, "%s-%d", "x", 42);
    cr_assert_str_eq(s, "x-42");
    cr_assert_str_eq(dobj_json_str(&ctx, NULL), "null");
    cr_assert_str_eq(dobj_json_str(&ctx, "a\"b\n"), "\"a\\\"b\\n\"");
    cr_assert_str_eq(dobj_json_str(&ctx, "\xFF"), "\"\xEF\xBF\xBD\"");
}

/* ---- the response -------------------------------------------------------- */

TestSuite(response, .init = ctx_setup, .fini = ctx_teardown);

/* Counts response headers called `name` (any case); `value` gets the last. */
static int header_count(const char *name, const char **value)
{
    int n = 0;
    const struct sdk_buf *h = &ctx.res_headers;
    size_t off = 0;
    while (off < h->len) {
        const char *k = h->data + off;
        const char *v = k + strlen(k) + 1;
        cr_assert_lt((size_t)(v - h->data), h->len + 1);
        if (strcasecmp(k, name) == 0) {
            n++;
            if (value != NULL)
                *value = v;
        }
        off = (size_t)(v - h->data) + strlen(v) + 1;
    }
    cr_assert_eq(off, h->len);
    return n;
}

Test(response, status_range)
{
    cr_assert_eq(dobj_res_status(&ctx, 99), DOBJ_EINVAL);
    cr_assert_eq(dobj_res_status(&ctx, 600), DOBJ_EINVAL);
    /* 1xx are not final statuses: the handler can not send them. */
    cr_assert_eq(dobj_res_status(&ctx, 100), DOBJ_EINVAL);
    cr_assert_eq(dobj_res_status(&ctx, 199), DOBJ_EINVAL);
    cr_assert_eq(ctx.status, 0);
    cr_assert_eq(dobj_res_status(&ctx, 200), 0);
    cr_assert_eq(dobj_res_status(&ctx, 599), 0);
    cr_assert_eq(ctx.status, 599);
}

Test(response, write_and_printf_append)
{
    cr_assert_eq(dobj_res_write(&ctx, "ab", 2), 0);
    cr_assert_eq(dobj_res_printf(&ctx, "%d%s", 12, "cd"), 0);
    cr_assert_eq(dobj_res_write(&ctx, "\0z", 2), 0);
    cr_assert_eq(ctx.res_body.len, 8);
    cr_assert_eq(memcmp(ctx.res_body.data, "ab12cd\0z", 8), 0);
}

Test(response, json_replaces_body_and_content_type)
{
    cr_assert_eq(dobj_res_header(&ctx, "Content-Type", "text/plain"), 0);
    cr_assert_eq(dobj_res_header(&ctx, "x-a", "1"), 0);
    cr_assert_eq(dobj_res_header(&ctx, "content-type", "text/html"), 0);
    cr_assert_eq(dobj_res_header(&ctx, "x-b", "2"), 0);
    cr_assert_eq(dobj_res_write(&ctx, "an older, longer body", 21), 0);

    cr_assert_eq(dobj_res_json(&ctx, 201, "{\"a\":%d,\"s\":%s}", 1, dobj_json_str(&ctx, "q\"")), 0);
    const char *want = "{\"a\":1,\"s\":\"q\\\"\"}";
    cr_assert_eq(ctx.status, 201);
    cr_assert_eq(ctx.res_body.len, strlen(want));
    cr_assert_str_eq(ctx.res_body.data, want);
    const char *ct = NULL;
    cr_assert_eq(header_count("content-type", &ct), 1);
    cr_assert_str_eq(ct, "application/json");
    const char *v = NULL;
    cr_assert_eq(header_count("x-a", &v), 1);
    cr_assert_str_eq(v, "1");
    cr_assert_eq(header_count("x-b", &v), 1);
    cr_assert_str_eq(v, "2");

    /* Twice: still one content-type, the body replaced again. */
    cr_assert_eq(dobj_res_json(&ctx, 200, "[]"), 0);
    cr_assert_eq(header_count("content-type", NULL), 1);
    cr_assert_eq(ctx.status, 200);
    cr_assert_eq(ctx.res_body.len, 2);
    cr_assert_str_eq(ctx.res_body.data, "[]");
}

Test(response, json_bad_status_changes_nothing)
{
    cr_assert_eq(dobj_res_write(&ctx, "keep", 4), 0);
    cr_assert_eq(dobj_res_json(&ctx, 42, "{}"), DOBJ_EINVAL);
    cr_assert_eq(ctx.status, 0);
    cr_assert_eq(ctx.res_body.len, 4);
    cr_assert_eq(header_count("content-type", NULL), 0);
}

Test(response, header_refuses_cr_lf)
{
    cr_assert_eq(dobj_res_header(&ctx, "x-a", "a\r\nSet-Cookie: x=1"), DOBJ_EINVAL);
    cr_assert_eq(dobj_res_header(&ctx, "x-a", "a\rb"), DOBJ_EINVAL);
    cr_assert_eq(dobj_res_header(&ctx, "x-a", "a\nb"), DOBJ_EINVAL);
    cr_assert_eq(dobj_res_header(&ctx, "x-a\r\nx-b", "1"), DOBJ_EINVAL);
    cr_assert_eq(dobj_res_header(&ctx, "x-a\n", "1"), DOBJ_EINVAL);
    cr_assert_eq(dobj_res_header(&ctx, "", "1"), DOBJ_EINVAL);
    cr_assert_eq(dobj_res_header(&ctx, "x a", "1"), DOBJ_EINVAL);
    cr_assert_eq(dobj_res_header(&ctx, "x:a", "1"), DOBJ_EINVAL);
    cr_assert_eq(dobj_res_header(&ctx, NULL, "1"), DOBJ_EINVAL);
    cr_assert_eq(dobj_res_header(&ctx, "x-a", NULL), DOBJ_EINVAL);
    cr_assert_eq(ctx.res_headers.len, 0, "a refused header was recorded");

    cr_assert_eq(dobj_res_header(&ctx, "x-empty", ""), 0);
    cr_assert_eq(dobj_res_header(&ctx, "x-a", "a b: c"), 0);
    const char *v = NULL;
    cr_assert_eq(header_count("x-empty", &v), 1);
    cr_assert_str_eq(v, "");
    cr_assert_eq(header_count("x-a", &v), 1);
    cr_assert_str_eq(v, "a b: c");
}

Test(response, fail_records_status_and_message)
{
    cr_assert_eq(dobj_fail(&ctx, "bad amount %s", "-5"), DOBJ_EHANDLER);
    cr_assert_eq(ctx.fail_status, 500);
    cr_assert_str_eq(ctx.fail_msg, "bad amount -5");

    cr_assert_eq(dobj_fail_status(&ctx, 404, "no %s here", "thing"), DOBJ_EHANDLER);
    cr_assert_eq(ctx.fail_status, 404);
    cr_assert_str_eq(ctx.fail_msg, "no thing here");

    cr_assert_eq(dobj_fail_status(&ctx, 503, "busy"), DOBJ_EHANDLER);
    cr_assert_eq(ctx.fail_status, 503);
    cr_assert_str_eq(ctx.fail_msg, "busy");

    /* Not an error status: the client gets 500. */
    cr_assert_eq(dobj_fail_status(&ctx, 200, "odd"), DOBJ_EHANDLER);
    cr_assert_eq(ctx.fail_status, 500);
    cr_assert_str_eq(ctx.fail_msg, "odd");
}

/* ---- WebSockets ---------------------------------------------------------- */

#define NWS 4
static struct dobj_ws *ws[NWS];

/* Four sockets in open order: 0 and 3 tagged "room", 1 tagged "room" and
 * closing, 2 untagged. */
static void ws_setup(void)
{
    ctx_setup();
    for (int i = 0; i < NWS; i++) {
        ws[i] = calloc(1, sizeof(*ws[i]));
        cr_assert_not_null(ws[i]);
        ws[i]->id = 100 + (uint64_t)i;
        ws[i]->shard = (unsigned)i % 2;
        if (i > 0) {
            ws[i]->prev = ws[i - 1];
            ws[i - 1]->next = ws[i];
        }
    }
    ctx.sockets = ws[0];
    cr_assert_eq(dobj_ws_tag(&ctx, ws[0], "room"), 0);
    cr_assert_eq(dobj_ws_tag(&ctx, ws[1], "room"), 0);
    cr_assert_eq(dobj_ws_tag(&ctx, ws[3], "other"), 0);
    cr_assert_eq(dobj_ws_tag(&ctx, ws[3], "room"), 0);
    ws[1]->closing = true;
}

static void ws_teardown(void)
{
    ctx_teardown();
    for (int i = 0; i < NWS; i++)
        sdk_ws_free(ws[i]);
}

TestSuite(ws, .init = ws_setup, .fini = ws_teardown);

/* Checks the next output and frees it; returns the one after. */
static struct sdk_out *expect_out(struct sdk_out *o, enum sdk_out_kind kind, const struct dobj_ws *w, int ws_kind,
                                  const char *data, size_t len)
{
    cr_assert_not_null(o, "missing output");
    cr_assert_eq(o->kind, kind);
    cr_assert_eq(o->ws_id, w->id);
    cr_assert_eq(o->shard, w->shard);
    cr_assert_eq(o->ws_kind, ws_kind);
    cr_assert_eq(o->len, len);
    cr_assert_eq(memcmp(o->data, data, len), 0);
    cr_assert_eq(o->data[len], '\0');
    struct sdk_out *next = o->next;
    free(o);
    return next;
}

Test(ws, send_queues_in_order)
{
    cr_assert_eq(dobj_ws_id(ws[2]), 102);
    cr_assert_eq(dobj_ws_send(&ctx, ws[0], DOBJ_WS_TEXT, "hi", 2), 0);
    cr_assert_eq(dobj_ws_send(&ctx, ws[2], DOBJ_WS_BINARY, "\0\1\2", 3), 0);
    cr_assert_eq(dobj_ws_send(&ctx, ws[3], DOBJ_WS_TEXT, NULL, 0), 0);
    struct sdk_out *o = sdk_ctx_take_outs(&ctx);
    o = expect_out(o, SDK_OUT_WS_SEND, ws[0], DOBJ_WS_TEXT, "hi", 2);
    o = expect_out(o, SDK_OUT_WS_SEND, ws[2], DOBJ_WS_BINARY, "\0\1\2", 3);
    o = expect_out(o, SDK_OUT_WS_SEND, ws[3], DOBJ_WS_TEXT, "", 0);
    cr_assert_null(o);
    cr_assert_null(sdk_ctx_take_outs(&ctx));

    /* The queue works again after a take. */
    cr_assert_eq(dobj_ws_send(&ctx, ws[0], DOBJ_WS_TEXT, "again", 5), 0);
    o = sdk_ctx_take_outs(&ctx);
    o = expect_out(o, SDK_OUT_WS_SEND, ws[0], DOBJ_WS_TEXT, "again", 5);
    cr_assert_null(o);
}

Test(ws, send_bad_arguments)
{
    cr_assert_eq(dobj_ws_send(&ctx, NULL, DOBJ_WS_TEXT, "x", 1), DOBJ_EINVAL);
    cr_assert_eq(dobj_ws_send(&ctx, ws[0], 0, "x", 1), DOBJ_EINVAL);
    cr_assert_eq(dobj_ws_send(&ctx, ws[0], 3, "x", 1), DOBJ_EINVAL);
    cr_assert_eq(dobj_ws_send(&ctx, ws[0], DOBJ_WS_TEXT, NULL, 1), DOBJ_EINVAL);
    cr_assert_eq(dobj_ws_send(&ctx, ws[1], DOBJ_WS_TEXT, "x", 1), DOBJ_ECLOSED);
    cr_assert_null(ctx.outs_head);
}

Test(ws, message_size_limit)
{
    ctx.ws_msg_max = 4;
    cr_assert_eq(dobj_ws_send(&ctx, ws[0], DOBJ_WS_TEXT, "abcd", 4), 0);
    cr_assert_eq(dobj_ws_send(&ctx, ws[0], DOBJ_WS_TEXT, "abcde", 5), DOBJ_ELIMIT);
    cr_assert_eq(dobj_ws_broadcast(&ctx, NULL, NULL, DOBJ_WS_TEXT, "abcde", 5), DOBJ_ELIMIT);
    struct sdk_out *o = sdk_ctx_take_outs(&ctx);
    o = expect_out(o, SDK_OUT_WS_SEND, ws[0], DOBJ_WS_TEXT, "abcd", 4);
    cr_assert_null(o, "a message over the limit was queued");
}

Test(ws, broadcast_skips_except_closing_and_untagged)
{
    int n = dobj_ws_broadcast(&ctx, "room", ws[0], DOBJ_WS_TEXT, "m1", 2);
    cr_assert_eq(n, 1);
    n = dobj_ws_broadcast(&ctx, NULL, NULL, DOBJ_WS_BINARY, "m2", 2);
    cr_assert_eq(n, 3);
    n = dobj_ws_broadcast(&ctx, "room", NULL, DOBJ_WS_TEXT, "m3", 2);
    cr_assert_eq(n, 2);
    n = dobj_ws_broadcast(&ctx, "nobody", NULL, DOBJ_WS_TEXT, "m4", 2);
    cr_assert_eq(n, 0);
    cr_assert_eq(dobj_ws_broadcast(&ctx, NULL, NULL, 7, "m5", 2), DOBJ_EINVAL);

    struct sdk_out *o = sdk_ctx_take_outs(&ctx);
    o = expect_out(o, SDK_OUT_WS_SEND, ws[3], DOBJ_WS_TEXT, "m1", 2);
    o = expect_out(o, SDK_OUT_WS_SEND, ws[0], DOBJ_WS_BINARY, "m2", 2);
    o = expect_out(o, SDK_OUT_WS_SEND, ws[2], DOBJ_WS_BINARY, "m2", 2);
    o = expect_out(o, SDK_OUT_WS_SEND, ws[3], DOBJ_WS_BINARY, "m2", 2);
    o = expect_out(o, SDK_OUT_WS_SEND, ws[0], DOBJ_WS_TEXT, "m3", 2);
    o = expect_out(o, SDK_OUT_WS_SEND, ws[3], DOBJ_WS_TEXT, "m3", 2);
    cr_assert_null(o);
}

Test(ws, close)
{
    cr_assert_eq(dobj_ws_close(&ctx, ws[0], 999, "x"), DOBJ_EINVAL);
    cr_assert_eq(dobj_ws_close(&ctx, ws[0], 5000, "x"), DOBJ_EINVAL);
    /* Reserved and protocol codes. */
    cr_assert_eq(dobj_ws_close(&ctx, ws[0], 1005, "x"), DOBJ_EINVAL);
    cr_assert_eq(dobj_ws_close(&ctx, ws[0], 1006, "x"), DOBJ_EINVAL);
    cr_assert_eq(dobj_ws_close(&ctx, ws[0], 1015, "x"), DOBJ_EINVAL);
    cr_assert_eq(dobj_ws_close(&ctx, ws[0], 2000, "x"), DOBJ_EINVAL);
    cr_assert_eq(dobj_ws_close(&ctx, NULL, 1000, "x"), DOBJ_EINVAL);
    char reason[125];
    memset(reason, 'r', 124);
    reason[124] = '\0';
    cr_assert_eq(dobj_ws_close(&ctx, ws[0], 1000, reason), DOBJ_EINVAL);
    cr_assert_not(ws[0]->closing, "a refused close marked the socket closing");

    reason[123] = '\0';
    cr_assert_eq(dobj_ws_close(&ctx, ws[0], 4000, reason), 0);
    cr_assert(ws[0]->closing);
    cr_assert_eq(dobj_ws_close(&ctx, ws[0], 1000, "again"), DOBJ_ECLOSED);
    cr_assert_eq(dobj_ws_send(&ctx, ws[0], DOBJ_WS_TEXT, "late", 4), DOBJ_ECLOSED);
    cr_assert_eq(dobj_ws_close(&ctx, ws[2], 1000, NULL), 0);
    /* Both closed now: a broadcast reaches socket 3 alone. */
    cr_assert_eq(dobj_ws_broadcast(&ctx, NULL, NULL, DOBJ_WS_TEXT, "b", 1), 1);

    struct sdk_out *o = sdk_ctx_take_outs(&ctx);
    o = expect_out(o, SDK_OUT_WS_CLOSE, ws[0], 4000, reason, 123);
    o = expect_out(o, SDK_OUT_WS_CLOSE, ws[2], 1000, "", 0);
    o = expect_out(o, SDK_OUT_WS_SEND, ws[3], DOBJ_WS_TEXT, "b", 1);
    cr_assert_null(o);
}

Test(ws, list)
{
    struct dobj_ws *out[NWS] = {0};
    cr_assert_eq(dobj_ws_list(&ctx, NULL, out, NWS), 3);
    cr_assert_eq(out[0], ws[0]);
    cr_assert_eq(out[1], ws[2]);
    cr_assert_eq(out[2], ws[3]);
    cr_assert_null(out[3]);

    memset(out, 0, sizeof(out));
    cr_assert_eq(dobj_ws_list(&ctx, "room", out, 1), 2, "the count exceeds max");
    cr_assert_eq(out[0], ws[0]);
    cr_assert_null(out[1], "wrote past max");
    cr_assert_eq(dobj_ws_list(&ctx, "other", NULL, 0), 1);
    cr_assert_eq(dobj_ws_list(&ctx, "none", out, NWS), 0);
}

Test(ws, tags)
{
    cr_assert_eq(ws[2]->ntags, 0);
    cr_assert_eq(dobj_ws_tag(&ctx, ws[2], ""), DOBJ_EINVAL);
    cr_assert_eq(dobj_ws_tag(&ctx, ws[2], NULL), DOBJ_EINVAL);
    char big[66];
    memset(big, 't', 65);
    big[65] = '\0';
    cr_assert_eq(dobj_ws_tag(&ctx, ws[2], big), DOBJ_EINVAL);
    big[64] = '\0';
    cr_assert_eq(dobj_ws_tag(&ctx, ws[2], big), 0);
    cr_assert_eq(dobj_ws_tag(&ctx, ws[2], big), 0, "an existing tag is not an error");
    cr_assert_eq(ws[2]->ntags, 1, "a repeated tag was stored twice");
    for (int i = 1; i < SDK_WS_TAGS_MAX; i++) {
        char t[8];
        snprintf(t, sizeof(t), "t%d", i);
        cr_assert_eq(dobj_ws_tag(&ctx, ws[2], t), 0);
    }
    cr_assert_eq(ws[2]->ntags, 8);
    cr_assert_eq(dobj_ws_tag(&ctx, ws[2], "ninth"), DOBJ_ELIMIT);
    cr_assert_eq(ws[2]->ntags, 8);
    cr_assert_eq(dobj_ws_tag(&ctx, ws[2], "t3"), 0);
    cr_assert_eq(dobj_ws_list(&ctx, "t7", NULL, 0), 1);
    cr_assert_eq(dobj_ws_list(&ctx, "ninth", NULL, 0), 0);
}

Test(ws, attachment)
{
    size_t len = 77;
    cr_assert_null(dobj_ws_attachment(&ctx, ws[0], &len));
    cr_assert_eq(len, 77);

    cr_assert_eq(dobj_ws_set_attachment(&ctx, ws[0], "abc", 3), 0);
    const char *a = dobj_ws_attachment(&ctx, ws[0], &len);
    cr_assert_eq(len, 3);
    cr_assert_str_eq(a, "abc");

    cr_assert_eq(dobj_ws_set_attachment(&ctx, ws[0], "x\0y", 3), 0);
    a = dobj_ws_attachment(&ctx, ws[0], &len);
    cr_assert_eq(len, 3);
    cr_assert_eq(memcmp(a, "x\0y", 4), 0);

    char *big = malloc(SDK_WS_ATTACHMENT_MAX + 1);
    memset(big, 'z', SDK_WS_ATTACHMENT_MAX + 1);
    cr_assert_eq(dobj_ws_set_attachment(&ctx, ws[0], big, 4097), DOBJ_ELIMIT);
    a = dobj_ws_attachment(&ctx, ws[0], &len);
    cr_assert_eq(len, 3, "a refused attachment replaced the old one");
    cr_assert_eq(memcmp(a, "x\0y", 3), 0);
    cr_assert_eq(dobj_ws_set_attachment(&ctx, ws[0], big, 4096), 0);
    a = dobj_ws_attachment(&ctx, ws[0], &len);
    cr_assert_eq(len, 4096);
    cr_assert_eq(a[4095], 'z');
    cr_assert_eq(a[4096], '\0');
    free(big);

    cr_assert_eq(dobj_ws_set_attachment(&ctx, ws[0], NULL, 5), DOBJ_EINVAL);
    cr_assert_eq(dobj_ws_set_attachment(&ctx, ws[0], NULL, 0), 0);
    cr_assert_null(dobj_ws_attachment(&ctx, ws[0], &len));
    /* Kept on a closing socket: ws_close handlers read it. */
    cr_assert_eq(dobj_ws_set_attachment(&ctx, ws[1], "k", 1), 0);
    cr_assert_str_eq(dobj_ws_attachment(&ctx, ws[1], NULL), "k");
}

Test(ws, close_frees_untaken_outputs)
{
    /* Under ASan this would report a leak if sdk_ctx_close dropped them. */
    cr_assert_eq(dobj_ws_send(&ctx, ws[0], DOBJ_WS_TEXT, "a", 1), 0);
    cr_assert_eq(dobj_ws_close(&ctx, ws[3], 1001, "going"), 0);
    cr_assert_not_null(ctx.outs_head);
}
