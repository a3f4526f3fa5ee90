/*
 * forward.c: in a cluster, the front's traffic with other hosts
 * (router/forward.c's payloads in peer APP frames).
 *
 *   - A request for an object another host leads (the first live host of its
 *     ranking: rt_cluster_route) is forwarded there and waits in the front's
 *     table of forwards; the reply comes back to this shard. With --redirect
 *     it is answered 307 instead. A forward that the leader does not answer
 *     in time, or whose leader's connection goes down, gets 503.
 *   - A request forwarded here runs here only if this host leads the object
 *     as it sees the cluster; it is never forwarded again (503 and
 *     Retry-After otherwise).
 *   - A WebSocket is proxied: the client's host keeps the real socket (its
 *     peer_host is the leader), the leader a virtual one without a
 *     connection that the object uses as any other (its peer_host is the
 *     client's host). Messages and closes travel between the two.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "front.h"

/* How long a forwarded request may wait for its reply: the leader's own
 * commit timeout, and time to notice it died. */
static uint64_t fwd_timeout_ms(const struct rt_config *c) { return c->commit_timeout_ms + 2 * c->peer_dead_ms; }

static uint64_t fwd_add(struct rt_front *f, struct rt_wait *w, uint32_t to)
{
    uint32_t i;
    if (f->fwd_free != 0) {
        i = f->fwd_free - 1;
        f->fwd_free = f->fwd[i].next_free;
        f->fwd_nfree--;
    } else {
        if (f->fwd_n == f->fwd_cap) {
            f->fwd_cap = f->fwd_cap != 0 ? f->fwd_cap * 2 : 64;
            f->fwd = sdk_xrealloc(f->fwd, f->fwd_cap * sizeof(*f->fwd));
        }
        i = f->fwd_n++;
        f->fwd[i].gen = 0;
    }
    struct fwd_slot *sl = &f->fwd[i];
    sl->w = w;
    sl->gen++;
    sl->to = to;
    sl->deadline_ms = uv_now(&f->shard->loop) + fwd_timeout_ms(f->shard->config);
    return (uint64_t)sl->gen << 32 | i;
}

/* The waiting request of a forward id, taken out of the table; NULL if it
 * is not there (it timed out, or the id is not ours). */
static struct rt_wait *fwd_take(struct rt_front *f, uint64_t id)
{
    uint32_t i = (uint32_t)id;
    if (i >= f->fwd_n || f->fwd[i].w == NULL || f->fwd[i].gen != (uint32_t)(id >> 32))
        return NULL;
    struct rt_wait *w = f->fwd[i].w;
    f->fwd[i].w = NULL;
    f->fwd[i].next_free = f->fwd_free;
    f->fwd_free = i + 1;
    f->fwd_nfree++;
    return w;
}

/* The request's headers as "name\0value\0" pairs (malloc'd). */
static char *headers_blob(h2o_req_t *req, size_t *len)
{
    size_t n = 0;
    for (size_t i = 0; i < req->headers.size; i++)
        n += req->headers.entries[i].name->len + 1 + req->headers.entries[i].value.len + 1;
    char *b = sdk_xmalloc(n + 1), *p = b;
    for (size_t i = 0; i < req->headers.size; i++) {
        h2o_header_t *h = &req->headers.entries[i];
        rt_front_put(&p, h->name->base, h->name->len);
        rt_front_put(&p, h->value.base, h->value.len);
    }
    *len = n;
    return b;
}

static void fwd_send(uint32_t to, const struct router_fwd *x)
{
    size_t n = router_fwd_size(x);
    uint8_t *buf = sdk_xmalloc(n);
    router_fwd_encode(x, buf);
    rt_cluster_send_app(to, buf, n);
    free(buf);
}

