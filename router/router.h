/*
 * router.h: cluster membership and placement.
 *
 * The cluster file lists the hosts, one per line, and two optional settings:
 *
 *   # comment
 *   seed 0                                   placement seed (default 0)
 *   secret SECRET                            the peers' shared secret
 *   host ID CLIENT-ADDR PEER-ADDR [ZONE]     e.g. host 1 127.0.0.1:8081 127.0.0.1:9081
 *
 * Ids are 1..65535 and unique, addresses HOST:PORT (IPv6 as [::1]:9081).
 * Placement is rendezvous hashing (highest random weight): every host gets a
 * weight per object from (seed, host id, object id), and the hosts in
 * descending weight are the object's ranking. Rank 0 leads; the replica set
 * is ranks 1..replicas (ranks 0..replicas-1 when there are no more hosts than
 * replicas). Failure detection and forwarding come with issue 6.
 */
#ifndef ROUTER_H
#define ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ROUTER_HOSTS_MAX 64

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
};

/* Reads a cluster file. On error, -1 with err naming the file, line and
 * what is wrong. */
int router_cluster_load(struct router_cluster *c, const char *path, char *err, size_t errlen);
/* The host with this id, or NULL. */
const struct router_host *router_host_find(const struct router_cluster *c, uint32_t id);
/* Ranks every host for an object: out[i] is the index (into c->hosts) of the
 * host of rank i. */
void router_rank(const struct router_cluster *c, const uint8_t object_id[16], unsigned out[ROUTER_HOSTS_MAX]);
/* The replica set of an object from its ranking: `replicas` host ids. */
void router_replicas(const struct router_cluster *c, const unsigned rank[ROUTER_HOSTS_MAX], unsigned replicas,
                     uint32_t *out);

#endif /* ROUTER_H */
