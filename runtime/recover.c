/*
 * recover.c: start-up recovery, before any shard runs.
 *
 * The journal holds every record that is not yet in an fsync'd database
 * file. So recovery:
 *   1. deletes every object's -wal and -shm: SQLite files run with
 *      synchronous=OFF, and a WAL may hold commits whose records never became
 *      durable; keeping them would give two histories the same lsn. What the
 *      WAL held that was durable is in the journal.
 *   2. reads the journal (a torn tail is cut, damage elsewhere refused unless
 *      --repair) and writes each record's pages into its object's file. Page
 *      images are whole, so replaying records the file already holds is
 *      harmless as long as the newest comes last.
 *   3. fsyncs the files, checks each (quick_check, and that its stamped lsn is
 *      the last record's), rebuilds a damaged or missing one from lsn 1 where
 *      the journal still has it, and marks one it can not rebuild as broken.
 *   4. empties the journal of what it need not keep: everything it held is
 *      now in fsync'd files, but records not yet in object storage (no
 *      "uploaded" marker covers them) must stay until they are. The segments
 *      from the oldest such record on are kept, and once the journal and the
 *      uploader run, rt_recover_uploads() hands those records over again.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "runtime.h"
#include "wal.h"

/* OBJ_FETCH: the file is missing and the journal does not start at lsn 1:
 * object storage may have the start. */
enum obj_state { OBJ_APPLYING, OBJ_SKIP, OBJ_REBUILD, OBJ_FETCH };

/* Where an object's records start in a journal segment. */
struct seg_start {
    uint64_t lsn;
    uint32_t segment;
};

struct obj {
    uint8_t id[16];
    enum obj_state state;
    uint64_t uploaded_lsn; /* the newest "uploaded" marker */
    uint64_t queued_lsn;   /* rt_recover_uploads: handed to the uploader */
    struct seg_start *segs;
    size_t nsegs;
    char *cls, *name; /* read from the file when needed */
    size_t name_len;
    uint64_t first_lsn, last_lsn;
    uint64_t file_lsn; /* stamped in the file before roll-forward */
    uint64_t records;
    bool created;
    bool broken;
};

struct recovery {
    const struct rt_config *c;
    struct obj *objs;
    size_t nobjs, cap;
    size_t *slots; /* open addressing over objs: index + 1, 0 empty */
    size_t nslots;
    struct wal_page *pages;
    uint32_t pages_cap;
    bool rebuild_pass; /* the second pass replays only objects to rebuild */
    uint32_t keep_from, next_segment;
    uint64_t applied;
    size_t nbroken;
};

/* Ids are SHA-256 prefixes: their first 8 bytes are already a good hash. */
static size_t *slot_of(struct recovery *r, const uint8_t id[16])
{
    size_t h = (size_t)wal_get_u64(id);
    for (size_t i = h & (r->nslots - 1);; i = (i + 1) & (r->nslots - 1))
        if (r->slots[i] == 0 || memcmp(r->objs[r->slots[i] - 1].id, id, 16) == 0)
            return &r->slots[i];
}

static void slots_grow(struct recovery *r)
{
    free(r->slots);
    r->nslots = r->nslots ? r->nslots * 2 : 256;
    r->slots = sdk_xcalloc(r->nslots, sizeof(*r->slots));
    for (size_t i = 0; i < r->nobjs; i++)
        *slot_of(r, r->objs[i].id) = i + 1;
}

static struct obj *obj_find(struct recovery *r, const uint8_t id[16], bool add)
{
    if (r->nslots == 0)
        slots_grow(r);
    size_t *slot = slot_of(r, id);
    if (*slot != 0)
        return &r->objs[*slot - 1];
    if (!add)
        return NULL;
    if (r->nobjs == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 64;
        r->objs = sdk_xrealloc(r->objs, r->cap * sizeof(*r->objs));
    }
    struct obj *o = &r->objs[r->nobjs++];
    memset(o, 0, sizeof(*o));
    memcpy(o->id, id, 16);
    *slot = r->nobjs;
    if (2 * r->nobjs > r->nslots)
        slots_grow(r);
    return o;
}

