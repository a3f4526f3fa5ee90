/*
 * sdk.c: the handler-facing API of dobj.h. Everything here runs on the
 * object's shard thread during one event and only records: the runtime
 * (runtime/actor.c) turns the recorded response and outputs into I/O after
 * the event's transaction ends.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sdk.h"
#include "sdk_util.h"

/* ---- errors ------------------------------------------------------------ */

const char *dobj_strerror(int err)
{
    switch (err) {
#define XX(name, val, msg) \
    case DOBJ_##name:      \
        return msg;
        DOBJ_ERRNO_MAP(XX)
#undef XX
    case 0:
        return "success";
    default:
        return "unknown error";
    }
}

const char *dobj_err_name(int err)
{
    switch (err) {
#define XX(name, val, msg) \
    case DOBJ_##name:      \
        return "DOBJ_" #name;
        DOBJ_ERRNO_MAP(XX)
#undef XX
    case 0:
        return "OK";
    default:
        return "DOBJ_EUNKNOWN";
    }
}

/* ---- context ----------------------------------------------------------- */

void sdk_ctx_init(struct dobj_ctx *ctx, const dobj_class *cls, const char *name, sqlite3 *db)
{
    memset(ctx, 0, sizeof(*ctx));
    sdk_arena_init(&ctx->arena);
    ctx->cls = cls;
    ctx->name = name;
    ctx->db = db;
    ctx->path = "";
    ctx->query = "";
    ctx->body = "";
    ctx->outs_tail = &ctx->outs_head;
}

void sdk_ctx_close(struct dobj_ctx *ctx)
{
    struct sdk_out *o = sdk_ctx_take_outs(ctx);
    while (o != NULL) {
        struct sdk_out *next = o->next;
        free(o);
        o = next;
    }
    sdk_buf_close(&ctx->res_headers);
    sdk_buf_close(&ctx->res_body);
    sdk_arena_close(&ctx->arena);
}

struct sdk_out *sdk_ctx_take_outs(struct dobj_ctx *ctx)
{
    struct sdk_out *o = ctx->outs_head;
    ctx->outs_head = NULL;
    ctx->outs_tail = &ctx->outs_head;
    return o;
}

const char *dobj_class_name(dobj_ctx *ctx) { return ctx->cls->name; }
const char *dobj_name(dobj_ctx *ctx) { return ctx->name; }
const char *dobj_req_method(dobj_ctx *ctx) { return ctx->method; }
const char *dobj_req_path(dobj_ctx *ctx) { return ctx->path; }
const char *dobj_req_query(dobj_ctx *ctx) { return ctx->query; }
int64_t dobj_now_us(dobj_ctx *ctx) { return ctx->now_us; }
struct sqlite3 *dobj_db(dobj_ctx *ctx) { return ctx->db; }
const char *dobj_errmsg(dobj_ctx *ctx) { return ctx->errmsg; }

const char *dobj_req_param(dobj_ctx *ctx, const char *key)
{
    return sdk_query_param(&ctx->arena, ctx->query, key);
}

const char *dobj_req_header(dobj_ctx *ctx, const char *name)
{
    for (size_t i = 0; i < ctx->nheaders; i++)
        if (strcasecmp(ctx->headers[i].name, name) == 0)
            return ctx->headers[i].value;
    return NULL;
}

const void *dobj_req_body(dobj_ctx *ctx, size_t *len)
{
    if (len != NULL)
        *len = ctx->body_len;
    return ctx->body;
}

void *dobj_alloc(dobj_ctx *ctx, size_t size) { return sdk_arena_alloc(&ctx->arena, size); }

char *dobj_sprintf(dobj_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = sdk_arena_vprintf(&ctx->arena, fmt, ap);
    va_end(ap);
    return s;
}

/* ---- response ---------------------------------------------------------- */

int dobj_res_status(dobj_ctx *ctx, int status)
{
    /* A final status: 1xx are the server's (101 is the WebSocket upgrade). */
    if (status < 200 || status > 599)
        return DOBJ_EINVAL;
    ctx->status = status;
    return 0;
}

static bool header_text_ok(const char *s, bool is_name)
{
    if (*s == '\0' && is_name)
        return false;
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\r' || c == '\n' || (is_name && (c <= ' ' || c == ':' || c >= 0x7f)))
            return false;
    }
    return true;
}

