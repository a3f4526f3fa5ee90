/*
 * recover.c: reading the journal back after a crash (format: journal.c).
 *
 * Only the end of the last segment can be torn: every batch was fsync'd before
 * the next one was written, and a new segment starts only after the previous
 * one's last batch was durable. So an invalid batch with no valid batch after
 * it, at the end of the last segment, is a write that never completed and was
 * never acknowledged: it is cut off. An invalid batch anywhere else is damage
 * to acknowledged data, and recovery refuses to guess unless asked to repair.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>
#include <zstd.h>

#include "journal_format.h"
#include "replicate.h"
#include "sdk_util.h"
#include "wal.h"


struct scan {
    const char *path;
    const uint8_t *buf;
    size_t len;
    bool last;
    bool repair;
    repl_record_cb on_record;
    uint32_t segment;
    void *arg;
    uint8_t *raw;
    size_t raw_cap;
    size_t skipped_from[64], skipped_to[64]; /* damaged ranges --repair skipped in this segment */
    unsigned nskipped;
    bool skipped_overflow;
    unsigned skipped_total;
    char *err;
    size_t errlen;
};

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The segment numbers in dir, ascending. */
static int list_segments(const char *dir, uint32_t **out, size_t *n)
{
    DIR *d = opendir(dir);
    *out = NULL;
    *n = 0;
    if (d == NULL)
        return errno == ENOENT ? 0 : -errno;
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char *end = NULL;
        unsigned long long v = strtoull(de->d_name, &end, 16);
        if (end != de->d_name + 16 || strcmp(end, ".log") != 0 || v > UINT32_MAX)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            *out = sdk_xrealloc(*out, cap * sizeof(**out));
        }
        (*out)[(*n)++] = (uint32_t)v;
    }
    closedir(d);
    if (*n > 0)
        qsort(*out, *n, sizeof(**out), cmp_u32);
    return 0;
}

/* Length of a valid batch at off, or 0. */
static size_t batch_valid(const struct scan *s, size_t off)
{
    if (s->len - off < JOURNAL_BATCH_HEADER_BYTES)
        return 0;
    const uint8_t *h = s->buf + off;
    uint32_t magic = wal_get_u32(h), c = wal_get_u32(h + 4);
    if ((magic != JOURNAL_BATCH_MAGIC && (magic != JOURNAL_BATCH_MAGIC_RAW || c != wal_get_u32(h + 8))) ||
        c > s->len - off - JOURNAL_BATCH_HEADER_BYTES || wal_get_u32(h + 8) > JOURNAL_BATCH_RAW_MAX)
        return 0;
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, h, 24);
    XXH3_64bits_update(&st, h + JOURNAL_BATCH_HEADER_BYTES, c);
    if (XXH3_64bits_digest(&st) != wal_get_u64(h + 24))
        return 0;
    return JOURNAL_BATCH_HEADER_BYTES + c;
}

/* The offset of the next valid batch after a damaged one at off, or 0. Both
 * magics end in "J?1" after "D": look for the "D" of either. */
static size_t next_valid(const struct scan *s, size_t off)
{
    for (size_t p = off + 1; p + JOURNAL_BATCH_HEADER_BYTES <= s->len; p++) {
        const uint8_t *hit = memchr(s->buf + p, 'D', s->len - p);
        if (hit == NULL)
            return 0;
        p = (size_t)(hit - s->buf);
        uint32_t m = p + 4 <= s->len ? wal_get_u32(hit) : 0;
        if ((m == JOURNAL_BATCH_MAGIC || m == JOURNAL_BATCH_MAGIC_RAW) && batch_valid(s, p) > 0)
            return p;
    }
    return 0;
}