/* A request for an object that `leader` leads: forwarded, or redirected. */
void rt_fwd_to_leader(struct rt_front *f, h2o_req_t *req, uint32_t leader, const struct rt_class *cls,
                      const char *name, size_t name_len, h2o_iovec_t rest, h2o_iovec_t query, bool websocket)
{
    const struct rt_config *c = f->shard->config;
    const struct router_host *h = rt_cluster_host(leader);
    bool v6 = strchr(h->client_host, ':') != NULL;
    char base[128];
    snprintf(base, sizeof(base), "http://%s%s%s:%u", v6 ? "[" : "", h->client_host, v6 ? "]" : "", h->client_port);
    char id[16];
    snprintf(id, sizeof(id), "%u", leader);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("dobj-leader"), 0, NULL,
                          h2o_strdup(&req->pool, id, SIZE_MAX).base, strlen(id));
    if (c->redirect) {
        h2o_iovec_t loc = h2o_concat(&req->pool, h2o_iovec_init(base, strlen(base)), req->path);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL, loc.base, loc.len);
        rt_front_respond_errorf(req, 307, "%s/%.*s is led by host %u: %.*s", cls->cls->name, (int)name_len, name,
                                leader, (int)loc.len, loc.base);
        return;
    }
    size_t hlen;
    char *hb = headers_blob(req, &hlen);
    struct router_fwd x = {
        .kind = websocket ? ROUTER_FWD_WS_OPEN : ROUTER_FWD_REQUEST,
        .shard = f->shard->id,
        .cls = {cls->cls->name, (uint32_t)strlen(cls->cls->name)},
        .name = {name, (uint32_t)name_len},
        .method = {req->method.base, (uint32_t)req->method.len},
        .path = {rest.base, (uint32_t)rest.len},
        .query = {query.base, (uint32_t)query.len},
        .headers = {hb, (uint32_t)hlen},
        .body = {req->entity.base, req->entity.base != NULL ? (uint32_t)req->entity.len : 0},
    };
    if (router_fwd_size(&x) > REPL_FRAME_PAYLOAD_MAX || req->entity.len > UINT32_MAX) {
        free(hb);
        rt_front_respond_errorf(req, 413, "a request forwarded to host %u, the leader of %s/%.*s, may carry at most %u "
                                "bytes; send it to that host itself (%s)", leader, cls->cls->name, (int)name_len, name,
                                REPL_FRAME_PAYLOAD_MAX, base);
        return;
    }
    if (f->fwd_n - f->fwd_nfree >= f->shard->config->max_inflight) {
        free(hb);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
        rt_front_respond_json_error(req, 503, "too many requests forwarded and not yet answered; retry later");
        return;
    }
    struct rt_wait *w = rt_front_wait_new(req);
    if (websocket) {
        w->ws_id = (uint64_t)f->shard->id << 48 | ++f->ws_seq;
        w->cls = cls;
        w->hash = rt_object_hash(cls->cls->name, name, name_len);
        w->name = sdk_xstrndup(name, name_len);
        w->name_len = name_len;
    }
    x.ws = w->ws_id;
    x.id = fwd_add(f, w, leader);
    fwd_send(leader, &x);
    free(hb);
}

/* Answers a forwarded request from here (the peer thread or a shard); ws:
 * the leader's socket id of an accepted WebSocket. */
void rt_fwd_answer(uint32_t to, uint32_t shard, uint64_t id, int status, const char *headers, size_t headers_len,
                   const char *body, size_t body_len, uint64_t ws)
{
    struct router_fwd x = {.kind = ROUTER_FWD_REPLY,
                           .shard = shard,
                           .id = id,
                           .status = (uint32_t)status,
                           .served_by = rt_host.config->host_id,
                           .ws = ws,
                           .headers = {headers, (uint32_t)headers_len},
                           .body = {body, (uint32_t)body_len}};
    if (router_fwd_size(&x) > REPL_FRAME_PAYLOAD_MAX || body_len > UINT32_MAX || headers_len > UINT32_MAX) {
        char msg[256];
        snprintf(msg, sizeof(msg), "{\"error\":\"the reply (%zu bytes) is over the %u bytes a reply relayed between "
                 "hosts may carry; ask host %u itself\"}", body_len, REPL_FRAME_PAYLOAD_MAX, rt_host.config->host_id);
        static const char ct[] = "content-type\0application/json";
        x.status = 502;
        x.headers = (struct router_str){ct, sizeof(ct)};
        x.body = (struct router_str){msg, (uint32_t)strlen(msg)};
    }
    fwd_send(to, &x);
}

/* A message or a close from our socket `self` for socket `ws` on host `to`,
 * its other end (a proxied WebSocket). The request id field carries `self`. */
