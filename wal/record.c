/*
 * record.c: the record format. Every integer is little-endian.
 *
 *   offset  size  field
 *        0     4  magic "DRC1" (0x31435244)
 *        4     4  length of the whole record in bytes, header to checksum
 *        8    16  object id (the first 16 bytes of SHA-256 of "class/name")
 *       24     8  epoch
 *       32     8  lsn: 1, 2, 3 ... per object, no gaps
 *       40     8  commit time, microseconds since the epoch (signed)
 *       48     4  database size in pages after the commit
 *       52     4  page size in bytes (a power of two, 512 to 65536)
 *       56     4  number of pages n
 *       60     4  flags: 1 = "uploaded" marker (journal only, no pages),
 *                 2 = tombstone (the write deleted all the object's data)
 *       64        n times: page number (4), page image (page size)
 *   len - 8    8  XXH3-64 of bytes [0, len - 8)
 *
 * Pages come in ascending page number, each once. A decoder checks the magic,
 * that the sizes add up to the length, the page order, and the checksum,
 * before anything reads a page: records come from disk and, later, from the
 * network.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pthread.h>
#include <xxhash.h>
#include <zstd.h>

#include "sdk_util.h"
#include "wal.h"

#define RECORD_MAGIC 0x31435244u

_Static_assert(WAL_RECORD_HEADER_BYTES == 64, "record header layout");
_Static_assert(WAL_RECORD_HEADER_BYTES == 60 + 4, "flags end the header");
_Static_assert(WAL_RECORD_TRAILER_BYTES == sizeof(uint64_t), "the checksum is XXH3-64");

size_t wal_record_size(uint32_t npages, uint32_t page_size)
{
    return WAL_RECORD_HEADER_BYTES + (size_t)npages * (4 + (size_t)page_size) + WAL_RECORD_TRAILER_BYTES;
}

void wal_record_encode(const struct wal_record *r, uint8_t *out)
{
    size_t len = wal_record_size(r->npages, r->page_size);
    wal_put_u32(out, RECORD_MAGIC);
    wal_put_u32(out + 4, (uint32_t)len);
    memcpy(out + 8, r->object_id, WAL_OBJECT_ID_BYTES);
    wal_put_u64(out + 24, r->epoch);
    wal_put_u64(out + 32, r->lsn);
    wal_put_u64(out + 40, (uint64_t)r->commit_us);
    wal_put_u32(out + 48, r->db_pages);
    wal_put_u32(out + 52, r->page_size);
    wal_put_u32(out + 56, r->npages);
    wal_put_u32(out + 60, r->flags);
    uint8_t *p = out + WAL_RECORD_HEADER_BYTES;
    for (uint32_t i = 0; i < r->npages; i++) {
        wal_put_u32(p, r->pages[i].pgno);
        memcpy(p + 4, r->pages[i].data, r->page_size);
        p += 4 + r->page_size;
    }
    wal_put_u64(p, XXH3_64bits(out, len - WAL_RECORD_TRAILER_BYTES));
}

int wal_record_decode_grow(const uint8_t *buf, size_t len, struct wal_record *r, struct wal_page **pages,
                           uint32_t *cap, size_t *used)
{
    /* A page takes at least 4 + WAL_PAGE_SIZE_MIN bytes of the record. */
    uint32_t max = (uint32_t)(len / (4 + WAL_PAGE_SIZE_MIN)) + 1;
    if (*cap < max) {
        free(*pages);
        *cap = max;
        *pages = sdk_xmalloc(max * sizeof(**pages));
    }
    return wal_record_decode(buf, len, r, *pages, *cap, used);
}

void wal_record_peek(const uint8_t *buf, uint8_t id[WAL_OBJECT_ID_BYTES], uint64_t *lsn, uint32_t *len)
{
    memcpy(id, buf + 8, WAL_OBJECT_ID_BYTES);
    *lsn = wal_get_u64(buf + 32);
    *len = wal_get_u32(buf + 4);
}

void wal_record_peek_header(const uint8_t *buf, struct wal_record *r)
{
    memset(r, 0, sizeof(*r));
    memcpy(r->object_id, buf + 8, WAL_OBJECT_ID_BYTES);
    r->epoch = wal_get_u64(buf + 24);
    r->lsn = wal_get_u64(buf + 32);
    r->commit_us = (int64_t)wal_get_u64(buf + 40);
    r->db_pages = wal_get_u32(buf + 48);
    r->page_size = wal_get_u32(buf + 52);
    r->npages = wal_get_u32(buf + 56);
    r->flags = wal_get_u32(buf + 60);
}

static bool page_size_ok(uint32_t ps)
{
    return ps >= WAL_PAGE_SIZE_MIN && ps <= WAL_PAGE_SIZE_MAX && (ps & (ps - 1)) == 0;
}

