/*
 * tools.c: the operator's commands: `dobj restore`, `dobj ls` and `dobj gc`
 * work on object storage without a running server; `dobj status` asks
 * running servers. They read the store settings
 * like `dobj serve` does (--store and --store-* flags, or --config FILE), and
 * run the store on a private libuv loop.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "runtime.h"
#include "wal.h"

#define RETENTION_DAYS_DEFAULT 30

/* Parses RFC 3339: 2026-12-04T18:02:24Z, with optional fraction and offset. */
int rt_parse_rfc3339(const char *s, int64_t *out_us)
{
    struct tm tm = {0};
    int n = 0;
    if (sscanf(s, "%4d-%2d-%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &n) != 3 || n != 10 ||
        (s[10] != 'T' && s[10] != 't' && s[10] != ' '))
        return -1;
    const char *p = s + 11;
    if (sscanf(p, "%2d:%2d:%2d%n", &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 3 || n != 8)
        return -1;
    p += 8;
    int64_t frac_us = 0;
    if (*p == '.') {
        p++;
        int digits = 0;
        while (*p >= '0' && *p <= '9') {
            if (digits < 6)
                frac_us = frac_us * 10 + (*p - '0');
            digits++;
            p++;
        }
        if (digits == 0)
            return -1;
        for (; digits < 6; digits++)
            frac_us *= 10;
    }
    int64_t offset_s = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &n) != 2 || n != 5)
            return -1;
        offset_s = (oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return -1;
    }
    if (*p != '\0' || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
        tm.tm_min > 59 || tm.tm_sec > 60)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    *out_us = ((int64_t)t - offset_s) * 1000000 + frac_us;
    return 0;
}

static void fmt_time(int64_t us, char *out, size_t cap)
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, cap - n, ".%06dZ", (int)(us % 1000000));
}

/* Splits the tool's own flags from the store settings, which go to
 * rt_config_load. `own` lists the tool's flags that take a value; `bools`
 * those that do not. */
struct tool_args {
    const char *vals[8];
    bool flags[4];
};

static int split_args(int argc, char **argv, const char *const *own, const char *const *bools, struct tool_args *ta,
                      int *rest_argc, char **rest)
{
    *rest_argc = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        bool taken = false;
        for (int k = 0; own[k] != NULL; k++) {
            size_t n = strlen(own[k]);
            if (strncmp(a, own[k], n) == 0 && (a[n] == '\0' || a[n] == '=')) {
                if (a[n] == '=') {
                    ta->vals[k] = a + n + 1;
                } else if (i + 1 < argc) {
                    ta->vals[k] = argv[++i];
                } else {
                    fprintf(stderr, "dobj: option '%s' needs a value\n", own[k]);
                    return -1;
                }
                taken = true;
            }
        }
        for (int k = 0; bools != NULL && bools[k] != NULL; k++)
            if (strcmp(a, bools[k]) == 0) {
                ta->flags[k] = true;
                taken = true;
            }
        if (!taken)
            rest[(*rest_argc)++] = argv[i];
    }
    return 0;
}

/* The keys of the next object in a sorted listing, from *i: they are
 * [*i, *end), with its "CLASS/HEX/" prefix; keys outside any object are
 * skipped. False when the listing is done. */
static bool next_object(const struct wal_store_result *list, size_t *i, size_t *end, char *prefix, size_t cap)
{
    while (*i < list->nentries) {
        const char *k = list->entries[*i].key;
        const char *s1 = strchr(k, '/');
        const char *s2 = s1 != NULL ? strchr(s1 + 1, '/') : NULL;
        if (s2 == NULL) {
            ++*i;
            continue;
        }
        snprintf(prefix, cap, "%.*s", (int)(s2 + 1 - k), k);
        size_t j = *i, plen = strlen(prefix);
        while (j < list->nentries && strncmp(list->entries[j].key, prefix, plen) == 0)
            j++;
        *end = j;
        return true;
    }
    return false;
}