/* Decompresses (or, DJR1, copies) a valid batch and hands out its records. */
static int batch_records(struct scan *s, size_t off)
{
    const uint8_t *h = s->buf + off;
    uint32_t c = wal_get_u32(h + 4), u = wal_get_u32(h + 8), n = wal_get_u32(h + 12);
    if (s->raw_cap < u) {
        free(s->raw);
        s->raw_cap = u;
        s->raw = sdk_xmalloc(u > 0 ? u : 1);
    }
    size_t got = u;
    if (wal_get_u32(h) == JOURNAL_BATCH_MAGIC_RAW)
        memcpy(s->raw, h + JOURNAL_BATCH_HEADER_BYTES, u);
    else
        got = ZSTD_decompress(s->raw, u, h + JOURNAL_BATCH_HEADER_BYTES, c);
    if (ZSTD_isError(got) || got != u) {
        snprintf(s->err, s->errlen, "journal %s offset %zu: batch does not decompress", s->path, off);
        return -EPROTO;
    }
    size_t p = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t id[WAL_OBJECT_ID_BYTES];
        uint64_t lsn;
        uint32_t len;
        if (u - p < WAL_RECORD_HEADER_BYTES)
            goto bad;
        wal_record_peek(s->raw + p, id, &lsn, &len);
        if (len < WAL_RECORD_HEADER_BYTES || len > u - p)
            goto bad;
        int rv = s->on_record(s->arg, s->segment, s->raw + p, len);
        if (rv != 0)
            return rv;
        p += len;
    }
    if (p == u)
        return 0;
bad:
    snprintf(s->err, s->errlen, "journal %s offset %zu: batch holds malformed records", s->path, off);
    return -EPROTO;
}

static void log_repair(const struct scan *s, size_t off, size_t skipped)
{
    repl_logf(1, "msg=\"repair: skipped a damaged journal batch; its records are lost\" file=%s offset=%zu bytes=%zu",
              s->path, off, skipped);
}

/* Scans one segment's batches. *cut gets the length to truncate the file to
 * when its tail is torn (0: nothing to cut). */
static int scan_segment(struct scan *s, size_t *cut)
{
    size_t off = JOURNAL_SEGMENT_HEADER_BYTES;
    *cut = 0;
    while (off < s->len) {
        size_t blen = batch_valid(s, off);
        if (blen > 0) {
            int rv = batch_records(s, off);
            if (rv != 0)
                return rv;
            off += blen;
            continue;
        }
        size_t next = next_valid(s, off);
        if (next == 0 && s->last) {
            *cut = off;
            return 0;
        }
        if (!s->repair) {
            snprintf(s->err, s->errlen,
                     "journal %s offset %zu: damaged batch in the middle of the journal (acknowledged data); "
                     "start with --repair to skip it and lose its records",
                     s->path, off);
            return -EPROTO;
        }
        size_t skip = next != 0 ? next : s->len;
        log_repair(s, off, skip - off);
        if (s->nskipped < sizeof(s->skipped_from) / sizeof(s->skipped_from[0])) {
            s->skipped_from[s->nskipped] = off;
            s->skipped_to[s->nskipped++] = skip;
            s->skipped_total++;
        } else {
            s->skipped_overflow = true;
        }
        off = skip;
    }
    return 0;
}

static int read_file(const char *path, uint8_t **buf, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    *len = (size_t)st.st_size;
    *buf = sdk_xmalloc(*len + 1);
    size_t got = 0;
    while (got < *len) {
        ssize_t n = read(fd, *buf + got, *len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? -errno : -EIO;
            close(fd);
            free(*buf);
            return e;
        }
        got += (size_t)n;
    }
    close(fd);
    return 0;
}

static bool header_ok(const uint8_t *b, size_t len, uint32_t seg)
{
    return len >= JOURNAL_SEGMENT_HEADER_BYTES && wal_get_u32(b) == JOURNAL_SEGMENT_MAGIC && wal_get_u32(b + 4) == seg &&
           XXH3_64bits(b, 24) == wal_get_u64(b + 24);
}

/* Rewrites a segment without the damaged batches --repair skipped, so the
 * segment stays readable while it is kept (records not yet uploaded) and the
 * repair happens once. Written beside it, fsync'd, renamed over it. */
