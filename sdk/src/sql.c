/*
 * sql.c: the SQL helpers of dobj.h (exec and queries with bound parameters,
 * savepoint transactions) and the authorizer that keeps handlers away from
 * what the runtime owns: the event's transaction, the journal mode and
 * durability settings, other database files and the _dobj_ tables.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sdk.h"
#include "sdk_util.h"

/* ---- authorizer -------------------------------------------------------- */

static bool is_runtime_table(const char *name)
{
    return name != NULL && strncasecmp(name, "_dobj_", 6) == 0;
}

/* PRAGMAs that would take durability or file layout away from the runtime. */
static bool pragma_refused(const char *name, const char *arg)
{
    static const char *const always[] = {"wal_checkpoint", "writable_schema", NULL};
    /* query_only would outlive the event on the object's connection. */
    static const char *const on_change[] = {"journal_mode", "synchronous", "locking_mode", "wal_autocheckpoint",
                                            "journal_size_limit", "mmap_size", "page_size", "auto_vacuum",
                                            "query_only", NULL};
    for (int i = 0; always[i] != NULL; i++)
        if (strcasecmp(name, always[i]) == 0)
            return true;
    if (arg == NULL)
        return false;
    for (int i = 0; on_change[i] != NULL; i++)
        if (strcasecmp(name, on_change[i]) == 0)
            return true;
    return false;
}

static int deny(struct dobj_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int deny(struct dobj_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->deny, sizeof(ctx->deny), fmt, ap);
    va_end(ap);
    return SQLITE_DENY;
}

int sdk_authorizer(void *user, int action, const char *a1, const char *a2, const char *db, const char *trigger)
{
    (void)db;
    (void)trigger;
    struct dobj_ctx *ctx = *(struct dobj_ctx **)user;
    if (ctx == NULL)
        return SQLITE_OK; /* the runtime's own statement */
    switch (action) {
    case SQLITE_TRANSACTION:
        return deny(ctx, "%s is managed by the runtime: every event runs in one transaction; "
                         "use dobj_txn_begin/commit/rollback for nested transactions", a1 != NULL ? a1 : "");
    case SQLITE_ATTACH:
    case SQLITE_DETACH:
        return deny(ctx, "ATTACH and DETACH are refused: an object owns exactly one database");
    case SQLITE_PRAGMA:
        if (pragma_refused(a1, a2))
            return deny(ctx, "PRAGMA %s is managed by the runtime", a1);
        return SQLITE_OK;
    /* a1 names the table (or view) written or created. */
    case SQLITE_INSERT:
    case SQLITE_UPDATE:
    case SQLITE_DELETE:
    case SQLITE_CREATE_TABLE:
    case SQLITE_CREATE_TEMP_TABLE:
    case SQLITE_DROP_TABLE:
    case SQLITE_DROP_TEMP_TABLE:
    case SQLITE_CREATE_VIEW:
    case SQLITE_CREATE_TEMP_VIEW:
        if (is_runtime_table(a1))
            return deny(ctx, "%s belongs to the runtime (names starting with _dobj_ are reserved)", a1);
        return SQLITE_OK;
    /* a2 names the table an index or trigger is on, or the table altered: a
     * trigger on a runtime table would run inside the runtime's own writes. */
    case SQLITE_ALTER_TABLE:
    case SQLITE_CREATE_INDEX:
    case SQLITE_CREATE_TEMP_INDEX:
    case SQLITE_DROP_INDEX:
    case SQLITE_DROP_TEMP_INDEX:
    case SQLITE_CREATE_TRIGGER:
    case SQLITE_CREATE_TEMP_TRIGGER:
    case SQLITE_DROP_TRIGGER:
    case SQLITE_DROP_TEMP_TRIGGER:
        if (is_runtime_table(a2))
            return deny(ctx, "%s belongs to the runtime (names starting with _dobj_ are reserved)", a2);
        return SQLITE_OK;
    default:
        return SQLITE_OK;
    }
}

/* ---- statements -------------------------------------------------------- */

static int sql_error(struct dobj_ctx *ctx, int rc)
{
    if (rc == SQLITE_AUTH && ctx->deny[0] != '\0') {
        snprintf(ctx->errmsg, sizeof(ctx->errmsg), "refused: %s", ctx->deny);
        return DOBJ_EDENIED;
    }
    snprintf(ctx->errmsg, sizeof(ctx->errmsg), "%s", sqlite3_errmsg(ctx->db));
    return DOBJ_ESQLITE;
}