int wal_record_decode(const uint8_t *buf, size_t len, struct wal_record *r, struct wal_page *pages, uint32_t max_pages,
                      size_t *used)
{
    if (len < 8)
        return -1;
    if (wal_get_u32(buf) != RECORD_MAGIC)
        return -2;
    uint32_t rlen = wal_get_u32(buf + 4);
    if (rlen < WAL_RECORD_HEADER_BYTES + WAL_RECORD_TRAILER_BYTES || rlen > WAL_RECORD_BYTES_MAX)
        return -2;
    if (len < rlen)
        return -1;
    uint32_t ps = wal_get_u32(buf + 52), n = wal_get_u32(buf + 56);
    if (!page_size_ok(ps) || n > max_pages || wal_record_size(n, ps) != rlen)
        return -2;
    if (XXH3_64bits(buf, rlen - WAL_RECORD_TRAILER_BYTES) != wal_get_u64(buf + rlen - WAL_RECORD_TRAILER_BYTES))
        return -2;
    const uint8_t *p = buf + WAL_RECORD_HEADER_BYTES;
    for (uint32_t i = 0; i < n; i++) {
        pages[i].pgno = wal_get_u32(p);
        pages[i].data = p + 4;
        if (pages[i].pgno == 0 || (i > 0 && pages[i].pgno <= pages[i - 1].pgno))
            return -2;
        p += 4 + ps;
    }
    memcpy(r->object_id, buf + 8, WAL_OBJECT_ID_BYTES);
    r->epoch = wal_get_u64(buf + 24);
    r->lsn = wal_get_u64(buf + 32);
    r->commit_us = (int64_t)wal_get_u64(buf + 40);
    r->db_pages = wal_get_u32(buf + 48);
    r->page_size = ps;
    r->npages = n;
    r->flags = wal_get_u32(buf + 60);
    r->pages = pages;
    *used = rlen;
    return 0;
}

int wal_apply_pages(int fd, const struct wal_record *r)
{
    for (uint32_t i = 0; i < r->npages; i++) {
        /* Pages past the database's size are free pages the commit dropped. */
        if (r->pages[i].pgno > r->db_pages)
            continue;
        off_t off = (off_t)(r->pages[i].pgno - 1) * r->page_size;
        const uint8_t *d = r->pages[i].data;
        size_t left = r->page_size;
        while (left > 0) {
            ssize_t w = pwrite(fd, d, left, off);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                return -errno;
            }
            d += w;
            off += w;
            left -= (size_t)w;
        }
    }
    return 0;
}

int wal_apply(int fd, const struct wal_record *r)
{
    int rv = wal_apply_pages(fd, r);
    if (rv == 0 && ftruncate(fd, (off_t)r->db_pages * r->page_size) != 0)
        rv = -errno;
    return rv;
}

/* ---- packing for the wire ----------------------------------------------- */

/* zstd's fast mode: pages of small rows are runs of zeros, which it
 * skips at a few GB/s; level 1 spent a quarter of a leader's shard. */
#define PACK_LEVEL (-5)

/* One compression and one decompression context per thread, freed when the
 * thread ends. */
static pthread_key_t pack_key;
static pthread_once_t pack_once = PTHREAD_ONCE_INIT;

static pthread_key_t unpack_key;

static void pack_ctx_free(void *p) { ZSTD_freeCCtx(p); }
static void unpack_ctx_free(void *p) { ZSTD_freeDCtx(p); }

static void pack_key_make(void)
{
    pthread_key_create(&pack_key, pack_ctx_free);
    pthread_key_create(&unpack_key, unpack_ctx_free);
}

size_t wal_record_pack_bound(size_t len) { return WAL_RECORD_HEADER_BYTES + ZSTD_compressBound(len); }

size_t wal_record_pack(const uint8_t *rec, size_t len, uint8_t *out, size_t cap)
{
    pthread_once(&pack_once, pack_key_make);
    ZSTD_CCtx *zc = pthread_getspecific(pack_key);
    if (zc == NULL) {
        zc = ZSTD_createCCtx();
        if (zc == NULL)
            abort(); /* out of memory */
        pthread_setspecific(pack_key, zc);
    }
    memcpy(out, rec, WAL_RECORD_HEADER_BYTES);
    size_t n = ZSTD_compressCCtx(zc, out + WAL_RECORD_HEADER_BYTES, cap - WAL_RECORD_HEADER_BYTES, rec, len,
                                 PACK_LEVEL);
    if (ZSTD_isError(n))
        abort(); /* cap is the bound: only a bug gets here */
    return WAL_RECORD_HEADER_BYTES + n;
}

int wal_record_packed_header(const uint8_t *p, size_t len, struct wal_record *h, const uint8_t **frame,
                             size_t *frame_len, size_t *rec_len)
{
    if (len <= WAL_RECORD_HEADER_BYTES || wal_get_u32(p) != RECORD_MAGIC)
        return -EINVAL;
    uint32_t rlen = wal_get_u32(p + 4);
    if (rlen < WAL_RECORD_HEADER_BYTES || rlen > WAL_RECORD_BYTES_MAX)
        return -EINVAL;
    wal_record_peek_header(p, h);
    *frame = p + WAL_RECORD_HEADER_BYTES;
    *frame_len = len - WAL_RECORD_HEADER_BYTES;
    *rec_len = rlen;
    return 0;
}

int wal_record_unpack(const uint8_t *p, size_t len, uint8_t **out, size_t *out_len)
{
    struct wal_record h;
    const uint8_t *frame;
    size_t flen, rlen;
    if (wal_record_packed_header(p, len, &h, &frame, &flen, &rlen) != 0 ||
        ZSTD_getFrameContentSize(frame, flen) != rlen)
        return -EINVAL;
    /* ZSTD_decompress() would make (and page in) a new context each time. */
    pthread_once(&pack_once, pack_key_make);
    ZSTD_DCtx *zd = pthread_getspecific(unpack_key);
    if (zd == NULL) {
        zd = ZSTD_createDCtx();
        if (zd == NULL)
            abort(); /* out of memory */
        pthread_setspecific(unpack_key, zd);
    }
    uint8_t *buf = sdk_xmalloc(rlen);
    size_t got = ZSTD_decompressDCtx(zd, buf, rlen, frame, flen);
    if (ZSTD_isError(got) || got != rlen || memcmp(buf, p, WAL_RECORD_HEADER_BYTES) != 0) {
        free(buf);
        return -EINVAL;
    }
    *out = buf;
    *out_len = got;
    return 0;
}