static void mark_broken(struct recovery *r, struct obj *o, const char *why)
{
    char path[4096], marker[4200];
    rt_object_path(r->c, o->id, path, sizeof(path));
    snprintf(marker, sizeof(marker), "%s.broken", path);
    FILE *f = fopen(marker, "w");
    if (f != NULL) {
        fprintf(f, "%s\n", why);
        fclose(f);
    }
    RT_ERROR("msg=\"object can not be recovered: it will refuse events\" file=%s why=\"%s\"", path, why);
    o->state = OBJ_SKIP;
    o->broken = true;
    r->nbroken++;
}

int rt_db_file_stamp(const char *path, int64_t *lsn, uint64_t *origin)
{
    *lsn = -1;
    *origin = 0;
    char uri[4200];
    snprintf(uri, sizeof(uri), "file:%s?immutable=1", path);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
    if (rc == SQLITE_OK)
        *lsn = rt_db_lsn(db);
    if (*lsn > 0 &&
        sqlite3_prepare_v2(db, "SELECT value FROM _dobj_meta WHERE key = 'origin'", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        *origin = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return *lsn >= 0 ? 0 : -EIO;
}

/* The lsn stamped in a database file (no WAL: recovery dropped it), 0 for a
 * file without one, -1 if it can not be read: a crash during a checkpoint
 * leaves pages of several (durable) states, which roll-forward repairs. */
static int64_t file_lsn(const char *path)
{
    int64_t lsn;
    uint64_t origin;
    rt_db_file_stamp(path, &lsn, &origin);
    return lsn;
}

int64_t rt_db_lsn(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int64_t lsn = -1;
    int rc = sqlite3_prepare_v2(db, "SELECT value FROM _dobj_meta WHERE key = 'lsn'", -1, &st, NULL);
    if (rc == SQLITE_OK)
        lsn = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    else if (rc == SQLITE_ERROR && strstr(sqlite3_errmsg(db), "no such table") != NULL)
        lsn = 0;
    sqlite3_finalize(st);
    return lsn;
}

/* Records are missing between the file and the journal: only --repair gets
 * here honestly (it skipped a batch). Without it, refuse to guess. */
static int obj_gap(struct recovery *r, struct obj *o, const char *path, uint64_t have, uint64_t next)
{
    if (!r->c->repair) {
        char why[256];
        snprintf(why, sizeof(why), "records %llu..%llu are neither in the database file nor in the journal",
                 (unsigned long long)have + 1, (unsigned long long)next - 1);
        mark_broken(r, o, why);
        return 1;
    }
    RT_WARN("msg=\"repair: the object stays at its last record before the journal gap\" file=%s lsn=%llu next=%llu",
            path, (unsigned long long)have, (unsigned long long)next);
    o->state = OBJ_SKIP;
    return 1;
}

/* The first record of an object in this pass: is there a file to apply to,
 * and does the record follow what the file holds? */
static int obj_begin(struct recovery *r, struct obj *o, const struct wal_record *rec, const char *path)
{
    o->first_lsn = rec->lsn;
    if (!r->rebuild_pass)
        o->state = OBJ_APPLYING;
    if (access(path, F_OK) == 0) {
        if (r->rebuild_pass)
            return 0;
        int64_t have = file_lsn(path);
        o->file_lsn = have > 0 ? (uint64_t)have : 0;
        return have >= 0 && rec->lsn > (uint64_t)have + 1 ? obj_gap(r, o, path, (uint64_t)have, rec->lsn) : 0;
    }
    if (rec->lsn != 1 && strcmp(r->c->store_url, "none") != 0) {
        o->state = OBJ_FETCH;
        return 1;
    }
    if (rec->lsn != 1)
        return obj_gap(r, o, path, 0, rec->lsn);
    o->created = true;
    return rt_mkdir_parents(path);
}

/* Remembers which segment holds the object's records from which lsn. */
static void note_segment(struct obj *o, uint64_t lsn, uint32_t segment)
{
    if (o->nsegs > 0 && o->segs[o->nsegs - 1].segment == segment)
        return;
    o->segs = sdk_xrealloc(o->segs, (o->nsegs + 1) * sizeof(*o->segs));
    o->segs[o->nsegs++] = (struct seg_start){.lsn = lsn, .segment = segment};
}

static int on_record(void *arg, uint32_t segment, const uint8_t *buf, size_t len)
{
    struct recovery *r = arg;
    struct wal_record head;
    wal_record_peek_header(buf, &head);
    if (!r->rebuild_pass) {
        struct obj *o = obj_find(r, head.object_id, true);
        if (head.flags & WAL_REC_UPLOADED) {
            if (head.lsn > o->uploaded_lsn)
                o->uploaded_lsn = head.lsn;
            return 0;
        }
        note_segment(o, head.lsn, segment);
    } else if (head.flags & WAL_REC_UPLOADED) {
        return 0;
    }
    struct wal_record rec;
    size_t used;
    if (wal_record_decode_grow(buf, len, &rec, &r->pages, &r->pages_cap, &used) != 0) {
        RT_ERROR("msg=\"journal batch holds an invalid record\" bytes=%zu", len);
        return -EPROTO;
    }
    struct obj *o = obj_find(r, rec.object_id, !r->rebuild_pass);
    if (o == NULL || o->state == OBJ_SKIP || o->state == OBJ_FETCH || (r->rebuild_pass && o->state != OBJ_REBUILD))
        return 0;
    char path[4096];
    rt_object_path(r->c, rec.object_id, path, sizeof(path));
    if (o->records == 0 || (r->rebuild_pass && o->last_lsn == 0)) {
        int rv = obj_begin(r, o, &rec, path);
        if (rv != 0)
            return rv > 0 ? 0 : rv;
    } else if (rec.lsn != o->last_lsn + 1) {
        /* Only --repair skips batches: the object keeps its gap-free prefix. */
        RT_WARN("msg=\"journal gap: the object stays at its last record before it\" file=%s lsn=%llu next=%llu",
                path, (unsigned long long)o->last_lsn, (unsigned long long)rec.lsn);
        o->state = OBJ_SKIP;
        return 0;
    }
    /* Files are fsync'd once each, after the whole journal (sync_objects). */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    int rv = fd < 0 ? -errno : wal_apply(fd, &rec);
    if (fd >= 0)
        close(fd);
    if (rv != 0) {
        RT_ERROR("msg=\"can not apply a record\" file=%s err=\"%s\"", path, strerror(-rv));
        return rv;
    }
    o->last_lsn = rec.lsn;
    o->records++;
    r->applied++;
    return 0;
}

/* Snapshot files a previous run made and did not upload: the next snapshot
 * replaces them. */
static void drop_snapshot_files(const struct rt_config *c)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/snapshots", c->data_dir);
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char path[4400];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        unlink(path);
    }
    closedir(d);
}

