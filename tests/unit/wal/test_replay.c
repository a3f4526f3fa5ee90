/*
 * Replayability: applying records 1..k of a seeded random workload to an empty
 * file gives the live database as it was after commit k (integrity_check ok
 * and the same content hash). Records go through encode and decode on the way,
 * as they will through the journal.
 */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "sdk_util.h"
#include "wal.h"

struct run {
    sqlite3 *db;
    char dir[64], path[128];
    struct wal_capture cap;
    int wal_frames;
    uint8_t **recs; /* encoded records, lsn i+1 at i */
    size_t *rec_len;
    uint64_t *hash; /* content hash after lsn i+1 */
    size_t n, cap_n;
    uint64_t rng;
    int tables;
};

static uint64_t rnd(struct run *r)
{
    r->rng ^= r->rng << 13;
    r->rng ^= r->rng >> 7;
    r->rng ^= r->rng << 17;
    return r->rng;
}

static int on_wal(void *arg, sqlite3 *db, const char *name, int frames)
{
    (void)db;
    (void)name;
    ((struct run *)arg)->wal_frames = frames;
    return SQLITE_OK;
}

static void exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, err ? err : "");
}

/* XXH3 over every table's name, schema and rows, in a fixed order. */
static uint64_t content_hash(sqlite3 *db)
{
    XXH3_state_t *st = XXH3_createState();
    XXH3_64bits_reset(st);
    sqlite3_stmt *tabs;
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT name, sql FROM sqlite_schema ORDER BY name", -1, &tabs, NULL),
                 SQLITE_OK);
    while (sqlite3_step(tabs) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(tabs, 0);
        const char *sql = (const char *)sqlite3_column_text(tabs, 1);
        XXH3_64bits_update(st, name, strlen(name) + 1);
        if (sql != NULL)
            XXH3_64bits_update(st, sql, strlen(sql) + 1);
        if (strncmp(name, "t", 1) != 0 || strchr(name, '_') != NULL)
            continue;
        char q[128];
        snprintf(q, sizeof(q), "SELECT * FROM \"%s\" ORDER BY rowid", name);
        sqlite3_stmt *rows;
        if (sqlite3_prepare_v2(db, q, -1, &rows, NULL) != SQLITE_OK)
            continue; /* an index */
        while (sqlite3_step(rows) == SQLITE_ROW) {
            for (int c = 0; c < sqlite3_column_count(rows); c++) {
                const void *b = sqlite3_column_blob(rows, c);
                int t = sqlite3_column_type(rows, c);
                XXH3_64bits_update(st, &t, sizeof(t));
                if (b != NULL)
                    XXH3_64bits_update(st, b, (size_t)sqlite3_column_bytes(rows, c));
            }
        }
        sqlite3_finalize(rows);
    }
    sqlite3_finalize(tabs);
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h;
}

static void capture(struct run *r)
{
    struct wal_record rec = {0};
    char err[256];
    int rv = wal_capture_commit(&r->cap, (uint32_t)r->wal_frames, &rec, err, sizeof(err));
    cr_assert_eq(rv, 0, "capture: %s", err);
    rec.lsn = r->n + 1;
    rec.epoch = 7;
    rec.commit_us = 1000 + (int64_t)r->n;
    memset(rec.object_id, 0xab, sizeof(rec.object_id));
    if (r->n == r->cap_n) {
        r->cap_n = r->cap_n ? r->cap_n * 2 : 64;
        r->recs = realloc(r->recs, r->cap_n * sizeof(*r->recs));
        r->rec_len = realloc(r->rec_len, r->cap_n * sizeof(*r->rec_len));
        r->hash = realloc(r->hash, r->cap_n * sizeof(*r->hash));
    }
    size_t len = wal_record_size(rec.npages, rec.page_size);
    r->recs[r->n] = sdk_xmalloc(len);
    wal_record_encode(&rec, r->recs[r->n]);
    r->rec_len[r->n] = len;
    r->hash[r->n] = content_hash(r->db);
    r->n++;
}

/* A table may have been dropped or its creation rolled back: every op makes
 * sure its table exists first. */
#define ENSURE "CREATE TABLE IF NOT EXISTS t%d(id INTEGER PRIMARY KEY, a INT, b TEXT, c BLOB);"