struct tool_store {
    struct rt_config c;
    uv_loop_t loop;
    struct wal_store *store;
};

static int tool_store_open(struct tool_store *t, int argc, char **argv)
{
    char err[1024];
    if (rt_config_load(&t->c, argc, argv, err, sizeof(err)) != 0) {
        fprintf(stderr, "dobj: %s\n", err);
        return 2;
    }
    if (strcmp(t->c.store_url, "none") == 0) {
        fprintf(stderr, "dobj: no object storage configured (--store URL)\n");
        rt_config_close(&t->c);
        return 2;
    }
    uv_loop_init(&t->loop);
    struct wal_store_config sc = rt_store_config(&t->c);
    if (wal_store_open(&t->store, &sc, &t->loop, err, sizeof(err)) != 0) {
        fprintf(stderr, "dobj: %s\n", err);
        uv_loop_close(&t->loop);
        rt_config_close(&t->c);
        return 2;
    }
    return 0;
}

static void tool_store_close(struct tool_store *t)
{
    wal_store_close(t->store);
    uv_run(&t->loop, UV_RUN_DEFAULT);
    uv_loop_close(&t->loop);
    rt_config_close(&t->c);
}

/* "CLASS/NAME" -> the object's store prefix "CLASS/HEX/". */
static int object_prefix(const char *arg, char *out, size_t cap)
{
    const char *slash = strchr(arg, '/');
    if (slash == NULL || slash == arg || slash[1] == '\0' || !rt_class_name_valid(arg, (size_t)(slash - arg))) {
        fprintf(stderr, "dobj: --object '%s' is not CLASS/NAME\n", arg);
        return -1;
    }
    char cls[RT_CLASS_NAME_MAX + 1];
    snprintf(cls, sizeof(cls), "%.*s", (int)(slash - arg), arg);
    uint8_t id[16];
    rt_object_id(cls, slash + 1, strlen(slash + 1), id);
    wal_object_prefix(out, cap, cls, id);
    return 0;
}

static void draw_progress(void *arg, const struct wal_restore_progress *p)
{
    (void)arg;
    unsigned total = p->segments_total > 0 ? p->segments_total : 1;
    unsigned done = p->segments <= total ? p->segments : total;
    int width = 30, fill = (int)(done * (unsigned)width / total);
    fprintf(stderr, "\r[%.*s%*s] %u/%u segments, %.1f MB", fill, "##############################", width - fill, "",
            p->segments, p->segments_total, (double)p->bytes / 1e6);
    fflush(stderr);
}

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    sdk_buf_append(arg, p, size * n);
    return size * n;
}

/* dobj restore --in-place: asks the running server (POST /_admin/restore). */
static int restore_in_place(const char *server, const char *object, const char *at, const char *lsn)
{
    CURL *c = curl_easy_init();
    char *obj = curl_easy_escape(c, object, 0);
    char *when = curl_easy_escape(c, at != NULL ? at : lsn, 0);
    struct sdk_buf url = {0}, body = {0};
    size_t n = strlen(server);
    while (n > 0 && server[n - 1] == '/')
        n--;
    sdk_buf_printf(&url, "%.*s/_admin/restore?object=%s&%s=%s", (int)n, server, obj, at != NULL ? "at" : "lsn", when);
    sdk_buf_append(&url, "", 1);
    curl_easy_setopt(c, CURLOPT_URL, url.data);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, 0L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 600L);
    CURLcode cc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    int rv;
    if (cc != CURLE_OK) {
        fprintf(stderr, "dobj: can not reach %s: %s\n", server, curl_easy_strerror(cc));
        rv = 1;
    } else if (status != 200) {
        fprintf(stderr, "dobj: in-place restore of %s failed (HTTP %ld): %.*s", object, status, (int)body.len,
                body.data != NULL ? body.data : "");
        rv = 1;
    } else {
        printf("%.*s", (int)body.len, body.data);
        rv = 0;
    }
    curl_free(obj);
    curl_free(when);
    sdk_buf_close(&url);
    sdk_buf_close(&body);
    curl_easy_cleanup(c);
    return rv;
}

