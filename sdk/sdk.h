/*
 * sdk.h: what the runtime sees of the SDK. The runtime builds one struct
 * dobj_ctx per event, calls the class's handler, then drains the outputs the
 * handler queued (response, WebSocket sends and closes) into the object's
 * output gate. Nothing here does I/O: the SDK records, the runtime acts.
 */
#ifndef SDK_H
#define SDK_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "dobj.h"

#define SDK_WS_TAGS_MAX 8
#define SDK_WS_TAG_BYTES_MAX 64
#define SDK_WS_ATTACHMENT_MAX 4096
#define SDK_WS_REASON_MAX 123

/* A bump allocator for one event: everything the handler is given or builds
 * lives here and goes away at once when the event ends. */
struct sdk_arena {
    struct sdk_arena_chunk *head;
    size_t used;
    size_t cap;
};

void sdk_arena_init(struct sdk_arena *a);
void sdk_arena_close(struct sdk_arena *a);
void *sdk_arena_alloc(struct sdk_arena *a, size_t size);
char *sdk_arena_strndup(struct sdk_arena *a, const char *s, size_t len);
char *sdk_arena_vprintf(struct sdk_arena *a, const char *fmt, va_list ap);

/* A growable byte buffer on the heap (response bodies, JSON). */
struct sdk_buf {
    char *data;
    size_t len;
    size_t cap;
};

void sdk_buf_reserve(struct sdk_buf *b, size_t extra);
void sdk_buf_append(struct sdk_buf *b, const void *data, size_t len);
void sdk_buf_vprintf(struct sdk_buf *b, const char *fmt, va_list ap);
void sdk_buf_printf(struct sdk_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends `s` (len bytes) as a quoted JSON string, invalid UTF-8 as U+FFFD. */
void sdk_buf_json_str(struct sdk_buf *b, const char *s, size_t len);
/* Appends the runtime's error body: {"error":"<msg>"} and a newline. */
void sdk_buf_json_error(struct sdk_buf *b, const char *msg);
/* Hands the bytes to the caller (who frees them) and empties the buffer. */
char *sdk_buf_steal(struct sdk_buf *b, size_t *len);
void sdk_buf_close(struct sdk_buf *b);

/* One WebSocket as its object sees it. Owned by the runtime's actor, which
 * keeps it while the socket is open, across evictions of the database. */
struct dobj_ws {
    uint64_t id;       /* host-unique */
    unsigned shard;    /* the shard whose loop owns the connection */
    bool closing;      /* a close was queued or the peer closed: no more sends */
    unsigned ntags;
    char *tags[SDK_WS_TAGS_MAX];
    char *attachment; /* NUL-terminated copy, or NULL */
    size_t attachment_len;
    struct dobj_ws *prev, *next; /* the actor's list, in open order */
};

void sdk_ws_free(struct dobj_ws *ws);

/* Something an event sends, held behind the output gate once the event ends. */
enum sdk_out_kind { SDK_OUT_WS_SEND, SDK_OUT_WS_CLOSE };

struct sdk_out {
    struct sdk_out *next;
    enum sdk_out_kind kind;
    uint64_t ws_id;
    unsigned shard;
    int ws_kind; /* DOBJ_WS_TEXT / DOBJ_WS_BINARY, or the close code */
    size_t len;
    char data[]; /* message bytes, or the close reason (NUL-terminated) */
};

/* Prepared statements of the SDK's helpers, kept per database by the runtime
 * across events: the same SQL text is compiled once. */
#define SDK_STMT_CACHE_SIZE 16

struct sdk_stmt_cache {
    struct {
        char *sql;
        sqlite3_stmt *st;
        uint64_t used;
    } e[SDK_STMT_CACHE_SIZE];
    uint64_t tick;
};

/* Finalizes every cached statement; before the database closes. */
void sdk_stmt_cache_clear(struct sdk_stmt_cache *c);

struct sdk_header {
    const char *name;
    const char *value;
};

enum sdk_event_kind { SDK_EV_FETCH, SDK_EV_WS_OPEN, SDK_EV_WS_MESSAGE, SDK_EV_WS_CLOSE };

struct dobj_ctx {
    struct sdk_arena arena;
    const dobj_class *cls;
    const char *name;
    sqlite3 *db;
    struct sdk_stmt_cache *stmts; /* borrowed from the runtime; may be NULL */
    enum sdk_event_kind kind;
    int64_t now_us;
    size_t ws_msg_max;

    /* The request: borrowed from the runtime's event message. */
    const char *method;
    const char *path;
    const char *query;
    const struct sdk_header *headers;
    size_t nheaders;
    const char *body;
    size_t body_len;

    /* The response. */
    int status;
    struct sdk_buf res_headers; /* "name\0value\0" pairs */
    struct sdk_buf res_body;

    /* The object's open sockets (borrowed from the actor). */
    struct dobj_ws *sockets;

    /* Outputs queued by the handler, in order. */
    struct sdk_out *outs_head;
    struct sdk_out **outs_tail;

    /* Failure message for the client and the last SQL error. */
    int fail_status;
    char *fail_msg;
    char errmsg[512];
    /* Set by the authorizer when it refuses a statement. */
    char deny[256];

    unsigned txn_depth;
    bool deleted_all; /* dobj_delete_all() ran: the runtime checks for a tombstone */
};

/* Prepares `ctx` for one event; the caller fills the request fields. */
void sdk_ctx_init(struct dobj_ctx *ctx, const dobj_class *cls, const char *name, sqlite3 *db);
/* Frees everything the event allocated, including outputs not taken. */
void sdk_ctx_close(struct dobj_ctx *ctx);
/* Rolls back savepoints a handler left open; returns 0 or DOBJ_ESQLITE. */
int sdk_ctx_unwind_txn(struct dobj_ctx *ctx);
/* Takes the queued outputs (owned by the caller, free each with free()). */
struct sdk_out *sdk_ctx_take_outs(struct dobj_ctx *ctx);

/* The authorizer installed on every object database. `user` is a pointer to a
 * `struct dobj_ctx *` slot that the runtime points at the running event (or
 * NULL while the runtime runs its own statements, which are not checked). */
int sdk_authorizer(void *user, int action, const char *a1, const char *a2, const char *db, const char *trigger);

/* Parses query parameter `key` out of a raw query string into arena memory. */
const char *sdk_query_param(struct sdk_arena *a, const char *query, const char *key);

#endif /* SDK_H */
