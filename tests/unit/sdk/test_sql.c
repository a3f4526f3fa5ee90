/*
 * test_sql.c: sdk/src/sql.c against a real in-memory SQLite, set up the way
 * runtime/actor.c sets up an object's database: the authorizer reads a slot
 * that points at the running event, and the runtime's own statements (the
 * event's BEGIN, the _dobj_meta table) run with the slot empty.
 */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "sdk.h"
#include "sdk_util.h"

static const dobj_class cls = {.abi_version = DOBJ_ABI_VERSION, .name = "probe"};
static sqlite3 *db;
static struct dobj_ctx ctx;
static struct dobj_ctx *slot;

/* Runs the runtime's own SQL, unchecked by the authorizer. */
static void runtime_exec(const char *sql)
{
    struct dobj_ctx *saved = slot;
    slot = NULL;
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    cr_assert_eq(rc, SQLITE_OK, "runtime SQL failed: %s: %s", sql, msg != NULL ? msg : "");
    sqlite3_free(msg);
    slot = saved;
}

static void setup(void)
{
    cr_assert_eq(sqlite3_open(":memory:", &db), SQLITE_OK);
    sdk_ctx_init(&ctx, &cls, "name", db);
    slot = &ctx;
    sqlite3_set_authorizer(db, sdk_authorizer, &slot);
    runtime_exec("CREATE TABLE _dobj_meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
                 "INSERT INTO _dobj_meta VALUES('class', 'probe'), ('name', 'name');");
    runtime_exec("BEGIN IMMEDIATE");
    cr_assert_eq(sqlite3_get_autocommit(db), 0);
}

static void teardown(void)
{
    sdk_ctx_close(&ctx);
    slot = NULL;
    if (sqlite3_get_autocommit(db) == 0)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(db);
}

/* Criterion 2.4 ignores failures in .fini, so every test ends with this. */
static void no_open_statements(void)
{
    cr_assert_null(sqlite3_next_stmt(db, NULL), "a helper left a statement unfinalized");
}

TestSuite(sql, .init = setup, .fini = teardown);
TestSuite(auth, .init = setup, .fini = teardown);
TestSuite(txn, .init = setup, .fini = teardown);

/* Counts rows of `table` outside the SDK. */
static int64_t count(const char *table)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    sqlite3_stmt *st = NULL;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* ---- dobj_exec ----------------------------------------------------------- */

Test(sql, exec_binds_every_type)
{
    cr_assert_eq(dobj_exec(&ctx, "CREATE TABLE t(i, t, b, d, n, tn)", NULL), 0);
    static const unsigned char blob[] = {0x00, 0x01, 0xff};
    int rc = dobj_exec(&ctx, "INSERT INTO t VALUES(?1, ?2, ?3, ?4, ?5, ?6)", "itbdnt", (int64_t)1 << 40,
                       "h\xC3\xA9", (const void *)blob, sizeof(blob), 2.5, (const char *)NULL);
    cr_assert_eq(rc, 0, "%s", dobj_errmsg(&ctx));

    sqlite3_stmt *st = NULL;
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT i, t, b, d, n, tn FROM t", -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_eq(sqlite3_column_type(st, 0), SQLITE_INTEGER);
    cr_assert_eq(sqlite3_column_int64(st, 0), (int64_t)1 << 40);
    cr_assert_eq(sqlite3_column_type(st, 1), SQLITE_TEXT);
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 1), "h\xC3\xA9");
    cr_assert_eq(sqlite3_column_type(st, 2), SQLITE_BLOB);
    cr_assert_eq(sqlite3_column_bytes(st, 2), 3);
    cr_assert_eq(memcmp(sqlite3_column_blob(st, 2), blob, 3), 0);
    cr_assert_eq(sqlite3_column_type(st, 3), SQLITE_FLOAT);
    cr_assert_float_eq(sqlite3_column_double(st, 3), 2.5, 0.0);
    cr_assert_eq(sqlite3_column_type(st, 4), SQLITE_NULL);
    cr_assert_eq(sqlite3_column_type(st, 5), SQLITE_NULL);
    cr_assert_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    no_open_statements();
}

