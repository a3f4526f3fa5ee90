/*
 * cluster.c: a host of a cluster (--cluster). The peer transport's thread
 * (replicate/peer.c) is this host's replication thread:
 *
 *   - it runs the replica side of every object this host is a replica of
 *     (replicate/quorum.c's repl_replica, one per object, made on the first
 *     message for it), whose journal writes go to the replica journal
 *     DATA/replica (a second repl_journal; its entries are repl_op's) and
 *     whose answers wait for that journal's fsync;
 *   - it hands the answers meant for leaders (PROMISE, RECORDS, ACK) to the
 *     shard that runs the object's leader (leader.c), found in a registry the
 *     shards fill.
 *
 * At start the replica journal is read back into the replica cores
 * (repl_replica_replay), and DATA/objects is emptied: in a cluster a
 * leader's database file is a cache of the durable state (the replicas and
 * object storage), and one a crash may have torn must not be trusted.
 *
 * Compaction: every journal entry keeps its segment pinned. Once the
 * journal has moved CKPT_SEGMENTS segments past the last checkpoint, the
 * transport's thread writes a checkpoint: for every replica, its promise, its
 * base (a reset to it) and the records it holds, as ordinary entries. When
 * the checkpoint is synced, the pins on every older segment go back and the
 * journal deletes those files: replaying the checkpoint and what follows it
 * rebuilds the same state.
 *
 * Epochs: a leader's epoch is (n, host id) with n above every epoch it has
 * seen and never used twice by this host, also across restarts: n comes from
 * a counter whose floor is persisted (DATA/epoch, fsync'd) before any epoch
 * at or above it is used. n's top bits are the membership's version
 * (REPL_EPOCH_VERSION_SHIFT): a host that sees an epoch of a newer version
 * than its cluster file leads nothing until it loads the new file.
 *
 * Membership changes (router.h has the file's side). SIGHUP loads the
 * cluster file again; the new membership is a new view, swapped in whole
 * (readers on other threads keep the one they hold; views are freed at
 * exit). While the file names a `previous` membership, an object whose
 * replica set differs between the two is led with both sets (a joint
 * configuration, replicate.h): its new leader recovers from a quorum of the
 * old set and of the new, then replicates to both. Leaders whose placement
 * changed hand their object over at the reload (leader.c): once their
 * records are durable the object is led again, under the new view. Objects
 * nobody asks for are moved too: every second,
 * each host looks at the objects it holds replicas of; one that changed
 * replica set and whose state this host does not know to be durable under
 * the new version (repl_replica_info.commit_origin) is "moving", and its new
 * leader is asked to lead it (a wake, router/forward.c). Once every host
 * shows 0 moving (`dobj status`), every object's state is on a quorum of its
 * new replica set and the `previous` line can go.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime.h"
#include "wal.h"

#define REG_BUCKETS 4096
#define CKPT_SEGMENTS 2
#define EPOCH_RESERVE (1ull << 16) /* 2^20 restarts before a version's 2^36 epochs run out */
#define TICK_MS 20          /* the transport's timer: heartbeats, redials */
#define REPLICA_TICK_MS 100 /* replicas' timers: uploads after a dead leader */
#define MOVE_SCAN_MS 1000   /* moving objects counted, their leaders woken */
#define WAKES_MAX 256       /* per scan */

struct replica_obj {
    uint8_t id[16];
    char *name;
    struct repl_replica *core;
    struct replica_obj *next;
};

struct reg {
    uint8_t id[16];
    unsigned shard;
    struct rt_leader *leader;
    struct reg *next;
};

/* One membership, as a cluster file describes it (see the top). */
struct view {
    struct router_cluster all;  /* every host line: addresses */
    struct router_cluster cur;  /* the members: placement */
    struct router_cluster prev; /* the previous members (cur when not changing) */
    bool changing;              /* a `previous` line */
    uint64_t gen;               /* counts the views loaded */
    struct view *older;         /* freed at exit */
};

static struct {
    const struct rt_config *c;
    _Atomic(struct view *) view;
    pthread_mutex_t reload_mu;
    _Atomic uint64_t moving, wakes;
    size_t wake_cursor; /* the bucket the next round's wakes start at (transport thread) */
    uint64_t scans_moving; /* scans that found objects moving (transport thread) */
    struct repl_peers *peers;
    struct repl_journal *journal;
    /* the transport's thread only */
    struct replica_obj **objs;
    size_t nbuckets, count;
    /* the registry: written by each leader's shard, read by the transport */
    pthread_mutex_t mu;
    struct reg *reg[REG_BUCKETS];
    size_t leading; /* entries in the registry */
    /* epochs */
    pthread_mutex_t epoch_mu;
    uint64_t epoch_next, epoch_floor;
    char epoch_path[4096];
    _Atomic uint64_t replica_ops, dropped_msgs;
    /* compaction, on the transport's thread */
    uint32_t *held;          /* pins we hold per segment, from held_base */
    uint32_t held_base, held_n;
    uint32_t ckpt_segment;   /* the first segment of the last checkpoint */
    bool ckpt_running;
    _Atomic uint64_t checkpoints;
    _Atomic uint64_t commits;
    uint64_t started_ms; /* on the transport's clock */
    _Atomic size_t replicating; /* C.count, for other threads */
} C = {.mu = PTHREAD_MUTEX_INITIALIZER, .epoch_mu = PTHREAD_MUTEX_INITIALIZER,
       .reload_mu = PTHREAD_MUTEX_INITIALIZER};

bool rt_cluster_enabled(void) { return C.peers != NULL; }

