/*
 * cluster.c: the cluster file (format in router.h) and rendezvous placement.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "router.h"

/* "HOST:PORT" or "[V6]:PORT" into host and port. */
static bool parse_addr(const char *s, char *host, size_t hostlen, uint16_t *port)
{
    const char *colon;
    const char *h = s;
    size_t hl;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':')
            return false;
        h = s + 1;
        hl = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return false;
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= hostlen)
        return false;
    char *endp;
    errno = 0;
    unsigned long p = strtoul(colon + 1, &endp, 10);
    if (errno != 0 || *endp != '\0' || p == 0 || p > 65535)
        return false;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (uint16_t)p;
    return true;
}

static int line_host(struct router_cluster *c, char **tok, int ntok, char *why, size_t whylen)
{
    if (ntok < 4 || ntok > 5) {
        snprintf(why, whylen, "a host line is: host ID CLIENT-ADDR PEER-ADDR [ZONE]");
        return -1;
    }
    if (c->nhosts == ROUTER_HOSTS_MAX) {
        snprintf(why, whylen, "more than %d hosts", ROUTER_HOSTS_MAX);
        return -1;
    }
    char *end;
    errno = 0;
    unsigned long id = strtoul(tok[1], &end, 10);
    if (errno != 0 || *end != '\0' || id == 0 || id > 65535) {
        snprintf(why, whylen, "host id '%s' is not a number in 1..65535", tok[1]);
        return -1;
    }
    if (router_host_find(c, (uint32_t)id) != NULL) {
        snprintf(why, whylen, "host id %lu appears twice", id);
        return -1;
    }
    struct router_host *h = &c->hosts[c->nhosts];
    memset(h, 0, sizeof(*h));
    h->id = (uint32_t)id;
    if (!parse_addr(tok[2], h->client_host, sizeof(h->client_host), &h->client_port)) {
        snprintf(why, whylen, "client address '%s' is not HOST:PORT", tok[2]);
        return -1;
    }
    if (!parse_addr(tok[3], h->peer_host, sizeof(h->peer_host), &h->peer_port)) {
        snprintf(why, whylen, "peer address '%s' is not HOST:PORT", tok[3]);
        return -1;
    }
    if (ntok == 5)
        snprintf(h->zone, sizeof(h->zone), "%s", tok[4]);
    c->nhosts++;
    return 0;
}

/* previous ID ... / leaving ID ...: checked against the host lines once
 * the whole file is read. */
static int line_ids(struct router_cluster *c, char **tok, int ntok, char *why, size_t whylen)
{
    bool prev = strcmp(tok[0], "previous") == 0;
    uint32_t *ids = prev ? c->previous : c->leaving;
    unsigned *n = prev ? &c->nprevious : &c->nleaving;
    if (*n > 0) {
        snprintf(why, whylen, "a second '%s' line", tok[0]);
        return -1;
    }
    if (ntok < 2) {
        snprintf(why, whylen, "a %s line is: %s ID ...", tok[0], tok[0]);
        return -1;
    }
    for (int i = 1; i < ntok; i++) {
        char *end;
        errno = 0;
        unsigned long id = strtoul(tok[i], &end, 10);
        if (errno != 0 || *end != '\0' || id == 0 || id > 65535) {
            snprintf(why, whylen, "host id '%s' is not a number in 1..65535", tok[i]);
            return -1;
        }
        for (unsigned k = 0; k < *n; k++)
            if (ids[k] == id) {
                snprintf(why, whylen, "host id %lu appears twice", id);
                return -1;
            }
        ids[(*n)++] = (uint32_t)id;
    }
    return 0;
}

