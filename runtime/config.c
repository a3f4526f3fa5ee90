/*
 * config.c: one table of options, read from a config file (`key = value`
 * lines, `#` comments) and then from flags (`--key value` / `--key=value`,
 * with '-' for '_'), which override the file. Every option has a default, so
 * `dobj serve` alone starts a host. Errors name the option, and the file and
 * line where there is one.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime.h"

enum opt_type { OPT_LISTEN, OPT_STR, OPT_UINT, OPT_SIZE, OPT_CLASS, OPT_LOG, OPT_BOOL };

struct opt {
    const char *name;
    enum opt_type type;
    size_t offset, size; /* of the field in struct rt_config */
    uint64_t min, max;
    const char *help;
};

#define OFF(f) offsetof(struct rt_config, f), sizeof(((struct rt_config *)0)->f)

static const struct opt opts[] = {
    {"listen", OPT_LISTEN, 0, 0, 0, 0, "HOST:PORT to serve HTTP and WebSocket on (127.0.0.1:8080)"},
    {"data", OPT_STR, OFF(data_dir), 0, 0, "data directory (./data)"},
    {"shards", OPT_UINT, OFF(shards), 1, 256, "shard threads (number of cores)"},
    {"class", OPT_CLASS, 0, 0, 0, 0, "a class library to load (repeatable)"},
    {"max_body", OPT_SIZE, OFF(max_body), 0, 1ull << 30, "request body limit in bytes, K/M suffixes (1M)"},
    {"idle_timeout_ms", OPT_UINT, OFF(idle_timeout_ms), 1, 86400000ull * 365,
     "close an idle object's database after this (30000)"},
    {"max_open", OPT_UINT, OFF(max_open), 1, 10000000, "open databases per shard, LRU beyond (10000)"},
    {"ws_msg_max", OPT_SIZE, OFF(ws_msg_max), 1, 64ull << 20, "WebSocket message limit in bytes (1M)"},
    {"max_inflight", OPT_UINT, OFF(max_inflight), 1, 10000000,
     "events queued plus records not yet durable, per shard, before 503 (65536)"},
    {"log_level", OPT_LOG, OFF(log_level), 0, 0, "error, warn, info or debug (info)"},
    {"journal_segment_bytes", OPT_SIZE, OFF(journal_segment_bytes), 1 << 16, 1ull << 40,
     "start a new journal segment past this size (64M)"},
    {"repair", OPT_BOOL, OFF(repair), 0, 0,
     "at start, skip damaged journal batches (losing their records) instead of refusing to start"},
    {"store", OPT_STR, OFF(store_url), 0, 0,
     "object storage for history and restore: file:///DIR, s3://BUCKET/PREFIX or none (file://DATA/store)"},
    {"store_endpoint", OPT_STR, OFF(store_endpoint), 0, 0,
     "S3 endpoint http(s)://HOST[:PORT] (https://s3.REGION.amazonaws.com)"},
    {"store_region", OPT_STR, OFF(store_region), 0, 0, "S3 region for signing (us-east-1)"},
    {"store_path_style", OPT_BOOL, OFF(store_path_style), 0, 0,
     "S3 path-style addressing ENDPOINT/BUCKET/KEY instead of BUCKET.HOST (false)"},
    {"store_access_key", OPT_STR, OFF(store_access_key), 0, 0, "S3 access key ($AWS_ACCESS_KEY_ID)"},
    {"store_secret_key", OPT_STR, OFF(store_secret_key), 0, 0, "S3 secret key ($AWS_SECRET_ACCESS_KEY)"},
    {"snapshot_min_bytes", OPT_SIZE, OFF(snapshot_min_bytes), 0, 1ull << 40,
     "snapshot an object once its segments since the last snapshot outweigh it and this (1M)"},
    {"store_timeout_ms", OPT_UINT, OFF(store_timeout_ms), 100, 600000,
     "one object-store request attempt gives up after this (30000)"},
    {"segment_bytes", OPT_SIZE, OFF(segment_bytes), 1 << 12, 1ull << 30,
     "cut an object's upload segment past this many record bytes (16M)"},
    {"segment_interval_ms", OPT_UINT, OFF(segment_interval_ms), 10, 86400000,
     "or this long after its first record (10000)"},
    {"cluster", OPT_STR, OFF(cluster_file), 0, 0,
     "cluster file (router/router.h): run as one host of a cluster (none: a single host)"},
    {"host_id", OPT_UINT, OFF(host_id), 1, 65535, "this host's id in the cluster file"},
    {"cluster_secret", OPT_STR, OFF(cluster_secret), 0, 0,
     "the peers' shared secret ($DOBJ_CLUSTER_SECRET, or the cluster file's secret line)"},
    {"replicas", OPT_UINT, OFF(replicas), 1, 16, "replica hosts per object in a cluster (5)"},
    {"quorum", OPT_UINT, OFF(quorum), 1, 16, "replicas that must have a write before it is acknowledged (3)"},
    {"commit_timeout_ms", OPT_UINT, OFF(commit_timeout_ms), 10, 600000,
     "a write without a quorum this long fails with 503 and the object's leader steps down (5000)"},
    {"peer_heartbeat_ms", OPT_UINT, OFF(peer_heartbeat_ms), 5, 60000, "heartbeat on idle peer connections (100)"},
    {"peer_dead_ms", OPT_UINT, OFF(peer_dead_ms), 20, 600000,
     "close and redial a peer connection silent this long (1000)"},
    {"redirect", OPT_BOOL, OFF(redirect), 0, 0,
     "in a cluster, answer a request for an object another host leads with 307 to it instead of forwarding it"},
    {"replica_upload_timeout_ms", OPT_UINT, OFF(replica_upload_timeout_ms), 100, 86400000,
     "a replica uploads committed records the leader has not confirmed in storage after this (60000)"},
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static void defaults(struct rt_config *c)
{
    memset(c, 0, sizeof(*c));
    c->listen_host = sdk_xstrdup("127.0.0.1");
    c->listen_port = 8080;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    c->shards = n > 0 ? (unsigned)n : 1;
    c->data_dir = sdk_xstrdup("./data");
    c->max_body = 1 << 20;
    c->idle_timeout_ms = 30000;
    c->max_open = 10000;
    c->ws_msg_max = 1 << 20;
    c->max_inflight = 65536;
    c->log_level = RT_LOG_INFO;
    c->journal_segment_bytes = 64ull << 20;
    c->replicas = 5;
    c->quorum = 3;
    c->commit_timeout_ms = 5000;
    c->peer_heartbeat_ms = 100;
    c->peer_dead_ms = 1000;
    c->replica_upload_timeout_ms = 60000;
    c->segment_bytes = 16ull << 20;
    c->segment_interval_ms = 10000;
    c->store_timeout_ms = 30000;
    c->snapshot_min_bytes = 1 << 20;
}

static const struct opt *opt_find(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTS; i++) {
        const char *o = opts[i].name;
        if (strlen(o) != len)
            continue;
        size_t j = 0;
        /* Flags spell '_' as '-'. */
        while (j < len && (name[j] == o[j] || (name[j] == '-' && o[j] == '_')))
            j++;
        if (j == len)
            return &opts[i];
    }
    return NULL;
}