static size_t id_bucket(const uint8_t id[16], size_t n)
{
    uint64_t h;
    memcpy(&h, id, sizeof(h));
    return (size_t)(h & (n - 1));
}

/* ---- placement ---------------------------------------------------------- */

static struct view *view(void) { return atomic_load_explicit(&C.view, memory_order_acquire); }

static void view_build(struct view *v, const struct router_cluster *file)
{
    v->all = *file;
    router_cluster_members(file, false, &v->cur);
    router_cluster_members(file, true, &v->prev);
    v->changing = file->nprevious > 0;
}

/* In the file loaded now, or else in an older one: a host that left can
 * still be named by a route taken just before. */
const struct router_host *rt_cluster_host(uint32_t id)
{
    for (struct view *v = view(); v != NULL; v = v->older) {
        const struct router_host *h = router_host_find(&v->all, id);
        if (h != NULL)
            return h;
    }
    return NULL;
}

const struct router_cluster *rt_cluster_hosts(void) { return &view()->all; }

const char *rt_cluster_role(const struct router_cluster *hosts, uint32_t id)
{
    struct view *v = (struct view *)((const char *)hosts - offsetof(struct view, all));
    if (router_host_find(&v->cur, id) == NULL)
        return "leaving";
    return v->changing && router_host_find(&v->prev, id) == NULL ? "joining" : "member";
}

uint64_t rt_cluster_version(void) { return C.peers != NULL ? view()->all.version : 0; }

static void replicas_in(const struct router_cluster *cl, const uint8_t id[16], uint32_t *replicas)
{
    unsigned rank[ROUTER_HOSTS_MAX];
    router_rank(cl, id, rank);
    router_replicas(cl, rank, C.c->replicas, replicas);
}


static bool set_has(const uint32_t *set, unsigned n, uint32_t id)
{
    for (unsigned i = 0; i < n; i++)
        if (set[i] == id)
            return true;
    return false;
}

/* The object's replica set under the previous membership while it differs
 * from the current one's (a joint configuration), else 0. */
static unsigned old_replicas_in(const struct view *v, const uint8_t id[16], uint32_t *old)
{
    if (!v->changing)
        return 0;
    uint32_t cur[REPL_REPLICAS_MAX];
    replicas_in(&v->cur, id, cur);
    replicas_in(&v->prev, id, old);
    for (unsigned i = 0; i < C.c->replicas; i++)
        if (!set_has(cur, C.c->replicas, old[i]))
            return C.c->replicas;
    return 0;
}


/* Live: this host; a peer whose connections are up both ways (we send on
 * ours, it answers on its own; a silent one is closed after peer_dead_ms:
 * that is the failure detector); and, for a moment after start, everyone
 * (connections take a few round trips to come up). */
bool rt_cluster_host_live(uint32_t id)
{
    if (id == C.c->host_id)
        return true;
    if (repl_peers_reachable(C.peers, id))
        return true;
    return repl_peers_now_ms(C.peers) - C.started_ms < C.c->peer_dead_ms;
}

static uint32_t route_in(const struct router_cluster *cl, const uint8_t id[16])
{
    unsigned rank[ROUTER_HOSTS_MAX];
    router_rank(cl, id, rank);
    uint32_t cand[ROUTER_HOSTS_MAX];
    unsigned n = router_candidates(cl, rank, C.c->replicas, cand);
    for (unsigned i = 0; i < n; i++)
        if (rt_cluster_host_live(cand[i]))
            return cand[i];
    return cand[0]; /* all down: a request there fails at once (503), as it should */
}

uint32_t rt_cluster_route(const uint8_t id[16]) { return route_in(&view()->cur, id); }

void rt_cluster_place(const uint8_t id[16], struct rt_placement *out)
{
    struct view *v = view();
    out->version = v->all.version;
    out->gen = v->gen;
    out->leader = route_in(&v->cur, id);
    replicas_in(&v->cur, id, out->replicas);
    out->nold = old_replicas_in(v, id, out->old);
}

uint64_t rt_cluster_view_gen(void) { return view()->gen; }

void rt_cluster_send_app(uint32_t to, const void *payload, size_t len)
{
    repl_peers_send_app(C.peers, to, payload, len);
}

static void on_app(void *arg, uint32_t from, const uint8_t *payload, uint32_t len)
{
    (void)arg;
    rt_front_forwarded(from, payload, len);
}

/* Whether this host is one of the object's replicas, under the current
 * membership or (while it changes) the previous one; 0 if not, else its
 * place in that set from 1 (replicas of a dead leader upload in that order). */
static unsigned replica_place(const uint8_t id[16])
{
    struct view *v = view();
    uint32_t reps[REPL_REPLICAS_MAX];
    replicas_in(&v->cur, id, reps);
    for (unsigned i = 0; i < C.c->replicas; i++)
        if (reps[i] == C.c->host_id)
            return i + 1;
    if (old_replicas_in(v, id, reps) > 0)
        for (unsigned i = 0; i < C.c->replicas; i++)
            if (reps[i] == C.c->host_id)
                return i + 1;
    return 0;
}

/* ---- epochs ------------------------------------------------------------- */

static int epoch_persist(uint64_t floor)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", C.epoch_path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -errno;
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%" PRIu64 "\n", floor);
    int rv = write(fd, buf, (size_t)n) == n && fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    if (rv == 0 && rename(tmp, C.epoch_path) != 0)
        rv = -errno;
    return rv;
}

