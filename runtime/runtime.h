/*
 * runtime.h: the process. What the runtime's files call of each other.
 *
 * A request's path through the runtime:
 *   http.c     a shard's h2o handler parses /<class>/<name>/<rest>, answers
 *              errors itself, and posts an event to the object's shard;
 *   shard.c    shards are threads with a libuv loop and an inbox (MPSC queue +
 *              uv_async); messages carry ownership from one shard to another;
 *   actor.c    the object's shard activates the actor (opens its SQLite file),
 *              runs the event in one transaction, and pushes the response and
 *              WebSocket outputs into the actor's output gate;
 *   durable.c  the durability point: the event's record goes to the host
 *              journal (replicate/); when its batch is fsync'd the actor's
 *              gate releases what waited for it, in order, back to the shard
 *              that holds the client's connection.
 *   recover.c  at start, before any shard: the journal is read back and every
 *              object's database rolled forward to its last durable record.
 *
 * In a cluster (--cluster):
 *   forward.c  a request for an object another host leads (rt_cluster_route)
 *              goes there on the peer connection, and its reply comes back;
 *              WebSockets are proxied the same way;
 *   leader.c   on the leader's shard, the event's record goes to the object's
 *              five replicas instead of the host journal, and the gate opens
 *              when three have it;
 *   cluster.c  the peer thread: the replicas of the objects this host keeps,
 *              their journal, placement, liveness and epochs.
 */
#ifndef RUNTIME_H
#define RUNTIME_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "dobj.h"
#include "sdk.h"
#include "sdk_util.h"
#include "replicate.h"
#include "router.h"
#include "wal.h"

/* ---- logging ----------------------------------------------------------- */

enum rt_log_level { RT_LOG_ERROR, RT_LOG_WARN, RT_LOG_INFO, RT_LOG_DEBUG };

/* Written once before threads start. */
extern int rt_log_level;

