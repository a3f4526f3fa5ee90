/*
 * durable.c: the durability point, the one place that decides when an
 * object's committed records are durable and may release its output gate,
 * and where durable records go next: object storage.
 *
 * On a single host that is the host journal (replicate/): SQLite files run
 * with synchronous=OFF, every event's record goes to the journal thread, and
 * the journal's answer comes back to the actor's shard as one RT_MSG_DURABLE
 * per batch and shard. The quorum protocol of the cluster plugs in here.
 *
 * A durable record then goes to the uploader (wal/upload.c) with a second pin
 * on its journal segment. When its segment is in the store, the uploader says
 * so; an "uploaded" marker record goes into the journal, and once that marker
 * is durable the pins go back. So the journal drops a record only when its
 * database file is fsync'd (the actor's pin) and the store holds it, and
 * recovery knows from the markers which records still need uploading.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime.h"
#include "wal.h"

/* The journal route of markers: one past the shards. */
#define MARKER_ROUTE (rt_host.nshards)

static _Atomic uint64_t markers_written;

uint64_t rt_durable_markers(void) { return atomic_load(&markers_written); }

struct marker {
    uint32_t *tags;
    size_t ntags;
};

static void on_journal_done(void *arg, unsigned route, struct repl_entry *list)
{
    (void)arg;
    if (route == MARKER_ROUTE) {
        while (list != NULL) {
            atomic_fetch_add(&markers_written, 1);
            struct repl_entry *next = list->next;
            struct marker *m = list->owner;
            repl_journal_release(rt_host.journal, list->segment);
            for (size_t i = 0; i < m->ntags; i++)
                repl_journal_release(rt_host.journal, m->tags[i]);
            free(m->tags);
            free(m);
            free(list->data);
            free(list);
            list = next;
        }
        return;
    }
    struct rt_durable_msg *m = sdk_xcalloc(1, sizeof(*m));
    m->msg.type = RT_MSG_DURABLE;
    m->list = list;
    rt_shard_post(NULL, route, &m->msg);
}

/* On the uploader's thread. */
static void on_uploaded(void *arg, const uint8_t id[WAL_OBJECT_ID_BYTES], uint64_t lsn, uint32_t *tags, size_t ntags)
{
    (void)arg;
    if (rt_host.config->cluster != NULL) {
        /* No host journal: the leader tells the replicas instead. */
        free(tags);
        rt_cluster_uploaded(id, lsn);
        return;
    }
    struct wal_record r = {.lsn = lsn, .page_size = 4096, .flags = WAL_REC_UPLOADED, .commit_us = rt_now_us()};
    memcpy(r.object_id, id, sizeof(r.object_id));
    size_t len = wal_record_size(0, r.page_size);
    uint8_t *buf = sdk_xmalloc(len);
    wal_record_encode(&r, buf);
    struct marker *m = sdk_xmalloc(sizeof(*m));
    m->tags = tags;
    m->ntags = ntags;
    struct repl_entry *e = sdk_xcalloc(1, sizeof(*e));
    e->route = MARKER_ROUTE;
    e->owner = m;
    e->lsn = lsn;
    e->data = buf;
    e->len = len;
    repl_journal_submit(rt_host.journal, e);
}

/* On the uploader's thread: the object's shard takes the snapshot. */
static void on_want_snapshot(void *arg, const char *cls, const char *name, size_t name_len)
{
    (void)arg;
    const struct rt_class *c = rt_class_find(cls, strlen(cls));
    if (c == NULL)
        return; /* a class no longer loaded: its objects can not run */
    struct rt_snapshot_msg *m = sdk_xcalloc(1, sizeof(*m) + name_len + 1);
    m->msg.type = RT_MSG_SNAPSHOT;
    m->cls = c;
    m->hash = rt_object_hash(cls, name, name_len);
    m->name_len = name_len;
    memcpy(m->name, name, name_len);
    rt_shard_post(NULL, rt_shard_of(m->hash), &m->msg);
}

void rt_durable_snapshot(const uint8_t id[16], const char *cls, const char *name, size_t name_len, uint64_t lsn,
                         char *path)
{
    if (rt_host.uploader == NULL) {
        unlink(path);
        free(path);
        return;
    }
    wal_uploader_snapshot(rt_host.uploader, id, cls, name, name_len, lsn, path);
}

void rt_durable_idle(const uint8_t id[16], const char *cls, const char *name, size_t name_len)
{
    if (rt_host.uploader != NULL)
        wal_uploader_idle(rt_host.uploader, id, cls, name, name_len);
}

static void log_bridge(int level, const char *msg) { RT_LOG(level, "%s", msg); }

