/*
 * sqlite_ref: the plain-SQLite reference point for tests/bench/run.sh.
 *
 *   sqlite_ref DIR SECONDS [NOBJECTS]
 *
 * Opens NOBJECTS (default 1) fresh database files DIR/ref-<i>.db (DIR is
 * created if missing; old files of the same names are removed first) the way
 * the runtime opens an object's database (runtime/actor.c): journal_mode=WAL,
 * synchronous=FULL, foreign_keys=ON, and creates the counter table of
 * examples/counter/counter.c in each. Then, for SECONDS seconds, one thread
 * runs the counter's POST as a transaction of its own, round-robin over the
 * objects:
 *
 *   BEGIN IMMEDIATE;
 *   INSERT INTO counter(id, value) VALUES(1, ?1) ON CONFLICT(id) DO UPDATE ...
 *       RETURNING value;          (the exact statement of counter.c, ?1 = 1)
 *   COMMIT;                       (WAL + synchronous=FULL: one fsync)
 *
 * Each commit's latency (BEGIN to the end of COMMIT) is measured with
 * CLOCK_MONOTONIC. No HTTP, no threads, no event loop: this is what the disk
 * and SQLite alone allow for the same work dobj does per POST.
 *
 * Output (stdout), one line that run.sh parses, then a check line:
 *
 *   RESULT rps=<commits per second> p50_us=<..> p99_us=<..> commits=<n>
 *   CHECK objects=<n> sum=<sum of the counters read back> commits=<n> OK|MISMATCH
 *
 * Exit status: 0 when the counters read back (after closing and reopening
 * every database) add up to the number of commits; 1 on a mismatch or a
 * SQLite error; 2 on bad arguments.
 *
 * Build: cc -O2 -std=c11 -D_GNU_SOURCE sqlite_ref.c -lsqlite3 -o sqlite_ref
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Verbatim from examples/counter/counter.c. */
static const char create_sql[] = "CREATE TABLE IF NOT EXISTS counter("
                                 "id INTEGER PRIMARY KEY CHECK (id = 1), "
                                 "value INTEGER NOT NULL)";
static const char increment_sql[] =
    "INSERT INTO counter(id, value) VALUES(1, ?1) "
    "ON CONFLICT(id) DO UPDATE SET value = value + excluded.value "
    "WHERE CASE WHEN excluded.value >= 0 THEN value <= ?2 - excluded.value "
    "ELSE value >= ?3 - excluded.value END "
    "RETURNING value";

/* Mirrors the runtime's db_open(). */
static const char pragmas_sql[] =
    "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;";

#define MAX_OBJECTS 100000

struct obj {
    sqlite3 *db;
    sqlite3_stmt *begin, *upsert, *commit;
    char path[PATH_MAX];
};

static void die(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "sqlite_ref: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array. */
static uint32_t percentile(const uint32_t *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    double rank = p / 100.0 * (double)n;
    size_t k = (size_t)rank;
    if ((double)k < rank)
        k++;
    if (k == 0)
        k = 1;
    return v[k - 1];
}

static long parse_pos(const char *s, const char *what, long max)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || v < 1 || v > max) {
        fprintf(stderr, "sqlite_ref: %s must be an integer in 1..%ld (got '%s')\n", what, max, s);
        exit(2);
    }
    return v;
}

static void remove_files(const char *path)
{
    static const char *const ext[] = {"", "-wal", "-shm", "-journal"};
    char p[PATH_MAX + 16];
    for (size_t i = 0; i < sizeof(ext) / sizeof(ext[0]); i++) {
        snprintf(p, sizeof(p), "%s%s", path, ext[i]);
        if (unlink(p) != 0 && errno != ENOENT)
            die("cannot remove %s: %s", p, strerror(errno));
    }
}

static void check(struct obj *o, int rc, const char *what)
{
    if (rc != SQLITE_OK)
        die("%s: %s", what, o->db != NULL ? sqlite3_errmsg(o->db) : sqlite3_errstr(rc));
}

