/*
 * leader.c: an object's leader in a cluster, on the object's shard. It wraps
 * replicate/quorum.c's repl_leader for one actor:
 *
 *   start     a new epoch, registered so replicas' answers reach this shard;
 *             the actor's events wait (rt_actor_recovering)
 *   recovered the chosen durable state: the database file is rebuilt from
 *             it on the thread pool (a file this process left at a durable
 *             lsn is rolled forward; otherwise object storage up to the base,
 *             then the records), then the actor opens it and writes the
 *             barrier (rt_actor_recovered)
 *   durable   the actor's outputs up to lsn leave the gate; the records go to
 *             object storage, which reports back (rt_leader_on_uploaded)
 *   deposed   outputs not durable get 503, the file is discarded
 *             (rt_actor_deposed); the next event starts a new leader
 *
 * The core calls back from inside its calls and must not be called from its
 * callbacks: they only note what happened, and `after()` acts on it once the
 * core has returned.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime.h"
#include "wal.h"

#define TICK_MS 25
/* Times a leader refused before serving tries a higher epoch. */
#define RETRIES_MAX 3

struct rt_leader {
    struct repl_leader *core;
    struct rt_shard *s;
    struct rt_actor *a;
    uint8_t id[16];
    char *cls;
    char *name; /* "class/name" */
    size_t name_len;
    struct repl_epoch epoch;
    uint64_t durable, released, released_round;
    uint64_t counted_to; /* records after this one were appended here: in the shard's records_inflight */
    bool deposed, preparing, freed, recovered;
    bool round_wanted;          /* a read in this loop turn needs a round */
    bool flush_wanted;          /* records appended in this loop turn */
    bool dirty;                 /* on the shard's leaders_dirty list */
    struct rt_leader *dirty_next;
    bool ticking;               /* on the shard's leaders_ticking list */
    struct rt_leader *ticking_next;
    uint64_t round, confirmed;  /* the next round to start; the confirmed one */
    unsigned retries;
    enum repl_depose_reason deposed_why;
    struct repl_epoch higher;
    struct rt_placement place; /* from the cluster file loaded when its core started */
    bool moved;         /* deposed: its placement changed before it served (a membership change) */
    bool handing_over;  /* its placement changed: it lets go once its records are durable */
    uint64_t handing_since; /* loop time the hand-over began */
    char why[256];
    struct rt_leader *prev, *next;
};

struct prep {
    uv_work_t req;
    struct rt_leader *l;
    const struct rt_config *c;
    char cls[RT_CLASS_NAME_MAX + 1];
    char path[4096];
    uint64_t base, last;
    uint64_t base_origin; /* packed, as files stamp it */
    struct repl_rec **recs;
    size_t n;
    int rv;
    char err[512];
};

/* The seen epoch carried from a deposed leader to the next, per shard. */
static _Thread_local struct repl_epoch seen_epoch;

static void after(struct rt_leader *l);
static void on_round_check(uv_check_t *h);

/* ---- the core's callbacks: note only ------------------------------------ */

static void on_send(void *arg, const struct repl_msg *m)
{
    struct rt_leader *l = arg;
    struct repl_msg x = *m;
    if (m->type == REPL_MSG_PREPARE || m->type == REPL_MSG_APPEND) {
        x.name = l->name;
        x.name_len = (uint16_t)l->name_len;
    }
    rt_cluster_send(&x);
}

static void prep_work(uv_work_t *req);
static void prep_done(uv_work_t *req, int status);

