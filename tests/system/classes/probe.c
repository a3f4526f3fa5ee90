/*
 * probe: a test class for the system tests in tests/system.
 *
 * Built by the Makefile as build/tests/probe.so. Accepts every HTTP method and
 * dispatches on the rest path (dobj_req_path()):
 *
 *   PUT    /probe/<n>/kv/<k>        body = value: upsert, 200 {"ok":true}
 *   GET    /probe/<n>/kv/<k>        200 {"v": value} or 404
 *   DELETE /probe/<n>/kv/<k>        200 {"ok":true}
 *   POST   /probe/<n>/fail?k=K&v=V  inserts (K,V), then fails the event (500)
 *   POST   /probe/<n>/sql           body = SQL run with dobj_exec(); 200 {"ok":true}
 *   POST   /probe/<n>/each          body = statements, one per line, each run with
 *                                   dobj_exec() whatever the others did; 200
 *                                   {"errors":N} (a handler that shrugs errors off)
 *                                   or 400 {"error": dobj_errmsg(), "code": ...}
 *   POST   /probe/<n>/query         body = SQL run with dobj_query_json();
 *                                   200 {"rows": [...]} or 400 as above
 *   POST   /probe/<n>/nested        nested savepoints: a=1 kept, b=2 rolled back
 *   ANY    /probe/<n>/echo...       200 JSON describing the request
 *   GET    /probe/<n>/sleep?ms=N    sleeps N ms (0-2000), 200 with monotonic
 *                                   start/end timestamps in microseconds
 *   GET    /probe/<n>/activations   200 {"activations": N}: how many times
 *                                   on_activate ran (and committed) so far
 *   POST   /probe/<n>/multi?k=K&count=C[&pad=P]
 *                                   inserts C rows (ids K-0 .. K-(C-1), group K,
 *                                   each with P random bytes, 0-65536, default
 *                                   0) into table multi in one event; 200
 *                                   {"ok":true,"k":K,"count":C}. C is 1-10000.
 *   GET    /probe/<n>/multi         200 {"groups": {K: rows, ...}} ({} when the
 *                                   table does not exist; never writes)
 *   POST   /probe/<n>/delete_all    dobj_delete_all(): 200 {"ok":true}
 *
 * WebSockets: every message is echoed back prefixed with "echo:" (same kind);
 * the text message "count" gets the number of the object's open sockets
 * (dobj_ws_list()) as decimal text; "close" closes the socket with 4000 "bye".
 */
#include <dobj.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS kv(k TEXT PRIMARY KEY, v TEXT);"
    "CREATE TABLE IF NOT EXISTS activations(n INTEGER PRIMARY KEY, at_us INTEGER);";

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int json_error(dobj_ctx *ctx, int status, const char *msg)
{
    dobj_res_json(ctx, status, "{\"error\":%s}", dobj_json_str(ctx, msg));
    return 0;
}

static int sql_error(dobj_ctx *ctx, int rc)
{
    dobj_res_json(ctx, 400, "{\"error\":%s,\"code\":%s}", dobj_json_str(ctx, dobj_errmsg(ctx)),
                  dobj_json_str(ctx, dobj_err_name(rc)));
    return 0;
}

static int ok(dobj_ctx *ctx)
{
    dobj_res_json(ctx, 200, "{\"ok\":true}");
    return 0;
}

/* The schema is created in on_activate; fetch makes sure of it as well, so that
 * an object whose first event failed (rolling back on_activate's writes) still
 * has its tables. */
static int ensure_schema(dobj_ctx *ctx)
{
    int rc = dobj_exec(ctx, SCHEMA, NULL);
    if (rc != 0)
        return dobj_fail(ctx, "probe: creating the schema failed: %s", dobj_errmsg(ctx));
    return 0;
}

static int on_activate(dobj_ctx *ctx)
{
    if (ensure_schema(ctx) != 0)
        return DOBJ_EHANDLER;
    if (dobj_exec(ctx, "INSERT INTO activations(at_us) VALUES(?1)", "i", dobj_now_us(ctx)) != 0)
        return dobj_fail(ctx, "probe: recording the activation failed: %s", dobj_errmsg(ctx));
    return 0;
}