static int epoch_load(char *err, size_t errlen)
{
    snprintf(C.epoch_path, sizeof(C.epoch_path), "%s/epoch", C.c->data_dir);
    uint64_t used = 0;
    FILE *f = fopen(C.epoch_path, "r");
    if (f != NULL) {
        if (fscanf(f, "%" SCNu64, &used) != 1) {
            fclose(f);
            snprintf(err, errlen, "%s: not a number; it holds the epochs this host may not use again", C.epoch_path);
            return -1;
        }
        fclose(f);
    }
    /* Everything below the old floor may have been used. */
    C.epoch_next = used + 1;
    C.epoch_floor = used + EPOCH_RESERVE;
    int rv = epoch_persist(C.epoch_floor);
    if (rv != 0) {
        snprintf(err, errlen, "can not write %s: %s", C.epoch_path, strerror(-rv));
        return -1;
    }
    return 0;
}

struct repl_epoch rt_cluster_epoch(struct repl_epoch seen, uint64_t version)
{
    if (repl_epoch_version(seen) > version)
        return (struct repl_epoch){0, 0}; /* the cluster moved on: this host's file is old */
    pthread_mutex_lock(&C.epoch_mu);
    uint64_t n = C.epoch_next > seen.n + 1 ? C.epoch_next : seen.n + 1;
    if (n < version << REPL_EPOCH_VERSION_SHIFT)
        n = version << REPL_EPOCH_VERSION_SHIFT;
    if (n >> REPL_EPOCH_VERSION_SHIFT != version) {
        /* Used up (2^36 epochs), or used under a newer version before. */
        static bool told;
        bool tell = !told;
        told = true;
        pthread_mutex_unlock(&C.epoch_mu);
        if (tell)
            RT_ERROR("msg=\"no epoch left for this cluster version: load a newer cluster file\" version=%llu "
                     "next=%llu", (unsigned long long)version, (unsigned long long)n);
        return (struct repl_epoch){0, 0};
    }
    C.epoch_next = n + 1;
    if (n >= C.epoch_floor) {
        C.epoch_floor = n + EPOCH_RESERVE;
        int rv = epoch_persist(C.epoch_floor);
        if (rv != 0) {
            RT_ERROR("msg=\"can not persist the epoch floor: stopping the host\" path=%s err=\"%s\"", C.epoch_path,
                     strerror(-rv));
            abort();
        }
    }
    pthread_mutex_unlock(&C.epoch_mu);
    return (struct repl_epoch){n, C.c->host_id};
}

uint64_t rt_cluster_epoch_pack(struct repl_epoch e) { return e.n << 16 | (e.host & 0xffff); }

/* ---- the registry of leaders -------------------------------------------- */

void rt_cluster_register(const uint8_t id[16], unsigned shard, struct rt_leader *l)
{
    struct reg *r = sdk_xcalloc(1, sizeof(*r));
    memcpy(r->id, id, 16);
    r->shard = shard;
    r->leader = l;
    pthread_mutex_lock(&C.mu);
    struct reg **b = &C.reg[id_bucket(id, REG_BUCKETS)];
    r->next = *b;
    *b = r;
    C.leading++;
    pthread_mutex_unlock(&C.mu);
}

void rt_cluster_unregister(const uint8_t id[16], struct rt_leader *l)
{
    pthread_mutex_lock(&C.mu);
    for (struct reg **pp = &C.reg[id_bucket(id, REG_BUCKETS)]; *pp != NULL; pp = &(*pp)->next)
        if ((*pp)->leader == l) {
            struct reg *r = *pp;
            *pp = r->next;
            free(r);
            C.leading--;
            break;
        }
    pthread_mutex_unlock(&C.mu);
}

/* The shard of the object's leader on this host, or -1. */
static int registry_shard(const uint8_t id[16])
{
    int shard = -1;
    pthread_mutex_lock(&C.mu);
    for (struct reg *r = C.reg[id_bucket(id, REG_BUCKETS)]; r != NULL; r = r->next)
        if (memcmp(r->id, id, 16) == 0) {
            shard = (int)r->shard;
            break;
        }
    pthread_mutex_unlock(&C.mu);
    return shard;
}

/* On the leader's shard (it alone adds and removes its entries). */
struct rt_leader *rt_cluster_leader_of(const uint8_t id[16], unsigned shard)
{
    struct rt_leader *l = NULL;
    pthread_mutex_lock(&C.mu);
    for (struct reg *r = C.reg[id_bucket(id, REG_BUCKETS)]; r != NULL; r = r->next)
        if (memcmp(r->id, id, 16) == 0 && r->shard == shard) {
            l = r->leader;
            break;
        }
    pthread_mutex_unlock(&C.mu);
    return l;
}

/* ---- replicas (on the transport's thread) -------------------------------- */

static void replica_send(void *arg, const struct repl_msg *m)
{
    (void)arg;
    repl_peers_send(C.peers, m);
}

static void replica_journal(void *arg, const struct repl_op *op)
{
    struct replica_obj *o = arg;
    size_t nlen = o->name != NULL ? strlen(o->name) : 0;
    size_t len = repl_op_size(op, nlen);
    uint8_t *buf = sdk_xmalloc(len);
    repl_op_encode(op, o->id, o->name, nlen, buf);
    struct repl_entry *e = sdk_xcalloc(1, sizeof(*e));
    e->owner = o;
    e->lsn = op->seq;
    e->data = buf;
    e->len = len;
    atomic_fetch_add(&C.replica_ops, 1);
    repl_journal_submit(C.journal, e);
}

struct uploaded {
    uint8_t id[16];
    uint64_t lsn;
};