static void on_recovered(void *arg, uint64_t base, struct repl_epoch base_origin, struct repl_rec *const *recs,
                         size_t n)
{
    struct rt_leader *l = arg;
    struct prep *p = sdk_xcalloc(1, sizeof(*p));
    p->l = l;
    p->c = l->s->config;
    snprintf(p->cls, sizeof(p->cls), "%s", l->cls);
    const char *path = rt_actor_close_for_recovery(l->s, l->a);
    snprintf(p->path, sizeof(p->path), "%s", path);
    p->base = base;
    p->last = base + n;
    p->base_origin = rt_cluster_epoch_pack(base_origin);
    l->recovered = true;
    l->released = base;
    l->counted_to = base + n;
    p->n = n;
    p->recs = sdk_xmalloc((n ? n : 1) * sizeof(*p->recs));
    for (size_t i = 0; i < n; i++)
        p->recs[i] = repl_rec_ref(recs[i]); /* refs change on this thread only */
    p->req.data = p;
    l->preparing = true;
    uv_queue_work(&l->s->loop, &p->req, prep_work, prep_done);
}

static void on_durable(void *arg, uint64_t lsn)
{
    struct rt_leader *l = arg;
    if (lsn > l->durable)
        l->durable = lsn;
}

static void on_confirmed(void *arg, uint64_t round)
{
    struct rt_leader *l = arg;
    if (round > l->confirmed)
        l->confirmed = round;
}

static void on_deposed(void *arg, enum repl_depose_reason why, struct repl_epoch higher)
{
    struct rt_leader *l = arg;
    l->deposed = true;
    l->deposed_why = why;
    l->higher = higher;
    if (why == REPL_DEPOSED_EPOCH) {
        snprintf(l->why, sizeof(l->why),
                 "the object's leadership moved to another host (epoch %llu.%u); retry", (unsigned long long)higher.n,
                 higher.host);
        if (repl_epoch_cmp(higher, seen_epoch) > 0)
            seen_epoch = higher;
    } else {
        snprintf(l->why, sizeof(l->why),
                 "the object's write could not reach a quorum of its replicas in time; retry");
    }
}

static const struct repl_leader_io leader_io = {
    .send = on_send, .recovered = on_recovered, .durable = on_durable, .confirmed = on_confirmed,
    .deposed = on_deposed};

/* ---- rebuilding the file (thread pool) ---------------------------------- */

/* Whether a file at (lsn, origin) holds a prefix of the chosen history: the
 * record it holds last is the chosen one there (records name their history:
 * one leader makes one record per lsn). */
static bool on_chosen_history(const struct prep *p, int64_t lsn, uint64_t origin)
{
    if (lsn < 0 || (uint64_t)lsn < p->base || (uint64_t)lsn > p->last)
        return false;
    if ((uint64_t)lsn == p->base)
        return p->base == 0 || origin == p->base_origin;
    return origin == rt_cluster_epoch_pack(p->recs[(uint64_t)lsn - p->base - 1]->origin);
}

