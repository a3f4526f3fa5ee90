/*
 * restore.c: an object's database as of a moment, from object storage.
 *
 *   1. list the object's keys: segments (lsn ranges) and snapshots (lsns);
 *   2. find the target lsn: given, or for a time, the last record committed
 *      at or before it: a binary search over the segments by their first
 *      record's commit time (each probe downloads one segment; the index in
 *      it gives every record's time), then a scan of the one found;
 *   3. start from the newest snapshot at or before the target (decompressed
 *      into the file), or from an empty file;
 *   4. apply the records after it, segment by segment, up to the target;
 *   5. check the stamped lsn and rename the file into place.
 *
 * Segments may overlap (a segment uploaded again after a crash lost the note
 * that it was): a record already applied is skipped.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>
#include <zstd.h>

#include "sdk_util.h"
#include "wal.h"

struct seg_ref {
    const char *key;
    uint64_t first, last, epoch, size;
};

struct restore {
    struct wal_store *store;
    const struct wal_restore_opts *o;
    struct wal_restore_result *res;
    struct wal_restore_progress prog;
    char *err;
    size_t errlen;
    /* one downloaded segment, kept for the next step */
    const char *cached_key;
    uint8_t *cached;
    size_t cached_len;
    ZSTD_DCtx *dc;
    struct wal_page *pages;
    uint32_t pages_cap;
    off_t db_size; /* the size the last applied record gives the file (-1: none applied) */
    /* seg_apply: a segment's records side by side, the newest image of each
     * page they touch, and which pages those are. */
    uint8_t *arena;
    size_t arena_cap;
    const uint8_t **newest;
    size_t newest_cap;
    uint32_t *touched;
    size_t ntouched, touched_cap;
};

void wal_snapshot_key(char *out, size_t cap, const char *object_prefix, uint64_t lsn)
{
    snprintf(out, cap, "%ssnapshots/%020" PRIu64 ".db", object_prefix, lsn);
}

bool wal_snapshot_key_parse(const char *key, uint64_t *lsn)
{
    const char *base = strrchr(key, '/');
    base = base != NULL ? base + 1 : key;
    if (strlen(base) != 23 || strcmp(base + 20, ".db") != 0)
        return false;
    for (int i = 0; i < 20; i++)
        if (base[i] < '0' || base[i] > '9')
            return false;
    *lsn = strtoull(base, NULL, 10);
    return *lsn >= 1;
}

void wal_object_info(const struct wal_store_entry *v, size_t n, const char *prefix, struct wal_object_info *info)
{
    memset(info, 0, sizeof(*info));
    size_t plen = strlen(prefix);
    const char *slash = strchr(prefix, '/');
    if (slash != NULL && (size_t)(slash - prefix) < sizeof(info->cls)) {
        memcpy(info->cls, prefix, (size_t)(slash - prefix));
        for (int i = 0; i < 16 && slash[1 + 2 * i] != '\0'; i++) {
            unsigned x = 0;
            sscanf(slash + 1 + 2 * i, "%2x", &x);
            info->id[i] = (uint8_t)x;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (strncmp(v[i].key, prefix, plen) != 0)
            continue;
        const char *k = v[i].key + plen;
        uint64_t first, last, epoch, lsn;
        info->bytes += v[i].size;
        if (strncmp(k, "segments/", 9) == 0 && wal_seg_key_parse(k, &first, &last, &epoch)) {
            info->segments++;
            if (last > info->last_lsn)
                info->last_lsn = last;
            if (v[i].mtime_us > info->last_upload_us)
                info->last_upload_us = v[i].mtime_us;
        } else if (strncmp(k, "snapshots/", 10) == 0 && wal_snapshot_key_parse(k, &lsn)) {
            info->snapshots++;
            if (lsn > info->snapshot_lsn)
                info->snapshot_lsn = lsn;
            if (lsn > info->last_lsn)
                info->last_lsn = lsn;
        }
    }
}

int wal_snapshot_compress(const char *path, uint8_t **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int e = -errno;
        if (fd >= 0)
            close(fd);
        return e;
    }
    ZSTD_CCtx *zc = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(zc, ZSTD_c_compressionLevel, 1);
    ZSTD_CCtx_setParameter(zc, ZSTD_c_checksumFlag, 1);
    ZSTD_CCtx_setPledgedSrcSize(zc, (unsigned long long)st.st_size);
    size_t cap = ZSTD_compressBound((size_t)st.st_size) + 64, pos = 0;
    uint8_t *buf = sdk_xmalloc(cap);
    size_t inlen = 1 << 20;
    uint8_t *in = sdk_xmalloc(inlen);
    int rv = 0;
    for (;;) {
        ssize_t n = read(fd, in, inlen);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rv = -errno;
            break;
        }
        ZSTD_inBuffer ib = {in, (size_t)n, 0};
        ZSTD_EndDirective mode = n == 0 ? ZSTD_e_end : ZSTD_e_continue;
        size_t left;
        do {
            ZSTD_outBuffer ob = {buf, cap, pos};
            left = ZSTD_compressStream2(zc, &ob, &ib, mode);
            pos = ob.pos;
            if (ZSTD_isError(left)) {
                rv = -EIO;
                break;
            }
        } while (rv == 0 && (mode == ZSTD_e_end ? left != 0 : ib.pos < ib.size));
        if (rv != 0 || n == 0)
            break;
    }
    close(fd);
    free(in);
    ZSTD_freeCCtx(zc);
    if (rv != 0) {
        free(buf);
        return rv;
    }
    *out = buf;
    *len = pos;
    return 0;
}