/* Deletes every -wal and -shm under DATA/objects (step 1). */
static int drop_wals(const struct rt_config *c)
{
    char root[4096];
    snprintf(root, sizeof(root), "%s/objects", c->data_dir);
    DIR *top = opendir(root);
    if (top == NULL)
        return errno == ENOENT ? 0 : -errno;
    struct dirent *de;
    while ((de = readdir(top)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char sub[4400];
        snprintf(sub, sizeof(sub), "%s/%s", root, de->d_name);
        DIR *d = opendir(sub);
        if (d == NULL)
            continue;
        struct dirent *f;
        while ((f = readdir(d)) != NULL) {
            size_t n = strlen(f->d_name);
            if (n > 4 && (strcmp(f->d_name + n - 4, "-wal") == 0 || strcmp(f->d_name + n - 4, "-shm") == 0)) {
                char path[4700];
                snprintf(path, sizeof(path), "%s/%s", sub, f->d_name);
                if (unlink(path) != 0 && errno != ENOENT) {
                    int e = errno;
                    closedir(d);
                    closedir(top);
                    return -e;
                }
            }
        }
        closedir(d);
    }
    closedir(top);
    return 0;
}

/* quick_check and the stamped lsn; true if the file is what the journal says. */
static bool obj_check(struct recovery *r, struct obj *o)
{
    char path[4096];
    rt_object_path(r->c, o->id, path, sizeof(path));
    sqlite3 *db = NULL;
    bool ok = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK;
    sqlite3_stmt *st = NULL;
    if (ok)
        ok = sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, NULL) == SQLITE_OK &&
             sqlite3_step(st) == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0;
    sqlite3_finalize(st);
    ok = ok && rt_db_lsn(db) == (int64_t)o->last_lsn;
    sqlite3_close(db);
    return ok;
}