static int drop_skipped(struct scan *s, const char *path, const uint8_t *buf, size_t len)
{
    if (s->skipped_overflow) {
        snprintf(s->err, s->errlen, "journal %s: more than %zu damaged ranges; not repairing", path,
                 sizeof(s->skipped_from) / sizeof(s->skipped_from[0]));
        return -EPROTO;
    }
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.repair", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int rv = 0;
    size_t from = 0;
    for (unsigned i = 0; i <= s->nskipped && rv == 0; i++) {
        size_t to = i < s->nskipped ? s->skipped_from[i] : len;
        for (size_t off = from; off < to && rv == 0;) {
            ssize_t n = write(fd, buf + off, to - off);
            if (n < 0 && errno != EINTR)
                rv = -errno;
            else if (n > 0)
                off += (size_t)n;
        }
        if (i < s->nskipped)
            from = s->skipped_to[i] < len ? s->skipped_to[i] : len;
    }
    if (rv == 0 && fsync(fd) != 0)
        rv = -errno;
    close(fd);
    if (rv == 0 && rename(tmp, path) != 0)
        rv = -errno;
    if (rv != 0) {
        unlink(tmp);
        snprintf(s->err, s->errlen, "journal %s: can not rewrite it without the damaged batches: %s", path,
                 strerror(-rv));
    }
    return rv;
}

static int recover_one(struct scan *s, const char *dir, uint32_t seg)
{
    char path[4096];
    journal_segment_path(path, sizeof(path), dir, seg);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rv = read_file(path, &buf, &len);
    if (rv != 0) {
        snprintf(s->err, s->errlen, "journal %s: can not read: %s", path, strerror(-rv));
        return rv;
    }
    s->path = path;
    s->buf = buf;
    s->len = len;
    if (!header_ok(buf, len, seg)) {
        free(buf);
        /* A segment whose header never became durable held no batch. */
        if (s->last && len <= JOURNAL_SEGMENT_HEADER_BYTES)
            return unlink(path) == 0 ? 0 : -errno;
        snprintf(s->err, s->errlen, "journal %s offset 0: invalid segment header", path);
        return -EPROTO;
    }
    size_t cut = 0;
    s->nskipped = 0;
    s->skipped_overflow = false;
    rv = scan_segment(s, &cut);
    if (rv == 0 && s->nskipped > 0) {
        /* The rewrite leaves out a torn tail too. */
        rv = drop_skipped(s, path, buf, cut > 0 ? cut : len);
        cut = 0;
    }
    free(buf);
    if (rv == 0 && cut > 0) {
        repl_logf(2, "msg=\"cut a torn journal tail (never acknowledged)\" file=%s offset=%zu bytes=%zu", path, cut,
                  len - cut);
        if (truncate(path, (off_t)cut) != 0)
            rv = -errno;
    }
    return rv;
}

int repl_journal_recover(const char *dir, bool repair, repl_record_cb on_record, void *arg,
                         struct repl_recovered *out, char *err, size_t errlen)
{
    uint32_t *segs = NULL;
    size_t n = 0;
    int rv = list_segments(dir, &segs, &n);
    if (rv != 0) {
        snprintf(err, errlen, "journal %s: can not list: %s", dir, strerror(-rv));
        return rv;
    }
    struct scan s = {.repair = repair, .on_record = on_record, .arg = arg, .err = err, .errlen = errlen};
    for (size_t i = 0; i < n && rv == 0; i++) {
        s.last = i + 1 == n;
        s.segment = segs[i];
        rv = recover_one(&s, dir, segs[i]);
    }
    if (rv == 0) {
        out->next_segment = n > 0 ? segs[n - 1] + 1 : 1;
        out->skipped = s.skipped_total;
    }
    free(s.raw);
    free(segs);
    return rv;
}

int repl_journal_drop_before(const char *dir, uint32_t below)
{
    uint32_t *segs = NULL;
    size_t n = 0;
    int rv = list_segments(dir, &segs, &n);
    for (size_t i = 0; i < n && rv == 0; i++) {
        if (segs[i] >= below)
            continue;
        char path[4096];
        journal_segment_path(path, sizeof(path), dir, segs[i]);
        if (unlink(path) != 0)
            rv = -errno;
    }
    free(segs);
    return rv;
}
