/*
 * peer.c: the peer transport (see replicate.h): one thread, one libuv loop,
 * TCP connections between hosts carrying wire.c frames.
 *
 * A connection's life, one state machine for both ends:
 *
 *   dialled:  CONNECTING → (HELLO sent) HELLO → (CHALLENGE checked, AUTH sent) READY
 *   accepted: (HELLO read, CHALLENGE sent) CHALLENGE → (AUTH checked) READY
 *   any → CLOSING on an error, a failed proof, a malformed frame or silence
 *
 * Before READY a frame may carry at most HANDSHAKE_MAX bytes, so a stranger
 * can make us hold little memory. Messages go out only on dialled
 * connections (one per remote host); accepted connections only bring them in.
 * Both send heartbeats. A dialled connection that closes is dialled again
 * after a backoff that doubles from 50 ms to 2 s, with jitter.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <uv.h>

#include "replicate.h"
#include "sdk_util.h"
#include "wal.h"

#define REMOTES_MAX 64
#define INBOUND_MAX 256
#define HANDSHAKE_MAX 128
#define WRITE_FRAMES_MAX 256
#define INFLIGHT_BYTES_MAX (8u << 20)
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 2000
#define READ_CHUNK (64u << 10)

struct frame {
    struct frame *next;
    uint32_t to;
    uint32_t len;      /* header + payload */
    uint64_t queued_ms; /* APP frames: not sent later than dead_ms after this */
    uint8_t data[];
};


enum conn_state { C_CONNECTING = 1, C_HELLO, C_CHALLENGE, C_READY, C_CLOSING };

struct conn {
    struct repl_peers *p;
    uv_tcp_t tcp;
    uv_connect_t connect;
    bool outbound;
    enum conn_state state;
    uint32_t peer; /* host id: known when dialled, from HELLO when accepted */
    uint8_t cnonce[REPL_AUTH_NONCE_BYTES], snonce[REPL_AUTH_NONCE_BYTES];
    uint8_t *rbuf;
    size_t roff, rlen, rcap;
    uint64_t recv_ms, send_ms;
    uint64_t inflight;
    struct conn *next; /* accepted list */
};

struct write_req {
    uv_write_t req;
    struct conn *c;
    unsigned n;
    uint64_t bytes;
    struct frame *frames[WRITE_FRAMES_MAX];
    uv_buf_t bufs[WRITE_FRAMES_MAX];
};

struct remote {
    struct repl_peer_addr addr;
    struct conn *out;
    struct frame *qhead, *qtail;
    uint64_t qbytes;
    unsigned napp; /* APP frames in the queue */
    atomic_bool retired; /* no longer in the cluster: not dialled, sends dropped */
    atomic_int in_ready; /* its connections to us that are authenticated */
    uint64_t redial_ms, backoff_ms;
    atomic_bool up;
};

struct post {
    struct post *next;
    void (*fn)(void *);
    void *arg;
};

struct repl_peers {
    struct repl_peers_config cfg;
    char *secret;
    struct repl_peer_addr self_addr;
    pthread_t thread;
    uv_loop_t loop;
    uv_async_t async;
    uv_timer_t timer;
    uv_tcp_t listener;

    pthread_mutex_t mu; /* guards the inbox and posts */
    struct frame *inbox, *inbox_tail;
    struct post *posts, *posts_tail;
    atomic_bool stopping;

    struct remote remotes[REMOTES_MAX];
    _Atomic unsigned nremotes; /* grows on the transport's thread only (repl_peers_set_hosts) */
    struct conn *accepted;
    unsigned naccepted;

    _Atomic uint64_t msgs_out, msgs_in, bytes_out, bytes_in, dropped, auth_failures, bad_frames;
    uint64_t started_ms;
};

static uint64_t now_ms(void) { return uv_hrtime() / 1000000; }

static void peers_flush(struct repl_peers *p, struct remote *r);

static bool is_app(const struct frame *f) { return f->data[5] == REPL_FRAME_APP; }

/* Drops the queued APP frames for r that must not go out any more: all of
 * them (`all`: its connection went down, and their senders are told the
 * outcome is unknown), or those queued over dead_ms ago. A client's request
 * must not run long after its client was told it failed. */
