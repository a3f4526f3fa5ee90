/*
 * http.c: the HTTP and WebSocket front of a shard (h2o, HTTP/1.1).
 *
 * Every shard listens on the same port (SO_REUSEPORT) and takes whatever
 * connections the kernel gives it. A request for /<class>/<name>/<rest> is
 * checked here (class, name, method, body size), copied into one event
 * message and posted to the shard that owns the object. The h2o request waits
 * on this shard (struct rt_wait) until the reply comes back through the
 * object's output gate. WebSocket connections also stay on the shard that
 * accepted them; their messages travel to the object's shard as events, and
 * what the object sends comes back as RT_MSG_WS_OUT.
 *
 * In a cluster, a request for an object another host leads goes there
 * (forward.c), and every response names the host that ran it in `dobj-host`.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "front.h"

static h2o_globalconf_t globalconf;
static bool globalconf_ready;

/* ---- replies ----------------------------------------------------------- */

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return status < 300 ? "OK" : status < 400 ? "Redirect" : status < 500 ? "Client Error" : "Server Error";
    }
}

/* served_by: the host that ran the request (0: this one). */
void rt_front_respond_from(h2o_req_t *req, uint32_t served_by, int status, const char *headers, size_t headers_len,
                           const char *body, size_t body_len)
{
    const struct rt_config *c = rt_host.config;
    if (c->cluster != NULL) {
        char id[16];
        int n = snprintf(id, sizeof(id), "%u", served_by != 0 ? served_by : c->host_id);
        h2o_iovec_t v = h2o_strdup(&req->pool, id, (size_t)n);
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("dobj-host"), 0, NULL, v.base, v.len);
    }
    req->res.status = status;
    req->res.reason = reason_phrase(status);
    size_t off = 0;
    while (off < headers_len) {
        const char *name = headers + off;
        size_t nlen = strlen(name);
        const char *value = name + nlen + 1;
        size_t vlen = strlen(value);
        off += nlen + 1 + vlen + 1;
        /* Framing is h2o's: a handler's copy would contradict it. */
        if (strcasecmp(name, "content-length") == 0 || strcasecmp(name, "transfer-encoding") == 0 ||
            strcasecmp(name, "connection") == 0)
            continue;
        h2o_iovec_t n = h2o_strdup(&req->pool, name, nlen);
        h2o_iovec_t v = h2o_strdup(&req->pool, value, vlen);
        h2o_strtolower(n.base, n.len);
        h2o_add_header_by_str(&req->pool, &req->res.headers, n.base, n.len, 1, NULL, v.base, v.len);
    }
    if (status == 204 || status == 304) {
        body_len = 0;
    } else {
        req->res.content_length = body_len;
    }
    h2o_send_inline(req, body, body_len);
}

static void respond(h2o_req_t *req, int status, const char *headers, size_t headers_len, const char *body,
                    size_t body_len)
{
    rt_front_respond_from(req, 0, status, headers, headers_len, body, body_len);
}

void rt_front_respond_json_error(h2o_req_t *req, int status, const char *msg)
{
    struct sdk_buf b = {0};
    sdk_buf_json_error(&b, msg);
    static const char ct[] = "content-type\0application/json";
    respond(req, status, ct, sizeof(ct), b.data, b.len);
    sdk_buf_close(&b);
}

void rt_front_respond_errorf(h2o_req_t *req, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    rt_front_respond_json_error(req, status, msg);
}

/* ---- WebSocket table --------------------------------------------------- */

static struct front_ws **ws_bucket(struct rt_front *f, uint64_t id)
{
    return &f->ws_buckets[(id * 0x9E3779B97F4A7C15ull >> 32) & (f->ws_nbuckets - 1)];
}

struct front_ws *rt_front_ws_lookup(struct rt_front *f, uint64_t id)
{
    for (struct front_ws *w = *ws_bucket(f, id); w != NULL; w = w->hnext)
        if (w->id == id)
            return w;
    return NULL;
}

void rt_front_ws_insert(struct rt_front *f, struct front_ws *w)
{
    if (f->ws_count + 1 > f->ws_nbuckets) {
        struct front_ws **old = f->ws_buckets;
        size_t n = f->ws_nbuckets;
        f->ws_nbuckets *= 2;
        f->ws_buckets = sdk_xcalloc(f->ws_nbuckets, sizeof(*f->ws_buckets));
        for (size_t i = 0; i < n; i++) {
            struct front_ws *x = old[i];
            while (x != NULL) {
                struct front_ws *next = x->hnext;
                struct front_ws **b = ws_bucket(f, x->id);
                x->hnext = *b;
                *b = x;
                x = next;
            }
        }
        free(old);
    }
    struct front_ws **b = ws_bucket(f, w->id);
    w->hnext = *b;
    *b = w;
    f->ws_count++;
}

static void ws_remove(struct rt_front *f, struct front_ws *w)
{
    struct front_ws **p = ws_bucket(f, w->id);
    while (*p != w)
        p = &(*p)->hnext;
    *p = w->hnext;
    f->ws_count--;
}

/* ---- events ------------------------------------------------------------ */

struct event_spec {
    enum sdk_event_kind kind;
    const struct rt_class *cls;
    uint64_t hash;
    const char *name;
    size_t name_len;
    h2o_req_t *req; /* fetch and ws open: the request to copy */
    h2o_iovec_t path, query;
    const void *data; /* ws message or close reason */
    size_t data_len;
    uint64_t ws_id;
    int ws_kind;
};