int rt_cmd_restore(int argc, char **argv)
{
    static const char *const own[] = {"--object", "--at", "--lsn", "--out", "--server", NULL};
    static const char *const bools[] = {"--in-place", NULL};
    struct tool_args ta = {0};
    char **rest = sdk_xcalloc((size_t)argc + 1, sizeof(char *));
    int nrest = 0;
    if (split_args(argc, argv, own, bools, &ta, &nrest, rest) != 0) {
        free(rest);
        return 2;
    }
    const char *object = ta.vals[0], *at = ta.vals[1], *lsn_s = ta.vals[2], *out = ta.vals[3], *server = ta.vals[4];
    bool in_place = ta.flags[0];
    char prefix[256];
    int64_t at_us = 0;
    uint64_t lsn = 0;
    int rv = 2;
    if (object == NULL || (at == NULL) == (lsn_s == NULL) || (in_place ? server == NULL || out != NULL || nrest > 0
                                                                       : out == NULL || server != NULL)) {
        fprintf(stderr, "usage: dobj restore --store URL --object CLASS/NAME (--at RFC3339 | --lsn N) --out FILE\n"
                        "       [--store-endpoint URL --store-region R --store-path-style --config FILE]\n"
                        "       dobj restore --in-place --server http://HOST:PORT --object CLASS/NAME "
                        "(--at RFC3339 | --lsn N)\n");
        goto done;
    }
    if (object_prefix(object, prefix, sizeof(prefix)) != 0)
        goto done;
    if (at != NULL) {
        if (rt_parse_rfc3339(at, &at_us) != 0) {
            fprintf(stderr, "dobj: --at '%s' is not an RFC 3339 time (2026-12-04T18:00:00Z)\n", at);
            goto done;
        }
        int64_t oldest = rt_now_us() - (int64_t)RETENTION_DAYS_DEFAULT * 86400 * 1000000;
        if (at_us < oldest) {
            fprintf(stderr, "dobj: --at %s is outside the retention window (%d days)\n", at, RETENTION_DAYS_DEFAULT);
            goto done;
        }
    } else {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(lsn_s, &end, 10);
        if (errno != 0 || *end != '\0' || v == 0 || lsn_s[0] == '-') {
            fprintf(stderr, "dobj: --lsn '%s' is not a record number (1, 2, ...)\n", lsn_s);
            goto done;
        }
        lsn = v;
    }
    if (in_place) {
        rv = restore_in_place(server, object, at, lsn_s);
        goto done;
    }
    if (access(out, F_OK) == 0) {
        fprintf(stderr, "dobj: --out %s exists; restore writes a new file\n", out);
        goto done;
    }
    struct tool_store t;
    if (tool_store_open(&t, nrest, rest) != 0)
        goto done;
    bool tty = isatty(2);
    struct wal_restore_opts o = {
        .object_prefix = prefix, .lsn = lsn, .at_us = at_us, .out = out, .progress = tty ? draw_progress : NULL};
    struct wal_restore_result res;
    char err[1024];
    int64_t t0 = rt_now_us();
    int r = wal_restore(t.store, &o, &res, err, sizeof(err));
    double secs = (double)(rt_now_us() - t0) / 1e6;
    if (tty)
        fprintf(stderr, "\n");
    if (r != 0) {
        fprintf(stderr, "dobj: restore of %s failed: %s\n", object, err);
        rv = 1;
    } else {
        char when[80] = "the snapshot's moment";
        if (res.commit_us != 0) {
            memcpy(when, "committed ", 10);
            fmt_time(res.commit_us, when + 10, sizeof(when) - 10);
        }
        printf("restored %s to lsn %" PRIu64 " (%s) into %s: %" PRIu64 " bytes; snapshot lsn %" PRIu64
               ", %" PRIu64 " records from %u segments, %" PRIu64 " bytes downloaded in %.2f s\n",
               object, res.lsn, when, out, res.db_bytes, res.snapshot_lsn, res.records, res.segments, res.bytes,
               secs);
        rv = 0;
    }
    tool_store_close(&t);
done:
    free(rest);
    return rv;
}