static bool ids_have(const uint32_t *ids, unsigned n, uint32_t id)
{
    for (unsigned i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

/* The whole file: previous and leaving name listed hosts. */
static int check_members(const struct router_cluster *c, char *why, size_t whylen)
{
    for (unsigned i = 0; i < c->nprevious; i++)
        if (router_host_find(c, c->previous[i]) == NULL) {
            snprintf(why, whylen,
                     "'previous' names host %u, which has no host line (a host leaving keeps its line until the change "
                     "is done)", c->previous[i]);
            return -1;
        }
    for (unsigned i = 0; i < c->nleaving; i++) {
        if (router_host_find(c, c->leaving[i]) == NULL) {
            snprintf(why, whylen, "'leaving' names host %u, which has no host line", c->leaving[i]);
            return -1;
        }
        if (!ids_have(c->previous, c->nprevious, c->leaving[i])) {
            snprintf(why, whylen, "host %u is leaving but is not in 'previous': only a previous member can leave",
                     c->leaving[i]);
            return -1;
        }
    }
    if (c->nleaving >= c->nhosts) {
        snprintf(why, whylen, "every host is leaving");
        return -1;
    }
    return 0;
}

void router_cluster_members(const struct router_cluster *c, bool previous, struct router_cluster *out)
{
    *out = *c;
    out->nhosts = 0;
    out->nprevious = out->nleaving = 0;
    for (unsigned i = 0; i < c->nhosts; i++) {
        uint32_t id = c->hosts[i].id;
        bool member = previous && c->nprevious > 0 ? ids_have(c->previous, c->nprevious, id)
                                                   : !ids_have(c->leaving, c->nleaving, id);
        if (member)
            out->hosts[out->nhosts++] = c->hosts[i];
    }
}

static int parse_line(struct router_cluster *c, char *line, char *why, size_t whylen)
{
    char *tok[ROUTER_HOSTS_MAX + 1];
    int ntok = 0;
    for (char *save = NULL, *t = strtok_r(line, " \t\r\n", &save); t != NULL; t = strtok_r(NULL, " \t\r\n", &save)) {
        if (t[0] == '#')
            break;
        if (ntok == ROUTER_HOSTS_MAX + 1) {
            snprintf(why, whylen, "too many words");
            return -1;
        }
        tok[ntok++] = t;
    }
    if (ntok == 0)
        return 0;
    if (strcmp(tok[0], "host") == 0)
        return line_host(c, tok, ntok, why, whylen);
    bool one_value = strcmp(tok[0], "seed") == 0 || strcmp(tok[0], "secret") == 0 || strcmp(tok[0], "version") == 0;
    if (one_value && ntok != 2) {
        snprintf(why, whylen, "a %s line is: %s %s", tok[0], tok[0], strcmp(tok[0], "secret") == 0 ? "SECRET" : "N");
        return -1;
    }
    if (strcmp(tok[0], "version") == 0 && c->version != 0) {
        snprintf(why, whylen, "a second 'version' line");
        return -1;
    }
    if (strcmp(tok[0], "seed") == 0 && ntok == 2) {
        char *end;
        errno = 0;
        c->seed = strtoull(tok[1], &end, 10);
        if (errno == 0 && *end == '\0')
            return 0;
        snprintf(why, whylen, "seed '%s' is not a number", tok[1]);
        return -1;
    }
    if (strcmp(tok[0], "version") == 0 && ntok == 2) {
        char *end;
        errno = 0;
        c->version = strtoull(tok[1], &end, 10);
        if (errno == 0 && *end == '\0' && c->version >= 1 && c->version <= ROUTER_VERSION_MAX)
            return 0;
        snprintf(why, whylen, "version '%s' is not a number in 1..%u", tok[1], ROUTER_VERSION_MAX);
        return -1;
    }
    if (strcmp(tok[0], "previous") == 0 || strcmp(tok[0], "leaving") == 0)
        return line_ids(c, tok, ntok, why, whylen);
    if (strcmp(tok[0], "secret") == 0 && ntok == 2) {
        if (strlen(tok[1]) >= sizeof(c->secret)) {
            snprintf(why, whylen, "the secret is longer than %zu bytes", sizeof(c->secret) - 1);
            return -1;
        }
        snprintf(c->secret, sizeof(c->secret), "%s", tok[1]);
        return 0;
    }
    snprintf(why, whylen, "unknown line '%s' (expected host, seed, secret, version, previous or leaving)", tok[0]);
    return -1;
}

int router_cluster_load(struct router_cluster *c, const char *path, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "cluster file %s: %s", path, strerror(errno));
        return -1;
    }
    char line[1024], why[256];
    unsigned n = 0;
    int rv = 0;
    while (rv == 0 && fgets(line, sizeof(line), f) != NULL) {
        n++;
        if (parse_line(c, line, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "cluster file %s line %u: %s", path, n, why);
            rv = -1;
        }
    }
    fclose(f);
    if (rv == 0 && c->nhosts == 0) {
        snprintf(err, errlen, "cluster file %s lists no hosts", path);
        rv = -1;
    }
    if (rv == 0 && check_members(c, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "cluster file %s: %s", path, why);
        rv = -1;
    }
    if (c->version == 0)
        c->version = 1;
    return rv;
}