char *rt_front_put(char **p, const void *src, size_t len)
{
    char *d = *p;
    if (len > 0)
        memcpy(d, src, len);
    d[len] = '\0';
    *p += len + 1;
    return d;
}

/* Copies everything the object's shard needs into one allocation. */
static struct rt_event *event_new(struct rt_shard *s, const struct event_spec *sp)
{
    h2o_req_t *req = sp->req;
    size_t nh = req != NULL ? req->headers.size : 0;
    size_t size = sizeof(struct rt_event) + nh * sizeof(struct sdk_header) + sp->name_len + 1 + sp->data_len + 1;
    if (req != NULL) {
        size += req->method.len + 1 + sp->path.len + 1 + sp->query.len + 1 + req->entity.len + 1;
        for (size_t i = 0; i < nh; i++)
            size += req->headers.entries[i].name->len + 1 + req->headers.entries[i].value.len + 1;
    }
    struct rt_event *e = sdk_xmalloc(size);
    memset(e, 0, sizeof(*e));
    e->msg.type = RT_MSG_EVENT;
    e->kind = sp->kind;
    e->from = s->id;
    e->cls = sp->cls;
    e->hash = sp->hash;
    e->ws_id = sp->ws_id;
    e->ws_kind = sp->ws_kind;
    e->headers = (struct sdk_header *)e->buf;
    e->nheaders = nh;
    char *p = e->buf + nh * sizeof(struct sdk_header);
    e->name = rt_front_put(&p, sp->name, sp->name_len);
    e->name_len = sp->name_len;
    if (req != NULL) {
        e->method = rt_front_put(&p, req->method.base, req->method.len);
        e->path = rt_front_put(&p, sp->path.base, sp->path.len);
        e->query = rt_front_put(&p, sp->query.base, sp->query.len);
        for (size_t i = 0; i < nh; i++) {
            h2o_header_t *h = &req->headers.entries[i];
            e->headers[i].name = rt_front_put(&p, h->name->base, h->name->len);
            e->headers[i].value = rt_front_put(&p, h->value.base, h->value.len);
        }
        e->body = rt_front_put(&p, req->entity.base, req->entity.base != NULL ? req->entity.len : 0);
        e->body_len = req->entity.base != NULL ? req->entity.len : 0;
    } else {
        e->body = rt_front_put(&p, sp->data, sp->data_len);
        e->body_len = sp->data_len;
    }
    return e;
}

static void on_req_dispose(void *p)
{
    struct rt_wait *w = *(struct rt_wait **)p;
    if (w != NULL)
        w->req = NULL;
}

struct rt_wait *rt_front_wait_new(h2o_req_t *req)
{
    struct rt_wait *w = sdk_xcalloc(1, sizeof(*w));
    w->req = req;
    w->slot = h2o_mem_alloc_shared(&req->pool, sizeof(*w->slot), on_req_dispose);
    *w->slot = w;
    return w;
}

void rt_front_wait_free(struct rt_wait *w)
{
    if (w->req != NULL)
        *w->slot = NULL;
    free(w->name);
    free(w);
}

/* ---- requests ---------------------------------------------------------- */

/* GET /_status: this host's view, one fact per line, for `dobj status`:
 *   self ID                          (0 on a single host)
 *   host ID HOST:PORT ZONE|- self|up|down member|joining|leaving  (each host of the cluster file)
 *   leading N / replicating N        (objects)
 *   awaiting_quorum N                (records not yet durable: the quorum's, or the journal's)
 *   upload_pending N / upload_lag_seconds X
 *   version N / moving N             (the cluster file's; objects held here not moved to it yet) */
static int on_status(h2o_req_t *req)
{
    const struct rt_config *c = rt_host.config;
    struct sdk_buf b = {0};
    sdk_buf_printf(&b, "self %u\n", c->cluster != NULL ? c->host_id : 0);
    const struct router_cluster *all = c->cluster != NULL ? rt_cluster_hosts() : NULL;
    for (unsigned i = 0; all != NULL && i < all->nhosts; i++) {
        const struct router_host *h = &all->hosts[i];
        bool v6 = strchr(h->client_host, ':') != NULL;
        sdk_buf_printf(&b, "host %u %s%s%s:%u %s %s %s\n", h->id, v6 ? "[" : "", h->client_host, v6 ? "]" : "",
                       h->client_port, h->zone[0] != '\0' ? h->zone : "-",
                       h->id == c->host_id ? "self" : rt_cluster_host_live(h->id) ? "up" : "down",
                       rt_cluster_role(all, h->id));
    }
    struct rt_cluster_stats cs;
    rt_cluster_stats(&cs);
    uint64_t waiting = 0;
    for (unsigned i = 0; i < rt_host.nshards; i++)
        waiting += atomic_load_explicit(&rt_host.shards[i].records_inflight, memory_order_relaxed);
    struct wal_upload_stats up = {0};
    rt_upload_stats(&up);
    sdk_buf_printf(&b, "leading %llu\nreplicating %llu\nawaiting_quorum %llu\nupload_pending %llu\n"
                       "upload_lag_seconds %.3f\nversion %llu\nmoving %llu\n",
                   (unsigned long long)cs.leading, (unsigned long long)cs.replicating, (unsigned long long)waiting,
                   (unsigned long long)up.records_pending, (double)up.lag_us / 1e6,
                   (unsigned long long)rt_cluster_version(), (unsigned long long)cs.moving);
    static const char ct[] = "content-type\0text/plain";
    respond(req, 200, ct, sizeof(ct), b.data, b.len);
    sdk_buf_close(&b);
    return 0;
}