static int do_kv(dobj_ctx *ctx, const char *method, const char *key)
{
    int rc;
    if (strcmp(method, "PUT") == 0) {
        size_t len;
        const char *val = dobj_req_body(ctx, &len);
        rc = dobj_exec(ctx, "INSERT OR REPLACE INTO kv(k, v) VALUES(?1, ?2)", "tt", key, val);
        if (rc != 0)
            return dobj_fail(ctx, "probe: kv write failed: %s", dobj_errmsg(ctx));
        return ok(ctx);
    }
    if (strcmp(method, "GET") == 0) {
        const char *val = NULL;
        rc = dobj_query_text(ctx, &val, "SELECT v FROM kv WHERE k = ?1", "t", key);
        if (rc == DOBJ_ENOTFOUND)
            return json_error(ctx, 404, "no such key");
        if (rc != 0)
            return dobj_fail(ctx, "probe: kv read failed: %s", dobj_errmsg(ctx));
        dobj_res_json(ctx, 200, "{\"v\":%s}", dobj_json_str(ctx, val));
        return 0;
    }
    if (strcmp(method, "DELETE") == 0) {
        rc = dobj_exec(ctx, "DELETE FROM kv WHERE k = ?1", "t", key);
        if (rc != 0)
            return dobj_fail(ctx, "probe: kv delete failed: %s", dobj_errmsg(ctx));
        return ok(ctx);
    }
    dobj_res_header(ctx, "allow", "GET, PUT, DELETE");
    return json_error(ctx, 405, "probe: kv accepts GET, PUT and DELETE");
}

static int do_fail(dobj_ctx *ctx)
{
    const char *k = dobj_req_param(ctx, "k");
    const char *v = dobj_req_param(ctx, "v");
    if (k != NULL) {
        if (dobj_exec(ctx, "INSERT OR REPLACE INTO kv(k, v) VALUES(?1, ?2)", "tt", k, v) != 0)
            return dobj_fail(ctx, "probe: insert before failing failed: %s", dobj_errmsg(ctx));
    }
    return dobj_fail(ctx, "probe failure requested");
}

static int do_sql(dobj_ctx *ctx)
{
    size_t len;
    const char *sql = dobj_req_body(ctx, &len);
    int rc = dobj_exec(ctx, sql, NULL);
    if (rc != 0)
        return sql_error(ctx, rc);
    return ok(ctx);
}

static int do_each(dobj_ctx *ctx)
{
    size_t len;
    const char *body = dobj_req_body(ctx, &len);
    char *copy = dobj_alloc(ctx, len + 1);
    memcpy(copy, body, len + 1);
    int errors = 0;
    for (char *save = NULL, *line = strtok_r(copy, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save))
        if (dobj_exec(ctx, line, NULL) != 0)
            errors++;
    return dobj_res_json(ctx, 200, "{\"errors\":%d}", errors);
}

static int do_query(dobj_ctx *ctx)
{
    size_t len;
    const char *sql = dobj_req_body(ctx, &len);
    const char *rows = NULL;
    int rc = dobj_query_json(ctx, &rows, sql, NULL);
    if (rc != 0)
        return sql_error(ctx, rc);
    dobj_res_json(ctx, 200, "{\"rows\":%s}", rows != NULL ? rows : "[]");
    return 0;
}

static int do_nested(dobj_ctx *ctx)
{
    int rc;
    if ((rc = dobj_txn_begin(ctx)) != 0)
        return dobj_fail(ctx, "probe: outer txn_begin: %s", dobj_strerror(rc));
    if (dobj_exec(ctx, "INSERT OR REPLACE INTO kv(k, v) VALUES('a', '1')", NULL) != 0)
        return dobj_fail(ctx, "probe: insert a: %s", dobj_errmsg(ctx));
    if ((rc = dobj_txn_begin(ctx)) != 0)
        return dobj_fail(ctx, "probe: inner txn_begin: %s", dobj_strerror(rc));
    if (dobj_exec(ctx, "INSERT OR REPLACE INTO kv(k, v) VALUES('b', '2')", NULL) != 0)
        return dobj_fail(ctx, "probe: insert b: %s", dobj_errmsg(ctx));
    if ((rc = dobj_txn_rollback(ctx)) != 0)
        return dobj_fail(ctx, "probe: inner txn_rollback: %s", dobj_strerror(rc));
    if ((rc = dobj_txn_commit(ctx)) != 0)
        return dobj_fail(ctx, "probe: outer txn_commit: %s", dobj_strerror(rc));
    return ok(ctx);
}