static int bind_params(struct dobj_ctx *ctx, sqlite3_stmt *st, const char *types, va_list *ap)
{
    if (types == NULL)
        return 0;
    int n = (int)strlen(types);
    if (n > sqlite3_bind_parameter_count(st)) {
        snprintf(ctx->errmsg, sizeof(ctx->errmsg), "%d parameters given, the statement has %d", n,
                 sqlite3_bind_parameter_count(st));
        return DOBJ_EINVAL;
    }
    for (int i = 0; i < n; i++) {
        int rc;
        switch (types[i]) {
        case 'i':
            rc = sqlite3_bind_int64(st, i + 1, va_arg(*ap, int64_t));
            break;
        case 'd':
            rc = sqlite3_bind_double(st, i + 1, va_arg(*ap, double));
            break;
        case 't': {
            const char *s = va_arg(*ap, const char *);
            rc = s != NULL ? sqlite3_bind_text(st, i + 1, s, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, i + 1);
            break;
        }
        case 'b': {
            const void *p = va_arg(*ap, const void *);
            size_t len = va_arg(*ap, size_t);
            rc = sqlite3_bind_blob64(st, i + 1, p, len, SQLITE_TRANSIENT);
            break;
        }
        case 'n':
            rc = sqlite3_bind_null(st, i + 1);
            break;
        default:
            snprintf(ctx->errmsg, sizeof(ctx->errmsg), "unknown parameter type '%c' in \"%s\"", types[i], types);
            return DOBJ_EINVAL;
        }
        if (rc != SQLITE_OK)
            return sql_error(ctx, rc);
    }
    return 0;
}

/* Prepares the first statement of *sql and binds; *sql moves past it. A
 * statement made only of whitespace or comments gives *out == NULL. */
void sdk_stmt_cache_clear(struct sdk_stmt_cache *c)
{
    for (int i = 0; i < SDK_STMT_CACHE_SIZE; i++) {
        sqlite3_finalize(c->e[i].st);
        free(c->e[i].sql);
    }
    memset(c, 0, sizeof(*c));
}

static sqlite3_stmt *cache_get(struct dobj_ctx *ctx, const char *sql)
{
    struct sdk_stmt_cache *c = ctx->stmts;
    for (int i = 0; c != NULL && i < SDK_STMT_CACHE_SIZE; i++)
        if (c->e[i].st != NULL && strcmp(c->e[i].sql, sql) == 0) {
            c->e[i].used = ++c->tick;
            return c->e[i].st;
        }
    return NULL;
}

/* Keeps a statement whose SQL is exactly one statement, evicting the least
 * recently used one. */
static void cache_put(struct dobj_ctx *ctx, const char *sql, sqlite3_stmt *st)
{
    struct sdk_stmt_cache *c = ctx->stmts;
    int victim = 0;
    for (int i = 1; i < SDK_STMT_CACHE_SIZE; i++)
        if (c->e[i].used < c->e[victim].used)
            victim = i;
    sqlite3_finalize(c->e[victim].st);
    free(c->e[victim].sql);
    c->e[victim].sql = sdk_xstrndup(sql, strlen(sql));
    c->e[victim].st = st;
    c->e[victim].used = ++c->tick;
}

/* Done with a statement: a cached one is reset for its next use. */
static void release(struct dobj_ctx *ctx, sqlite3_stmt *st)
{
    struct sdk_stmt_cache *c = ctx->stmts;
    for (int i = 0; c != NULL && i < SDK_STMT_CACHE_SIZE; i++)
        if (c->e[i].st == st) {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            return;
        }
    sqlite3_finalize(st);
}

static bool only_blanks(const char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == ';')
        s++;
    return *s == '\0';
}

static int prepare(struct dobj_ctx *ctx, const char **sql, sqlite3_stmt **out, const char *types, va_list *ap)
{
    ctx->errmsg[0] = '\0';
    ctx->deny[0] = '\0';
    sqlite3_stmt *st = cache_get(ctx, *sql);
    const char *tail = *sql + strlen(*sql);
    if (st == NULL) {
        int rc = sqlite3_prepare_v2(ctx->db, *sql, -1, &st, &tail);
        if (rc != SQLITE_OK)
            return sql_error(ctx, rc);
        if (st != NULL && ctx->stmts != NULL && only_blanks(tail))
            cache_put(ctx, *sql, st);
    }
    if (st != NULL && types != NULL) {
        int err = bind_params(ctx, st, types, ap);
        if (err != 0) {
            release(ctx, st);
            return err;
        }
    }
    *sql = tail;
    *out = st;
    return 0;
}

