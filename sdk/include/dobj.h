/*
 * dobj.h: the only header a dobj handler author includes.
 *
 * A class is a set of C handlers compiled into a shared library and loaded by
 * `dobj serve --class PATH`. Every object of the class (`counter/alice`) owns one
 * SQLite database and handles one event at a time: an HTTP request, a WebSocket
 * open, message or close. Handlers run on the object's shard thread and call
 * SQLite synchronously through dobj_db().
 *
 * Transactions. Each event runs inside one transaction that the runtime opens
 * before the handler and commits after it. A handler that returns non-zero has
 * every write of its event rolled back, and an HTTP client gets status 500 with
 * the message given to dobj_fail(). Handlers nest savepoints with dobj_txn_*();
 * BEGIN, COMMIT, ROLLBACK, ATTACH, DETACH and the PRAGMAs that change
 * journal_mode, synchronous, locking_mode or checkpointing are refused by the
 * runtime (the statement fails to prepare with SQLITE_AUTH and dobj_errmsg()
 * says why). Tables whose names start with `_dobj_` belong to the runtime:
 * handlers may read them, not write them.
 *
 * Output gate. Everything an event sends (its HTTP response, WebSocket messages
 * and closes) is held until the writes made up to the end of that event are
 * durable, and leaves in event order. The handler never waits for that.
 *
 * Memory. Every pointer the API returns is borrowed from the event and valid
 * until the handler returns, unless a function says otherwise. Strings passed
 * in are copied; no reference to caller memory is kept after a call returns.
 * Out of memory aborts the process; size limits are reported as DOBJ_ELIMIT.
 *
 * Errors. Functions returning int give 0 on success or a negative DOBJ_E* code;
 * a failed call leaves its out-parameters untouched.
 *
 * Limits. One event's transaction may change at most 64 MB of pages; a write
 * past that fails with SQLITE_FULL ("database or disk is full").
 */
#ifndef DOBJ_H
#define DOBJ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct sqlite3;

#define DOBJ_VERSION_MAJOR 0
#define DOBJ_VERSION_MINOR 1
#define DOBJ_VERSION_PATCH 0
#define DOBJ_VERSION "0.1.0"

/* Bumped whenever struct dobj_class or a function signature changes; the
 * runtime refuses to load a class built against another ABI. */
#define DOBJ_ABI_VERSION 1

/* Error codes: XX(name, message). */
#define DOBJ_ERRNO_MAP(XX)                                                    \
    XX(EINVAL, -1, "invalid argument")                                        \
    XX(ENOTFOUND, -2, "no such row")                                          \
    XX(ESQLITE, -3, "SQLite error")                                           \
    XX(EDENIED, -4, "refused by the runtime")                                 \
    XX(EHANDLER, -5, "handler failed")                                        \
    XX(ECLOSED, -6, "socket is closed")                                       \
    XX(ELIMIT, -7, "limit reached")                                           \
    XX(ESTATE, -8, "not allowed in this event")                               \
    XX(EIO, -9, "input/output error")                                         \
    XX(ECONFIG, -10, "invalid configuration")                                 \
    XX(EUNAVAIL, -11, "temporarily unavailable")

enum {
#define DOBJ__ERR_ENUM(name, val, msg) DOBJ_##name = (val),
    DOBJ_ERRNO_MAP(DOBJ__ERR_ENUM)
#undef DOBJ__ERR_ENUM
};

/* Static strings: "no such row" / "DOBJ_ENOTFOUND"; "unknown error" for others. */
const char *dobj_strerror(int err);
const char *dobj_err_name(int err);

/* ---------------------------------------------------------------------------
 * Classes
 * ------------------------------------------------------------------------- */

typedef struct dobj_ctx dobj_ctx; /* one event of one object */
typedef struct dobj_ws dobj_ws;   /* one WebSocket of one object */

/* HTTP methods a class accepts (dobj_class.methods); 0 means all. A request with
 * another method gets 405 with an Allow header and never reaches the class. */
enum {
    DOBJ_GET = 1 << 0,
    DOBJ_HEAD = 1 << 1,
    DOBJ_POST = 1 << 2,
    DOBJ_PUT = 1 << 3,
    DOBJ_DELETE = 1 << 4,
    DOBJ_PATCH = 1 << 5,
    DOBJ_OPTIONS = 1 << 6,
};

/* WebSocket message kinds. */
enum { DOBJ_WS_TEXT = 1, DOBJ_WS_BINARY = 2 };

/*
 * A class: a static, constant struct that the shared library exports through
 * DOBJ_CLASS(). Every handler may be NULL. Each returns 0, or non-zero to fail the
 * event: its writes are rolled back (see dobj_fail()).
 */