Test(sql, exec_runs_every_statement)
{
    int rc = dobj_exec(&ctx,
                       "CREATE TABLE m(v);"
                       "INSERT INTO m VALUES(1);  -- a comment\n"
                       "INSERT INTO m VALUES(2);;"
                       "/* another */ INSERT INTO m VALUES(3);",
                       NULL);
    cr_assert_eq(rc, 0, "%s", dobj_errmsg(&ctx));
    cr_assert_eq(count("m"), 3);
    /* Parameters bind to the first statement. */
    rc = dobj_exec(&ctx, "INSERT INTO m VALUES(?1); INSERT INTO m VALUES(5)", "i", (int64_t)4);
    cr_assert_eq(rc, 0, "%s", dobj_errmsg(&ctx));
    int64_t v = 0;
    cr_assert_eq(dobj_query_int(&ctx, &v, "SELECT sum(v) FROM m", NULL), 0);
    cr_assert_eq(v, 1 + 2 + 3 + 4 + 5);
    cr_assert_eq(dobj_exec(&ctx, "", NULL), 0);
    cr_assert_eq(dobj_exec(&ctx, "  -- nothing\n", ""), 0);
    no_open_statements();
}

Test(sql, exec_errors)
{
    cr_assert_eq(dobj_exec(&ctx, "INSERT INTO nope VALUES(1)", NULL), DOBJ_ESQLITE);
    cr_assert_not_null(strstr(dobj_errmsg(&ctx), "no such table"), "errmsg: %s", dobj_errmsg(&ctx));
    cr_assert_eq(dobj_exec(&ctx, "CREATE TABLE u(v UNIQUE); INSERT INTO u VALUES(1)", NULL), 0);
    /* A failure at step, not prepare. */
    cr_assert_eq(dobj_exec(&ctx, "INSERT INTO u VALUES(?1)", "i", (int64_t)1), DOBJ_ESQLITE);
    cr_assert_not_null(strstr(dobj_errmsg(&ctx), "UNIQUE"), "errmsg: %s", dobj_errmsg(&ctx));
    /* Statements after a failing one do not run. */
    cr_assert_eq(dobj_exec(&ctx, "INSERT INTO u VALUES(1); INSERT INTO u VALUES(2)", NULL), DOBJ_ESQLITE);
    cr_assert_eq(count("u"), 1);
    no_open_statements();
}

Test(sql, bad_types)
{
    cr_assert_eq(dobj_exec(&ctx, "CREATE TABLE t(a, b)", NULL), 0);
    cr_assert_eq(dobj_exec(&ctx, "INSERT INTO t VALUES(?1, ?2)", "ix", (int64_t)1, 2), DOBJ_EINVAL);
    cr_assert_not_null(strstr(dobj_errmsg(&ctx), "'x'"), "errmsg: %s", dobj_errmsg(&ctx));
    cr_assert_eq(count("t"), 0);
    /* More parameters than the statement has. */
    cr_assert_eq(dobj_exec(&ctx, "INSERT INTO t VALUES(?1, 0)", "ii", (int64_t)1, (int64_t)2), DOBJ_EINVAL);
    cr_assert_eq(count("t"), 0);

    int64_t v = 99;
    cr_assert_eq(dobj_query_int(&ctx, &v, "SELECT ?1", "I", (int64_t)1), DOBJ_EINVAL);
    cr_assert_eq(v, 99);
    const char *s = "untouched";
    cr_assert_eq(dobj_query_text(&ctx, &s, "SELECT ?1", "s", "x"), DOBJ_EINVAL);
    cr_assert_str_eq(s, "untouched");
    cr_assert_eq(dobj_query_json(&ctx, &s, "SELECT ?1", "?", "x"), DOBJ_EINVAL);
    cr_assert_str_eq(s, "untouched");
    no_open_statements();
}

/* ---- queries ------------------------------------------------------------- */