int dobj_exec(dobj_ctx *ctx, const char *sql, const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    int err = 0;
    bool first = true;
    while (err == 0 && sql != NULL && *sql != '\0') {
        sqlite3_stmt *st = NULL;
        err = prepare(ctx, &sql, &st, first ? types : NULL, &ap);
        if (err != 0 || st == NULL)
            break;
        first = false;
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            ;
        if (rc != SQLITE_DONE)
            err = sql_error(ctx, rc);
        release(ctx, st);
    }
    va_end(ap);
    return err;
}

/* Runs `sql` and leaves the statement on its first row; DOBJ_ENOTFOUND if none. */
static int query_first(struct dobj_ctx *ctx, sqlite3_stmt **out, const char *sql, const char *types, va_list *ap)
{
    sqlite3_stmt *st = NULL;
    int err = prepare(ctx, &sql, &st, types, ap);
    if (err != 0)
        return err;
    if (st == NULL) {
        snprintf(ctx->errmsg, sizeof(ctx->errmsg), "empty statement");
        return DOBJ_EINVAL;
    }
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = st;
        return 0;
    }
    err = rc == SQLITE_DONE ? DOBJ_ENOTFOUND : sql_error(ctx, rc);
    if (err == DOBJ_ENOTFOUND)
        snprintf(ctx->errmsg, sizeof(ctx->errmsg), "no such row");
    release(ctx, st);
    return err;
}

/* Steps a statement that returned its first row to the end, so that a
 * RETURNING statement completes its writes. */
static int finish(struct dobj_ctx *ctx, sqlite3_stmt *st)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    int err = rc == SQLITE_DONE ? 0 : sql_error(ctx, rc);
    release(ctx, st);
    return err;
}

int dobj_query_int(dobj_ctx *ctx, int64_t *out, const char *sql, const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    sqlite3_stmt *st = NULL;
    int err = query_first(ctx, &st, sql, types, &ap);
    va_end(ap);
    if (err != 0)
        return err;
    int64_t v = sqlite3_column_int64(st, 0);
    err = finish(ctx, st);
    if (err == 0)
        *out = v;
    return err;
}

int dobj_query_text(dobj_ctx *ctx, const char **out, const char *sql, const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    sqlite3_stmt *st = NULL;
    int err = query_first(ctx, &st, sql, types, &ap);
    va_end(ap);
    if (err != 0)
        return err;
    const unsigned char *t = sqlite3_column_text(st, 0);
    const char *v = t != NULL ? sdk_arena_strndup(&ctx->arena, (const char *)t, (size_t)sqlite3_column_bytes(st, 0))
                              : NULL;
    err = finish(ctx, st);
    if (err == 0)
        *out = v;
    return err;
}

static void base64(struct sdk_buf *b, const unsigned char *p, size_t len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    sdk_buf_reserve(b, (len + 2) / 3 * 4 + 2);
    sdk_buf_append(b, "\"", 1);
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < len ? (unsigned)p[i + 1] << 8 : 0) | (i + 2 < len ? p[i + 2] : 0);
        char q[4] = {tab[v >> 18 & 63], tab[v >> 12 & 63], i + 1 < len ? tab[v >> 6 & 63] : '=',
                     i + 2 < len ? tab[v & 63] : '='};
        sdk_buf_append(b, q, 4);
    }
    sdk_buf_append(b, "\"", 1);
}

static void row_json(struct sdk_buf *b, sqlite3_stmt *st)
{
    int ncol = sqlite3_column_count(st);
    sdk_buf_append(b, "{", 1);
    for (int c = 0; c < ncol; c++) {
        if (c > 0)
            sdk_buf_append(b, ",", 1);
        const char *name = sqlite3_column_name(st, c);
        sdk_buf_json_str(b, name, strlen(name));
        sdk_buf_append(b, ":", 1);
        switch (sqlite3_column_type(st, c)) {
        case SQLITE_INTEGER:
            sdk_buf_printf(b, "%lld", (long long)sqlite3_column_int64(st, c));
            break;
        case SQLITE_FLOAT: {
            double d = sqlite3_column_double(st, c);
            /* JSON has no infinities or NaN. */
            if (isfinite(d))
                sdk_buf_printf(b, "%.17g", d);
            else
                sdk_buf_append(b, "null", 4);
            break;
        }
        case SQLITE_TEXT:
            sdk_buf_json_str(b, (const char *)sqlite3_column_text(st, c), (size_t)sqlite3_column_bytes(st, c));
            break;
        case SQLITE_BLOB:
            base64(b, sqlite3_column_blob(st, c), (size_t)sqlite3_column_bytes(st, c));
            break;
        default:
            sdk_buf_append(b, "null", 4);
        }
    }
    sdk_buf_append(b, "}", 1);
}

