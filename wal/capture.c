/*
 * capture.c: which pages did a commit change?
 *
 * Why sqlite3_wal_hook plus reading the appended frames, and not a VFS that
 * captures WAL writes as they happen: the hook runs exactly once per committed
 * write transaction with the WAL's frame count, and only ever reports
 * committed frames. A capturing VFS would see every write, including frames
 * of transactions that later roll back and frames rewritten in place when the
 * page cache spills, and would have to redo SQLite's commit logic to tell
 * them apart. The VFS we do have (memvfs.c) only keeps the WAL in memory, so
 * that reading the frames back is a pointer into it, not a pread.
 *
 * The -wal file (big-endian, see sqlite's src/wal.c):
 *   header  32 bytes: magic, version, page size (8), checkpoint seq,
 *                     salt-1 (16), salt-2 (20), checksums
 *   frame   24 bytes: page number (0), database size in pages after the
 *                     commit for a commit frame, else 0 (4), salt-1 (8),
 *                     salt-2 (12), checksums; then the page image
 * A checkpoint that backfilled every frame lets the next writer restart the
 * WAL from frame 1 with new salts: a salt change means the frames seen so far
 * belong to the previous generation.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sdk_util.h"
#include "wal.h"

#define WAL_HEADER_BYTES 32
#define WAL_FRAME_HEADER_BYTES 24

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

void wal_capture_init(struct wal_capture *c, const char *db_path, struct sqlite3 *db)
{
    memset(c, 0, sizeof(*c));
    c->db = db;
    c->fd = -1;
    size_t n = strlen(db_path);
    c->wal_path = sdk_xmalloc(n + 5);
    memcpy(c->wal_path, db_path, n);
    memcpy(c->wal_path + n, "-wal", 5);
}

void wal_capture_close(struct wal_capture *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->wal_path);
    free(c->buf);
    free(c->pages);
    memset(c, 0, sizeof(*c));
    c->fd = -1;
}

static int read_full(int fd, uint8_t *buf, size_t len, off_t off)
{
    while (len > 0) {
        ssize_t n = pread(fd, buf, len, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EPROTO;
        buf += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

/* Sorts frame indexes by page number, later frames after earlier ones. Shards
 * capture on their own threads: the frames travel in the argument. */
struct frames {
    const uint8_t *base;
    size_t bytes;
};

static int cmp_frames(const void *a, const void *b, void *arg)
{
    const struct frames *fr = arg;
    uint32_t ia = *(const uint32_t *)a, ib = *(const uint32_t *)b;
    uint32_t pa = be32(fr->base + (size_t)ia * fr->bytes), pb = be32(fr->base + (size_t)ib * fr->bytes);
    if (pa != pb)
        return pa < pb ? -1 : 1;
    return ia < ib ? -1 : ia > ib;
}

/* Points *out at len bytes of the WAL from off: in place for an in-memory WAL,
 * else read into buf. */
static int wal_view(struct wal_capture *c, size_t off, size_t len, uint8_t *buf, const uint8_t **out)
{
    const uint8_t *mem;
    size_t size;
    if (c->db != NULL && wal_memvfs_bytes(c->db, &mem, &size) == 0) {
        if (off > size || size - off < len)
            return -EPROTO;
        *out = mem + off;
        return 0;
    }
    int rv = read_full(c->fd, buf, len, (off_t)off);
    if (rv == 0)
        *out = buf;
    return rv;
}

