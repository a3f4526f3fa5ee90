/*
 * quorum.c: the replication protocol's core, one object's leader and replica
 * as pure state machines (see "The quorum protocol core" in replicate.h for
 * the rules and why they are these). Nothing here does I/O or reads a clock;
 * the transport (peer.c), the runtime's glue and the simulator (tests/sim/)
 * drive it.
 *
 * Invariants the code keeps (and the simulator checks from outside):
 *   - a replica's log, base+1..last, is a prefix of the log of the leader of
 *     `accepted`, its last accepted epoch; it acknowledges `match` to that
 *     leader only for records whose journal write is synced and which no
 *     pending journal write may still change;
 *   - a leader reports a record durable only when `quorum` replicas matched
 *     it in its own epoch, at or past its barrier;
 *   - a deposed leader calls nothing any more.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replicate.h"
#include "sdk_util.h"

/* ---- records ----------------------------------------------------------- */

struct repl_rec *repl_rec_create(uint64_t lsn, struct repl_epoch origin, const void *data, uint32_t len)
{
    struct repl_rec *r = sdk_xmalloc(sizeof(*r) + len);
    r->refs = 1;
    r->len = len;
    r->lsn = lsn;
    r->origin = origin;
    if (data != NULL && len > 0)
        memcpy(r->data, data, len);
    return r;
}

struct repl_rec *repl_rec_ref(struct repl_rec *r)
{
    r->refs++;
    return r;
}

void repl_rec_unref(struct repl_rec *r)
{
    if (r != NULL && --r->refs == 0)
        free(r);
}

static uint64_t rec_bytes(const struct repl_rec *r) { return sizeof(*r) + r->len; }

/* ---- a log: records base+1..last in a ring ------------------------------ */

struct log {
    struct repl_rec **v;
    size_t cap, head, n;
    uint64_t base;
    struct repl_epoch base_origin;
    uint64_t bytes; /* records and the ring */
};

static uint64_t log_last(const struct log *g) { return g->base + g->n; }

static struct repl_rec *log_at(const struct log *g, uint64_t lsn)
{
    if (lsn <= g->base || lsn > log_last(g))
        return NULL;
    return g->v[(g->head + (lsn - g->base - 1)) % g->cap];
}

/* The origin of the record at lsn, which must be base..last. */
static struct repl_epoch log_origin(const struct log *g, uint64_t lsn)
{
    return lsn == g->base ? g->base_origin : log_at(g, lsn)->origin;
}

static void log_push(struct log *g, struct repl_rec *r)
{
    if (g->n == g->cap) {
        size_t ncap = g->cap ? g->cap * 2 : 64;
        struct repl_rec **nv = sdk_xmalloc(ncap * sizeof(*nv));
        for (size_t i = 0; i < g->n; i++)
            nv[i] = g->v[(g->head + i) % g->cap];
        free(g->v);
        g->bytes += (ncap - g->cap) * sizeof(*nv);
        g->v = nv;
        g->cap = ncap;
        g->head = 0;
    }
    g->v[(g->head + g->n) % g->cap] = repl_rec_ref(r);
    g->n++;
    g->bytes += rec_bytes(r);
}

/* Drops lsn and everything after it. */
static void log_cut(struct log *g, uint64_t lsn)
{
    while (g->n > 0 && log_last(g) >= lsn) {
        struct repl_rec *r = g->v[(g->head + g->n - 1) % g->cap];
        g->bytes -= rec_bytes(r);
        repl_rec_unref(r);
        g->n--;
    }
}

/* Drops everything up to lsn (which is in storage, named by origin). */
static void log_drop_to(struct log *g, uint64_t lsn, struct repl_epoch origin)
{
    if (lsn <= g->base)
        return;
    while (g->n > 0 && g->base < lsn) {
        struct repl_rec *r = g->v[g->head];
        g->bytes -= rec_bytes(r);
        repl_rec_unref(r);
        g->head = (g->head + 1) % g->cap;
        g->n--;
        g->base++;
    }
    g->base = lsn; /* past the end: the log is empty from here */
    g->base_origin = origin;
}

static void log_free(struct log *g)
{
    log_cut(g, 0);
    free(g->v);
    memset(g, 0, sizeof(*g));
}

/* recs[0..n) continue the log at prev + 1, one lsn each. */
static bool recs_contiguous(struct repl_rec *const *recs, uint32_t n, uint64_t prev)
{
    for (uint32_t i = 0; i < n; i++)
        if (recs[i] == NULL || recs[i]->lsn != prev + 1 + i)
            return false;
    return true;
}

int repl_quorum_check(unsigned nreplicas, unsigned quorum, char *err, size_t errlen)
{
    if (nreplicas < 1 || nreplicas > REPL_REPLICAS_MAX) {
        snprintf(err, errlen, "replicas = %u: must be 1..%u", nreplicas, REPL_REPLICAS_MAX);
        return -1;
    }
    if (quorum > nreplicas || quorum <= nreplicas / 2) {
        snprintf(err, errlen,
                 "quorum = %u with replicas = %u: a quorum must be more than half of the replicas and at most all"
                 " of them, or two leaders could each get one (try quorum = %u)",
                 quorum, nreplicas, nreplicas / 2 + 1);
        return -1;
    }
    return 0;
}

