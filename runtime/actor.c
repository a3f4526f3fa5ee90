/*
 * actor.c: the actors of one shard. An actor is one object (class/name) on the
 * shard that owns it. Its lifecycle:
 *
 *   absent --event--> open (database open, in the LRU list)
 *   open --idle or LRU bound--> closed (database closed; kept while it has
 *        open WebSockets or gated outputs, so sockets survive: hibernation)
 *   closed --event--> open;  closed with nothing held --> freed
 *
 * Each event runs in one transaction (BEGIN ... COMMIT) around the class's
 * handler. A transaction that wrote also writes its lsn into _dobj_meta, so a
 * database always knows which record it holds last; its commit becomes one
 * record (wal/capture.c) that goes to the durability point (durable.c). What
 * the event sends goes into the actor's output gate, stamped with the actor's
 * committed lsn, and leaves in order once that lsn is durable. The actor does
 * not wait: the next event runs at once.
 *
 * The WAL lives in memory (wal/memvfs.c). Checkpoints are the runtime's
 * (SQLite's auto-checkpoint is off): only when every record in the WAL is
 * durable, so the database file never holds a write the journal could lose.
 * Once the file is also fsync'd, the actor gives back its pin on the journal
 * segment holding its oldest record.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime.h"
#include "wal.h"

/* In-memory WAL bounds (wal/memvfs.c): per shard, and per object. */
#define WAL_SHARD_BUDGET_BYTES (64u << 20)
#define WAL_FRAMES_MIN 16
#define WAL_FRAMES_MAX 1000
#define WAL_QUIET_MS 2000
#define NO_PIN UINT32_MAX
#define ACTOR_SOCKETS_MAX 32768
#define SLOW_EVENT_US 100000
/* Every write stamps its lsn and the epoch of the leader that made it (0 on
 * a single host): a file names the record it holds last, so a new leader can
 * tell whether a file is on the history it recovered (leader.c). */
#define STAMP_SQL "INSERT OR REPLACE INTO _dobj_meta(key, value) VALUES('lsn', ?1), ('origin', ?2)"

struct rt_actor {
    uint64_t hash;
    const struct rt_class *cls;
    char *name;
    size_t name_len;
    uint8_t id[16];
    char *path; /* the database file */
    struct rt_actor *hnext; /* hash chain */
    struct rt_actor *lru_prev, *lru_next; /* open actors, most recent first */

    sqlite3 *db;
    sqlite3_stmt *begin, *commit, *rollback, *stamp;
    struct dobj_ctx *running; /* the authorizer's view: NULL while the runtime runs SQL */
    bool needs_init;          /* meta and on_activate run in the next event */
    int wal_frames;           /* set by the WAL hook when a commit wrote: frames in the WAL */
    int wal_total;            /* frames in the WAL after the last commit */
    struct wal_capture cap;
    struct sdk_stmt_cache stmts;
    uint32_t pin; /* journal segment of the oldest record not in the fsync'd file */
    bool new_file; /* created by this process: its directory entry needs an fsync too */
    bool committing; /* the runtime's COMMIT is running: the only commit allowed */
    bool store_checked; /* a missing file was looked for in object storage */
    bool fetching;      /* ... and the lookup runs now: events wait in `held` */
    char *fetch_err;    /* the lookup failed: held events get 503 with this */
    struct rt_leader *leader; /* cluster: this host leads the object (leader.c) */
    bool recovering;          /* ... and recovers it: events wait in `held` */
    /* A snapshot being copied between events (SQLite's backup API). */
    sqlite3 *snap_db;
    sqlite3_backup *snap;
    char *snap_path;
    struct rt_actor *snap_next;

    uint64_t committed_lsn;
    uint64_t durable_lsn;
    uint64_t event_round;     /* the read round the running event's outputs wait for */
    uint64_t confirmed_round; /* the leader's confirmed read round */
    struct rt_msg *gate_head, **gate_tail;
    /* Events waiting for a full WAL to drain: its records must be durable
     * before it may be checkpointed. */
    struct rt_msg *held_head, **held_tail;

    struct dobj_ws *ws_head, *ws_tail;
    unsigned nsockets;
    int64_t last_used_us;
};

struct rt_actors {
    struct rt_actor **buckets;
    size_t nbuckets;
    size_t count;
    struct rt_actor *lru_head, *lru_tail;
    unsigned nopen;
    size_t wal_frames; /* frames in the open actors' in-memory WALs */
    uv_timer_t idle_timer;
    struct rt_actor *snap_head; /* actors with a snapshot in progress */
    uv_idle_t snap_idle;        /* steps them, one step each per loop turn */
    unsigned snap_seq;
};

/* ---- the table --------------------------------------------------------- */

static struct rt_actor **bucket(struct rt_actors *t, uint64_t hash) { return &t->buckets[hash & (t->nbuckets - 1)]; }

static struct rt_actor *table_find(struct rt_actors *t, const struct rt_event *e)
{
    for (struct rt_actor *a = *bucket(t, e->hash); a != NULL; a = a->hnext)
        if (a->hash == e->hash && a->cls == e->cls && a->name_len == e->name_len &&
            memcmp(a->name, e->name, e->name_len) == 0)
            return a;
    return NULL;
}