typedef struct dobj_class {
    int abi_version;  /* DOBJ_ABI_VERSION */
    const char *name; /* in URLs: 1-64 bytes of [a-z0-9_-], not starting with '_' */
    unsigned methods; /* DOBJ_GET | DOBJ_POST ...; 0 accepts every method */

    /* Runs once each time the object's database is opened, inside the first
     * event's transaction, before that event's handler: create the schema here
     * (CREATE TABLE IF NOT EXISTS ...). A failure fails that event. */
    int (*on_activate)(dobj_ctx *ctx);

    /* An HTTP request addressed to /<class>/<name>/<rest>. Without a response
     * set, the client gets 204. */
    int (*fetch)(dobj_ctx *ctx);

    /* A WebSocket upgrade on the same URL. The socket is open for sending during
     * this handler; failing the event refuses the upgrade with 500 (or with the
     * response the handler set, if it set one with status >= 400). A class
     * without ws_open refuses upgrades with 400. */
    int (*ws_open)(dobj_ctx *ctx, dobj_ws *ws);

    /* A message on one of the object's sockets; `kind` is DOBJ_WS_TEXT or
     * DOBJ_WS_BINARY; `data` is borrowed. Activates an evicted object again. */
    int (*ws_message)(dobj_ctx *ctx, dobj_ws *ws, int kind, const void *data, size_t len);

    /* The socket closed (by the client, the network, or dobj_ws_close()). The
     * socket can no longer be sent to; its attachment is still readable. */
    int (*ws_close)(dobj_ctx *ctx, dobj_ws *ws, int code, const char *reason);
} dobj_class;

/* Exports `cls` (a `const dobj_class`) from the shared library. */
#define DOBJ_CLASS(cls)                                                       \
    __attribute__((visibility("default"))) const dobj_class *dobj_class_v1(void); \
    const dobj_class *dobj_class_v1(void) { return &(cls); }

/* ---------------------------------------------------------------------------
 * The object and the request
 * ------------------------------------------------------------------------- */

const char *dobj_class_name(dobj_ctx *ctx);
/* The object's name, percent-decoded: 1-512 bytes of UTF-8, no NUL. */
const char *dobj_name(dobj_ctx *ctx);

/* "GET", "POST" ...; NULL outside fetch and ws_open. */
const char *dobj_req_method(dobj_ctx *ctx);
/* The raw path after the name: "" for /counter/a, "/" for /counter/a/,
 * "/x/y" for /counter/a/x/y. Never NULL. */
const char *dobj_req_path(dobj_ctx *ctx);
/* The raw query string without '?', "" if none. Never NULL. */
const char *dobj_req_query(dobj_ctx *ctx);
/* The percent-decoded value of query parameter `key` (first occurrence), or
 * NULL if absent. "+" decodes to a space. */
const char *dobj_req_param(dobj_ctx *ctx, const char *key);
/* The value of request header `name` (case-insensitive), or NULL. Repeated
 * headers give the first value. */
const char *dobj_req_header(dobj_ctx *ctx, const char *name);
/* The request body; *len gets its length. Never NULL: an empty body is "".
 * The body is followed by a NUL byte not counted in *len. */
const void *dobj_req_body(dobj_ctx *ctx, size_t *len);

/* ---------------------------------------------------------------------------
 * The response (fetch and ws_open)
 * ------------------------------------------------------------------------- */