static unsigned method_bit(h2o_iovec_t m)
{
    static const struct {
        const char *name;
        unsigned bit;
    } methods[] = {{"GET", DOBJ_GET},       {"HEAD", DOBJ_HEAD},     {"POST", DOBJ_POST},       {"PUT", DOBJ_PUT},
                   {"DELETE", DOBJ_DELETE}, {"PATCH", DOBJ_PATCH}, {"OPTIONS", DOBJ_OPTIONS}};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (h2o_memis(m.base, m.len, methods[i].name, strlen(methods[i].name)))
            return methods[i].bit;
    return 0;
}

static void allow_header(unsigned methods, char *out, size_t len)
{
    static const char *const names[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
    out[0] = '\0';
    for (unsigned i = 0; i < 7; i++)
        if (methods & (1u << i))
            snprintf(out + strlen(out), len - strlen(out), "%s%s", out[0] != '\0' ? ", " : "", names[i]);
}

static int on_hello(h2o_req_t *req)
{
    static const char ct[] = "content-type\0text/plain";
    respond(req, 200, ct, sizeof(ct), "hello\n", 6);
    return 0;
}

/* Prometheus text: the journal's counters, whose ratio (commits per fsync) is
 * the group commit at work, the events run, and the uploads to object
 * storage (lag: age of the oldest record not yet there). */
static int on_metrics(h2o_req_t *req)
{
    struct repl_stats st = {0};
    rt_durable_stats(&st);
    struct rt_cluster_stats cs;
    rt_cluster_stats(&cs); /* zeros on a single host */
    uint64_t events = 0, checkpoints = 0;
    for (unsigned i = 0; i < rt_host.nshards; i++) {
        events += atomic_load_explicit(&rt_host.shards[i].events, memory_order_relaxed);
        checkpoints += atomic_load_explicit(&rt_host.shards[i].checkpoints, memory_order_relaxed);
    }
    struct sdk_buf b = {0};
    sdk_buf_printf(&b,
                   "# TYPE dobj_events_total counter\ndobj_events_total %llu\n"
                   "# TYPE dobj_commits_total counter\ndobj_commits_total %llu\n"
                   "# TYPE dobj_wal_checkpoints_total counter\ndobj_wal_checkpoints_total %llu\n"
                   "# TYPE dobj_journal_batches_total counter\ndobj_journal_batches_total %llu\n"
                   "# TYPE dobj_journal_fsyncs_total counter\ndobj_journal_fsyncs_total %llu\n"
                   "# TYPE dobj_journal_record_bytes_total counter\ndobj_journal_record_bytes_total %llu\n"
                   "# TYPE dobj_journal_written_bytes_total counter\ndobj_journal_written_bytes_total %llu\n"
                   "# TYPE dobj_journal_segment gauge\ndobj_journal_segment %u\n",
                   (unsigned long long)events, (unsigned long long)(st.records - rt_durable_markers() + cs.commits),
                   (unsigned long long)checkpoints,
                   (unsigned long long)st.batches,
                   (unsigned long long)st.fsyncs, (unsigned long long)st.bytes_in,
                   (unsigned long long)st.bytes_written, st.segment);
    struct wal_upload_stats up;
    if (rt_upload_stats(&up))
        sdk_buf_printf(&b,
                       "# TYPE dobj_upload_records_total counter\ndobj_upload_records_total %llu\n"
                       "# TYPE dobj_upload_records_pending gauge\ndobj_upload_records_pending %llu\n"
                       "# TYPE dobj_upload_segments_total counter\ndobj_upload_segments_total %llu\n"
                       "# TYPE dobj_upload_bytes_total counter\ndobj_upload_bytes_total %llu\n"
                       "# TYPE dobj_upload_failures_total counter\ndobj_upload_failures_total %llu\n"
                       "# TYPE dobj_upload_snapshots_total counter\ndobj_upload_snapshots_total %llu\n"
                       "# TYPE dobj_upload_lag_seconds gauge\ndobj_upload_lag_seconds %.3f\n"
                       "# TYPE dobj_upload_store_down gauge\ndobj_upload_store_down %d\n",
                       (unsigned long long)up.records_uploaded, (unsigned long long)up.records_pending,
                       (unsigned long long)up.segments_uploaded, (unsigned long long)up.bytes_uploaded,
                       (unsigned long long)up.failures, (unsigned long long)up.snapshots, (double)up.lag_us / 1e6, up.store_down ? 1 : 0);
    if (rt_cluster_enabled()) {
        unsigned ticking = 0; /* leaders with something to time; the others cost no tick */
        for (unsigned i = 0; i < rt_host.nshards; i++)
            ticking += atomic_load_explicit(&rt_host.shards[i].leaders_ticking_n, memory_order_relaxed);
        sdk_buf_printf(&b,
                       "# TYPE dobj_peer_connected gauge\ndobj_peer_connected %u\n"
                       "# TYPE dobj_peer_messages_out_total counter\ndobj_peer_messages_out_total %llu\n"
                       "# TYPE dobj_peer_messages_in_total counter\ndobj_peer_messages_in_total %llu\n"
                       "# TYPE dobj_peer_bytes_out_total counter\ndobj_peer_bytes_out_total %llu\n"
                       "# TYPE dobj_peer_dropped_total counter\ndobj_peer_dropped_total %llu\n"
                       "# TYPE dobj_peer_auth_failures_total counter\ndobj_peer_auth_failures_total %llu\n"
                       "# TYPE dobj_peer_bad_frames_total counter\ndobj_peer_bad_frames_total %llu\n"
                       "# TYPE dobj_replica_journal_writes_total counter\ndobj_replica_journal_writes_total %llu\n"
                       "# TYPE dobj_replica_journal_fsyncs_total counter\ndobj_replica_journal_fsyncs_total %llu\n"
                       "# TYPE dobj_replica_checkpoints_total counter\ndobj_replica_checkpoints_total %llu\n"
                       "# TYPE dobj_cluster_version gauge\ndobj_cluster_version %llu\n"
                       "# TYPE dobj_objects_moving gauge\ndobj_objects_moving %llu\n"
                       "# TYPE dobj_leaders_ticking gauge\ndobj_leaders_ticking %u\n"
                       "# TYPE dobj_move_wakes_total counter\ndobj_move_wakes_total %llu\n",
                       cs.peers.connected_out, (unsigned long long)cs.peers.msgs_out,
                       (unsigned long long)cs.peers.msgs_in, (unsigned long long)cs.peers.bytes_out,
                       (unsigned long long)(cs.peers.dropped + cs.dropped_msgs),
                       (unsigned long long)cs.peers.auth_failures, (unsigned long long)cs.peers.bad_frames,
                       (unsigned long long)cs.replica_ops, (unsigned long long)cs.journal.fsyncs,
                       (unsigned long long)cs.checkpoints,
                       (unsigned long long)rt_cluster_version(), (unsigned long long)cs.moving, ticking,
                       (unsigned long long)cs.wakes);
    }
    static const char ct[] = "content-type\0text/plain; version=0.0.4";
    respond(req, 200, ct, sizeof(ct), b.data, b.len);
    sdk_buf_close(&b);
    return 0;
}

/* Splits "/<class>/<name>/<rest>" (without the query). */
static int split_path(h2o_iovec_t path, h2o_iovec_t *cls, h2o_iovec_t *name, h2o_iovec_t *rest)
{
    if (path.len == 0 || path.base[0] != '/')
        return -1;
    const char *p = path.base + 1, *end = path.base + path.len;
    const char *slash = memchr(p, '/', (size_t)(end - p));
    if (slash == NULL) {
        *cls = h2o_iovec_init(p, (size_t)(end - p));
        *name = h2o_iovec_init(end, 0);
        *rest = h2o_iovec_init(end, 0);
        return 0;
    }
    *cls = h2o_iovec_init(p, (size_t)(slash - p));
    p = slash + 1;
    slash = memchr(p, '/', (size_t)(end - p));
    const char *name_end = slash != NULL ? slash : end;
    *name = h2o_iovec_init(p, (size_t)(name_end - p));
    *rest = h2o_iovec_init(name_end, (size_t)(end - name_end));
    return 0;
}

/* Takes an event slot on shard `target`, or answers 503 (back-pressure). */
static bool reserve_or_503(h2o_req_t *req, unsigned target)
{
    if (rt_shard_event_reserve(target))
        return true;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
    rt_front_respond_json_error(req, 503, "the server is overloaded: too many events queued; retry later");
    return false;
}

/* The value of `key` in a query string, percent-decoded into out (cap
 * bytes); -1 if absent or too long. */
static long query_param(h2o_iovec_t q, const char *key, char *out, size_t cap)
{
    size_t klen = strlen(key);
    const char *p = q.base, *end = q.base + q.len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp != NULL ? amp : end;
        if ((size_t)(e - p) > klen && memcmp(p, key, klen) == 0 && p[klen] == '=') {
            size_t vlen = (size_t)(e - p) - klen - 1;
            if (vlen >= cap)
                return -1;
            long n = sdk_percent_decode(out, p + klen + 1, vlen, true);
            if (n >= 0)
                out[n] = '\0';
            return n;
        }
        p = e + 1;
    }
    return -1;
}