/* ======================================================================== */
/* replica                                                                  */
/* ======================================================================== */

struct pending_op {
    uint64_t seq;
    uint64_t upto;          /* the log's end once this op is applied */
    uint64_t first_changed; /* the lowest lsn it may change; UINT64_MAX: none */
};

struct repl_replica {
    struct repl_replica_config cfg;
    struct repl_epoch promised;
    struct repl_epoch accepted; /* the last leader whose append matched */
    uint64_t verified;          /* our log equals that leader's up to here */
    struct log log;
    uint64_t commit;

    uint64_t seq;      /* last op issued */
    uint64_t dur_end;  /* the synced log's end */
    struct pending_op *ops;
    size_t nops, ops_cap;

    uint64_t promise_seq; /* the op that made `promised` durable */
    uint32_t promise_to;  /* who waits for the promise answer; UINT32_MAX: nobody */

    bool uploading;
    uint64_t base_moved_ms;
    uint64_t round; /* of the latest append taken in the promised epoch */
};

struct repl_replica *repl_replica_create(const struct repl_replica_config *cfg)
{
    struct repl_replica *r = sdk_xcalloc(1, sizeof(*r));
    r->cfg = *cfg;
    r->promise_to = UINT32_MAX;
    return r;
}

void repl_replica_destroy(struct repl_replica *r)
{
    if (r == NULL)
        return;
    log_free(&r->log);
    free(r->ops);
    free(r);
}

void repl_replica_get_info(const struct repl_replica *r, struct repl_replica_info *out)
{
    uint64_t match = r->dur_end;
    for (size_t i = 0; i < r->nops; i++)
        if (r->ops[i].first_changed != UINT64_MAX && r->ops[i].first_changed - 1 < match)
            match = r->ops[i].first_changed - 1;
    *out = (struct repl_replica_info){
        .promised = r->promised,
        .base_origin = r->log.base_origin,
        .seq = r->seq,
        .base = r->log.base,
        .last = log_last(&r->log),
        .match = match,
        .commit = r->commit,
        .commit_origin = r->commit > r->log.base && r->commit <= log_last(&r->log) ? log_origin(&r->log, r->commit)
                                                                                   : r->log.base_origin,
        .bytes = r->log.bytes + r->ops_cap * sizeof(*r->ops) + sizeof(*r),
    };
}

struct repl_rec *repl_replica_record(const struct repl_replica *r, uint64_t lsn) { return log_at(&r->log, lsn); }

/* What we may acknowledge to the leader of `accepted`: synced, not about to
 * change, and verified against its log (a stale suffix past what its appends
 * covered is not its). */
static uint64_t replica_match(const struct repl_replica *r)
{
    struct repl_replica_info in;
    repl_replica_get_info(r, &in);
#if REPL_SIM_PLANTED_BUG == 2
    return in.match; /* tests/sim: the checker must catch acking a suffix no append verified */
#endif
    return in.match < r->verified ? in.match : r->verified;
}

static void replica_send(struct repl_replica *r, uint8_t type, uint32_t to, bool ok, uint64_t lsn)
{
    struct repl_msg m = {.type = type, .ok = ok, .from = r->cfg.host, .to = to, .epoch = r->promised, .lsn = lsn,
                         .round = r->round};
    memcpy(m.object, r->cfg.object, sizeof(m.object));
    m.base_lsn = r->log.base;
    m.base_origin = r->log.base_origin;
    r->cfg.io->send(r->cfg.arg, &m);
}

static void replica_issue(struct repl_replica *r, struct repl_op *op, uint64_t first_changed)
{
    op->seq = ++r->seq;
    if (r->nops == r->ops_cap) {
        r->ops_cap = r->ops_cap ? r->ops_cap * 2 : 16;
        r->ops = sdk_xrealloc(r->ops, r->ops_cap * sizeof(*r->ops));
    }
    r->ops[r->nops++] = (struct pending_op){op->seq, log_last(&r->log), first_changed};
    r->cfg.io->journal(r->cfg.arg, op);
}

static void replica_promise(struct repl_replica *r, struct repl_epoch e)
{
    r->promised = e;
    r->round = 0;
    struct repl_op op = {.type = REPL_OP_PROMISE, .epoch = e};
    replica_issue(r, &op, UINT64_MAX);
    r->promise_seq = op.seq;
}

static void replica_answer_promise(struct repl_replica *r)
{
    struct repl_msg m = {.type = REPL_MSG_PROMISE, .ok = true, .from = r->cfg.host, .to = r->promise_to,
                         .epoch = r->promised};
    memcpy(m.object, r->cfg.object, sizeof(m.object));
    m.lsn = log_last(&r->log);
    m.origin = log_origin(&r->log, m.lsn);
    m.base_lsn = r->log.base;
    m.base_origin = r->log.base_origin;
    r->promise_to = UINT32_MAX;
    r->cfg.io->send(r->cfg.arg, &m);
}