const struct router_host *router_host_find(const struct router_cluster *c, uint32_t id)
{
    for (unsigned i = 0; i < c->nhosts; i++)
        if (c->hosts[i].id == id)
            return &c->hosts[i];
    return NULL;
}

static uint64_t weight(const struct router_cluster *c, const uint8_t id[16], uint32_t host)
{
    uint8_t in[20];
    memcpy(in, id, 16);
    in[16] = (uint8_t)host;
    in[17] = (uint8_t)(host >> 8);
    in[18] = (uint8_t)(host >> 16);
    in[19] = (uint8_t)(host >> 24);
    return XXH3_64bits_withSeed(in, sizeof(in), c->seed);
}

static unsigned rank_of(const struct router_cluster *c, const unsigned rank[ROUTER_HOSTS_MAX], uint32_t id)
{
    for (unsigned i = 0; i < c->nhosts; i++)
        if (c->hosts[rank[i]].id == id)
            return i;
    return c->nhosts;
}

void router_rank(const struct router_cluster *c, const uint8_t object_id[16], unsigned out[ROUTER_HOSTS_MAX])
{
    uint64_t w[ROUTER_HOSTS_MAX];
    for (unsigned i = 0; i < c->nhosts; i++) {
        w[i] = weight(c, object_id, c->hosts[i].id);
        out[i] = i;
    }
    /* insertion sort, heaviest first; ties (never in practice) by id */
    for (unsigned i = 1; i < c->nhosts; i++)
        for (unsigned k = i; k > 0; k--) {
            unsigned a = out[k - 1], b = out[k];
            if (w[a] > w[b] || (w[a] == w[b] && c->hosts[a].id < c->hosts[b].id))
                break;
            out[k - 1] = b;
            out[k] = a;
        }
}

/* How many of out[0..n) are in `zone` (a host without one is alone in its). */
static unsigned zone_count(const struct router_cluster *c, const uint32_t *out, unsigned n, const char *zone)
{
    unsigned k = 0;
    for (unsigned i = 0; i < n && zone[0] != '\0'; i++)
        k += strcmp(router_host_find(c, out[i])->zone, zone) == 0;
    return k;
}

/* Replicas spread over the zones, round by round: round r walks the ranking
 * and takes each host whose zone has r replicas so far. Hosts without a zone
 * are a zone of their own each, so with no zones (or one host per zone) this
 * is ranks 1..replicas. */
void router_replicas(const struct router_cluster *c, const unsigned rank[ROUTER_HOSTS_MAX], unsigned replicas,
                     uint32_t *out)
{
    unsigned first = c->nhosts > replicas ? 1 : 0, n = 0;
    bool taken[ROUTER_HOSTS_MAX] = {0};
    for (unsigned round = 0; n < replicas && n + first < c->nhosts; round++)
        for (unsigned i = first; i < c->nhosts && n < replicas; i++)
            if (!taken[i] && zone_count(c, out, n, c->hosts[rank[i]].zone) <= round) {
                out[n++] = c->hosts[rank[i]].id;
                taken[i] = true;
            }
    /* In rank order, which is the order of succession. */
    for (unsigned i = 1; i < n; i++)
        for (unsigned k = i; k > 0 && rank_of(c, rank, out[k]) < rank_of(c, rank, out[k - 1]); k--) {
            uint32_t t = out[k];
            out[k] = out[k - 1];
            out[k - 1] = t;
        }
}

unsigned router_candidates(const struct router_cluster *c, const unsigned rank[ROUTER_HOSTS_MAX], unsigned replicas,
                           uint32_t *out)
{
    uint32_t reps[ROUTER_HOSTS_MAX];
    router_replicas(c, rank, replicas, reps);
    unsigned nreps = replicas < c->nhosts ? replicas : c->nhosts, n = 0;
    out[n++] = c->hosts[rank[0]].id;
    for (unsigned i = 0; i < nreps; i++)
        if (reps[i] != out[0])
            out[n++] = reps[i];
    return n;
}