Test(sql, query_int)
{
    int64_t v = 0;
    cr_assert_eq(dobj_query_int(&ctx, &v, "SELECT 7", NULL), 0);
    cr_assert_eq(v, 7);
    cr_assert_eq(dobj_query_int(&ctx, &v, "SELECT ?1 + 1", "i", (int64_t)INT64_MAX - 1), 0);
    cr_assert_eq(v, INT64_MAX);
    cr_assert_eq(dobj_query_int(&ctx, &v, "SELECT -?1", "i", (int64_t)5), 0);
    cr_assert_eq(v, -5);
    cr_assert_eq(dobj_query_int(&ctx, &v, "SELECT length(?1)", "t", "abcd"), 0);
    cr_assert_eq(v, 4);
    no_open_statements();
}

Test(sql, query_int_no_row_leaves_out)
{
    cr_assert_eq(dobj_exec(&ctx, "CREATE TABLE e(v)", NULL), 0);
    int64_t v = 12345;
    cr_assert_eq(dobj_query_int(&ctx, &v, "SELECT v FROM e", NULL), DOBJ_ENOTFOUND);
    cr_assert_eq(v, 12345);
    cr_assert_neq(dobj_errmsg(&ctx)[0], '\0');
    cr_assert_eq(dobj_query_int(&ctx, &v, "SELECT v FROM nope", NULL), DOBJ_ESQLITE);
    cr_assert_eq(v, 12345);
    cr_assert_eq(dobj_query_int(&ctx, &v, "", NULL), DOBJ_EINVAL);
    cr_assert_eq(v, 12345);
    no_open_statements();
}

/* Three rows; the third fails at step, after the first row was read. */
#define FAILS_ON_ROW_3                                                                                     \
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3)"                           \
    " SELECT CASE WHEN x < 3 THEN x ELSE json('not json') END FROM c"

Test(sql, failure_after_the_first_row_leaves_out)
{
    int64_t v = 12345;
    cr_assert_eq(dobj_query_int(&ctx, &v, FAILS_ON_ROW_3, NULL), DOBJ_ESQLITE);
    cr_assert_eq(v, 12345);
    cr_assert_neq(dobj_errmsg(&ctx)[0], '\0');
    const char *s = "sentinel";
    cr_assert_eq(dobj_query_text(&ctx, &s, FAILS_ON_ROW_3, NULL), DOBJ_ESQLITE);
    cr_assert_str_eq(s, "sentinel");
    cr_assert_eq(dobj_query_json(&ctx, &s, FAILS_ON_ROW_3, NULL), DOBJ_ESQLITE);
    cr_assert_str_eq(s, "sentinel");
    no_open_statements();
}

Test(sql, query_int_returning_completes_the_write)
{
    cr_assert_eq(dobj_exec(&ctx, "CREATE TABLE r(v)", NULL), 0);
    int64_t v = 0;
    cr_assert_eq(dobj_query_int(&ctx, &v, "INSERT INTO r VALUES (1), (2), (3) RETURNING v", NULL), 0);
    cr_assert_eq(v, 1);
    cr_assert_eq(count("r"), 3);
    no_open_statements();
}

Test(sql, query_text)
{
    const char *s = NULL;
    cr_assert_eq(dobj_query_text(&ctx, &s, "SELECT 'hello ' || ?1", "t", "world"), 0);
    cr_assert_str_eq(s, "hello world");
    const char *first = s;
    /* Event memory: still valid after later statements. */
    cr_assert_eq(dobj_query_text(&ctx, &s, "SELECT 42", NULL), 0);
    cr_assert_str_eq(s, "42");
    cr_assert_str_eq(first, "hello world");

    s = "sentinel";
    cr_assert_eq(dobj_query_text(&ctx, &s, "SELECT NULL", NULL), 0);
    cr_assert_null(s);

    cr_assert_eq(dobj_exec(&ctx, "CREATE TABLE e(v)", NULL), 0);
    s = "sentinel";
    cr_assert_eq(dobj_query_text(&ctx, &s, "SELECT v FROM e", NULL), DOBJ_ENOTFOUND);
    cr_assert_str_eq(s, "sentinel");
    no_open_statements();
}