static int sync_objects(struct recovery *r, enum obj_state which, char *err, size_t errlen)
{
    for (size_t i = 0; i < r->nobjs; i++) {
        if (r->objs[i].state != which)
            continue;
        char path[4096];
        rt_object_path(r->c, r->objs[i].id, path, sizeof(path));
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        int rv = fd < 0 || fdatasync(fd) != 0 ? -errno : 0;
        if (fd >= 0)
            close(fd);
        if (rv != 0) {
            snprintf(err, errlen, "recovery: can not fsync %s: %s", path, strerror(-rv));
            return rv;
        }
    }
    return 0;
}

/* A file that is missing or damaged, whose records the journal holds only
 * from lsn k > 1: object storage may hold 1 .. k - 1 (a wiped disk, a new
 * host). Fetched, the file gets the journal's records in the rebuild pass.
 * 1 if it will be rebuilt, 0 if it is broken. */
static size_t fetch_start(struct recovery *r, struct obj *o)
{
    char path[4096], err[1024];
    rt_object_path(r->c, o->id, path, sizeof(path));
    unlink(path);
    uint64_t have = 0;
    int rv = rt_fetch_object(r->c, NULL, o->id, path, &have, err, sizeof(err));
    if (rv == 0 && have + 1 >= o->first_lsn) {
        o->state = OBJ_REBUILD;
        o->last_lsn = 0;
        return 1;
    }
    char why[1200];
    if (rv == 0)
        snprintf(why, sizeof(why), "object storage holds records up to %llu, the journal starts at %llu",
                 (unsigned long long)have, (unsigned long long)o->first_lsn);
    else if (rv == -ENOENT)
        snprintf(why, sizeof(why), "the database is missing or damaged, the journal does not start at lsn 1, and "
                                   "object storage does not have the object");
    else
        snprintf(why, sizeof(why), "the database is missing or damaged, the journal does not start at lsn 1, and "
                                   "object storage can not be read: %s", err);
    unlink(path);
    mark_broken(r, o, why);
    return 0;
}

/* Step 3: checks every object applied; rebuilds what it can. */
static int check_objects(struct recovery *r, char *err, size_t errlen)
{
    int rv = sync_objects(r, OBJ_APPLYING, err, errlen);
    if (rv != 0)
        return rv;
    size_t rebuild = 0;
    for (size_t i = 0; i < r->nobjs; i++) {
        struct obj *o = &r->objs[i];
        /* A file ahead of the journal's last record would be a mix of both. */
        if (o->state == OBJ_FETCH || (o->state == OBJ_APPLYING && o->first_lsn != 1 &&
                                      !(o->file_lsn <= o->last_lsn && obj_check(r, o)))) {
            rebuild += fetch_start(r, o);
            continue;
        }
        if (o->state != OBJ_APPLYING || (o->file_lsn <= o->last_lsn && obj_check(r, o)))
            continue;
        char path[4096];
        rt_object_path(r->c, o->id, path, sizeof(path));
        RT_WARN("msg=\"database damaged: rebuilding it from the journal\" file=%s", path);
        unlink(path);
        o->state = OBJ_REBUILD;
        o->last_lsn = 0;
        rebuild++;
    }
    if (rebuild == 0)
        return 0;
    char dir[4096];
    struct repl_recovered next;
    snprintf(dir, sizeof(dir), "%s/journal", r->c->data_dir);
    r->rebuild_pass = true;
    rv = repl_journal_recover(dir, r->c->repair, on_record, r, &next, err, errlen);
    if (rv == 0)
        rv = sync_objects(r, OBJ_REBUILD, err, errlen);
    for (size_t i = 0; rv == 0 && i < r->nobjs; i++) {
        struct obj *o = &r->objs[i];
        if (o->state == OBJ_REBUILD && !obj_check(r, o))
            mark_broken(r, o, "the database rebuilt from the journal fails its check");
    }
    return rv;
}

/* Keeps a broken object's journal records beside its marker, as
 * <db>.broken.records (records back to back, wal/record.c format): the
 * journal is emptied next, and they may be the only copy of acknowledged
 * writes. */