static bool peer_is_loopback(h2o_req_t *req)
{
    struct sockaddr_storage ss;
    socklen_t n = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    if (n == 0)
        return false;
    if (ss.ss_family == AF_INET)
        return (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
    if (ss.ss_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr);
    return false;
}

/* POST /_admin/restore?object=CLASS/NAME&lsn=N (or &at=RFC3339): restores a
 * live object in place, as a new write (see actor.c). From loopback only. */
static int on_admin_restore(h2o_req_t *req, h2o_iovec_t query)
{
    struct rt_front *f = (struct rt_front *)req->conn->ctx;
    struct rt_shard *s = f->shard;
    if (!peer_is_loopback(req)) {
        rt_front_respond_json_error(req, 403, "admin requests are accepted from loopback addresses only");
        return 0;
    }
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("POST"));
        rt_front_respond_json_error(req, 405, "use POST /_admin/restore?object=CLASS/NAME&lsn=N (or &at=RFC3339)");
        return 0;
    }
    char object[RT_CLASS_NAME_MAX + 2 + RT_NAME_MAX + 1], lsn_s[32], at[64];
    long olen = query_param(query, "object", object, sizeof(object));
    bool has_lsn = query_param(query, "lsn", lsn_s, sizeof(lsn_s)) >= 0;
    bool has_at = query_param(query, "at", at, sizeof(at)) >= 0;
    const char *slash = olen > 0 ? memchr(object, '/', (size_t)olen) : NULL;
    if (slash == NULL || slash == object || slash + 1 == object + olen) {
        rt_front_respond_json_error(req, 400, "missing or malformed 'object': give object=CLASS/NAME");
        return 0;
    }
    const struct rt_class *cls = rt_class_find(object, (size_t)(slash - object));
    if (cls == NULL) {
        rt_front_respond_errorf(req, 404, "unknown class '%.*s'", (int)(slash - object > 64 ? 64 : slash - object),
                                object);
        return 0;
    }
    if (has_lsn == has_at) {
        rt_front_respond_json_error(req, 400, "give exactly one of lsn=N and at=RFC3339");
        return 0;
    }
    uint64_t lsn = 0;
    int64_t at_us = 0;
    if (has_lsn) {
        char *end;
        errno = 0;
        lsn = strtoull(lsn_s, &end, 10);
        if (errno != 0 || *end != '\0' || lsn == 0 || lsn_s[0] == '-') {
            rt_front_respond_errorf(req, 400, "lsn '%s' is not a record number (1, 2, ...)", lsn_s);
            return 0;
        }
    } else if (rt_parse_rfc3339(at, &at_us) != 0) {
        rt_front_respond_errorf(req, 400, "at '%s' is not an RFC 3339 time (2026-12-04T18:00:00Z)", at);
        return 0;
    }
    const char *name = slash + 1;
    size_t name_len = (size_t)(object + olen - name);
    uint64_t hash = rt_object_hash(cls->cls->name, name, name_len);
    unsigned target = rt_shard_of(hash);
    if (!reserve_or_503(req, target))
        return 0;
    struct rt_wait *w = rt_front_wait_new(req);
    struct event_spec sp = {.kind = SDK_EV_FETCH, .cls = cls, .hash = hash, .name = name, .name_len = name_len,
                            .req = req, .path = h2o_iovec_init("", 0), .query = query};
    struct rt_event *e = event_new(s, &sp);
    e->wait = w;
    e->admin_restore = true;
    e->restore_lsn = lsn;
    e->restore_at_us = at_us;
    rt_shard_post(s, target, &e->msg);
    return 0;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    struct rt_front *f = (struct rt_front *)req->conn->ctx;
    struct rt_shard *s = f->shard;
    h2o_iovec_t path = req->path;
    h2o_iovec_t query = h2o_iovec_init("", 0);
    if (req->query_at != SIZE_MAX) {
        query = h2o_iovec_init(path.base + req->query_at + 1, path.len - req->query_at - 1);
        path.len = req->query_at;
    }
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/_hello")))
        return on_hello(req);
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/_metrics")))
        return on_metrics(req);
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/_status")))
        return on_status(req);
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/_admin/restore")))
        return on_admin_restore(req, query);

    h2o_iovec_t cname, rawname, rest;
    if (split_path(path, &cname, &rawname, &rest) != 0 || cname.len == 0) {
        rt_front_respond_json_error(req, 404, "no class in the path: use /<class>/<name>/...");
        return 0;
    }
    const struct rt_class *cls = rt_class_find(cname.base, cname.len);
    if (cls == NULL) {
        rt_front_respond_errorf(req, 404, "unknown class '%.*s'", (int)(cname.len > 64 ? 64 : cname.len), cname.base);
        return 0;
    }
    char name[RT_NAME_MAX + 1];
    const char *why = NULL;
    long name_len = rt_name_decode(rawname.base, rawname.len, name, &why);
    if (name_len < 0) {
        rt_front_respond_errorf(req, 400, "invalid object name: %s", why);
        return 0;
    }
    unsigned bit = method_bit(req->method);
    unsigned allowed = cls->cls->methods;
    if (allowed != 0 && (bit & allowed) == 0) {
        char allow[128];
        allow_header(allowed, allow, sizeof(allow));
        h2o_iovec_t v = h2o_strdup(&req->pool, allow, strlen(allow));
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, v.base, v.len);
        rt_front_respond_errorf(req, 405, "method %.*s is not allowed on class '%s' (allowed: %s)",
                                (int)(req->method.len > 16 ? 16 : req->method.len), req->method.base, cls->cls->name,
                                allow);
        return 0;
    }
    if (req->entity.base != NULL && req->entity.len > s->config->max_body) {
        rt_front_respond_errorf(req, 413, "request body of %zu bytes is over the limit of %zu bytes", req->entity.len,
                                s->config->max_body);
        return 0;
    }
    const char *ws_key = NULL;
    if (h2o_is_websocket_handshake(req, &ws_key) != 0) {
        rt_front_respond_json_error(req, 400, "malformed WebSocket handshake (sec-websocket-key)");
        return 0;
    }
    if (ws_key != NULL && cls->cls->ws_open == NULL) {
        rt_front_respond_errorf(req, 400, "class '%s' does not accept WebSockets", cls->cls->name);
        return 0;
    }
    if (s->config->cluster != NULL) {
        uint8_t oid[16];
        rt_object_id(cls->cls->name, name, (size_t)name_len, oid);
        uint32_t leader = rt_cluster_route(oid);
        if (leader != s->config->host_id) {
            rt_fwd_to_leader(f, req, leader, cls, name, (size_t)name_len, rest, query, ws_key != NULL);
            return 0;
        }
    }
    uint64_t hash = rt_object_hash(cls->cls->name, name, (size_t)name_len);
    unsigned target = rt_shard_of(hash);
    if (!reserve_or_503(req, target))
        return 0;
    struct rt_wait *w = rt_front_wait_new(req);
    struct event_spec sp = {.kind = SDK_EV_FETCH, .cls = cls, .hash = hash, .name = name,
                            .name_len = (size_t)name_len, .req = req, .path = rest, .query = query};
    if (ws_key != NULL) {
        sp.kind = SDK_EV_WS_OPEN;
        sp.ws_id = w->ws_id = (uint64_t)s->id << 48 | ++f->ws_seq;
        w->cls = cls;
        w->hash = hash;
        w->name = sdk_xstrndup(name, (size_t)name_len);
        w->name_len = (size_t)name_len;
    }
    struct rt_event *e = event_new(s, &sp);
    e->wait = w;
    rt_shard_post(s, target, &e->msg);
    return 0;
}

