/*
 * replicate.h: the host journal, the durability point of a single host.
 *
 * Shards submit records (encoded by wal/); one journal thread takes whatever
 * has queued, compresses it into one batch, writes and fdatasyncs it (io_uring,
 * write and fsync linked), and hands each shard back the list of its records
 * that are now durable. Many objects' commits share one fsync: the number of
 * fsyncs per second stays far below the number of commits under load.
 *
 * Segments. The journal is a sequence of segment files; a record pins its
 * segment until its object's database file has been checkpointed and fsync'd
 * past it (repl_journal_release); unpinned segments older than every pinned
 * one are deleted.
 *
 * Nothing here knows about SQLite or HTTP: records are opaque bytes whose
 * first 64 bytes are a wal/ record header.
 */
#ifndef REPLICATE_H
#define REPLICATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One record on its way to the journal. Allocated and freed by the caller;
 * owned by the journal between submit and the done callback. */
struct repl_entry {
    struct repl_entry *next; /* queue and done-list link */
    unsigned route;          /* which done callback group (the shard) */
    void *owner;             /* the caller's (the actor) */
    uint64_t lsn;
    uint8_t *data; /* the encoded record, owned by the entry's owner */
    size_t len;
    uint32_t segment; /* set by the journal: the segment that holds it (pinned) */
};

/* Called on the journal thread with one route's durable entries, in submit
 * order. The callee takes the list (and the segment pins, see above). */
typedef void (*repl_done_cb)(void *arg, unsigned route, struct repl_entry *list);

struct repl_journal_config {
    const char *dir;        /* DATA/journal */
    uint64_t segment_bytes; /* start a new segment past this size */
    bool no_uring;          /* use pwrite + fdatasync even where io_uring works */
    bool stored;            /* batches as they are, not compressed (entries that are already) */
    repl_done_cb done_cb;
    void *done_arg;
};

struct repl_journal;

struct repl_stats {
    uint64_t records;
    uint64_t batches;
    uint64_t fsyncs;
    uint64_t bytes_in;      /* record bytes */
    uint64_t bytes_written; /* compressed batch bytes */
    uint32_t segment;       /* current segment number */
};

/* Where the journal's few log lines go (level 0 error, 1 warn, 2 info); set
 * once before any journal starts. Default: stderr. */
void repl_set_logger(void (*fn)(int level, const char *msg));