static void replica_on_prepare(struct repl_replica *r, const struct repl_msg *m)
{
    int c = repl_epoch_cmp(m->epoch, r->promised);
    if (c < 0) {
        replica_send(r, REPL_MSG_PROMISE, m->from, false, log_last(&r->log));
        return;
    }
    if (c > 0)
        replica_promise(r, m->epoch);
    r->promise_to = m->from;
    if (r->promise_seq <= r->seq - r->nops) /* already synced: a repeated prepare */
        replica_answer_promise(r);
}

static void replica_on_fetch(struct repl_replica *r, const struct repl_msg *m)
{
    if (repl_epoch_cmp(m->epoch, r->promised) != 0) {
        replica_send(r, REPL_MSG_RECORDS, m->from, false, log_last(&r->log));
        return;
    }
    uint64_t prev = m->lsn - 1;
    if (m->lsn == 0 || prev < r->log.base || prev > log_last(&r->log)) {
        replica_send(r, REPL_MSG_RECORDS, m->from, false, log_last(&r->log));
        return;
    }
    struct repl_rec *batch[256];
    uint32_t n = 0;
    uint64_t bytes = 0;
    uint32_t max = r->cfg.batch_recs_max < 256 ? r->cfg.batch_recs_max : 256;
    for (uint64_t lsn = m->lsn; lsn <= log_last(&r->log) && n < max; lsn++) {
        struct repl_rec *x = log_at(&r->log, lsn);
        if (n > 0 && bytes + x->len > r->cfg.batch_bytes_max)
            break;
        batch[n++] = x;
        bytes += x->len;
    }
    struct repl_msg a = {.type = REPL_MSG_RECORDS, .ok = true, .from = r->cfg.host, .to = m->from,
                         .epoch = r->promised, .lsn = prev, .origin = log_origin(&r->log, prev),
                         .base_lsn = r->log.base, .base_origin = r->log.base_origin, .nrecs = n, .recs = batch};
    memcpy(a.object, r->cfg.object, sizeof(a.object));
    r->cfg.io->send(r->cfg.arg, &a);
}

/* Where a leader should resume after a mismatch at prev: before the run of
 * records of the same origin as ours at prev (Raft's fast back-up). */
static uint64_t replica_hint(const struct repl_replica *r, uint64_t prev)
{
    uint64_t last = log_last(&r->log);
    if (prev > last)
        return last;
    struct repl_epoch o = log_at(&r->log, prev)->origin;
    uint64_t lsn = prev;
    while (lsn > r->log.base + 1 && repl_epoch_cmp(log_at(&r->log, lsn - 1)->origin, o) == 0)
        lsn--;
    return lsn - 1;
}

static void replica_base(struct repl_replica *r, uint64_t lsn, struct repl_epoch origin, bool reset,
                         uint64_t now_ms)
{
    uint64_t old_base = r->log.base;
    if (reset)
        log_cut(&r->log, 0);
    log_drop_to(&r->log, lsn, origin);
    r->base_moved_ms = now_ms;
    if (r->commit < lsn)
        r->commit = lsn;
    struct repl_op op = {.type = REPL_OP_BASE, .reset = reset, .lsn = lsn, .origin = origin};
    replica_issue(r, &op, reset ? old_base + 1 : UINT64_MAX);
}

static void replica_on_append(struct repl_replica *r, const struct repl_msg *m, uint64_t now_ms)
{
    int c = repl_epoch_cmp(m->epoch, r->promised);
    if (c < 0) {
        replica_send(r, REPL_MSG_ACK, m->from, false, log_last(&r->log));
        return;
    }
    uint64_t prev = m->lsn;
    if (UINT64_MAX - prev < m->nrecs || !recs_contiguous(m->recs, m->nrecs, prev)) {
        repl_logf(1, "replication: append from host %u with records out of order dropped", m->from);
        return;
    }
    if (c > 0)
        replica_promise(r, m->epoch);
    if (m->round > r->round)
        r->round = m->round; /* answered below or after the sync: in this epoch */
    uint64_t last = log_last(&r->log);
    bool matches = prev <= r->log.base ||
                   (prev <= last && repl_epoch_cmp(log_at(&r->log, prev)->origin, m->origin) == 0);
    if (!matches && m->base_lsn >= prev) {
        /* The leader says prev is in storage and our log disagrees with it
         * there or ends before it: all we hold is stale. */
        replica_base(r, prev, m->origin, true, now_ms);
        matches = true;
    }
    if (!matches) {
        replica_send(r, REPL_MSG_ACK, m->from, false, replica_hint(r, prev));
        return;
    }
    uint64_t end = prev + m->nrecs;
    if (repl_epoch_cmp(r->accepted, m->epoch) != 0 || r->verified < end)
        r->verified = end;
    r->accepted = m->epoch;
    uint32_t i = 0;
    for (; i < m->nrecs; i++) {
        struct repl_rec *x = m->recs[i];
        if (x->lsn <= r->log.base)
            continue;
        struct repl_rec *have = log_at(&r->log, x->lsn);
        if (have == NULL || repl_epoch_cmp(have->origin, x->origin) != 0)
            break;
    }
    bool wrote = false;
    if (i < m->nrecs) {
        uint64_t from = m->recs[i]->lsn;
        if (log_last(&r->log) == r->log.base)
            r->base_moved_ms = now_ms; /* the oldest record we hold arrives now */
        log_cut(&r->log, from);
        for (uint32_t k = i; k < m->nrecs; k++)
            log_push(&r->log, m->recs[k]);
        struct repl_op op = {.type = REPL_OP_APPEND, .lsn = from, .nrecs = m->nrecs - i, .recs = m->recs + i};
        replica_issue(r, &op, from);
        wrote = true;
    }
    uint64_t commit = m->commit_lsn < end ? m->commit_lsn : end;
    if (commit > r->commit)
        r->commit = commit;
    if (m->base_lsn > r->log.base && m->base_lsn <= end && m->base_lsn <= log_last(&r->log)) {
        replica_base(r, m->base_lsn, log_origin(&r->log, m->base_lsn), false, now_ms);
    }
    if (!wrote)
        replica_send(r, REPL_MSG_ACK, m->from, true, replica_match(r));
}