/* ---- WebSockets -------------------------------------------------------- */

void rt_front_ws_post(struct rt_front *f, struct front_ws *w, enum sdk_event_kind kind, int ws_kind, const void *data,
                      size_t len)
{
    struct event_spec sp = {.kind = kind, .cls = w->cls, .hash = w->hash, .name = w->name,
                            .name_len = w->name_len, .data = data, .data_len = len, .ws_id = w->id,
                            .ws_kind = ws_kind};
    struct rt_event *e = event_new(f->shard, &sp);
    rt_shard_post(f->shard, rt_shard_of(w->hash), &e->msg);
}

/* Tells the object that a socket it accepted is gone. */
static void ws_post_gone(struct rt_front *f, struct rt_wait *wt)
{
    struct front_ws w = {.id = wt->ws_id, .cls = wt->cls, .hash = wt->hash, .name = wt->name,
                         .name_len = wt->name_len};
    rt_front_ws_post(f, &w, SDK_EV_WS_CLOSE, 1006, "", 0);
}

/* The socket is gone: the object hears it (on the client's host of a
 * proxied socket, the leader's host does, and tells it). */
void rt_front_ws_closed(struct rt_front *f, struct front_ws *w)
{
    if (w->peer_host != 0 && w->conn != NULL) {
        if (!w->peer_gone)
            rt_fwd_ws_send(w->peer_host, w->peer_id, w->id, ROUTER_FWD_WS_CLOSE,
                           w->close_code >= 1000 && w->close_code <= 4999 ? w->close_code : 1006, w->close_reason,
                           strlen(w->close_reason));
    } else {
        rt_front_ws_post(f, w, SDK_EV_WS_CLOSE, w->close_code, w->close_reason, strlen(w->close_reason));
    }
    ws_remove(f, w);
    if (w->conn != NULL)
        h2o_websocket_close(w->conn);
    free(w->name);
    free(w);
}