static int fail(struct restore *r, int rv, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct restore *r, int rv, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, r->errlen, fmt, ap);
    va_end(ap);
    return rv;
}

static void progress(struct restore *r)
{
    if (r->o->progress != NULL)
        r->o->progress(r->o->arg, &r->prog);
}

static int seg_cmp(const void *a, const void *b)
{
    const struct seg_ref *x = a, *y = b;
    if (x->first != y->first)
        return x->first < y->first ? -1 : 1;
    return x->last < y->last ? 1 : x->last > y->last ? -1 : 0;
}

/* Downloads and checks a segment (or takes the cached one). */
static int seg_load(struct restore *r, const struct seg_ref *ref, struct wal_segment *seg)
{
    if (r->cached_key == NULL || strcmp(r->cached_key, ref->key) != 0) {
        struct wal_store_result res = {0};
        int rv = wal_store_get_sync(r->store, ref->key, &res);
        if (rv != 0) {
            wal_store_result_free(&res);
            return fail(r, rv, "can not download segment %s: %s", ref->key, res.err);
        }
        free(r->cached);
        r->cached = res.data;
        r->cached_len = res.len;
        r->cached_key = ref->key;
        res.data = NULL;
        r->prog.bytes += r->cached_len;
        r->res->bytes += r->cached_len;
        r->res->segments++;
        progress(r);
    }
    char why[256];
    if (wal_seg_parse(r->cached, r->cached_len, seg, why, sizeof(why)) != 0) {
        r->cached_key = NULL;
        return fail(r, -EPROTO, "segment %s is damaged: %s", ref->key, why);
    }
    if (seg->first_lsn != ref->first || seg->last_lsn != ref->last) {
        r->cached_key = NULL;
        return fail(r, -EPROTO, "segment %s holds records %" PRIu64 "..%" PRIu64 ", not what its name says",
                    ref->key, seg->first_lsn, seg->last_lsn);
    }
    return 0;
}

/* The target lsn for a time: see the top of the file. */
static int find_moment(struct restore *r, const struct seg_ref *segs, size_t n, uint64_t *target, int64_t *when)
{
    int64_t at = r->o->at_us;
    struct wal_segment seg;
    size_t lo = 0, hi = n; /* the answer is in [lo, hi) */
    int rv = seg_load(r, &segs[0], &seg);
    if (rv != 0)
        return rv;
    if (wal_seg_commit_us(&seg, 0) > at && seg.first_lsn > 1) {
        /* gc removed the older records: the moment is at or after the
         * snapshot they led to (the tool keeps moments inside retention). */
        *target = seg.first_lsn - 1;
        *when = 0;
        return 0;
    }
    if (wal_seg_commit_us(&seg, 0) > at) {
        char t[64];
        time_t secs = (time_t)(wal_seg_commit_us(&seg, 0) / 1000000);
        struct tm tm;
        gmtime_r(&secs, &tm);
        strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%SZ", &tm);
        return fail(r, -ERANGE, "the moment is before the object's first record in the store (lsn %" PRIu64
                                " committed at %s)", seg.first_lsn, t);
    }
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if ((rv = seg_load(r, &segs[mid], &seg)) != 0)
            return rv;
        if (wal_seg_commit_us(&seg, 0) <= at)
            lo = mid;
        else
            hi = mid;
    }
    if ((rv = seg_load(r, &segs[lo], &seg)) != 0)
        return rv;
    uint32_t i = 0;
    while (i + 1 < seg.n && wal_seg_commit_us(&seg, i + 1) <= at)
        i++;
    *target = seg.first_lsn + i;
    *when = wal_seg_commit_us(&seg, i);
    return 0;
}