static void random_op(struct run *r, char *sql, size_t len)
{
    int t = r->tables > 0 ? (int)(rnd(r) % (uint64_t)r->tables) : 0;
    int n = r->tables == 0 ? 0 : snprintf(sql, len, ENSURE, t);
    sql += n;
    len -= (size_t)n;
    switch (r->tables == 0 ? 0 : rnd(r) % 10) {
    case 0:
        snprintf(sql, len, "CREATE TABLE IF NOT EXISTS t%d(id INTEGER PRIMARY KEY, a INT, b TEXT, c BLOB)",
                 r->tables++);
        break;
    case 1:
    case 2:
    case 3:
        snprintf(sql, len, "INSERT INTO t%d(a, b, c) VALUES (%llu, hex(randomblob(%llu)), zeroblob(%llu))", t,
                 (unsigned long long)(rnd(r) % 1000), (unsigned long long)(rnd(r) % 300),
                 (unsigned long long)(rnd(r) % 3 == 0 ? rnd(r) % 20000 : rnd(r) % 100));
        break;
    case 4:
        snprintf(sql, len, "UPDATE t%d SET a = a + 1, c = randomblob(%llu) WHERE id %% 3 = %llu", t,
                 (unsigned long long)(rnd(r) % 6000), (unsigned long long)(rnd(r) % 3));
        break;
    case 5:
        snprintf(sql, len, "DELETE FROM t%d WHERE a %% 4 = %llu", t, (unsigned long long)(rnd(r) % 4));
        break;
    case 6:
        snprintf(sql, len, "CREATE INDEX IF NOT EXISTS t%d_a ON t%d(a)", t, t);
        break;
    case 7:
        snprintf(sql, len, "DROP TABLE IF EXISTS t%d", t);
        break;
    case 8:
        snprintf(sql, len, "INSERT INTO t%d(a, b, c) SELECT a, b, c FROM t%d LIMIT 50", t, t);
        break;
    default:
        snprintf(sql, len, "DELETE FROM t%d", t);
    }
}

static void workload(struct run *r, int txns)
{
    char sql[256];
    for (int i = 0; i < txns; i++) {
        r->wal_frames = 0;
        exec(r->db, "BEGIN IMMEDIATE");
        int ops = 1 + (int)(rnd(r) % 4);
        for (int k = 0; k < ops; k++) {
            random_op(r, sql, sizeof(sql));
            exec(r->db, sql);
        }
        if (rnd(r) % 10 == 0) {
            exec(r->db, "ROLLBACK");
            cr_assert_eq(r->wal_frames, 0, "a rollback reached the WAL hook");
            continue;
        }
        exec(r->db, "COMMIT");
        if (r->wal_frames > 0)
            capture(r);
        if (rnd(r) % 15 == 0)
            exec(r->db, rnd(r) % 2 ? "PRAGMA wal_checkpoint(TRUNCATE)" : "PRAGMA wal_checkpoint(PASSIVE)");
    }
}

/* Applies records 1..k (decoded) to a fresh file and checks it. */
static void check_prefix(struct run *r, size_t k)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/replay-%zu.db", r->dir, k);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0);
    static struct wal_page pages[65536];
    for (size_t i = 0; i < k; i++) {
        struct wal_record rec;
        size_t used = 0;
        cr_assert_eq(wal_record_decode(r->recs[i], r->rec_len[i], &rec, pages, 65536, &used), 0, "decode %zu", i);
        cr_assert_eq(used, r->rec_len[i]);
        cr_assert_eq(rec.lsn, i + 1);
        cr_assert_eq(wal_apply(fd, &rec), 0);
    }
    close(fd);
    sqlite3 *db;
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), "ok", "lsn %zu: integrity", k);
    sqlite3_finalize(st);
    cr_assert_eq(content_hash(db), r->hash[k - 1], "lsn %zu: content differs from the live database", k);
    sqlite3_close(db);
    unlink(path);
    char wal[200];
    snprintf(wal, sizeof(wal), "%s-wal", path);
    unlink(wal);
    snprintf(wal, sizeof(wal), "%s-shm", path);
    unlink(wal);
}

static void run_seed_vfs(uint64_t seed, int page_size, int auto_vacuum, bool mem);

static void run_seed(uint64_t seed, int page_size, int auto_vacuum)
{
    run_seed_vfs(seed, page_size, auto_vacuum, false);
    run_seed_vfs(seed, page_size, auto_vacuum, true);
}

