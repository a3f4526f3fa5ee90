/*
 * router.h: cluster membership and placement.
 *
 * The cluster file lists the hosts, one per line, and two optional settings:
 *
 *   # comment
 *   seed 0                                   placement seed (default 0)
 *   secret SECRET                            the peers' shared secret
 *   host ID CLIENT-ADDR PEER-ADDR [ZONE]     e.g. host 1 127.0.0.1:8081 127.0.0.1:9081
 *   version N                                the membership's version (default 1)
 *   previous ID ...                          while the membership changes: the
 *                                            members of the version before
 *   leaving ID ...                           hosts still listed (they hold data
 *                                            to move) that are members no more
 *
 * The members are the hosts not leaving. Changing them is a transition: the
 * new file names a higher version and, in `previous`, the members it
 * replaces; every host loads it (SIGHUP). Until every object has moved,
 * leaders replicate to both replica sets (replicate.h, joint
 * configurations); then the `previous` and `leaving` lines (and the leaving
 * hosts) are removed and the hosts loaded again (see runtime/cluster.c).
 *
 * Ids are 1..65535 and unique, addresses HOST:PORT (IPv6 as [::1]:9081).
 * Placement is rendezvous hashing (highest random weight): every host gets a
 * weight per object from (seed, host id, object id), and the hosts in
 * descending weight are the object's ranking. Rank 0 leads; the replica set
 * is ranks 1..replicas (ranks 0..replicas-1 when there are no more hosts than
 * replicas), or with zones, the first hosts of distinct zones in rank order,
 * then the rest. The leader is the first live one of rank 0 and the replica
 * set, in rank order (the runtime knows who is live: runtime/cluster.c); the
 * others forward a client's request to it (forward.c's payload, on the peer
 * connection) or, with --redirect, answer 307.
 */
#ifndef ROUTER_H
#define ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ROUTER_HOSTS_MAX 64
/* Epochs carry the version in 12 bits (replicate.h, REPL_EPOCH_VERSION_SHIFT). */
#define ROUTER_VERSION_MAX 4095u

struct router_host {
    uint32_t id;
    char client_host[64];
    uint16_t client_port;
    char peer_host[64];
    uint16_t peer_port;
    char zone[32];
};

struct router_cluster {
    struct router_host hosts[ROUTER_HOSTS_MAX];
    unsigned nhosts;
    uint64_t seed;
    char secret[256]; /* empty when the file has none */
    uint64_t version;
    uint32_t previous[ROUTER_HOSTS_MAX]; /* ids; none when no change is under way */
    unsigned nprevious;
    uint32_t leaving[ROUTER_HOSTS_MAX];
    unsigned nleaving;
};

/* The two memberships a cluster file describes, as clusters of their own
 * (placement ranks the members only): its members, and the previous
 * members (a copy of the members when there is no `previous`). */
void router_cluster_members(const struct router_cluster *c, bool previous, struct router_cluster *out);

/* Reads a cluster file. On error, -1 with err naming the file, line and
 * what is wrong. */
int router_cluster_load(struct router_cluster *c, const char *path, char *err, size_t errlen);
/* The host with this id, or NULL. */
const struct router_host *router_host_find(const struct router_cluster *c, uint32_t id);
/* Ranks every host for an object: out[i] is the index (into c->hosts) of the
 * host of rank i. */
void router_rank(const struct router_cluster *c, const uint8_t object_id[16], unsigned out[ROUTER_HOSTS_MAX]);
/* The replica set of an object from its ranking: `replicas` host ids (fewer
 * if there are not that many hosts), in rank order. With zones, hosts of
 * zones no replica has yet come first: one zone's loss takes as few
 * replicas as the zones allow. */
void router_replicas(const struct router_cluster *c, const unsigned rank[ROUTER_HOSTS_MAX], unsigned replicas,
                     uint32_t *out);
/* Who may lead an object, in order of succession: rank 0, then its replicas.
 * Returns how many (at most replicas + 1). */
unsigned router_candidates(const struct router_cluster *c, const unsigned rank[ROUTER_HOSTS_MAX], unsigned replicas,
                           uint32_t *out);

/* ---- forwarded requests (forward.c, format at its top) ------------------ */

enum router_fwd_kind {
    ROUTER_FWD_REQUEST = 1,
    ROUTER_FWD_REPLY,
    ROUTER_FWD_WS_OPEN,
    ROUTER_FWD_WS_MESSAGE,
    ROUTER_FWD_WS_CLOSE,
    ROUTER_FWD_WAKE, /* lead this object: it has not moved to the new membership yet */
};

struct router_str {
    const char *p;
    uint32_t len;
};

struct router_fwd {
    uint8_t kind;
    uint32_t shard;     /* the origin's shard that waits for the reply */
    uint64_t id;        /* the origin's request id */
    uint32_t status;    /* reply: HTTP status; ws message: kind; ws close: code */
    uint32_t served_by; /* reply: the host that ran it */
    uint64_t ws;        /* a socket id (see forward.c) */
    struct router_str cls, name, method, path, query;
    struct router_str headers; /* "name\0value\0" pairs */
    struct router_str body;
};

size_t router_fwd_size(const struct router_fwd *f);
/* Writes router_fwd_size(f) bytes. */
void router_fwd_encode(const struct router_fwd *f, uint8_t *out);
/* 0, or -1 for a malformed payload. The strings point into p. */
int router_fwd_decode(struct router_fwd *f, const uint8_t *p, size_t len);

#endif /* ROUTER_H */