static int do_echo(dobj_ctx *ctx)
{
    size_t body_len = 0;
    dobj_req_body(ctx, &body_len);
    const char *name = dobj_name(ctx);
    dobj_res_json(ctx, 200,
                  "{\"method\":%s,\"path\":%s,\"query\":%s,\"p\":%s,\"x_test\":%s,"
                  "\"body_len\":%zu,\"class\":%s,\"name\":%s,\"name_len\":%zu}",
                  dobj_json_str(ctx, dobj_req_method(ctx)), dobj_json_str(ctx, dobj_req_path(ctx)),
                  dobj_json_str(ctx, dobj_req_query(ctx)), dobj_json_str(ctx, dobj_req_param(ctx, "p")),
                  dobj_json_str(ctx, dobj_req_header(ctx, "x-test")), body_len,
                  dobj_json_str(ctx, dobj_class_name(ctx)), dobj_json_str(ctx, name), strlen(name));
    return 0;
}

static int do_sleep(dobj_ctx *ctx)
{
    const char *s = dobj_req_param(ctx, "ms");
    char *end = NULL;
    long ms;
    if (s == NULL || *s == '\0')
        return json_error(ctx, 400, "probe: sleep needs ?ms=N");
    errno = 0;
    ms = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || ms < 0 || ms > 2000)
        return json_error(ctx, 400, "probe: ms must be an integer from 0 to 2000");
    int64_t start = mono_us();
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    int64_t end_us = mono_us();
    dobj_res_json(ctx, 200, "{\"ok\":true,\"start_us\":%lld,\"end_us\":%lld}", (long long)start,
                  (long long)end_us);
    return 0;
}

static int do_activations(dobj_ctx *ctx)
{
    int64_t n = 0;
    if (dobj_query_int(ctx, &n, "SELECT count(*) FROM activations", NULL) != 0)
        return dobj_fail(ctx, "probe: counting activations failed: %s", dobj_errmsg(ctx));
    dobj_res_json(ctx, 200, "{\"activations\":%lld}", (long long)n);
    return 0;
}

/* Parses a decimal parameter within [lo, hi]; -1 if absent or invalid. */
static long long param_int(dobj_ctx *ctx, const char *key, long long lo, long long hi, long long dflt)
{
    const char *s = dobj_req_param(ctx, key);
    if (s == NULL || *s == '\0')
        return dflt;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return -1;
    return v;
}

static int do_multi(dobj_ctx *ctx, const char *method)
{
    int rc;
    if (strcmp(method, "GET") == 0) {
        int64_t exists = 0;
        const char *rows = NULL;
        rc = dobj_query_int(ctx, &exists, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'multi'",
                            NULL);
        if (rc != 0)
            return dobj_fail(ctx, "probe: multi lookup failed: %s", dobj_errmsg(ctx));
        if (exists == 0) {
            dobj_res_json(ctx, 200, "{\"groups\":{}}");
            return 0;
        }
        rc = dobj_query_text(ctx, &rows,
                             "SELECT coalesce(json_group_object(grp, n), '{}') FROM"
                             " (SELECT grp, count(*) AS n FROM multi GROUP BY grp ORDER BY grp)",
                             NULL);
        if (rc != 0)
            return dobj_fail(ctx, "probe: multi read failed: %s", dobj_errmsg(ctx));
        dobj_res_json(ctx, 200, "{\"groups\":%s}", rows);
        return 0;
    }
    if (strcmp(method, "POST") != 0) {
        dobj_res_header(ctx, "allow", "GET, POST");
        return json_error(ctx, 405, "probe: multi accepts GET and POST");
    }
    const char *k = dobj_req_param(ctx, "k");
    long long count = param_int(ctx, "count", 1, 10000, -1);
    long long pad = param_int(ctx, "pad", 0, 65536, 0);
    if (k == NULL || *k == '\0' || count < 0 || pad < 0)
        return json_error(ctx, 400, "probe: multi needs k=K, count=1..10000 and optionally pad=0..65536");
    rc = dobj_exec(ctx,
                   "CREATE TABLE IF NOT EXISTS multi(id TEXT PRIMARY KEY, grp TEXT NOT NULL, i INTEGER NOT NULL,"
                   " pad BLOB)",
                   NULL);
    if (rc != 0)
        return dobj_fail(ctx, "probe: creating table multi failed: %s", dobj_errmsg(ctx));
    for (long long i = 0; i < count; i++) {
        rc = dobj_exec(ctx, "INSERT INTO multi(id, grp, i, pad) VALUES(?1 || '-' || ?2, ?1, ?2, randomblob(?3))",
                       "tii", k, (int64_t)i, (int64_t)pad);
        if (rc != 0)
            return dobj_fail(ctx, "probe: multi insert %lld failed: %s", i, dobj_errmsg(ctx));
    }
    dobj_res_json(ctx, 200, "{\"ok\":true,\"k\":%s,\"count\":%lld}", dobj_json_str(ctx, k), count);
    return 0;
}