static struct replica_obj *replica_find(const uint8_t id[16], bool create);

/* On the transport's thread: what the uploader stored (or, lsn 0, could not
 * take) reaches the object's replica. */
static void on_replica_uploaded(void *arg)
{
    struct uploaded *u = arg;
    struct replica_obj *o = C.objs != NULL ? replica_find(u->id, false) : NULL;
    if (o != NULL)
        repl_replica_uploaded(o->core, u->lsn, repl_peers_now_ms(C.peers));
    free(u);
}

static void post_uploaded(const uint8_t id[16], uint64_t lsn)
{
    struct uploaded *u = sdk_xmalloc(sizeof(*u));
    memcpy(u->id, id, 16);
    u->lsn = lsn;
    repl_peers_post(C.peers, on_replica_uploaded, u);
}

void rt_cluster_replica_uploaded(const uint8_t id[16], uint64_t lsn)
{
    if (C.peers != NULL)
        post_uploaded(id, lsn);
}

/* The leader has not said these durable records are in object storage for
 * a long time (it may be dead): this replica uploads them itself, so no
 * acknowledged write depends on the leader's host. Not when this host leads
 * the object (its uploader has them already). */
static void replica_upload(void *arg, uint64_t from, uint64_t to)
{
    struct replica_obj *o = arg;
    const char *slash = o->name != NULL ? strchr(o->name, '/') : NULL;
    if (slash == NULL || rt_host.uploader == NULL || registry_shard(o->id) >= 0) {
        post_uploaded(o->id, 0); /* not now: the core tries again after its timeout */
        return;
    }
    RT_INFO("msg=\"replica uploads records its leader has not\" object=%s from=%llu to=%llu", o->name,
            (unsigned long long)from, (unsigned long long)to);
    char cls[RT_CLASS_NAME_MAX + 1];
    snprintf(cls, sizeof(cls), "%.*s", (int)(slash - o->name), o->name);
    for (uint64_t lsn = from; lsn <= to; lsn++) {
        struct repl_rec *x = repl_replica_record(o->core, lsn);
        if (x == NULL)
            break;
        rt_durable_upload(cls, slash + 1, strlen(slash + 1), sdk_xmemdup(x->data, x->len), x->len, true, UINT32_MAX);
    }
}

static const struct repl_replica_io replica_io = {.send = replica_send, .journal = replica_journal,
                                                  .upload = replica_upload};

static struct replica_obj *replica_find(const uint8_t id[16], bool create)
{
    for (struct replica_obj *o = C.objs[id_bucket(id, C.nbuckets)]; o != NULL; o = o->next)
        if (memcmp(o->id, id, 16) == 0)
            return o;
    if (!create)
        return NULL;
    if (C.count + 1 > C.nbuckets) {
        size_t n = C.nbuckets * 2;
        struct replica_obj **b = sdk_xcalloc(n, sizeof(*b));
        for (size_t i = 0; i < C.nbuckets; i++)
            for (struct replica_obj *o = C.objs[i], *next; o != NULL; o = next) {
                next = o->next;
                o->next = b[id_bucket(o->id, n)];
                b[id_bucket(o->id, n)] = o;
            }
        free(C.objs);
        C.objs = b;
        C.nbuckets = n;
    }
    struct replica_obj *o = sdk_xcalloc(1, sizeof(*o));
    memcpy(o->id, id, 16);
    /* Replicas of a dead leader upload one after another, by rank: the
     * first usually does it alone. */
    uint64_t nth = replica_place(id) > 0 ? replica_place(id) : 1;
    struct repl_replica_config rc = {.host = C.c->host_id, .batch_recs_max = 256, .batch_bytes_max = 4u << 20,
                                     .upload_timeout_ms =
                                         rt_host.uploader != NULL ? C.c->replica_upload_timeout_ms * nth : 0,
                                     .io = &replica_io, .arg = o};
    memcpy(rc.object, id, 16);
    o->core = repl_replica_create(&rc);
    struct replica_obj **b = &C.objs[id_bucket(id, C.nbuckets)];
    o->next = *b;
    *b = o;
    C.count++;
    atomic_store(&C.replicating, C.count);
    return o;
}

/* ---- compaction (see the top) ------------------------------------------ */

/* The owner of a checkpoint's entries: no replica waits for them. */
static struct replica_obj ckpt_owner;

static void held_add(uint32_t segment)
{
    if (C.held_n == 0)
        C.held_base = segment;
    if (segment < C.held_base)
        return; /* cannot happen: segments only grow */
    if (segment - C.held_base >= C.held_n) {
        uint32_t n = segment - C.held_base + 16;
        C.held = sdk_xrealloc(C.held, n * sizeof(*C.held));
        memset(C.held + C.held_n, 0, (n - C.held_n) * sizeof(*C.held));
        C.held_n = n;
    }
    C.held[segment - C.held_base]++;
}

/* Gives back every pin held on segments before `segment`. */
static void held_release_before(uint32_t segment)
{
    uint32_t k = 0;
    for (; k < C.held_n && C.held_base + k < segment; k++)
        for (; C.held[k] > 0; C.held[k]--)
            repl_journal_release(C.journal, C.held_base + k);
    memmove(C.held, C.held + k, (C.held_n - k) * sizeof(*C.held));
    C.held_n -= k;
    C.held_base += k;
}