static void prep_work(uv_work_t *req)
{
    struct prep *p = req->data;
    int64_t have = -1;
    uint64_t origin = 0;
    if (access(p->path, F_OK) == 0 &&
        (rt_db_file_stamp(p->path, &have, &origin) != 0 || !on_chosen_history(p, have, origin))) {
        unlink(p->path); /* not on the chosen history, or not where its records start: rebuild */
        have = -1;
    }
    if (have < 0 && p->base > 0) {
        uint64_t lsn = 0;
        int rv = rt_fetch_object(p->c, p->cls, p->l->id, p->path, &lsn, p->err, sizeof(p->err));
        if (rv != 0 || lsn < p->base || lsn > p->last) {
            if (rv == 0)
                snprintf(p->err, sizeof(p->err), "object storage holds lsn %llu, the replicas start after %llu",
                         (unsigned long long)lsn, (unsigned long long)p->base);
            else if (rv == -ENOENT)
                snprintf(p->err, sizeof(p->err), "object storage does not hold the object's records up to lsn %llu",
                         (unsigned long long)p->base);
            unlink(p->path);
            p->rv = -EIO;
            return;
        }
        have = (int64_t)lsn;
    }
    if (have < 0) {
        if (rt_mkdir_parents(p->path) != 0) {
            snprintf(p->err, sizeof(p->err), "can not create the directory of %s: %s", p->path, strerror(errno));
            p->rv = -EIO;
            return;
        }
        have = 0;
    }
    if ((uint64_t)have == p->last)
        return;
    int fd = open(p->path, O_RDWR | O_CREAT, 0644);
    if (fd < 0) {
        snprintf(p->err, sizeof(p->err), "can not open %s: %s", p->path, strerror(errno));
        p->rv = -EIO;
        return;
    }
    struct wal_page *pages = NULL;
    uint32_t cap = 0;
    for (uint64_t lsn = (uint64_t)have + 1; lsn <= p->last && p->rv == 0; lsn++) {
        struct repl_rec *x = p->recs[lsn - p->base - 1];
        struct wal_record r;
        size_t used, rlen;
        uint8_t *raw = NULL;
        if (wal_record_unpack(x->data, x->len, &raw, &rlen) != 0 ||
            wal_record_decode_grow(raw, rlen, &r, &pages, &cap, &used) != 0 || r.lsn != lsn) {
            snprintf(p->err, sizeof(p->err), "record %llu from the replicas does not decode",
                     (unsigned long long)lsn);
            p->rv = -EIO;
        } else if ((p->rv = lsn == p->last ? wal_apply(fd, &r) : wal_apply_pages(fd, &r)) != 0) {
            snprintf(p->err, sizeof(p->err), "can not write %s: %s", p->path, strerror(-p->rv));
        }
        free(raw);
    }
    free(pages);
    if (p->rv == 0 && fsync(fd) != 0)
        p->rv = -errno;
    close(fd);
    if (p->rv != 0)
        unlink(p->path);
}

static void prep_done(uv_work_t *req, int status)
{
    (void)status;
    struct prep *p = req->data;
    struct rt_leader *l = p->l;
    for (size_t i = 0; i < p->n; i++)
        repl_rec_unref(p->recs[i]);
    free(p->recs);
    l->preparing = false;
    if (!l->freed && !l->deposed) {
        if (p->rv != 0)
            RT_WARN("msg=\"a new leader can not rebuild the object's database\" shard=%u object=%s err=\"%s\"",
                    l->s->id, l->name, p->err);
        rt_actor_recovered(l->s, l->a, p->rv, p->last, p->err);
    }
    free(p);
}

/* ---- lifecycle ---------------------------------------------------------- */

static void list_unlink(struct rt_leader *l)
{
    struct rt_shard *s = l->s;
    if (l->prev != NULL)
        l->prev->next = l->next;
    else if (s->leaders == l)
        s->leaders = l->next;
    if (l->next != NULL)
        l->next->prev = l->prev;
    l->prev = l->next = NULL;
}

/* Lets go of the core and the registry entry at once; the struct itself is
 * swept from the shard's list on the next tick (a loop over the list may be
 * standing on it) once no rebuild on the thread pool points at it. */
static void leader_free(struct rt_leader *l)
{
    if (l->freed)
        return;
    rt_cluster_unregister(l->id, l);
    repl_leader_destroy(l->core);
    l->core = NULL;
    l->freed = true;
}

static void sweep(struct rt_shard *s)
{
    for (struct rt_leader *l = s->leaders, *next; l != NULL; l = next) {
        next = l->next;
        if (l->freed && !l->preparing && !l->dirty && !l->ticking) {
            list_unlink(l);
            free(l->name);
            free(l->cls);
            free(l);
        }
    }
}

/* (Re)starts the core: recovery in `epoch` with the replica sets of
 * `place` (one cluster file's: leader.c never mixes two). */
