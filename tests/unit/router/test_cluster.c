/*
 * The cluster file and rendezvous placement (router/cluster.c).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "router.h"

static const char *write_file(const char *text)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/dobj-router-test-%d.conf", getpid());
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void six(struct router_cluster *c)
{
    char err[256];
    const char *p = write_file("# six hosts\nseed 7\nsecret s3cret-s3cret\n"
                               "host 1 127.0.0.1:8081 127.0.0.1:9081\nhost 2 127.0.0.1:8082 127.0.0.1:9082 zone-b\n"
                               "host 3 [::1]:8083 [::1]:9083\nhost 4 10.0.0.4:8080 10.0.0.4:9080 # a comment\n"
                               "host 5 10.0.0.5:8080 10.0.0.5:9080\nhost 6 10.0.0.6:8080 10.0.0.6:9080\n");
    cr_assert_eq(router_cluster_load(c, p, err, sizeof(err)), 0, "%s", err);
    unlink(p);
}

Test(router, cluster_file)
{
    struct router_cluster c;
    six(&c);
    cr_assert_eq(c.nhosts, 6);
    cr_assert_eq(c.seed, 7);
    cr_assert_str_eq(c.secret, "s3cret-s3cret");
    const struct router_host *h = router_host_find(&c, 3);
    cr_assert_str_eq(h->client_host, "::1");
    cr_assert_eq(h->peer_port, 9083);
    cr_assert_str_eq(router_host_find(&c, 2)->zone, "zone-b");
    cr_assert_null(router_host_find(&c, 9));
}

Test(router, memberships_of_a_change)
{
    struct router_cluster c, cur, prev;
    char err[256];
    const char *p = write_file("version 3\nprevious 1 2 3\nleaving 3\n"
                               "host 1 127.0.0.1:1 127.0.0.1:2\nhost 2 127.0.0.1:3 127.0.0.1:4\n"
                               "host 3 127.0.0.1:5 127.0.0.1:6\nhost 4 127.0.0.1:7 127.0.0.1:8\n");
    cr_assert_eq(router_cluster_load(&c, p, err, sizeof(err)), 0, "%s", err);
    unlink(p);
    cr_assert_eq(c.version, 3);
    router_cluster_members(&c, false, &cur);
    router_cluster_members(&c, true, &prev);
    cr_assert_eq(cur.nhosts, 3);
    cr_assert_not_null(router_host_find(&cur, 4));
    cr_assert_null(router_host_find(&cur, 3));
    cr_assert_eq(prev.nhosts, 3);
    cr_assert_not_null(router_host_find(&prev, 3));
    cr_assert_null(router_host_find(&prev, 4));
    /* Without a change, both memberships are every host, version 1. */
    six(&c);
    cr_assert_eq(c.version, 1);
    router_cluster_members(&c, true, &prev);
    cr_assert_eq(prev.nhosts, 6);
}

