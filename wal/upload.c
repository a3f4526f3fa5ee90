/*
 * upload.c: the uploader thread (see wal.h for what it promises).
 *
 * Per object: an open segment builder (records compressed as they arrive),
 * a queue of cut segments, and at most one store request in flight. An
 * object's first upload after start lists its keys once ("probe"): whether
 * meta.json exists, and the last lsn already in the store, so a segment whose
 * records are all there already (the journal kept them across a crash that
 * lost the "uploaded" marker) is not uploaded twice.
 *
 * Runnable objects wait in a FIFO; at most UPLOADS_MAX requests run at once.
 * An object whose request failed waits with exponential backoff (capped) on
 * the delayed list; the first failure after a success is logged, and so is
 * the first success after failures.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>
#include <zstd.h>

#include "sdk.h"
#include "sdk_util.h"
#include "wal.h"

#define UPLOADS_MAX 32
#define TICK_MS 100
#define RETRY_MIN_MS 500
#define RETRY_MAX_MS 10000
#define SNAPSHOT_RETRY_MS 60000
#define OBJ_FORGET_US (120 * 1000000ll)

struct up_in {
    struct up_in *next;
    bool idle;       /* the object was closed for idleness, instead of a record */
    char *snap_path; /* a snapshot file instead of a record */
    uint64_t snap_lsn;
    uint8_t id[WAL_OBJECT_ID_BYTES];
    uint8_t *data;
    size_t len;
    bool packed; /* data is a wal_record_pack'd record */
    uint32_t tag;
    char *cls; /* "class\\0name" in one allocation */
    char *name;
    size_t name_len;
};

struct up_seg {
    struct up_seg *next;
    uint8_t *data;
    size_t len;
    uint64_t first, last, epoch;
    uint32_t nrecords;
    uint32_t *tags;
    size_t ntags;
    int64_t oldest_us; /* when its first record arrived */
};

enum obj_state { OBJ_NEW, OBJ_PROBING, OBJ_READY };

struct up_obj {
    struct wal_uploader *u;
    struct up_obj *hnext;
    uint8_t id[WAL_OBJECT_ID_BYTES];
    char *cls, *name;
    size_t name_len;
    char prefix[128];
    enum obj_state state;
    bool has_meta;
    bool busy;     /* a request in flight */
    bool queued;   /* in the runnable FIFO or the delayed list */
    uint64_t store_lsn; /* the newest lsn the store holds */
    int64_t last_used_us; /* the last record, snapshot or idle note */
    int64_t created_us;   /* commit time of lsn 1, when this process saw it */
    uint64_t db_bytes;  /* database size after the newest record */
    /* Snapshots: what the store holds, and the one in the making. */
    uint64_t snap_lsn, snap_bytes, since_snap_bytes;
    uint64_t snap_asked_ms; /* when one was asked for (0: not asked) */
    char *snap_path;        /* handed over, waiting for its records to be in the store */
    uint64_t snap_path_lsn;

    struct wal_seg_builder b;
    int64_t b_started_us;
    uint32_t *tags;
    size_t ntags, tags_cap;
    struct up_obj *open_next; /* FIFO of objects with an open builder */
    bool in_open;

    struct up_seg *q_head, **q_tail;
    unsigned failures;
    uint64_t retry_at_ms;
    struct up_obj *run_next;
};

struct wal_uploader {
    struct wal_upload_config cfg;
    uv_thread_t thread;
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t tick;
    struct wal_store *store;
    ZSTD_CCtx *zc;

    pthread_mutex_t mu;
    struct up_in *in_head, **in_tail;
    bool stop_requested;
    unsigned stop_wait_ms;
    uint64_t stop_deadline_ms;
    bool stopping;

    struct up_obj **buckets;
    size_t nbuckets, count;
    struct up_obj *open_head, **open_tail;
    struct up_obj *run_head, **run_tail;
    struct up_obj *delayed; /* unordered; scanned each tick */
    unsigned inflight;
    bool down;