static void core_start(struct rt_leader *l, const struct rt_placement *place, struct repl_epoch epoch)
{
    const struct rt_config *c = l->s->config;
    if (place != &l->place)
        l->place = *place;
    l->epoch = epoch;
    struct repl_leader_config lc = {.host = c->host_id, .replicas = l->place.replicas, .nreplicas = c->replicas,
                                    .quorum = c->quorum, .old_replicas = l->place.old, .nold = l->place.nold,
                                    .resend_ms = 200, .heartbeat_ms = 50, .commit_timeout_ms = c->commit_timeout_ms,
                                    .batch_recs_max = 256, .batch_bytes_max = 4u << 20, .window_recs = 4096,
                                    .io = &leader_io, .arg = l};
    memcpy(lc.object, l->id, 16);
    l->core = repl_leader_create(&lc, epoch, uv_now(&l->s->loop));
}

int rt_leader_start(struct rt_shard *s, struct rt_actor *a, const uint8_t id[16], const char *cls,
                    const char *name, size_t name_len, char *why, size_t whylen)
{
    const struct rt_config *c = s->config;
    struct rt_placement place;
    rt_cluster_place(id, &place);
    if (place.leader != c->host_id) {
        /* Its route changed since the front looked (a host came or went). */
        const struct router_host *h = rt_cluster_host(place.leader);
        snprintf(why, whylen, "host %u does not lead %s/%.*s now: host %u at http://%s:%u does; retry", c->host_id,
                 cls, (int)name_len, name, place.leader, h->client_host, h->client_port);
        return -1;
    }
    struct repl_epoch epoch = rt_cluster_epoch(seen_epoch, place.version);
    if (epoch.n == 0) {
        snprintf(why, whylen, "host %u's cluster file (version %llu) is older than the cluster's (version %llu): "
                 "it leads nothing until it loads the new one (SIGHUP); retry", c->host_id,
                 (unsigned long long)place.version, (unsigned long long)repl_epoch_version(seen_epoch));
        return -1;
    }
    struct rt_leader *l = sdk_xcalloc(1, sizeof(*l));
    l->s = s;
    l->a = a;
    memcpy(l->id, id, 16);
    l->cls = sdk_xstrdup(cls);
    l->name_len = strlen(cls) + 1 + name_len;
    l->name = sdk_xmalloc(l->name_len + 1);
    snprintf(l->name, l->name_len + 1, "%s/%.*s", cls, (int)name_len, name);
    l->counted_to = UINT64_MAX; /* nothing counted before recovery */
    l->next = s->leaders;
    if (s->leaders != NULL)
        s->leaders->prev = l;
    s->leaders = l;
    rt_cluster_register(id, s->id, l);
    rt_actor_recovering(a);
    core_start(l, &place, epoch);
    *rt_actor_leader_slot(a) = l;
    after(l);
    return 0;
}

void rt_leader_destroy(struct rt_leader *l)
{
    if (l != NULL)
        leader_free(l);
}

uint64_t rt_leader_epoch_packed(const struct rt_leader *l) { return rt_cluster_epoch_pack(l->epoch); }

/* Something for the end of this loop turn (on_round_check). */
static void mark_dirty(struct rt_leader *l)
{
    if (l->dirty)
        return;
    l->dirty = true;
    l->dirty_next = l->s->leaders_dirty;
    l->s->leaders_dirty = l;
    uv_check_start(&l->s->round_check, on_round_check);
}

uint64_t rt_leader_read_round(struct rt_leader *l)
{
    if (!l->round_wanted) {
        struct repl_leader_info li;
        repl_leader_get_info(l->core, &li);
        l->round = li.round + 1;
        l->round_wanted = true;
        mark_dirty(l);
    }
    return l->round;
}

/* The records up to `to` no longer count against the shard's bound. */
static void uncount(struct rt_leader *l, uint64_t to)
{
    if (to <= l->counted_to)
        return;
    atomic_fetch_sub_explicit(&l->s->records_inflight, (unsigned)(to - l->counted_to), memory_order_relaxed);
    l->counted_to = to;
}