static void obj_open(struct obj *o)
{
    int rc = sqlite3_open_v2(o->path, &o->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    check(o, rc, o->path);
    check(o, sqlite3_exec(o->db, pragmas_sql, NULL, NULL, NULL), o->path);
}

static void obj_close(struct obj *o)
{
    sqlite3_finalize(o->begin);
    sqlite3_finalize(o->upsert);
    sqlite3_finalize(o->commit);
    o->begin = o->upsert = o->commit = NULL;
    if (sqlite3_close(o->db) != SQLITE_OK)
        die("cannot close %s: %s", o->path, sqlite3_errmsg(o->db));
    o->db = NULL;
}

/* Checks that the journal mode really is WAL (it is refused silently on some
 * file systems) and that synchronous is FULL (2). */
static void verify_mode(struct obj *o)
{
    sqlite3_stmt *st = NULL;
    check(o, sqlite3_prepare_v2(o->db, "PRAGMA journal_mode", -1, &st, NULL), "PRAGMA journal_mode");
    if (sqlite3_step(st) != SQLITE_ROW || strcmp((const char *)sqlite3_column_text(st, 0), "wal") != 0)
        die("%s: journal_mode is not WAL%s", o->path, "");
    sqlite3_finalize(st);
    check(o, sqlite3_prepare_v2(o->db, "PRAGMA synchronous", -1, &st, NULL), "PRAGMA synchronous");
    if (sqlite3_step(st) != SQLITE_ROW || sqlite3_column_int(st, 0) != 2)
        die("%s: synchronous is not FULL%s", o->path, "");
    sqlite3_finalize(st);
}

/* One POST: BEGIN IMMEDIATE; the UPSERT; COMMIT. Returns the new value. */
static int64_t increment(struct obj *o)
{
    int rc = sqlite3_step(o->begin);
    sqlite3_reset(o->begin);
    if (rc != SQLITE_DONE)
        die("BEGIN IMMEDIATE on %s: %s", o->path, sqlite3_errmsg(o->db));
    rc = sqlite3_step(o->upsert);
    if (rc != SQLITE_ROW)
        die("UPSERT on %s: %s", o->path, rc == SQLITE_DONE ? "no row returned" : sqlite3_errmsg(o->db));
    int64_t value = sqlite3_column_int64(o->upsert, 0);
    rc = sqlite3_step(o->upsert);
    sqlite3_reset(o->upsert);
    if (rc != SQLITE_DONE)
        die("UPSERT on %s: %s", o->path, sqlite3_errmsg(o->db));
    rc = sqlite3_step(o->commit);
    sqlite3_reset(o->commit);
    if (rc != SQLITE_DONE)
        die("COMMIT on %s: %s", o->path, sqlite3_errmsg(o->db));
    return value;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: sqlite_ref DIR SECONDS [NOBJECTS]\n");
        return 2;
    }
    const char *dir = argv[1];
    long seconds = parse_pos(argv[2], "SECONDS", 86400);
    long nobj = argc == 4 ? parse_pos(argv[3], "NOBJECTS", MAX_OBJECTS) : 1;

    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        die("cannot create %s: %s", dir, strerror(errno));

    /* Each open WAL database holds 3 descriptors (db, -wal, -shm). */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }

    struct obj *objs = calloc((size_t)nobj, sizeof(*objs));
    if (objs == NULL)
        die("out of memory%s%s", "", "");
    for (long i = 0; i < nobj; i++) {
        struct obj *o = &objs[i];
        int n = snprintf(o->path, sizeof(o->path), "%s/ref-%ld.db", dir, i);
        if (n < 0 || (size_t)n >= sizeof(o->path))
            die("path too long: %s%s", dir, "");
        remove_files(o->path);
        obj_open(o);
        verify_mode(o);
        check(o, sqlite3_exec(o->db, create_sql, NULL, NULL, NULL), "CREATE TABLE counter");
        check(o, sqlite3_prepare_v2(o->db, "BEGIN IMMEDIATE", -1, &o->begin, NULL), "prepare BEGIN");
        check(o, sqlite3_prepare_v2(o->db, increment_sql, -1, &o->upsert, NULL), "prepare UPSERT");
        check(o, sqlite3_prepare_v2(o->db, "COMMIT", -1, &o->commit, NULL), "prepare COMMIT");
        check(o, sqlite3_bind_int64(o->upsert, 1, 1), "bind ?1");
        check(o, sqlite3_bind_int64(o->upsert, 2, INT64_MAX), "bind ?2");
        check(o, sqlite3_bind_int64(o->upsert, 3, INT64_MIN), "bind ?3");
    }

    size_t cap = 1 << 16, n = 0;
    uint32_t *lat = malloc(cap * sizeof(*lat));
    if (lat == NULL)
        die("out of memory%s%s", "", "");

    const uint64_t start = now_ns();
    const uint64_t deadline = start + (uint64_t)seconds * 1000000000u;
    uint64_t t = start;
    long next = 0;
    while (t < deadline) {
        if (n == cap) {
            cap *= 2;
            uint32_t *p = realloc(lat, cap * sizeof(*lat));
            if (p == NULL)
                die("out of memory%s%s", "", "");
            lat = p;
        }
        (void)increment(&objs[next]);
        if (++next == nobj)
            next = 0;
        uint64_t t1 = now_ns();
        uint64_t us = (t1 - t) / 1000u;
        lat[n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
        t = t1;
    }
    const double elapsed = (double)(t - start) / 1e9;

    qsort(lat, n, sizeof(*lat), cmp_u32);
    printf("RESULT rps=%.2f p50_us=%" PRIu32 " p99_us=%" PRIu32 " commits=%zu\n",
           elapsed > 0 ? (double)n / elapsed : 0.0, percentile(lat, n, 50), percentile(lat, n, 99), n);
    fflush(stdout);

    /* Read the counters back through fresh connections: what was committed is
     * what a restart sees. */
    int64_t sum = 0;
    for (long i = 0; i < nobj; i++) {
        struct obj *o = &objs[i];
        obj_close(o);
        obj_open(o);
        sqlite3_stmt *st = NULL;
        check(o, sqlite3_prepare_v2(o->db, "SELECT value FROM counter WHERE id = 1", -1, &st, NULL),
              "prepare SELECT");
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            sum += sqlite3_column_int64(st, 0);
        else if (rc != SQLITE_DONE)
            die("SELECT on %s: %s", o->path, sqlite3_errmsg(o->db));
        sqlite3_finalize(st);
        obj_close(o);
    }
    int ok = sum == (int64_t)n;
    printf("CHECK objects=%ld sum=%" PRId64 " commits=%zu %s\n", nobj, sum, n, ok ? "OK" : "MISMATCH");
    free(lat);
    free(objs);
    return ok ? 0 : 1;
}