int rt_cmd_ls(int argc, char **argv)
{
    static const char *const own[] = {NULL};
    struct tool_args ta = {0};
    char **rest = sdk_xcalloc((size_t)argc + 1, sizeof(char *));
    int nrest = 0;
    if (split_args(argc, argv, own, NULL, &ta, &nrest, rest) != 0) {
        free(rest);
        return 2;
    }
    struct tool_store t;
    if (tool_store_open(&t, nrest, rest) != 0) {
        free(rest);
        return 2;
    }
    struct wal_store_result list = {0};
    int rv = 0;
    if (wal_store_list_sync(t.store, "", &list) != 0) {
        fprintf(stderr, "dobj: can not list %s: %s\n", wal_store_url(t.store), list.err);
        rv = 1;
    } else {
        printf("%-16s %-32s %12s %10s %8s %8s  %s\n", "CLASS", "NAME", "BYTES", "LAST_LSN", "SEGS", "SNAPS",
               "LAST_UPLOAD");
        /* Keys are sorted: an object's keys are together. */
        char prefix[256];
        for (size_t i = 0, j; next_object(&list, &i, &j, prefix, sizeof(prefix)); i = j) {
            struct wal_object_info info;
            wal_object_info(list.entries + i, j - i, prefix, &info);
            char name[600] = "?";
            char mkey[300];
            snprintf(mkey, sizeof(mkey), "%smeta.json", prefix);
            struct wal_store_result meta = {0};
            if (wal_store_get_sync(t.store, mkey, &meta) == 0) {
                /* {"class":..,"name":"...", ...}: the name as JSON text. */
                const char *p = memmem(meta.data, meta.len, "\"name\":", 7);
                const char *q = p != NULL ? memmem(p, meta.len - (size_t)(p - (char *)meta.data), ",\"id\"", 5) : NULL;
                if (p != NULL && q != NULL)
                    snprintf(name, sizeof(name), "%.*s", (int)(q - p - 7), p + 7);
            }
            wal_store_result_free(&meta);
            char when[64] = "-";
            if (info.last_upload_us != 0)
                fmt_time(info.last_upload_us, when, sizeof(when));
            printf("%-16s %-32s %12" PRIu64 " %10" PRIu64 " %8u %8u  %s\n", info.cls, name, info.bytes,
                   info.last_lsn, info.segments, info.snapshots, when);
        }
    }
    wal_store_result_free(&list);
    tool_store_close(&t);
    free(rest);
    return rv;
}

/* "30d", "12h", "90m", "45s" -> microseconds; -1 if malformed. */
static int64_t parse_duration(const char *s)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || v < 0 || end[0] == '\0' || end[1] != '\0')
        return -1;
    int64_t unit = *end == 'd' ? 86400 : *end == 'h' ? 3600 : *end == 'm' ? 60 : *end == 's' ? 1 : 0;
    if (unit == 0 || v > INT64_MAX / 1000000 / unit)
        return -1;
    return (int64_t)v * unit * 1000000;
}

/* What of one object no restore point inside retention needs: with `cutoff`
 * the oldest moment kept, L the newest lsn surely committed before it (the
 * last lsn of a segment, or a snapshot, uploaded before it), and S the newest
 * snapshot at or before L, every restore to a moment after the cutoff starts
 * at S or later: segments ending at or before S and snapshots before S go. */