Test(sql, query_json_types)
{
    cr_assert_eq(dobj_exec(&ctx, "CREATE TABLE j(i, r, t, b, n)", NULL), 0);
    cr_assert_eq(dobj_exec(&ctx, "INSERT INTO j VALUES(1, 1.5, 'plain', X'00FF10', NULL)", NULL), 0);
    cr_assert_eq(dobj_exec(&ctx, "INSERT INTO j VALUES(-7, -0.25, ?1, X'FF', NULL)", "t", "q\"b\\s\nc\x01"), 0);
    cr_assert_eq(dobj_exec(&ctx, "INSERT INTO j VALUES(?1, 0.0, '', X'FFEE', ?2)", "ib", (int64_t)INT64_MIN,
                           (const void *)"", (size_t)0),
                 0);
    const char *out = NULL;
    cr_assert_eq(dobj_query_json(&ctx, &out, "SELECT * FROM j ORDER BY rowid", NULL), 0, "%s", dobj_errmsg(&ctx));
    const char *want = "["
                       "{\"i\":1,\"r\":1.5,\"t\":\"plain\",\"b\":\"AP8Q\",\"n\":null},"
                       "{\"i\":-7,\"r\":-0.25,\"t\":\"q\\\"b\\\\s\\nc\\u0001\",\"b\":\"/w==\",\"n\":null},"
                       "{\"i\":-9223372036854775808,\"r\":0,\"t\":\"\",\"b\":\"/+4=\",\"n\":\"\"}"
                       "]";
    cr_assert_str_eq(out, want);
    no_open_statements();
}

Test(sql, query_json_names_utf8_and_params)
{
    const char *out = NULL;
    cr_assert_eq(dobj_query_json(&ctx, &out, "SELECT ?1 AS \"a\"\"b\", CAST(X'61FF62' AS TEXT) AS \"\xC3\xA9\"",
                                 "t", "x"),
                 0);
    cr_assert_str_eq(out, "[{\"a\\\"b\":\"x\",\"\xC3\xA9\":\"a\xEF\xBF\xBD" "b\"}]");
    cr_assert_eq(dobj_query_json(&ctx, &out, "SELECT NULL AS v", NULL), 0);
    cr_assert_str_eq(out, "[{\"v\":null}]");
    cr_assert_eq(dobj_query_json(&ctx, &out, "SELECT 'abc' AS b64 UNION ALL SELECT X'616263'", NULL), 0);
    cr_assert_str_eq(out, "[{\"b64\":\"abc\"},{\"b64\":\"YWJj\"}]");
    no_open_statements();
}

Test(sql, query_json_no_rows_and_errors)
{
    cr_assert_eq(dobj_exec(&ctx, "CREATE TABLE e(v)", NULL), 0);
    const char *out = NULL;
    cr_assert_eq(dobj_query_json(&ctx, &out, "SELECT * FROM e", NULL), 0);
    cr_assert_str_eq(out, "[]");
    out = "sentinel";
    cr_assert_eq(dobj_query_json(&ctx, &out, "SELECT * FROM nope", NULL), DOBJ_ESQLITE);
    cr_assert_str_eq(out, "sentinel");
    no_open_statements();
}

/* ---- the authorizer ------------------------------------------------------ */

/* `sql` is refused at prepare with a reason naming `needle`. */
static void expect_denied(const char *sql, const char *needle)
{
    int rc = dobj_exec(&ctx, sql, NULL);
    cr_assert_eq(rc, DOBJ_EDENIED, "%s: got %d (%s)", sql, rc, dobj_errmsg(&ctx));
    const char *msg = dobj_errmsg(&ctx);
    cr_assert_eq(strncmp(msg, "refused: ", 9), 0, "%s: errmsg '%s'", sql, msg);
    cr_assert_gt(strlen(msg), 20, "%s: errmsg '%s' gives no reason", sql, msg);
    cr_assert_not_null(strstr(msg, needle), "%s: errmsg '%s' lacks '%s'", sql, msg, needle);
    /* The event's transaction is untouched. */
    cr_assert_eq(sqlite3_get_autocommit(db), 0, "%s ended the event's transaction", sql);
}