static void on_ws_event(h2o_websocket_conn_t *conn, const struct wslay_event_on_msg_recv_arg *arg)
{
    struct front_ws *w = conn->data;
    struct rt_front *f = w->front;
    if (arg == NULL) {
        rt_front_ws_closed(f, w);
        return;
    }
    switch (arg->opcode) {
    case WSLAY_TEXT_FRAME:
    case WSLAY_BINARY_FRAME:
        if (w->peer_host != 0) {
            if (!w->peer_gone)
                rt_fwd_ws_send(w->peer_host, w->peer_id, w->id, ROUTER_FWD_WS_MESSAGE,
                               arg->opcode == WSLAY_TEXT_FRAME ? DOBJ_WS_TEXT : DOBJ_WS_BINARY, arg->msg,
                               arg->msg_length);
            break;
        }
        if (!rt_shard_event_reserve(rt_shard_of(w->hash))) {
            RT_WARN("msg=\"closing a WebSocket: too many events queued\" shard=%u ws=%llu", f->shard->id,
                    (unsigned long long)w->id);
            wslay_event_queue_close(conn->ws_ctx, 1013, (const uint8_t *)"server overloaded", 17);
            break;
        }
        rt_front_ws_post(f, w, SDK_EV_WS_MESSAGE, arg->opcode == WSLAY_TEXT_FRAME ? DOBJ_WS_TEXT : DOBJ_WS_BINARY,
                         arg->msg, arg->msg_length);
        break;
    case WSLAY_CONNECTION_CLOSE: {
        w->close_code = arg->status_code != 0 ? arg->status_code : 1005;
        /* The close frame's payload is the code (2 bytes) and the reason. */
        size_t rlen = arg->msg_length > 2 ? arg->msg_length - 2 : 0;
        if (rlen >= sizeof(w->close_reason))
            rlen = sizeof(w->close_reason) - 1;
        memcpy(w->close_reason, rlen > 0 ? (const char *)arg->msg + 2 : "", rlen);
        w->close_reason[rlen] = '\0';
        break;
    }
    default:
        break;
    }
}