/* Reads the WAL header; a new generation resets what was seen. */
static int read_header(struct wal_capture *c, char *err, size_t errlen)
{
    const uint8_t *mem;
    size_t size;
    if (c->fd < 0 && !(c->db != NULL && wal_memvfs_bytes(c->db, &mem, &size) == 0)) {
        c->fd = open(c->wal_path, O_RDONLY | O_CLOEXEC);
        if (c->fd < 0) {
            int e = errno;
            snprintf(err, errlen, "can not open %s: %s", c->wal_path, strerror(e));
            return -e;
        }
    }
    uint8_t hbuf[WAL_HEADER_BYTES];
    const uint8_t *h = hbuf;
    int rv = wal_view(c, 0, sizeof(hbuf), hbuf, &h);
    uint32_t magic = rv == 0 ? be32(h) : 0;
    if (rv != 0 || (magic != 0x377f0682 && magic != 0x377f0683)) {
        snprintf(err, errlen, "%s has no valid WAL header", c->wal_path);
        return rv != 0 ? rv : -EPROTO;
    }
    uint32_t ps = be32(h + 8), s1 = be32(h + 16), s2 = be32(h + 20);
    if (ps != c->page_size || s1 != c->salt1 || s2 != c->salt2) {
        c->page_size = ps;
        c->salt1 = s1;
        c->salt2 = s2;
        c->frames_seen = 0;
    }
    return 0;
}

int wal_capture_commit(struct wal_capture *c, uint32_t wal_frames, struct wal_record *r, char *err, size_t errlen)
{
    int rv = read_header(c, err, errlen);
    if (rv != 0)
        return rv;
    if (wal_frames <= c->frames_seen) {
        snprintf(err, errlen, "%s: commit reported %u frames, %u already seen", c->wal_path, wal_frames,
                 c->frames_seen);
        return -EPROTO;
    }
    uint32_t n = wal_frames - c->frames_seen;
    size_t fbytes = WAL_FRAME_HEADER_BYTES + (size_t)c->page_size;
    if ((size_t)n * fbytes > WAL_RECORD_BYTES_MAX) {
        snprintf(err, errlen, "a transaction of %u pages is over the record limit", n);
        return -E2BIG;
    }
    if (c->fd >= 0 && c->buf_cap < (size_t)n * fbytes) {
        free(c->buf);
        c->buf_cap = (size_t)n * fbytes;
        c->buf = sdk_xmalloc(c->buf_cap);
    }
    const uint8_t *frames = NULL;
    rv = wal_view(c, WAL_HEADER_BYTES + (size_t)c->frames_seen * fbytes, (size_t)n * fbytes, c->buf, &frames);
    if (rv != 0) {
        snprintf(err, errlen, "%s: can not read frames %u..%u", c->wal_path, c->frames_seen + 1, wal_frames);
        return rv;
    }
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *f = frames + (size_t)i * fbytes;
        if (be32(f + 8) != c->salt1 || be32(f + 12) != c->salt2 || be32(f) == 0) {
            snprintf(err, errlen, "%s: frame %u does not belong to this WAL", c->wal_path, c->frames_seen + 1 + i);
            return -EPROTO;
        }
    }
    uint32_t db_pages = be32(frames + (size_t)(n - 1) * fbytes + 4);
    if (db_pages == 0) {
        snprintf(err, errlen, "%s: frame %u is not a commit frame", c->wal_path, wal_frames);
        return -EPROTO;
    }
    /* The last image of each page wins. */
    uint32_t *idx = sdk_xmalloc(n * sizeof(*idx));
    for (uint32_t i = 0; i < n; i++)
        idx[i] = i;
    struct frames fr = {frames, fbytes};
    qsort_r(idx, n, sizeof(*idx), cmp_frames, &fr);
    if (c->pages_cap < n) {
        free(c->pages);
        c->pages_cap = n;
        c->pages = sdk_xmalloc(n * sizeof(*c->pages));
    }
    uint32_t np = 0;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *f = frames + (size_t)idx[i] * fbytes;
        if (i + 1 < n && be32(frames + (size_t)idx[i + 1] * fbytes) == be32(f))
            continue;
        c->pages[np].pgno = be32(f);
        c->pages[np].data = f + WAL_FRAME_HEADER_BYTES;
        np++;
    }
    free(idx);
    c->frames_seen = wal_frames;
    r->pages = c->pages;
    r->npages = np;
    r->db_pages = db_pages;
    r->page_size = c->page_size;
    return 0;
}