int dobj_res_header(dobj_ctx *ctx, const char *name, const char *value)
{
    if (name == NULL || value == NULL || !header_text_ok(name, true) || !header_text_ok(value, false))
        return DOBJ_EINVAL;
    sdk_buf_append(&ctx->res_headers, name, strlen(name) + 1);
    sdk_buf_append(&ctx->res_headers, value, strlen(value) + 1);
    return 0;
}

int dobj_res_write(dobj_ctx *ctx, const void *data, size_t len)
{
    sdk_buf_append(&ctx->res_body, data, len);
    return 0;
}

int dobj_res_printf(dobj_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sdk_buf_vprintf(&ctx->res_body, fmt, ap);
    va_end(ap);
    return 0;
}

static void remove_header(struct sdk_buf *h, const char *name)
{
    size_t off = 0;
    while (off < h->len) {
        size_t nlen = strlen(h->data + off) + 1;
        size_t vlen = strlen(h->data + off + nlen) + 1;
        if (strcasecmp(h->data + off, name) == 0) {
            memmove(h->data + off, h->data + off + nlen + vlen, h->len - off - nlen - vlen);
            h->len -= nlen + vlen;
        } else {
            off += nlen + vlen;
        }
    }
}

int dobj_res_json(dobj_ctx *ctx, int status, const char *fmt, ...)
{
    if (dobj_res_status(ctx, status) != 0)
        return DOBJ_EINVAL;
    remove_header(&ctx->res_headers, "content-type");
    dobj_res_header(ctx, "content-type", "application/json");
    ctx->res_body.len = 0;
    va_list ap;
    va_start(ap, fmt);
    sdk_buf_vprintf(&ctx->res_body, fmt, ap);
    va_end(ap);
    return 0;
}

const char *dobj_json_str(dobj_ctx *ctx, const char *s)
{
    if (s == NULL)
        return "null";
    struct sdk_buf b = {0};
    sdk_buf_json_str(&b, s, strlen(s));
    char *out = sdk_arena_strndup(&ctx->arena, b.data, b.len);
    sdk_buf_close(&b);
    return out;
}

static int vfail(dobj_ctx *ctx, int status, const char *fmt, va_list ap)
{
    ctx->fail_status = status;
    ctx->fail_msg = sdk_arena_vprintf(&ctx->arena, fmt, ap);
    return DOBJ_EHANDLER;
}

int dobj_fail(dobj_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rv = vfail(ctx, 500, fmt, ap);
    va_end(ap);
    return rv;
}

int dobj_fail_status(dobj_ctx *ctx, int status, const char *fmt, ...)
{
    if (status < 400 || status > 599)
        status = 500;
    va_list ap;
    va_start(ap, fmt);
    int rv = vfail(ctx, status, fmt, ap);
    va_end(ap);
    return rv;
}

/* ---- WebSockets -------------------------------------------------------- */

static bool ws_has_tag(const struct dobj_ws *ws, const char *tag)
{
    if (tag == NULL)
        return true;
    for (unsigned i = 0; i < ws->ntags; i++)
        if (strcmp(ws->tags[i], tag) == 0)
            return true;
    return false;
}

static void out_push(dobj_ctx *ctx, struct sdk_out *o)
{
    o->next = NULL;
    *ctx->outs_tail = o;
    ctx->outs_tail = &o->next;
}

static struct sdk_out *out_new(enum sdk_out_kind kind, const dobj_ws *ws, int ws_kind, const void *data, size_t len)
{
    struct sdk_out *o = sdk_xmalloc(sizeof(*o) + len + 1);
    o->kind = kind;
    o->ws_id = ws->id;
    o->shard = ws->shard;
    o->ws_kind = ws_kind;
    o->len = len;
    if (len > 0)
        memcpy(o->data, data, len);
    o->data[len] = '\0';
    return o;
}