int dobj_query_json(dobj_ctx *ctx, const char **out, const char *sql, const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    sqlite3_stmt *st = NULL;
    int err = prepare(ctx, &sql, &st, types, &ap);
    va_end(ap);
    if (err != 0)
        return err;
    if (st == NULL) {
        snprintf(ctx->errmsg, sizeof(ctx->errmsg), "empty statement");
        return DOBJ_EINVAL;
    }
    struct sdk_buf b = {0};
    sdk_buf_append(&b, "[", 1);
    int rc;
    for (int n = 0; (rc = sqlite3_step(st)) == SQLITE_ROW; n++) {
        if (n > 0)
            sdk_buf_append(&b, ",", 1);
        row_json(&b, st);
    }
    sdk_buf_append(&b, "]", 1);
    err = rc == SQLITE_DONE ? 0 : sql_error(ctx, rc);
    release(ctx, st);
    if (err == 0)
        *out = sdk_arena_strndup(&ctx->arena, b.data, b.len);
    sdk_buf_close(&b);
    return err;
}

/* ---- savepoints -------------------------------------------------------- */

static int savepoint(struct dobj_ctx *ctx, const char *verb, unsigned depth)
{
    char sql[64];
    snprintf(sql, sizeof(sql), "%s dobj_sp%u", verb, depth);
    char *msg = NULL;
    int rc = sqlite3_exec(ctx->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        snprintf(ctx->errmsg, sizeof(ctx->errmsg), "%s", msg != NULL ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return DOBJ_ESQLITE;
    }
    return 0;
}

int dobj_delete_all(dobj_ctx *ctx)
{
    if (ctx == NULL || ctx->db == NULL)
        return DOBJ_ESTATE;
    /* Views first: a view may name a table. */
    static const char list[] = "SELECT type, name FROM sqlite_schema WHERE type IN ('view', 'table') AND "
                               "name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_dobj\\_%' ESCAPE '\\' "
                               "ORDER BY type = 'table'";
    for (;;) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(ctx->db, list, -1, &st, NULL);
        if (rc != SQLITE_OK)
            return sql_error(ctx, rc);
        if (sqlite3_step(st) != SQLITE_ROW) {
            sqlite3_finalize(st);
            break;
        }
        const char *type = (const char *)sqlite3_column_text(st, 0);
        const char *name = (const char *)sqlite3_column_text(st, 1);
        /* %w doubles the quotes of an identifier. */
        char *drop = sqlite3_mprintf("DROP %s \"%w\"", strcmp(type, "view") == 0 ? "VIEW" : "TABLE", name);
        sqlite3_finalize(st);
        if (ctx->stmts != NULL)
            sdk_stmt_cache_clear(ctx->stmts);
        rc = drop != NULL ? sqlite3_exec(ctx->db, drop, NULL, NULL, NULL) : SQLITE_NOMEM;
        sqlite3_free(drop);
        if (rc != SQLITE_OK)
            return sql_error(ctx, rc);
    }
    ctx->deleted_all = true;
    return 0;
}

int dobj_txn_begin(dobj_ctx *ctx)
{
    if (ctx->txn_depth >= 64)
        return DOBJ_ELIMIT;
    int err = savepoint(ctx, "SAVEPOINT", ctx->txn_depth + 1);
    if (err == 0)
        ctx->txn_depth++;
    return err;
}

int dobj_txn_commit(dobj_ctx *ctx)
{
    if (ctx->txn_depth == 0)
        return DOBJ_ESTATE;
    int err = savepoint(ctx, "RELEASE", ctx->txn_depth);
    if (err == 0)
        ctx->txn_depth--;
    return err;
}

int dobj_txn_rollback(dobj_ctx *ctx)
{
    if (ctx->txn_depth == 0)
        return DOBJ_ESTATE;
    int err = savepoint(ctx, "ROLLBACK TO", ctx->txn_depth);
    if (err == 0)
        err = savepoint(ctx, "RELEASE", ctx->txn_depth);
    if (err == 0)
        ctx->txn_depth--;
    return err;
}

int sdk_ctx_unwind_txn(struct dobj_ctx *ctx)
{
    while (ctx->txn_depth > 0) {
        int err = dobj_txn_rollback(ctx);
        if (err != 0)
            return err;
    }
    return 0;
}