static int fetch(dobj_ctx *ctx)
{
    const char *method = dobj_req_method(ctx);
    const char *path = dobj_req_path(ctx);

    if (ensure_schema(ctx) != 0)
        return DOBJ_EHANDLER;
    if (strncmp(path, "/kv/", 4) == 0 && path[4] != '\0')
        return do_kv(ctx, method, path + 4);
    if (strcmp(path, "/fail") == 0)
        return do_fail(ctx);
    if (strcmp(path, "/sql") == 0)
        return do_sql(ctx);
    if (strcmp(path, "/each") == 0)
        return do_each(ctx);
    if (strcmp(path, "/query") == 0)
        return do_query(ctx);
    if (strcmp(path, "/nested") == 0)
        return do_nested(ctx);
    if (strncmp(path, "/echo", 5) == 0 && (path[5] == '\0' || path[5] == '/'))
        return do_echo(ctx);
    if (strcmp(path, "/sleep") == 0)
        return do_sleep(ctx);
    if (strcmp(path, "/activations") == 0)
        return do_activations(ctx);
    if (strcmp(path, "/multi") == 0)
        return do_multi(ctx, method);
    if (strcmp(path, "/delete_all") == 0) {
        if (dobj_delete_all(ctx) != 0)
            return dobj_fail(ctx, "probe: delete_all failed: %s", dobj_errmsg(ctx));
        return dobj_res_json(ctx, 200, "{\"ok\":true}");
    }
    return json_error(ctx, 404, dobj_sprintf(ctx, "probe: no route for %s %s", method, path));
}

static int ws_open(dobj_ctx *ctx, dobj_ws *ws)
{
    (void)ctx;
    (void)ws;
    return 0;
}

static int ws_message(dobj_ctx *ctx, dobj_ws *ws, int kind, const void *data, size_t len)
{
    int rc;
    if (kind == DOBJ_WS_TEXT && len == 5 && memcmp(data, "count", 5) == 0) {
        dobj_ws *socks[1];
        size_t n = dobj_ws_list(ctx, NULL, socks, 1);
        char buf[32];
        int m = snprintf(buf, sizeof buf, "%zu", n);
        rc = dobj_ws_send(ctx, ws, DOBJ_WS_TEXT, buf, (size_t)m);
    } else if (kind == DOBJ_WS_TEXT && len == 5 && memcmp(data, "close", 5) == 0) {
        rc = dobj_ws_close(ctx, ws, 4000, "bye");
    } else {
        char *out = dobj_alloc(ctx, len + 5);
        memcpy(out, "echo:", 5);
        if (len > 0)
            memcpy(out + 5, data, len);
        rc = dobj_ws_send(ctx, ws, kind, out, len + 5);
    }
    if (rc != 0)
        return dobj_fail(ctx, "probe: ws reply failed: %s", dobj_strerror(rc));
    return 0;
}

static const dobj_class probe_class = {
    .abi_version = DOBJ_ABI_VERSION,
    .name = "probe",
    .methods = 0,
    .on_activate = on_activate,
    .fetch = fetch,
    .ws_open = ws_open,
    .ws_message = ws_message,
    .ws_close = NULL,
};

DOBJ_CLASS(probe_class)