/* Sets the status (200-599; default 200 once a body is set, else 204). */
int dobj_res_status(dobj_ctx *ctx, int status);
/* Adds a response header. DOBJ_EINVAL for a name or value with CR, LF or NUL. */
int dobj_res_header(dobj_ctx *ctx, const char *name, const char *value);
/* Appends to the body. */
int dobj_res_write(dobj_ctx *ctx, const void *data, size_t len);
int dobj_res_printf(dobj_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Sets status, "content-type: application/json" and the body to the formatted
 * text, replacing any body written before. Quote strings with dobj_json_str(). */
int dobj_res_json(dobj_ctx *ctx, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* `s` as a JSON string literal with quotes, escaped; borrowed from the event.
 * NULL gives "null". Invalid UTF-8 is replaced with U+FFFD. */
const char *dobj_json_str(dobj_ctx *ctx, const char *s);

/* Fails the event: records the message the client gets with status 500 (or
 * `status` with dobj_fail_status) and returns DOBJ_EHANDLER, so a handler
 * writes `return dobj_fail(ctx, "bad amount %s", s);`. */
int dobj_fail(dobj_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int dobj_fail_status(dobj_ctx *ctx, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---------------------------------------------------------------------------
 * SQLite
 * ------------------------------------------------------------------------- */

/* The object's database, open and inside the event's transaction. Borrowed:
 * never close it, never keep it past the handler. The connection's settings
 * belong to the runtime, which builds durability on them: do not call
 * sqlite3_wal_hook, sqlite3_wal_checkpoint*, sqlite3_set_authorizer,
 * sqlite3_db_config or sqlite3_close on it. Statements a handler prepares
 * itself should be finalized before it returns; leftovers are finalized when
 * the database closes. */
struct sqlite3 *dobj_db(dobj_ctx *ctx);

/* The last error of a dobj_* SQL helper or of the runtime's authorizer, as a
 * sentence; "" if none. */
const char *dobj_errmsg(dobj_ctx *ctx);

/*
 * One-shot SQL with bound parameters. `types` has one letter per parameter,
 * bound in order to ?1, ?2 ...:
 *   'i' int64_t   'd' double   't' const char * (NUL-terminated text, NULL binds NULL)
 *   'b' const void *, size_t (blob)   'n' nothing (binds NULL)
 * `types` may be NULL or "" for none. On failure: DOBJ_ESQLITE or DOBJ_EDENIED
 * with dobj_errmsg() set; DOBJ_EINVAL for a bad `types` string.
 */
/* Runs every statement of `sql` (parameters bind to the first one). */
int dobj_exec(dobj_ctx *ctx, const char *sql, const char *types, ...);
/* First column of the first row as int64; DOBJ_ENOTFOUND if no row. */
int dobj_query_int(dobj_ctx *ctx, int64_t *out, const char *sql, const char *types, ...);
/* First column of the first row as text, borrowed from the event; a NULL value
 * gives NULL. DOBJ_ENOTFOUND if no row. */
int dobj_query_text(dobj_ctx *ctx, const char **out, const char *sql, const char *types, ...);
/* All rows as a JSON array of objects keyed by column name, borrowed from the
 * event. Blobs become base64 strings. */
int dobj_query_json(dobj_ctx *ctx, const char **out, const char *sql, const char *types, ...);

/* Deletes all of the object's data: every table and view (with their indexes
 * and triggers), in the event's transaction. The object starts over empty.
 * Its history stays in object storage, restorable for the retention window;
 * the write is marked as a tombstone, and once it is older than the
 * retention window `dobj gc` removes the object from the store. */
int dobj_delete_all(dobj_ctx *ctx);

/* Nested transactions on savepoints, inside the event's transaction. A
 * rollback undoes the writes since the matching begin. A begin without commit
 * or rollback is rolled back when the handler returns. */
int dobj_txn_begin(dobj_ctx *ctx);
int dobj_txn_commit(dobj_ctx *ctx);
int dobj_txn_rollback(dobj_ctx *ctx);

/* ---------------------------------------------------------------------------
 * WebSockets
 *
 * A dobj_ws handle is valid during the event that passed or listed it. The
 * runtime owns the connection: an object with open sockets may have its
 * database closed while idle, and a message on a socket opens it again.
 * ------------------------------------------------------------------------- */

/* Queues a message (behind the output gate). DOBJ_ECLOSED if the socket is
 * closing; DOBJ_ELIMIT over the message size limit. */
int dobj_ws_send(dobj_ctx *ctx, dobj_ws *ws, int kind, const void *data, size_t len);
/* Sends to every open socket of the object carrying `tag` (NULL: all), except
 * `except` (may be NULL). Returns the number of sockets sent to. */
int dobj_ws_broadcast(dobj_ctx *ctx, const char *tag, dobj_ws *except, int kind, const void *data, size_t len);
/* Closes with a code (1000-1003, 1007-1014 or 3000-4999) and a reason (at most
 * 123 bytes). */
int dobj_ws_close(dobj_ctx *ctx, dobj_ws *ws, int code, const char *reason);
/* Fills `out` with up to `max` open sockets carrying `tag` (NULL: all) and
 * returns how many the object has in all, which may exceed `max`. */
size_t dobj_ws_list(dobj_ctx *ctx, const char *tag, dobj_ws **out, size_t max);
/* Adds a tag (1-64 bytes; at most 8 per socket). */
int dobj_ws_tag(dobj_ctx *ctx, dobj_ws *ws, const char *tag);
/* Stores bytes with the socket (at most 4096), kept while the object's
 * database is closed; replaces any earlier attachment. */
int dobj_ws_set_attachment(dobj_ctx *ctx, dobj_ws *ws, const void *data, size_t len);
/* The stored bytes (borrowed, NUL-terminated) or NULL if none. */
const void *dobj_ws_attachment(dobj_ctx *ctx, dobj_ws *ws, size_t *len);
/* A number unique among the host's sockets since start. */
uint64_t dobj_ws_id(dobj_ws *ws);

/* ---------------------------------------------------------------------------
 * Misc
 * ------------------------------------------------------------------------- */

/* Allocates from the event; freed when the handler returns. Never NULL. */
void *dobj_alloc(dobj_ctx *ctx, size_t size);
/* Formats into event memory. */
char *dobj_sprintf(dobj_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Wall-clock time of the event's start in microseconds since the epoch; the
 * same value for the whole event. */
int64_t dobj_now_us(dobj_ctx *ctx);

#ifdef __cplusplus
}
#endif

#endif /* DOBJ_H */