Test(auth, transaction_statements)
{
    expect_denied("BEGIN", "BEGIN");
    expect_denied("BEGIN IMMEDIATE", "BEGIN");
    expect_denied("COMMIT", "COMMIT");
    expect_denied("END", "COMMIT");
    expect_denied("ROLLBACK", "ROLLBACK");
    /* The message points at the alternative. */
    expect_denied("COMMIT", "dobj_txn_");
    no_open_statements();
}

Test(auth, attach_detach)
{
    expect_denied("ATTACH DATABASE ':memory:' AS other", "ATTACH");
    expect_denied("DETACH DATABASE other", "DETACH");
    no_open_statements();
}

Test(auth, durability_pragmas)
{
    expect_denied("PRAGMA journal_mode=DELETE", "journal_mode");
    expect_denied("PRAGMA main.journal_mode = WAL", "journal_mode");
    expect_denied("PRAGMA synchronous=OFF", "synchronous");
    expect_denied("PRAGMA locking_mode=EXCLUSIVE", "locking_mode");
    expect_denied("PRAGMA wal_checkpoint", "wal_checkpoint");
    expect_denied("PRAGMA wal_checkpoint(TRUNCATE)", "wal_checkpoint");
    expect_denied("PRAGMA wal_autocheckpoint=0", "wal_autocheckpoint");
    expect_denied("PRAGMA writable_schema=ON", "writable_schema");
    no_open_statements();
}

Test(auth, runtime_tables_read_only)
{
    expect_denied("INSERT INTO _dobj_meta VALUES('x', 1)", "_dobj_meta");
    expect_denied("UPDATE _dobj_meta SET value = 'evil' WHERE key = 'class'", "_dobj_meta");
    expect_denied("DELETE FROM _dobj_meta", "_dobj_meta");
    expect_denied("DROP TABLE _dobj_meta", "_dobj_meta");
    expect_denied("ALTER TABLE _dobj_meta ADD COLUMN z", "_dobj_meta");
    expect_denied("INSERT INTO _DOBJ_META VALUES('y', 1)", "_dobj_meta");
    expect_denied("CREATE TABLE _dobj_mine(x)", "_dobj_mine");
    cr_assert_eq(count("_dobj_meta"), 2);
    const char *v = NULL;
    /* Reading is allowed. */
    cr_assert_eq(dobj_query_text(&ctx, &v, "SELECT value FROM _dobj_meta WHERE key = 'class'", NULL), 0,
                 "%s", dobj_errmsg(&ctx));
    cr_assert_str_eq(v, "probe");
    no_open_statements();
}

/* Indexes and triggers name their table in the second argument: a trigger on
 * a runtime table would run inside the runtime's own (unchecked) writes. */
Test(auth, no_triggers_indexes_or_shadows_on_runtime_tables)
{
    cr_assert_eq(dobj_exec(&ctx, "CREATE TABLE log(k, v)", NULL), 0, "%s", dobj_errmsg(&ctx));
    expect_denied("CREATE TRIGGER evil AFTER UPDATE ON _dobj_meta BEGIN INSERT INTO log VALUES(1, 2); END",
                  "_dobj_meta");
    expect_denied("CREATE TEMP TRIGGER evil2 AFTER UPDATE ON main._dobj_meta BEGIN DELETE FROM log; END",
                  "_dobj_meta");
    expect_denied("CREATE INDEX ix ON _dobj_meta(value)", "_dobj_meta");
    expect_denied("CREATE TEMP TABLE _dobj_t(x)", "_dobj_t");
    expect_denied("CREATE VIEW _dobj_v AS SELECT 1", "_dobj_v");
    /* Triggers and indexes on the handler's own tables stay allowed. */
    cr_assert_eq(dobj_exec(&ctx, "CREATE INDEX log_k ON log(k)", NULL), 0, "%s", dobj_errmsg(&ctx));
    cr_assert_eq(dobj_exec(&ctx, "CREATE TRIGGER t AFTER INSERT ON log BEGIN SELECT 1; END", NULL), 0, "%s",
                 dobj_errmsg(&ctx));
    no_open_statements();
}