static int save_record(void *arg, uint32_t segment, const uint8_t *buf, size_t len)
{
    (void)segment;
    struct recovery *r = arg;
    struct wal_record head;
    wal_record_peek_header(buf, &head);
    if (head.flags & WAL_REC_UPLOADED)
        return 0;
    uint8_t id[16];
    uint64_t lsn;
    uint32_t rlen;
    wal_record_peek(buf, id, &lsn, &rlen);
    struct obj *o = obj_find(r, id, false);
    if (o == NULL || !o->broken)
        return 0;
    char path[4096], out[4200];
    rt_object_path(r->c, id, path, sizeof(path));
    snprintf(out, sizeof(out), "%s.broken.records", path);
    int fd = open(out, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int rv = 0;
    for (size_t off = 0; off < len && rv == 0;) {
        ssize_t n = write(fd, buf + off, len - off);
        if (n < 0 && errno != EINTR)
            rv = -errno;
        else if (n > 0)
            off += (size_t)n;
    }
    if (rv == 0 && fdatasync(fd) != 0)
        rv = -errno;
    close(fd);
    return rv;
}

static int save_broken(struct recovery *r, const char *dir, char *err, size_t errlen)
{
    if (r->nbroken == 0)
        return 0;
    struct repl_recovered next;
    return repl_journal_recover(dir, r->c->repair, save_record, r, &next, err, errlen);
}

static void sync_dirs(const struct rt_config *c)
{
    char root[4096];
    snprintf(root, sizeof(root), "%s/objects", c->data_dir);
    DIR *top = opendir(root);
    if (top == NULL)
        return;
    struct dirent *de;
    while ((de = readdir(top)) != NULL) {
        char sub[4400];
        snprintf(sub, sizeof(sub), "%s/%s", root, de->d_name);
        int fd = open(sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            fsync(fd);
            close(fd);
        }
    }
    closedir(top);
}

/* The oldest journal segment holding a record the store may not have. */
static uint32_t keep_from(struct recovery *r, uint32_t next_segment)
{
    uint32_t keep = next_segment;
    if (strcmp(r->c->store_url, "none") == 0)
        return keep;
    for (size_t i = 0; i < r->nobjs; i++) {
        struct obj *o = &r->objs[i];
        if (o->broken || o->nsegs == 0 || o->last_lsn <= o->uploaded_lsn)
            continue;
        uint64_t need = o->uploaded_lsn + 1;
        uint32_t seg = o->segs[0].segment;
        for (size_t k = 0; k < o->nsegs && o->segs[k].lsn <= need; k++)
            seg = o->segs[k].segment;
        if (seg < keep)
            keep = seg;
    }
    return keep;
}

static struct recovery *kept; /* between rt_recover and rt_recover_uploads */

static void recovery_free(struct recovery *r)
{
    for (size_t i = 0; i < r->nobjs; i++) {
        free(r->objs[i].segs);
        free(r->objs[i].cls);
    }
    free(r->objs);
    free(r->slots);
    free(r->pages);
    free(r);
}

int rt_recover(const struct rt_config *c, uint32_t *next_segment, uint32_t *keep, char *err, size_t errlen)
{
    struct recovery *r = sdk_xcalloc(1, sizeof(*r));
    r->c = c;
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/journal/x", c->data_dir);
    int rv = rt_mkdir_parents(dir);
    if (rv != 0) {
        snprintf(err, errlen, "option 'data': can not create %s: %s", c->data_dir, strerror(-rv));
        recovery_free(r);
        return rv;
    }
    snprintf(dir, sizeof(dir), "%s/journal", c->data_dir);
    drop_snapshot_files(c);
    rv = drop_wals(c);
    if (rv != 0) {
        snprintf(err, errlen, "recovery: can not remove stale WAL files under %s/objects: %s", c->data_dir,
                 strerror(-rv));
        recovery_free(r);
        return rv;
    }
    struct repl_recovered got = {0};
    rv = repl_journal_recover(dir, c->repair, on_record, r, &got, err, errlen);
    *next_segment = got.next_segment;
    if (rv == 0)
        rv = check_objects(r, err, errlen);
    if (rv == 0)
        rv = save_broken(r, dir, err, errlen);
    if (rv == 0) {
        sync_dirs(c);
        /* After a repair the journal holds history that no longer happened
         * (records past a gap): none of it may be replayed again. Records it
         * held that the store does not have yet leave a gap there too,
         * which the object's next snapshot closes. */
        *keep = got.skipped > 0 ? *next_segment : keep_from(r, *next_segment);
        if (got.skipped > 0)
            RT_WARN("msg=\"repair: the journal is emptied; records it held that were not in object storage yet "
                    "will not be uploaded\"");
        rv = repl_journal_drop_before(dir, *keep);
        if (rv != 0)
            snprintf(err, errlen, "recovery: can not empty the journal %s: %s", dir, strerror(-rv));
    }
    if (rv == 0 && r->applied > 0)
        RT_INFO("msg=\"rolled forward from the journal\" objects=%zu records=%llu", r->nobjs,
                (unsigned long long)r->applied);
    if (rv == 0 && *keep < *next_segment) {
        r->keep_from = *keep;
        r->next_segment = *next_segment;
        kept = r;
    } else {
        recovery_free(r);
    }
    return rv;
}

/* The object's class and name, from its file's _dobj_meta. */
static bool read_names(struct recovery *r, struct obj *o)
{
    char path[4096], uri[4200];
    rt_object_path(r->c, o->id, path, sizeof(path));
    snprintf(uri, sizeof(uri), "file:%s?immutable=1", path);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    bool ok = false;
    if (sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db,
                           "SELECT (SELECT value FROM _dobj_meta WHERE key = 'class'),"
                           " (SELECT value FROM _dobj_meta WHERE key = 'name')",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_TEXT &&
        sqlite3_column_type(st, 1) != SQLITE_NULL) {
        size_t cl = (size_t)sqlite3_column_bytes(st, 0);
        const void *n = sqlite3_column_blob(st, 1);
        size_t nl = (size_t)sqlite3_column_bytes(st, 1);
        o->cls = sdk_xmalloc(cl + 1 + nl + 1);
        memcpy(o->cls, sqlite3_column_text(st, 0), cl);
        o->cls[cl] = '\0';
        o->name = o->cls + cl + 1;
        memcpy(o->name, n, nl);
        o->name[nl] = '\0';
        o->name_len = nl;
        ok = rt_class_name_valid(o->cls, cl);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return ok;
}

static int on_pending(void *arg, uint32_t segment, const uint8_t *buf, size_t len)
{
    struct recovery *r = arg;
    struct wal_record head;
    wal_record_peek_header(buf, &head);
    if (head.flags & WAL_REC_UPLOADED)
        return 0;
    struct obj *o = obj_find(r, head.object_id, false);
    if (o == NULL || o->broken || head.lsn <= o->uploaded_lsn || head.lsn > o->last_lsn ||
        (o->queued_lsn != 0 && head.lsn != o->queued_lsn + 1))
        return 0;
    if (o->cls == NULL && !read_names(r, o)) {
        char path[4096];
        rt_object_path(r->c, o->id, path, sizeof(path));
        RT_ERROR("msg=\"can not read the object's class and name: its records are not uploaded\" file=%s", path);
        o->broken = true;
        return 0;
    }
    uint8_t *copy = sdk_xmalloc(len);
    memcpy(copy, buf, len);
    rt_durable_upload(o->cls, o->name, o->name_len, copy, len, false, segment);
    o->queued_lsn = head.lsn;
    return 0;
}

int rt_recover_uploads(const struct rt_config *c, char *err, size_t errlen)
{
    struct recovery *r = kept;
    kept = NULL;
    if (r == NULL)
        return 0;
    int rv = 0;
    if (rt_host.uploader != NULL) {
        /* While the scan runs, the uploader may already give pins back: hold
         * every kept segment until the scan is done. */
        for (uint32_t s = r->keep_from; s < r->next_segment; s++)
            repl_journal_pin(rt_host.journal, s);
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s/journal", c->data_dir);
        struct repl_recovered next;
        rv = repl_journal_recover(dir, c->repair, on_pending, r, &next, err, errlen);
        uint64_t n = 0;
        for (size_t i = 0; i < r->nobjs; i++)
            if (r->objs[i].queued_lsn > r->objs[i].uploaded_lsn)
                n += r->objs[i].queued_lsn - r->objs[i].uploaded_lsn;
        if (n > 0)
            RT_INFO("msg=\"records not yet in object storage go to the uploader again\" records=%llu "
                    "journal_segments=%u",
                    (unsigned long long)n, r->next_segment - r->keep_from);
        for (uint32_t s = r->keep_from; s < r->next_segment; s++)
            repl_journal_release(rt_host.journal, s);
    }
    recovery_free(r);
    return rv;
}