/* A leader whose placement changed lets go once everything it released
 * or holds is durable and every read round it began is answered: the
 * object's file then holds only durable records, on the history any next
 * leader chooses, so the next leader here starts from it (no rebuild) and no
 * client gets a 503. Events that came meanwhile waited (rt_actor_hold):
 * they lead the object again, under the new placement. */
static bool hand_over(struct rt_leader *l)
{
    struct repl_leader_info li;
    repl_leader_get_info(l->core, &li);
    if (li.state != REPL_LEADER_ACTIVE || l->preparing || l->released < li.last || l->round_wanted ||
        l->released_round < li.round)
        return false;
    struct rt_actor *a = l->a;
    *rt_actor_leader_slot(a) = NULL;
    leader_free(l);
    rt_actor_handed_over(l->s, a);
    return true;
}

/* The tick visits l until it is idle again (on_tick). */
static void ticking_add(struct rt_leader *l)
{
    if (l->ticking)
        return;
    l->ticking = true;
    l->ticking_next = l->s->leaders_ticking;
    l->s->leaders_ticking = l;
}

/* Acts on what the core's callbacks noted. */
static void after(struct rt_leader *l)
{
    struct rt_shard *s = l->s;
    if (l->freed)
        return;
    ticking_add(l); /* every call into the core is followed by this one */
    if (l->handing_over && !l->deposed) {
        if (hand_over(l))
            return;
        if (uv_now(&s->loop) - l->handing_since >= s->config->commit_timeout_ms) {
            /* Not all durable or answered in time: it steps down as a
             * deposed leader does (503s, the file rebuilt next time). */
            l->deposed = true;
            l->moved = true;
            l->deposed_why = REPL_DEPOSED_TIMEOUT;
            snprintf(l->why, sizeof(l->why), "the object moves to the cluster's new membership and its last "
                     "writes could not be made durable in time; retry");
        }
    }
    if (l->confirmed > l->released_round && !l->deposed) {
        l->released_round = l->confirmed;
        rt_actor_confirmed(s, l->a, l->confirmed);
        if (l->freed)
            return; /* the actor went on and let go of it */
    }
    if (l->durable > l->released) {
        uint64_t from = l->released + 1, to = l->durable;
        l->released = to;
        uncount(l, to);
        rt_cluster_count_commits(to - from + 1);
        for (uint64_t lsn = from; lsn <= to; lsn++) {
            struct repl_rec *x = repl_leader_record(l->core, lsn);
            if (x != NULL)
                rt_durable_upload(l->cls, l->name + strlen(l->cls) + 1, l->name_len - strlen(l->cls) - 1,
                                  sdk_xmemdup(x->data, x->len), x->len, true, UINT32_MAX);
        }
        if (!l->deposed) {
            rt_actor_durable(s, l->a, to);
            return; /* the actor may have gone on (and even let go of this leader) */
        }
    }
    struct repl_epoch next = {0, 0};
    if (l->deposed && !l->moved && !l->recovered && l->deposed_why == REPL_DEPOSED_EPOCH &&
        l->retries < RETRIES_MAX && l->place.gen == rt_cluster_view_gen() &&
        (next = rt_cluster_epoch(l->higher, l->place.version)).n != 0) {
        /* Refused before it served anything: try again above the epoch that
         * refused it, in the same placement; the waiting events never
         * notice. */
        l->retries++;
        repl_leader_destroy(l->core);
        l->deposed = false;
        core_start(l, &l->place, next);
        after(l);
        return;
    }
    if (l->deposed) {
        struct repl_leader_info li;
        repl_leader_get_info(l->core, &li);
        uncount(l, li.last);
        struct rt_actor *a = l->a;
        char why[256];
        snprintf(why, sizeof(why), "%s", l->why);
        uint64_t durable = l->durable;
        *rt_actor_leader_slot(a) = NULL;
        leader_free(l);
        rt_actor_deposed(s, a, durable, why);
    }
}