Test(auth, query_only_refused)
{
    expect_denied("PRAGMA query_only=1", "query_only");
    cr_assert_eq(dobj_exec(&ctx, "PRAGMA query_only", NULL), 0, "%s", dobj_errmsg(&ctx));
    no_open_statements();
}

Test(sql, query_json_non_finite_floats_are_null)
{
    const char *out = NULL;
    cr_assert_eq(dobj_query_json(&ctx, &out, "SELECT 1e999 AS a, -1e999 AS b, 0.5 AS c", NULL), 0);
    cr_assert_str_eq(out, "[{\"a\":null,\"b\":null,\"c\":0.5}]");
    no_open_statements();
}

Test(auth, denial_does_not_stick)
{
    expect_denied("BEGIN", "BEGIN");
    /* A later ordinary error is an SQLite error, not a refusal. */
    cr_assert_eq(dobj_exec(&ctx, "SELECT * FROM nope", NULL), DOBJ_ESQLITE);
    cr_assert_null(strstr(dobj_errmsg(&ctx), "refused"), "errmsg: %s", dobj_errmsg(&ctx));
    cr_assert_eq(dobj_exec(&ctx, "CREATE TABLE ok(v); INSERT INTO ok VALUES(1)", NULL), 0);
    cr_assert_eq(count("ok"), 1);
    no_open_statements();
}

Test(auth, allowed)
{
    const char *s = NULL;
    int64_t v = -1;
    cr_assert_eq(dobj_query_text(&ctx, &s, "PRAGMA journal_mode", NULL), 0, "%s", dobj_errmsg(&ctx));
    cr_assert_str_eq(s, "memory");
    cr_assert_eq(dobj_query_int(&ctx, &v, "PRAGMA synchronous", NULL), 0, "%s", dobj_errmsg(&ctx));
    cr_assert_eq(dobj_exec(&ctx, "PRAGMA user_version = 5", NULL), 0, "%s", dobj_errmsg(&ctx));
    cr_assert_eq(dobj_query_int(&ctx, &v, "PRAGMA user_version", NULL), 0);
    cr_assert_eq(v, 5);
    cr_assert_eq(dobj_exec(&ctx, "CREATE TABLE mine(v); CREATE INDEX mine_v ON mine(v);"
                                 "INSERT INTO mine VALUES(1); UPDATE mine SET v = 2; DELETE FROM mine;"
                                 "DROP TABLE mine",
                           NULL),
                 0, "%s", dobj_errmsg(&ctx));
    cr_assert_eq(dobj_query_int(&ctx, &v, "SELECT count(*) FROM sqlite_schema", NULL), 0);
    cr_assert_eq(v, 1);
    no_open_statements();
}

Test(auth, runtime_statements_unchecked)
{
    /* With the slot empty the runtime may write its own table. */
    runtime_exec("INSERT INTO _dobj_meta VALUES('lsn', 1)");
    cr_assert_eq(count("_dobj_meta"), 3);
    /* And with the slot set again the handler may not. */
    expect_denied("DELETE FROM _dobj_meta WHERE key = 'lsn'", "_dobj_meta");
    cr_assert_eq(count("_dobj_meta"), 3);
    no_open_statements();
}

/* ---- savepoints ---------------------------------------------------------- */

Test(txn, savepoints_allowed_by_the_authorizer)
{
    cr_assert_eq(dobj_txn_begin(&ctx), 0, "%s", dobj_errmsg(&ctx));
    cr_assert_eq(ctx.txn_depth, 1);
    cr_assert_eq(dobj_txn_commit(&ctx), 0, "%s", dobj_errmsg(&ctx));
    cr_assert_eq(ctx.txn_depth, 0);
    cr_assert_eq(dobj_txn_begin(&ctx), 0);
    cr_assert_eq(dobj_txn_rollback(&ctx), 0, "%s", dobj_errmsg(&ctx));
    cr_assert_eq(ctx.txn_depth, 0);
    cr_assert_eq(sqlite3_get_autocommit(db), 0);
    no_open_statements();
}