void repl_replica_receive(struct repl_replica *r, const struct repl_msg *m, uint64_t now_ms)
{
    switch (m->type) {
    case REPL_MSG_PREPARE:
        replica_on_prepare(r, m);
        break;
    case REPL_MSG_FETCH:
        replica_on_fetch(r, m);
        break;
    case REPL_MSG_APPEND:
        replica_on_append(r, m, now_ms);
        break;
    default:
        break; /* answers are the leader's */
    }
}

void repl_replica_synced(struct repl_replica *r, uint64_t seq, uint64_t now_ms)
{
    (void)now_ms;
    size_t k = 0;
    while (k < r->nops && r->ops[k].seq <= seq)
        r->dur_end = r->ops[k++].upto;
    if (k == 0)
        return;
    memmove(r->ops, r->ops + k, (r->nops - k) * sizeof(*r->ops));
    r->nops -= k;
    if (r->promise_to != UINT32_MAX && r->promise_seq <= seq)
        replica_answer_promise(r);
    /* One acknowledgement per sync, to the leader whose log ours is. */
    if (r->accepted.n != 0 && repl_epoch_cmp(r->accepted, r->promised) == 0)
        replica_send(r, REPL_MSG_ACK, r->accepted.host, true, replica_match(r));
}

void repl_replica_replay(struct repl_replica *r, const struct repl_op *op)
{
    switch (op->type) {
    case REPL_OP_PROMISE:
        if (repl_epoch_cmp(op->epoch, r->promised) > 0)
            r->promised = op->epoch;
        break;
    case REPL_OP_APPEND:
        log_cut(&r->log, op->lsn);
        for (uint32_t i = 0; i < op->nrecs; i++)
            if (op->recs[i]->lsn == log_last(&r->log) + 1)
                log_push(&r->log, op->recs[i]);
        break;
    case REPL_OP_BASE:
        if (op->reset)
            log_cut(&r->log, 0);
        log_drop_to(&r->log, op->lsn, op->origin);
        if (r->commit < op->lsn)
            r->commit = op->lsn;
        break;
    default:
        break;
    }
    r->seq = op->seq;
    r->promise_seq = 0;
    r->dur_end = log_last(&r->log);
}

void repl_replica_uploaded(struct repl_replica *r, uint64_t lsn, uint64_t now_ms)
{
    r->uploading = false;
    r->base_moved_ms = now_ms; /* a failure waits a whole timeout again too */
    if (lsn <= r->log.base || lsn > log_last(&r->log))
        return;
    replica_base(r, lsn, log_at(&r->log, lsn)->origin, false, now_ms);
}

void repl_replica_tick(struct repl_replica *r, uint64_t now_ms)
{
    if (r->uploading || r->cfg.upload_timeout_ms == 0 || r->commit <= r->log.base)
        return;
    if (now_ms - r->base_moved_ms < r->cfg.upload_timeout_ms)
        return;
    uint64_t to = r->commit < log_last(&r->log) ? r->commit : log_last(&r->log);
    if (to <= r->log.base)
        return;
    r->uploading = true;
    r->cfg.io->upload(r->cfg.arg, r->log.base + 1, to);
}

/* ======================================================================== */
/* leader                                                                   */
/* ======================================================================== */

struct peer {
    uint32_t host;
    uint8_t groups; /* GROUP_NEW, GROUP_OLD: which replica sets it is in */
    uint64_t match, next;
    uint64_t round; /* the highest read round it answered in our epoch */
    uint64_t commit_sent; /* the durable lsn our last message to it carried */
    uint64_t base_sent;   /* and the storage base */
    uint64_t sent_ms, progress_ms, nack_ms;
    uint64_t nack_hint;
    bool promised;
    uint64_t p_last, p_base;
    struct repl_epoch p_last_origin, p_base_origin;
};

#define GROUP_NEW 1u
#define GROUP_OLD 2u

struct repl_leader {
    struct repl_leader_config cfg; /* nreplicas: the peers, both sets' */
    struct peer peers[REPL_REPLICAS_MAX];
    uint8_t groups; /* GROUP_NEW, and GROUP_OLD while joint */
    enum repl_leader_state state;
    struct repl_epoch epoch;
    struct log log;
    uint64_t durable, barrier;
    uint64_t round, confirmed; /* read rounds started, and answered by a quorum */
    uint64_t round_ms;         /* when the latest round was sent (or sent again) */
    uint64_t started_ms, waiting_ms, asked_ms;
    int best;          /* the promiser whose log recovery copies */
    uint64_t fetch_to; /* its last record */
};

