/*
 * sim.c: the replication protocol (replicate/quorum.c) under a deterministic
 * simulator. Nine hosts' protocol cores run in one process on virtual time
 * (1 ms steps) with one seeded PRNG deciding everything: message delays
 * (so reordering), drops, duplicates, partitions, journal fsync delays,
 * crashes that lose whatever was not synced, restarts, leader changes,
 * uploads to a shared "object storage", and membership changes (below).
 * After every step it checks:
 *
 *   1. every acknowledged record is in storage or synced on a quorum of
 *      the replica set (while joint: of each set) of the leader that
 *      acknowledged it, with the same bytes (nothing acknowledged is lost);
 *   2. no lsn is ever acknowledged with two different records, and storage
 *      holds only acknowledged records (nothing acknowledged is changed);
 *   3. every replica agrees with the acknowledged records up to the commit
 *      point it knows;
 *   4. one epoch's acknowledgements come from one leader only;
 *   5. a deposed leader releases nothing more;
 *   6. a recovering leader's chosen log holds every acknowledged record;
 * and at the end of a seed, with faults healed, that a leader makes progress.
 *
 * Membership changes, as the runtime makes them (router.h): hosts 1..8 may
 * hold the object's replica (host 0 never does); a change replaces 1 to 3
 * of the 5 members with version v + 1. Each host adopts the new version at
 * its own random step and, until the transition completes, leads with the
 * joint configuration (new set, and the previous as old_replicas); a host
 * still on v leads with the old set alone, and one that has seen an epoch of
 * a newer version than its own refuses to lead. Once every host has adopted,
 * is up and the object is settled (every replica of either set that knows
 * the object heard of a record made durable under v + 1), the operator
 * completes the transition: each host drops the previous set at its own
 * random step. Only then may the next change start.
 *
 *   sim [--seeds N] [--from S] [--seed S] [--steps K] [-v]
 *
 * With -v it narrates a seed (leaders, crashes, cuts); SIM_MSGS=T in the
 * environment adds every message delivered from virtual time T on.
 *
 * A failure prints the seed and the command that replays it. Built as
 * `sim`, as `sim-planted-N` with REPL_SIM_PLANTED_BUG=N in the core (e.g. a
 * leader that counts a record durable one replica short), and as
 * `sim-planted-nojoint` with SIM_PLANTED_NO_JOINT here (hosts that adopt a
 * new membership lead with its set alone, no joint phase); the checker must
 * catch every planted one.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replicate.h"

#define NHOSTS 9 /* host 0 never holds a replica; 1..8 may */
#define NREPL 5  /* a replica set's size */
#define QUORUM 3
#define LSN_MAX 65536
#define VERSIONS_MAX 64

/* ---- the seeded PRNG (splitmix64) -------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rnd_below(uint64_t n) { return n ? rnd() % n : 0; }
static bool chance(double p) { return (double)(rnd() >> 11) / (double)(1ull << 53) < p; }

/* ---- the world ---------------------------------------------------------- */

struct params {
    double drop, dup, crash, restart, partition, split, heal, lead, write, read, upload;
    double change, adopt; /* a membership change starts; a host loads a new config (SIGHUP) */
    unsigned delay_max, sync_max;
    unsigned window; /* a client's writes in flight per leader: closed loop */
};

struct jop { /* one journal write, deep-copied */
    struct repl_op op;
};

struct inst; /* a leader instance */

struct host {
    uint32_t id;
    bool up;
    unsigned incarnation;
    struct repl_replica *rep;  /* live (replica hosts only) */
    struct repl_replica *disk; /* what its journal has synced: the disk */
    struct jop *ops;
    size_t nops, nsynced, cap;
    uint64_t sync_at; /* 0: no fsync in flight */
    struct inst *lead;
    uint64_t epoch_used; /* persisted before a leader uses it */
    struct repl_epoch seen;
    uint64_t mem_last; /* its live log's end, as its journal writes say */
    uint64_t version;  /* its config's membership version */
    bool joint;        /* its config still names the previous members */
    bool up_blocked[NHOSTS]; /* partition: links cut */
};

/* A read: the leader's state when it was made, released once both its
 * records are durable and a read round begun after it is confirmed. */
struct read {
    uint64_t round, last, acked_before;
};

struct inst {
    struct host *h;
    uint64_t id;
    struct repl_leader *l;
    bool deposed, barrier_due;
    uint32_t sets[2]; /* host bit masks: its replica set, and the old one while joint (0: none) */
    uint64_t acked_to, durable, confirmed;
    struct read reads[32];
    unsigned nreads;
};

struct netmsg {
    uint64_t at, tie;
    struct repl_msg m;
};

static struct {
    uint64_t seed, now, step, steps;
    bool verbose, healing;
    unsigned heal_host; /* while healing only it leads, as the router would have it */
    struct params p;
    struct host hosts[NHOSTS];
    struct netmsg *net;
    size_t nnet, netcap;
    struct repl_rec *acked[LSN_MAX + 1];
    struct repl_epoch acked_in[LSN_MAX + 1]; /* the epoch that first acknowledged it */
    uint32_t acked_sets[LSN_MAX + 1][2];     /* and that leader's replica set(s), inst.sets */
    uint64_t max_acked;
    struct repl_rec *store[LSN_MAX + 1];
    uint64_t store_end;
    struct { struct repl_epoch e; uint64_t inst; } epochs[4096];
    size_t nepochs;
    uint64_t next_inst, nonce;
    uint64_t acked_in_heal;
    struct { uint32_t host; unsigned inc; uint64_t at; struct repl_rec **recs; size_t n; } uploads[64];
    size_t nuploads;
    struct inst *dead[1024];
    size_t ndead;
    /* The membership, as the operator sees it: sets[v] is the object's
     * replica set under version v; `version` the newest. */
    uint32_t sets[VERSIONS_MAX + 1][NREPL];
    uint64_t version;
    enum { MEMB_STABLE, MEMB_ADOPTING, MEMB_COMPLETING } phase;
    unsigned changes_started, changes_completed;
} W;