static void gc_plan(const struct wal_store_entry *v, size_t n, const char *prefix, int64_t cutoff, bool *del)
{
    size_t plen = strlen(prefix);
    uint64_t before = 0, snap = 0;
    for (size_t i = 0; i < n; i++) {
        const char *k = v[i].key + plen;
        uint64_t first, last, epoch, lsn;
        if (v[i].mtime_us >= cutoff)
            continue;
        if (strncmp(k, "segments/", 9) == 0 && wal_seg_key_parse(k, &first, &last, &epoch) && last > before)
            before = last;
        else if (strncmp(k, "snapshots/", 10) == 0 && wal_snapshot_key_parse(k, &lsn) && lsn > before)
            before = lsn;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t lsn;
        const char *k = v[i].key + plen;
        if (strncmp(k, "snapshots/", 10) == 0 && wal_snapshot_key_parse(k, &lsn) && lsn <= before && lsn > snap)
            snap = lsn;
    }
    for (size_t i = 0; i < n; i++) {
        const char *k = v[i].key + plen;
        uint64_t first, last, epoch, lsn;
        del[i] = snap > 0 && ((strncmp(k, "segments/", 9) == 0 && wal_seg_key_parse(k, &first, &last, &epoch) &&
                               last <= snap) ||
                              (strncmp(k, "snapshots/", 10) == 0 && wal_snapshot_key_parse(k, &lsn) && lsn < snap));
    }
}

int rt_cmd_gc(int argc, char **argv)
{
    static const char *const own[] = {"--older-than", NULL};
    static const char *const bools[] = {"--apply", NULL};
    struct tool_args ta = {0};
    char **rest = sdk_xcalloc((size_t)argc + 1, sizeof(char *));
    int nrest = 0;
    if (split_args(argc, argv, own, bools, &ta, &nrest, rest) != 0) {
        free(rest);
        return 2;
    }
    const char *older = ta.vals[0] != NULL ? ta.vals[0] : "30d";
    bool apply = ta.flags[0];
    int64_t keep_us = parse_duration(older);
    if (keep_us < 0) {
        fprintf(stderr, "dobj: --older-than '%s' is not a duration (30d, 12h, 90m, 45s)\n", older);
        free(rest);
        return 2;
    }
    struct tool_store t;
    if (tool_store_open(&t, nrest, rest) != 0) {
        free(rest);
        return 2;
    }
    int64_t cutoff = rt_now_us() - keep_us;
    struct wal_store_result list = {0};
    int rv = 0;
    uint64_t nkeys = 0, nbytes = 0, failed = 0;
    if (wal_store_list_sync(t.store, "", &list) != 0) {
        fprintf(stderr, "dobj: can not list %s: %s\n", wal_store_url(t.store), list.err);
        rv = 1;
    } else {
        bool *del = sdk_xcalloc(list.nentries + 1, sizeof(bool));
        char prefix[256];
        for (size_t i = 0, j; next_object(&list, &i, &j, prefix, sizeof(prefix)); i = j) {
            gc_plan(list.entries + i, j - i, prefix, cutoff, del + i);
            /* An object whose last write deleted all its data, longer ago
             * than the window: no restore point inside it needs anything. */
            bool old = true;
            for (size_t e = i; e < j; e++)
                old = old && list.entries[e].mtime_us < cutoff;
            bool dead = false;
            char err[512];
            if (old && wal_object_tombstoned(t.store, list.entries + i, j - i, prefix, &dead, err, sizeof(err)) != 0) {
                fprintf(stderr, "dobj: %s: %s (kept)\n", prefix, err);
                rv = 1;
            }
            for (size_t e = i; dead && e < j; e++)
                del[e] = true;
        }
        for (size_t i = 0; i < list.nentries; i++) {
            if (!del[i])
                continue;
            nkeys++;
            nbytes += list.entries[i].size;
            if (!apply) {
                printf("would delete %s (%" PRIu64 " bytes)\n", list.entries[i].key, list.entries[i].size);
                continue;
            }
            struct wal_store_result r = {0};
            if (wal_store_delete_sync(t.store, list.entries[i].key, &r) != 0) {
                fprintf(stderr, "dobj: can not delete %s: %s\n", list.entries[i].key, r.err);
                failed++;
                rv = 1;
            } else {
                printf("deleted %s (%" PRIu64 " bytes)\n", list.entries[i].key, list.entries[i].size);
            }
            wal_store_result_free(&r);
        }
        free(del);
        printf("%s %" PRIu64 " keys, %" PRIu64 " bytes no restore point of the last %s needs%s\n",
               apply ? "deleted" : "would delete", nkeys - failed, nbytes, older,
               apply ? "" : " (dry run: --apply deletes)");
    }
    wal_store_result_free(&list);
    tool_store_close(&t);
    free(rest);
    return rv;
}