static void drop_app_frames(struct repl_peers *p, struct remote *r, bool all)
{
    if (r->napp == 0)
        return;
    uint64_t now = uv_hrtime() / 1000000;
    struct frame **pp = &r->qhead, *last = NULL;
    while (*pp != NULL) {
        struct frame *f = *pp;
        if (is_app(f) && (all || now - f->queued_ms >= p->cfg.dead_ms)) {
            *pp = f->next;
            r->qbytes -= f->len;
            r->napp--;
            atomic_fetch_add(&p->dropped, 1);
            free(f);
        } else {
            last = f;
            pp = &f->next;
        }
    }
    r->qtail = last;
}

uint64_t repl_peers_now_ms(struct repl_peers *p)
{
    (void)p;
    return now_ms();
}

static struct remote *remote_of(struct repl_peers *p, uint32_t id)
{
    for (unsigned i = 0; i < p->nremotes; i++)
        if (p->remotes[i].addr.id == id)
            return &p->remotes[i];
    return NULL;
}

static const char *conn_name(const struct conn *c, char *buf, size_t len)
{
    if (c->peer != UINT32_MAX)
        snprintf(buf, len, "host %u (%s)", c->peer, c->outbound ? "dialled" : "accepted");
    else
        snprintf(buf, len, "an unidentified peer");
    return buf;
}

/* ---- closing ------------------------------------------------------------ */

static void conn_freed(uv_handle_t *h)
{
    struct conn *c = h->data;
    free(c->rbuf);
    free(c);
}

static void conn_close(struct conn *c, int level, const char *why)
{
    if (c->state == C_CLOSING)
        return;
    struct repl_peers *p = c->p;
    char name[64];
    if (why != NULL && !atomic_load(&p->stopping))
        repl_logf(level, "peer: closing connection with %s: %s", conn_name(c, name, sizeof(name)), why);
    bool was_ready = c->state == C_READY;
    c->state = C_CLOSING;
    if (c->outbound) {
        struct remote *r = remote_of(p, c->peer);
        if (r != NULL && r->out == c) {
            r->out = NULL;
            atomic_store(&r->up, false);
            drop_app_frames(p, r, true);
            if (was_ready)
                r->backoff_ms = BACKOFF_MIN_MS;
            uint64_t jitter = uv_hrtime() % (r->backoff_ms / 2 + 1);
            r->redial_ms = now_ms() + r->backoff_ms / 2 + jitter;
            r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
        }
    } else {
        struct remote *r = was_ready ? remote_of(p, c->peer) : NULL;
        if (r != NULL)
            atomic_fetch_sub(&r->in_ready, 1);
        for (struct conn **pp = &p->accepted; *pp != NULL; pp = &(*pp)->next)
            if (*pp == c) {
                *pp = c->next;
                p->naccepted--;
                break;
            }
    }
    uv_close((uv_handle_t *)&c->tcp, conn_freed);
}

/* ---- writing ------------------------------------------------------------ */

static void write_done(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    struct conn *c = w->c;
    for (unsigned i = 0; i < w->n; i++)
        free(w->frames[i]);
    if (c->state != C_CLOSING) {
        c->inflight -= w->bytes;
        if (status < 0)
            conn_close(c, 1, uv_strerror(status));
    }
    free(w);
    if (c->state == C_READY && c->outbound) {
        struct remote *r = remote_of(c->p, c->peer);
        if (r != NULL && r->qhead != NULL)
            peers_flush(c->p, r);
    }
}

/* Writes frames (taken) on c in one uv_write. */
static void conn_write(struct conn *c, struct frame **frames, unsigned n)
{
    struct write_req *w = sdk_xcalloc(1, sizeof(*w));
    w->c = c;
    w->n = n;
    for (unsigned i = 0; i < n; i++) {
        w->frames[i] = frames[i];
        w->bufs[i] = uv_buf_init((char *)frames[i]->data, frames[i]->len);
        w->bytes += frames[i]->len;
    }
    c->inflight += w->bytes;
    c->send_ms = now_ms();
    int rv = uv_write(&w->req, (uv_stream_t *)&c->tcp, w->bufs, n, write_done);
    if (rv != 0) {
        c->inflight -= w->bytes;
        for (unsigned i = 0; i < n; i++)
            free(w->frames[i]);
        free(w);
        conn_close(c, 1, uv_strerror(rv));
    }
}

static struct frame *frame_new(uint8_t type, const uint8_t *payload, uint32_t len)
{
    struct frame *f = sdk_xmalloc(sizeof(*f) + REPL_FRAME_HEADER_BYTES + len);
    f->next = NULL;
    f->to = 0;
    f->len = REPL_FRAME_HEADER_BYTES + len;
    if (len > 0)
        memcpy(f->data + REPL_FRAME_HEADER_BYTES, payload, len);
    repl_frame_header(f->data, type, f->data + REPL_FRAME_HEADER_BYTES, len);
    return f;
}

