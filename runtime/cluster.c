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
 * at or above it is used.
 */
#include <errno.h>
#include <fcntl.h>
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
#define EPOCH_RESERVE (1ull << 20)
#define TICK_MS 20          /* the transport's timer: heartbeats, redials */
#define REPLICA_TICK_MS 100 /* replicas' timers: uploads after a dead leader */

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

static struct {
    const struct rt_config *c;
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
} C = {.mu = PTHREAD_MUTEX_INITIALIZER, .epoch_mu = PTHREAD_MUTEX_INITIALIZER};

bool rt_cluster_enabled(void) { return C.peers != NULL; }

static size_t id_bucket(const uint8_t id[16], size_t n)
{
    uint64_t h;
    memcpy(&h, id, sizeof(h));
    return (size_t)(h & (n - 1));
}

/* ---- placement ---------------------------------------------------------- */

void rt_cluster_replicas(const uint8_t id[16], uint32_t *replicas)
{
    const struct router_cluster *cl = C.c->cluster;
    unsigned rank[ROUTER_HOSTS_MAX];
    router_rank(cl, id, rank);
    router_replicas(cl, rank, C.c->replicas, replicas);
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

uint32_t rt_cluster_route(const uint8_t id[16])
{
    const struct router_cluster *cl = C.c->cluster;
    unsigned rank[ROUTER_HOSTS_MAX];
    router_rank(cl, id, rank);
    uint32_t cand[ROUTER_HOSTS_MAX];
    unsigned n = router_candidates(cl, rank, C.c->replicas, cand);
    for (unsigned i = 0; i < n; i++)
        if (rt_cluster_host_live(cand[i]))
            return cand[i];
    return cand[0]; /* all down: a request there fails at once (503), as it should */
}

void rt_cluster_send_app(uint32_t to, const void *payload, size_t len)
{
    repl_peers_send_app(C.peers, to, payload, len);
}

static void on_app(void *arg, uint32_t from, const uint8_t *payload, uint32_t len)
{
    (void)arg;
    rt_front_forwarded(from, payload, len);
}

static bool is_replica_of(const uint8_t id[16])
{
    uint32_t reps[REPL_REPLICAS_MAX];
    rt_cluster_replicas(id, reps);
    for (unsigned i = 0; i < C.c->replicas; i++)
        if (reps[i] == C.c->host_id)
            return true;
    return false;
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

struct repl_epoch rt_cluster_epoch(struct repl_epoch seen)
{
    pthread_mutex_lock(&C.epoch_mu);
    uint64_t n = C.epoch_next > seen.n + 1 ? C.epoch_next : seen.n + 1;
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
    uint32_t reps[REPL_REPLICAS_MAX];
    rt_cluster_replicas(id, reps);
    uint64_t nth = 1;
    for (unsigned i = 0; i < C.c->replicas; i++)
        if (reps[i] == C.c->host_id)
            nth = i + 1;
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
        if (o == NULL && is_replica_of(m->object))
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

static void on_tick(void *arg, uint64_t now_ms)
{
    (void)arg;
    static uint64_t last;
    if (now_ms - last < REPLICA_TICK_MS)
        return;
    last = now_ms;
    for (size_t i = 0; i < C.nbuckets; i++)
        for (struct replica_obj *o = C.objs[i]; o != NULL; o = o->next)
            repl_replica_tick(o->core, now_ms);
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
}

void rt_cluster_stats(struct rt_cluster_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (C.peers == NULL)
        return;
    repl_peers_stats(C.peers, &out->peers);
    out->replica_ops = atomic_load(&C.replica_ops);
    out->checkpoints = atomic_load(&C.checkpoints);
    out->dropped_msgs = atomic_load(&C.dropped_msgs);
    out->commits = atomic_load(&C.commits);
    pthread_mutex_lock(&C.mu);
    out->leading = C.leading;
    pthread_mutex_unlock(&C.mu);
    out->replicating = atomic_load(&C.replicating);
}

void rt_cluster_count_commits(uint64_t n) { atomic_fetch_add_explicit(&C.commits, n, memory_order_relaxed); }