/* ---- dobj status ----------------------------------------------------------- */

/* GET url into body; the HTTP status, or 0 when it can not be reached. */
long rt_http_get(const char *url, struct sdk_buf *body, long timeout_s)
{
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    sdk_buf_append(body, "", 1);
    return status;
}

struct host_status {
    unsigned id;
    char addr[96], zone[40], seen[8], role[12];
    bool reached;
    unsigned long long leading, replicating, waiting, pending, version, moving;
    double lag;
};

const char *rt_line_value(const char *text, const char *key)
{
    size_t n = strlen(key);
    for (const char *p = text; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p != NULL ? p + 1 : NULL)
        if (strncmp(p, key, n) == 0 && p[n] == ' ')
            return p + n + 1;
    return NULL;
}

static void read_counts(const char *text, struct host_status *h)
{
    const char *v;
    h->leading = (v = rt_line_value(text, "leading")) != NULL ? strtoull(v, NULL, 10) : 0;
    h->replicating = (v = rt_line_value(text, "replicating")) != NULL ? strtoull(v, NULL, 10) : 0;
    h->waiting = (v = rt_line_value(text, "awaiting_quorum")) != NULL ? strtoull(v, NULL, 10) : 0;
    h->pending = (v = rt_line_value(text, "upload_pending")) != NULL ? strtoull(v, NULL, 10) : 0;
    h->lag = (v = rt_line_value(text, "upload_lag_seconds")) != NULL ? strtod(v, NULL) : 0;
    h->version = (v = rt_line_value(text, "version")) != NULL ? strtoull(v, NULL, 10) : 0;
    h->moving = (v = rt_line_value(text, "moving")) != NULL ? strtoull(v, NULL, 10) : 0;
}

/* Where a membership change stands, from every reached host's counts. */
static void print_membership(const struct host_status *hosts, unsigned nhosts, unsigned long long version)
{
    unsigned long long moving = 0;
    bool behind = false, changing = false, unreached = false;
    for (unsigned i = 0; i < nhosts; i++) {
        const struct host_status *h = &hosts[i];
        changing |= strcmp(h->role, "member") != 0;
        unreached |= !h->reached;
        if (h->reached) {
            moving += h->moving;
            behind |= h->version != version;
        }
    }
    if (behind)
        printf("membership: hosts have loaded different versions of the cluster file: load it on every host "
               "(SIGHUP)\n");
    else if (changing && (unreached || moving > 0))
        printf("membership: changing to version %llu: %llu objects still moving%s\n", version, moving,
               unreached ? ", and unreachable hosts may hold more" : "");
    else if (changing)
        printf("membership: every object has moved to version %llu: remove the 'previous' and 'leaving' lines "
               "(and the leaving hosts' lines) from the cluster file, load it on every host (SIGHUP), then stop "
               "the leaving hosts\n", version);
}

/* dobj status --server URL: the cluster as that host sees it (the hosts and
 * whether it reaches them), then each host's own counts, asked of it. */