static void conn_send(struct conn *c, uint8_t type, const uint8_t *payload, uint32_t len)
{
    struct frame *f = frame_new(type, payload, len);
    conn_write(c, &f, 1);
}

static void peers_flush(struct repl_peers *p, struct remote *r)
{
    drop_app_frames(p, r, false);
    struct conn *c = r->out;
    while (c != NULL && c->state == C_READY && r->qhead != NULL && c->inflight < INFLIGHT_BYTES_MAX) {
        struct frame *batch[WRITE_FRAMES_MAX];
        unsigned n = 0;
        while (r->qhead != NULL && n < WRITE_FRAMES_MAX) {
            struct frame *f = r->qhead;
            r->qhead = f->next;
            r->qbytes -= f->len;
            r->napp -= is_app(f);
            batch[n++] = f;
        }
        if (r->qhead == NULL)
            r->qtail = NULL;
        conn_write(c, batch, n);
        c = r->out; /* a failed write closes it */
    }
}

/* ---- the handshake and frames ------------------------------------------- */

static void deliver(struct repl_peers *p, const uint8_t *payload, uint32_t len, uint32_t from_host, bool check_from)
{
    struct repl_msg m;
    int rv = repl_msg_decode(&m, payload, len);
    if (rv != 0 || m.to != p->cfg.self || (check_from && m.from != from_host)) {
        if (rv == 0)
            repl_msg_release(&m);
        atomic_fetch_add(&p->bad_frames, 1);
        repl_logf(1, "peer: message from host %u dropped: %s", from_host,
                  rv != 0 ? repl_wire_strerror(rv) : "addressed to another host or from another sender");
        return;
    }
    atomic_fetch_add(&p->msgs_in, 1);
    atomic_fetch_add(&p->bytes_in, len);
    p->cfg.recv(p->cfg.arg, &m);
}

static bool on_hello(struct conn *c, const uint8_t *pl, uint32_t len)
{
    struct repl_peers *p = c->p;
    if (len != 4 + REPL_AUTH_NONCE_BYTES)
        return false;
    uint32_t id = wal_get_u32(pl);
    struct remote *r = remote_of(p, id);
    if (id == p->cfg.self || r == NULL || atomic_load(&r->retired)) {
        atomic_fetch_add(&p->auth_failures, 1);
        repl_logf(1, "peer: a connection claims host id %u, which is not in the cluster", id);
        return false;
    }
    c->peer = id;
    memcpy(c->cnonce, pl + 4, REPL_AUTH_NONCE_BYTES);
    if (getrandom(c->snonce, sizeof(c->snonce), 0) != (ssize_t)sizeof(c->snonce))
        return false;
    uint8_t out[4 + REPL_AUTH_NONCE_BYTES + REPL_AUTH_MAC_BYTES];
    wal_put_u32(out, p->cfg.self);
    memcpy(out + 4, c->snonce, REPL_AUTH_NONCE_BYTES);
    repl_auth_mac(out + 4 + REPL_AUTH_NONCE_BYTES, p->secret, 'S', id, p->cfg.self, c->cnonce, c->snonce);
    c->state = C_CHALLENGE;
    conn_send(c, REPL_FRAME_CHALLENGE, out, sizeof(out));
    return true;
}

static bool on_challenge(struct conn *c, const uint8_t *pl, uint32_t len)
{
    struct repl_peers *p = c->p;
    if (len != 4 + REPL_AUTH_NONCE_BYTES + REPL_AUTH_MAC_BYTES || wal_get_u32(pl) != c->peer)
        return false;
    memcpy(c->snonce, pl + 4, REPL_AUTH_NONCE_BYTES);
    uint8_t want[REPL_AUTH_MAC_BYTES];
    repl_auth_mac(want, p->secret, 'S', p->cfg.self, c->peer, c->cnonce, c->snonce);
    if (!repl_auth_equal(want, pl + 4 + REPL_AUTH_NONCE_BYTES)) {
        atomic_fetch_add(&p->auth_failures, 1);
        conn_close(c, 0, "it does not know the cluster secret");
        return true;
    }
    uint8_t mac[REPL_AUTH_MAC_BYTES];
    repl_auth_mac(mac, p->secret, 'C', p->cfg.self, c->peer, c->cnonce, c->snonce);
    conn_send(c, REPL_FRAME_AUTH, mac, sizeof(mac));
    if (c->state == C_CLOSING)
        return true;
    struct remote *r = remote_of(p, c->peer);
    if (r == NULL || r->out != c)
        return false;
    c->state = C_READY;
    atomic_store(&r->up, true);
    r->backoff_ms = BACKOFF_MIN_MS;
    peers_flush(p, r);
    return true;
}