Test(router, bad_files_are_named_by_line)
{
    static const char *const bad[][2] = {
        {"host 1 127.0.0.1:1 127.0.0.1:2\nhost 1 127.0.0.1:3 127.0.0.1:4\n", "line 2: host id 1 appears twice"},
        {"host 0 127.0.0.1:1 127.0.0.1:2\n", "line 1: host id '0'"},
        {"host 1 127.0.0.1 127.0.0.1:2\n", "client address '127.0.0.1' is not HOST:PORT"},
        {"host 1 127.0.0.1:1 127.0.0.1:99999\n", "peer address"},
        {"hosts 1 2 3\n", "unknown line 'hosts'"},
        {"# nothing\n", "lists no hosts"},
        {"version 0\nhost 1 127.0.0.1:1 127.0.0.1:2\n", "version '0' is not a number in 1..4095"},
        {"version 4096\nhost 1 127.0.0.1:1 127.0.0.1:2\n", "version '4096'"},
        {"previous 1 2\nhost 1 127.0.0.1:1 127.0.0.1:2\n", "'previous' names host 2, which has no host line"},
        {"previous 1 1\nhost 1 127.0.0.1:1 127.0.0.1:2\n", "line 1: host id 1 appears twice"},
        {"previous\nhost 1 127.0.0.1:1 127.0.0.1:2\n", "a previous line is: previous ID"},
        {"previous 1\nprevious 1\nhost 1 127.0.0.1:1 127.0.0.1:2\n", "line 2: a second 'previous' line"},
        {"leaving 1\nhost 1 127.0.0.1:1 127.0.0.1:2\nhost 2 127.0.0.1:3 127.0.0.1:4\n",
         "host 1 is leaving but is not in 'previous'"},
        {"previous 1\nleaving 1\nhost 1 127.0.0.1:1 127.0.0.1:2\n", "every host is leaving"},
        {"version 2 3\nhost 1 127.0.0.1:1 127.0.0.1:2\n", "line 1: a version line is: version N"},
        {"version 2\nversion 3\nhost 1 127.0.0.1:1 127.0.0.1:2\n", "line 2: a second 'version' line"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct router_cluster c;
        char err[256] = "";
        const char *p = write_file(bad[i][0]);
        cr_assert_neq(router_cluster_load(&c, p, err, sizeof(err)), 0, "accepted: %s", bad[i][0]);
        cr_assert(strstr(err, bad[i][1]) != NULL, "'%s' does not say '%s'", err, bad[i][1]);
        unlink(p);
    }
}

Test(router, ranking_is_a_stable_permutation_and_spreads_leaders)
{
    struct router_cluster c;
    six(&c);
    unsigned led[7] = {0};
    for (unsigned k = 0; k < 6000; k++) {
        uint8_t id[16] = {0};
        memcpy(id, &k, sizeof(k));
        unsigned r1[ROUTER_HOSTS_MAX], r2[ROUTER_HOSTS_MAX];
        router_rank(&c, id, r1);
        router_rank(&c, id, r2);
        cr_assert_eq(memcmp(r1, r2, sizeof(unsigned) * c.nhosts), 0, "not deterministic");
        bool seen[ROUTER_HOSTS_MAX] = {0};
        for (unsigned i = 0; i < c.nhosts; i++) {
            cr_assert_lt(r1[i], c.nhosts);
            cr_assert_not(seen[r1[i]], "host ranked twice");
            seen[r1[i]] = true;
        }
        uint32_t reps[5];
        router_replicas(&c, r1, 5, reps);
        for (unsigned i = 0; i < 5; i++)
            cr_assert_neq(reps[i], c.hosts[r1[0]].id, "the leader is one of its own replicas");
        led[c.hosts[r1[0]].id]++;
    }
    for (unsigned h = 1; h <= 6; h++)
        cr_assert(led[h] > 800 && led[h] < 1200, "host %u leads %u of 6000", h, led[h]);
}

/* Nine hosts in three zones: every object's five replicas span the three
 * zones, no zone holds more than two of them (so losing one keeps a quorum of
 * three), they come in rank order, and the leader's successors are they. */
Test(router, replicas_prefer_distinct_zones)
{
    char err[256];
    const char *p = write_file("host 1 h:1 h:2 a\nhost 2 h:1 h:2 a\nhost 3 h:1 h:2 a\n"
                               "host 4 h:1 h:2 b\nhost 5 h:1 h:2 b\nhost 6 h:1 h:2 b\n"
                               "host 7 h:1 h:2 c\nhost 8 h:1 h:2 c\nhost 9 h:1 h:2 c\n");
    struct router_cluster c;
    cr_assert_eq(router_cluster_load(&c, p, err, sizeof(err)), 0, "%s", err);
    unlink(p);
    unsigned moved = 0;
    for (unsigned k = 0; k < 3000; k++) {
        uint8_t id[16] = {0};
        memcpy(id, &k, sizeof(k));
        unsigned rank[ROUTER_HOSTS_MAX], pos[10] = {0};
        router_rank(&c, id, rank);
        for (unsigned i = 0; i < c.nhosts; i++)
            pos[c.hosts[rank[i]].id] = i;
        uint32_t reps[5], cand[ROUTER_HOSTS_MAX];
        router_replicas(&c, rank, 5, reps);
        unsigned per_zone[3] = {0};
        for (unsigned i = 0; i < 5; i++) {
            cr_assert_neq(reps[i], c.hosts[rank[0]].id, "the leader is one of its own replicas");
            per_zone[router_host_find(&c, reps[i])->zone[0] - 'a']++;
            if (i > 0)
                cr_assert_lt(pos[reps[i - 1]], pos[reps[i]], "replicas out of rank order");
            for (unsigned j = 0; j < i; j++)
                cr_assert_neq(reps[i], reps[j]);
        }
        for (unsigned z = 0; z < 3; z++)
            cr_assert(per_zone[z] >= 1 && per_zone[z] <= 2, "zone %c holds %u replicas", 'a' + z, per_zone[z]);
        unsigned n = router_candidates(&c, rank, 5, cand);
        cr_assert_eq(n, 6);
        cr_assert_eq(cand[0], c.hosts[rank[0]].id);
        cr_assert_eq(memcmp(cand + 1, reps, sizeof(reps)), 0);
        moved += pos[reps[4]] > 5; /* zones chose a host beyond rank 5 */
    }
    cr_assert_gt(moved, 0, "zones never changed the choice");
}

/* Without zones the replica set is ranks 1..5, as before zones existed. */
Test(router, without_zones_replicas_are_ranks_one_to_five)
{
    struct router_cluster c;
    six(&c); /* one host has a zone: a zone of its own changes nothing */
    for (unsigned k = 0; k < 500; k++) {
        uint8_t id[16] = {0};
        memcpy(id, &k, sizeof(k));
        unsigned rank[ROUTER_HOSTS_MAX];
        router_rank(&c, id, rank);
        uint32_t reps[5];
        router_replicas(&c, rank, 5, reps);
        for (unsigned i = 0; i < 5; i++)
            cr_assert_eq(reps[i], c.hosts[rank[i + 1]].id);
    }
}