static int parse_u64(const char *v, bool size_suffix, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    if (*v == '-' || *v == '\0')
        return -1;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno != 0 || end == v)
        return -1;
    uint64_t mul = 1;
    if (size_suffix && *end != '\0' && end[1] == '\0') {
        switch (*end) {
        case 'k': case 'K': mul = 1ull << 10; break;
        case 'm': case 'M': mul = 1ull << 20; break;
        case 'g': case 'G': mul = 1ull << 30; break;
        default: return -1;
        }
        end++;
    }
    if (*end != '\0' || (mul > 1 && n > UINT64_MAX / mul))
        return -1;
    *out = n * mul;
    return 0;
}

static int set_listen(struct rt_config *c, const char *v)
{
    const char *colon = strrchr(v, ':');
    uint64_t port;
    if (colon == NULL || colon == v || parse_u64(colon + 1, false, &port) != 0 || port > 65535)
        return -1;
    free(c->listen_host);
    c->listen_host = sdk_xstrndup(v, (size_t)(colon - v));
    c->listen_port = (int)port;
    return 0;
}

static int set_log(int *level, const char *v)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcmp(v, names[i]) == 0) {
            *level = i;
            return 0;
        }
    return -1;
}

/* Sets one option; on error writes why into err (without the location). */
static int opt_set(struct rt_config *c, const struct opt *o, const char *v, char *err, size_t errlen)
{
    char *base = (char *)c;
    uint64_t n;
    switch (o->type) {
    case OPT_LISTEN:
        if (set_listen(c, v) == 0)
            return 0;
        snprintf(err, errlen, "option 'listen': '%s' is not HOST:PORT", v);
        return -1;
    case OPT_STR:
        if (*v == '\0') {
            snprintf(err, errlen, "option '%s': empty value", o->name);
            return -1;
        }
        free(*(char **)(base + o->offset));
        *(char **)(base + o->offset) = sdk_xstrdup(v);
        return 0;
    case OPT_CLASS:
        if (c->nclasses == RT_CLASSES_MAX) {
            snprintf(err, errlen, "option 'class': more than %d classes", RT_CLASSES_MAX);
            return -1;
        }
        c->classes[c->nclasses++] = sdk_xstrdup(v);
        return 0;
    case OPT_BOOL:
        if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0 || strcmp(v, "false") == 0 || strcmp(v, "0") == 0) {
            *(bool *)(base + o->offset) = v[0] == 't' || v[0] == '1';
            return 0;
        }
        snprintf(err, errlen, "option '%s': '%s' is not true or false", o->name, v);
        return -1;
    case OPT_LOG:
        if (set_log((int *)(base + o->offset), v) == 0)
            return 0;
        snprintf(err, errlen, "option 'log_level': '%s' is not error, warn, info or debug", v);
        return -1;
    case OPT_UINT:
    case OPT_SIZE:
        if (parse_u64(v, o->type == OPT_SIZE, &n) != 0 || n < o->min || n > o->max) {
            snprintf(err, errlen, "option '%s': '%s' is not %s between %llu and %llu", o->name, v,
                     o->type == OPT_SIZE ? "a size" : "a number", (unsigned long long)o->min,
                     (unsigned long long)o->max);
            return -1;
        }
        if (o->size == sizeof(unsigned))
            *(unsigned *)(base + o->offset) = (unsigned)n;
        else if (o->size == sizeof(uint64_t))
            *(uint64_t *)(base + o->offset) = n;
        else
            abort(); /* a field of another width: the table is wrong */
        return 0;
    }
    return -1;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