int rt_cmd_status(int argc, char **argv)
{
    static const char *const own[] = {"--server", NULL};
    struct tool_args ta = {0};
    char **rest = sdk_xcalloc((size_t)argc + 1, sizeof(char *));
    int nrest = 0;
    if (split_args(argc, argv, own, NULL, &ta, &nrest, rest) != 0 || nrest > 0 || ta.vals[0] == NULL) {
        if (nrest > 0)
            fprintf(stderr, "dobj: status: unexpected argument '%s'\n", rest[0]);
        fprintf(stderr, "usage: dobj status --server http://HOST:PORT\n");
        free(rest);
        return 2;
    }
    free(rest);
    const char *server = ta.vals[0];
    size_t n = strlen(server);
    while (n > 0 && server[n - 1] == '/')
        n--;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char url[1024];
    snprintf(url, sizeof(url), "%.*s/_status", (int)n, server);
    struct sdk_buf body = {0};
    long status = rt_http_get(url, &body, 5);
    if (status != 200) {
        if (status == 0)
            fprintf(stderr, "dobj: can not reach %.*s\n", (int)n, server);
        else
            fprintf(stderr, "dobj: %s answered HTTP %ld (is it a dobj server?)\n", url, status);
        sdk_buf_close(&body);
        return 1;
    }
    const char *self = rt_line_value(body.data, "self");
    unsigned self_id = self != NULL ? (unsigned)strtoul(self, NULL, 10) : 0;
    struct host_status hosts[ROUTER_HOSTS_MAX];
    unsigned nhosts = 0;
    for (const char *p = body.data; *p != '\0' && nhosts < ROUTER_HOSTS_MAX;) {
        struct host_status *h = &hosts[nhosts];
        memset(h, 0, sizeof(*h));
        int got = sscanf(p, "host %u %95s %39s %7s %11s", &h->id, h->addr, h->zone, h->seen, h->role);
        if (got == 4)
            snprintf(h->role, sizeof(h->role), "member");
        if (got >= 4)
            nhosts++;
        const char *nl = strchr(p, '\n');
        p = nl != NULL ? nl + 1 : p + strlen(p);
    }
    if (self_id == 0) {
        struct host_status h = {0};
        read_counts(body.data, &h);
        printf("single host %.*s: %llu records awaiting the journal, %llu awaiting upload, upload lag %.1f s\n",
               (int)n, server, h.waiting, h.pending, h.lag);
        sdk_buf_close(&body);
        return 0;
    }
    struct host_status me = {0};
    read_counts(body.data, &me);
    printf("cluster as host %u sees it (membership version %llu):\n", self_id, me.version);
    printf("%-5s %-22s %-8s %-6s %-8s %8s %11s %16s %14s %10s %7s %7s\n", "host", "address", "zone", "link", "role",
           "leading", "replicating", "awaiting quorum", "upload pending", "upload lag", "version", "moving");
    int down = 0;
    for (unsigned i = 0; i < nhosts; i++) {
        struct host_status *h = &hosts[i];
        char hurl[256];
        snprintf(hurl, sizeof(hurl), "http://%s/_status", h->addr);
        struct sdk_buf hb = {0};
        h->reached = h->id == self_id ? (read_counts(body.data, h), true) : rt_http_get(hurl, &hb, 2) == 200;
        if (h->reached && h->id != self_id)
            read_counts(hb.data, h);
        sdk_buf_close(&hb);
        if (!h->reached) {
            down++;
            printf("%-5u %-22s %-8s %-6s %-8s %8s %11s %16s %14s %10s %7s %7s\n", h->id, h->addr, h->zone, h->seen,
                   h->role, "-", "-", "-", "-", "unreachable", "-", "-");
            continue;
        }
        printf("%-5u %-22s %-8s %-6s %-8s %8llu %11llu %16llu %14llu %9.1fs %7llu %7llu\n", h->id, h->addr, h->zone,
               h->seen, h->role, h->leading, h->replicating, h->waiting, h->pending, h->lag, h->version, h->moving);
    }
    printf("%u hosts, %d unreachable from here\n", nhosts, down);
    print_membership(hosts, nhosts, me.version);
    sdk_buf_close(&body);
    return 0;
}