struct front_ws *rt_front_ws_new(struct rt_front *f, struct rt_wait *wt)
{
    struct front_ws *w = sdk_xcalloc(1, sizeof(*w));
    w->id = wt->ws_id;
    w->front = f;
    w->cls = wt->cls;
    w->hash = wt->hash;
    w->name = wt->name;
    w->name_len = wt->name_len;
    wt->name = NULL;
    w->close_code = 1006;
    return w;
}

struct front_ws *rt_front_ws_accept(struct rt_front *f, struct rt_wait *wt)
{
    const char *key = NULL;
    h2o_is_websocket_handshake(wt->req, &key);
    struct front_ws *w = rt_front_ws_new(f, wt);
    w->conn = h2o_upgrade_to_websocket(wt->req, key, w, on_ws_event);
    wslay_event_config_set_max_recv_msg_length(w->conn->ws_ctx, f->shard->config->ws_msg_max);
    rt_front_ws_insert(f, w);
    return w;
}

void rt_front_on_reply(struct rt_shard *s, struct rt_reply *r)
{
    struct rt_front *f = s->front;
    struct rt_wait *w = r->wait;
    if (w->fwd_host != 0 && r->ws_accept) {
        rt_fwd_accept_virtual(f, w);
        rt_fwd_answer(w->fwd_host, w->fwd_shard, w->fwd_id, 101, NULL, 0, NULL, 0, w->ws_id);
    } else if (w->fwd_host != 0) {
        rt_fwd_answer(w->fwd_host, w->fwd_shard, w->fwd_id, r->status, r->headers, r->headers_len, r->body, r->body_len,
                      0);
    } else if (w->req == NULL) {
        /* The client went away while the object worked. A socket the object
         * accepted must be closed on its side too. */
        if (r->ws_accept)
            ws_post_gone(f, w);
    } else if (r->ws_accept) {
        rt_front_ws_accept(f, w);
    } else {
        respond(w->req, r->status, r->headers, r->headers_len, r->body, r->body_len);
    }
    rt_front_wait_free(w);
    rt_msg_free(&r->msg);
}

void rt_front_on_ws_out(struct rt_shard *s, struct rt_ws_out *m)
{
    struct rt_front *f = s->front;
    struct sdk_out *o = m->out;
    struct front_ws *w = rt_front_ws_lookup(f, o->ws_id);
    if (w != NULL && w->conn == NULL) {
        /* A virtual socket: its client is on another host. */
        if (o->kind == SDK_OUT_WS_SEND) {
            rt_fwd_ws_send(w->peer_host, w->peer_id, w->id, ROUTER_FWD_WS_MESSAGE, o->ws_kind, o->data, o->len);
        } else {
            int code = o->ws_kind >= 1000 && o->ws_kind <= 4999 ? o->ws_kind : 1000;
            rt_fwd_ws_send(w->peer_host, w->peer_id, w->id, ROUTER_FWD_WS_CLOSE, code, o->data, o->len);
            if (w->close_by_ms == 0)
                w->close_by_ms = uv_now(&s->loop) + WS_CLOSE_WAIT_MS;
        }
    } else if (w != NULL) {
        wslay_event_context_ptr ctx = w->conn->ws_ctx;
        bool closing = o->kind == SDK_OUT_WS_CLOSE;
        if (o->kind == SDK_OUT_WS_SEND && wslay_event_get_queued_msg_length(ctx) > WS_QUEUED_BYTES_MAX) {
            closing = true;
            RT_WARN("msg=\"closing a WebSocket whose client does not read\" shard=%u ws=%llu", s->id,
                    (unsigned long long)w->id);
            wslay_event_queue_close(ctx, 1008, (const uint8_t *)"client too slow", 15);
        } else if (o->kind == SDK_OUT_WS_SEND) {
            struct wslay_event_msg msg = {o->ws_kind == DOBJ_WS_TEXT ? WSLAY_TEXT_FRAME : WSLAY_BINARY_FRAME,
                                          (const uint8_t *)o->data, o->len};
            wslay_event_queue_msg(ctx, &msg);
        } else {
            wslay_event_queue_close(ctx, (uint16_t)o->ws_kind, (const uint8_t *)o->data, o->len);
        }
        if (closing && w->close_by_ms == 0)
            w->close_by_ms = uv_now(&s->loop) + WS_CLOSE_WAIT_MS;
        /* Until h2o finishes the upgrade there is no socket: it flushes then. */
        if (w->conn->sock != NULL)
            h2o_websocket_proceed(w->conn);
    }
    rt_msg_free(&m->msg);
}