static int load_file(struct rt_config *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "option 'config': can not open %s: %s", path, strerror(errno));
        return DOBJ_ECONFIG;
    }
    char line[4096], why[512];
    int rv = 0;
    for (unsigned lineno = 1; rv == 0 && fgets(line, sizeof(line), f) != NULL; lineno++) {
        char *s = trim(line);
        if (*s == '\0' || *s == '#' || *s == '[')
            continue;
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            snprintf(err, errlen, "%s:%u: expected 'option = value', got '%.64s'", path, lineno, s);
            rv = DOBJ_ECONFIG;
            break;
        }
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        const struct opt *o = opt_find(key, strlen(key));
        if (o == NULL || strchr(key, '-') != NULL) {
            snprintf(err, errlen, "%s:%u: unknown option '%.64s'", path, lineno, key);
            rv = DOBJ_ECONFIG;
        } else if (opt_set(c, o, val, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "%s:%u: %s", path, lineno, why);
            rv = DOBJ_ECONFIG;
        }
    }
    fclose(f);
    return rv;
}

/* Finds the value of flag i: "--k=v" or "--k v". */
static const char *flag_value(int argc, char **argv, int *i, const char *eq)
{
    if (eq != NULL)
        return eq + 1;
    if (*i + 1 < argc)
        return argv[++*i];
    return NULL;
}

static int load_flags(struct rt_config *c, int argc, char **argv, bool config_pass, char *err, size_t errlen)
{
    char why[512];
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument '%s' (options start with --)", a);
            return DOBJ_ECONFIG;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nlen = eq != NULL ? (size_t)(eq - name) : strlen(name);
        bool is_config = nlen == 6 && strncmp(name, "config", 6) == 0;
        const struct opt *o = is_config ? NULL : opt_find(name, nlen);
        if (!is_config && (o == NULL || memchr(name, '_', nlen) != NULL)) {
            snprintf(err, errlen, "unknown option '--%.*s'", (int)nlen, name);
            return DOBJ_ECONFIG;
        }
        /* A boolean flag alone means true: --repair. */
        const char *v = o != NULL && o->type == OPT_BOOL && eq == NULL ? "true" : flag_value(argc, argv, &i, eq);
        if (v == NULL) {
            snprintf(err, errlen, "option '--%.*s' needs a value", (int)nlen, name);
            return DOBJ_ECONFIG;
        }
        if (is_config != config_pass)
            continue;
        if (is_config) {
            int rv = load_file(c, v, err, errlen);
            if (rv != 0)
                return rv;
        } else if (opt_set(c, o, v, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "%s", why);
            return DOBJ_ECONFIG;
        }
    }
    return 0;
}