static void leader_send(struct repl_leader *l, struct repl_msg *m, struct peer *p, uint64_t now_ms)
{
    m->from = l->cfg.host;
    m->to = p->host;
    m->epoch = l->epoch;
    memcpy(m->object, l->cfg.object, sizeof(m->object));
    p->sent_ms = now_ms;
    l->cfg.io->send(l->cfg.arg, m);
}

static void leader_depose(struct repl_leader *l, enum repl_depose_reason why, struct repl_epoch higher)
{
    if (l->state == REPL_LEADER_DEPOSED)
        return;
    l->state = REPL_LEADER_DEPOSED;
    l->cfg.io->deposed(l->cfg.arg, why, higher);
}

static void leader_prepare(struct repl_leader *l, uint64_t now_ms)
{
    l->asked_ms = now_ms;
    for (unsigned i = 0; i < l->cfg.nreplicas; i++) {
        if (l->peers[i].promised)
            continue;
        struct repl_msg m = {.type = REPL_MSG_PREPARE};
        leader_send(l, &m, &l->peers[i], now_ms);
    }
}

struct repl_leader *repl_leader_create(const struct repl_leader_config *cfg, struct repl_epoch epoch,
                                       uint64_t now_ms)
{
    char err[256];
    if (repl_quorum_check(cfg->nreplicas, cfg->quorum, err, sizeof(err)) != 0 || epoch.n == 0)
        return NULL;
    if (cfg->nold > 0 && repl_quorum_check(cfg->nold, cfg->quorum, err, sizeof(err)) != 0)
        return NULL;
    struct repl_leader *l = sdk_xcalloc(1, sizeof(*l));
    l->cfg = *cfg;
    l->cfg.replicas = NULL;
    l->cfg.old_replicas = NULL;
    l->groups = GROUP_NEW;
    for (unsigned i = 0; i < cfg->nreplicas; i++) {
        l->peers[i].host = cfg->replicas[i];
        l->peers[i].groups = GROUP_NEW;
    }
    for (unsigned k = 0; k < cfg->nold; k++) {
        l->groups |= GROUP_OLD;
        unsigned i = 0;
        while (i < l->cfg.nreplicas && l->peers[i].host != cfg->old_replicas[k])
            i++;
        if (i == l->cfg.nreplicas) {
            if (i == REPL_REPLICAS_MAX) {
                free(l);
                return NULL;
            }
            l->peers[i].host = cfg->old_replicas[k];
            l->cfg.nreplicas++;
        }
        l->peers[i].groups |= GROUP_OLD;
    }
    if (l->cfg.batch_recs_max == 0)
        l->cfg.batch_recs_max = 1;
    if (l->cfg.window_recs == 0)
        l->cfg.window_recs = 1;
    l->epoch = epoch;
    l->state = REPL_LEADER_PREPARING;
    l->started_ms = now_ms;
    l->best = -1;
    leader_prepare(l, now_ms);
    return l;
}

void repl_leader_destroy(struct repl_leader *l)
{
    if (l == NULL)
        return;
    log_free(&l->log);
    free(l);
}

void repl_leader_get_info(const struct repl_leader *l, struct repl_leader_info *out)
{
    memset(out, 0, sizeof(*out));
    out->state = l->state;
    out->epoch = l->epoch;
    out->base = l->log.base;
    out->last = log_last(&l->log);
    out->durable = l->durable;
    out->barrier = l->barrier;
    out->round = l->round;
    out->confirmed = l->confirmed;
    for (unsigned i = 0; i < l->cfg.nreplicas; i++)
        out->match[i] = l->peers[i].match;
    out->bytes = l->log.bytes + sizeof(*l);
}

struct repl_rec *repl_leader_record(const struct repl_leader *l, uint64_t lsn) { return log_at(&l->log, lsn); }

static struct peer *leader_peer(struct repl_leader *l, uint32_t host)
{
    for (unsigned i = 0; i < l->cfg.nreplicas; i++)
        if (l->peers[i].host == host)
            return &l->peers[i];
    return NULL;
}

/* One APPEND to p from p->next (nothing when p->next > last: a heartbeat
 * from its match). */
static void leader_send_append(struct repl_leader *l, struct peer *p, uint64_t now_ms)
{
    struct repl_rec *batch[256];
    uint64_t last = log_last(&l->log);
    if (p->next <= l->log.base)
        p->next = l->log.base + 1;
    uint64_t from = p->next;
    uint32_t n = 0;
    if (from > last) {
        from = p->match > l->log.base ? p->match + 1 : l->log.base + 1;
        if (from > last + 1)
            from = last + 1;
    } else {
        uint32_t max = l->cfg.batch_recs_max < 256 ? l->cfg.batch_recs_max : 256;
        uint64_t bytes = 0;
        for (uint64_t lsn = from; lsn <= last && n < max; lsn++) {
            struct repl_rec *x = log_at(&l->log, lsn);
            if (n > 0 && bytes + x->len > l->cfg.batch_bytes_max)
                break;
            batch[n++] = x;
            bytes += x->len;
        }
        p->next = from + n;
    }
    struct repl_msg m = {.type = REPL_MSG_APPEND, .ok = true, .lsn = from - 1,
                         .origin = log_origin(&l->log, from - 1), .base_lsn = l->log.base,
                         .base_origin = l->log.base_origin, .commit_lsn = l->durable, .round = l->round,
                         .nrecs = n, .recs = batch};
    p->commit_sent = l->durable;
    p->base_sent = l->log.base;
    leader_send(l, &m, p, now_ms);
}