    _Atomic uint64_t n_in, n_uploaded, n_segments, n_bytes, n_failures, n_snapshots;
    _Atomic int64_t lag_us;
    _Atomic bool store_down;
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void wal_object_prefix(char *out, size_t cap, const char *cls, const uint8_t id[WAL_OBJECT_ID_BYTES])
{
    char hex[33];
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", id[i]);
    snprintf(out, cap, "%s/%s/", cls, hex);
}

/* ---- the object table ------------------------------------------------------ */

static size_t id_hash(const uint8_t id[16])
{
    size_t h;
    memcpy(&h, id, sizeof(h));
    return h;
}

static struct up_obj *obj_get(struct wal_uploader *u, const uint8_t id[16], struct up_in *in)
{
    struct up_obj **b = &u->buckets[id_hash(id) & (u->nbuckets - 1)];
    for (struct up_obj *o = *b; o != NULL; o = o->hnext)
        if (memcmp(o->id, id, 16) == 0) {
            o->last_used_us = now_us();
            return o;
        }
    if (u->count + 1 > u->nbuckets) {
        size_t n = u->nbuckets * 2;
        struct up_obj **nb = sdk_xcalloc(n, sizeof(*nb));
        for (size_t i = 0; i < u->nbuckets; i++)
            for (struct up_obj *o = u->buckets[i], *next; o != NULL; o = next) {
                next = o->hnext;
                o->hnext = nb[id_hash(o->id) & (n - 1)];
                nb[id_hash(o->id) & (n - 1)] = o;
            }
        free(u->buckets);
        u->buckets = nb;
        u->nbuckets = n;
        b = &u->buckets[id_hash(id) & (u->nbuckets - 1)];
    }
    struct up_obj *o = sdk_xcalloc(1, sizeof(*o));
    o->u = u;
    o->last_used_us = now_us();
    memcpy(o->id, id, 16);
    o->cls = sdk_xstrdup(in->cls);
    o->name = sdk_xstrndup(in->name, in->name_len);
    o->name_len = in->name_len;
    wal_object_prefix(o->prefix, sizeof(o->prefix), o->cls, o->id);
    o->q_tail = &o->q_head;
    o->hnext = *b;
    *b = o;
    u->count++;
    return o;
}

/* ---- scheduling ------------------------------------------------------------ */

static void pump(struct wal_uploader *u);

static bool snap_ready(const struct up_obj *o)
{
    return o->snap_path != NULL && o->state == OBJ_READY && o->store_lsn >= o->snap_path_lsn;
}

static bool has_work(const struct up_obj *o) { return o->q_head != NULL || snap_ready(o); }

static void make_runnable(struct wal_uploader *u, struct up_obj *o)
{
    if (o->busy || o->queued || !has_work(o))
        return;
    o->queued = true;
    o->run_next = NULL;
    *u->run_tail = o;
    u->run_tail = &o->run_next;
}

static void note_success(struct wal_uploader *u, struct up_obj *o)
{
    o->failures = 0;
    if (u->down) {
        u->down = false;
        atomic_store(&u->store_down, false);
        wal_logf(2, "msg=\"object store reachable again: uploads catch up\" store=%s", wal_store_url(u->store));
    }
}

static void note_failure(struct wal_uploader *u, struct up_obj *o, const char *key, const char *err)
{
    atomic_fetch_add(&u->n_failures, 1);
    if (!u->down) {
        u->down = true;
        atomic_store(&u->store_down, true);
        wal_logf(1, "msg=\"upload failed: retrying with backoff; the journal keeps the records\" store=%s key=%s "
                    "err=\"%s\"",
                 wal_store_url(u->store), key, err);
    }
    uint64_t wait = (uint64_t)RETRY_MIN_MS << (o->failures < 5 ? o->failures : 5);
    if (wait > RETRY_MAX_MS)
        wait = RETRY_MAX_MS;
    o->failures++;
    o->retry_at_ms = uv_now(&u->loop) + wait / 2 + (uint64_t)random() % (wait / 2 + 1);
    o->queued = true;
    o->run_next = u->delayed;
    u->delayed = o;
}

/* ---- cutting segments --------------------------------------------------------- */

static void cut(struct wal_uploader *u, struct up_obj *o)
{
    if (o->b.n == 0)
        return;
    struct up_seg *s = sdk_xcalloc(1, sizeof(*s));
    s->first = o->b.first_lsn;
    s->last = o->b.last_lsn;
    s->epoch = o->b.epoch;
    s->nrecords = o->b.n;
    s->oldest_us = o->b_started_us;
    s->data = wal_seg_finish(&o->b, &s->len);
    s->tags = o->tags;
    s->ntags = o->ntags;
    o->tags = NULL;
    o->ntags = o->tags_cap = 0;
    *o->q_tail = s;
    o->q_tail = &s->next;
    make_runnable(u, o);
}

static void add_record(struct wal_uploader *u, struct up_in *in)
{
    struct wal_record h;
    const uint8_t *frame;
    size_t flen, rlen;
    if (in->packed && wal_record_packed_header(in->data, in->len, &h, &frame, &flen, &rlen) != 0) {
        wal_logf(0, "msg=\"bug: uploader got a packed record it can not read; dropped\"");
        return;
    }
    if (!in->packed)
        wal_record_peek_header(in->data, &h);
    struct up_obj *o = obj_get(u, h.object_id, in);
    if (o->b.n > 0 && (h.lsn != o->b.last_lsn + 1 || h.epoch != o->b.epoch))
        cut(u, o);
    if ((in->packed ? wal_seg_add_packed(&o->b, in->data, in->len) : wal_seg_add(&o->b, u->zc, in->data, in->len)) !=
        0) {
        /* Out of order: a bug upstream. Keep the pin (the journal keeps the
         * record) rather than upload a gap. */
        wal_logf(0, "msg=\"bug: uploader got a record out of order; it stays in the journal\" object=%s lsn=%llu",
                 o->prefix, (unsigned long long)h.lsn);
        return;
    }
    atomic_fetch_add(&u->n_in, 1);
    o->db_bytes = (uint64_t)h.db_pages * h.page_size;
    if (h.lsn == 1)
        o->created_us = h.commit_us;
    if (o->ntags == o->tags_cap) {
        o->tags_cap = o->tags_cap ? o->tags_cap * 2 : 16;
        o->tags = sdk_xrealloc(o->tags, o->tags_cap * sizeof(*o->tags));
    }
    o->tags[o->ntags++] = in->tag;
    if (o->b.n == 1) {
        o->b_started_us = now_us();
        if (!o->in_open) {
            o->in_open = true;
            o->open_next = NULL;
            *u->open_tail = o;
            u->open_tail = &o->open_next;
        }
    }
    if (o->b.raw_bytes >= u->cfg.segment_bytes)
        cut(u, o);
}

/* A dirty object closed for idleness gets a snapshot: its next rebuild or
 * restore reads one file instead of its segments since the last one. */
static void on_idle(struct wal_uploader *u, struct up_in *in)
{
    struct up_obj *o = obj_get(u, in->id, in);
    bool dirty = o->b.n > 0 || o->q_head != NULL || o->store_lsn > o->snap_lsn;
    uint64_t now = uv_now(&u->loop);
    if (!dirty || o->snap_path != NULL || u->cfg.want_snapshot == NULL ||
        (o->snap_asked_ms != 0 && now - o->snap_asked_ms < SNAPSHOT_RETRY_MS))
        return;
    o->snap_asked_ms = now;
    u->cfg.want_snapshot(u->cfg.arg, o->cls, o->name, o->name_len);
}

static void add_snapshot(struct wal_uploader *u, struct up_in *in)
{
    struct up_obj *o = obj_get(u, in->id, in);
    if (o->snap_path != NULL) {
        /* The newer one replaces it. */
        unlink(o->snap_path);
        free(o->snap_path);
    }
    o->snap_path = in->snap_path;
    o->snap_path_lsn = in->snap_lsn;
    in->snap_path = NULL;
    make_runnable(u, o);
}

/* Cuts segments whose first record is older than the interval; all of them
 * when stopping. The open FIFO is in builder start order. */
static void cut_due(struct wal_uploader *u, bool all)
{
    int64_t due = now_us() - (int64_t)u->cfg.segment_interval_ms * 1000;
    while (u->open_head != NULL) {
        struct up_obj *o = u->open_head;
        if (o->b.n > 0 && !all && o->b_started_us > due)
            break;
        u->open_head = o->open_next;
        if (u->open_head == NULL)
            u->open_tail = &u->open_head;
        o->in_open = false;
        cut(u, o);
    }
}

/* ---- requests ----------------------------------------------------------------- */

static void request_end(struct up_obj *o, struct wal_store_result *res, const char *key)
{
    struct wal_uploader *u = o->u;
    o->busy = false;
    u->inflight--;
    if (res->status == -ECANCELED)
        return; /* stopping: the journal keeps the records */
    if (res->status != 0)
        note_failure(u, o, key, res->err);
    else
        note_success(u, o);
    make_runnable(u, o);
    pump(u);
}

static void on_probe(void *arg, struct wal_store_result *res)
{
    struct up_obj *o = arg;
    if (res->status == 0) {
        size_t plen = strlen(o->prefix);
        for (size_t i = 0; i < res->nentries; i++) {
            const char *k = res->entries[i].key + plen;
            uint64_t first, last, epoch, lsn;
            if (strcmp(k, "meta.json") == 0) {
                o->has_meta = true;
            } else if (strncmp(k, "segments/", 9) == 0 && wal_seg_key_parse(k, &first, &last, &epoch)) {
                if (last > o->store_lsn)
                    o->store_lsn = last;
            } else if (strncmp(k, "snapshots/", 10) == 0 && wal_snapshot_key_parse(k, &lsn) && lsn > o->snap_lsn) {
                o->snap_lsn = lsn;
                o->snap_bytes = res->entries[i].size;
            }
        }
        /* What a rebuild would download past the newest snapshot. */
        for (size_t i = 0; i < res->nentries; i++) {
            const char *k = res->entries[i].key + plen;
            uint64_t first, last, epoch;
            if (strncmp(k, "segments/", 9) == 0 && wal_seg_key_parse(k, &first, &last, &epoch) &&
                last > o->snap_lsn)
                o->since_snap_bytes += res->entries[i].size;
        }
        o->state = OBJ_READY;
    } else {
        o->state = OBJ_NEW;
    }
    request_end(o, res, o->prefix);
}

struct meta_put {
    struct up_obj *o;
    char *body;
    char key[160];
};

static void on_meta(void *arg, struct wal_store_result *res)
{
    struct meta_put *m = arg;
    struct up_obj *o = m->o;
    if (res->status == 0)
        o->has_meta = true;
    request_end(o, res, m->key);
    free(m->body);
    free(m);
}

/* A snapshot is due when a rebuild would download more segment bytes than
 * the database (or its last snapshot) is big: it bounds what a restore reads
 * to about twice the object's size. */
static void maybe_ask_snapshot(struct wal_uploader *u, struct up_obj *o)
{
    uint64_t size = o->snap_bytes != 0 ? o->snap_bytes : o->db_bytes;
    if (size < u->cfg.snapshot_min_bytes)
        size = u->cfg.snapshot_min_bytes;
    uint64_t now = uv_now(&u->loop);
    if (o->since_snap_bytes <= size || o->snap_path != NULL || u->cfg.want_snapshot == NULL ||
        (o->snap_asked_ms != 0 && now - o->snap_asked_ms < SNAPSHOT_RETRY_MS))
        return;
    o->snap_asked_ms = now;
    u->cfg.want_snapshot(u->cfg.arg, o->cls, o->name, o->name_len);
}

struct snap_put {
    struct up_obj *o;
    uv_work_t work;
    char *path;
    int rv;
    uint8_t *data;
    size_t len;
    uint64_t lsn;
    char key[200];
};

static void on_snapshot(void *arg, struct wal_store_result *res)
{
    struct snap_put *p = arg;
    struct up_obj *o = p->o;
    if (res->status == 0) {
        if (p->lsn > o->snap_lsn) {
            o->snap_lsn = p->lsn;
            o->snap_bytes = p->len;
            o->since_snap_bytes = 0;
        }
        atomic_fetch_add(&o->u->n_snapshots, 1);
        if (o->snap_path != NULL && o->snap_path_lsn == p->lsn) {
            unlink(o->snap_path);
            free(o->snap_path);
            o->snap_path = NULL;
        }
        o->snap_asked_ms = 0;
    }
    request_end(o, res, p->key);
    free(p->data);
    free(p->path);
    free(p);
}

static void snap_compress_work(uv_work_t *req)
{
    struct snap_put *p = req->data;
    p->rv = wal_snapshot_compress(p->path, &p->data, &p->len);
}

/* Back on the loop: upload what the thread pool compressed. A file that can
 * not be read is dropped: the next snapshot replaces it. */
static void snap_compress_done(uv_work_t *req, int status)
{
    struct snap_put *p = req->data;
    struct up_obj *o = p->o;
    struct wal_uploader *u = o->u;
    if (status == 0 && p->rv == 0 && p->lsn > o->snap_lsn && !u->stopping) {
        wal_store_put(u->store, p->key, p->data, p->len, on_snapshot, p);
        return;
    }
    if (p->rv != 0)
        wal_logf(1, "msg=\"can not read a snapshot file: dropped\" file=%s err=\"%s\"", p->path, strerror(-p->rv));
    if (p->rv != 0 || p->lsn <= o->snap_lsn) {
        if (o->snap_path != NULL && o->snap_path_lsn == p->lsn) {
            unlink(o->snap_path);
            free(o->snap_path);
            o->snap_path = NULL;
        }
        o->snap_asked_ms = 0;
    }
    struct wal_store_result none = {0};
    request_end(o, &none, p->key);
    free(p->data);
    free(p->path);
    free(p);
}

/* Compresses the snapshot file (zstd, with a checksum) on the thread pool,
 * so a large database does not hold up the other objects' uploads, then
 * uploads it. */
static bool start_snapshot(struct wal_uploader *u, struct up_obj *o)
{
    struct snap_put *p = sdk_xcalloc(1, sizeof(*p));
    p->o = o;
    p->lsn = o->snap_path_lsn;
    p->path = sdk_xstrdup(o->snap_path);
    p->work.data = p;
    wal_snapshot_key(p->key, sizeof(p->key), o->prefix, p->lsn);
    uv_queue_work(&u->loop, &p->work, snap_compress_work, snap_compress_done);
    return true;
}

static void on_segment(void *arg, struct wal_store_result *res)
{
    struct up_obj *o = arg;
    struct wal_uploader *u = o->u;
    struct up_seg *s = o->q_head;
    char key[256];
    wal_seg_key(key, sizeof(key), o->prefix, s->first, s->last, s->epoch);
    if (res->status == 0) {
        o->q_head = s->next;
        if (o->q_head == NULL)
            o->q_tail = &o->q_head;
        if (s->last > o->store_lsn)
            o->store_lsn = s->last;
        atomic_fetch_add(&u->n_uploaded, s->nrecords);
        atomic_fetch_add(&u->n_segments, 1);
        atomic_fetch_add(&u->n_bytes, s->len);
        o->since_snap_bytes += s->len;
        u->cfg.uploaded(u->cfg.arg, o->id, s->last, s->tags, s->ntags);
        free(s->data);
        free(s);
        maybe_ask_snapshot(u, o);
    }
    request_end(o, res, key);
}

static void start_meta(struct wal_uploader *u, struct up_obj *o)
{
    struct meta_put *m = sdk_xcalloc(1, sizeof(*m));
    m->o = o;
    snprintf(m->key, sizeof(m->key), "%smeta.json", o->prefix);
    struct sdk_buf b = {0};
    char hex[33], when[64];
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", o->id[i]);
    /* From lsn 1's commit time when known, so that writing meta.json again
     * (a crash before the marker of lsn 1 was durable) writes the same bytes. */
    time_t t = o->created_us != 0 ? (time_t)(o->created_us / 1000000) : time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    sdk_buf_printf(&b, "{\"class\":");
    sdk_buf_json_str(&b, o->cls, strlen(o->cls));
    sdk_buf_printf(&b, ",\"name\":");
    sdk_buf_json_str(&b, o->name, o->name_len);
    sdk_buf_printf(&b, ",\"id\":\"%s\",\"created\":\"%s\"}\n", hex, when);
    size_t len;
    m->body = sdk_buf_steal(&b, &len);
    wal_store_put(u->store, m->key, m->body, len, on_meta, m);
}

/* Starts the object's next request; false if it has nothing to do now. */
static bool start_next(struct wal_uploader *u, struct up_obj *o)
{
    /* Stopping: past the deadline nothing new starts (the journal keeps the
     * records); snapshots, which take long and can be made again, not at all. */
    if (u->stopping && uv_now(&u->loop) >= u->stop_deadline_ms)
        return false;
    if (o->state == OBJ_NEW && o->q_head != NULL && o->q_head->first == 1) {
        /* A new object: its first activation found no history in the store,
         * so there is nothing to list; only meta.json to write. */
        o->state = OBJ_READY;
    }
    if (o->state == OBJ_NEW) {
        o->state = OBJ_PROBING;
        wal_store_list(u->store, o->prefix, on_probe, o);
        return true;
    }
    if (!o->has_meta) {
        start_meta(u, o);
        return true;
    }
    /* Segments the store already holds whole: nothing to upload. */
    while (o->q_head != NULL && o->q_head->last <= o->store_lsn) {
        struct up_seg *s = o->q_head;
        o->q_head = s->next;
        if (o->q_head == NULL)
            o->q_tail = &o->q_head;
        atomic_fetch_add(&u->n_uploaded, s->nrecords);
        u->cfg.uploaded(u->cfg.arg, o->id, s->last, s->tags, s->ntags);
        free(s->data);
        free(s);
    }
    if (o->q_head == NULL)
        return !u->stopping && snap_ready(o) && start_snapshot(u, o);
    struct up_seg *s = o->q_head;
    char key[256];
    wal_seg_key(key, sizeof(key), o->prefix, s->first, s->last, s->epoch);
    wal_store_put(u->store, key, s->data, s->len, on_segment, o);
    return true;
}

static void pump(struct wal_uploader *u)
{
    while (u->inflight < UPLOADS_MAX && u->run_head != NULL) {
        struct up_obj *o = u->run_head;
        u->run_head = o->run_next;
        if (u->run_head == NULL)
            u->run_tail = &u->run_head;
        o->queued = false;
        if (o->busy || !start_next(u, o))
            continue;
        o->busy = true;
        u->inflight++;
    }
}

/* ---- the thread ------------------------------------------------------------------ */

static void obj_free(struct up_obj *o)
{
    wal_seg_builder_free(&o->b);
    free(o->tags);
    free(o->cls);
    free(o->name);
    free(o);
}

/* Once a second: the upload lag (age of the oldest record not in the store),
 * and objects with nothing to do for OBJ_FORGET_US are forgotten (their next
 * record probes the store again), so memory follows the objects written to. */
static void lag_update(struct wal_uploader *u)
{
    int64_t oldest = 0, now = now_us();
    for (size_t i = 0; i < u->nbuckets; i++)
        for (struct up_obj **p = &u->buckets[i]; *p != NULL;) {
            struct up_obj *o = *p;
            int64_t t = o->q_head != NULL ? o->q_head->oldest_us : o->b.n > 0 ? o->b_started_us : 0;
            if (t != 0 && (oldest == 0 || t < oldest))
                oldest = t;
            if (t == 0 && !o->busy && !o->queued && !o->in_open && o->snap_path == NULL &&
                now - o->last_used_us > OBJ_FORGET_US) {
                *p = o->hnext;
                u->count--;
                obj_free(o);
                continue;
            }
            p = &o->hnext;
        }
    atomic_store(&u->lag_us, oldest != 0 ? now - oldest : 0);
}

static bool idle(const struct wal_uploader *u) { return u->inflight == 0 && u->run_head == NULL && u->delayed == NULL; }

static void finish(struct wal_uploader *u);

static void on_tick(uv_timer_t *t)
{
    struct wal_uploader *u = t->data;
    cut_due(u, u->stopping);
    uint64_t now = uv_now(&u->loop);
    struct up_obj **p = &u->delayed;
    while (*p != NULL) {
        struct up_obj *o = *p;
        if (o->retry_at_ms <= now || u->stopping) {
            *p = o->run_next;
            o->queued = false;
            if (!u->stopping || now < u->stop_deadline_ms)
                make_runnable(u, o);
        } else {
            p = &o->run_next;
        }
    }
    pump(u);
    static unsigned ticks;
    if (++ticks % 10 == 0)
        lag_update(u);
    if (u->stopping && (idle(u) || now >= u->stop_deadline_ms))
        finish(u);
}

static void on_wake(uv_async_t *a)
{
    struct wal_uploader *u = a->data;
    pthread_mutex_lock(&u->mu);
    struct up_in *in = u->in_head;
    u->in_head = NULL;
    u->in_tail = &u->in_head;
    bool stop = u->stop_requested;
    unsigned wait_ms = u->stop_wait_ms;
    pthread_mutex_unlock(&u->mu);
    while (in != NULL) {
        struct up_in *next = in->next;
        if (in->idle)
            on_idle(u, in);
        else if (in->snap_path != NULL)
            add_snapshot(u, in);
        else
            add_record(u, in);
        free(in->snap_path);
        free(in->data);
        free(in->cls);
        free(in);
        in = next;
    }
    if (stop && !u->stopping) {
        u->stopping = true;
        u->stop_deadline_ms = uv_now(&u->loop) + wait_ms;
        cut_due(u, true);
    }
    pump(u);
}

static void free_objects(struct wal_uploader *u)
{
    for (size_t i = 0; i < u->nbuckets; i++)
        for (struct up_obj *o = u->buckets[i], *next; o != NULL; o = next) {
            next = o->hnext;
            for (struct up_seg *s = o->q_head, *sn; s != NULL; s = sn) {
                sn = s->next;
                free(s->data);
                free(s->tags);
                free(s);
            }
            free(o->snap_path); /* the file stays: it is cleaned at start */
            obj_free(o);
        }
    free(u->buckets);
    u->buckets = NULL;
}

static void finish(struct wal_uploader *u)
{
    if (u->inflight > 0) {
        /* Past the deadline with requests in flight (a store that does not
         * answer): they end now; the journal keeps their records. */
        wal_store_cancel(u->store);
        return;
    }
    uv_timer_stop(&u->tick);
    uv_close((uv_handle_t *)&u->tick, NULL);
    uv_close((uv_handle_t *)&u->wake, NULL);
    wal_store_close(u->store);
    u->store = NULL;
}

static void thread_main(void *arg)
{
    struct wal_uploader *u = arg;
    pthread_setname_np(pthread_self(), "dobj-upload");
    uv_run(&u->loop, UV_RUN_DEFAULT);
}

int wal_uploader_start(struct wal_uploader **out, const struct wal_upload_config *cfg, char *err, size_t errlen)
{
    struct wal_uploader *u = sdk_xcalloc(1, sizeof(*u));
    u->cfg = *cfg;
    if (u->cfg.segment_bytes == 0)
        u->cfg.segment_bytes = 16u << 20;
    if (u->cfg.segment_interval_ms == 0)
        u->cfg.segment_interval_ms = 10000;
    uv_loop_init(&u->loop);
    int rv = wal_store_open(&u->store, &cfg->store, &u->loop, err, errlen);
    if (rv != 0) {
        uv_loop_close(&u->loop);
        free(u);
        return rv;
    }
    pthread_mutex_init(&u->mu, NULL);
    u->in_tail = &u->in_head;
    u->open_tail = &u->open_head;
    u->run_tail = &u->run_head;
    u->nbuckets = 1024;
    u->buckets = sdk_xcalloc(u->nbuckets, sizeof(*u->buckets));
    u->zc = ZSTD_createCCtx();
    uv_async_init(&u->loop, &u->wake, on_wake);
    u->wake.data = u;
    uv_timer_init(&u->loop, &u->tick);
    u->tick.data = u;
    uv_timer_start(&u->tick, on_tick, TICK_MS, TICK_MS);
    if (uv_thread_create(&u->thread, thread_main, u) != 0) {
        snprintf(err, errlen, "uploader: can not start its thread");
        return -EAGAIN;
    }
    *out = u;
    return 0;
}

/* An inbox entry about object cls/name (the names copied in one block). */
static struct up_in *in_new(const char *cls, const char *name, size_t name_len)
{
    size_t cl = strlen(cls);
    struct up_in *in = sdk_xcalloc(1, sizeof(*in));
    in->cls = sdk_xmalloc(cl + 1 + name_len + 1);
    memcpy(in->cls, cls, cl + 1);
    in->name = in->cls + cl + 1;
    memcpy(in->name, name, name_len);
    in->name[name_len] = '\0';
    in->name_len = name_len;
    return in;
}

static void in_push(struct wal_uploader *u, struct up_in *in)
{
    pthread_mutex_lock(&u->mu);
    bool was_empty = u->in_head == NULL;
    *u->in_tail = in;
    u->in_tail = &in->next;
    pthread_mutex_unlock(&u->mu);
    if (was_empty)
        uv_async_send(&u->wake);
}

void wal_uploader_submit(struct wal_uploader *u, const char *cls, const char *name, size_t name_len, uint8_t *rec,
                         size_t len, bool packed, uint32_t tag)
{
    struct up_in *in = in_new(cls, name, name_len);
    in->data = rec;
    in->len = len;
    in->packed = packed;
    in->tag = tag;
    in_push(u, in);
}

static void enqueue_about(struct wal_uploader *u, const uint8_t id[WAL_OBJECT_ID_BYTES], const char *cls,
                          const char *name, size_t name_len, uint64_t lsn, char *path, bool idle)
{
    struct up_in *in = in_new(cls, name, name_len);
    memcpy(in->id, id, sizeof(in->id));
    in->snap_path = path;
    in->snap_lsn = lsn;
    in->idle = idle;
    in_push(u, in);
}

void wal_uploader_snapshot(struct wal_uploader *u, const uint8_t id[WAL_OBJECT_ID_BYTES], const char *cls,
                           const char *name, size_t name_len, uint64_t lsn, char *path)
{
    enqueue_about(u, id, cls, name, name_len, lsn, path, false);
}

void wal_uploader_idle(struct wal_uploader *u, const uint8_t id[WAL_OBJECT_ID_BYTES], const char *cls,
                       const char *name, size_t name_len)
{
    enqueue_about(u, id, cls, name, name_len, 0, NULL, true);
}

void wal_uploader_stats(struct wal_uploader *u, struct wal_upload_stats *out)
{
    out->records_in = atomic_load(&u->n_in);
    out->records_uploaded = atomic_load(&u->n_uploaded);
    out->segments_uploaded = atomic_load(&u->n_segments);
    out->bytes_uploaded = atomic_load(&u->n_bytes);
    out->failures = atomic_load(&u->n_failures);
    out->snapshots = atomic_load(&u->n_snapshots);
    out->records_pending = out->records_in - out->records_uploaded;
    out->lag_us = atomic_load(&u->lag_us);
    out->store_down = atomic_load(&u->store_down);
}

void wal_uploader_stop(struct wal_uploader *u, unsigned wait_ms)
{
    pthread_mutex_lock(&u->mu);
    u->stop_requested = true;
    u->stop_wait_ms = wait_ms;
    pthread_mutex_unlock(&u->mu);
    uv_async_send(&u->wake);
    uv_thread_join(&u->thread);
}

void wal_uploader_destroy(struct wal_uploader *u)
{
    /* Records that came in after the stop were never added. */
    for (struct up_in *in = u->in_head, *next; in != NULL; in = next) {
        next = in->next;
        free(in->snap_path);
        free(in->data);
        free(in->cls);
        free(in);
    }
    free_objects(u);
    ZSTD_freeCCtx(u->zc);
    uv_loop_close(&u->loop);
    pthread_mutex_destroy(&u->mu);
    free(u);
}