/* The cluster options hang together: checked once all are read. */
static int cluster_check(struct rt_config *c, bool store_defaulted, char *err, size_t errlen)
{
    char why[400];
    if (repl_quorum_check(c->replicas, c->quorum, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "options 'replicas' and 'quorum': %s", why);
        return DOBJ_ECONFIG;
    }
    if (c->cluster_file == NULL)
        return 0;
    if (store_defaulted) {
        snprintf(err, errlen, "option 'store': a cluster's hosts share one object storage (s3://BUCKET/PREFIX, "
                              "file:///SHARED/DIR, or none); the default file://DATA/store is one host's own");
        return DOBJ_ECONFIG;
    }
    c->cluster = sdk_xcalloc(1, sizeof(*c->cluster));
    if (router_cluster_load(c->cluster, c->cluster_file, err, errlen) != 0)
        return DOBJ_ECONFIG;
    if (c->host_id == 0 || router_host_find(c->cluster, c->host_id) == NULL) {
        snprintf(err, errlen, "option 'host_id': %s in the cluster file %s",
                 c->host_id == 0 ? "required with 'cluster': this host's id" : "not", c->cluster_file);
        return DOBJ_ECONFIG;
    }
    struct router_cluster *members = sdk_xmalloc(sizeof(*members));
    for (int previous = 0; previous < 2; previous++) {
        router_cluster_members(c->cluster, previous, members);
        if (members->nhosts < c->replicas) {
            snprintf(err, errlen,
                     "option 'replicas': %u replicas need at least %u members; the cluster file %s has %u%s",
                     c->replicas, c->replicas, c->cluster_file, members->nhosts, previous ? " in 'previous'" : "");
            free(members);
    if (c->cluster->nprevious > 0 && 2 * c->replicas > REPL_REPLICAS_MAX) {
        snprintf(err, errlen, "option 'replicas': the cluster file %s changes members, which needs replicas <= %u (a "
                 "leader replicates to both sets while objects move)", c->cluster_file, REPL_REPLICAS_MAX / 2);
        return DOBJ_ECONFIG;
    }
            return DOBJ_ECONFIG;
        }
    }
    free(members);
    if (c->cluster_secret == NULL && getenv("DOBJ_CLUSTER_SECRET") != NULL)
        c->cluster_secret = sdk_xstrdup(getenv("DOBJ_CLUSTER_SECRET"));
    if (c->cluster_secret == NULL && c->cluster->secret[0] != '\0')
        c->cluster_secret = sdk_xstrdup(c->cluster->secret);
    if (c->cluster_secret == NULL || strlen(c->cluster_secret) < 8) {
        snprintf(err, errlen, "option 'cluster_secret': a cluster needs a shared secret of at least 8 bytes "
                              "(--cluster-secret, $DOBJ_CLUSTER_SECRET or a 'secret' line in the cluster file)");
        return DOBJ_ECONFIG;
    }
    const struct router_host *me = router_host_find(c->cluster, c->host_id);
    free(c->listen_host);
    c->listen_host = sdk_xstrdup(me->client_host);
    c->listen_port = me->client_port;
    return 0;
}

int rt_config_load(struct rt_config *c, int argc, char **argv, char *err, size_t errlen)
{
    defaults(c);
    /* The file first, so that flags override it wherever they stand. */
    int rv = load_flags(c, argc, argv, true, err, errlen);
    if (rv == 0)
        rv = load_flags(c, argc, argv, false, err, errlen);
    bool store_defaulted = c->store_url == NULL;
    if (rv == 0 && c->store_url == NULL) {
        size_t n = strlen(c->data_dir) + 32;
        c->store_url = sdk_xmalloc(n);
        snprintf(c->store_url, n, "file://%s/store", c->data_dir);
    }
    if (rv == 0)
        rv = cluster_check(c, store_defaulted, err, errlen);
    if (rv != 0)
        rt_config_close(c);
    return rv;
}

void rt_config_close(struct rt_config *c)
{
    free(c->listen_host);
    free(c->data_dir);
    free(c->store_url);
    free(c->store_endpoint);
    free(c->store_region);
    free(c->store_access_key);
    free(c->store_secret_key);
    free(c->cluster_file);
    free(c->cluster_secret);
    free(c->cluster);
    for (unsigned i = 0; i < c->nclasses; i++)
        free(c->classes[i]);
    memset(c, 0, sizeof(*c));
}

void rt_config_usage(void)
{
    fprintf(stderr, "usage: dobj serve [--config FILE] [--OPTION VALUE]...\n\noptions (also `option = value` in "
                    "the config file):\n");
    for (size_t i = 0; i < NOPTS; i++) {
        char flag[64];
        snprintf(flag, sizeof(flag), "--%s", opts[i].name);
        for (char *p = flag + 2; *p != '\0'; p++)
            if (*p == '_')
                *p = '-';
        fprintf(stderr, "  %-20s %s\n", flag, opts[i].help);
    }
}