void rt_log_write(int level, const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define RT_LOG(level, ...)                                           \
    do {                                                             \
        if ((level) <= rt_log_level)                                 \
            rt_log_write((level), __FILE__, __LINE__, __VA_ARGS__);  \
    } while (0)
#define RT_ERROR(...) RT_LOG(RT_LOG_ERROR, __VA_ARGS__)
#define RT_WARN(...) RT_LOG(RT_LOG_WARN, __VA_ARGS__)
#define RT_INFO(...) RT_LOG(RT_LOG_INFO, __VA_ARGS__)
#define RT_DEBUG(...) RT_LOG(RT_LOG_DEBUG, __VA_ARGS__)

/* ---- configuration (config.c) ------------------------------------------ */

#define RT_CLASSES_MAX 64

struct rt_config {
    char *listen_host;
    int listen_port;
    unsigned shards;
    char *data_dir;
    char *classes[RT_CLASSES_MAX];
    unsigned nclasses;
    size_t max_body;          /* request body limit, bytes */
    uint64_t idle_timeout_ms; /* close an object's database after this idleness */
    unsigned max_open;        /* open databases per shard (LRU beyond) */
    size_t ws_msg_max;        /* WebSocket message limit, bytes */
    unsigned max_inflight;    /* events queued or running per shard */
    int log_level;
    uint64_t journal_segment_bytes;
    bool repair; /* skip damaged journal batches at start instead of refusing */
    char *store_url; /* "none": no object storage */
    char *store_endpoint, *store_region, *store_access_key, *store_secret_key;
    bool store_path_style;
    unsigned store_timeout_ms;
    uint64_t segment_bytes, segment_interval_ms;
    uint64_t snapshot_min_bytes;
    /* A cluster (cluster_file set): this host, its peers, the quorum. */
    char *cluster_file;
    char *cluster_secret;
    unsigned host_id;
    unsigned replicas, quorum;
    uint64_t commit_timeout_ms, peer_heartbeat_ms, peer_dead_ms, replica_upload_timeout_ms;
    bool redirect; /* 307 to the leader instead of forwarding */
    struct router_cluster *cluster; /* cluster_file as read at start (SIGHUP reloads: runtime/cluster.c) */
};

/* Fills defaults, then the config file named by --config (if any), then the
 * flags, which override the file. On error returns DOBJ_ECONFIG with `err`
 * naming the option, and the file and line where there is one. */
int rt_config_load(struct rt_config *c, int argc, char **argv, char *err, size_t errlen);
void rt_config_close(struct rt_config *c);
void rt_config_usage(void);

/* ---- names and classes (name.c, classes.c) ----------------------------- */

#define RT_NAME_MAX 512
#define RT_CLASS_NAME_MAX 64

bool rt_class_name_valid(const char *s, size_t len);
/* Percent-decodes an object name into `out` (RT_NAME_MAX + 1 bytes). Returns
 * the length, or -1 with *why set to a sentence. */
long rt_name_decode(const char *raw, size_t len, char *out, const char **why);
/* Which shard an object lives on: stable for a given class/name. */
uint64_t rt_object_hash(const char *cls, const char *name, size_t name_len);
/* The object's id: the first 16 bytes of SHA-256("class/name"). Its file is
 * named by the id in hex (32 digits). */
void rt_object_id(const char *cls, const char *name, size_t name_len, uint8_t out[16]);
void rt_object_id_hex(const uint8_t id[16], char out[33]);
/* Both at once: the hex id of class/name. */
void rt_object_file_id(const char *cls, const char *name, size_t name_len, char out[33]);
struct rt_config;
/* "DATA/objects/ab/abcd....db" for a 16-byte object id. */
void rt_object_path(const struct rt_config *c, const uint8_t id[16], char *out, size_t len);
/* Creates the directories above `path` (mkdir -p of its dirname). 0 or -errno. */
int rt_mkdir_parents(const char *path);

struct rt_class {
    const dobj_class *cls;
    void *dl;
    char *path;
};

/* Loads every class of the config; names the file and reason on failure. */
int rt_classes_load(const struct rt_config *c, char *err, size_t errlen);
const struct rt_class *rt_class_find(const char *name, size_t len);
/* The i-th loaded class, NULL past the last. */
const struct rt_class *rt_class_at(unsigned i);
void rt_classes_close(void);

/* ---- messages between shards (shard.c) --------------------------------- */

enum rt_msg_type {
    RT_MSG_EVENT,  /* front -> object shard: a request, or a WebSocket open/message/close */
    RT_MSG_REPLY,  /* object shard -> front: the response to a waiting request */
    RT_MSG_WS_OUT, /* object shard -> front: a send or close on a socket */
    RT_MSG_DURABLE, /* journal -> object shard: records now durable */
    RT_MSG_STOP,    /* main -> shard: stop taking requests, then ack */
    RT_MSG_FINISH,  /* main -> shard: the journal is drained; close everything */
    RT_MSG_SNAPSHOT, /* uploader -> object shard: take a snapshot of an object */
    RT_MSG_REPL,     /* cluster -> leader's shard: a replica's answer */
    RT_MSG_UPLOADED, /* uploader -> leader's shard: records in object storage */
    RT_MSG_FWD_REPLY, /* peer thread -> front: the leader's reply to a forwarded request */
    RT_MSG_FWD_WS,    /* peer thread -> front: a proxied WebSocket's message or close */
    RT_MSG_RECONFIG,  /* main -> shard: the cluster file was loaded again (SIGHUP) */
};

struct rt_msg {
    struct rt_msg *_Atomic next; /* inbox or gate link */
    enum rt_msg_type type;
    unsigned dest;     /* shard the message goes to once released */
    uint64_t gate_lsn; /* released once the actor's durable lsn reaches this */
    uint64_t gate_round; /* and (a read in a cluster) its leader's confirmed read round */
};

struct rt_wait; /* a front's waiting request, opaque to other shards */

struct rt_event {
    struct rt_msg msg;
    enum sdk_event_kind kind;
    unsigned from;         /* the front shard */
    struct rt_wait *wait;  /* fetch, ws open: where the reply goes */
    const struct rt_class *cls;
    uint64_t hash;
    char *name;
    size_t name_len;
    const char *method, *path, *query;
    struct sdk_header *headers;
    size_t nheaders;
    const char *body;
    size_t body_len;
    uint64_t ws_id;
    int ws_kind;   /* message kind, or close code */
    /* An admin request on the object instead of a handler's event. */
    bool admin_restore;
    /* No handler runs: the object's leader starts, for a membership change
     * (cluster.c); nothing answers. */
    bool wake;
    uint64_t restore_lsn; /* or */
    int64_t restore_at_us;
    _Alignas(16) char buf[]; /* everything above points in here */
};

struct rt_reply {
    struct rt_msg msg;
    struct rt_wait *wait;
    int status;
    bool ws_accept;   /* a WebSocket open that succeeded */
    char *headers;    /* "name\0value\0" pairs, owned */
    size_t headers_len;
    char *body; /* owned */
    size_t body_len;
};

struct rt_fwd_reply {
    struct rt_msg msg;
    uint64_t id; /* the front's forward id */
    int status;
    uint32_t served_by;
    uint64_t ws; /* an accepted WebSocket: the leader's socket id */
    char *headers; /* "name\0value\0" pairs, owned */
    size_t headers_len;
    char *body; /* owned */
    size_t body_len;
};

struct rt_fwd_ws {
    struct rt_msg msg;
    uint32_t from;    /* the other host */
    uint64_t ws;      /* our socket */
    uint64_t sender;  /* its socket on the other host */
    bool close;       /* a close (code) or a message (code: DOBJ_WS_TEXT/BINARY) */
    int code;
    char *data; /* owned */
    size_t len;
};

struct rt_ws_out {
    struct rt_msg msg;
    struct sdk_out *out; /* owned */
};

struct repl_entry;

struct rt_snapshot_msg {
    struct rt_msg msg;
    const struct rt_class *cls;
    uint64_t hash;
    size_t name_len;
    char name[];
};

struct rt_repl_msg {
    struct rt_msg msg;
    struct repl_msg m; /* owned: repl_msg_release */
};

struct rt_uploaded_msg {
    struct rt_msg msg;
    uint8_t id[16];
    uint64_t lsn;
};

struct rt_durable_msg {
    struct rt_msg msg;
    struct repl_entry *list; /* owned */
};

void rt_msg_free(struct rt_msg *m);

/* ---- shards (shard.c) -------------------------------------------------- */

struct rt_actors; /* actor.c */
struct rt_front;  /* http.c */

struct rt_shard {
    unsigned id;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t wake;
    uv_idle_t local_idle; /* drains `local` on the next turn */
    struct rt_msg *_Atomic inbox_head; /* MPSC stack, reversed on drain */
    struct rt_msg *local_head, **local_tail;
    atomic_uint inflight; /* events posted to this shard not yet finished */
    atomic_uint records_inflight; /* records submitted to the journal, not yet durable */
    _Atomic uint64_t events; /* events run, for /_metrics */
    _Atomic uint64_t checkpoints; /* in-memory WALs written into their files */
    bool stopping;
    struct rt_actors *actors;
    struct rt_front *front;
    const struct rt_config *config;
    struct rt_leader *leaders; /* cluster: this shard's objects' leaders */
    uv_timer_t leader_timer;
    uv_check_t round_check; /* sends the records and read rounds of a loop turn */
    struct rt_leader *leaders_dirty; /* the leaders with something for round_check */
    struct rt_leader *leaders_ticking; /* the leaders the tick visits: not idle */
    atomic_uint leaders_ticking_n;     /* how many, after the last tick: for /_metrics */
};

struct rt_host {
    struct rt_config *config;
    unsigned nshards;
    struct rt_shard *shards;
    struct repl_journal *journal;
    struct wal_uploader *uploader; /* NULL with store = none */
    uv_sem_t stopped; /* each shard posts once it takes no more events */
    atomic_bool shards_ready; /* their loops can take posts (other threads may post) */
};

/* The host, written once before shard threads start. */
extern struct rt_host rt_host;

/* Which shard owns an object. */
static inline unsigned rt_shard_of(uint64_t hash) { return (unsigned)(hash % rt_host.nshards); }

/* Hands `m` to shard `to` (ownership moves). From the same shard it runs on
 * the next loop turn, never inside the caller. Thread-safe. */
void rt_shard_post(struct rt_shard *from, unsigned to, struct rt_msg *m);
/* True if shard `to` can take another event (back-pressure). Reserves a slot
 * that rt_shard_event_done() gives back. */
bool rt_shard_event_reserve(unsigned to);
void rt_shard_event_done(struct rt_shard *s);

int rt_host_run(struct rt_config *c);

/* ---- the HTTP/WebSocket front (http.c) --------------------------------- */

int rt_front_start(struct rt_shard *s, char *err, size_t errlen);
void rt_front_stop(struct rt_shard *s);
void rt_front_on_reply(struct rt_shard *s, struct rt_reply *r);
void rt_front_on_ws_out(struct rt_shard *s, struct rt_ws_out *o);
/* On the peer thread: a forwarded request or reply (router/forward.c) from
 * host `from`, borrowed. */
void rt_front_forwarded(uint32_t from, const uint8_t *payload, size_t len);
/* Asks host `to` (this one too) to lead an object that has not moved to the
 * new membership yet (cluster.c). On the peer thread. */
void rt_fwd_wake(uint32_t to, const char *cls, size_t cls_len, const char *name, size_t name_len);
void rt_front_on_fwd_reply(struct rt_shard *s, struct rt_fwd_reply *m);
void rt_front_on_fwd_ws(struct rt_shard *s, struct rt_fwd_ws *m);

/* ---- actors (actor.c) -------------------------------------------------- */

void rt_actors_start(struct rt_shard *s);
void rt_actors_stop(struct rt_shard *s);
/* Runs one event (owned) on this shard's actor for it. */
void rt_actors_on_event(struct rt_shard *s, struct rt_event *e);
/* Starts a snapshot of an object (the message is owned): its database is
 * copied between events (SQLite's backup API, a step per loop turn) and
 * handed to the uploader. */
void rt_actors_on_snapshot(struct rt_shard *s, struct rt_snapshot_msg *m);

struct rt_actor;
/* The durability point reports that every record up to `lsn` is durable. */
void rt_actor_durable(struct rt_shard *s, struct rt_actor *a, uint64_t lsn);

/* The actor's class and object name (valid while the actor is). */
void rt_actor_names(const struct rt_actor *a, const char **cls, const char **name, size_t *name_len);

/* The journal's segment pin a durable record hands to its actor; the actor
 * gives it back once its database file is checkpointed and fsync'd. */
void rt_actor_pin(struct rt_actor *a, uint32_t segment);

/* ---- durability (durable.c) -------------------------------------------- */

/* Sends the journal's log lines to RT_LOG; before recovery. */
void rt_durable_init_logging(void);
/* Opens the journal and the uploader (after recovery); the segments from
 * rt_recover. */
int rt_durable_start(struct rt_config *c, uint32_t first_segment, uint32_t keep_from, char *err, size_t errlen);
/* The object-store settings of the config. */
struct wal_store_config rt_store_config(const struct rt_config *c);
/* Hands a durable record (owned; packed: wal_record_pack'd) to the uploader,
 * with a pin on its journal segment unless segment is UINT32_MAX; frees it
 * when there is no object storage. */
void rt_durable_upload(const char *cls, const char *name, size_t name_len, uint8_t *rec, size_t len, bool packed,
                       uint32_t segment);
/* A snapshot file of an object at `lsn` (path owned) for the uploader. */
void rt_durable_snapshot(const uint8_t id[16], const char *cls, const char *name, size_t name_len, uint64_t lsn,
                         char *path);
/* An object idle long enough to be closed: the uploader may want a snapshot. */
void rt_durable_idle(const uint8_t id[16], const char *cls, const char *name, size_t name_len);
/* "Uploaded" marker records the journal wrote (not commits). */
uint64_t rt_durable_markers(void);
/* Upload counters for /_metrics; false without object storage. */
bool rt_upload_stats(struct wal_upload_stats *out);
/* Drains the journal: every submitted record gets its answer. */
void rt_durable_stop(void);
/* Frees it, once the shard threads are joined. */
void rt_durable_destroy(void);
/* Hands an event's encoded record (owned) with its lsn to the durability
 * point; rt_actor_durable() follows once it is durable. */
void rt_durable_submit(struct rt_shard *s, struct rt_actor *a, uint64_t lsn, uint8_t *rec, size_t len);
/* A journal answer arrived on the actor's shard. */
void rt_durable_on_msg(struct rt_shard *s, struct rt_durable_msg *m);
/* Gives back a segment pin (see rt_actor_pin). Thread-safe. */
void rt_durable_release(uint32_t segment);
/* The SQLite `synchronous` setting the durability point needs. */
const char *rt_durable_sqlite_synchronous(void);
/* Counters for /_metrics. */
void rt_durable_stats(struct repl_stats *out);

/* ---- recovery (recover.c) ---------------------------------------------- */

/* Reads DATA/journal back, rolls every object's database forward to its last
 * durable record (rebuilding a missing or damaged one where the journal holds
 * all its records), fsyncs them, and deletes the journal segments that hold
 * no record still to be uploaded: *keep_from .. *next_segment - 1 stay. */
int rt_recover(const struct rt_config *c, uint32_t *next_segment, uint32_t *keep_from, char *err, size_t errlen);
/* Once the journal and uploader run: hands the uploader every record the
 * kept segments hold that the store does not have yet. */
int rt_recover_uploads(const struct rt_config *c, char *err, size_t errlen);
struct sqlite3;
/* The lsn stamped in an object's database: 0 if it has none yet (new), -1 if
 * it can not be read. */
int64_t rt_db_lsn(struct sqlite3 *db);
/* The lsn and origin (the epoch of the leader that made its last record; 0
 * on a single host) stamped in a closed database file: 0, or -EIO with lsn
 * -1 when it can not be read (or does not exist). */
int rt_db_file_stamp(const char *path, int64_t *lsn, uint64_t *origin);


/* ---- rebuilding from object storage (fetch.c) --------------------------- */

/* Writes the newest state the store holds of object `id` of class `cls`
 * (NULL: try every loaded class) to `path`, which must not exist. Returns 0
 * (*lsn set, *cls_found set when cls was NULL), -ENOENT if the store has no
 * such object (or there is no store), or another negative errno with err
 * saying why. With a class given (activation: a client waits) one attempt of
 * at most 5 s; without (recovery), the store's retries. Blocking: not on a
 * shard's loop. */
int rt_fetch_object(const struct rt_config *c, const char *cls, const uint8_t id[16], const char *path,
                    uint64_t *lsn, char *err, size_t errlen);

/* Builds the object's database as of record `lsn` (WAL_LSN_LATEST: the
 * newest) or, when lsn is 0, of time `at_us`, at `path` (must not exist).
 * 0 with *got set to the lsn it ends at, or a negative errno as
 * wal_restore() gives with err saying why. Blocking. */
int rt_restore_object(const struct rt_config *c, const char *cls, const uint8_t id[16], uint64_t lsn, int64_t at_us,
                      const char *path, uint64_t *got, char *err, size_t errlen);

/* ---- operator commands (tools.c) ---------------------------------------- */

int rt_cmd_restore(int argc, char **argv);
int rt_cmd_ls(int argc, char **argv);
/* dobj status --server URL: hosts, links, objects led and replicated, lags. */
int rt_cmd_status(int argc, char **argv);
int rt_cmd_gc(int argc, char **argv);
/* RFC 3339 to microseconds since the epoch; -1 if it is not one. */
int rt_parse_rfc3339(const char *s, int64_t *out_us);

/* ---- time -------------------------------------------------------------- */

int64_t rt_now_us(void);

/* ---- a cluster (cluster.c: the replication thread; leader.c: the shards) */

struct rt_leader;

struct rt_cluster_stats {
    struct repl_peers_stats peers;
    uint64_t replica_ops, dropped_msgs, checkpoints;
    struct repl_stats journal; /* the replica journal's counters (/_metrics shows its fsyncs) */
    uint64_t commits; /* records this host's leaders made durable */
    uint64_t leading, replicating; /* objects this host leads, keeps replicas of */
    uint64_t moving, wakes; /* objects still to move to the new membership; leaders asked to */
};

bool rt_cluster_enabled(void);
int rt_cluster_start(const struct rt_config *c, char *err, size_t errlen);
void rt_cluster_stop(void);
void rt_cluster_destroy(void);
void rt_cluster_stats(struct rt_cluster_stats *out);
/* n more records made durable by a quorum (dobj_commits_total). Thread-safe. */
void rt_cluster_count_commits(uint64_t n);
/* An object's placement, all from one loaded cluster file: who leads it
 * (rt_cluster_route), its replica set (`replicas` host ids, in rank order)
 * and, while the membership changes and its replica set with it, the set
 * under the previous membership (nold = `replicas`) for a joint leader. */
struct rt_placement {
    uint64_t version, gen; /* the file's version; which load of it */
    uint32_t leader;
    uint32_t replicas[REPL_REPLICAS_MAX], old[REPL_REPLICAS_MAX];
    unsigned nold;
};
void rt_cluster_place(const uint8_t id[16], struct rt_placement *out);
/* Counts the cluster file's loads: a placement of an older one is stale. */
uint64_t rt_cluster_view_gen(void);
/* A host of the cluster file loaded now (addresses, zone), or of an older
 * one (a host that left), or NULL for an id never listed. Thread-safe: a
 * loaded file stays in memory until exit. */
const struct router_host *rt_cluster_host(uint32_t id);
/* Every host of the cluster file loaded now, as one consistent list. */
const struct router_cluster *rt_cluster_hosts(void);
/* A host of `hosts` (rt_cluster_hosts) in that file: "member", "joining" (a
 * member, not of the previous membership) or "leaving". */
const char *rt_cluster_role(const struct router_cluster *hosts, uint32_t id);
/* The loaded cluster file's version (0: not a cluster). */
uint64_t rt_cluster_version(void);
/* GET url into body (NUL-terminated), giving up after timeout_s: the HTTP
 * status, or 0 when there was no answer (tools.c). */
long rt_http_get(const char *url, struct sdk_buf *body, long timeout_s);
/* The value after `key ` at the start of a line of text, or NULL (GET
 * /_status's format). */
const char *rt_line_value(const char *text, const char *key);
/* SIGHUP: loads the cluster file again (see cluster.c). 0, or -1 with why
 * the new file can not follow the loaded one (the loaded one stays). */
int rt_cluster_reload(char *err, size_t errlen);
/* A new epoch of cluster version `version` above `seen`, never used by this
 * host before; n 0 when this host may not lead (`seen` is of a newer
 * version). Thread-safe. */
struct repl_epoch rt_cluster_epoch(struct repl_epoch seen, uint64_t version);
uint64_t rt_cluster_epoch_pack(struct repl_epoch e);
void rt_cluster_send(const struct repl_msg *m);
/* The host that leads the object now: the first live one of its candidates
 * (router_candidates: rank 0, then its replicas; live: connected, or this
 * host). Thread-safe. */
uint32_t rt_cluster_route(const uint8_t id[16]);
/* This host, a peer whose connection is up, or anyone just after start. */
bool rt_cluster_host_live(uint32_t id);
/* Sends a forwarded request or reply (router/forward.c) to host `to`. */
void rt_cluster_send_app(uint32_t to, const void *payload, size_t len);
void rt_cluster_register(const uint8_t id[16], unsigned shard, struct rt_leader *l);
void rt_cluster_unregister(const uint8_t id[16], struct rt_leader *l);
struct rt_leader *rt_cluster_leader_of(const uint8_t id[16], unsigned shard);

/* leader.c, on the object's shard. */
void rt_leaders_start(struct rt_shard *s);
void rt_leaders_stop(struct rt_shard *s);
/* The cluster file was loaded again: leaders whose placement changed step down. */
void rt_leaders_reconfigured(struct rt_shard *s);
/* Starts leading `a` (recovery); its events wait until it serves. Returns 0,
 * or -1 with `why` when this host may not lead the object. */
int rt_leader_start(struct rt_shard *s, struct rt_actor *a, const uint8_t id[16], const char *cls,
                    const char *name, size_t name_len, char *why, size_t whylen);
/* Lets go of a leader whose records are all durable (its actor closes). */
void rt_leader_destroy(struct rt_leader *l);
int rt_leader_append(struct rt_leader *l, uint64_t lsn, uint8_t *rec, size_t len);
uint64_t rt_leader_epoch_packed(const struct rt_leader *l);
/* The read round a read-only event's outputs wait for: one started at the end
 * of this loop turn, after every read in it. */
uint64_t rt_leader_read_round(struct rt_leader *l);
void rt_leader_on_msg(struct rt_shard *s, struct rt_repl_msg *m);
void rt_leader_on_uploaded(struct rt_shard *s, struct rt_uploaded_msg *m);
void rt_cluster_uploaded(const uint8_t id[16], uint64_t lsn);
void rt_cluster_replica_uploaded(const uint8_t id[16], uint64_t lsn);

/* actor.c's side of a leader. */
/* Recovery chose the durable state (records up to `lsn`, the file at `path`
 * built): open it and write the barrier; rv != 0: the held events fail. */
void rt_actor_recovered(struct rt_shard *s, struct rt_actor *a, int rv, uint64_t lsn, const char *err);
/* The leader lost its epoch or its quorum: outputs not durable get 503, the
 * file is discarded. */
void rt_actor_deposed(struct rt_shard *s, struct rt_actor *a, uint64_t durable, const char *why);
struct rt_leader **rt_actor_leader_slot(struct rt_actor *a);
/* Its leader hands it over (a membership change): new events wait. */
void rt_actor_hold(struct rt_actor *a);
/* The leader let go after a membership change with every record durable
 * (leader.c): the file stays; waiting events lead the object again. */
void rt_actor_handed_over(struct rt_shard *s, struct rt_actor *a);
/* Closes the actor's database before recovery rebuilds its file. */
const char *rt_actor_close_for_recovery(struct rt_shard *s, struct rt_actor *a);
void rt_actor_recovering(struct rt_actor *a);
/* Reads up to this round may answer. */
void rt_actor_confirmed(struct rt_shard *s, struct rt_actor *a, uint64_t round);

#endif /* RUNTIME_H */