static void ckpt_submit(struct replica_obj *o, struct repl_op *op, bool last)
{
    size_t nlen = o->name != NULL ? strlen(o->name) : 0;
    size_t len = repl_op_size(op, nlen);
    uint8_t *buf = sdk_xmalloc(len);
    repl_op_encode(op, o->id, o->name, nlen, buf);
    struct repl_entry *e = sdk_xcalloc(1, sizeof(*e));
    e->owner = &ckpt_owner;
    e->lsn = last; /* the checkpoint's last entry */
    e->data = buf;
    e->len = len;
    repl_journal_submit(C.journal, e);
}

static void checkpoint(void)
{
    C.ckpt_running = true;
    C.ckpt_segment = repl_journal_segment(C.journal);
    struct repl_op done = {.type = REPL_OP_PROMISE}; /* epoch 0: changes nothing on replay */
    for (size_t i = 0; i < C.nbuckets; i++)
        for (struct replica_obj *o = C.objs[i]; o != NULL; o = o->next) {
            struct repl_replica_info in;
            repl_replica_get_info(o->core, &in);
            if (in.promised.n == 0 && in.last == 0)
                continue;
            struct repl_op p = {.type = REPL_OP_PROMISE, .seq = in.seq, .epoch = in.promised};
            ckpt_submit(o, &p, false);
            struct repl_op b = {.type = REPL_OP_BASE, .reset = true, .seq = in.seq, .lsn = in.base,
                                .origin = in.base_origin};
            ckpt_submit(o, &b, false);
            if (in.last > in.base) {
                uint32_t n = (uint32_t)(in.last - in.base);
                struct repl_rec **recs = sdk_xmalloc(n * sizeof(*recs));
                for (uint32_t k = 0; k < n; k++)
                    recs[k] = repl_replica_record(o->core, in.base + 1 + k);
                struct repl_op a = {.type = REPL_OP_APPEND, .seq = in.seq, .lsn = in.base + 1, .nrecs = n,
                                    .recs = recs};
                ckpt_submit(o, &a, false);
                free(recs);
            }
            done.seq = in.seq;
        }
    static const uint8_t none[16];
    struct replica_obj marker = {0};
    memcpy(marker.id, none, 16);
    ckpt_submit(&marker, &done, true);
}

static void on_synced(void *arg)
{
    struct repl_entry *e = arg;
    uint64_t now = repl_peers_now_ms(C.peers);
    while (e != NULL) {
        struct repl_entry *next = e->next;
        struct replica_obj *o = e->owner;
        held_add(e->segment); /* given back by a later checkpoint */
        if (o != &ckpt_owner) {
            repl_replica_synced(o->core, e->lsn, now);
        } else if (e->lsn == 1) {
            /* The checkpoint is on disk: what came before it is not needed. */
            held_release_before(C.ckpt_segment);
            C.ckpt_running = false;
            atomic_fetch_add(&C.checkpoints, 1);
        }
        free(e->data);
        free(e);
        e = next;
    }
    if (!C.ckpt_running && C.journal != NULL &&
        repl_journal_segment(C.journal) >= C.ckpt_segment + CKPT_SEGMENTS)
        checkpoint();
}

static void on_journal_done(void *arg, unsigned route, struct repl_entry *list)
{
    (void)arg;
    (void)route;
    repl_peers_post(C.peers, on_synced, list);
}

static void on_recv(void *arg, struct repl_msg *m)
{
    (void)arg;
    uint64_t now = repl_peers_now_ms(C.peers);
    if (m->type == REPL_MSG_PREPARE || m->type == REPL_MSG_FETCH || m->type == REPL_MSG_APPEND) {
        struct replica_obj *o = replica_find(m->object, false);
        if (o == NULL && replica_place(m->object) > 0)
            o = replica_find(m->object, true);
        if (o == NULL) {
            atomic_fetch_add(&C.dropped_msgs, 1);
            repl_msg_release(m);
            return;
        }
        if (o->name == NULL && m->name != NULL)
            o->name = sdk_xstrdup(m->name);
        repl_replica_receive(o->core, m, now);
        repl_msg_release(m);
        return;
    }
    int shard = registry_shard(m->object);
    if (shard < 0) {
        atomic_fetch_add(&C.dropped_msgs, 1);
        repl_msg_release(m);
        return;
    }
    /* The message (and its records) moves to the shard. */
    struct rt_repl_msg *x = sdk_xcalloc(1, sizeof(*x));
    x->msg.type = RT_MSG_REPL;
    x->m = *m;
    rt_shard_post(NULL, (unsigned)shard, &x->msg);
}

/* ---- moving objects to a new membership (see the top) -------------------- */

/* Whether the object still has to move: its replica set changed, this host
 * is in the old set or the new one, and it has not heard that a leader of
 * this version made a record durable (with both sets' quorums: then the new
 * set holds its state). A host in neither (it left the object's set in an
 * earlier change) hears from no leader any more: its old copy is not asked. */
static bool replica_moving(const struct view *v, struct replica_obj *o)
{
    struct repl_replica_info in;
    repl_replica_get_info(o->core, &in);
    if (in.promised.n == 0 && in.last == 0)
        return false; /* it holds nothing of the object */
    if (repl_epoch_version(in.commit_origin) >= v->all.version)
        return false;
    uint32_t old[REPL_REPLICAS_MAX], cur[REPL_REPLICAS_MAX];
    if (old_replicas_in(v, o->id, old) == 0)
        return false;
    replicas_in(&v->cur, o->id, cur);
    return set_has(old, C.c->replicas, C.c->host_id) || set_has(cur, C.c->replicas, C.c->host_id);
}

/* Counts the moving objects and asks their leaders to lead them, at most
 * WAKES_MAX a round (a leader recovers each: a storm of them would starve
 * the clients), going on next round where this one stopped waking. */