/* Sends what p has not been sent, up to window_recs past what it matched
 * (or past storage's base: what it has there is not ours to count). */
static void leader_pump(struct repl_leader *l, struct peer *p, uint64_t now_ms)
{
    uint64_t from = p->match > l->log.base ? p->match : l->log.base;
    while (p->next <= log_last(&l->log) && p->next <= from + l->cfg.window_recs)
        leader_send_append(l, p, now_ms);
}

static void leader_pump_all(struct repl_leader *l, uint64_t now_ms)
{
    for (unsigned i = 0; i < l->cfg.nreplicas; i++)
        leader_pump(l, &l->peers[i], now_ms);
}

/* v[0..n) in descending order (n is at most REPL_REPLICAS_MAX): v[q - 1] is
 * then what q replicas have reached. */
static void sort_desc(uint64_t *v, unsigned n)
{
    for (unsigned i = 1; i < n; i++)
        for (unsigned k = i; k > 0 && v[k] > v[k - 1]; k--) {
            uint64_t t = v[k];
            v[k] = v[k - 1];
            v[k - 1] = t;
        }
}

/* What `quorum` peers of every replica set have reached, of v[i] per peer:
 * while joint, a quorum of the old set and one of the new. `q` is the
 * quorum (the planted bugs of tests/sim pass less). */
static uint64_t quorum_value(const struct repl_leader *l, const uint64_t *v, unsigned q)
{
    uint64_t least = UINT64_MAX;
    for (uint8_t g = GROUP_NEW; g <= GROUP_OLD; g <<= 1) {
        if (!(l->groups & g))
            continue;
        uint64_t m[REPL_REPLICAS_MAX];
        unsigned n = 0;
        for (unsigned i = 0; i < l->cfg.nreplicas; i++)
            if (l->peers[i].groups & g)
                m[n++] = v[i];
        sort_desc(m, n);
        uint64_t x = q >= 1 && q <= n ? m[q - 1] : 0;
        if (x < least)
            least = x;
    }
    return least;
}

static void leader_update_durable(struct repl_leader *l, uint64_t now_ms)
{
    uint64_t m[REPL_REPLICAS_MAX];
    for (unsigned i = 0; i < l->cfg.nreplicas; i++)
        m[i] = l->peers[i].match;
    uint64_t cand = quorum_value(l, m, l->cfg.quorum);
#if REPL_SIM_PLANTED_BUG == 1
    cand = quorum_value(l, m, l->cfg.quorum - 1); /* tests/sim: the checker must catch acking one replica short */
#endif
    if (cand < l->barrier || cand <= l->durable)
        return;
    l->durable = cand;
    l->waiting_ms = now_ms;
    l->cfg.io->durable(l->cfg.arg, cand);
}

/* Recovery's end: the chosen log is ours; the caller's barrier goes after it. */
static void leader_activate(struct repl_leader *l, uint64_t now_ms)
{
    uint64_t last = log_last(&l->log);
    size_t n = l->log.n;
    struct repl_rec **recs = sdk_xmalloc((n ? n : 1) * sizeof(*recs));
    for (size_t i = 0; i < n; i++)
        recs[i] = log_at(&l->log, l->log.base + 1 + i);
    l->barrier = last + 1;
    l->durable = l->log.base; /* in storage: durable whatever happens */
    l->state = REPL_LEADER_ACTIVE;
    l->waiting_ms = now_ms;
    for (unsigned i = 0; i < l->cfg.nreplicas; i++) {
        struct peer *p = &l->peers[i];
        p->match = 0;
        p->next = l->barrier;
        p->progress_ms = now_ms;
    }
    l->cfg.io->recovered(l->cfg.arg, l->log.base, l->log.base_origin, recs, n);
    free(recs);
}

static void leader_fetch(struct repl_leader *l, uint64_t now_ms)
{
    if (log_last(&l->log) >= l->fetch_to) {
        leader_activate(l, now_ms);
        return;
    }
    l->asked_ms = now_ms;
    struct repl_msg m = {.type = REPL_MSG_FETCH, .lsn = log_last(&l->log) + 1};
    leader_send(l, &m, &l->peers[l->best], now_ms);
}

