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

Test(router, bad_files_are_named_by_line)
{
    static const char *const bad[][2] = {
        {"host 1 127.0.0.1:1 127.0.0.1:2\nhost 1 127.0.0.1:3 127.0.0.1:4\n", "line 2: host id 1 appears twice"},
        {"host 0 127.0.0.1:1 127.0.0.1:2\n", "line 1: host id '0'"},
        {"host 1 127.0.0.1 127.0.0.1:2\n", "client address '127.0.0.1' is not HOST:PORT"},
        {"host 1 127.0.0.1:1 127.0.0.1:99999\n", "peer address"},
        {"hosts 1 2 3\n", "unknown line 'hosts'"},
        {"# nothing\n", "lists no hosts"},
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