static void moving_scan(void)
{
    struct view *v = view();
    uint64_t moving = 0, woken = 0;
    size_t next = C.wake_cursor;
    struct replica_obj *first = NULL;
    for (size_t k = 0; v->changing && k < C.nbuckets; k++) {
        size_t i = (C.wake_cursor + k) % C.nbuckets;
        for (struct replica_obj *o = C.objs[i]; o != NULL; o = o->next) {
            if (!replica_moving(v, o))
                continue;
            if (moving++ == 0)
                first = o;
            const char *slash = o->name != NULL ? strchr(o->name, '/') : NULL;
            if (slash == NULL || woken >= WAKES_MAX)
                continue;
            woken++;
            next = i + 1;
            rt_fwd_wake(route_in(&v->cur, o->id), o->name, (size_t)(slash - o->name), slash + 1, strlen(slash + 1));
        }
    }
    C.wake_cursor = woken >= WAKES_MAX ? next % C.nbuckets : 0;
    atomic_store(&C.moving, moving);
    atomic_fetch_add(&C.wakes, woken);
    /* Every 10 s while objects are moving, one of them and where it stands. */
    if (first != NULL && ++C.scans_moving % 10 == 0) {
        struct repl_replica_info in;
        repl_replica_get_info(first->core, &in);
        RT_INFO("msg=\"objects still moving\" count=%llu object=%s leader=%u promised=%llu.%u commit=%llu "
                "commit_origin=%llu.%u base=%llu last=%llu", (unsigned long long)moving,
                first->name != NULL ? first->name : "?", route_in(&v->cur, first->id),
                (unsigned long long)in.promised.n, in.promised.host, (unsigned long long)in.commit,
                (unsigned long long)in.commit_origin.n, in.commit_origin.host, (unsigned long long)in.base,
                (unsigned long long)in.last);
    }
}

static void scan_posted(void *arg)
{
    moving_scan();
    uv_sem_post(arg);
}

static void on_tick(void *arg, uint64_t now_ms)
{
    (void)arg;
    static uint64_t last, last_scan;
    if (now_ms - last < REPLICA_TICK_MS)
        return;
    last = now_ms;
    for (size_t i = 0; i < C.nbuckets; i++)
        for (struct replica_obj *o = C.objs[i]; o != NULL; o = o->next)
            repl_replica_tick(o->core, now_ms);
    if (now_ms - last_scan >= MOVE_SCAN_MS) {
        last_scan = now_ms;
        moving_scan();
    }
}

/* ---- SIGHUP: the cluster file again --------------------------------------- */

static bool same_ids(const uint32_t *a, unsigned na, const struct router_cluster *members)
{
    if (na != members->nhosts)
        return false;
    for (unsigned i = 0; i < na; i++)
        if (router_host_find(members, a[i]) == NULL)
            return false;
    return true;
}

static bool same_members(const struct router_cluster *a, const struct router_cluster *b)
{
    if (a->nhosts != b->nhosts)
        return false;
    for (unsigned i = 0; i < a->nhosts; i++)
        if (router_host_find(b, a->hosts[i].id) == NULL)
            return false;
    return true;
}

/* Dropping `previous` ends the change on every host: each one listed must
 * have loaded its version and have nothing left to move (a leaving host too:
 * it stops only after this). Asked with GET /_status, on the main thread. */
static int moved_everywhere(const struct view *v, char *err, size_t errlen)
{
    for (unsigned i = 0; i < v->all.nhosts; i++) {
        const struct router_host *h = &v->all.hosts[i];
        uint64_t version = v->all.version, moving = atomic_load(&C.moving);
        if (h->id != C.c->host_id) {
            bool v6 = strchr(h->client_host, ':') != NULL;
            char url[160];
            snprintf(url, sizeof(url), "http://%s%s%s:%u/_status", v6 ? "[" : "", h->client_host, v6 ? "]" : "",
                     h->client_port);
            struct sdk_buf b = {0};
            long status = rt_http_get(url, &b, 3);
            const char *ver = status == 200 ? rt_line_value(b.data, "version") : NULL;
            const char *mov = status == 200 ? rt_line_value(b.data, "moving") : NULL;
            version = ver != NULL ? strtoull(ver, NULL, 10) : 0;
            moving = mov != NULL ? strtoull(mov, NULL, 10) : 0;
            sdk_buf_close(&b);
            if (ver == NULL || mov == NULL) {
                snprintf(err, errlen, "host %u (%s) does not answer: every host of the change, leaving ones too, must "
                         "say it has nothing left to move before 'previous' goes", h->id, url);
                return -1;
            }
        }
        if (version != v->all.version || moving > 0) {
            snprintf(err, errlen, "host %u %s: 'previous' goes only once every host has nothing left to move (see "
                     "`dobj status`)", h->id, version != v->all.version ? "has not loaded this version yet"
                                                                         : "still holds objects that have not moved");
            return -1;
        }
    }
    return 0;
}