/* Internal: one log line through the logger above. */
void repl_logf(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Creates the journal in cfg->dir and starts its thread. The first segment
 * is numbered `first_segment`; the older segments `keep_from` ..
 * first_segment - 1 that recovery left stay until nothing pins them (pin
 * them with repl_journal_pin before the first submit). */
int repl_journal_create(struct repl_journal **out, const struct repl_journal_config *cfg, uint32_t first_segment,
                        uint32_t keep_from, char *err, size_t errlen);
/* Takes one more pin on `segment`, which must be pinned already or kept by
 * create. Thread-safe. */
void repl_journal_pin(struct repl_journal *j, uint32_t segment);
/* Queues an entry; thread-safe, never blocks on I/O. */
void repl_journal_submit(struct repl_journal *j, struct repl_entry *e);
/* Gives back the pin an entry held on `segment`. Thread-safe. */
void repl_journal_release(struct repl_journal *j, uint32_t segment);
uint32_t repl_journal_segment(struct repl_journal *j);
void repl_journal_stats(struct repl_journal *j, struct repl_stats *out);
/* Writes what is queued and stops the thread: every submitted entry has had
 * its done callback. Release, segment and stats still work after it. */
void repl_journal_stop(struct repl_journal *j);
/* Closes the files and frees the journal: once no thread uses it. */
void repl_journal_destroy(struct repl_journal *j);

/*
 * Recovery: reads every segment of `dir` in order and calls on_record for each
 * valid record. A torn or invalid batch at the end of the last segment is cut
 * off (it was never acknowledged). An invalid batch anywhere else refuses with
 * an error naming the file and offset, unless `repair` is set: then it is
 * skipped, logged, cut out of its segment file, and recovery goes on. on_record returning non-zero stops
 * the scan with that error.
 */
typedef int (*repl_record_cb)(void *arg, uint32_t segment, const uint8_t *rec, size_t len);
struct repl_recovered {
    uint32_t next_segment; /* where the next journal starts */
    unsigned skipped;      /* damaged batches --repair skipped (and removed from their segments) */
};
int repl_journal_recover(const char *dir, bool repair, repl_record_cb on_record, void *arg,
                         struct repl_recovered *out, char *err, size_t errlen);
/* Deletes every segment file of `dir` numbered below `below`. */
int repl_journal_drop_before(const char *dir, uint32_t below);

/*
 * ---- The quorum protocol core (quorum.c) -------------------------------
 *
 * One object's replication, as two pure state machines: the leader (the
 * object's owner, which makes records) and the replica (each of the object's
 * replica hosts, which keeps them in its journal). Messages, journal
 * completions and timer ticks go in; messages, journal writes and gate
 * releases come out through the callbacks of the io tables below, called
 * synchronously from inside the call that caused them (a callback must not
 * call back into the same state machine). No I/O, no clock reads: `now_ms` is
 * the caller's. Everything the core allocates is counted in its `bytes`.
 *
 * The protocol is Raft's log replication with the leader chosen from outside
 * (the router) and the election replaced by promises, VR-style:
 *
 *   epoch     (counter, host), totally ordered; a host never uses one twice.
 *   record    (lsn, origin epoch, bytes). The origin is the epoch of the
 *             leader that made it and never changes, so (lsn, origin) names
 *             the bytes: one leader makes one record per lsn.
 *   replica   keeps its promised epoch and its log base+1..last (base: what
 *             is known to be in object storage). It accepts an append only at
 *             or above its promise, and only after its previous record
 *             (prev lsn, prev origin) matches; a conflicting suffix is cut.
 *             It acknowledges `match` (its log, fsync'd, equals the leader's
 *             up to match) only after the journal write is synced.
 *   leader    recovers first: a new epoch, promises from a quorum, the log of
 *             the promiser with the highest (last origin, last lsn) fetched;
 *             then the caller appends the barrier, the first record of the
 *             new epoch (the runtime's stamps the database with it).
 *             A record is durable when `quorum` replicas match it and it is at
 *             or after the barrier (only records of the leader's own epoch are
 *             counted, Raft's rule; the barrier makes the recovered tail
 *             durable without waiting for a client write). Any answer naming
 *             a higher epoch, or a record not durable within
 *             commit_timeout_ms, deposes the leader: its held outputs fail.
 *
 * Why not "per lsn the record of the highest epoch" (DESIGN.md): records are
 * page images that depend on their predecessors, and a per-lsn choice can
 * splice a record of one history after a record of another. Choosing one
 * whole log, as VR and Raft do, cannot.
 */

struct repl_epoch {
    uint64_t n;
    uint32_t host;
};

static inline int repl_epoch_cmp(struct repl_epoch a, struct repl_epoch b)
{
    if (a.n != b.n)
        return a.n < b.n ? -1 : 1;
    if (a.host != b.host)
        return a.host < b.host ? -1 : 1;
    return 0;
}

/* An epoch's counter carries the cluster membership's version in its top
 * bits (router.h): a leader under a newer membership always has a higher
 * epoch than any under an older one, so replicas that promised it refuse
 * leaders that have not heard of the change. */
#define REPL_EPOCH_VERSION_SHIFT 36
static inline uint64_t repl_epoch_version(struct repl_epoch e) { return e.n >> REPL_EPOCH_VERSION_SHIFT; }

/* One record as the protocol sees it: immutable, reference-counted (on one
 * thread: the core's), the bytes opaque. */
struct repl_rec {
    uint32_t refs;
    uint32_t len;
    uint64_t lsn;
    struct repl_epoch origin;
    uint8_t data[];
};

/* A new record with one reference, `len` bytes copied from `data` (NULL:
 * left for the caller to fill before anyone else sees it). */
struct repl_rec *repl_rec_create(uint64_t lsn, struct repl_epoch origin, const void *data, uint32_t len);
struct repl_rec *repl_rec_ref(struct repl_rec *r);
void repl_rec_unref(struct repl_rec *r);

enum repl_msg_type {
    REPL_MSG_PREPARE = 1, /* leader → replica: promise me `epoch` */
    REPL_MSG_PROMISE,     /* replica → leader: ok, or refused naming its promise */
    REPL_MSG_FETCH,       /* leader → its chosen promiser: records from `lsn` */
    REPL_MSG_RECORDS,     /* promiser → leader: records after `lsn` */
    REPL_MSG_APPEND,      /* leader → replica: records after (lsn, origin) */
    REPL_MSG_ACK,         /* replica → leader: match, or refused with a hint */
    REPL_MSG_TYPE_MAX = REPL_MSG_ACK,
};

/* One message. In requests `epoch` is the leader's; in answers, the
 * replica's promise. The meaning of the lsn fields per type:
 *   PROMISE  lsn/origin: the replica's last record; base_lsn/base_origin
 *   FETCH    lsn: the first record wanted
 *   RECORDS  lsn/origin: the record before recs[0]; !ok: base_lsn, what the
 *            replica has dropped (in storage)
 *   APPEND   lsn/origin: the record before recs[0]; commit_lsn: durable at
 *            the leader; base_lsn/base_origin: in object storage
 *   ACK      ok: lsn = match; !ok: lsn = a hint, the replica's last record
 *            that may match
 * recs are borrowed for the duration of the call they are passed in. */
struct repl_msg {
    uint8_t type;
    bool ok;
    uint32_t from, to;
    uint8_t object[16];
    struct repl_epoch epoch;
    uint64_t lsn;
    struct repl_epoch origin;
    uint64_t base_lsn;
    struct repl_epoch base_origin;
    uint64_t commit_lsn;
    /* APPEND: the leader's latest read round; ACK: the round of the latest
     * append the replica took from that epoch (see repl_leader_read_round) */
    uint64_t round;
    uint32_t nrecs;
    struct repl_rec **recs;
    /* The object's "class/name", for replicas that upload: set by the
     * transport's user on PREPARE and APPEND, ignored by the core. */
    const char *name;
    uint16_t name_len;
};

#define REPL_NAME_MAX 1024

/* ---- replica ---- */

/* A journal write the replica needs before it may answer. Kinds:
 *   PROMISE  epoch is the new promise
 *   APPEND   cut the log at recs[0]->lsn (drop it and after), then append recs
 *   BASE     records up to lsn (origin `origin`) are in object storage: drop
 *            them; with `reset` drop the whole log (it conflicted with them)
 * Ops are numbered from 1 in the order issued; the journal syncs them in that
 * order and reports each with repl_replica_synced(). After a restart, the
 * synced ops are replayed with repl_replica_replay(). */
enum repl_op_type { REPL_OP_PROMISE = 1, REPL_OP_APPEND, REPL_OP_BASE };
struct repl_op {
    uint8_t type;
    bool reset;
    uint64_t seq;
    struct repl_epoch epoch;
    uint64_t lsn;
    struct repl_epoch origin;
    uint32_t nrecs;
    struct repl_rec **recs; /* borrowed: take references to keep them */
};

struct repl_replica_io {
    void (*send)(void *arg, const struct repl_msg *m);
    void (*journal)(void *arg, const struct repl_op *op);
    /* Records base+1..to are durable but not known to be in storage after
     * upload_timeout_ms: upload them, then call repl_replica_uploaded(). */
    void (*upload)(void *arg, uint64_t from, uint64_t to);
};

struct repl_replica_config {
    uint32_t host;
    uint8_t object[16];
    uint32_t batch_recs_max;   /* records per RECORDS answer */
    uint64_t batch_bytes_max;  /* bytes per RECORDS answer */
    uint64_t upload_timeout_ms;
    const struct repl_replica_io *io;
    void *arg;
};

struct repl_replica;

struct repl_replica_info {
    struct repl_epoch promised;
    struct repl_epoch base_origin;
    uint64_t base, last, match, commit;
    /* The origin of the record at `commit` (or at base, when commit is not
     * past it or past the log's end, as after a cut): some leader of that
     * epoch or a later one made it durable. After a restart it may read
     * older until the leader's next message (commit is not journaled). */
    struct repl_epoch commit_origin;
    uint64_t seq; /* the last op issued */
    uint64_t bytes; /* records held and the core's own arrays */
};

struct repl_replica *repl_replica_create(const struct repl_replica_config *cfg);
void repl_replica_destroy(struct repl_replica *r);
/* Applies a synced op read back from the journal, before any message. */
void repl_replica_replay(struct repl_replica *r, const struct repl_op *op);
void repl_replica_receive(struct repl_replica *r, const struct repl_msg *m, uint64_t now_ms);
/* The journal synced every op up to and including `seq`. */
void repl_replica_synced(struct repl_replica *r, uint64_t seq, uint64_t now_ms);
void repl_replica_uploaded(struct repl_replica *r, uint64_t lsn, uint64_t now_ms);
void repl_replica_tick(struct repl_replica *r, uint64_t now_ms);
void repl_replica_get_info(const struct repl_replica *r, struct repl_replica_info *out);
/* The record at `lsn`, borrowed, or NULL. */
struct repl_rec *repl_replica_record(const struct repl_replica *r, uint64_t lsn);

/* ---- leader ---- */

enum repl_leader_state {
    REPL_LEADER_PREPARING = 1, /* asking for promises */
    REPL_LEADER_FETCHING,      /* copying the chosen promiser's log */
    REPL_LEADER_ACTIVE,        /* appending (serves once the barrier is durable) */
    REPL_LEADER_DEPOSED,       /* final: outputs failed, only destroy remains */
};

enum repl_depose_reason {
    REPL_DEPOSED_EPOCH = 1, /* a replica promised a higher epoch */
    REPL_DEPOSED_TIMEOUT,   /* no quorum within commit_timeout_ms */
};

struct repl_leader_io {
    void (*send)(void *arg, const struct repl_msg *m);
    /* Recovery chose the log: records base+1.. (borrowed), the object's
     * durable state once the barrier is durable. The leader is ACTIVE: the
     * caller appends the barrier (lsn base + n + 1) next; nothing is durable
     * before it is. */
    void (*recovered)(void *arg, uint64_t base, struct repl_epoch base_origin, struct repl_rec *const *recs,
                      size_t n);
    /* Every record up to `lsn` is durable: release outputs that wait on it. */
    void (*durable)(void *arg, uint64_t lsn);
    /* A quorum answered in this epoch to rounds up to `round`: reads that
     * waited for it may answer (see repl_leader_read_round). */
    void (*confirmed)(void *arg, uint64_t round);
    /* Final. `higher` is the epoch that deposed it (REPL_DEPOSED_EPOCH). */
    void (*deposed)(void *arg, enum repl_depose_reason why, struct repl_epoch higher);
};

struct repl_leader_config {
    uint32_t host;
    uint8_t object[16];
    const uint32_t *replicas; /* host ids, copied */
    unsigned nreplicas;       /* at most REPL_REPLICAS_MAX */
    unsigned quorum;          /* more than nreplicas / 2 */
    /* A joint configuration while the membership changes (router.h): the
     * replica set under the previous membership (host ids, copied; nold 0
     * when there is none). Promises, durability and read rounds then need
     * `quorum` of each set, so that a leader finds every record acknowledged
     * under either and fences leaders of either (Raft's joint consensus).
     * Both sets together are at most REPL_REPLICAS_MAX hosts. */
    const uint32_t *old_replicas;
    unsigned nold;
    uint64_t resend_ms;        /* resend what a replica has not matched */
    uint64_t heartbeat_ms;     /* an empty append to tell news (durable, storage base) */
    uint64_t commit_timeout_ms;
    uint32_t batch_recs_max;   /* records per APPEND */
    uint64_t batch_bytes_max;
    uint32_t window_recs;      /* records sent ahead of a replica's match */
    const struct repl_leader_io *io;
    void *arg;
};

#define REPL_REPLICAS_MAX 16

struct repl_leader;

struct repl_leader_info {
    enum repl_leader_state state;
    struct repl_epoch epoch;
    uint64_t base, last, durable, barrier, round, confirmed;
    uint64_t match[REPL_REPLICAS_MAX];
    uint64_t bytes;
};

/* Checks a replicas/quorum pair: 0, or -1 with the reason in err. */
int repl_quorum_check(unsigned nreplicas, unsigned quorum, char *err, size_t errlen);
/* Starts recovery in `epoch` (the caller guarantees this host never used it
 * before, across restarts) and sends the first PREPAREs. NULL when cfg fails
 * repl_quorum_check. */
struct repl_leader *repl_leader_create(const struct repl_leader_config *cfg, struct repl_epoch epoch,
                                       uint64_t now_ms);
void repl_leader_destroy(struct repl_leader *l);
/* Appends the next record (rec->lsn == last + 1, rec->origin == the epoch);
 * takes the caller's reference. Only when ACTIVE: -1 otherwise (the
 * reference is dropped). It is sent on the next repl_leader_flush: a caller
 * flushes once per batch of appends (a loop turn), so replicas get one
 * message with all of them. */
int repl_leader_append(struct repl_leader *l, struct repl_rec *rec, uint64_t now_ms);
void repl_leader_flush(struct repl_leader *l, uint64_t now_ms);
void repl_leader_receive(struct repl_leader *l, const struct repl_msg *m, uint64_t now_ms);
void repl_leader_tick(struct repl_leader *l, uint64_t now_ms);
/* Whether repl_leader_tick would do nothing until the next other call:
 * deposed, or serving with every record durable, every read round answered,
 * and every replica matched and told how far records are durable and in
 * storage. A caller with many leaders ticks only the others. */
bool repl_leader_idle(const struct repl_leader *l);
/* Records up to `lsn` (<= durable) are in object storage. */
void repl_leader_uploaded(struct repl_leader *l, uint64_t lsn);
/* A read barrier (Raft's ReadIndex): starts a round, an empty append to
 * every replica, and returns its number. Once a quorum has answered it in
 * this epoch (the confirmed callback), no other leader had a quorum when the
 * round began, so a read made before the call saw every acknowledged write.
 * 0 when not ACTIVE. */
uint64_t repl_leader_read_round(struct repl_leader *l, uint64_t now_ms);
void repl_leader_get_info(const struct repl_leader *l, struct repl_leader_info *out);
/* The record at `lsn` (base < lsn <= last), borrowed, or NULL. */
struct repl_rec *repl_leader_record(const struct repl_leader *l, uint64_t lsn);

/* ---- The peer protocol's bytes (wire.c, format at its top) ------------- */

#define REPL_FRAME_HEADER_BYTES 24
#define REPL_FRAME_PAYLOAD_MAX (65u << 20) /* one largest record and its message */
#define REPL_AUTH_NONCE_BYTES 32
#define REPL_AUTH_MAC_BYTES 32

enum repl_frame_type {
    REPL_FRAME_HELLO = 1,
    REPL_FRAME_CHALLENGE,
    REPL_FRAME_AUTH,
    REPL_FRAME_MSG,
    REPL_FRAME_HEARTBEAT,
    REPL_FRAME_APP, /* the runtime's own payload (forwarded requests), opaque here */
};

/* Wire errors: negative, named by repl_wire_strerror(). */
#define REPL_WIRE_EMAGIC (-1)
#define REPL_WIRE_EVERSION (-2)
#define REPL_WIRE_EMALFORMED (-3)
#define REPL_WIRE_ETOOBIG (-4)
#define REPL_WIRE_ECHECKSUM (-5)
const char *repl_wire_strerror(int rc);

void repl_frame_header(uint8_t out[REPL_FRAME_HEADER_BYTES], uint8_t type, const uint8_t *payload, uint32_t len);
/* Checks a received header (magic, version, type, size) before its payload is
 * read; the checksum is checked with repl_frame_verify once it is. */
int repl_frame_parse(const uint8_t hdr[REPL_FRAME_HEADER_BYTES], uint8_t *type, uint32_t *len);
int repl_frame_verify(const uint8_t hdr[REPL_FRAME_HEADER_BYTES], const uint8_t *payload, uint32_t len);

size_t repl_msg_size(const struct repl_msg *m);
void repl_msg_encode(const struct repl_msg *m, uint8_t *out);
/* Decodes one MSG payload; on success `out` owns new records (free them with
 * repl_msg_release). Untrusted bytes: every length is checked. */
int repl_msg_decode(struct repl_msg *out, const uint8_t *p, size_t len);
void repl_msg_release(struct repl_msg *m);

/* role 'S' (the server's proof) or 'C' (the client's). */
void repl_auth_mac(uint8_t out[REPL_AUTH_MAC_BYTES], const char *secret, char role, uint32_t client,
                   uint32_t server, const uint8_t cnonce[REPL_AUTH_NONCE_BYTES],
                   const uint8_t snonce[REPL_AUTH_NONCE_BYTES]);
bool repl_auth_equal(const uint8_t a[REPL_AUTH_MAC_BYTES], const uint8_t b[REPL_AUTH_MAC_BYTES]);

/* A replica's journal entry: one op of one object (id, name). Decoding
 * allocates the records (repl_op_release) and the name (free). */
size_t repl_op_size(const struct repl_op *op, size_t name_len);
void repl_op_encode(const struct repl_op *op, const uint8_t id[16], const char *name, size_t name_len, uint8_t *out);
bool repl_op_is(const uint8_t *p, size_t len);
int repl_op_decode(struct repl_op *out, uint8_t id[16], char **name, const uint8_t *p, size_t len);
void repl_op_release(struct repl_op *op);

/* ---- The peer transport (peer.c) ----------------------------------------
 *
 * One thread with its own libuv loop carries every protocol message between
 * hosts. Each host dials every other host once and sends on that
 * connection; it receives on the connections others dialled. Both ends prove
 * the cluster secret (HMAC handshake, wire.c) before anything else is read;
 * a peer that fails it, or sends a malformed or oversized frame, is logged and
 * dropped. Connections carry heartbeats both ways; one silent for dead_ms is
 * closed and dialled again with backoff. Messages to a peer that is not
 * connected wait in a queue bounded by queue_bytes_max; past it they are
 * dropped (the protocol resends). Messages to this host itself take the same
 * path without a socket. */

struct repl_peer_addr {
    uint32_t id;
    char host[64]; /* numeric IPv4 or IPv6 */
    uint16_t port;
};

struct repl_peers_config {
    uint32_t self;
    const struct repl_peer_addr *hosts; /* every host, this one included (its listen address); copied */
    unsigned nhosts;
    const char *secret; /* copied */
    uint64_t heartbeat_ms;
    uint64_t dead_ms;
    uint64_t queue_bytes_max;
    uint64_t tick_ms;
    /* On the transport's thread: a received message, owned by the callee
     * (repl_msg_release it). */
    void (*recv)(void *arg, struct repl_msg *m);
    /* On the transport's thread: an APP frame's payload from host `from`,
     * borrowed for the call. May be NULL (they are dropped). */
    void (*recv_app)(void *arg, uint32_t from, const uint8_t *payload, uint32_t len);
    /* On the transport's thread every tick_ms. */
    void (*tick)(void *arg, uint64_t now_ms);
    void *arg;
};

struct repl_peers;

struct repl_peers_stats {
    uint64_t msgs_out, msgs_in, bytes_out, bytes_in, dropped, auth_failures, bad_frames;
    unsigned connected_out, connected_in;
};

/* Binds the listener and starts the thread. */
int repl_peers_start(struct repl_peers **out, const struct repl_peers_config *cfg, char *err, size_t errlen);
/* Queues a message for m->to; thread-safe; encodes before returning (no
 * reference to m is kept). */
void repl_peers_send(struct repl_peers *p, const struct repl_msg *m);
/* Queues an APP frame with payload[0..len) for host `to`; thread-safe,
 * copies. Dropped (and counted) when too big, unknown host or after stop. */
void repl_peers_send_app(struct repl_peers *p, uint32_t to, const void *payload, size_t len);
/* The cluster's hosts changed (a membership change): hosts not known yet
 * are dialled, known ones missing from the list are retired (no dialling,
 * messages to them dropped). Addresses of known hosts do not change.
 * Thread-safe; takes effect on the transport's thread. */
void repl_peers_set_hosts(struct repl_peers *p, const struct repl_peer_addr *hosts, unsigned nhosts);
/* Runs fn(arg) on the transport's thread. Thread-safe. */
void repl_peers_post(struct repl_peers *p, void (*fn)(void *arg), void *arg);
/* Milliseconds on the transport's clock (monotonic). */
uint64_t repl_peers_now_ms(struct repl_peers *p);
/* Whether the connection to host is authenticated and up. Thread-safe. */
bool repl_peers_connected(struct repl_peers *p, uint32_t host);
/* Both ways: our connection to host is up, and one of its to us is (we
 * send on ours, it answers on its). Thread-safe. */
bool repl_peers_reachable(struct repl_peers *p, uint32_t host);
void repl_peers_stats(struct repl_peers *p, struct repl_peers_stats *out);
/* Stops the thread: queued messages may be lost; later sends are dropped,
 * later posts run in destroy. */
void repl_peers_stop(struct repl_peers *p);
void repl_peers_destroy(struct repl_peers *p);

#endif /* REPLICATE_H */