Test(txn, inner_rollback_keeps_outer_writes)
{
    cr_assert_eq(dobj_exec(&ctx, "CREATE TABLE n(v)", NULL), 0);
    cr_assert_eq(dobj_txn_begin(&ctx), 0);
    cr_assert_eq(dobj_exec(&ctx, "INSERT INTO n VALUES(1)", NULL), 0);
    cr_assert_eq(dobj_txn_begin(&ctx), 0);
    cr_assert_eq(ctx.txn_depth, 2);
    cr_assert_eq(dobj_exec(&ctx, "INSERT INTO n VALUES(2)", NULL), 0);
    cr_assert_eq(count("n"), 2);
    cr_assert_eq(dobj_txn_rollback(&ctx), 0);
    cr_assert_eq(ctx.txn_depth, 1);
    cr_assert_eq(count("n"), 1);
    int64_t v = 0;
    cr_assert_eq(dobj_query_int(&ctx, &v, "SELECT v FROM n", NULL), 0);
    cr_assert_eq(v, 1);
    /* A new inner level after the rollback works too. */
    cr_assert_eq(dobj_txn_begin(&ctx), 0);
    cr_assert_eq(dobj_exec(&ctx, "INSERT INTO n VALUES(3)", NULL), 0);
    cr_assert_eq(dobj_txn_commit(&ctx), 0);
    cr_assert_eq(dobj_txn_commit(&ctx), 0);
    cr_assert_eq(ctx.txn_depth, 0);
    cr_assert_eq(count("n"), 2);
    /* Still inside the event's transaction: the runtime's rollback undoes all. */
    cr_assert_eq(sqlite3_get_autocommit(db), 0);
    runtime_exec("ROLLBACK");
    cr_assert_eq(sqlite3_get_autocommit(db), 1);
    cr_assert_eq(sqlite3_errcode(db), SQLITE_OK);
    no_open_statements();
}

Test(txn, outer_rollback_undoes_committed_inner)
{
    cr_assert_eq(dobj_exec(&ctx, "CREATE TABLE n(v)", NULL), 0);
    cr_assert_eq(dobj_txn_begin(&ctx), 0);
    cr_assert_eq(dobj_exec(&ctx, "INSERT INTO n VALUES(1)", NULL), 0);
    cr_assert_eq(dobj_txn_begin(&ctx), 0);
    cr_assert_eq(dobj_exec(&ctx, "INSERT INTO n VALUES(2)", NULL), 0);
    cr_assert_eq(dobj_txn_commit(&ctx), 0);
    cr_assert_eq(count("n"), 2);
    cr_assert_eq(dobj_txn_rollback(&ctx), 0);
    cr_assert_eq(count("n"), 0);
    cr_assert_eq(ctx.txn_depth, 0);
    /* The table itself was created before the savepoints. */
    cr_assert_eq(dobj_exec(&ctx, "INSERT INTO n VALUES(9)", NULL), 0);
    cr_assert_eq(count("n"), 1);
    no_open_statements();
}

Test(txn, unwind_rolls_back_open_levels)
{
    cr_assert_eq(dobj_exec(&ctx, "CREATE TABLE n(v); INSERT INTO n VALUES(0)", NULL), 0);
    cr_assert_eq(sdk_ctx_unwind_txn(&ctx), 0, "nothing open is fine");
    cr_assert_eq(dobj_txn_begin(&ctx), 0);
    cr_assert_eq(dobj_exec(&ctx, "INSERT INTO n VALUES(1)", NULL), 0);
    cr_assert_eq(dobj_txn_begin(&ctx), 0);
    cr_assert_eq(dobj_exec(&ctx, "INSERT INTO n VALUES(2)", NULL), 0);
    cr_assert_eq(dobj_txn_begin(&ctx), 0);
    cr_assert_eq(dobj_exec(&ctx, "INSERT INTO n VALUES(3)", NULL), 0);
    cr_assert_eq(ctx.txn_depth, 3);
    cr_assert_eq(sdk_ctx_unwind_txn(&ctx), 0, "%s", dobj_errmsg(&ctx));
    cr_assert_eq(ctx.txn_depth, 0);
    cr_assert_eq(count("n"), 1);
    cr_assert_eq(sqlite3_get_autocommit(db), 0, "unwinding ended the event's transaction");
    /* The runtime can still commit the event. */
    runtime_exec("COMMIT");
    cr_assert_eq(count("n"), 1);
    no_open_statements();
}