static int write_full(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int snapshot_load(struct restore *r, const char *key, int fd)
{
    struct wal_store_result res = {0};
    int rv = wal_store_get_sync(r->store, key, &res);
    if (rv != 0) {
        rv = fail(r, rv, "can not download snapshot %s: %s", key, res.err);
        wal_store_result_free(&res);
        return rv;
    }
    r->prog.bytes += res.len;
    r->res->bytes += res.len;
    progress(r);
    ZSTD_DCtx *dc = ZSTD_createDCtx();
    size_t cap = ZSTD_DStreamOutSize();
    uint8_t *out = sdk_xmalloc(cap);
    ZSTD_inBuffer in = {res.data, res.len, 0};
    size_t last = 1;
    while (rv == 0 && in.pos < in.size) {
        ZSTD_outBuffer ob = {out, cap, 0};
        last = ZSTD_decompressStream(dc, &ob, &in);
        if (ZSTD_isError(last))
            rv = fail(r, -EPROTO, "snapshot %s is damaged: %s", key, ZSTD_getErrorName(last));
        else if ((rv = write_full(fd, out, ob.pos)) != 0)
            rv = fail(r, rv, "can not write %s: %s", r->o->out, strerror(-rv));
    }
    if (rv == 0 && last != 0)
        rv = fail(r, -EPROTO, "snapshot %s is truncated", key);
    free(out);
    ZSTD_freeDCtx(dc);
    wal_store_result_free(&res);
    return rv;
}

/* Applies records (applied, target] of one segment. */
static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Applies records (applied, target] of one segment. A hot page is in many of
 * a segment's records (the table's last leaf, _dobj_meta, page 1): the
 * records are decompressed side by side, and each page is written once, in
 * page order, as its newest image. */
static int seg_apply(struct restore *r, const struct seg_ref *ref, int fd, uint64_t *applied, uint64_t target)
{
    struct wal_segment seg;
    int rv = seg_load(r, ref, &seg);
    if (rv != 0)
        return rv;
    uint64_t from = *applied + 1, to = target < seg.last_lsn ? target : seg.last_lsn;
    size_t total = 0;
    for (uint64_t lsn = from; lsn <= to; lsn++)
        total += wal_get_u32(seg.index + (size_t)(lsn - seg.first_lsn) * 24 + 20);
    if (total > r->arena_cap) {
        free(r->arena);
        r->arena_cap = total;
        r->arena = sdk_xmalloc(total);
    }
    r->ntouched = 0;
    uint32_t page_size = 0;
    size_t off = 0;
    for (uint64_t lsn = from; lsn <= to; lsn++) {
        uint32_t i = (uint32_t)(lsn - seg.first_lsn);
        const uint8_t *e = seg.index + (size_t)i * 24;
        size_t clen = wal_get_u32(e + 16), rlen = wal_get_u32(e + 20);
        size_t n = ZSTD_decompressDCtx(r->dc, r->arena + off, rlen, seg.data + wal_get_u64(e + 8), clen);
        if (ZSTD_isError(n) || n != rlen)
            return fail(r, -EPROTO, "segment %s: record %" PRIu64 " does not decompress", ref->key, lsn);
        struct wal_record rec;
        size_t used;
        if (wal_record_decode_grow(r->arena + off, rlen, &rec, &r->pages, &r->pages_cap, &used) != 0 ||
            rec.lsn != lsn ||
            (page_size != 0 && rec.page_size != page_size))
            return fail(r, -EPROTO, "segment %s: record %" PRIu64 " is damaged", ref->key, lsn);
        page_size = rec.page_size;
        off += rlen;
        for (uint32_t k = 0; k < rec.npages; k++) {
            uint32_t pg = rec.pages[k].pgno;
            if (pg == 0)
                return fail(r, -EPROTO, "segment %s: record %" PRIu64 " is damaged", ref->key, lsn);
            if (pg > rec.db_pages)
                continue; /* a page the commit dropped */
            if (pg >= r->newest_cap) {
                size_t cap = (size_t)pg * 2 + 1024;
                r->newest = sdk_xrealloc(r->newest, cap * sizeof(*r->newest));
                memset(r->newest + r->newest_cap, 0, (cap - r->newest_cap) * sizeof(*r->newest));
                r->newest_cap = cap;
            }
            if (r->newest[pg] == NULL) {
                if (r->ntouched == r->touched_cap) {
                    r->touched_cap = r->touched_cap ? r->touched_cap * 2 : 1024;
                    r->touched = sdk_xrealloc(r->touched, r->touched_cap * sizeof(*r->touched));
                }
                r->touched[r->ntouched++] = pg;
            }
            r->newest[pg] = rec.pages[k].data;
        }
        r->db_size = (off_t)rec.db_pages * rec.page_size;
        *applied = lsn;
        r->res->records++;
        r->res->commit_us = rec.commit_us;
    }
    qsort(r->touched, r->ntouched, sizeof(*r->touched), cmp_u32);
    for (size_t k = 0; k < r->ntouched; k++) {
        uint32_t pg = r->touched[k];
        const uint8_t *d = r->newest[pg];
        r->newest[pg] = NULL;
        off_t at = (off_t)(pg - 1) * page_size;
        for (size_t left = page_size; left > 0;) {
            ssize_t w = pwrite(fd, d, left, at);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return fail(r, -errno, "can not write %s: %s", r->o->out, strerror(errno));
            d += w;
            at += w;
            left -= (size_t)w;
        }
    }
    r->prog.segments++;
    progress(r);
    return 0;
}