static bool failed;

/* What the seeds exercised, printed at the end: proof the runs are not empty. */
static struct {
    uint64_t reads, acked, recoveries, deposed_epoch, deposed_timeout, crashes, lost_writes, dropped, duplicated;
    uint64_t replica_uploads, resets, truncations;
    uint64_t idle_ticks; /* ticks of leaders repl_leader_idle called idle (each did nothing) */
    uint64_t changes_started, changes_completed, joint_leaders, stale_refusals;
    uint64_t steps_changing, crashes_changing, cuts_changing; /* while a transition was under way */
    uint64_t seeds_changed, seeds_completed; /* seeds with at least one change started, completed */
} stats;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    if (failed)
        return;
    failed = true;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sim: seed %" PRIu64 " step %" PRIu64 ": ", W.seed, W.step);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nsim: replay with: make sim SEED=%" PRIu64 "  (or: sim --seed %" PRIu64 " -v)\n", W.seed,
            W.seed);
}

static void vlog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void vlog(const char *fmt, ...)
{
    if (!W.verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    printf("%6" PRIu64 " ", W.now);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

/* An epoch as version:counter.host in messages. */
#define EPOCH_FMT "%" PRIu64 ":%" PRIu64 ".%u"
#define EPOCH_ARGS(e) repl_epoch_version(e), (e).n & (((uint64_t)1 << REPL_EPOCH_VERSION_SHIFT) - 1), (e).host

static bool is_replica(uint32_t h) { return h >= 1 && h < NHOSTS; }

static uint32_t set_mask(const uint32_t *ids, unsigned n)
{
    uint32_t m = 0;
    for (unsigned i = 0; i < n; i++)
        m |= 1u << ids[i];
    return m;
}

/* "{1,2,5}" into buf (32 bytes: NHOSTS ids at most). */
static const char *mask_str(uint32_t m, char *buf)
{
    size_t n = 0;
    buf[n++] = '{';
    for (unsigned i = 0; i < NHOSTS; i++)
        if (m & (1u << i))
            n += (size_t)snprintf(buf + n, 32 - n, n > 1 ? ",%u" : "%u", i);
    snprintf(buf + n, 32 - n, "}");
    return buf;
}

static const uint8_t object_id[16] = "sim-object-0001";

static bool same(const struct repl_rec *a, const struct repl_rec *b)
{
    return a->lsn == b->lsn && a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

static struct repl_rec *make_rec(uint64_t lsn, struct repl_epoch e, char kind)
{
    uint8_t d[32];
    int n = snprintf((char *)d, sizeof(d), "%c%" PRIu64 ".%u:%" PRIu64 "#%" PRIu64, kind, e.n, e.host, lsn,
                     ++W.nonce);
    return repl_rec_create(lsn, e, d, (uint32_t)n);
}

/* ---- the network -------------------------------------------------------- */

static void net_push(const struct repl_msg *m, uint64_t at)
{
    if (W.nnet == W.netcap) {
        W.netcap = W.netcap ? W.netcap * 2 : 256;
        W.net = realloc(W.net, W.netcap * sizeof(*W.net));
    }
    struct netmsg *x = &W.net[W.nnet++];
    x->at = at;
    x->tie = rnd();
    x->m = *m;
    if (m->nrecs > 0) {
        x->m.recs = malloc(m->nrecs * sizeof(*x->m.recs));
        for (uint32_t i = 0; i < m->nrecs; i++)
            x->m.recs[i] = repl_rec_ref(m->recs[i]);
    } else {
        x->m.recs = NULL;
    }
}

static void net_free(struct netmsg *x)
{
    for (uint32_t i = 0; i < x->m.nrecs; i++)
        repl_rec_unref(x->m.recs[i]);
    free(x->m.recs);
}

static uint64_t sends; /* messages sent, dropped ones too */

static void on_send(void *arg, const struct repl_msg *m)
{
    (void)arg;
    sends++;
    if (chance(W.p.drop)) {
        stats.dropped++;
        return;
    }
    net_push(m, W.now + 1 + rnd_below(W.p.delay_max));
    if (chance(W.p.dup) && ++stats.duplicated)
        net_push(m, W.now + 1 + rnd_below(W.p.delay_max * 3));
}

/* ---- journals: ops in order, synced in order, unsynced lost in a crash --- */

static void on_journal(void *arg, const struct repl_op *op)
{
    struct host *h = arg;
    stats.resets += op->type == REPL_OP_BASE && op->reset;
    if (op->type == REPL_OP_APPEND) {
        stats.truncations += op->lsn <= h->mem_last; /* it overwrites: a conflicting suffix was cut */
        h->mem_last = op->lsn + op->nrecs - 1;
    } else if (op->type == REPL_OP_BASE && (op->reset || op->lsn > h->mem_last)) {
        h->mem_last = op->lsn;
    }
    if (h->nops == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 64;
        h->ops = realloc(h->ops, h->cap * sizeof(*h->ops));
    }
    struct jop *j = &h->ops[h->nops++];
    j->op = *op;
    if (op->nrecs > 0) {
        j->op.recs = malloc(op->nrecs * sizeof(*j->op.recs));
        for (uint32_t i = 0; i < op->nrecs; i++)
            j->op.recs[i] = repl_rec_ref(op->recs[i]);
    }
    if (h->sync_at == 0)
        h->sync_at = W.now + 1 + rnd_below(W.p.sync_max);
}

static void jop_free(struct jop *j)
{
    for (uint32_t i = 0; i < j->op.nrecs; i++)
        repl_rec_unref(j->op.recs[i]);
    free(j->op.recs);
}

static void on_upload(void *arg, uint64_t from, uint64_t to)
{
    struct host *h = arg;
    if (W.nuploads == sizeof(W.uploads) / sizeof(W.uploads[0]) || to - from > 4096)
        return; /* the core retries after its timeout */
    size_t n = to - from + 1;
    struct repl_rec **recs = malloc(n * sizeof(*recs));
    for (size_t i = 0; i < n; i++) {
        struct repl_rec *r = repl_replica_record(h->rep, from + i);
        if (r == NULL) {
            fail("replica %u asked to upload %" PRIu64 "..%" PRIu64 " but lacks %" PRIu64, h->id, from, to,
                 from + i);
            for (size_t k = 0; k < i; k++)
                repl_rec_unref(recs[k]);
            free(recs);
            return;
        }
        recs[i] = repl_rec_ref(r);
    }
    stats.replica_uploads++;
    W.uploads[W.nuploads].host = h->id;
    W.uploads[W.nuploads].inc = h->incarnation;
    W.uploads[W.nuploads].at = W.now + 1 + rnd_below(50);
    W.uploads[W.nuploads].recs = recs;
    W.uploads[W.nuploads].n = n;
    W.nuploads++;
}

static const struct repl_replica_io replica_io = {.send = on_send, .journal = on_journal, .upload = on_upload};

static struct repl_replica *replica_new(struct host *h)
{
    struct repl_replica_config c = {.host = h->id, .batch_recs_max = 16, .batch_bytes_max = 4096,
                                    .upload_timeout_ms = 300, .io = &replica_io, .arg = h};
    memcpy(c.object, object_id, sizeof(c.object));
    return repl_replica_create(&c);
}

/* ---- object storage ----------------------------------------------------- */

static void store_put(struct repl_rec *r, const char *who)
{
    if (r->lsn > LSN_MAX)
        return;
    if (W.acked[r->lsn] == NULL || !same(W.acked[r->lsn], r)) {
        fail("%s uploads lsn %" PRIu64 " which was not acknowledged with those bytes", who, r->lsn);
        return;
    }
    if (W.store[r->lsn] != NULL) {
        if (!same(W.store[r->lsn], r))
            fail("storage: lsn %" PRIu64 " overwritten with other bytes by %s", r->lsn, who);
        return;
    }
    W.store[r->lsn] = repl_rec_ref(r);
    while (W.store_end < LSN_MAX && W.store[W.store_end + 1] != NULL)
        W.store_end++;
}

/* ---- leaders ------------------------------------------------------------ */

static void epoch_note(struct repl_epoch e, struct inst *in)
{
    for (size_t i = 0; i < W.nepochs; i++)
        if (repl_epoch_cmp(W.epochs[i].e, e) == 0) {
            if (W.epochs[i].inst != in->id)
                fail("epoch " EPOCH_FMT " acknowledged by two leaders", EPOCH_ARGS(e));
            return;
        }
    if (W.nepochs < sizeof(W.epochs) / sizeof(W.epochs[0])) {
        W.epochs[W.nepochs].e = e;
        W.epochs[W.nepochs++].inst = in->id;
    }
}

static void on_recovered(void *arg, uint64_t base, struct repl_epoch base_origin, struct repl_rec *const *recs,
                         size_t n)
{
    (void)base_origin;
    struct inst *in = arg;
    struct repl_leader_info li;
    repl_leader_get_info(in->l, &li);
    vlog("host %u leader recovered base %" PRIu64 " tail %zu", in->h->id, base, n);
    if (base > W.store_end)
        fail("leader on host %u recovered base %" PRIu64 " past storage's %" PRIu64, in->h->id, base, W.store_end);
    /* Records acknowledged in a lower epoch must be in its log (a leader
     * whose promises are stale may miss later ones: it can not get its
     * barrier accepted, and the output checks hold it to that). */
    for (uint64_t lsn = base + 1; lsn <= W.max_acked; lsn++) {
        if (W.acked[lsn] == NULL || repl_epoch_cmp(W.acked_in[lsn], li.epoch) > 0)
            continue;
        if (lsn - base > n) {
            fail("leader on host %u recovered up to %" PRIu64 ", missing acknowledged lsn %" PRIu64, in->h->id,
                 base + n, lsn);
            return;
        }
        if (!same(W.acked[lsn], recs[lsn - base - 1]))
            fail("leader on host %u recovered other bytes at acknowledged lsn %" PRIu64, in->h->id, lsn);
    }
    in->acked_to = base;
    in->barrier_due = true; /* appended a little later, as the runtime's is */
    stats.recoveries++;
}

/* Releases the reads that may answer, checking each saw every record
 * acknowledged before it was made. */
static void reads_release(struct inst *in)
{
    unsigned k = 0;
    for (unsigned i = 0; i < in->nreads; i++) {
        struct read *r = &in->reads[i];
        if (r->round > in->confirmed || r->last > in->durable) {
            in->reads[k++] = *r;
            continue;
        }
        stats.reads++;
        if (r->acked_before > r->last) {
            fail("host %u released a stale read: its state ends at lsn %" PRIu64 ", lsn %" PRIu64
                 " was acknowledged before the read", in->h->id, r->last, r->acked_before);
            return;
        }
        for (uint64_t x = 1; x <= r->acked_before; x++) {
            struct repl_rec *have = repl_leader_record(in->l, x);
            if (have != NULL && W.acked[x] != NULL && !same(have, W.acked[x])) {
                fail("host %u released a read whose lsn %" PRIu64 " differs from the acknowledged one", in->h->id, x);
                return;
            }
        }
    }
    in->nreads = k;
}

static void on_confirmed(void *arg, uint64_t round)
{
    struct inst *in = arg;
    if (in->deposed)
        fail("deposed leader on host %u confirmed read round %" PRIu64, in->h->id, round);
    in->confirmed = round;
    reads_release(in);
}

static void on_durable(void *arg, uint64_t lsn)
{
    struct inst *in = arg;
    if (in->deposed)
        fail("deposed leader on host %u released outputs up to %" PRIu64, in->h->id, lsn);
    struct repl_leader_info li;
    repl_leader_get_info(in->l, &li);
    epoch_note(li.epoch, in);
    for (uint64_t x = in->acked_to + 1; x <= lsn && x <= LSN_MAX; x++) {
        struct repl_rec *r = repl_leader_record(in->l, x);
        if (r == NULL) {
            fail("leader on host %u says %" PRIu64 " durable but does not hold it", in->h->id, x);
            return;
        }
        if (W.acked[x] != NULL) {
            if (!same(W.acked[x], r))
                fail("lsn %" PRIu64 " acknowledged twice with different records", x);
            continue;
        }
        W.acked[x] = repl_rec_ref(r);
        W.acked_in[x] = li.epoch;
        W.acked_sets[x][0] = in->sets[0];
        W.acked_sets[x][1] = in->sets[1];
        stats.acked++;
        if (x > W.max_acked)
            W.max_acked = x;
        if (W.healing)
            W.acked_in_heal++;
    }
    if (lsn > in->acked_to)
        in->acked_to = lsn;
    in->durable = lsn;
    reads_release(in);
}

static void on_deposed(void *arg, enum repl_depose_reason why, struct repl_epoch higher)
{
    struct inst *in = arg;
    vlog("host %u leader deposed (%s) by " EPOCH_FMT, in->h->id, why == REPL_DEPOSED_EPOCH ? "epoch" : "timeout",
         EPOCH_ARGS(higher));
    in->deposed = true;
    if (why == REPL_DEPOSED_EPOCH)
        stats.deposed_epoch++;
    else
        stats.deposed_timeout++;
    if (repl_epoch_cmp(higher, in->h->seen) > 0)
        in->h->seen = higher;
}

static const struct repl_leader_io leader_io = {
    .send = on_send, .recovered = on_recovered, .durable = on_durable, .confirmed = on_confirmed,
    .deposed = on_deposed};

static void leader_drop(struct host *h)
{
    if (h->lead == NULL)
        return;
    /* Destroyed later: messages and callbacks in this step may still name it. */
    h->lead->deposed = true;
    if (W.ndead < sizeof(W.dead) / sizeof(W.dead[0])) {
        W.dead[W.ndead++] = h->lead;
    } else {
        repl_leader_destroy(h->lead->l);
        free(h->lead);
    }
    h->lead = NULL;
}

/* Leads with the host's config: its version's replica set, and while the
 * transition is not complete there, the previous version's as the old set. */
static void leader_start(struct host *h)
{
    leader_drop(h);
    struct repl_epoch seen = h->seen;
    if (h->rep != NULL) {
        struct repl_replica_info ri;
        repl_replica_get_info(h->rep, &ri);
        if (repl_epoch_cmp(ri.promised, seen) > 0)
            seen = ri.promised;
    }
    if (repl_epoch_version(seen) > h->version) {
        vlog("host %u does not lead: it has seen epoch " EPOCH_FMT ", its config is of version %" PRIu64, h->id,
             EPOCH_ARGS(seen), h->version);
        stats.stale_refusals++;
        return;
    }
    uint64_t n = seen.n > h->epoch_used ? seen.n : h->epoch_used;
    if (n < h->version << REPL_EPOCH_VERSION_SHIFT)
        n = h->version << REPL_EPOCH_VERSION_SHIFT;
    n++;
    h->epoch_used = n; /* durable before use, as the glue must */
    struct inst *in = calloc(1, sizeof(*in));
    in->h = h;
    in->id = ++W.next_inst;
    struct repl_leader_config c = {.host = h->id, .replicas = W.sets[h->version], .nreplicas = NREPL,
                                   .quorum = QUORUM, .resend_ms = 40, .heartbeat_ms = 10, .commit_timeout_ms = 400,
                                   .batch_recs_max = 8, .batch_bytes_max = 2048, .window_recs = 64,
                                   .io = &leader_io, .arg = in};
    if (h->joint) {
        c.old_replicas = W.sets[h->version - 1];
        c.nold = NREPL;
    }
#ifdef SIM_PLANTED_NO_JOINT
    c.nold = 0; /* the checker must catch leading with the new set alone */
#endif
    memcpy(c.object, object_id, sizeof(c.object));
    in->sets[0] = set_mask(c.replicas, c.nreplicas);
    in->sets[1] = set_mask(c.old_replicas, c.nold);
    stats.joint_leaders += c.nold > 0;
    h->lead = in;
    struct repl_epoch e = {n, h->id};
    char a[32], b[32];
    vlog("host %u starts leading in epoch " EPOCH_FMT " with %s%s%s", h->id, EPOCH_ARGS(e),
         mask_str(in->sets[0], a), c.nold > 0 ? " and old " : "", c.nold > 0 ? mask_str(in->sets[1], b) : "");
    in->l = repl_leader_create(&c, e, W.now);
    if (in->l == NULL)
        fail("leader refused a valid config");
}

/* ---- hosts -------------------------------------------------------------- */

static void host_sync(struct host *h)
{
    h->sync_at = 0;
    if (h->nsynced == h->nops)
        return;
    for (size_t i = h->nsynced; i < h->nops; i++)
        repl_replica_replay(h->disk, &h->ops[i].op);
    uint64_t seq = h->ops[h->nops - 1].op.seq;
    h->nsynced = h->nops;
    if (h->rep != NULL)
        repl_replica_synced(h->rep, seq, W.now);
}

static void host_crash(struct host *h)
{
    vlog("host %u crashes (%zu journal writes unsynced)", h->id, h->nops - h->nsynced);
    stats.crashes++;
    stats.crashes_changing += W.phase != MEMB_STABLE;
    stats.lost_writes += h->nops - h->nsynced;
    leader_drop(h);
    repl_replica_destroy(h->rep);
    h->rep = NULL;
    for (size_t i = h->nsynced; i < h->nops; i++)
        jop_free(&h->ops[i]);
    h->nops = h->nsynced;
    h->sync_at = 0;
    h->up = false;
    h->incarnation++;
}

static void host_restart(struct host *h)
{
    vlog("host %u restarts", h->id);
    h->up = true;
    if (is_replica(h->id)) {
        h->rep = replica_new(h);
        for (size_t i = 0; i < h->nsynced; i++)
            repl_replica_replay(h->rep, &h->ops[i].op);
        struct repl_replica_info ri;
        repl_replica_get_info(h->rep, &ri);
        h->mem_last = ri.last;
    }
}

/* ---- one step ----------------------------------------------------------- */

static int net_cmp(const void *a, const void *b)
{
    const struct netmsg *x = a, *y = b;
    if (x->at != y->at)
        return x->at < y->at ? -1 : 1;
    return x->tie < y->tie ? -1 : x->tie > y->tie;
}

static void deliver(struct netmsg *x)
{
    if (W.verbose && getenv("SIM_MSGS") != NULL && W.now >= strtoull(getenv("SIM_MSGS"), NULL, 10))
        vlog("msg %u->%u type %u ok %d epoch " EPOCH_FMT " lsn %" PRIu64 " o " EPOCH_FMT " base %" PRIu64
             " commit %" PRIu64 " n %u",
             x->m.from, x->m.to, x->m.type, x->m.ok, EPOCH_ARGS(x->m.epoch), x->m.lsn, EPOCH_ARGS(x->m.origin),
             x->m.base_lsn, x->m.commit_lsn, x->m.nrecs);
    struct host *to = &W.hosts[x->m.to];
    struct host *from = &W.hosts[x->m.from];
    if (!to->up || to->up_blocked[from->id] || from->up_blocked[to->id])
        return;
    switch (x->m.type) {
    case REPL_MSG_PREPARE:
    case REPL_MSG_FETCH:
    case REPL_MSG_APPEND:
        if (to->rep != NULL)
            repl_replica_receive(to->rep, &x->m, W.now);
        break;
    default:
        if (to->lead != NULL)
            repl_leader_receive(to->lead->l, &x->m, W.now);
        break;
    }
}

static void step_network(void)
{
    /* Due messages, in (time, random) order; new sends go after them. */
    size_t due = 0;
    for (size_t i = 0; i < W.nnet; i++)
        if (W.net[i].at <= W.now) {
            struct netmsg t = W.net[due];
            W.net[due++] = W.net[i];
            W.net[i] = t;
        }
    if (due == 0)
        return;
    struct netmsg *batch = malloc(due * sizeof(*batch));
    memcpy(batch, W.net, due * sizeof(*batch));
    memmove(W.net, W.net + due, (W.nnet - due) * sizeof(*W.net));
    W.nnet -= due;
    qsort(batch, due, sizeof(*batch), net_cmp);
    for (size_t i = 0; i < due; i++) {
        deliver(&batch[i]);
        net_free(&batch[i]);
    }
    free(batch);
}

static void step_uploads(void)
{
    for (size_t i = 0; i < W.nuploads;) {
        if (W.uploads[i].at > W.now) {
            i++;
            continue;
        }
        struct host *h = &W.hosts[W.uploads[i].host];
        char who[32];
        snprintf(who, sizeof(who), "replica %u", h->id);
        for (size_t k = 0; k < W.uploads[i].n; k++) {
            store_put(W.uploads[i].recs[k], who);
            repl_rec_unref(W.uploads[i].recs[k]);
        }
        uint64_t to = W.uploads[i].recs[W.uploads[i].n - 1]->lsn;
        if (h->up && h->incarnation == W.uploads[i].inc && h->rep != NULL)
            repl_replica_uploaded(h->rep, to, W.now);
        free(W.uploads[i].recs);
        W.uploads[i] = W.uploads[--W.nuploads];
    }
}

/* A leader uploads what is durable, as its uploader would. */
static void leader_upload(struct inst *in)
{
    struct repl_leader_info li;
    repl_leader_get_info(in->l, &li);
    if (li.state != REPL_LEADER_ACTIVE || li.durable <= li.base)
        return;
    for (uint64_t x = li.base + 1; x <= li.durable; x++)
        store_put(repl_leader_record(in->l, x), "a leader");
    repl_leader_uploaded(in->l, li.durable);
}

static void step_faults(void)
{
    struct params *p = &W.p;
    for (unsigned i = 0; i < NHOSTS; i++) {
        struct host *h = &W.hosts[i];
        if (h->up && chance(p->crash))
            host_crash(h);
        else if (!h->up && chance(p->restart))
            host_restart(h);
    }
    if (chance(p->partition)) {
        unsigned a = (unsigned)rnd_below(NHOSTS), b = (unsigned)rnd_below(NHOSTS);
        if (a != b) {
            W.hosts[a].up_blocked[b] = true;
            stats.cuts_changing += W.phase != MEMB_STABLE;
            vlog("link %u -> %u cut", a, b);
        }
    }
    if (chance(p->split)) {
        /* Two sides: a minority of 1..3 hosts cut off from the rest, the way
         * a switch or a firewall splits a cluster. */
        bool side[NHOSTS] = {0};
        unsigned n = 1 + (unsigned)rnd_below(3);
        for (unsigned k = 0; k < n; k++)
            side[rnd_below(NHOSTS)] = true;
        for (unsigned a = 0; a < NHOSTS; a++)
            for (unsigned b = 0; b < NHOSTS; b++)
                if (side[a] != side[b])
                    W.hosts[a].up_blocked[b] = true;
        stats.cuts_changing += W.phase != MEMB_STABLE;
        vlog("cluster split");
        /* Someone on the other side of the old leader may take over. */
        struct host *h = &W.hosts[rnd_below(NHOSTS)];
        if (h->up)
            leader_start(h);
    }
    if (chance(p->heal))
        for (unsigned i = 0; i < NHOSTS; i++)
            memset(W.hosts[i].up_blocked, 0, sizeof(W.hosts[i].up_blocked));
    if (chance(p->lead)) {
        struct host *h = &W.hosts[rnd_below(NHOSTS)];
        if (h->up)
            leader_start(h);
    }
}

/* ---- membership changes (the operator and each host's SIGHUP) ---------- */

static bool in_set(const uint32_t *set, uint32_t id)
{
    for (unsigned i = 0; i < NREPL; i++)
        if (set[i] == id)
            return true;
    return false;
}

/* Version v + 1: 1 or 2 (sometimes 3) members replaced by hosts outside. */
static void change_start(void)
{
    const uint32_t *cur = W.sets[W.version];
    uint32_t *next = W.sets[W.version + 1];
    uint32_t out[NHOSTS];
    unsigned nout = 0;
    for (uint32_t id = 1; id < NHOSTS; id++)
        if (!in_set(cur, id))
            out[nout++] = id;
    unsigned k = chance(0.15) ? 3 : 1 + (unsigned)rnd_below(2);
    if (k > nout)
        k = nout;
    memcpy(next, cur, NREPL * sizeof(*next));
    bool replaced[NREPL] = {0};
    for (unsigned j = 0; j < k; j++) {
        unsigned at;
        do
            at = (unsigned)rnd_below(NREPL);
        while (replaced[at]);
        unsigned o = (unsigned)rnd_below(nout);
        replaced[at] = true;
        next[at] = out[o];
        out[o] = out[--nout];
    }
    W.version++;
    W.phase = MEMB_ADOPTING;
    W.changes_started++;
    stats.changes_started++;
    char a[32], b[32];
    vlog("membership change to version %" PRIu64 ": %s -> %s", W.version, mask_str(set_mask(cur, NREPL), a),
         mask_str(set_mask(next, NREPL), b));
}

static void host_adopt(struct host *h)
{
    h->version = W.version;
    h->joint = true;
    vlog("host %u adopts version %" PRIu64 " (joint)", h->id, h->version);
}

/* Every replica of either set that knows the object (a promise or records)
 * heard of a record made durable under `v` (it was by a joint leader, which
 * also fenced every leader of an older version). Only replicas of these two
 * sets are asked: one removed by an earlier change hears from no leader. */
static bool settled(uint64_t v)
{
    for (uint32_t id = 1; id < NHOSTS; id++) {
        if (!in_set(W.sets[v], id) && !in_set(W.sets[v - 1], id))
            continue;
        struct host *h = &W.hosts[id];
        if (!h->up)
            return false;
        struct repl_replica_info ri;
        repl_replica_get_info(h->rep, &ri);
        bool knows = ri.promised.n != 0 || ri.last > 0;
        if (knows && repl_epoch_version(ri.commit_origin) < v)
            return false;
    }
    return true;
}

static void step_membership(void)
{
    bool all = true;
    stats.steps_changing += W.phase != MEMB_STABLE;
    switch (W.phase) {
    case MEMB_STABLE:
        if (!W.healing && W.version < VERSIONS_MAX && chance(W.p.change))
            change_start();
        return;
    case MEMB_ADOPTING:
        for (unsigned i = 0; i < NHOSTS; i++) {
            struct host *h = &W.hosts[i];
            if (h->version < W.version && chance(W.p.adopt))
                host_adopt(h);
            all = all && h->version == W.version && h->up;
        }
        if (all && settled(W.version)) {
            W.phase = MEMB_COMPLETING;
            vlog("version %" PRIu64 " settled: the transition completes", W.version);
        }
        return;
    case MEMB_COMPLETING:
        for (unsigned i = 0; i < NHOSTS; i++) {
            struct host *h = &W.hosts[i];
            if (h->joint && chance(W.p.adopt)) {
                h->joint = false;
                vlog("host %u drops the previous members of version %" PRIu64, h->id, h->version);
            }
            all = all && !h->joint;
        }
        if (all) {
            W.phase = MEMB_STABLE;
            W.changes_completed++;
            stats.changes_completed++;
        }
        return;
    }
}

/* What failure detection will do: no live leader for a while, one starts. */
static void step_takeover(void)
{
    for (unsigned i = 0; i < NHOSTS; i++)
        if (W.hosts[i].up && W.hosts[i].lead != NULL && !W.hosts[i].lead->deposed)
            return;
    if (!chance(0.02))
        return;
    struct host *h = &W.hosts[W.healing ? W.heal_host : rnd_below(NHOSTS)];
    if (h->up)
        leader_start(h);
}

static void step_leaders(void)
{
    for (unsigned i = 0; i < NHOSTS; i++) {
        struct host *h = &W.hosts[i];
        if (!h->up || h->lead == NULL)
            continue;
        struct inst *in = h->lead;
        if (in->deposed) {
            if (chance(0.02) && (!W.healing || h->id == W.heal_host))
                leader_start(h); /* try again, above whoever deposed us */
            continue;
        }
        /* The runtime ticks only leaders that are not idle: a tick of an
         * idle one must do nothing. */
        bool idle = repl_leader_idle(in->l);
        uint64_t sent = sends;
        repl_leader_tick(in->l, W.now);
        if (idle && (sends != sent || in->deposed))
            fail("host %u: a tick of an idle leader %s", h->id, in->deposed ? "deposed it" : "sent messages");
        stats.idle_ticks += idle;
        if (in->deposed || h->lead != in)
            continue;
        struct repl_leader_info li;
        repl_leader_get_info(in->l, &li);
        if (li.state == REPL_LEADER_ACTIVE && in->barrier_due) {
            if (chance(0.3)) {
                in->barrier_due = false;
                repl_leader_append(in->l, make_rec(li.last + 1, li.epoch, 'B'), W.now);
                repl_leader_flush(in->l, W.now);
            }
        } else if (li.state == REPL_LEADER_ACTIVE && chance(W.p.write) && li.last < LSN_MAX - 64 &&
                   li.last - li.durable < W.p.window) {
            repl_leader_append(in->l, make_rec(li.last + 1, li.epoch, 'W'), W.now);
            if (chance(0.7)) /* sometimes a batch of two or more */
                repl_leader_flush(in->l, W.now);
        } else if (li.state == REPL_LEADER_ACTIVE && chance(W.p.read) && in->nreads < 32) {
            struct read r = {.last = li.last, .acked_before = W.max_acked};
            r.round = repl_leader_read_round(in->l, W.now);
            in->reads[in->nreads++] = r;
        }
        if (!in->deposed && chance(W.p.upload))
            leader_upload(in);
    }
}

/* ---- the invariants ----------------------------------------------------- */

static void check(void)
{
    /* 1: acknowledged and not in storage: synced on a quorum of each
     * replica set of the leader that acknowledged it */
    for (uint64_t lsn = W.store_end + 1; lsn <= W.max_acked && !failed; lsn++) {
        if (W.acked[lsn] == NULL) {
            fail("acknowledged records have a gap at lsn %" PRIu64, lsn);
            break;
        }
        uint32_t holders = 0;
        for (unsigned i = 1; i < NHOSTS; i++) {
            struct repl_rec *r = repl_replica_record(W.hosts[i].disk, lsn);
            if (r != NULL && same(r, W.acked[lsn]))
                holders |= 1u << i;
        }
        for (unsigned k = 0; k < 2 && !failed; k++) {
            uint32_t set = W.acked_sets[lsn][k];
            unsigned n = (unsigned)__builtin_popcount(holders & set);
            char a[32], b[32];
            if (set != 0 && n < QUORUM)
                fail("acknowledged lsn %" PRIu64 " is synced on %u replicas of the %s set of its leader (%s; held"
                     " by %s) and not in storage", lsn, n, k == 0 ? "replica" : "old", mask_str(set, a),
                     mask_str(holders, b));
        }
    }
    /* 3: replicas agree with the acknowledged records up to their commit */
    for (unsigned i = 1; i < NHOSTS && !failed; i++) {
        struct host *h = &W.hosts[i];
        if (h->rep == NULL)
            continue;
        struct repl_replica_info ri;
        repl_replica_get_info(h->rep, &ri);
        if (ri.commit > W.max_acked && ri.commit > W.store_end)
            fail("replica %u believes %" PRIu64 " committed; only %" PRIu64 " acknowledged", h->id, ri.commit,
                 W.max_acked);
        for (uint64_t lsn = ri.base + 1; lsn <= ri.commit && lsn <= ri.last && !failed; lsn++) {
            struct repl_rec *r = repl_replica_record(h->rep, lsn);
            if (W.acked[lsn] == NULL || !same(r, W.acked[lsn]))
                fail("replica %u holds other bytes than acknowledged at committed lsn %" PRIu64, h->id, lsn);
        }
    }
}

/* ---- a seed ------------------------------------------------------------- */

static void world_init(uint64_t seed)
{
    memset(&W.hosts, 0, sizeof(W.hosts));
    W.seed = seed;
    rng_state = seed * 0x2545f4914f6cdd1dull + 1;
    W.now = 1000;
    W.step = 0;
    W.healing = false;
    W.acked_in_heal = 0;
    W.max_acked = W.store_end = 0;
    W.nepochs = 0;
    struct params *p = &W.p;
    p->drop = chance(0.3) ? 0 : (double)rnd_below(200) / 1000;
    p->dup = (double)rnd_below(100) / 1000;
    p->delay_max = 1 + (unsigned)rnd_below(30);
    p->sync_max = 1 + (unsigned)rnd_below(10);
    p->crash = (double)rnd_below(30) / 10000;
    p->restart = 0.002 + (double)rnd_below(20) / 1000;
    p->partition = (double)rnd_below(20) / 10000;
    p->split = (double)rnd_below(10) / 10000;
    p->heal = 0.001 + (double)rnd_below(10) / 1000;
    p->lead = (double)rnd_below(20) / 10000;
    /* from one write every few hundred steps to one every other step */
    p->write = 0.5 / (double)(1u << rnd_below(8));
    p->read = 0.5 / (double)(1u << rnd_below(6));
    p->window = 1 + (unsigned)rnd_below(16);
    p->upload = (double)rnd_below(50) / 1000;
    /* a change every few hundred to few thousand steps; hosts load it within
     * tens to hundreds */
    p->change = 1.0 / (double)(200 + rnd_below(1500));
    p->adopt = 1.0 / (double)(5 + rnd_below(200));
    W.version = 1;
    W.phase = MEMB_STABLE;
    W.changes_started = W.changes_completed = 0;
    for (uint32_t i = 0; i < NREPL; i++)
        W.sets[1][i] = 1 + i;
    for (unsigned i = 0; i < NHOSTS; i++) {
        struct host *h = &W.hosts[i];
        h->id = i;
        h->up = true;
        h->version = 1;
        if (is_replica(i)) {
            h->rep = replica_new(h);
            h->disk = replica_new(h);
        }
    }
    leader_start(&W.hosts[rnd_below(NHOSTS)]);
}

static void world_free(void)
{
    for (unsigned i = 0; i < NHOSTS; i++) {
        struct host *h = &W.hosts[i];
        leader_drop(h);
        repl_replica_destroy(h->rep);
        repl_replica_destroy(h->disk);
        for (size_t k = 0; k < h->nops; k++)
            jop_free(&h->ops[k]);
        free(h->ops);
    }
    for (size_t i = 0; i < W.ndead; i++) {
        repl_leader_destroy(W.dead[i]->l);
        free(W.dead[i]);
    }
    W.ndead = 0;
    for (size_t i = 0; i < W.nnet; i++)
        net_free(&W.net[i]);
    W.nnet = 0;
    for (size_t i = 0; i < W.nuploads; i++) {
        for (size_t k = 0; k < W.uploads[i].n; k++)
            repl_rec_unref(W.uploads[i].recs[k]);
        free(W.uploads[i].recs);
    }
    W.nuploads = 0;
    for (size_t i = 0; i <= LSN_MAX; i++) {
        repl_rec_unref(W.acked[i]);
        repl_rec_unref(W.store[i]);
        W.acked[i] = W.store[i] = NULL;
    }
}

static void heal(void)
{
    W.healing = true;
    memset(&W.p, 0, sizeof(W.p));
    W.p.delay_max = 5;
    W.p.sync_max = 3;
    W.p.write = 0.3;
    W.p.read = 0.1;
    W.p.window = 16;
    W.p.upload = 0.01;
    W.p.adopt = 0.01; /* a transition under way completes; no new one starts */
    for (unsigned i = 0; i < NHOSTS; i++) {
        struct host *h = &W.hosts[i];
        memset(h->up_blocked, 0, sizeof(h->up_blocked));
        if (!h->up)
            host_restart(h);
        if (h->version < W.version)
            host_adopt(h); /* the healing leader's config is not stale */
    }
    for (unsigned i = 0; i < NHOSTS; i++)
        leader_drop(&W.hosts[i]);
    W.heal_host = (unsigned)rnd_below(NHOSTS);
    leader_start(&W.hosts[W.heal_host]);
}

static void one_step(void)
{
    W.now++;
    W.step++;
    step_network();
    for (unsigned i = 0; i < NHOSTS; i++) {
        struct host *h = &W.hosts[i];
        if (h->up && h->sync_at != 0 && h->sync_at <= W.now)
            host_sync(h);
        if (h->up && h->rep != NULL)
            repl_replica_tick(h->rep, W.now);
    }
    step_uploads();
    step_leaders();
    step_membership();
    if (!W.healing)
        step_faults();
    step_takeover();
    check();
}

static bool run_seed(uint64_t seed, uint64_t steps)
{
    world_init(seed);
    uint64_t heal_steps = 1500;
    for (uint64_t s = 0; s < steps && !failed; s++) {
        if (s == steps - heal_steps)
            heal();
        one_step();
    }
    if (!failed && W.acked_in_heal == 0)
        fail("no record acknowledged in the %" PRIu64 " steps after healing (liveness)", heal_steps);
    stats.seeds_changed += W.changes_started > 0;
    stats.seeds_completed += W.changes_completed > 0;
    if (W.verbose)
        printf("seed %" PRIu64 ": acked %" PRIu64 ", stored %" PRIu64 ", membership changes %u started, %u"
               " completed\n", seed, W.max_acked, W.store_end, W.changes_started, W.changes_completed);
    world_free();
    return !failed;
}

int main(int argc, char **argv)
{
    uint64_t from = 1, seeds = 100, steps = 6000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seeds") == 0 && i + 1 < argc)
            seeds = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc)
            from = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            from = strtoull(argv[++i], NULL, 10);
            seeds = 1;
        } else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc)
            steps = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "-v") == 0)
            W.verbose = true;
        else {
            fprintf(stderr, "usage: sim [--seeds N] [--from S] [--seed S] [--steps K] [-v]\n");
            return 2;
        }
    }
    if (steps < 2000)
        steps = 2000;
    for (uint64_t s = from; s < from + seeds; s++) {
        if (!run_seed(s, steps))
            return 1;
    }
    printf("sim: %" PRIu64 " seeds (%" PRIu64 "..%" PRIu64 "), %" PRIu64 " steps each: every invariant held\n", seeds,
           from, from + seeds - 1, steps);
    printf("sim: %" PRIu64 " reads released, %" PRIu64 " records acknowledged, %" PRIu64 " recoveries, %" PRIu64 " leaders deposed by an epoch"
           " and %" PRIu64 " by a timeout, %" PRIu64 " crashes losing %" PRIu64 " unsynced journal writes,"
           " %" PRIu64 " messages dropped and %" PRIu64 " duplicated, %" PRIu64 " uploads by replicas,"
           " %" PRIu64 " replica logs reset to storage, %" PRIu64 " conflicting suffixes cut,"
           " %" PRIu64 " ticks of idle leaders (each did nothing)\n",
           stats.reads, stats.acked, stats.recoveries, stats.deposed_epoch, stats.deposed_timeout, stats.crashes,
           stats.lost_writes, stats.dropped, stats.duplicated, stats.replica_uploads, stats.resets,
           stats.truncations, stats.idle_ticks);
    printf("sim: %" PRIu64 " membership changes started and %" PRIu64 " completed (seeds with one started: %" PRIu64
           ", completed: %" PRIu64 "), %" PRIu64 " leaders joint, %" PRIu64 " refused to lead on a stale config;"
           " while changing (%" PRIu64 "%% of steps): %" PRIu64 " crashes, %" PRIu64 " links cut or splits\n",
           stats.changes_started, stats.changes_completed, stats.seeds_changed, stats.seeds_completed,
           stats.joint_leaders, stats.stale_refusals, stats.steps_changing * 100 / (seeds * steps),
           stats.crashes_changing, stats.cuts_changing);
    return 0;
}