int dobj_ws_send(dobj_ctx *ctx, dobj_ws *ws, int kind, const void *data, size_t len)
{
    if (ws == NULL || (kind != DOBJ_WS_TEXT && kind != DOBJ_WS_BINARY) || (data == NULL && len > 0))
        return DOBJ_EINVAL;
    if (ws->closing)
        return DOBJ_ECLOSED;
    if (ctx->ws_msg_max != 0 && len > ctx->ws_msg_max)
        return DOBJ_ELIMIT;
    out_push(ctx, out_new(SDK_OUT_WS_SEND, ws, kind, data, len));
    return 0;
}

int dobj_ws_broadcast(dobj_ctx *ctx, const char *tag, dobj_ws *except, int kind, const void *data, size_t len)
{
    if ((kind != DOBJ_WS_TEXT && kind != DOBJ_WS_BINARY) || (data == NULL && len > 0))
        return DOBJ_EINVAL;
    if (ctx->ws_msg_max != 0 && len > ctx->ws_msg_max)
        return DOBJ_ELIMIT;
    int n = 0;
    for (struct dobj_ws *ws = ctx->sockets; ws != NULL; ws = ws->next) {
        if (ws == except || ws->closing || !ws_has_tag(ws, tag))
            continue;
        out_push(ctx, out_new(SDK_OUT_WS_SEND, ws, kind, data, len));
        n++;
    }
    return n;
}

/* Codes an endpoint may send (RFC 6455 7.4): 1004-1006 and 1015 are reserved,
 * 1016-2999 belong to the protocol and its extensions. */
static bool close_code_ok(int code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

int dobj_ws_close(dobj_ctx *ctx, dobj_ws *ws, int code, const char *reason)
{
    if (ws == NULL || !close_code_ok(code))
        return DOBJ_EINVAL;
    if (reason == NULL)
        reason = "";
    size_t rlen = strlen(reason);
    if (rlen > SDK_WS_REASON_MAX)
        return DOBJ_EINVAL;
    if (ws->closing)
        return DOBJ_ECLOSED;
    ws->closing = true;
    out_push(ctx, out_new(SDK_OUT_WS_CLOSE, ws, code, reason, rlen));
    return 0;
}

size_t dobj_ws_list(dobj_ctx *ctx, const char *tag, dobj_ws **out, size_t max)
{
    size_t n = 0;
    for (struct dobj_ws *ws = ctx->sockets; ws != NULL; ws = ws->next) {
        if (ws->closing || !ws_has_tag(ws, tag))
            continue;
        if (n < max && out != NULL)
            out[n] = ws;
        n++;
    }
    return n;
}

int dobj_ws_tag(dobj_ctx *ctx, dobj_ws *ws, const char *tag)
{
    (void)ctx;
    if (ws == NULL || tag == NULL)
        return DOBJ_EINVAL;
    size_t len = strlen(tag);
    if (len == 0 || len > SDK_WS_TAG_BYTES_MAX)
        return DOBJ_EINVAL;
    if (ws_has_tag(ws, tag))
        return 0;
    if (ws->ntags == SDK_WS_TAGS_MAX)
        return DOBJ_ELIMIT;
    ws->tags[ws->ntags++] = sdk_xstrndup(tag, len);
    return 0;
}

int dobj_ws_set_attachment(dobj_ctx *ctx, dobj_ws *ws, const void *data, size_t len)
{
    (void)ctx;
    if (ws == NULL || (data == NULL && len > 0))
        return DOBJ_EINVAL;
    if (len > SDK_WS_ATTACHMENT_MAX)
        return DOBJ_ELIMIT;
    free(ws->attachment);
    ws->attachment = NULL;
    ws->attachment_len = 0;
    if (data != NULL) {
        ws->attachment = sdk_xstrndup(data, len);
        ws->attachment_len = len;
    }
    return 0;
}

const void *dobj_ws_attachment(dobj_ctx *ctx, dobj_ws *ws, size_t *len)
{
    (void)ctx;
    if (ws == NULL || ws->attachment == NULL)
        return NULL;
    if (len != NULL)
        *len = ws->attachment_len;
    return ws->attachment;
}

uint64_t dobj_ws_id(dobj_ws *ws) { return ws->id; }

void sdk_ws_free(struct dobj_ws *ws)
{
    for (unsigned i = 0; i < ws->ntags; i++)
        free(ws->tags[i]);
    free(ws->attachment);
    free(ws);
}
