/*
 * counter: one 64-bit integer per object, e.g. /counter/alice.
 *
 *   GET  /counter/<name>          200 {"name":"<name>","value":N}
 *                                 (N is 0 until the first POST)
 *   POST /counter/<name>          adds 1 and answers 200 {"name":"<name>","value":N}
 *   POST /counter/<name>?by=5     adds 5 (negative amounts subtract)
 *   POST /counter/<name>  body 5  adds 5 when there is no `by` parameter; blanks
 *                                 around the number are allowed, an empty body adds 1
 *
 * The rest path may be "" or "/" (/counter/alice/ works too); any other gives
 * 404 {"error":"no such path '<path>'"}. An amount that is not a base-10
 * int64 gives 400, and so does an increment that would take the value past the
 * int64 range: the counter refuses instead of wrapping or turning into a float.
 * Other methods get 405 from the runtime.
 *
 *   curl -X POST 'http://localhost:8080/counter/alice?by=5'
 *   {"name":"alice","value":5}
 */
#include <dobj.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* The longest amount quoted back in an error message, so that a large body is
 * not echoed whole to the client. */
#define AMOUNT_SHOWN_MAX 64

/* The schema runs on every activation, so it must be idempotent. The CHECK
 * keeps the table to the single row that the UPSERT below targets. */
static int counter_activate(dobj_ctx *ctx)
{
    int rc = dobj_exec(ctx,
                       "CREATE TABLE IF NOT EXISTS counter("
                       "id INTEGER PRIMARY KEY CHECK (id = 1), "
                       "value INTEGER NOT NULL)",
                       NULL);
    if (rc != 0)
        return dobj_fail(ctx, "cannot create table counter: %s", dobj_errmsg(ctx));
    return 0;
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Parses `len` bytes of `s` as a base-10 int64 with optional blanks around it.
 * Every way strtoll can accept less than the whole text (no digits, trailing
 * bytes, an embedded NUL, out of range) is an error, reported as 400. */
static int amount_parse(dobj_ctx *ctx, const char *s, size_t len, int64_t *out)
{
    while (len > 0 && is_blank(s[0])) {
        s++;
        len--;
    }
    while (len > 0 && is_blank(s[len - 1]))
        len--;

    char *text = dobj_alloc(ctx, len + 1);
    memcpy(text, s, len);
    text[len] = '\0';

    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (len == 0 || end != text + len || errno == ERANGE)
        return dobj_fail_status(ctx, 400, "invalid amount '%.*s': expected an integer",
                                AMOUNT_SHOWN_MAX, text);
    *out = (int64_t)v;
    return 0;
}

/* The amount comes from `?by=` first, then from the body; an empty body means 1
 * so that a bare POST counts one. */
static int amount_get(dobj_ctx *ctx, int64_t *out)
{
    const char *by = dobj_req_param(ctx, "by");
    if (by != NULL)
        return amount_parse(ctx, by, strlen(by), out);

    size_t len = 0;
    const char *body = dobj_req_body(ctx, &len);
    for (size_t i = 0; i < len; i++) {
        if (!is_blank(body[i]))
            return amount_parse(ctx, body, len, out);
    }
    *out = 1;
    return 0;
}

static int respond_value(dobj_ctx *ctx, int64_t value)
{
    int rc = dobj_res_json(ctx, 200, "{\"name\":%s,\"value\":%" PRId64 "}",
                           dobj_json_str(ctx, dobj_name(ctx)), value);
    if (rc != 0)
        return dobj_fail(ctx, "cannot set the response: %s", dobj_strerror(rc));
    return 0;
}

static int counter_get(dobj_ctx *ctx)
{
    int64_t value = 0;
    int rc = dobj_query_int(ctx, &value, "SELECT value FROM counter WHERE id = 1", NULL);
    if (rc != 0 && rc != DOBJ_ENOTFOUND)
        return dobj_fail(ctx, "cannot read the counter: %s", dobj_errmsg(ctx));
    return respond_value(ctx, value);
}

/*
 * One UPSERT both creates the row and increments it. SQLite does not fail on
 * integer overflow in `+`: it silently turns the sum into a REAL. So the DO
 * UPDATE only runs when the sum fits in int64 (?2 and ?3 are the bounds; each
 * CASE branch subtracts in the direction that cannot overflow). When it does
 * not fit, nothing is written and RETURNING yields no row.
 */
static const char increment_sql[] =
    "INSERT INTO counter(id, value) VALUES(1, ?1) "
    "ON CONFLICT(id) DO UPDATE SET value = value + excluded.value "
    "WHERE CASE WHEN excluded.value >= 0 THEN value <= ?2 - excluded.value "
    "ELSE value >= ?3 - excluded.value END "
    "RETURNING value";

static int counter_post(dobj_ctx *ctx)
{
    int64_t by = 0;
    int rc = amount_get(ctx, &by);
    if (rc != 0)
        return rc;

    int64_t value = 0;
    rc = dobj_query_int(ctx, &value, increment_sql, "iii", by, (int64_t)INT64_MAX,
                        (int64_t)INT64_MIN);
    if (rc == DOBJ_ENOTFOUND)
        return dobj_fail_status(ctx, 400, "adding %" PRId64 " would overflow the counter", by);
    if (rc != 0)
        return dobj_fail(ctx, "cannot increment the counter: %s", dobj_errmsg(ctx));
    return respond_value(ctx, value);
}

static int counter_fetch(dobj_ctx *ctx)
{
    const char *path = dobj_req_path(ctx);
    if (strcmp(path, "") != 0 && strcmp(path, "/") != 0) {
        const char *msg = dobj_sprintf(ctx, "no such path '%s'", path);
        int rc = dobj_res_json(ctx, 404, "{\"error\":%s}", dobj_json_str(ctx, msg));
        if (rc != 0)
            return dobj_fail(ctx, "cannot set the response: %s", dobj_strerror(rc));
        return 0;
    }
    /* The class accepts only GET and POST, so anything else never gets here. */
    if (strcmp(dobj_req_method(ctx), "POST") == 0)
        return counter_post(ctx);
    return counter_get(ctx);
}

static const dobj_class counter_class = {
    .abi_version = DOBJ_ABI_VERSION,
    .name = "counter",
    .methods = DOBJ_GET | DOBJ_POST,
    .on_activate = counter_activate,
    .fetch = counter_fetch,
};

DOBJ_CLASS(counter_class)