int rt_leader_append(struct rt_leader *l, uint64_t lsn, uint8_t *rec, size_t len)
{
    /* Compressed once here, for all five replicas and their journals. */
    size_t bound = wal_record_pack_bound(len);
    struct repl_rec *x = repl_rec_create(lsn, l->epoch, NULL, (uint32_t)bound);
    x->len = (uint32_t)wal_record_pack(rec, len, x->data, bound);
    free(rec);
    atomic_fetch_add_explicit(&l->s->records_inflight, 1, memory_order_relaxed);
    int rv = repl_leader_append(l->core, x, uv_now(&l->s->loop));
    l->flush_wanted = true;
    mark_dirty(l);
    after(l);
    return rv;
}

void rt_leader_on_msg(struct rt_shard *s, struct rt_repl_msg *m)
{
    struct rt_leader *l = rt_cluster_leader_of(m->m.object, s->id);
    if (l != NULL && !l->freed) {
        repl_leader_receive(l->core, &m->m, uv_now(&s->loop));
        after(l);
    }
    repl_msg_release(&m->m);
    free(m);
}

void rt_leader_on_uploaded(struct rt_shard *s, struct rt_uploaded_msg *m)
{
    struct rt_leader *l = rt_cluster_leader_of(m->id, s->id);
    if (l != NULL && !l->freed) {
        repl_leader_uploaded(l->core, m->lsn);
        ticking_add(l); /* the replicas are to hear of the new base */
    }
    free(m);
}

/* On the uploader's thread: the leader here, if any, and the replica here,
 * if any, learn that records up to lsn are in object storage. */
void rt_cluster_uploaded(const uint8_t id[16], uint64_t lsn)
{
    rt_cluster_replica_uploaded(id, lsn);
    for (unsigned i = 0; i < rt_host.nshards; i++) {
        if (rt_cluster_leader_of(id, i) == NULL)
            continue;
        struct rt_uploaded_msg *m = sdk_xcalloc(1, sizeof(*m));
        m->msg.type = RT_MSG_UPLOADED;
        memcpy(m->id, id, 16);
        m->lsn = lsn;
        rt_shard_post(NULL, i, &m->msg);
    }
}

/* The end of a loop turn: the records of the turn go out, one message per
 * replica and leader, and one read round per leader that asked for one. */
static void on_round_check(uv_check_t *h)
{
    struct rt_shard *s = h->data;
    uv_check_stop(h);
    uint64_t now = uv_now(&s->loop);
    struct rt_leader *list = s->leaders_dirty;
    s->leaders_dirty = NULL;
    for (struct rt_leader *l = list, *next; l != NULL; l = next) {
        next = l->dirty_next;
        l->dirty = false;
        if (l->freed || !(l->round_wanted || l->flush_wanted))
            continue;
        if (l->flush_wanted) {
            l->flush_wanted = false;
            repl_leader_flush(l->core, now);
        }
        if (l->round_wanted) {
            l->round_wanted = false;
            if (repl_leader_read_round(l->core, now) != l->round)
                RT_WARN("msg=\"bug: a read round out of step\" shard=%u object=%s", s->id, l->name);
        }
        after(l);
    }
}

/* Ticks the leaders with something to time (resends, heartbeats, the
 * commit timeout, a hand-over). With many objects most leaders are idle, and
 * a tick that walked them all would cost the shard in proportion: the list
 * holds the ones called since they were last found idle (after() adds a
 * leader), and the tick drops those it finds idle. */