/* mem: the runtime's way, the WAL in memory (wal/memvfs.c). */
static void run_seed_vfs(uint64_t seed, int page_size, int auto_vacuum, bool mem)
{
    struct run r = {.rng = seed * 0x9E3779B97F4A7C15ull | 1};
    snprintf(r.dir, sizeof(r.dir), "/tmp/dobj-replay-XXXXXX");
    cr_assert_not_null(mkdtemp(r.dir));
    snprintf(r.path, sizeof(r.path), "%s/live.db", r.dir);
    cr_assert_eq(wal_memvfs_register(), 0);
    cr_assert_eq(sqlite3_open_v2(r.path, &r.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, mem ? WAL_VFS_NAME : NULL),
                 SQLITE_OK);
    char sql[160];
    snprintf(sql, sizeof(sql), "PRAGMA locking_mode=%s; PRAGMA page_size=%d; PRAGMA auto_vacuum=%d; "
             "PRAGMA journal_mode=WAL", mem ? "EXCLUSIVE" : "NORMAL", page_size, auto_vacuum);
    exec(r.db, sql);
    sqlite3_wal_hook(r.db, on_wal, &r);
    wal_capture_init(&r.cap, r.path, mem ? r.db : NULL);
    workload(&r, 120);
    if (mem) {
        /* The WAL really lived in memory: nothing on disk, bytes in reach. */
        char wal[160];
        snprintf(wal, sizeof(wal), "%s-wal", r.path);
        cr_assert_neq(access(wal, F_OK), 0, "an in-memory WAL reached the disk");
        const uint8_t *bytes;
        size_t size;
        cr_assert_eq(wal_memvfs_bytes(r.db, &bytes, &size), 0);
    }
    cr_assert_gt(r.n, 50, "seed %llu: too few commits", (unsigned long long)seed);
    for (size_t k = 1; k <= r.n; k += 1 + rnd(&r) % 17)
        check_prefix(&r, k);
    check_prefix(&r, r.n);
    wal_capture_close(&r.cap);
    sqlite3_close(r.db);
    for (size_t i = 0; i < r.n; i++)
        free(r.recs[i]);
    free(r.recs);
    free(r.rec_len);
    free(r.hash);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", r.dir);
    cr_assert_eq(system(cmd), 0);
}

Test(replay, random_workloads_4k)
{
    for (uint64_t seed = 1; seed <= 6; seed++)
        run_seed(seed, 4096, 0);
}

Test(replay, random_workloads_1k_pages_overflow)
{
    for (uint64_t seed = 100; seed <= 103; seed++)
        run_seed(seed, 1024, 0);
}

/* auto_vacuum=FULL truncates the file on commit: the database shrinks. */
Test(replay, random_workloads_shrinking)
{
    for (uint64_t seed = 200; seed <= 203; seed++)
        run_seed(seed, 4096, 1);
}

Test(record, corrupt_and_torn_records_are_refused)
{
    uint8_t page[512];
    memset(page, 7, sizeof(page));
    struct wal_page pg = {.pgno = 3, .data = page};
    struct wal_record rec = {.lsn = 5, .epoch = 1, .db_pages = 3, .page_size = 512, .npages = 1, .pages = &pg};
    size_t len = wal_record_size(1, 512);
    uint8_t *buf = malloc(len);
    wal_record_encode(&rec, buf);
    struct wal_page out[4];
    struct wal_record d;
    size_t used;
    cr_assert_eq(wal_record_decode(buf, len, &d, out, 4, &used), 0);
    cr_assert_eq(d.lsn, 5);
    cr_assert_eq(d.pages[0].pgno, 3);
    cr_assert_eq(memcmp(d.pages[0].data, page, 512), 0);
    for (size_t cut = 0; cut < len; cut += 37)
        cr_assert_eq(wal_record_decode(buf, cut, &d, out, 4, &used), cut < 8 ? -1 : -1, "cut at %zu", cut);
    for (size_t i = 0; i < len; i += 13) {
        buf[i] ^= 0x40;
        int rv = wal_record_decode(buf, len, &d, out, 4, &used);
        cr_assert(rv != 0, "flipped byte %zu accepted", i);
        buf[i] ^= 0x40;
    }
    cr_assert_eq(wal_record_decode(buf, len, &d, out, 0, &used), -2, "more pages than room");
    free(buf);
}