static void leader_choose(struct repl_leader *l, uint64_t now_ms)
{
    int best = -1;
    uint64_t base = 0;
    struct repl_epoch base_origin = {0, 0};
    for (unsigned i = 0; i < l->cfg.nreplicas; i++) {
        struct peer *p = &l->peers[i];
        if (!p->promised)
            continue;
        if (best < 0) {
            best = (int)i;
        } else {
            struct peer *b = &l->peers[best];
            int c = repl_epoch_cmp(p->p_last_origin, b->p_last_origin);
            if (c > 0 || (c == 0 && p->p_last > b->p_last))
                best = (int)i;
        }
        if (p->p_base > base) {
            base = p->p_base;
            base_origin = p->p_base_origin;
        }
    }
    l->best = best;
    l->fetch_to = l->peers[best].p_last;
    log_cut(&l->log, 0);
    log_drop_to(&l->log, base, base_origin);
    if (l->fetch_to < base)
        l->fetch_to = base; /* in storage already; nothing to copy */
    l->state = REPL_LEADER_FETCHING;
    leader_fetch(l, now_ms);
}

static void leader_on_promise(struct repl_leader *l, struct peer *p, const struct repl_msg *m, uint64_t now_ms)
{
    if (l->state != REPL_LEADER_PREPARING || !m->ok || repl_epoch_cmp(m->epoch, l->epoch) != 0 || p->promised)
        return;
    if (m->lsn < m->base_lsn)
        return; /* malformed */
    p->promised = true;
    p->p_last = m->lsn;
    p->p_last_origin = m->origin;
    p->p_base = m->base_lsn;
    p->p_base_origin = m->base_origin;
    uint64_t promised[REPL_REPLICAS_MAX];
    for (unsigned i = 0; i < l->cfg.nreplicas; i++)
        promised[i] = l->peers[i].promised;
    if (quorum_value(l, promised, l->cfg.quorum) == 1)
        leader_choose(l, now_ms);
}

static void leader_on_records(struct repl_leader *l, struct peer *p, const struct repl_msg *m, uint64_t now_ms)
{
    if (l->state != REPL_LEADER_FETCHING || p != &l->peers[l->best] || repl_epoch_cmp(m->epoch, l->epoch) != 0)
        return;
    uint64_t last = log_last(&l->log);
    if (!m->ok) {
        if (m->base_lsn > last && m->base_lsn <= l->fetch_to) {
            /* it has uploaded what we asked for: start after it */
            log_cut(&l->log, 0);
            log_drop_to(&l->log, m->base_lsn, m->base_origin);
            leader_fetch(l, now_ms);
        }
        return;
    }
    if (m->lsn != last || repl_epoch_cmp(m->origin, log_origin(&l->log, last)) != 0 ||
        !recs_contiguous(m->recs, m->nrecs, m->lsn))
        return; /* an old answer, or one that does not continue ours */
    for (uint32_t i = 0; i < m->nrecs && log_last(&l->log) < l->fetch_to; i++)
        log_push(&l->log, m->recs[i]);
    leader_fetch(l, now_ms);
}

/* An answer in our epoch, ok or not, proves the replica had promised no
 * higher one when it took the round's append. */
static void leader_note_round(struct repl_leader *l, struct peer *p, uint64_t round)
{
    if (round > l->round || round <= p->round)
        return;
    p->round = round;
    uint64_t r[REPL_REPLICAS_MAX];
    for (unsigned i = 0; i < l->cfg.nreplicas; i++)
        r[i] = l->peers[i].round;
    uint64_t cand = quorum_value(l, r, l->cfg.quorum);
#if REPL_SIM_PLANTED_BUG == 3
    cand = quorum_value(l, r, 1); /* tests/sim: the checker must catch a read confirmed by one replica */
#endif
    if (cand > l->confirmed) {
        l->confirmed = cand;
        l->cfg.io->confirmed(l->cfg.arg, cand);
    }
}

/* An empty append (a heartbeat from its match) to every replica that has
 * not answered the latest round. */
static void leader_send_round(struct repl_leader *l, uint64_t now_ms)
{
    l->round_ms = now_ms;
    for (unsigned i = 0; i < l->cfg.nreplicas; i++) {
        struct peer *p = &l->peers[i];
        if (p->round >= l->round)
            continue;
        uint64_t next = p->next;
        p->next = log_last(&l->log) + 1;
        leader_send_append(l, p, now_ms);
        p->next = next;
    }
}

uint64_t repl_leader_read_round(struct repl_leader *l, uint64_t now_ms)
{
    if (l->state != REPL_LEADER_ACTIVE)
        return 0;
    l->round++;
    leader_send_round(l, now_ms);
    return l->round;
}

static void leader_on_ack(struct repl_leader *l, struct peer *p, const struct repl_msg *m, uint64_t now_ms)
{
    if (l->state != REPL_LEADER_ACTIVE || repl_epoch_cmp(m->epoch, l->epoch) != 0)
        return;
    leader_note_round(l, p, m->round);
    if (l->state != REPL_LEADER_ACTIVE)
        return;
    uint64_t last = log_last(&l->log);
    if (m->ok) {
        if (m->lsn > last || m->lsn <= p->match)
            return;
        p->match = m->lsn;
        p->progress_ms = now_ms;
        if (p->next <= p->match)
            p->next = p->match + 1;
        leader_update_durable(l, now_ms);
        if (l->state == REPL_LEADER_ACTIVE)
            leader_pump(l, p, now_ms);
        return;
    }
    /* A mismatch: resume after its hint, once per hint and resend period
     * (every pipelined append behind the first one says the same). */
    uint64_t next = m->lsn + 1;
    if (next > last + 1)
        next = last + 1;
    if (next <= l->log.base)
        next = l->log.base + 1;
    if (next <= p->match)
        next = p->match + 1; /* a late answer to an append from before its match */
    if (m->lsn == p->nack_hint && now_ms - p->nack_ms < l->cfg.resend_ms)
        return;
    p->nack_hint = m->lsn;
    p->nack_ms = now_ms;
    p->next = next;
    leader_send_append(l, p, now_ms);
    leader_pump(l, p, now_ms);
}