/* The stamped lsn. Every byte came through a checksum (each record's XXH3,
 * each segment's, each snapshot's zstd frame checksum), so a full
 * integrity_check, which reads the whole database, is left to the operator. */
static int check_db(struct restore *r, const char *path, uint64_t lsn)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rv = 0;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        rv = fail(r, -EIO, "the restored database can not be opened: %s", sqlite3_errmsg(db));
    } else {
        int64_t have = -1;
        if (sqlite3_prepare_v2(db, "SELECT value FROM _dobj_meta WHERE key = 'lsn'", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            have = sqlite3_column_int64(st, 0);
        if (have != (int64_t)lsn)
            rv = fail(r, -EPROTO, "the restored database says it is at lsn %" PRId64 ", not %" PRIu64, have, lsn);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rv;
}

int wal_restore(struct wal_store *s, const struct wal_restore_opts *o, struct wal_restore_result *res, char *err,
                size_t errlen)
{
    memset(res, 0, sizeof(*res));
    struct restore r = {.store = s, .o = o, .res = res, .err = err, .errlen = errlen, .db_size = -1};
    struct wal_store_result list = {0};
    int rv = wal_store_list_sync(s, o->object_prefix, &list);
    if (rv != 0) {
        fail(&r, rv, "can not list %s in %s: %s", o->object_prefix, wal_store_url(s), list.err);
        wal_store_result_free(&list);
        return rv;
    }
    size_t plen = strlen(o->object_prefix);
    struct seg_ref *segs = sdk_xcalloc(list.nentries + 1, sizeof(*segs));
    size_t nsegs = 0;
    uint64_t snaps_best = 0, max_lsn = 0;
    for (size_t i = 0; i < list.nentries; i++) {
        const char *k = list.entries[i].key + plen;
        struct seg_ref *g = &segs[nsegs];
        if (strncmp(k, "segments/", 9) == 0 && wal_seg_key_parse(k, &g->first, &g->last, &g->epoch)) {
            g->key = list.entries[i].key;
            g->size = list.entries[i].size;
            if (g->last > max_lsn)
                max_lsn = g->last;
            nsegs++;
        }
    }
    qsort(segs, nsegs, sizeof(*segs), seg_cmp);
    uint64_t target = o->lsn;
    int64_t when = 0;
    char part[4200];
    snprintf(part, sizeof(part), "%s.part", o->out);
    int fd = -1;
    r.dc = ZSTD_createDCtx();
    if (list.nentries == 0) {
        rv = fail(&r, -ENOENT, "the store %s has no object at %s", wal_store_url(s), o->object_prefix);
        goto out;
    }
    if (target == 0) {
        if (nsegs == 0) {
            rv = fail(&r, -ENODATA, "the store has no segments for %s", o->object_prefix);
            goto out;
        }
        if ((rv = find_moment(&r, segs, nsegs, &target, &when)) != 0)
            goto out;
    }
    for (size_t i = 0; i < list.nentries; i++) {
        uint64_t lsn;
        const char *k = list.entries[i].key + plen;
        if (strncmp(k, "snapshots/", 10) == 0 && wal_snapshot_key_parse(k, &lsn)) {
            if (lsn > max_lsn)
                max_lsn = lsn;
            if (lsn <= target && lsn > snaps_best)
                snaps_best = lsn;
        }
    }
    if (target == WAL_LSN_LATEST)
        target = max_lsn;
    if (target > max_lsn) {
        rv = fail(&r, -ERANGE, "lsn %" PRIu64 " is past the newest record in the store (%" PRIu64 ")", target,
                  max_lsn);
        goto out;
    }
    unlink(part);
    fd = open(part, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        rv = fail(&r, -errno, "can not create %s: %s", part, strerror(errno));
        goto out;
    }
    uint64_t applied = 0;
    if (snaps_best > 0) {
        char key[512];
        wal_snapshot_key(key, sizeof(key), o->object_prefix, snaps_best);
        if ((rv = snapshot_load(&r, key, fd)) != 0)
            goto out;
        applied = snaps_best;
        res->snapshot_lsn = snaps_best;
    }
    size_t needed = 0;
    for (size_t i = 0; i < nsegs; i++)
        if (segs[i].last > applied && segs[i].first <= target)
            needed++;
    r.prog.segments_total = (uint32_t)needed;
    progress(&r);
    for (size_t i = 0; i < nsegs && applied < target; i++) {
        if (segs[i].last <= applied)
            continue;
        if (segs[i].first > applied + 1) {
            rv = fail(&r, -ENODATA, "records %" PRIu64 "..%" PRIu64 " of %s are missing from the store", applied + 1,
                      segs[i].first - 1, o->object_prefix);
            goto out;
        }
        if ((rv = seg_apply(&r, &segs[i], fd, &applied, target)) != 0)
            goto out;
    }
    if (applied < target) {
        rv = fail(&r, -ENODATA, "records %" PRIu64 "..%" PRIu64 " of %s are missing from the store", applied + 1,
                  target, o->object_prefix);
        goto out;
    }
    struct stat st;
    if ((r.db_size >= 0 && ftruncate(fd, r.db_size) != 0) || fsync(fd) != 0 || fstat(fd, &st) != 0) {
        rv = fail(&r, -errno, "can not write %s: %s", part, strerror(errno));
        goto out;
    }
    close(fd);
    fd = -1;
    res->db_bytes = (uint64_t)st.st_size;
    res->lsn = target;
    if (when != 0)
        res->commit_us = when;
    if ((rv = check_db(&r, part, target)) != 0)
        goto out;
    if (rename(part, o->out) != 0) {
        rv = fail(&r, -errno, "can not rename %s to %s: %s", part, o->out, strerror(errno));
        goto out;
    }
out:
    if (fd >= 0)
        close(fd);
    if (rv != 0) {
        unlink(part);
        char side[4300];
        snprintf(side, sizeof(side), "%s-wal", part);
        unlink(side);
        snprintf(side, sizeof(side), "%s-shm", part);
        unlink(side);
    }
    ZSTD_freeDCtx(r.dc);
    free(r.cached);
    free(r.pages);
    free(r.arena);
    free(r.newest);
    free(r.touched);
    free(segs);
    wal_store_result_free(&list);
    return rv;
}

int wal_object_tombstoned(struct wal_store *s, const struct wal_store_entry *v, size_t n, const char *prefix,
                          bool *yes, char *err, size_t errlen)
{
    *yes = false;
    size_t plen = strlen(prefix);
    const char *newest = NULL;
    uint64_t best = 0, snap = 0;
    for (size_t i = 0; i < n; i++) {
        const char *k = v[i].key + plen;
        uint64_t first, last, epoch, lsn;
        if (strncmp(k, "segments/", 9) == 0 && wal_seg_key_parse(k, &first, &last, &epoch) && last > best) {
            best = last;
            newest = v[i].key;
        } else if (strncmp(k, "snapshots/", 10) == 0 && wal_snapshot_key_parse(k, &lsn) && lsn > snap) {
            snap = lsn;
        }
    }
    if (newest == NULL || snap > best)
        return 0;
    struct wal_store_result res = {0};
    int rv = wal_store_get_sync(s, newest, &res);
    if (rv != 0) {
        snprintf(err, errlen, "can not download %s: %s", newest, res.err);
        wal_store_result_free(&res);
        return rv;
    }
    struct wal_segment seg;
    char why[256];
    rv = wal_seg_parse(res.data, res.len, &seg, why, sizeof(why));
    if (rv != 0) {
        snprintf(err, errlen, "segment %s is damaged: %s", newest, why);
    } else {
        ZSTD_DCtx *dc = ZSTD_createDCtx();
        uint8_t *buf = NULL;
        size_t cap = 0, len = 0;
        if (wal_seg_record(&seg, seg.n - 1, dc, &buf, &cap, &len) == 0 && len >= WAL_RECORD_HEADER_BYTES) {
            struct wal_record h;
            wal_record_peek_header(buf, &h);
            *yes = (h.flags & WAL_REC_TOMBSTONE) != 0;
        } else {
            snprintf(err, errlen, "segment %s: its last record does not decompress", newest);
            rv = -EPROTO;
        }
        free(buf);
        ZSTD_freeDCtx(dc);
    }
    wal_store_result_free(&res);
    return rv;
}