Test(txn, commit_or_rollback_without_begin)
{
    cr_assert_eq(dobj_txn_commit(&ctx), DOBJ_ESTATE);
    cr_assert_eq(dobj_txn_rollback(&ctx), DOBJ_ESTATE);
    cr_assert_eq(dobj_txn_begin(&ctx), 0);
    cr_assert_eq(dobj_txn_commit(&ctx), 0);
    cr_assert_eq(dobj_txn_commit(&ctx), DOBJ_ESTATE);
    cr_assert_eq(ctx.txn_depth, 0);
    cr_assert_eq(sqlite3_get_autocommit(db), 0);
    no_open_statements();
}

Test(txn, depth_limit)
{
    unsigned n = 0;
    int rc;
    while ((rc = dobj_txn_begin(&ctx)) == 0 && n < 1000)
        n++;
    cr_assert_eq(rc, DOBJ_ELIMIT);
    cr_assert_eq(n, 64);
    cr_assert_eq(ctx.txn_depth, 64);
    cr_assert_eq(sdk_ctx_unwind_txn(&ctx), 0);
    cr_assert_eq(ctx.txn_depth, 0);
    no_open_statements();
}

/* The statement cache: the same SQL compiled once, rebound each time, right
 * across schema changes and evictions. */
Test(sql, statement_cache)
{
    struct sdk_stmt_cache cache;
    memset(&cache, 0, sizeof(cache));
    ctx.stmts = &cache;
    cr_assert_eq(dobj_exec(&ctx, "CREATE TABLE c(k INTEGER PRIMARY KEY, v)", NULL), 0);
    for (int64_t i = 0; i < 40; i++) {
        int64_t out = -1;
        cr_assert_eq(dobj_exec(&ctx, "INSERT INTO c VALUES(?1, ?2)", "ii", i, i * 10), 0, "%s", dobj_errmsg(&ctx));
        cr_assert_eq(dobj_query_int(&ctx, &out, "SELECT v FROM c WHERE k = ?1", "i", i), 0);
        cr_assert_eq(out, i * 10);
        /* Distinct SQL texts push others out of the 16 slots. */
        char sql[64];
        snprintf(sql, sizeof(sql), "SELECT %d + count(*) FROM c", (int)i);
        cr_assert_eq(dobj_query_int(&ctx, &out, sql, NULL), 0);
        cr_assert_eq(out, i + i + 1);
    }
    /* A cached statement survives its table being dropped and made again. */
    int64_t out = -1;
    cr_assert_eq(dobj_exec(&ctx, "DROP TABLE c; CREATE TABLE c(k INTEGER PRIMARY KEY, v)", NULL), 0);
    cr_assert_eq(dobj_query_int(&ctx, &out, "SELECT v FROM c WHERE k = ?1", "i", (int64_t)3), DOBJ_ENOTFOUND);
    cr_assert_eq(dobj_exec(&ctx, "INSERT INTO c VALUES(?1, ?2)", "ii", (int64_t)3, (int64_t)33), 0);
    cr_assert_eq(dobj_query_int(&ctx, &out, "SELECT v FROM c WHERE k = ?1", "i", (int64_t)3), 0);
    cr_assert_eq(out, 33);
    /* Multi-statement SQL is never cached. */
    for (int i = 0; i < SDK_STMT_CACHE_SIZE; i++)
        if (cache.e[i].sql != NULL)
            cr_assert_null(strchr(cache.e[i].sql, ';'), "cached: %s", cache.e[i].sql);
    sdk_stmt_cache_clear(&cache);
    ctx.stmts = NULL;
    no_open_statements();
}