static void table_grow(struct rt_actors *t)
{
    size_t n = t->nbuckets * 2;
    struct rt_actor **b = sdk_xcalloc(n, sizeof(*b));
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct rt_actor *a = t->buckets[i];
        while (a != NULL) {
            struct rt_actor *next = a->hnext;
            a->hnext = b[a->hash & (n - 1)];
            b[a->hash & (n - 1)] = a;
            a = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
}

static struct rt_actor *table_add(struct rt_actors *t, const struct rt_event *e)
{
    if (t->count + 1 > t->nbuckets)
        table_grow(t);
    struct rt_actor *a = sdk_xcalloc(1, sizeof(*a));
    a->hash = e->hash;
    a->cls = e->cls;
    a->name = sdk_xstrndup(e->name, e->name_len);
    a->name_len = e->name_len;
    a->gate_tail = &a->gate_head;
    a->held_tail = &a->held_head;
    a->pin = NO_PIN;
    struct rt_actor **b = bucket(t, a->hash);
    a->hnext = *b;
    *b = a;
    t->count++;
    return a;
}

static void table_remove(struct rt_actors *t, struct rt_actor *a)
{
    struct rt_actor **p = bucket(t, a->hash);
    while (*p != a)
        p = &(*p)->hnext;
    *p = a->hnext;
    t->count--;
    free(a->name);
    free(a->path);
    free(a->fetch_err);
    free(a);
}

/* ---- LRU of open databases --------------------------------------------- */

static void lru_unlink(struct rt_actors *t, struct rt_actor *a)
{
    if (a->lru_prev != NULL)
        a->lru_prev->lru_next = a->lru_next;
    else
        t->lru_head = a->lru_next;
    if (a->lru_next != NULL)
        a->lru_next->lru_prev = a->lru_prev;
    else
        t->lru_tail = a->lru_prev;
    a->lru_prev = a->lru_next = NULL;
}

static void lru_push_front(struct rt_actors *t, struct rt_actor *a)
{
    a->lru_next = t->lru_head;
    a->lru_prev = NULL;
    if (t->lru_head != NULL)
        t->lru_head->lru_prev = a;
    t->lru_head = a;
    if (t->lru_tail == NULL)
        t->lru_tail = a;
}

/* ---- the WAL ------------------------------------------------------------ */

/* Only the runtime's COMMIT may commit. A handler's statement can end the
 * event's transaction early (INSERT OR ROLLBACK, RAISE(ROLLBACK)); a write
 * after that would commit on its own, outside any record. */
static int on_commit(void *arg) { return ((struct rt_actor *)arg)->committing ? 0 : 1; }

static int on_wal(void *arg, sqlite3 *db, const char *dbname, int frames)
{
    (void)db;
    (void)dbname;
    ((struct rt_actor *)arg)->wal_frames = frames;
    return SQLITE_OK;
}

/* ---- fsync of a database file, off the loop ------------------------------ */

/* Once `path` is fsync'd (and, for a file created by this process, the
 * directories that name it), the journal segment pin `segment` goes back.
 * The request owns everything it needs: the actor may be gone by then. */
struct file_sync {
    uv_work_t req;
    uint32_t segment;
    bool new_file;
    int err; /* errno of the first failure */
    char path[];
};

static int fsync_path(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int err = fdatasync(fd) != 0 ? errno : 0;
    close(fd);
    return err;
}

/* On the thread pool: blocking is the point. */
static void sync_work(uv_work_t *req)
{
    struct file_sync *f = (struct file_sync *)req;
    f->err = fsync_path(f->path, O_RDONLY);
    if (f->err != 0 || !f->new_file)
        return;
    /* DATA/objects/ab/<id>.db: its directory and that directory's parent. */
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", f->path);
    for (int up = 0; up < 2 && f->err == 0; up++) {
        char *slash = strrchr(dir, '/');
        if (slash == NULL)
            break;
        *slash = '\0';
        f->err = fsync_path(dir, O_RDONLY | O_DIRECTORY);
    }
}

static void sync_after(uv_work_t *req, int status)
{
    struct file_sync *f = (struct file_sync *)req;
    if (status != 0 || f->err != 0)
        /* The pin stays, and with it the records: recovery replays them. The
         * journal can not drop that segment until the next start. */
        RT_ERROR("msg=\"fsync of a database failed; its journal records are kept\" file=%s err=\"%s\"", f->path,
                 status != 0 ? uv_strerror(status) : strerror(f->err));
    else
        rt_durable_release(f->segment);
    free(f);
}

/* Fsyncs the actor's file on the thread pool, then gives back its pin. */
static void sync_and_unpin(struct rt_shard *s, struct rt_actor *a)
{
    if (a->pin == NO_PIN)
        return;
    size_t n = strlen(a->path);
    struct file_sync *f = sdk_xcalloc(1, sizeof(*f) + n + 1);
    memcpy(f->path, a->path, n + 1);
    f->segment = a->pin;
    f->new_file = a->new_file;
    a->pin = NO_PIN;
    a->new_file = false;
    uv_queue_work(&s->loop, &f->req, sync_work, sync_after);
}

void rt_actor_names(const struct rt_actor *a, const char **cls, const char **name, size_t *name_len)
{
    *cls = a->cls->cls->name;
    *name = a->name;
    *name_len = a->name_len;
}

void rt_actor_pin(struct rt_actor *a, uint32_t segment)
{
    if (a->pin == NO_PIN)
        a->pin = segment;
    else
        rt_durable_release(segment); /* an older segment already holds the actor's records */
}

/* ---- activation -------------------------------------------------------- */

/* The actor's WAL now holds `frames` frames (0 once checkpointed or closed). */
static void wal_set(struct rt_actors *t, struct rt_actor *a, int frames)
{
    t->wal_frames = t->wal_frames + (size_t)frames - (size_t)a->wal_total;
    a->wal_total = frames;
}

/* Closes the database; false if SQLite could not (a handler left a blob
 * handle open): the connection is left to SQLite as a zombie. */
static bool db_close(struct rt_actors *t, struct rt_actor *a)
{
    bool ok = true;
    sqlite3_finalize(a->begin);
    sqlite3_finalize(a->commit);
    sqlite3_finalize(a->rollback);
    sqlite3_finalize(a->stamp);
    a->begin = a->commit = a->rollback = a->stamp = NULL;
    if (a->db != NULL) {
        sdk_stmt_cache_clear(&a->stmts);
        /* Statements a handler prepared and never finalized would keep the
         * database open. */
        sqlite3_stmt *st;
        while ((st = sqlite3_next_stmt(a->db, NULL)) != NULL)
            sqlite3_finalize(st);
        if (sqlite3_close(a->db) != SQLITE_OK) {
            RT_ERROR("msg=\"close failed\" object=%s/%s err=\"%s\"", a->cls->cls->name, a->name,
                     sqlite3_errmsg(a->db));
            sqlite3_close_v2(a->db);
            ok = false;
        }
        wal_capture_close(&a->cap);
    }
    a->db = NULL;
    wal_set(t, a, 0); /* a clean close checkpointed it; a failed one lost it */
    return ok;
}

/* Opens the actor's database. On failure writes why into err. */
static void actor_path(struct rt_shard *s, struct rt_actor *a)
{
    if (a->path == NULL) {
        char path[4096];
        rt_object_id(a->cls->cls->name, a->name, a->name_len, a->id);
        rt_object_path(s->config, a->id, path, sizeof(path));
        a->path = sdk_xstrdup(path);
    }
}

static int db_open(struct rt_shard *s, struct rt_actor *a, char *err, size_t errlen)
{
    actor_path(s, a);
    if (a->fetch_err != NULL) {
        snprintf(err, errlen, "the object's database file is missing and object storage can not be read to "
                              "rebuild it: %s", a->fetch_err);
        return DOBJ_EUNAVAIL;
    }
    char broken[4200];
    snprintf(broken, sizeof(broken), "%s.broken", a->path);
    if (access(broken, F_OK) == 0) {
        snprintf(err, errlen, "the object's database is damaged and the journal can not rebuild it (see %s); "
                              "restore it from a backup", broken);
        return DOBJ_EIO;
    }
    if (access(a->path, F_OK) != 0)
        a->new_file = true;
    if (rt_mkdir_parents(a->path) != 0) {
        snprintf(err, errlen, "can not create the directory of %s: %s", a->path, strerror(errno));
        return DOBJ_EIO;
    }
    char pragmas[256];
    /* One connection per file, ever: exclusive locking keeps the WAL index in
     * the heap (no -shm, no file locks per transaction), which the in-memory
     * WAL of the "dobj" VFS needs (wal/memvfs.c). */
    snprintf(pragmas, sizeof(pragmas),
             "PRAGMA locking_mode=EXCLUSIVE; PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; "
             "PRAGMA journal_size_limit=1048576; PRAGMA foreign_keys=ON;",
             rt_durable_sqlite_synchronous());
    int rc = sqlite3_open_v2(a->path, &a->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             WAL_VFS_NAME);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(a->db, pragmas, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(a->db, "BEGIN", -1, &a->begin, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(a->db, "COMMIT", -1, &a->commit, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(a->db, "ROLLBACK", -1, &a->rollback, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "can not open the database %s: %s", a->path,
                 a->db != NULL ? sqlite3_errmsg(a->db) : sqlite3_errstr(rc));
        db_close(s->actors, a);
        return DOBJ_EIO;
    }
    wal_capture_init(&a->cap, a->path, a->db);
    /* Our hook replaces SQLite's auto-checkpoint: checkpoints are ours. */
    sqlite3_wal_hook(a->db, on_wal, a);
    sqlite3_commit_hook(a->db, on_commit, a);
    a->running = NULL;
    sqlite3_set_authorizer(a->db, sdk_authorizer, &a->running);
    int64_t lsn = rt_db_lsn(a->db);
    if (lsn < 0) {
        snprintf(err, errlen, "can not read the lsn stamped in %s: %s", a->path, sqlite3_errmsg(a->db));
        db_close(s->actors, a);
        return DOBJ_EIO;
    }
    a->committed_lsn = a->durable_lsn = (uint64_t)lsn;
    wal_set(s->actors, a, 0);
    a->needs_init = true;
    return 0;
}

/* 1: the identity rows match; 0: they are missing; -1: they name another
 * object. Reading needs no write: a read-only first event stays read-only. */
static int meta_read(struct rt_actor *a)
{
    sqlite3_stmt *st = NULL;
    int rv = 0;
    if (sqlite3_prepare_v2(a->db,
                           "SELECT (SELECT value FROM _dobj_meta WHERE key = 'class'),"
                           " (SELECT value FROM _dobj_meta WHERE key = 'name')",
                           -1, &st, NULL) != SQLITE_OK)
        return 0; /* no table yet */
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
        const char *c = (const char *)sqlite3_column_text(st, 0);
        const void *n = sqlite3_column_blob(st, 1);
        size_t nlen = (size_t)sqlite3_column_bytes(st, 1);
        rv = c != NULL && strcmp(c, a->cls->cls->name) == 0 && n != NULL && nlen == a->name_len &&
                     memcmp(n, a->name, nlen) == 0
                 ? 1
                 : -1;
    }
    sqlite3_finalize(st);
    return rv;
}

/* Inside the event's transaction: records the object's identity in the
 * database the first time, and refuses a file that belongs to another
 * object. */
static int meta_check(struct rt_actor *a, char *err, size_t errlen)
{
    int m = meta_read(a);
    if (m == 0) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_exec(a->db, "CREATE TABLE IF NOT EXISTS _dobj_meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID",
                              NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_prepare_v2(a->db, "INSERT OR IGNORE INTO _dobj_meta VALUES('class', ?1), ('name', ?2), "
                                           "('lsn', 0)", -1, &st, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_bind_text(st, 1, a->cls->cls->name, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, a->name, (int)a->name_len, SQLITE_STATIC);
            rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(a->db);
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_OK) {
            snprintf(err, errlen, "can not write the object's metadata: %s", sqlite3_errmsg(a->db));
            return DOBJ_ESQLITE;
        }
        m = meta_read(a);
    }
    if (m < 0) {
        snprintf(err, errlen, "the database file belongs to another object");
        return DOBJ_EIO;
    }
    if (a->stamp == NULL &&
        sqlite3_prepare_v2(a->db, STAMP_SQL, -1, &a->stamp, NULL) !=
            SQLITE_OK) {
        snprintf(err, errlen, "can not read the object's metadata: %s", sqlite3_errmsg(a->db));
        return DOBJ_ESQLITE;
    }
    return 0;
}

/* Moves a WAL whose records are all durable into the database file: that
 * bounds WAL memory. It does not fsync: the journal keeps the records until
 * the file is fsync'd (sync_and_unpin), which is needed only when the pin
 * holds back an old journal segment, or when the database closes. */
static bool checkpoint(struct rt_shard *s, struct rt_actor *a)
{
    int log = 0, done = 0;
    int rc = sqlite3_wal_checkpoint_v2(a->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
    if (rc != SQLITE_OK || done < log) {
        RT_WARN("msg=\"checkpoint incomplete\" shard=%u object=%s/%s frames=%d done=%d err=\"%s\"", s->id,
                a->cls->cls->name, a->name, log, done, sqlite3_errmsg(a->db));
        return false;
    }
    wal_set(s->actors, a, 0);
    atomic_fetch_add_explicit(&s->checkpoints, 1, memory_order_relaxed);
    return true;
}

static bool pin_is_old(const struct rt_actor *a)
{
    return a->pin != NO_PIN && rt_host.journal != NULL && repl_journal_segment(rt_host.journal) > a->pin + 1;
}

/* Each shard's in-memory WALs share a budget. Under it, an object's WAL
 * grows to WAL_FRAMES_MAX frames before it is checkpointed; over it, to its
 * share of the budget among the open objects (at least WAL_FRAMES_MIN). So
 * a hot object is not held to a small WAL (and to waiting for durability
 * every few commits, see wal_full) because many idle objects are open, and
 * quiet ones give theirs back (on_idle_timer). */
static int wal_frames_max(const struct rt_shard *s)
{
    const size_t budget = WAL_SHARD_BUDGET_BYTES / (4096 + 24);
    if (s->actors->wal_frames < budget)
        return WAL_FRAMES_MAX;
    size_t share = budget / (s->actors->nopen > 0 ? s->actors->nopen : 1);
    return share < WAL_FRAMES_MIN ? WAL_FRAMES_MIN : share > WAL_FRAMES_MAX ? WAL_FRAMES_MAX : (int)share;
}

/* After a record became durable: checkpoint and fsync when due. */
static void maintain(struct rt_shard *s, struct rt_actor *a)
{
    if (a->db == NULL || a->durable_lsn < a->committed_lsn)
        return;
    bool old = pin_is_old(a);
    if (a->wal_total > 0 && (old || a->wal_total >= wal_frames_max(s)) && !checkpoint(s, a))
        return;
    if (old && a->wal_total == 0)
        sync_and_unpin(s, a);
}

/* Closes an actor's database once its WAL is entirely in the file; false if
 * it had to stay open. Only a complete checkpoint, checked, may precede the
 * fsync that lets the journal drop the records: the WAL is in memory. */
static bool evict(struct rt_shard *s, struct rt_actor *a)
{
    struct rt_actors *t = s->actors;
    if (a->wal_total > 0 && !checkpoint(s, a))
        return false;
    if (a->leader != NULL) {
        /* Everything is durable: the next event leads anew, from this file. */
        rt_leader_destroy(a->leader);
        a->leader = NULL;
    }
    if (db_close(t, a)) {
        sync_and_unpin(s, a);
    } else {
        /* The records stay in the journal for good: the next start replays. */
        a->pin = NO_PIN;
    }
    lru_unlink(t, a);
    t->nopen--;
    return true;
}

/* Frees an actor that holds nothing any more. */
static void maybe_free(struct rt_actors *t, struct rt_actor *a)
{
    if (a->db == NULL && a->ws_head == NULL && a->gate_head == NULL && a->held_head == NULL)
        table_remove(t, a);
}

/* An actor can close its database once nothing waits on its records. */
static bool evictable(const struct rt_actor *a)
{
    return a->gate_head == NULL && a->held_head == NULL && a->durable_lsn >= a->committed_lsn && a->snap == NULL &&
           !a->recovering;
}

/* Closes least recently used databases beyond the bound; never `current`,
 * whose event is still being finished. */
static void enforce_open_bound(struct rt_shard *s, struct rt_actor *current)
{
    struct rt_actors *t = s->actors;
    struct rt_actor *a = t->lru_tail;
    while (t->nopen > s->config->max_open && a != NULL) {
        struct rt_actor *prev = a->lru_prev;
        if (a != current && evictable(a) && evict(s, a))
            maybe_free(t, a);
        a = prev;
    }
}

static void on_idle_timer(uv_timer_t *h)
{
    struct rt_shard *s = h->data;
    struct rt_actors *t = s->actors;
    int64_t cutoff = rt_now_us() - (int64_t)s->config->idle_timeout_ms * 1000;
    struct rt_actor *a = t->lru_tail;
    while (a != NULL && a->last_used_us <= cutoff) {
        struct rt_actor *prev = a->lru_prev;
        if (evictable(a) && evict(s, a)) {
            if (a->committed_lsn > 0)
                rt_durable_idle(a->id, a->cls->cls->name, a->name, a->name_len);
            maybe_free(t, a);
        }
        a = prev;
    }
    /* An in-memory WAL of an object that went quiet goes into its file: WAL
     * memory stays with the objects being written to. */
    int64_t quiet = rt_now_us() - WAL_QUIET_MS * 1000;
    for (; a != NULL && a->last_used_us <= quiet; a = a->lru_prev)
        if (a->wal_total > 0 && a->durable_lsn >= a->committed_lsn)
            checkpoint(s, a);
}

/* ---- the output gate --------------------------------------------------- */

static void gate_push(struct rt_actor *a, struct rt_msg *m)
{
    m->gate_lsn = a->committed_lsn;
    m->gate_round = a->event_round;
    atomic_store_explicit(&m->next, NULL, memory_order_relaxed);
    *a->gate_tail = m;
    a->gate_tail = (struct rt_msg **)&m->next;
}

static void gate_release(struct rt_shard *s, struct rt_actor *a)
{
    while (a->gate_head != NULL && a->gate_head->gate_lsn <= a->durable_lsn &&
           a->gate_head->gate_round <= a->confirmed_round) {
        struct rt_msg *m = a->gate_head;
        a->gate_head = atomic_load_explicit(&m->next, memory_order_relaxed);
        if (a->gate_head == NULL)
            a->gate_tail = &a->gate_head;
        rt_shard_post(s, m->dest, m);
    }
}

static void actor_event(struct rt_shard *s, struct rt_actor *a, struct rt_event *e);

/* A WAL at its bound holding records that are not durable yet can not be
 * checkpointed: the actor's next events wait for the journal (one fsync,
 * typically under a millisecond) instead of growing it further. */
static bool wal_full(const struct rt_shard *s, const struct rt_actor *a)
{
    return a->db != NULL && a->wal_total >= wal_frames_max(s) && a->durable_lsn < a->committed_lsn;
}

/* Runs held events until the WAL is full again. The last one may free the
 * actor: nothing touches it after that. */
static void release_held(struct rt_shard *s, struct rt_actor *a)
{
    while (a->held_head != NULL && !wal_full(s, a) && !a->fetching && !a->recovering) {
        struct rt_msg *m = a->held_head;
        a->held_head = atomic_load_explicit(&m->next, memory_order_relaxed);
        bool last = a->held_head == NULL;
        if (last)
            a->held_tail = &a->held_head;
        actor_event(s, a, (struct rt_event *)m);
        if (last)
            return;
    }
}

void rt_actor_durable(struct rt_shard *s, struct rt_actor *a, uint64_t lsn)
{
    if (lsn > a->durable_lsn)
        a->durable_lsn = lsn;
    gate_release(s, a);
    maintain(s, a);
    if (a->held_head != NULL)
        release_held(s, a);
    else if (a->db == NULL)
        maybe_free(s->actors, a);
}

/* ---- events ------------------------------------------------------------ */

static struct dobj_ws *ws_find(struct rt_actor *a, uint64_t id)
{
    for (struct dobj_ws *w = a->ws_head; w != NULL; w = w->next)
        if (w->id == id)
            return w;
    return NULL;
}

static void ws_unlink(struct rt_actor *a, struct dobj_ws *w)
{
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        a->ws_head = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    else
        a->ws_tail = w->prev;
    a->nsockets--;
    sdk_ws_free(w);
}

static struct dobj_ws *ws_add(struct rt_actor *a, uint64_t id, unsigned shard)
{
    struct dobj_ws *w = sdk_xcalloc(1, sizeof(*w));
    w->id = id;
    w->shard = shard;
    w->prev = a->ws_tail;
    if (a->ws_tail != NULL)
        a->ws_tail->next = w;
    else
        a->ws_head = w;
    a->ws_tail = w;
    a->nsockets++;
    return w;
}

static struct rt_reply *reply_new(struct rt_event *e)
{
    struct rt_reply *r = sdk_xcalloc(1, sizeof(*r));
    r->msg.type = RT_MSG_REPLY;
    r->msg.dest = e->from;
    r->wait = e->wait;
    return r;
}

static struct rt_reply *reply_error(struct rt_event *e, int status, const char *msg)
{
    struct rt_reply *r = reply_new(e);
    struct sdk_buf b = {0};
    sdk_buf_json_error(&b, msg);
    r->status = status;
    r->body = sdk_buf_steal(&b, &r->body_len);
    static const char ct[] = "content-type\0application/json";
    r->headers = sdk_xstrndup(ct, sizeof(ct));
    r->headers_len = sizeof(ct);
    return r;
}

/* The reply of a fetch or ws_open from what the handler left in ctx. */
static struct rt_reply *reply_from_ctx(struct rt_event *e, struct dobj_ctx *ctx, int rv, const char *sysfail)
{
    if (sysfail != NULL)
        return reply_error(e, 500, sysfail);
    if (rv != 0) {
        const char *msg = ctx->fail_msg;
        if (msg == NULL)
            msg = ctx->errmsg[0] != '\0' ? ctx->errmsg
                                         : dobj_sprintf(ctx, "handler failed with %s", dobj_err_name(rv));
        return reply_error(e, ctx->fail_status != 0 ? ctx->fail_status : 500, msg);
    }
    struct rt_reply *r = reply_new(e);
    if (e->kind == SDK_EV_WS_OPEN && (ctx->status == 0 || ctx->status < 400)) {
        r->ws_accept = true;
        r->status = 101;
        return r;
    }
    r->status = ctx->status != 0 ? ctx->status : ctx->res_body.len > 0 ? 200 : 204;
    r->headers = sdk_buf_steal(&ctx->res_headers, &r->headers_len);
    r->body = sdk_buf_steal(&ctx->res_body, &r->body_len);
    return r;
}

static void ctx_fill(struct dobj_ctx *ctx, struct rt_shard *s, struct rt_actor *a, struct rt_event *e)
{
    sdk_ctx_init(ctx, a->cls->cls, a->name, a->db);
    ctx->kind = e->kind;
    ctx->stmts = &a->stmts;
    ctx->now_us = rt_now_us();
    ctx->ws_msg_max = s->config->ws_msg_max;
    ctx->sockets = a->ws_head;
    if (e->kind == SDK_EV_FETCH || e->kind == SDK_EV_WS_OPEN) {
        ctx->method = e->method;
        ctx->path = e->path;
        ctx->query = e->query;
        ctx->headers = e->headers;
        ctx->nheaders = e->nheaders;
        ctx->body = e->body;
        ctx->body_len = e->body_len;
    }
}

static int call_handler(struct rt_actor *a, struct dobj_ctx *ctx, struct rt_event *e, struct dobj_ws *ws)
{
    const dobj_class *c = a->cls->cls;
    switch (e->kind) {
    case SDK_EV_FETCH:
        return c->fetch != NULL ? c->fetch(ctx) : 0;
    case SDK_EV_WS_OPEN:
        return c->ws_open(ctx, ws);
    case SDK_EV_WS_MESSAGE:
        return c->ws_message != NULL ? c->ws_message(ctx, ws, e->ws_kind, e->body, e->body_len) : 0;
    case SDK_EV_WS_CLOSE:
        return c->ws_close != NULL ? c->ws_close(ctx, ws, e->ws_kind, e->body) : 0;
    }
    return DOBJ_EINVAL;
}

static void stamp_bind(struct rt_actor *a)
{
    sqlite3_bind_int64(a->stamp, 1, (sqlite3_int64)(a->committed_lsn + 1));
    sqlite3_bind_int64(a->stamp, 2, a->leader != NULL ? (sqlite3_int64)rt_leader_epoch_packed(a->leader) : 0);
}

static int step_reset(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc;
}

/* The commit just made becomes record committed_lsn + 1 on its way to the
 * durability point. A commit that can not be captured can never be made
 * durable, and nothing may be acknowledged after it: the process stops, and
 * recovery starts from the journal, where that commit is not. */
static void record_submit(struct rt_shard *s, struct rt_actor *a, int64_t now_us, uint32_t flags)
{
    struct wal_record rec = {0};
    char err[512];
    int rv = wal_capture_commit(&a->cap, (uint32_t)a->wal_frames, &rec, err, sizeof(err));
    if (rv != 0) {
        RT_ERROR("msg=\"can not capture a commit: stopping the host\" shard=%u object=%s/%s err=\"%s\"", s->id,
                 a->cls->cls->name, a->name, err);
        abort();
    }
    memcpy(rec.object_id, a->id, sizeof(rec.object_id));
    rec.lsn = ++a->committed_lsn;
    rec.commit_us = now_us;
    rec.flags = flags;
    rec.epoch = a->leader != NULL ? rt_leader_epoch_packed(a->leader) : 0;
    size_t len = wal_record_size(rec.npages, rec.page_size);
    uint8_t *buf = sdk_xmalloc(len);
    wal_record_encode(&rec, buf);
    wal_set(s->actors, a, a->wal_frames);
    if (a->leader != NULL)
        rt_leader_append(a->leader, rec.lsn, buf, len);
    else
        rt_durable_submit(s, a, rec.lsn, buf, len);
}

/* After dobj_delete_all(): true if the object holds no table or view of its
 * own (a savepoint may have undone the delete): its record is a tombstone. */
static bool no_user_data(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    bool empty = false;
    if (sqlite3_prepare_v2(db,
                           "SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND "
                           "name NOT LIKE '\\_dobj\\_%' ESCAPE '\\'",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        empty = sqlite3_column_int64(st, 0) == 0;
    sqlite3_finalize(st);
    return empty;
}

/* A transaction that wrote records its own lsn, so the database always says
 * which record it holds last. */
static int stamp_lsn(struct rt_actor *a, char *buf, size_t buflen)
{
    if (sqlite3_txn_state(a->db, "main") != SQLITE_TXN_WRITE)
        return 0;
    stamp_bind(a);
    if (step_reset(a->stamp) == SQLITE_DONE)
        return 0;
    snprintf(buf, buflen, "can not record the event's lsn: %s", sqlite3_errmsg(a->db));
    return DOBJ_ESQLITE;
}

/* Ends the runtime's transaction: with rv 0 commits it (the only commit
 * allowed, see on_commit), saying in err what failed; otherwise, or when the
 * commit fails, rolls back whatever is still open. Returns the result. */
static int commit_or_rollback(struct rt_actor *a, int rv, const char *what, char *err, size_t errlen)
{
    if (rv == 0) {
        a->committing = true;
        if (step_reset(a->commit) != SQLITE_DONE) {
            snprintf(err, errlen, "can not commit %s: %s", what, sqlite3_errmsg(a->db));
            rv = DOBJ_ESQLITE;
        }
        a->committing = false;
    }
    if (rv != 0 && sqlite3_get_autocommit(a->db) == 0)
        step_reset(a->rollback);
    return rv;
}

/* Runs the handler inside the event's transaction. Returns the handler's
 * result; *sysfail is set (into buf) when the runtime itself failed. */
static int run_txn(struct rt_shard *s, struct rt_actor *a, struct dobj_ctx *ctx, struct rt_event *e,
                   struct dobj_ws *ws, const char **sysfail, char *buf, size_t buflen)
{
    a->running = NULL;
    a->wal_frames = 0;
    if (step_reset(a->begin) != SQLITE_DONE) {
        snprintf(buf, buflen, "can not begin the event's transaction: %s", sqlite3_errmsg(a->db));
        *sysfail = buf;
        return DOBJ_ESQLITE;
    }
    int rv = a->needs_init ? meta_check(a, buf, buflen) : 0;
    if (rv != 0)
        *sysfail = buf;
    a->running = ctx;
    if (rv == 0 && a->needs_init && a->cls->cls->on_activate != NULL)
        rv = a->cls->cls->on_activate(ctx);
    if (rv == 0)
        rv = call_handler(a, ctx, e, ws);
    if (rv == 0)
        rv = sdk_ctx_unwind_txn(ctx);
    a->running = NULL;
    if (rv == 0 && sqlite3_get_autocommit(a->db)) {
        snprintf(buf, buflen, "SQLite rolled back the event's transaction during the handler (ON CONFLICT ROLLBACK, "
                              "RAISE(ROLLBACK), or an error such as a full database)%s%s: the event fails",
                 ctx->errmsg[0] != '\0' ? "; last error: " : "", ctx->errmsg);
        *sysfail = buf;
        rv = DOBJ_ESTATE;
    }
    if (rv == 0 && (rv = stamp_lsn(a, buf, buflen)) != 0)
        *sysfail = buf;
    int crv = commit_or_rollback(a, rv, "the event's transaction", buf, buflen);
    if (crv != 0) {
        if (rv == 0)
            *sysfail = buf; /* the commit itself failed */
        return crv;
    }
    a->needs_init = false;
    if (a->wal_frames > 0)
        record_submit(s, a, ctx->now_us, ctx->deleted_all && no_user_data(a->db) ? WAL_REC_TOMBSTONE : 0);
    return 0;
}

/* A failed event's sends are dropped; its closes are undone. */
static void discard_outs(struct rt_actor *a, struct sdk_out *o)
{
    while (o != NULL) {
        struct sdk_out *next = o->next;
        if (o->kind == SDK_OUT_WS_CLOSE) {
            struct dobj_ws *w = ws_find(a, o->ws_id);
            if (w != NULL)
                w->closing = false;
        }
        free(o);
        o = next;
    }
}

static void gate_outs(struct rt_actor *a, struct sdk_out *o)
{
    while (o != NULL) {
        struct sdk_out *next = o->next;
        struct rt_ws_out *m = sdk_xcalloc(1, sizeof(*m));
        m->msg.type = RT_MSG_WS_OUT;
        m->msg.dest = o->shard;
        m->out = o;
        o->next = NULL;
        gate_push(a, &m->msg);
        o = next;
    }
}

static int activate(struct rt_shard *s, struct rt_actor *a, char *err, size_t errlen)
{
    struct rt_actors *t = s->actors;
    if (a->db == NULL) {
        int rv = db_open(s, a, err, errlen);
        if (rv != 0)
            return rv;
        t->nopen++;
        lru_push_front(t, a);
    } else if (t->lru_head != a) {
        lru_unlink(t, a);
        lru_push_front(t, a);
    }
    a->last_used_us = rt_now_us();
    return 0;
}

/* Finds the socket an event is about; NULL if the event must be dropped. */
static struct dobj_ws *event_socket(struct rt_actor *a, struct rt_event *e)
{
    if (e->kind == SDK_EV_WS_OPEN)
        return ws_add(a, e->ws_id, e->from);
    struct dobj_ws *w = ws_find(a, e->ws_id);
    if (w == NULL || (e->kind == SDK_EV_WS_MESSAGE && w->closing))
        return NULL;
    if (e->kind == SDK_EV_WS_CLOSE)
        w->closing = true;
    return w;
}

static void run_event(struct rt_shard *s, struct rt_actor *a, struct rt_event *e)
{
    char buf[1024];
    const char *sysfail = NULL;
    bool wants_reply = e->kind == SDK_EV_FETCH || e->kind == SDK_EV_WS_OPEN;
    struct dobj_ws *ws = NULL;
    if (e->kind != SDK_EV_FETCH && (ws = event_socket(a, e)) == NULL)
        return;
    struct dobj_ctx ctx;
    atomic_fetch_add_explicit(&s->events, 1, memory_order_relaxed);
    int rv = activate(s, a, buf, sizeof(buf));
    if (rv == DOBJ_EUNAVAIL && wants_reply) {
        /* Nothing ran: the client may retry. */
        gate_push(a, &reply_error(e, 503, buf)->msg);
        if (e->kind == SDK_EV_WS_OPEN)
            ws_unlink(a, ws);
        gate_release(s, a);
        return;
    }
    if (rv != 0) {
        sysfail = buf;
        RT_ERROR("msg=\"activation failed\" shard=%u object=%s/%s err=\"%s\"", s->id, a->cls->cls->name, a->name,
                 buf);
        sdk_ctx_init(&ctx, a->cls->cls, a->name, NULL);
    } else {
        ctx_fill(&ctx, s, a, e);
        int64_t t0 = ctx.now_us;
        uint64_t before = a->committed_lsn;
        rv = run_txn(s, a, &ctx, e, ws, &sysfail, buf, sizeof(buf));
        /* A leader may have been replaced without knowing yet: what an event
         * that only read answers waits for a quorum to confirm the epoch.
         * A write's answer waits for its record, which proves as much. */
        if (a->leader != NULL && a->committed_lsn == before)
            a->event_round = rt_leader_read_round(a->leader);
        int64_t took = rt_now_us() - t0;
        if (took > SLOW_EVENT_US)
            RT_WARN("msg=\"slow event\" shard=%u object=%s/%s took_ms=%lld", s->id, a->cls->cls->name, a->name,
                    (long long)(took / 1000));
    }
    if (wants_reply) {
        struct rt_reply *r = reply_from_ctx(e, &ctx, rv, sysfail);
        gate_push(a, &r->msg);
        if (e->kind == SDK_EV_WS_OPEN && !r->ws_accept)
            ws_unlink(a, ws);
    }
    if (rv == 0)
        gate_outs(a, sdk_ctx_take_outs(&ctx));
    else
        discard_outs(a, sdk_ctx_take_outs(&ctx));
    if (e->kind == SDK_EV_WS_CLOSE)
        ws_unlink(a, ws);
    sdk_ctx_close(&ctx);
    a->event_round = 0;
    gate_release(s, a);
}

static void admin_restore_start(struct rt_shard *s, struct rt_actor *a, struct rt_event *e);

/* Runs (or refuses) one event of `a`, then lets go of what it held. */
static void actor_event(struct rt_shard *s, struct rt_actor *a, struct rt_event *e)
{
    struct rt_actors *t = s->actors;
    if (e->admin_restore && !s->stopping) {
        admin_restore_start(s, a, e);
        return;
    }
    /* Every event but a close took a slot of the shard's in-flight bound. */
    bool reserved = e->kind != SDK_EV_WS_CLOSE;
    if (e->wake) {
        /* The object is led. A leader that led it already tells every
         * replica again how far it is durable (a read round carries it): a
         * replica that missed it still counts the object as moving. */
        if (a->leader != NULL && !a->recovering)
            rt_leader_read_round(a->leader);
    } else if (s->stopping || (e->kind == SDK_EV_WS_OPEN && a->nsockets >= ACTOR_SOCKETS_MAX)) {
        if (e->kind == SDK_EV_FETCH || e->kind == SDK_EV_WS_OPEN) {
            struct rt_reply *r = reply_error(e, 503, s->stopping ? "the server is stopping"
                                                                 : "the object has too many open WebSockets");
            gate_push(a, &r->msg);
            gate_release(s, a);
        }
    } else {
        run_event(s, a, e);
    }
    enforce_open_bound(s, a);
    maybe_free(t, a);
    if (reserved)
        rt_shard_event_done(s);
    free(e);
}

/* ---- in-place restore ----------------------------------------------------- */

/*
 * POST /_admin/restore: the object's state as of an earlier moment becomes
 * its next write. The old state is built from object storage on the thread
 * pool (the object's events wait meanwhile), its stamped lsn set to the next
 * record's, and copied over the live database with SQLite's backup API in one
 * transaction: one ordinary record, so the history stays linear and the
 * restore itself can be undone by restoring to the moment before it. The
 * answer leaves through the output gate once that record is durable.
 */
struct restore_job {
    uv_work_t req;
    struct rt_shard *s;
    struct rt_actor *a;
    struct rt_event *e;
    char cls[RT_CLASS_NAME_MAX + 1];
    uint8_t id[16];
    int rv;
    uint64_t got;
    char err[1024];
    char path[4200];
};

static void restore_work(uv_work_t *req)
{
    struct restore_job *j = req->data;
    j->rv = rt_restore_object(j->s->config, j->cls, j->id, j->e->restore_lsn, j->e->restore_at_us, j->path, &j->got,
                              j->err, sizeof(j->err));
}

/* Copies the restored file over the live database as record committed + 1.
 * 0, or an HTTP status with err set.
 *
 * The backup API commits without calling the WAL hook, so the stamp of the
 * new lsn follows as a second commit, which does: the hook's frame count
 * covers both, and capture turns both into one record. Nothing between them
 * is visible or durable. */
static int restore_apply(struct rt_shard *s, struct rt_actor *a, const char *path, char *err, size_t errlen)
{
    if (activate(s, a, err, errlen) != 0)
        return 500;
    sqlite3 *src = NULL;
    if (sqlite3_open_v2(path, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "can not open the restored database: %s", sqlite3_errmsg(src));
        sqlite3_close(src);
        return 500;
    }
    int status = 0;
    a->running = NULL;
    a->wal_frames = 0;
    a->committing = true;
    sqlite3_backup *b = sqlite3_backup_init(a->db, "main", src, "main");
    int rc = b != NULL ? sqlite3_backup_step(b, -1) : sqlite3_errcode(a->db);
    int fin = b != NULL ? sqlite3_backup_finish(b) : rc;
    if (rc != SQLITE_DONE || fin != SQLITE_OK) {
        int code = rc != SQLITE_DONE ? rc : fin;
        snprintf(err, errlen, "%s: %s",
                 code == SQLITE_FULL ? "the restored database is too large to be written as one record (64 MB)"
                                     : "can not write the restored state",
                 sqlite3_errstr(code));
        status = code == SQLITE_FULL ? 507 : 500;
    } else {
        /* The restored image has _dobj_meta even if the live one had not. */
        if (a->stamp == NULL)
            sqlite3_prepare_v2(a->db, STAMP_SQL, -1, &a->stamp, NULL);
        if (a->stamp != NULL)
            stamp_bind(a);
        if (a->stamp == NULL || step_reset(a->stamp) != SQLITE_DONE || a->wal_frames == 0) {
            /* The restored pages are in the WAL and can not be captured:
             * like any commit that can not be, the host stops (record_submit
             * explains why) rather than serve a state it can not make durable. */
            RT_ERROR("msg=\"can not stamp an in-place restore: stopping the host\" object=%s/%s err=\"%s\"",
                     a->cls->cls->name, a->name, sqlite3_errmsg(a->db));
            abort();
        }
        record_submit(s, a, rt_now_us(), 0);
        /* Cached statements and the class's setup start afresh, as after an
         * activation. */
        a->needs_init = true;
    }
    a->committing = false;
    sqlite3_close(src);
    return status;
}

static void restore_done(uv_work_t *req, int status)
{
    (void)status;
    struct restore_job *j = req->data;
    struct rt_shard *s = j->s;
    struct rt_actor *a = j->a;
    struct rt_event *e = j->e;
    a->fetching = false;
    struct rt_reply *r;
    char err[1200];
    if (j->rv != 0) {
        int code = j->rv == -ENOENT ? 404 : j->rv == -ERANGE ? 400 : j->rv == -EPROTO || j->rv == -ENODATA ? 500 : 503;
        r = reply_error(e, code, j->err);
    } else {
        uint64_t before = a->committed_lsn;
        int code = restore_apply(s, a, j->path, err, sizeof(err));
        if (code != 0) {
            r = reply_error(e, code, err);
        } else {
            r = reply_new(e);
            struct sdk_buf b = {0};
            sdk_buf_printf(&b, "{\"object\":");
            struct sdk_buf nm = {0};
            sdk_buf_printf(&nm, "%s/", a->cls->cls->name);
            sdk_buf_append(&nm, a->name, a->name_len);
            sdk_buf_json_str(&b, nm.data, nm.len);
            sdk_buf_close(&nm);
            sdk_buf_printf(&b, ",\"restored_lsn\":%llu,\"lsn\":%llu,\"previous_lsn\":%llu}\n",
                           (unsigned long long)j->got, (unsigned long long)a->committed_lsn,
                           (unsigned long long)before);
            r->status = 200;
            r->body = sdk_buf_steal(&b, &r->body_len);
            static const char ct[] = "content-type\0application/json";
            r->headers = sdk_xstrndup(ct, sizeof(ct));
            r->headers_len = sizeof(ct);
            RT_INFO("msg=\"restored in place\" object=%s/%s restored_lsn=%llu lsn=%llu", a->cls->cls->name, a->name,
                    (unsigned long long)j->got, (unsigned long long)a->committed_lsn);
        }
    }
    unlink(j->path);
    gate_push(a, &r->msg);
    gate_release(s, a);
    free(j);
    free(e);
    rt_shard_event_done(s);
    release_held(s, a);
    if (a->held_head == NULL) {
        enforce_open_bound(s, a);
        maybe_free(s->actors, a);
    }
}

static void admin_restore_start(struct rt_shard *s, struct rt_actor *a, struct rt_event *e)
{
    struct restore_job *j = sdk_xcalloc(1, sizeof(*j));
    j->req.data = j;
    j->s = s;
    j->a = a;
    j->e = e;
    actor_path(s, a);
    snprintf(j->cls, sizeof(j->cls), "%s", a->cls->cls->name);
    memcpy(j->id, a->id, sizeof(j->id));
    char hex[33];
    rt_object_id_hex(a->id, hex);
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/snapshots/x", s->config->data_dir);
    rt_mkdir_parents(dir);
    snprintf(j->path, sizeof(j->path), "%s/snapshots/restore-%s-%u-%u.db", s->config->data_dir, hex, s->id,
             s->actors->snap_seq++);
    unlink(j->path);
    a->fetching = true;
    uv_queue_work(&s->loop, &j->req, restore_work, restore_done);
}

/* ---- snapshots ----------------------------------------------------------- */

static bool needs_fetch(struct rt_shard *s, struct rt_actor *a);

#define SNAP_STEP_PAGES 256

/* Ends an actor's snapshot: hands a finished one to the uploader, drops one
 * that failed or was cut short. */
static void snap_end(struct rt_shard *s, struct rt_actor *a, bool done)
{
    struct rt_actors *t = s->actors;
    struct rt_actor **p = &t->snap_head;
    while (*p != a)
        p = &(*p)->snap_next;
    *p = a->snap_next;
    if (t->snap_head == NULL)
        uv_idle_stop(&t->snap_idle);
    int rc = sqlite3_backup_finish(a->snap);
    a->snap = NULL;
    int64_t lsn = done && rc == SQLITE_OK ? rt_db_lsn(a->snap_db) : -1;
    sqlite3_close(a->snap_db);
    a->snap_db = NULL;
    if (lsn > 0) {
        rt_durable_snapshot(a->id, a->cls->cls->name, a->name, a->name_len, (uint64_t)lsn, a->snap_path);
    } else {
        if (done)
            RT_WARN("msg=\"snapshot failed\" object=%s/%s err=\"%s\"", a->cls->cls->name, a->name,
                    sqlite3_errstr(rc));
        unlink(a->snap_path);
        free(a->snap_path);
    }
    a->snap_path = NULL;
}

static void on_snap_idle(uv_idle_t *h)
{
    struct rt_shard *s = h->data;
    for (struct rt_actor *a = s->actors->snap_head, *next; a != NULL; a = next) {
        next = a->snap_next;
        int rc = sqlite3_backup_step(a->snap, SNAP_STEP_PAGES);
        if (rc == SQLITE_DONE)
            snap_end(s, a, true);
        else if (rc != SQLITE_OK && rc != SQLITE_BUSY && rc != SQLITE_LOCKED)
            snap_end(s, a, true);
    }
}

static struct rt_actor *table_find_name(struct rt_actors *t, uint64_t hash, const struct rt_class *cls,
                                        const char *name, size_t len)
{
    for (struct rt_actor *a = *bucket(t, hash); a != NULL; a = a->hnext)
        if (a->hash == hash && a->cls == cls && a->name_len == len && memcmp(a->name, name, len) == 0)
            return a;
    return NULL;
}

void rt_actors_on_snapshot(struct rt_shard *s, struct rt_snapshot_msg *m)
{
    struct rt_actors *t = s->actors;
    struct rt_actor *a = table_find_name(t, m->hash, m->cls, m->name, m->name_len);
    if (a == NULL) {
        struct rt_event e = {.cls = m->cls, .hash = m->hash, .name = m->name, .name_len = m->name_len};
        a = table_add(t, &e);
    }
    free(m);
    char err[512];
    /* Events held for a full WAL do not stop it: a hot object is the one
     * that needs snapshots most, and the copy runs between events anyway. */
    if (s->stopping || a->snap != NULL || a->fetching || (a->db == NULL && a->held_head != NULL) ||
        needs_fetch(s, a) || activate(s, a, err, sizeof(err)) != 0) {
        maybe_free(t, a);
        return;
    }
    char dir[4096], path[4200];
    snprintf(dir, sizeof(dir), "%s/snapshots/x", s->config->data_dir);
    rt_mkdir_parents(dir);
    char hex[33];
    rt_object_id_hex(a->id, hex);
    snprintf(path, sizeof(path), "%s/snapshots/%s-%u-%u.db", s->config->data_dir, hex, s->id, t->snap_seq++);
    unlink(path);
    if (sqlite3_open_v2(path, &a->snap_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK ||
        sqlite3_exec(a->snap_db, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF", NULL, NULL, NULL) !=
            SQLITE_OK ||
        (a->snap = sqlite3_backup_init(a->snap_db, "main", a->db, "main")) == NULL) {
        RT_WARN("msg=\"can not start a snapshot\" object=%s/%s file=%s err=\"%s\"", a->cls->cls->name, a->name,
                path, a->snap_db != NULL ? sqlite3_errmsg(a->snap_db) : "out of memory");
        sqlite3_close(a->snap_db);
        a->snap_db = NULL;
        unlink(path);
        enforce_open_bound(s, NULL);
        return;
    }
    a->snap_path = sdk_xstrdup(path);
    a->snap_next = t->snap_head;
    t->snap_head = a;
    uv_idle_start(&t->snap_idle, on_snap_idle);
}

/* ---- a missing file rebuilt from object storage (fetch.c) ---------------- */

struct fetch {
    uv_work_t req;
    struct rt_shard *s;
    struct rt_actor *a;
    char cls[RT_CLASS_NAME_MAX + 1];
    uint8_t id[16];
    int rv;
    uint64_t lsn;
    char err[512];
    char path[];
};

static void fetch_work(uv_work_t *req)
{
    struct fetch *f = req->data;
    f->rv = rt_fetch_object(f->s->config, f->cls, f->id, f->path, &f->lsn, f->err, sizeof(f->err));
}

static void fetch_done(uv_work_t *req, int status)
{
    (void)status;
    struct fetch *f = req->data;
    struct rt_actor *a = f->a;
    a->fetching = false;
    if (f->rv == 0 || f->rv == -ENOENT) {
        a->store_checked = true;
    } else {
        RT_WARN("msg=\"a missing database can not be rebuilt from object storage: events get 503\" "
                "object=%s/%s err=\"%s\"",
                a->cls->cls->name, a->name, f->err);
        free(a->fetch_err);
        a->fetch_err = sdk_xstrdup(f->err);
    }
    release_held(f->s, a);
    free(f);
}

/* A file that is not there may be an object whose disk was wiped: object
 * storage is asked once, off the loop, before the object starts anew. */
static bool needs_fetch(struct rt_shard *s, struct rt_actor *a)
{
    if (a->db != NULL || a->store_checked || strcmp(s->config->store_url, "none") == 0)
        return false;
    actor_path(s, a);
    if (access(a->path, F_OK) == 0) {
        a->store_checked = true;
        return false;
    }
    return true;
}

static void fetch_start(struct rt_shard *s, struct rt_actor *a)
{
    size_t plen = strlen(a->path) + 1;
    struct fetch *f = sdk_xcalloc(1, sizeof(*f) + plen);
    f->req.data = f;
    f->s = s;
    f->a = a;
    snprintf(f->cls, sizeof(f->cls), "%s", a->cls->cls->name);
    memcpy(f->id, a->id, sizeof(f->id));
    memcpy(f->path, a->path, plen);
    a->fetching = true;
    uv_queue_work(&s->loop, &f->req, fetch_work, fetch_done);
}

/* ---- leading in a cluster (leader.c) -------------------------------------- */

/* An event this actor can not take: 503 for a request, nothing for the rest. */
static void refuse(struct rt_shard *s, struct rt_actor *a, struct rt_event *e, const char *why)
{
    if ((e->kind == SDK_EV_FETCH || e->kind == SDK_EV_WS_OPEN) && !e->wake) {
        gate_push(a, &reply_error(e, 503, why)->msg);
        gate_release(s, a);
    }
    if (e->kind != SDK_EV_WS_CLOSE)
        rt_shard_event_done(s);
    free(e);
    maybe_free(s->actors, a);
}

/* The first event of an object this host does not lead yet starts its
 * leader; false if it was refused. */
static bool lead(struct rt_shard *s, struct rt_actor *a, struct rt_event *e)
{
    char why[512];
    actor_path(s, a);
    if (rt_leader_start(s, a, a->id, a->cls->cls->name, a->name, a->name_len, why, sizeof(why)) == 0)
        return true;
    refuse(s, a, e, why);
    return false;
}

struct rt_leader **rt_actor_leader_slot(struct rt_actor *a) { return &a->leader; }

void rt_actor_recovering(struct rt_actor *a)
{
    a->recovering = true;
    a->confirmed_round = 0; /* the new leader's rounds start again */
}

void rt_actor_hold(struct rt_actor *a)
{
    a->recovering = true; /* its outputs still leave as its leader's rounds are answered */
}

void rt_actor_confirmed(struct rt_shard *s, struct rt_actor *a, uint64_t round)
{
    if (round > a->confirmed_round)
        a->confirmed_round = round;
    gate_release(s, a);
}

const char *rt_actor_close_for_recovery(struct rt_shard *s, struct rt_actor *a)
{
    actor_path(s, a);
    if (a->db != NULL) {
        db_close(s->actors, a);
        lru_unlink(s->actors, a);
        s->actors->nopen--;
    }
    return a->path;
}

/* Fails every held event: 503 for requests. */
static void fail_held(struct rt_shard *s, struct rt_actor *a, const char *why)
{
    while (a->held_head != NULL) {
        struct rt_event *e = (struct rt_event *)a->held_head;
        a->held_head = atomic_load_explicit(&e->msg.next, memory_order_relaxed);
        if (a->held_head == NULL)
            a->held_tail = &a->held_head;
        if ((e->kind == SDK_EV_FETCH || e->kind == SDK_EV_WS_OPEN) && !e->wake)
            gate_push(a, &reply_error(e, 503, why)->msg);
        if (e->kind != SDK_EV_WS_CLOSE)
            rt_shard_event_done(s);
        free(e);
    }
}

/* The barrier: the first record of the leader's epoch, a transaction that
 * only stamps the next lsn. Nothing is durable before it is. */
static int write_barrier(struct rt_shard *s, struct rt_actor *a, char *err, size_t errlen)
{
    if (step_reset(a->begin) != SQLITE_DONE) {
        snprintf(err, errlen, "can not begin the barrier: %s", sqlite3_errmsg(a->db));
        return DOBJ_ESQLITE;
    }
    int rv = meta_check(a, err, errlen);
    if (rv == 0) {
        stamp_bind(a);
        if (step_reset(a->stamp) != SQLITE_DONE) {
            snprintf(err, errlen, "can not stamp the barrier: %s", sqlite3_errmsg(a->db));
            rv = DOBJ_ESQLITE;
        }
    }
    a->wal_frames = 0;
    if ((rv = commit_or_rollback(a, rv, "the barrier", err, errlen)) != 0)
        return rv;
    record_submit(s, a, rt_now_us(), 0);
    return 0;
}

void rt_actor_recovered(struct rt_shard *s, struct rt_actor *a, int rv, uint64_t lsn, const char *err)
{
    char buf[1024];
    a->recovering = false;
    if (rv == 0 && (rv = activate(s, a, buf, sizeof(buf))) != 0)
        err = buf;
    if (rv == 0 && a->committed_lsn != lsn) {
        snprintf(buf, sizeof(buf), "the rebuilt database holds lsn %llu, recovery chose %llu",
                 (unsigned long long)a->committed_lsn, (unsigned long long)lsn);
        err = buf;
        rv = DOBJ_EIO;
    }
    if (rv == 0 && (rv = write_barrier(s, a, buf, sizeof(buf))) != 0)
        err = buf;
    if (rv != 0) {
        char why[1200];
        snprintf(why, sizeof(why), "the object can not be served here now: %s", err);
        rt_actor_deposed(s, a, a->durable_lsn, why);
        return;
    }
    release_held(s, a);
}

void rt_actor_handed_over(struct rt_shard *s, struct rt_actor *a)
{
    a->recovering = false;
    if (a->snap != NULL)
        snap_end(s, a, false); /* the next leader closes the file: asked for again later */
    if (a->held_head == NULL)
        return;
    char why[512];
    actor_path(s, a);
    if (rt_leader_start(s, a, a->id, a->cls->cls->name, a->name, a->name_len, why, sizeof(why)) != 0)
        fail_held(s, a, why);
}

void rt_actor_deposed(struct rt_shard *s, struct rt_actor *a, uint64_t durable, const char *why)
{
    if (a->leader != NULL) {
        rt_leader_destroy(a->leader);
        a->leader = NULL;
    }
    a->recovering = false;
    if (durable > a->durable_lsn)
        a->durable_lsn = durable;
    gate_release(s, a);
    /* What waits for a record that will never be durable: a request gets 503,
     * a WebSocket send is dropped. */
    for (struct rt_msg *m = a->gate_head, *next; m != NULL; m = next) {
        next = atomic_load_explicit(&m->next, memory_order_relaxed);
        if (m->type == RT_MSG_REPLY) {
            struct rt_reply *r = (struct rt_reply *)m;
            struct sdk_buf b = {0};
            sdk_buf_json_error(&b, why);
            free(r->body);
            free(r->headers);
            r->status = 503;
            r->ws_accept = false;
            r->body = sdk_buf_steal(&b, &r->body_len);
            static const char ct[] = "content-type\0application/json";
            r->headers = sdk_xstrndup(ct, sizeof(ct));
            r->headers_len = sizeof(ct);
            m->gate_lsn = 0;
            m->gate_round = 0;
        } else {
            m->gate_lsn = UINT64_MAX; /* marked: dropped below */
        }
    }
    struct rt_msg **pp = &a->gate_head;
    while (*pp != NULL) {
        struct rt_msg *m = *pp;
        if (m->gate_lsn == UINT64_MAX) {
            *pp = atomic_load_explicit(&m->next, memory_order_relaxed);
            rt_msg_free(m);
        } else {
            pp = (struct rt_msg **)&m->next;
        }
    }
    a->gate_tail = pp;
    gate_release(s, a);
    fail_held(s, a, why);
    gate_release(s, a);
    /* The file may hold writes that are not durable: the next leader
     * rebuilds it from durable state. */
    actor_path(s, a);
    if (a->db != NULL) {
        if (a->snap != NULL)
            snap_end(s, a, false);
        db_close(s->actors, a);
        lru_unlink(s->actors, a);
        s->actors->nopen--;
    }
    unlink(a->path);
    a->committed_lsn = a->durable_lsn = 0;
    wal_set(s->actors, a, 0);
    a->needs_init = true;
    RT_WARN("msg=\"leader stepped down\" shard=%u object=%s/%s why=\"%s\"", s->id, a->cls->cls->name, a->name,
            why);
    maybe_free(s->actors, a);
}

void rt_actors_on_event(struct rt_shard *s, struct rt_event *e)
{
    struct rt_actors *t = s->actors;
    struct rt_actor *a = table_find(t, e);
    if (a == NULL && (e->kind == SDK_EV_WS_MESSAGE || e->kind == SDK_EV_WS_CLOSE)) {
        /* The object no longer knows this socket. */
        if (e->kind != SDK_EV_WS_CLOSE)
            rt_shard_event_done(s);
        free(e);
        return;
    }
    if (a == NULL)
        a = table_add(t, e);
    if (rt_cluster_enabled() && a->leader == NULL && !a->recovering && !s->stopping && !lead(s, a, e))
        return;
    if (a->fetch_err != NULL && a->held_head == NULL && !a->fetching) {
        /* The events of the failed lookup have had their 503: try again. */
        free(a->fetch_err);
        a->fetch_err = NULL;
    }
    bool fetch = !rt_cluster_enabled() && !a->fetching && a->held_head == NULL && needs_fetch(s, a);
    if (fetch || a->fetching || a->recovering || a->held_head != NULL || wal_full(s, a)) {
        atomic_store_explicit(&e->msg.next, NULL, memory_order_relaxed);
        *a->held_tail = &e->msg;
        a->held_tail = (struct rt_msg **)&e->msg.next;
        if (fetch)
            fetch_start(s, a);
        return;
    }
    actor_event(s, a, e);
}

void rt_actors_start(struct rt_shard *s)
{
    struct rt_actors *t = sdk_xcalloc(1, sizeof(*t));
    t->nbuckets = 1024;
    t->buckets = sdk_xcalloc(t->nbuckets, sizeof(*t->buckets));
    s->actors = t;
    uint64_t every = s->config->idle_timeout_ms / 4;
    if (every < 10)
        every = 10;
    if (every > 1000)
        every = 1000;
    uv_timer_init(&s->loop, &t->idle_timer);
    t->idle_timer.data = s;
    uv_idle_init(&s->loop, &t->snap_idle);
    t->snap_idle.data = s;
    uv_timer_start(&t->idle_timer, on_idle_timer, every, every);
    uv_unref((uv_handle_t *)&t->idle_timer);
}

void rt_actors_stop(struct rt_shard *s)
{
    struct rt_actors *t = s->actors;
    uv_timer_stop(&t->idle_timer);
    while (t->snap_head != NULL)
        snap_end(s, t->snap_head, false);
    /* No fsync here: the journal keeps every record that is not in an fsync'd
     * file, and the next start replays them. */
    while (t->lru_head != NULL) {
        struct rt_actor *a = t->lru_head;
        db_close(t, a);
        lru_unlink(t, a);
        t->nopen--;
    }
}