static bool on_auth(struct conn *c, const uint8_t *pl, uint32_t len)
{
    struct repl_peers *p = c->p;
    if (len != REPL_AUTH_MAC_BYTES)
        return false;
    uint8_t want[REPL_AUTH_MAC_BYTES];
    repl_auth_mac(want, p->secret, 'C', c->peer, p->cfg.self, c->cnonce, c->snonce);
    if (!repl_auth_equal(want, pl)) {
        atomic_fetch_add(&p->auth_failures, 1);
        conn_close(c, 0, "it does not know the cluster secret");
        return true;
    }
    c->state = C_READY;
    struct remote *r = remote_of(p, c->peer);
    if (r != NULL)
        atomic_fetch_add(&r->in_ready, 1);
    return true;
}

/* One verified frame. false: a protocol violation (the caller closes). */
static bool on_frame(struct conn *c, uint8_t type, const uint8_t *pl, uint32_t len)
{
    switch (c->state) {
    case C_HELLO:
        return c->outbound && type == REPL_FRAME_CHALLENGE && on_challenge(c, pl, len);
    case C_CONNECTING:
        return !c->outbound && type == REPL_FRAME_HELLO && on_hello(c, pl, len);
    case C_CHALLENGE:
        return !c->outbound && type == REPL_FRAME_AUTH && on_auth(c, pl, len);
    case C_READY:
        if (type == REPL_FRAME_HEARTBEAT)
            return len == 0;
        if (c->outbound)
            return false;
        if (type == REPL_FRAME_APP) {
            atomic_fetch_add(&c->p->msgs_in, 1);
            atomic_fetch_add(&c->p->bytes_in, len);
            if (c->p->cfg.recv_app != NULL)
                c->p->cfg.recv_app(c->p->cfg.arg, c->peer, pl, len);
            return true;
        }
        if (type != REPL_FRAME_MSG)
            return false;
        deliver(c->p, pl, len, c->peer, true);
        return true;
    default:
        return true;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct conn *c = h->data;
    if (c->roff > 0 && c->roff == c->rlen)
        c->roff = c->rlen = 0;
    if (c->rcap - c->rlen < READ_CHUNK) {
        if (c->roff > 0) {
            memmove(c->rbuf, c->rbuf + c->roff, c->rlen - c->roff);
            c->rlen -= c->roff;
            c->roff = 0;
        }
        if (c->rcap - c->rlen < READ_CHUNK) {
            c->rcap = c->rlen + READ_CHUNK;
            c->rbuf = sdk_xrealloc(c->rbuf, c->rcap);
        }
    }
    *buf = uv_buf_init((char *)c->rbuf + c->rlen, (unsigned)(c->rcap - c->rlen));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct conn *c = s->data;
    if (nread < 0) {
        conn_close(c, nread == UV_EOF ? 2 : 1, nread == UV_EOF ? "closed by the peer" : uv_strerror((int)nread));
        return;
    }
    c->rlen += (size_t)nread;
    c->recv_ms = now_ms();
    while (c->state != C_CLOSING && c->rlen - c->roff >= REPL_FRAME_HEADER_BYTES) {
        const uint8_t *hdr = c->rbuf + c->roff;
        uint8_t type;
        uint32_t len;
        int rv = repl_frame_parse(hdr, &type, &len);
        if (rv == 0 && c->state != C_READY && len > HANDSHAKE_MAX)
            rv = REPL_WIRE_ETOOBIG;
        if (rv != 0) {
            atomic_fetch_add(&c->p->bad_frames, 1);
            conn_close(c, 1, repl_wire_strerror(rv));
            return;
        }
        size_t need = REPL_FRAME_HEADER_BYTES + (size_t)len;
        if (c->rlen - c->roff < need) {
            if (c->rcap - c->roff < need) { /* room for the whole frame */
                memmove(c->rbuf, c->rbuf + c->roff, c->rlen - c->roff);
                c->rlen -= c->roff;
                c->roff = 0;
                c->rcap = need + READ_CHUNK;
                c->rbuf = sdk_xrealloc(c->rbuf, c->rcap);
            }
            return;
        }
        const uint8_t *pl = hdr + REPL_FRAME_HEADER_BYTES;
        if (repl_frame_verify(hdr, pl, len) != 0) {
            atomic_fetch_add(&c->p->bad_frames, 1);
            conn_close(c, 1, repl_wire_strerror(REPL_WIRE_ECHECKSUM));
            return;
        }
        c->roff += need;
        if (!on_frame(c, type, pl, len)) {
            atomic_fetch_add(&c->p->bad_frames, 1);
            conn_close(c, 1, "unexpected frame for the connection's state");
            return;
        }
    }
}

/* ---- connections --------------------------------------------------------- */

static struct conn *conn_new(struct repl_peers *p, bool outbound, uint32_t peer)
{
    struct conn *c = sdk_xcalloc(1, sizeof(*c));
    c->p = p;
    c->outbound = outbound;
    c->peer = peer;
    c->state = C_CONNECTING;
    c->recv_ms = c->send_ms = now_ms();
    uv_tcp_init(&p->loop, &c->tcp);
    c->tcp.data = c;
    return c;
}

static void on_connected(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    if (c->state == C_CLOSING)
        return;
    if (status < 0) {
        conn_close(c, 2, uv_strerror(status));
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (getrandom(c->cnonce, sizeof(c->cnonce), 0) != (ssize_t)sizeof(c->cnonce)) {
        conn_close(c, 0, "getrandom failed");
        return;
    }
    uint8_t out[4 + REPL_AUTH_NONCE_BYTES];
    wal_put_u32(out, c->p->cfg.self);
    memcpy(out + 4, c->cnonce, REPL_AUTH_NONCE_BYTES);
    c->state = C_HELLO;
    c->recv_ms = now_ms();
    conn_send(c, REPL_FRAME_HELLO, out, sizeof(out));
}

static int addr_of(const struct repl_peer_addr *a, struct sockaddr_storage *ss)
{
    if (strchr(a->host, ':') != NULL)
        return uv_ip6_addr(a->host, a->port, (struct sockaddr_in6 *)ss);
    return uv_ip4_addr(a->host, a->port, (struct sockaddr_in *)ss);
}

static void dial(struct repl_peers *p, struct remote *r)
{
    struct sockaddr_storage ss;
    if (addr_of(&r->addr, &ss) != 0) {
        r->redial_ms = now_ms() + BACKOFF_MAX_MS;
        return;
    }
    struct conn *c = conn_new(p, true, r->addr.id);
    r->out = c;
    c->connect.data = c;
    /* From our own peer address: a peer (and a firewall) sees which host
     * dials, not just the loopback or default address. */
    struct repl_peer_addr src = p->self_addr;
    src.port = 0;
    struct sockaddr_storage from;
    int rv = 0;
    if (strcmp(src.host, "0.0.0.0") != 0 && strcmp(src.host, "::") != 0 && addr_of(&src, &from) == 0)
        rv = uv_tcp_bind(&c->tcp, (struct sockaddr *)&from, 0);
    if (rv == 0)
        rv = uv_tcp_connect(&c->connect, &c->tcp, (struct sockaddr *)&ss, on_connected);
    if (rv != 0)
        conn_close(c, 2, uv_strerror(rv));
}

static void on_accept(uv_stream_t *server, int status)
{
    struct repl_peers *p = server->data;
    if (status < 0)
        return;
    struct conn *c = conn_new(p, false, UINT32_MAX);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || p->naccepted >= INBOUND_MAX) {
        c->state = C_CLOSING;
        uv_close((uv_handle_t *)&c->tcp, conn_freed);
        return;
    }
    c->next = p->accepted;
    p->accepted = c;
    p->naccepted++;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* ---- the loop ------------------------------------------------------------ */

static void check_conn(struct conn *c, uint64_t now)
{
    const struct repl_peers_config *cfg = &c->p->cfg;
    if (now - c->recv_ms >= cfg->dead_ms) {
        conn_close(c, 1, c->state == C_READY ? "silent for too long" : "handshake timed out");
        return;
    }
    if (c->state == C_READY && now - c->send_ms >= cfg->heartbeat_ms)
        conn_send(c, REPL_FRAME_HEARTBEAT, NULL, 0);
}

static void on_timer(uv_timer_t *t)
{
    struct repl_peers *p = t->data;
    uint64_t now = now_ms();
    for (unsigned i = 0; i < p->nremotes; i++) {
        struct remote *r = &p->remotes[i];
        if (atomic_load(&r->retired)) {
            if (r->out != NULL)
                conn_close(r->out, 2, "the host left the cluster");
        } else if (r->out == NULL && now >= r->redial_ms)
            dial(p, r);
        else if (r->out != NULL)
            check_conn(r->out, now);
    }
    for (struct conn *c = p->accepted, *next; c != NULL; c = next) {
        next = c->next;
        check_conn(c, now);
    }
    if (p->cfg.tick != NULL)
        p->cfg.tick(p->cfg.arg, now);
}

static void close_all(struct repl_peers *p)
{
    for (unsigned i = 0; i < p->nremotes; i++)
        if (p->remotes[i].out != NULL)
            conn_close(p->remotes[i].out, 2, NULL);
    while (p->accepted != NULL)
        conn_close(p->accepted, 2, NULL);
    uv_close((uv_handle_t *)&p->listener, NULL);
    uv_close((uv_handle_t *)&p->timer, NULL);
    uv_close((uv_handle_t *)&p->async, NULL);
}

static void on_async(uv_async_t *a)
{
    struct repl_peers *p = a->data;
    pthread_mutex_lock(&p->mu);
    struct frame *f = p->inbox;
    struct post *po = p->posts;
    p->inbox = p->inbox_tail = NULL;
    p->posts = p->posts_tail = NULL;
    pthread_mutex_unlock(&p->mu);
    if (atomic_load(&p->stopping)) {
        while (f != NULL) {
            struct frame *next = f->next;
            free(f);
            f = next;
        }
        while (po != NULL) {
            struct post *next = po->next;
            free(po);
            po = next;
        }
        close_all(p);
        return;
    }
    while (f != NULL) {
        struct frame *next = f->next;
        f->next = NULL;
        struct remote *r = remote_of(p, f->to);
        if (f->to == p->cfg.self) {
            deliver(p, f->data + REPL_FRAME_HEADER_BYTES, f->len - REPL_FRAME_HEADER_BYTES, p->cfg.self, false);
            free(f);
        } else if (r == NULL || atomic_load(&r->retired) || r->qbytes + f->len > p->cfg.queue_bytes_max ||
                   (f->data[5] == REPL_FRAME_APP && !atomic_load(&r->up) &&
                    now_ms() - p->started_ms >= p->cfg.dead_ms)) {
            /* An APP frame (a client's request) for a host that is down
             * would run there late, after its client was told it failed.
             * Just after start, connections are still coming up: queued. */
            atomic_fetch_add(&p->dropped, 1);
            free(f);
        } else {
            if (r->qtail != NULL)
                r->qtail->next = f;
            else
                r->qhead = f;
            r->qtail = f;
            r->qbytes += f->len;
            r->napp += is_app(f);
        }
        f = next;
    }
    for (unsigned i = 0; i < p->nremotes; i++)
        peers_flush(p, &p->remotes[i]);
    while (po != NULL) {
        struct post *next = po->next;
        po->fn(po->arg);
        free(po);
        po = next;
    }
}

static void *peers_main(void *arg)
{
    struct repl_peers *p = arg;
    pthread_setname_np(pthread_self(), "dobj-peers");
    uv_run(&p->loop, UV_RUN_DEFAULT);
    return NULL;
}

int repl_peers_start(struct repl_peers **out, const struct repl_peers_config *cfg, char *err, size_t errlen)
{
    struct repl_peers *p = sdk_xcalloc(1, sizeof(*p));
    p->cfg = *cfg;
    p->cfg.hosts = NULL;
    p->secret = strdup(cfg->secret != NULL ? cfg->secret : "");
    bool found = false;
    for (unsigned i = 0; i < cfg->nhosts; i++) {
        if (cfg->hosts[i].id == cfg->self) {
            p->self_addr = cfg->hosts[i];
            found = true;
        } else if (p->nremotes < REMOTES_MAX) {
            struct remote *r = &p->remotes[atomic_fetch_add(&p->nremotes, 1)];
            r->addr = cfg->hosts[i];
            r->backoff_ms = BACKOFF_MIN_MS;
        }
    }
    if (!found) {
        snprintf(err, errlen, "host id %u is not in the cluster's host list", cfg->self);
        goto fail_cfg;
    }
    pthread_mutex_init(&p->mu, NULL);
    uv_loop_init(&p->loop);
    uv_async_init(&p->loop, &p->async, on_async);
    p->async.data = p;
    uv_timer_init(&p->loop, &p->timer);
    p->timer.data = p;
    uv_tcp_init(&p->loop, &p->listener);
    p->listener.data = p;
    struct sockaddr_storage ss;
    int rv = addr_of(&p->self_addr, &ss);
    if (rv == 0)
        rv = uv_tcp_bind(&p->listener, (struct sockaddr *)&ss, 0);
    if (rv == 0)
        rv = uv_listen((uv_stream_t *)&p->listener, 128, on_accept);
    if (rv != 0) {
        snprintf(err, errlen, "peer listener on %s:%u: %s", p->self_addr.host, p->self_addr.port, uv_strerror(rv));
        goto fail_loop;
    }
    uv_timer_start(&p->timer, on_timer, cfg->tick_ms, cfg->tick_ms);
    p->started_ms = now_ms();
    if (pthread_create(&p->thread, NULL, peers_main, p) != 0) {
        snprintf(err, errlen, "peer thread: %s", strerror(errno));
        goto fail_loop;
    }
    *out = p;
    return 0;

fail_loop:
    uv_close((uv_handle_t *)&p->listener, NULL);
    uv_close((uv_handle_t *)&p->timer, NULL);
    uv_close((uv_handle_t *)&p->async, NULL);
    uv_run(&p->loop, UV_RUN_DEFAULT);
    uv_loop_close(&p->loop);
    pthread_mutex_destroy(&p->mu);
fail_cfg:
    free(p->secret);
    free(p);
    return -1;
}

/* Queues a frame for the transport's thread, which sends it to f->to. */
static void inbox_push(struct repl_peers *p, struct frame *f)
{
    atomic_fetch_add(&p->msgs_out, 1);
    atomic_fetch_add(&p->bytes_out, f->len - REPL_FRAME_HEADER_BYTES);
    pthread_mutex_lock(&p->mu);
    if (p->inbox_tail != NULL)
        p->inbox_tail->next = f;
    else
        p->inbox = f;
    p->inbox_tail = f;
    pthread_mutex_unlock(&p->mu);
    uv_async_send(&p->async);
}

void repl_peers_send(struct repl_peers *p, const struct repl_msg *m)
{
    size_t len = repl_msg_size(m);
    if (len > REPL_FRAME_PAYLOAD_MAX || atomic_load(&p->stopping)) {
        atomic_fetch_add(&p->dropped, 1);
        return;
    }
    struct frame *f = sdk_xmalloc(sizeof(*f) + REPL_FRAME_HEADER_BYTES + len);
    f->next = NULL;
    f->to = m->to;
    f->len = (uint32_t)(REPL_FRAME_HEADER_BYTES + len);
    repl_msg_encode(m, f->data + REPL_FRAME_HEADER_BYTES);
    repl_frame_header(f->data, REPL_FRAME_MSG, f->data + REPL_FRAME_HEADER_BYTES, (uint32_t)len);
    inbox_push(p, f);
}

void repl_peers_send_app(struct repl_peers *p, uint32_t to, const void *payload, size_t len)
{
    if (len > REPL_FRAME_PAYLOAD_MAX || to == p->cfg.self || atomic_load(&p->stopping)) {
        atomic_fetch_add(&p->dropped, 1);
        return;
    }
    struct frame *f = frame_new(REPL_FRAME_APP, payload, (uint32_t)len);
    f->to = to;
    f->queued_ms = now_ms();
    inbox_push(p, f);
}

struct host_list {
    struct repl_peers *p;
    unsigned n;
    struct repl_peer_addr hosts[];
};

static void set_hosts(void *arg)
{
    struct host_list *hl = arg;
    struct repl_peers *p = hl->p;
    unsigned n = atomic_load(&p->nremotes);
    for (unsigned i = 0; i < n; i++) {
        struct remote *r = &p->remotes[i];
        const struct repl_peer_addr *listed = NULL;
        for (unsigned k = 0; k < hl->n && listed == NULL; k++)
            if (hl->hosts[k].id == r->addr.id)
                listed = &hl->hosts[k];
        if (listed != NULL && atomic_load(&r->retired)) {
            /* Back (maybe elsewhere): its connection closed when it left. */
            memcpy(r->addr.host, listed->host, sizeof(r->addr.host));
            r->addr.port = listed->port;
            r->redial_ms = 0;
        }
        atomic_store(&r->retired, listed == NULL);
        if (listed == NULL)
            drop_app_frames(p, r, true);
    }
    for (unsigned k = 0; k < hl->n; k++) {
        if (hl->hosts[k].id == p->cfg.self || remote_of(p, hl->hosts[k].id) != NULL)
            continue;
        if (n == REMOTES_MAX) {
            repl_logf(0, "peer: more than %d hosts: host %u left out", REMOTES_MAX, hl->hosts[k].id);
            continue;
        }
        struct remote *r = &p->remotes[n];
        memset(r, 0, sizeof(*r));
        r->addr = hl->hosts[k];
        r->backoff_ms = BACKOFF_MIN_MS;
        atomic_store(&p->nremotes, ++n); /* after the entry is whole: other threads read up to it */
        repl_logf(2, "peer: host %u joins at %s:%u", r->addr.id, r->addr.host, r->addr.port);
    }
    free(hl);
}

void repl_peers_set_hosts(struct repl_peers *p, const struct repl_peer_addr *hosts, unsigned nhosts)
{
    struct host_list *hl = sdk_xmalloc(sizeof(*hl) + nhosts * sizeof(hl->hosts[0]));
    hl->p = p;
    hl->n = nhosts;
    memcpy(hl->hosts, hosts, nhosts * sizeof(hl->hosts[0]));
    repl_peers_post(p, set_hosts, hl);
}

void repl_peers_post(struct repl_peers *p, void (*fn)(void *arg), void *arg)
{
    struct post *po = sdk_xmalloc(sizeof(*po));
    po->next = NULL;
    po->fn = fn;
    po->arg = arg;
    pthread_mutex_lock(&p->mu);
    if (p->posts_tail != NULL)
        p->posts_tail->next = po;
    else
        p->posts = po;
    p->posts_tail = po;
    bool stopping = atomic_load(&p->stopping);
    pthread_mutex_unlock(&p->mu);
    if (!stopping)
        uv_async_send(&p->async); /* after a stop, destroy runs it */
}

bool repl_peers_connected(struct repl_peers *p, uint32_t host)
{
    if (host == p->cfg.self)
        return true;
    struct remote *r = remote_of(p, host);
    return r != NULL && atomic_load(&r->up);
}

bool repl_peers_reachable(struct repl_peers *p, uint32_t host)
{
    if (host == p->cfg.self)
        return true;
    struct remote *r = remote_of(p, host);
    return r != NULL && atomic_load(&r->up) && atomic_load(&r->in_ready) > 0;
}

void repl_peers_stats(struct repl_peers *p, struct repl_peers_stats *out)
{
    *out = (struct repl_peers_stats){
        .msgs_out = atomic_load(&p->msgs_out),
        .msgs_in = atomic_load(&p->msgs_in),
        .bytes_out = atomic_load(&p->bytes_out),
        .bytes_in = atomic_load(&p->bytes_in),
        .dropped = atomic_load(&p->dropped),
        .auth_failures = atomic_load(&p->auth_failures),
        .bad_frames = atomic_load(&p->bad_frames),
    };
    for (unsigned i = 0; i < p->nremotes; i++)
        out->connected_out += atomic_load(&p->remotes[i].up);
}

void repl_peers_stop(struct repl_peers *p)
{
    if (p == NULL || atomic_exchange(&p->stopping, true))
        return;
    uv_async_send(&p->async);
    pthread_join(p->thread, NULL);
}

void repl_peers_destroy(struct repl_peers *p)
{
    if (p == NULL)
        return;
    repl_peers_stop(p);
    uv_run(&p->loop, UV_RUN_DEFAULT); /* close callbacks */
    uv_loop_close(&p->loop);
    /* Posts that came after the stop run here, on the caller's thread (the
     * transport's is gone): they may free what they carry. */
    for (;;) {
        pthread_mutex_lock(&p->mu);
        struct post *po = p->posts;
        p->posts = p->posts_tail = NULL;
        pthread_mutex_unlock(&p->mu);
        if (po == NULL)
            break;
        while (po != NULL) {
            struct post *next = po->next;
            po->fn(po->arg);
            free(po);
            po = next;
        }
    }
    for (struct frame *f = p->inbox, *next; f != NULL; f = next) {
        next = f->next;
        free(f);
    }
    for (unsigned i = 0; i < p->nremotes; i++)
        for (struct frame *f = p->remotes[i].qhead, *next; f != NULL; f = next) {
            next = f->next;
            free(f);
        }
    pthread_mutex_destroy(&p->mu);
    free(p->secret);
    free(p);
}
