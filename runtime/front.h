/*
 * front.h: the HTTP and WebSocket front's own structures, shared by http.c
 * (a shard's h2o front: requests, replies, WebSockets) and forward.c (in a
 * cluster: requests and WebSockets for objects another host leads, and the
 * ones other hosts send here). Private to runtime/.
 */
#ifndef RUNTIME_FRONT_H
#define RUNTIME_FRONT_H

#include <h2o.h>
#include <h2o/websocket.h>

#include "router.h"
#include "runtime.h"

/* A socket whose client does not read is closed once this much is queued. */
#define WS_QUEUED_BYTES_MAX (16u << 20)
/* After our close frame, the client has this long to answer before the
 * connection is dropped (a client that stopped reading never will). */
#define WS_CLOSE_WAIT_MS 5000

struct front_ws {
    uint64_t id;
    struct rt_front *front;
    h2o_websocket_conn_t *conn;
    const struct rt_class *cls;
    uint64_t hash;
    char *name;
    size_t name_len;
    int close_code; /* from the client's close frame; 1006 if none came */
    char close_reason[124];
    uint64_t close_by_ms; /* we sent a close: the client must answer by then */
    /* Proxied (a cluster): the socket's other end is on host peer_host, as
     * its socket peer_id. With a conn, this is the client's host and the
     * object's leader is there; without one, this is the leader and the
     * client is there (a virtual socket the object sees as any other). */
    uint32_t peer_host;
    uint64_t peer_id;
    bool peer_gone; /* that host went away: nothing more goes there */
    struct front_ws *hnext;
};

struct rt_front {
    h2o_context_t ctx; /* first: on_req finds the front from req->conn->ctx */
    h2o_accept_ctx_t accept_ctx;
    uv_tcp_t listener;
    bool listening;
    struct rt_shard *shard;
    uint64_t ws_seq;
    struct front_ws **ws_buckets;
    size_t ws_nbuckets, ws_count;
    uv_timer_t ws_timer;  /* closes sockets that never answered our close */
    uv_timer_t fwd_timer; /* fails forwards whose leader died or is late */
    /* Requests forwarded to their leader, waiting: a slot's index and
     * generation make the request id. */
    struct fwd_slot *fwd;
    uint32_t fwd_n, fwd_cap, fwd_free; /* fwd_free: first free slot + 1, 0 if none */
    uint32_t fwd_nfree;                /* slots on the free list */
};

struct fwd_slot {
    struct rt_wait *w; /* NULL: free */
    uint32_t gen;
    uint32_t next_free;
    uint32_t to; /* the leader it went to */
    uint64_t deadline_ms;
};

/* A request waiting for its reply. `slot` lives in the request's pool and
 * points back here while both live; whichever goes first unhooks the other. */
struct rt_wait {
    h2o_req_t *req;
    struct rt_wait **slot;
    /* A WebSocket open: the socket's id and the object it belongs to. */
    uint64_t ws_id;
    const struct rt_class *cls;
    uint64_t hash;
    char *name;
    size_t name_len;
    /* Forwarded to this host: the origin host, its shard and request id
     * (fwd_host 0: a client of ours). */
    uint32_t fwd_host, fwd_shard;
    uint64_t fwd_id;
    uint64_t fwd_ws; /* a forwarded WebSocket open: the origin's socket id */
};

/* ---- http.c --------------------------------------------------------------- */

/* Sends a reply; served_by names the host that ran it (0: this one). */
void rt_front_respond_from(h2o_req_t *req, uint32_t served_by, int status, const char *headers, size_t headers_len,
                           const char *body, size_t body_len);
void rt_front_respond_json_error(h2o_req_t *req, int status, const char *msg);
void rt_front_respond_errorf(h2o_req_t *req, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Copies len bytes to *p, adds a NUL, moves *p past it; returns the copy. */
char *rt_front_put(char **p, const void *src, size_t len);
struct rt_wait *rt_front_wait_new(h2o_req_t *req);
void rt_front_wait_free(struct rt_wait *w);
struct front_ws *rt_front_ws_lookup(struct rt_front *f, uint64_t id);
void rt_front_ws_insert(struct rt_front *f, struct front_ws *w);
/* The socket is gone: the object hears it; the socket is freed. */
void rt_front_ws_closed(struct rt_front *f, struct front_ws *w);
/* An event about socket w for its object. */
void rt_front_ws_post(struct rt_front *f, struct front_ws *w, enum sdk_event_kind kind, int ws_kind, const void *data,
                      size_t len);
/* A socket for the object of a WebSocket open (its name taken from wt), not
 * in the table yet. */
struct front_ws *rt_front_ws_new(struct rt_front *f, struct rt_wait *wt);
/* Upgrades the waiting request to a WebSocket. */
struct front_ws *rt_front_ws_accept(struct rt_front *f, struct rt_wait *wt);

/* ---- forward.c ------------------------------------------------------------ */

/* A request for an object `leader` leads: forwarded to it, or redirected. */
void rt_fwd_to_leader(struct rt_front *f, h2o_req_t *req, uint32_t leader, const struct rt_class *cls,
                      const char *name, size_t name_len, h2o_iovec_t rest, h2o_iovec_t query, bool websocket);
/* The reply to a request host `to` forwarded here (ws: the leader's socket
 * id of an accepted WebSocket). */
void rt_fwd_answer(uint32_t to, uint32_t shard, uint64_t id, int status, const char *headers, size_t headers_len,
                   const char *body, size_t body_len, uint64_t ws);
/* A message or close from our socket `self` to socket `ws` on host `to`. */
void rt_fwd_ws_send(uint32_t to, uint64_t ws, uint64_t self, enum router_fwd_kind kind, int code, const void *data,
                    size_t len);
/* The leader's virtual socket for a proxied WebSocket the object accepted. */
void rt_fwd_accept_virtual(struct rt_front *f, struct rt_wait *wt);
/* Fails forwards whose leader is late or gone (all: every one). */
void rt_fwd_expire(struct rt_front *f, bool all);
void rt_fwd_timer_cb(uv_timer_t *h);

#endif /* RUNTIME_FRONT_H */