void rt_durable_init_logging(void)
{
    repl_set_logger(log_bridge);
    wal_set_logger(log_bridge);
}

int rt_durable_start(struct rt_config *c, uint32_t first_segment, uint32_t keep_from, char *err, size_t errlen)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/journal", c->data_dir);
    struct repl_journal_config jc = {
        .dir = dir,
        .segment_bytes = c->journal_segment_bytes,
        .no_uring = getenv("DOBJ_NO_URING") != NULL,
        .done_cb = on_journal_done,
        .done_arg = NULL,
    };
    /* In a cluster the replicas are the durability point (cluster.c). */
    int rv = c->cluster != NULL ? 0 : repl_journal_create(&rt_host.journal, &jc, first_segment, keep_from, err, errlen);
    if (rv != 0 || strcmp(c->store_url, "none") == 0)
        return rv;
    struct wal_upload_config uc = {
        .store = rt_store_config(c),
        .segment_bytes = c->segment_bytes,
        .segment_interval_ms = c->segment_interval_ms,
        .uploaded = on_uploaded,
        .want_snapshot = on_want_snapshot,
        .snapshot_min_bytes = c->snapshot_min_bytes,
    };
    rv = wal_uploader_start(&rt_host.uploader, &uc, err, errlen);
    if (rv != 0 && rt_host.journal != NULL) {
        repl_journal_stop(rt_host.journal);
        repl_journal_destroy(rt_host.journal);
        rt_host.journal = NULL;
    }
    return rv;
}

struct wal_store_config rt_store_config(const struct rt_config *c)
{
    return (struct wal_store_config){
        .url = c->store_url,
        .endpoint = c->store_endpoint,
        .region = c->store_region,
        .path_style = c->store_path_style,
        .access_key = c->store_access_key,
        .secret_key = c->store_secret_key,
        .timeout_ms = c->store_timeout_ms,
    };
}

void rt_durable_stop(void)
{
    /* The uploader first: its last markers go into the journal, which then
     * drains them with everything else. */
    if (rt_host.uploader != NULL)
        wal_uploader_stop(rt_host.uploader, 2000);
    if (rt_host.journal != NULL)
        repl_journal_stop(rt_host.journal);
}

void rt_durable_destroy(void)
{
    if (rt_host.uploader != NULL)
        wal_uploader_destroy(rt_host.uploader);
    rt_host.uploader = NULL;
    if (rt_host.journal != NULL)
        repl_journal_destroy(rt_host.journal);
    rt_host.journal = NULL;
}

void rt_durable_submit(struct rt_shard *s, struct rt_actor *a, uint64_t lsn, uint8_t *rec, size_t len)
{
    atomic_fetch_add_explicit(&s->records_inflight, 1, memory_order_relaxed);
    struct repl_entry *e = sdk_xcalloc(1, sizeof(*e));
    e->route = s->id;
    e->owner = a;
    e->lsn = lsn;
    e->data = rec;
    e->len = len;
    repl_journal_submit(rt_host.journal, e);
}

void rt_durable_upload(const char *cls, const char *name, size_t name_len, uint8_t *rec, size_t len, bool packed,
                       uint32_t segment)
{
    if (rt_host.uploader == NULL) {
        free(rec);
        return;
    }
    if (segment != UINT32_MAX) /* a journal segment: pinned until uploaded */
        repl_journal_pin(rt_host.journal, segment);
    wal_uploader_submit(rt_host.uploader, cls, name, name_len, rec, len, packed, segment);
}

void rt_durable_on_msg(struct rt_shard *s, struct rt_durable_msg *m)
{
    struct repl_entry *e = m->list;
    free(m);
    while (e != NULL) {
        struct repl_entry *next = e->next;
        atomic_fetch_sub_explicit(&s->records_inflight, 1, memory_order_relaxed);
        const char *cls, *name;
        size_t name_len;
        rt_actor_names(e->owner, &cls, &name, &name_len);
        rt_durable_upload(cls, name, name_len, e->data, e->len, false, e->segment);
        rt_actor_pin(e->owner, e->segment);
        rt_actor_durable(s, e->owner, e->lsn);
        free(e);
        e = next;
    }
}

void rt_durable_release(uint32_t segment)
{
    if (rt_host.journal != NULL)
        repl_journal_release(rt_host.journal, segment);
}

void rt_durable_stats(struct repl_stats *out)
{
    if (rt_host.journal != NULL)
        repl_journal_stats(rt_host.journal, out);
}

bool rt_upload_stats(struct wal_upload_stats *out)
{
    if (rt_host.uploader == NULL)
        return false;
    wal_uploader_stats(rt_host.uploader, out);
    return true;
}

const char *rt_durable_sqlite_synchronous(void) { return "OFF"; }