/* Whether the new file may follow the loaded one; why not in err. */
static int reload_check(const struct view *v, const struct router_cluster *f, const struct view *nv, char *err,
                        size_t errlen)
{
    if (f->seed != v->all.seed) {
        snprintf(err, errlen, "the seed changed (%llu to %llu): it would move every object; it can not change",
                 (unsigned long long)v->all.seed, (unsigned long long)f->seed);
        return -1;
    }
    if (router_host_find(f, C.c->host_id) == NULL) {
        snprintf(err, errlen, "this host (%u) is not in it (a leaving host keeps its line until the change is done)",
                 C.c->host_id);
        return -1;
    }
    for (unsigned i = 0; i < f->nhosts; i++) {
        const struct router_host *a = &f->hosts[i], *b = router_host_find(&v->all, a->id);
        if (b != NULL && (strcmp(a->peer_host, b->peer_host) != 0 || a->peer_port != b->peer_port ||
                          strcmp(a->client_host, b->client_host) != 0 || a->client_port != b->client_port ||
                          strcmp(a->zone, b->zone) != 0)) {
            snprintf(err, errlen, "host %u's addresses or zone changed: a host keeps them (give a moved host a new id)",
                     a->id);
            return -1;
        }
    }
    if (nv->cur.nhosts < C.c->replicas || nv->prev.nhosts < C.c->replicas) {
        snprintf(err, errlen, "%u replicas need at least %u members; it has %u", C.c->replicas, C.c->replicas,
                 nv->cur.nhosts < nv->prev.nhosts ? nv->cur.nhosts : nv->prev.nhosts);
        return -1;
    }
    if (nv->changing && 2 * C.c->replicas > REPL_REPLICAS_MAX) {
        snprintf(err, errlen, "a change of members needs replicas <= %u (a leader replicates to both sets while "
                 "objects move); this host runs %u", REPL_REPLICAS_MAX / 2, C.c->replicas);
        return -1;
    }
    if (!same_members(&nv->cur, &v->cur)) {
        if (f->version <= v->all.version) {
            snprintf(err, errlen, "the members changed but the version did not go up (it is %llu: say version %llu)",
                     (unsigned long long)v->all.version, (unsigned long long)v->all.version + 1);
            return -1;
        }
        if (v->changing) {
            snprintf(err, errlen, "the change to version %llu is not done yet: finish it first (remove its 'previous'"
                                  " line once `dobj status` shows nothing moving)", (unsigned long long)v->all.version);
            return -1;
        }
        if (!same_ids(f->previous, f->nprevious, &v->cur)) {
            snprintf(err, errlen, "the members changed: 'previous' must list the members it replaces (those of "
                                  "version %llu)", (unsigned long long)v->all.version);
            return -1;
        }
        return 0;
    }
    if (f->version != v->all.version) {
        snprintf(err, errlen, "the version changed (%llu to %llu) but the members did not",
                 (unsigned long long)v->all.version, (unsigned long long)f->version);
        return -1;
    }
    if (nv->changing && !v->changing) {
        snprintf(err, errlen, "a 'previous' line came without a change of members");
        return -1;
    }
    if (nv->changing && !same_members(&nv->prev, &v->prev)) {
        snprintf(err, errlen, "'previous' changed during the change to version %llu: it lists the members that change "
                 "replaces until it is done", (unsigned long long)v->all.version);
        return -1;
    }
    if (v->changing && !nv->changing)
        return moved_everywhere(v, err, errlen);
    return 0;
}

int rt_cluster_reload(char *err, size_t errlen)
{
    if (C.peers == NULL) {
        snprintf(err, errlen, "not a cluster host");
        return -1;
    }
    pthread_mutex_lock(&C.reload_mu);
    struct view *v = view();
    struct router_cluster *f = sdk_xmalloc(sizeof(*f));
    struct view *nv = sdk_xcalloc(1, sizeof(*nv));
    int rv = router_cluster_load(f, C.c->cluster_file, err, errlen);
    if (rv == 0) {
        view_build(nv, f);
        rv = reload_check(v, f, nv, err, errlen);
    }
    free(f);
    if (rv != 0) {
        free(nv);
        pthread_mutex_unlock(&C.reload_mu);
        return -1;
    }
    nv->older = v;
    nv->gen = v->gen + 1;
    struct repl_peer_addr hosts[ROUTER_HOSTS_MAX];
    for (unsigned i = 0; i < nv->all.nhosts; i++) {
        hosts[i].id = nv->all.hosts[i].id;
        snprintf(hosts[i].host, sizeof(hosts[i].host), "%s", nv->all.hosts[i].peer_host);
        hosts[i].port = nv->all.hosts[i].peer_port;
    }
    repl_peers_set_hosts(C.peers, hosts, nv->all.nhosts);
    atomic_store_explicit(&C.view, nv, memory_order_release);
    /* Counted under the new view before anyone can read the count. */
    uv_sem_t counted;
    uv_sem_init(&counted, 0);
    repl_peers_post(C.peers, scan_posted, &counted);
    uv_sem_wait(&counted);
    uv_sem_destroy(&counted);
    pthread_mutex_unlock(&C.reload_mu);
    RT_INFO("msg=\"cluster file loaded\" version=%llu hosts=%u members=%u changing=%s",
            (unsigned long long)nv->all.version, nv->all.nhosts, nv->cur.nhosts, nv->changing ? "yes" : "no");
    return 0;
}

void rt_cluster_send(const struct repl_msg *m) { repl_peers_send(C.peers, m); }

/* ---- start and stop ----------------------------------------------------- */