/* Drops the connections whose clients did not answer our close in time. */
static void on_ws_timer(uv_timer_t *h)
{
    struct rt_front *f = h->data;
    uint64_t now = uv_now(h->loop);
    for (size_t i = 0; i < f->ws_nbuckets; i++) {
        struct front_ws *w = f->ws_buckets[i];
        while (w != NULL) {
            struct front_ws *next = w->hnext;
            /* Without a socket the upgrade is still under way: h2o owns it. */
            if (w->close_by_ms != 0 && now >= w->close_by_ms && (w->conn == NULL || w->conn->sock != NULL)) {
                RT_INFO("msg=\"dropping a WebSocket that did not answer our close\" shard=%u ws=%llu",
                        f->shard->id, (unsigned long long)w->id);
                rt_front_ws_closed(f, w);
            } else if (w->peer_host != 0 && !w->peer_gone && !rt_cluster_host_live(w->peer_host)) {
                /* The other end's host is gone. Its leader: the client is
                 * told to reconnect (1012), and a reconnect reaches the new
                 * leader. Its client's host: the object hears the socket
                 * went away. */
                RT_INFO("msg=\"closing a proxied WebSocket: host %u is gone\" shard=%u ws=%llu", w->peer_host,
                        f->shard->id, (unsigned long long)w->id);
                w->peer_gone = true;
                if (w->conn == NULL) {
                    rt_front_ws_closed(f, w);
                } else if (w->close_by_ms == 0) {
                    static const char why[] = "the object's host went away; reconnect";
                    wslay_event_queue_close(w->conn->ws_ctx, 1012, (const uint8_t *)why, sizeof(why) - 1);
                    w->close_by_ms = now + WS_CLOSE_WAIT_MS;
                    if (w->conn->sock != NULL)
                        h2o_websocket_proceed(w->conn);
                }
            }
            w = next;
        }
    }
}

/* ---- listening --------------------------------------------------------- */

static void on_accept(uv_stream_t *listener, int status)
{
    struct rt_front *f = listener->data;
    if (status != 0)
        return;
    uv_tcp_t *conn = h2o_mem_alloc(sizeof(*conn));
    uv_tcp_init(listener->loop, conn);
    if (uv_accept(listener, (uv_stream_t *)conn) != 0) {
        uv_close((uv_handle_t *)conn, (uv_close_cb)free);
        return;
    }
    uv_tcp_nodelay(conn, 1);
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)conn, (uv_close_cb)free);
    h2o_accept(&f->accept_ctx, sock);
}

static void globalconf_init(const struct rt_config *c)
{
    h2o_config_init(&globalconf);
    globalconf.server_name = h2o_iovec_init(H2O_STRLIT("dobj"));
    /* Bodies a little over the limit still reach on_req, which answers with
     * a JSON 413; h2o refuses far larger ones itself. */
    globalconf.max_request_entity_size = c->max_body * 2 + 65536;
    h2o_hostconf_t *host = h2o_config_register_host(&globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *h = h2o_create_handler(path, sizeof(*h));
    h->on_req = on_req;
    globalconf_ready = true;
}

static int listen_addr(const struct rt_config *c, struct sockaddr_storage *ss)
{
    const char *host = c->listen_host;
    char buf[128];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(buf)) {
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
        host = buf;
    }
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (uv_ip4_addr(host, c->listen_port, (struct sockaddr_in *)ss) == 0)
        return 0;
    return uv_ip6_addr(host, c->listen_port, (struct sockaddr_in6 *)ss);
}

int rt_front_start(struct rt_shard *s, char *err, size_t errlen)
{
    const struct rt_config *c = s->config;
    if (!globalconf_ready)
        globalconf_init(c);
    struct rt_front *f = sdk_xcalloc(1, sizeof(*f));
    s->front = f;
    f->shard = s;
    f->ws_nbuckets = 64;
    f->ws_buckets = sdk_xcalloc(f->ws_nbuckets, sizeof(*f->ws_buckets));
    h2o_context_init(&f->ctx, &s->loop, &globalconf);
    uv_timer_init(&s->loop, &f->ws_timer);
    f->ws_timer.data = f;
    uv_timer_start(&f->ws_timer, on_ws_timer, 1000, 1000);
    uv_unref((uv_handle_t *)&f->ws_timer);
    uv_timer_init(&s->loop, &f->fwd_timer);
    f->fwd_timer.data = f;
    if (c->cluster != NULL) {
        uv_timer_start(&f->fwd_timer, rt_fwd_timer_cb, 50, 50);
        uv_unref((uv_handle_t *)&f->fwd_timer);
    }
    f->accept_ctx.ctx = &f->ctx;
    f->accept_ctx.hosts = globalconf.hosts;

    struct sockaddr_storage ss;
    if (listen_addr(c, &ss) != 0) {
        snprintf(err, errlen, "option 'listen': '%s' is not an IPv4 or IPv6 address", c->listen_host);
        return DOBJ_ECONFIG;
    }
    uv_tcp_init_ex(&s->loop, &f->listener, ss.ss_family);
    f->listener.data = f;
    uv_os_fd_t fd;
    int one = 1, rc = uv_fileno((uv_handle_t *)&f->listener, &fd);
    if (rc == 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
        rc = UV_EINVAL;
    if (rc == 0)
        rc = uv_tcp_bind(&f->listener, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&f->listener, 1024, on_accept);
    if (rc != 0) {
        snprintf(err, errlen, "can not listen on %s:%d: %s", c->listen_host, c->listen_port, uv_strerror(rc));
        return DOBJ_EIO;
    }
    f->listening = true;
    return 0;
}

void rt_front_stop(struct rt_shard *s)
{
    struct rt_front *f = s->front;
    uv_timer_stop(&f->ws_timer);
    uv_timer_stop(&f->fwd_timer);
    rt_fwd_expire(f, true);
    if (f->listening) {
        uv_close((uv_handle_t *)&f->listener, NULL);
        f->listening = false;
    }
}