void repl_leader_receive(struct repl_leader *l, const struct repl_msg *m, uint64_t now_ms)
{
    if (l->state == REPL_LEADER_DEPOSED)
        return;
    struct peer *p = leader_peer(l, m->from);
    if (p == NULL)
        return;
    if (repl_epoch_cmp(m->epoch, l->epoch) > 0) {
        leader_depose(l, REPL_DEPOSED_EPOCH, m->epoch);
        return;
    }
    switch (m->type) {
    case REPL_MSG_PROMISE:
        leader_on_promise(l, p, m, now_ms);
        break;
    case REPL_MSG_RECORDS:
        leader_on_records(l, p, m, now_ms);
        break;
    case REPL_MSG_ACK:
        leader_on_ack(l, p, m, now_ms);
        break;
    default:
        break;
    }
}

int repl_leader_append(struct repl_leader *l, struct repl_rec *rec, uint64_t now_ms)
{
    if (l->state != REPL_LEADER_ACTIVE || rec->lsn != log_last(&l->log) + 1 ||
        repl_epoch_cmp(rec->origin, l->epoch) != 0) {
        repl_rec_unref(rec);
        return -1;
    }
    if (l->durable == log_last(&l->log))
        l->waiting_ms = now_ms; /* the clock of the oldest record not durable starts */
    log_push(&l->log, rec);
    repl_rec_unref(rec);
    return 0;
}

void repl_leader_flush(struct repl_leader *l, uint64_t now_ms)
{
    if (l->state == REPL_LEADER_ACTIVE)
        leader_pump_all(l, now_ms);
}

void repl_leader_tick(struct repl_leader *l, uint64_t now_ms)
{
    switch (l->state) {
    case REPL_LEADER_PREPARING:
    case REPL_LEADER_FETCHING:
        if (now_ms - l->started_ms >= l->cfg.commit_timeout_ms) {
            leader_depose(l, REPL_DEPOSED_TIMEOUT, l->epoch);
            return;
        }
        if (now_ms - l->asked_ms >= l->cfg.resend_ms) {
            if (l->state == REPL_LEADER_PREPARING)
                leader_prepare(l, now_ms);
            else
                leader_fetch(l, now_ms);
        }
        return;
    case REPL_LEADER_ACTIVE:
        break;
    default:
        return;
    }
    uint64_t last = log_last(&l->log);
    if (l->durable < last && now_ms - l->waiting_ms >= l->cfg.commit_timeout_ms) {
        leader_depose(l, REPL_DEPOSED_TIMEOUT, l->epoch);
        return;
    }
    if (l->confirmed < l->round && now_ms - l->round_ms >= l->cfg.resend_ms)
        leader_send_round(l, now_ms); /* a lost round would hold its reads until the next write */
    for (unsigned i = 0; i < l->cfg.nreplicas; i++) {
        struct peer *p = &l->peers[i];
        if (p->match < last && now_ms - p->progress_ms >= l->cfg.resend_ms) {
            p->next = p->match + 1; /* what it has not matched, again */
            p->progress_ms = now_ms;
            leader_pump(l, p, now_ms);
        } else if ((p->commit_sent < l->durable || p->base_sent < l->log.base) &&
                   now_ms - p->sent_ms >= l->cfg.heartbeat_ms) {
            /* It has not heard how far records are durable (a replica uploads
             * only what it knows to be, should we die) or in storage (it
             * drops those). An idle object says nothing: liveness is the
             * transport's business. */
            uint64_t next = p->next;
            p->next = last + 1;
            leader_send_append(l, p, now_ms);
            p->next = next;
        }
    }
}

bool repl_leader_idle(const struct repl_leader *l)
{
    if (l->state == REPL_LEADER_DEPOSED)
        return true;
    uint64_t last = log_last(&l->log);
    if (l->state != REPL_LEADER_ACTIVE || l->durable < last || l->confirmed < l->round)
        return false;
    for (unsigned i = 0; i < l->cfg.nreplicas; i++) {
        const struct peer *p = &l->peers[i];
        if (p->match < last || p->commit_sent < l->durable || p->base_sent < l->log.base)
            return false;
    }
    return true;
}

void repl_leader_uploaded(struct repl_leader *l, uint64_t lsn)
{
    if (l->state != REPL_LEADER_ACTIVE || lsn <= l->log.base || lsn > l->durable)
        return;
    log_drop_to(&l->log, lsn, log_at(&l->log, lsn)->origin);
}