static void on_tick(uv_timer_t *t)
{
    struct rt_shard *s = t->data;
    uint64_t now = uv_now(&s->loop);
    sweep(s);
    struct rt_leader *list = s->leaders_ticking;
    s->leaders_ticking = NULL;
    /* They keep `ticking` meanwhile, so after() leaves their links alone. */
    for (struct rt_leader *l = list; l != NULL; l = l->ticking_next)
        if (!l->freed) {
            repl_leader_tick(l->core, now);
            after(l);
        }
    for (struct rt_leader *l = list, *next; l != NULL; l = next) {
        next = l->ticking_next;
        if (l->freed || (repl_leader_idle(l->core) && !l->handing_over && !l->preparing && !l->deposed)) {
            l->ticking = false; /* a freed one is swept next time */
        } else {
            l->ticking_next = s->leaders_ticking;
            s->leaders_ticking = l;
        }
    }
    unsigned n = 0;
    for (struct rt_leader *l = s->leaders_ticking; l != NULL; l = l->ticking_next)
        n++;
    atomic_store_explicit(&s->leaders_ticking_n, n, memory_order_relaxed);
}

static bool same_set(const uint32_t *a, unsigned na, const uint32_t *b, unsigned nb)
{
    if (na != nb)
        return false;
    for (unsigned i = 0; i < na; i++) {
        bool found = false;
        for (unsigned k = 0; k < nb && !found; k++)
            found = a[i] == b[k];
        if (!found)
            return false;
    }
    return true;
}

/* The cluster file was loaded again: leaders whose placement changed (who
 * leads, the replica set, joint or not) go. One still recovering starts
 * over under the new placement (or, if another host leads now, steps down:
 * its waiting events get 503); one that serves hands the object over
 * (hand_over). A joint leader whose change is done goes too: it would still
 * need a quorum of the old set, whose leaving hosts are going. */
void rt_leaders_reconfigured(struct rt_shard *s)
{
    const struct rt_config *c = s->config;
    for (struct rt_leader *l = s->leaders; l != NULL; l = l->next) {
        if (l->freed || l->deposed || l->handing_over)
            continue;
        struct rt_placement now;
        rt_cluster_place(l->id, &now);
        if (now.leader == c->host_id && same_set(now.replicas, c->replicas, l->place.replicas, c->replicas) &&
            same_set(now.old, now.nold, l->place.old, l->place.nold))
            continue;
        struct repl_epoch epoch = {0, 0};
        if (!l->recovered && now.leader == c->host_id &&
            (epoch = rt_cluster_epoch(seen_epoch, now.version)).n != 0) {
            repl_leader_destroy(l->core);
            core_start(l, &now, epoch);
        } else if (!l->recovered) {
            l->deposed = true;
            l->moved = true;
            l->deposed_why = REPL_DEPOSED_EPOCH;
            snprintf(l->why, sizeof(l->why), "the object moves to the cluster's new membership (version %llu); retry",
                     (unsigned long long)now.version);
        } else {
            l->handing_over = true;
            l->handing_since = uv_now(&s->loop);
            rt_actor_hold(l->a);
        }
        after(l);
    }
}

void rt_leaders_start(struct rt_shard *s)
{
    uv_timer_init(&s->loop, &s->leader_timer);
    s->leader_timer.data = s;
    uv_check_init(&s->loop, &s->round_check);
    s->round_check.data = s;
    if (rt_cluster_enabled())
        uv_timer_start(&s->leader_timer, on_tick, TICK_MS, TICK_MS);
}

void rt_leaders_stop(struct rt_shard *s)
{
    uv_timer_stop(&s->leader_timer);
    uv_close((uv_handle_t *)&s->leader_timer, NULL);
    uv_check_stop(&s->round_check);
    uv_close((uv_handle_t *)&s->round_check, NULL);
    for (struct rt_leader *l = s->leaders; l != NULL; l = l->next)
        if (!l->freed) {
            *rt_actor_leader_slot(l->a) = NULL;
            leader_free(l);
        }
    for (struct rt_leader *l = s->leaders; l != NULL; l = l->next) {
        l->preparing = false; /* the loop stops: a rebuild still queued never reports */
        l->ticking = false;
    }
    s->leaders_ticking = NULL;
    sweep(s);
}