static int on_replayed(void *arg, uint32_t segment, const uint8_t *buf, size_t len)
{
    (void)arg;
    (void)segment;
    struct repl_op op;
    uint8_t id[16];
    char *name = NULL;
    if (repl_op_decode(&op, id, &name, buf, len) != 0)
        return -EINVAL;
    static const uint8_t none[16];
    if (memcmp(id, none, 16) == 0) { /* a checkpoint's end: nothing to replay */
        free(name);
        repl_op_release(&op);
        return 0;
    }
    struct replica_obj *o = replica_find(id, true);
    if (o->name == NULL && name != NULL) {
        o->name = name;
        name = NULL;
    }
    free(name);
    repl_replica_replay(o->core, &op);
    repl_op_release(&op);
    return 0;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

/* Removes DATA/objects: leaders rebuild their files from durable state. */
static void wipe_objects(const struct rt_config *c)
{
    char dir[4300];
    snprintf(dir, sizeof(dir), "%s/objects", c->data_dir);
    if (access(dir, F_OK) == 0 && nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        RT_WARN("msg=\"can not remove the objects directory\" path=%s err=\"%s\"", dir, strerror(errno));
}

int rt_cluster_start(const struct rt_config *c, char *err, size_t errlen)
{
    C.c = c;
    struct view *v = sdk_xcalloc(1, sizeof(*v));
    view_build(v, c->cluster);
    atomic_store(&C.view, v);
    C.nbuckets = 1024;
    C.objs = sdk_xcalloc(C.nbuckets, sizeof(*C.objs));
    if (mkdir(c->data_dir, 0755) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "can not create %s: %s", c->data_dir, strerror(errno));
        return -1;
    }
    if (epoch_load(err, errlen) != 0)
        return -1;
    wipe_objects(c);
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/replica", c->data_dir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "can not create %s: %s", dir, strerror(errno));
        return -1;
    }
    struct repl_recovered rec = {0};
    if (repl_journal_recover(dir, c->repair, on_replayed, NULL, &rec, err, errlen) != 0)
        return -1;
    RT_INFO("msg=\"replica journal read\" objects=%zu", C.count);
    struct repl_journal_config jc = {.dir = dir, .segment_bytes = c->journal_segment_bytes,
                                     .no_uring = getenv("DOBJ_NO_URING") != NULL, .stored = true,
                                     .done_cb = on_journal_done};
    /* Old segments stay: their records are the replicas' (kept from 1). */
    if (repl_journal_create(&C.journal, &jc, rec.next_segment, 1, err, errlen) != 0)
        return -1;
    for (uint32_t s = 1; s < rec.next_segment; s++) {
        repl_journal_pin(C.journal, s);
        held_add(s);
    }
    C.ckpt_segment = rec.next_segment;
    struct repl_peer_addr hosts[ROUTER_HOSTS_MAX];
    for (unsigned i = 0; i < c->cluster->nhosts; i++) {
        hosts[i].id = c->cluster->hosts[i].id;
        snprintf(hosts[i].host, sizeof(hosts[i].host), "%s", c->cluster->hosts[i].peer_host);
        hosts[i].port = c->cluster->hosts[i].peer_port;
    }
    struct repl_peers_config pc = {.self = c->host_id, .hosts = hosts, .nhosts = c->cluster->nhosts,
                                   .secret = c->cluster_secret, .heartbeat_ms = c->peer_heartbeat_ms,
                                   .dead_ms = c->peer_dead_ms, .queue_bytes_max = 256u << 20, .tick_ms = TICK_MS,
                                   .recv = on_recv, .recv_app = on_app, .tick = on_tick};
    if (repl_peers_start(&C.peers, &pc, err, errlen) != 0) {
        repl_journal_stop(C.journal);
        repl_journal_destroy(C.journal);
        C.journal = NULL;
        return -1;
    }
    C.started_ms = repl_peers_now_ms(C.peers);
    RT_INFO("msg=\"cluster host\" host=%u hosts=%u replicas=%u quorum=%u", c->host_id, c->cluster->nhosts,
            c->replicas, c->quorum);
    return 0;
}

void rt_cluster_stop(void)
{
    if (C.peers != NULL)
        repl_peers_stop(C.peers);
    if (C.journal != NULL)
        repl_journal_stop(C.journal);
}

void rt_cluster_destroy(void)
{
    if (C.peers == NULL)
        return;
    /* The journal's last answers were posted to the stopped transport: they
     * are dropped with it (the process is stopping). */
    repl_peers_destroy(C.peers);
    C.peers = NULL;
    repl_journal_destroy(C.journal);
    C.journal = NULL;
    for (size_t i = 0; i < C.nbuckets; i++)
        for (struct replica_obj *o = C.objs[i], *next; o != NULL; o = next) {
            next = o->next;
            repl_replica_destroy(o->core);
            free(o->name);
            free(o);
        }
    free(C.objs);
    C.objs = NULL;
    free(C.held);
    C.held = NULL;
    C.held_n = 0;
    for (struct view *v = atomic_exchange(&C.view, NULL), *older; v != NULL; v = older) {
        older = v->older;
        free(v);
    }
}

void rt_cluster_stats(struct rt_cluster_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (C.peers == NULL)
        return;
    repl_peers_stats(C.peers, &out->peers);
    out->replica_ops = atomic_load(&C.replica_ops);
    out->checkpoints = atomic_load(&C.checkpoints);
    if (C.journal != NULL)
        repl_journal_stats(C.journal, &out->journal);
    out->dropped_msgs = atomic_load(&C.dropped_msgs);
    out->commits = atomic_load(&C.commits);
    pthread_mutex_lock(&C.mu);
    out->leading = C.leading;
    pthread_mutex_unlock(&C.mu);
    out->replicating = atomic_load(&C.replicating);
    out->moving = atomic_load(&C.moving);
    out->wakes = atomic_load(&C.wakes);
}

void rt_cluster_count_commits(uint64_t n) { atomic_fetch_add_explicit(&C.commits, n, memory_order_relaxed); }