void rt_fwd_ws_send(uint32_t to, uint64_t ws, uint64_t self, enum router_fwd_kind kind, int code,
                    const void *data, size_t len)
{
    struct router_fwd x = {.kind = (uint8_t)kind, .status = (uint32_t)code, .ws = ws, .id = self,
                           .body = {data, (uint32_t)len}};
    fwd_send(to, &x);
}

static void fwd_answer_errorf(uint32_t to, const struct router_fwd *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fwd_answer_errorf(uint32_t to, const struct router_fwd *req, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct sdk_buf b = {0};
    sdk_buf_json_error(&b, msg);
    /* "name\0value\0" pairs; a 503 says when to retry. */
    static const char json[] = "content-type\0application/json";
    static const char json_retry[] = "content-type\0application/json\0retry-after\0" "1";
    if (status == 503)
        rt_fwd_answer(to, req->shard, req->id, status, json_retry, sizeof(json_retry), b.data, b.len, 0);
    else
        rt_fwd_answer(to, req->shard, req->id, status, json, sizeof(json), b.data, b.len, 0);
    sdk_buf_close(&b);
}

/* A forwarded request, as one event message like on_req's. */
static struct rt_event *event_from_fwd(unsigned target, const struct rt_class *cls, uint64_t hash,
                                       const struct router_fwd *x)
{
    size_t nh = 0;
    for (size_t off = 0; off < x->headers.len; nh++)
        for (int k = 0; k < 2; k++)
            off += strlen(x->headers.p + off) + 1;
    size_t size = sizeof(struct rt_event) + nh * sizeof(struct sdk_header) + x->name.len + 1 + x->method.len + 1 +
                  x->path.len + 1 + x->query.len + 1 + x->headers.len + x->body.len + 1;
    struct rt_event *e = sdk_xmalloc(size);
    memset(e, 0, sizeof(*e));
    e->msg.type = RT_MSG_EVENT;
    e->kind = x->kind == ROUTER_FWD_WS_OPEN ? SDK_EV_WS_OPEN : SDK_EV_FETCH;
    e->from = target;
    e->cls = cls;
    e->hash = hash;
    e->headers = (struct sdk_header *)e->buf;
    e->nheaders = nh;
    char *p = e->buf + nh * sizeof(struct sdk_header);
    e->name = rt_front_put(&p, x->name.p, x->name.len);
    e->name_len = x->name.len;
    e->method = rt_front_put(&p, x->method.p, x->method.len);
    e->path = rt_front_put(&p, x->path.p, x->path.len);
    e->query = rt_front_put(&p, x->query.p, x->query.len);
    const char *h = x->headers.p;
    for (size_t i = 0; i < nh; i++) {
        size_t nl = strlen(h);
        e->headers[i].name = rt_front_put(&p, h, nl);
        h += nl + 1;
        size_t vl = strlen(h);
        e->headers[i].value = rt_front_put(&p, h, vl);
        h += vl + 1;
    }
    e->body = rt_front_put(&p, x->body.p, x->body.len);
    e->body_len = x->body.len;
    return e;
}

/* On the peer thread: a request another host forwarded here. It runs here
 * only if this host leads the object as it sees the cluster; never forwarded
 * again. */
static void fwd_request(uint32_t from, const struct router_fwd *x)
{
    const struct rt_config *c = rt_host.config;
    const struct rt_class *cls = rt_class_find(x->cls.p, x->cls.len);
    if (cls == NULL) {
        fwd_answer_errorf(from, x, 404, "unknown class '%.*s' on host %u", (int)(x->cls.len > 64 ? 64 : x->cls.len),
                          x->cls.p, c->host_id);
        return;
    }
    if (x->name.len > RT_NAME_MAX || memchr(x->name.p, '\0', x->name.len) != NULL) {
        fwd_answer_errorf(from, x, 400, "invalid object name: longer than %d bytes or with a NUL", RT_NAME_MAX);
        return;
    }
    uint8_t oid[16];
    rt_object_id(cls->cls->name, x->name.p, x->name.len, oid);
    uint32_t leader = rt_cluster_route(oid);
    if (leader != c->host_id) {
        fwd_answer_errorf(from, x, 503,
                          "host %u does not lead %s/%.*s: host %u does, as host %u sees the cluster; retry",
                          c->host_id, cls->cls->name, (int)x->name.len, x->name.p, leader, c->host_id);
        return;
    }
    bool websocket = x->kind == ROUTER_FWD_WS_OPEN;
    if (websocket && cls->cls->ws_open == NULL) {
        fwd_answer_errorf(from, x, 400, "class '%s' does not accept WebSockets", cls->cls->name);
        return;
    }
    uint64_t hash = rt_object_hash(cls->cls->name, x->name.p, x->name.len);
    unsigned target = rt_shard_of(hash);
    if (!rt_shard_event_reserve(target)) {
        fwd_answer_errorf(from, x, 503, "host %u is overloaded: too many events queued; retry later", c->host_id);
        return;
    }
    struct rt_wait *w = sdk_xcalloc(1, sizeof(*w));
    w->fwd_host = from;
    w->fwd_shard = x->shard;
    w->fwd_id = x->id;
    struct rt_event *e = event_from_fwd(target, cls, hash, x);
    if (websocket) {
        /* The object's socket here is a virtual one on the object's shard
         * (ids with bit 47 set: the shard's own count stays below). */
        static _Atomic uint64_t seq;
        e->ws_id = w->ws_id = (uint64_t)target << 48 | 1ull << 47 | (atomic_fetch_add(&seq, 1) + 1);
        w->fwd_ws = x->ws;
        w->cls = cls;
        w->hash = hash;
        w->name = sdk_xstrndup(x->name.p, x->name.len);
        w->name_len = x->name.len;
    }
    e->wait = w;
    rt_shard_post(NULL, target, &e->msg);
}

/* On the peer thread: lead this object (it has not moved to the new
 * membership yet, cluster.c). An event that runs no handler: its leader
 * starts (recovery) and it is done. Nothing answers; the asking host asks
 * again while the object is still moving. A class this host does not have
 * keeps the object moving: that is worth a warning. */
static void wake(const struct router_fwd *x)
{
    const struct rt_class *cls = rt_class_find(x->cls.p, x->cls.len);
    if (cls == NULL || x->name.len > RT_NAME_MAX || memchr(x->name.p, '\0', x->name.len) != NULL) {
        static int64_t told_us; /* the peer thread's: once every 10 s */
        if (rt_now_us() - told_us < 10000000)
            return;
        told_us = rt_now_us();
        RT_WARN("msg=\"an object to move names a class this host does not have, or a bad name\" class=%.*s",
                (int)(x->cls.len > 64 ? 64 : x->cls.len), x->cls.p);
        return;
    }
    uint8_t oid[16];
    rt_object_id(cls->cls->name, x->name.p, x->name.len, oid);
    if (rt_cluster_route(oid) != rt_host.config->host_id) {
        RT_DEBUG("msg=\"wake for an object another host leads, as this host sees it\" object=%s/%.*s",
                 cls->cls->name, (int)x->name.len, x->name.p);
        return;
    }
    uint64_t hash = rt_object_hash(cls->cls->name, x->name.p, x->name.len);
    unsigned target = rt_shard_of(hash);
    if (!rt_shard_event_reserve(target))
        return; /* overloaded: asked again in a second */
    struct rt_event *e = event_from_fwd(target, cls, hash, x);
    e->wake = true;
    rt_shard_post(NULL, target, &e->msg);
}

void rt_fwd_wake(uint32_t to, const char *cls, size_t cls_len, const char *name, size_t name_len)
{
    struct router_fwd x = {.kind = ROUTER_FWD_WAKE, .cls = {cls, (uint32_t)cls_len},
                           .name = {name, (uint32_t)name_len}};
    if (to == rt_host.config->host_id) {
        if (atomic_load(&rt_host.shards_ready))
            wake(&x);
        return;
    }
    size_t len = router_fwd_size(&x);
    uint8_t *buf = sdk_xmalloc(len);
    router_fwd_encode(&x, buf);
    rt_cluster_send_app(to, buf, len);
    free(buf);
}

void rt_front_forwarded(uint32_t from, const uint8_t *payload, size_t len)
{
    struct router_fwd x;
    if (router_fwd_decode(&x, payload, len) != 0) {
        RT_WARN("msg=\"malformed forwarded request or reply dropped\" from=%u bytes=%zu", from, len);
        return;
    }
    if (!atomic_load(&rt_host.shards_ready)) {
        /* The transport runs before the shards start and after they stop:
         * nothing can wait here then. */
        if (x.kind == ROUTER_FWD_REQUEST || x.kind == ROUTER_FWD_WS_OPEN)
            fwd_answer_errorf(from, &x, 503, "host %u is starting or stopping; retry", rt_host.config->host_id);
        return;
    }
    if (x.kind == ROUTER_FWD_REQUEST || x.kind == ROUTER_FWD_WS_OPEN) {
        fwd_request(from, &x);
        return;
    }
    if (x.kind == ROUTER_FWD_WAKE) {
        wake(&x);
        return;
    }
    if (x.kind == ROUTER_FWD_WS_MESSAGE || x.kind == ROUTER_FWD_WS_CLOSE) {
        unsigned shard = (unsigned)(x.ws >> 48);
        if (shard >= rt_host.nshards) {
            RT_WARN("msg=\"WebSocket traffic for a shard we do not have dropped\" from=%u shard=%u", from, shard);
            return;
        }
        struct rt_fwd_ws *m = sdk_xcalloc(1, sizeof(*m));
        m->msg.type = RT_MSG_FWD_WS;
        m->from = from;
        m->ws = x.ws;
        m->sender = x.id;
        m->close = x.kind == ROUTER_FWD_WS_CLOSE;
        m->code = (int)x.status;
        m->data = sdk_xmemdup(x.body.p, x.body.len);
        m->len = x.body.len;
        rt_shard_post(NULL, shard, &m->msg);
        return;
    }
    if (x.shard >= rt_host.nshards) {
        RT_WARN("msg=\"forwarded reply for a shard we do not have dropped\" from=%u shard=%u", from, x.shard);
        return;
    }
    struct rt_fwd_reply *m = sdk_xcalloc(1, sizeof(*m));
    m->msg.type = RT_MSG_FWD_REPLY;
    m->id = x.id;
    m->status = (int)x.status;
    m->served_by = x.served_by;
    m->headers = sdk_xmemdup(x.headers.p, x.headers.len);
    m->headers_len = x.headers.len;
    m->body = sdk_xmemdup(x.body.p, x.body.len);
    m->body_len = x.body.len;
    m->ws = x.ws;
    rt_shard_post(NULL, x.shard, &m->msg);
}


void rt_front_on_fwd_reply(struct rt_shard *s, struct rt_fwd_reply *m)
{
    struct rt_wait *w = s->front != NULL ? fwd_take(s->front, m->id) : NULL;
    if (w == NULL && m->status == 101 && m->ws != 0) {
        /* We gave up on it (late, or stopping) but the leader opened a
         * socket for it: that one must go (0: we have no socket to name). */
        rt_fwd_ws_send(m->served_by, m->ws, 0, ROUTER_FWD_WS_CLOSE, 1001, "", 0);
    } else if (w != NULL) {
        bool accepted = w->ws_id != 0 && m->status == 101;
        if (accepted && w->req == NULL) {
            /* The client went away meanwhile: the leader's socket goes too. */
            rt_fwd_ws_send(m->served_by, m->ws, w->ws_id, ROUTER_FWD_WS_CLOSE, 1001, "", 0);
        } else if (accepted) {
            struct front_ws *ws = rt_front_ws_accept(s->front, w);
            ws->peer_host = m->served_by;
            ws->peer_id = m->ws;
        } else if (w->req != NULL) {
            rt_front_respond_from(w->req, m->served_by, m->status, m->headers, m->headers_len, m->body, m->body_len);
        }
        rt_front_wait_free(w);
    }
    rt_msg_free(&m->msg);
}


/* A proxied WebSocket's message or close from the other host. */
void rt_front_on_fwd_ws(struct rt_shard *s, struct rt_fwd_ws *m)
{
    struct rt_front *f = s->front;
    struct front_ws *w = f != NULL ? rt_front_ws_lookup(f, m->ws) : NULL;
    if (w == NULL || w->peer_host != m->from || (w->peer_id != m->sender && !(m->close && m->sender == 0))) {
        /* Gone here: the other end must go too. */
        if (!m->close)
            rt_fwd_ws_send(m->from, m->sender, m->ws, ROUTER_FWD_WS_CLOSE, 1011, "", 0);
    } else if (w->conn == NULL) {
        /* The leader's virtual socket: to the object, as from a client. */
        if (m->close) {
            snprintf(w->close_reason, sizeof(w->close_reason), "%.*s", (int)m->len, m->data);
            w->close_code = m->code;
            rt_front_ws_closed(f, w);
        } else if (!rt_shard_event_reserve(rt_shard_of(w->hash))) {
            rt_fwd_ws_send(w->peer_host, w->peer_id, w->id, ROUTER_FWD_WS_CLOSE, 1013, "server overloaded", 17);
            w->close_code = 1013;
            rt_front_ws_closed(f, w);
        } else {
            rt_front_ws_post(f, w, SDK_EV_WS_MESSAGE, m->code == DOBJ_WS_BINARY ? DOBJ_WS_BINARY : DOBJ_WS_TEXT,
                             m->data, m->len);
        }
    } else {
        /* The client's host: what the object sends, to the client. */
        wslay_event_context_ptr ctx = w->conn->ws_ctx;
        if (m->close) {
            /* What a peer sends goes on the client's wire only if it may: a
             * code RFC 6455 lets an endpoint send, a reason of <= 123 bytes. */
            int code = m->code;
            bool sendable = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                            (code >= 3000 && code <= 4999);
            wslay_event_queue_close(ctx, (uint16_t)(sendable ? code : 1011), (const uint8_t *)m->data,
                                    m->len <= 123 ? m->len : 123);
            if (w->close_by_ms == 0)
                w->close_by_ms = uv_now(&s->loop) + WS_CLOSE_WAIT_MS;
        } else if (wslay_event_get_queued_msg_length(ctx) > WS_QUEUED_BYTES_MAX) {
            wslay_event_queue_close(ctx, 1008, (const uint8_t *)"client too slow", 15);
            if (w->close_by_ms == 0)
                w->close_by_ms = uv_now(&s->loop) + WS_CLOSE_WAIT_MS;
        } else {
            struct wslay_event_msg msg = {m->code == DOBJ_WS_BINARY ? WSLAY_BINARY_FRAME : WSLAY_TEXT_FRAME,
                                          (const uint8_t *)m->data, m->len};
            wslay_event_queue_msg(ctx, &msg);
        }
        if (w->conn->sock != NULL)
            h2o_websocket_proceed(w->conn);
    }
    rt_msg_free(&m->msg);
}

/* Forwarded requests whose leader did not answer in time, or whose
 * connection to it went down, get 503 (their outcome is unknown: the leader
 * may have run them); with `all`, every one (the shard stops). */
void rt_fwd_expire(struct rt_front *f, bool all)
{
    uint64_t now = uv_now(&f->shard->loop);
    for (uint32_t i = 0; i < f->fwd_n; i++) {
        struct fwd_slot *sl = &f->fwd[i];
        if (sl->w == NULL)
            continue;
        bool late = now >= sl->deadline_ms, gone = !rt_cluster_host_live(sl->to);
        if (!all && !late && !gone)
            continue;
        uint32_t to = sl->to;
        struct rt_wait *w = fwd_take(f, (uint64_t)sl->gen << 32 | i);
        if (w->req != NULL) {
            h2o_add_header(&w->req->pool, &w->req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
            if (all)
                rt_front_respond_json_error(w->req, 503, "the server is stopping");
            else if (late)
                rt_front_respond_errorf(w->req, 503,
                                        "host %u, the object's leader, did not answer the forwarded request within "
                                        "%llu ms; its outcome is unknown; retry",
                                        to, (unsigned long long)fwd_timeout_ms(f->shard->config));
            else
                rt_front_respond_errorf(w->req, 503, "the connection to host %u, the object's leader, went down before "
                                        "it answered; the request's outcome is unknown; retry", to);
        }
        rt_front_wait_free(w);
    }
}

void rt_fwd_timer_cb(uv_timer_t *h) { rt_fwd_expire(h->data, false); }

/* The leader's side of a proxied socket the object accepted. */
void rt_fwd_accept_virtual(struct rt_front *f, struct rt_wait *wt)
{
    struct front_ws *w = rt_front_ws_new(f, wt);
    w->peer_host = wt->fwd_host;
    w->peer_id = wt->fwd_ws;
    rt_front_ws_insert(f, w);
}
