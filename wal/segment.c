/*
 * segment.c: the segment format. Every integer is little-endian.
 *
 *   offset  size  field
 *        0     4  magic "DSG1" (0x31475344)
 *        4     4  version (1)
 *        8    16  object id
 *       24     8  epoch of the records
 *       32     8  first lsn
 *       40     8  last lsn
 *       48     4  number of records n (last - first + 1)
 *       52     4  flags (0)
 *       56     8  length of the data section
 *       64        n index entries of 24 bytes:
 *                   commit time (8, microseconds since the epoch),
 *                   offset of the record's frame in the data section (8),
 *                   compressed length (4), record length (4)
 *    64+24n        the data section: n zstd frames, frame i decompresses to
 *                  record first + i in the wal/record.c format (with its own
 *                  checksum)
 *  len - 8     8  XXH3-64 of bytes [0, len - 8)
 *
 * Records are compressed one by one as they arrive, so an object's pending
 * segment costs memory in compressed bytes only, and a restore that needs one
 * moment decompresses only the records up to it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>
#include <zstd.h>

#include "sdk_util.h"
#include "wal.h"

#define SEG_MAGIC 0x31475344u
#define SEG_VERSION 1
#define SEG_HEADER 64
#define SEG_ENTRY 24
#define SEG_ZSTD_LEVEL 3

/* Checks that a record with header h follows and makes room for `room`
 * more data bytes. */
static int seg_begin(struct wal_seg_builder *b, const struct wal_record *h, size_t room)
{
    if (b->n > 0 && (h->lsn != b->last_lsn + 1 || memcmp(h->object_id, b->id, sizeof(b->id)) != 0))
        return -EINVAL;
    if (b->n == 0) {
        memcpy(b->id, h->object_id, sizeof(b->id));
        b->epoch = h->epoch;
        b->first_lsn = h->lsn;
    }
    if (b->data_len + room > b->data_cap) {
        b->data_cap = (b->data_len + room) * 2;
        b->data = sdk_xrealloc(b->data, b->data_cap);
    }
    return 0;
}

/* Indexes the c data bytes just written after data_len: record h, len bytes
 * decompressed. */
static void seg_end(struct wal_seg_builder *b, const struct wal_record *h, size_t c, size_t len)
{
    if ((size_t)(b->n + 1) * SEG_ENTRY > b->index_cap) {
        b->index_cap = b->index_cap ? b->index_cap * 2 : 64 * SEG_ENTRY;
        b->index = sdk_xrealloc(b->index, b->index_cap);
    }
    uint8_t *e = b->index + (size_t)b->n * SEG_ENTRY;
    wal_put_u64(e, (uint64_t)h->commit_us);
    wal_put_u64(e + 8, b->data_len);
    wal_put_u32(e + 16, (uint32_t)c);
    wal_put_u32(e + 20, (uint32_t)len);
    b->data_len += c;
    b->n++;
    b->last_lsn = h->lsn;
    b->raw_bytes += len;
}

int wal_seg_add(struct wal_seg_builder *b, ZSTD_CCtx *zc, const uint8_t *rec, size_t len)
{
    struct wal_record h;
    wal_record_peek_header(rec, &h);
    size_t bound = ZSTD_compressBound(len);
    if (seg_begin(b, &h, bound) != 0)
        return -EINVAL;
    size_t c = ZSTD_compressCCtx(zc, b->data + b->data_len, bound, rec, len, SEG_ZSTD_LEVEL);
    if (ZSTD_isError(c))
        return -ENOMEM;
    seg_end(b, &h, c, len);
    return 0;
}

int wal_seg_add_packed(struct wal_seg_builder *b, const uint8_t *packed, size_t len)
{
    struct wal_record h;
    const uint8_t *frame;
    size_t flen, rlen;
    if (wal_record_packed_header(packed, len, &h, &frame, &flen, &rlen) != 0 ||
        ZSTD_getFrameContentSize(frame, flen) != rlen)
        return -EPROTO;
    if (seg_begin(b, &h, flen) != 0)
        return -EINVAL;
    memcpy(b->data + b->data_len, frame, flen);
    seg_end(b, &h, flen, rlen);
    return 0;
}

uint8_t *wal_seg_finish(struct wal_seg_builder *b, size_t *len)
{
    size_t n = SEG_HEADER + (size_t)b->n * SEG_ENTRY + b->data_len + 8;
    uint8_t *out = sdk_xmalloc(n);
    wal_put_u32(out, SEG_MAGIC);
    wal_put_u32(out + 4, SEG_VERSION);
    memcpy(out + 8, b->id, sizeof(b->id));
    wal_put_u64(out + 24, b->epoch);
    wal_put_u64(out + 32, b->first_lsn);
    wal_put_u64(out + 40, b->last_lsn);
    wal_put_u32(out + 48, b->n);
    wal_put_u32(out + 52, 0);
    wal_put_u64(out + 56, b->data_len);
    memcpy(out + SEG_HEADER, b->index, (size_t)b->n * SEG_ENTRY);
    memcpy(out + SEG_HEADER + (size_t)b->n * SEG_ENTRY, b->data, b->data_len);
    wal_put_u64(out + n - 8, XXH3_64bits(out, n - 8));
    *len = n;
    b->n = 0;
    b->data_len = 0;
    b->raw_bytes = 0;
    b->first_lsn = b->last_lsn = 0;
    return out;
}

void wal_seg_builder_free(struct wal_seg_builder *b)
{
    free(b->index);
    free(b->data);
    memset(b, 0, sizeof(*b));
}

void wal_seg_key(char *out, size_t cap, const char *object_prefix, uint64_t first, uint64_t last, uint64_t epoch)
{
    snprintf(out, cap, "%ssegments/%020" PRIu64 "-%020" PRIu64 "-%020" PRIu64 ".seg", object_prefix, first, last,
             epoch);
}

bool wal_seg_key_parse(const char *key, uint64_t *first, uint64_t *last, uint64_t *epoch)
{
    const char *base = strrchr(key, '/');
    base = base != NULL ? base + 1 : key;
    if (strlen(base) != 20 * 3 + 2 + 4 || strcmp(base + 62, ".seg") != 0 || base[20] != '-' || base[41] != '-')
        return false;
    for (int i = 0; i < 62; i++)
        if (i != 20 && i != 41 && (base[i] < '0' || base[i] > '9'))
            return false;
    *first = strtoull(base, NULL, 10);
    *last = strtoull(base + 21, NULL, 10);
    *epoch = strtoull(base + 42, NULL, 10);
    return *first >= 1 && *last >= *first;
}

int wal_seg_parse(const uint8_t *buf, size_t len, struct wal_segment *s, char *err, size_t errlen)
{
    if (len < SEG_HEADER + 8 || wal_get_u32(buf) != SEG_MAGIC) {
        snprintf(err, errlen, "not a segment (%zu bytes, bad magic)", len);
        return -EPROTO;
    }
    if (wal_get_u32(buf + 4) != SEG_VERSION) {
        snprintf(err, errlen, "segment version %u is not supported", wal_get_u32(buf + 4));
        return -EPROTO;
    }
    memcpy(s->id, buf + 8, sizeof(s->id));
    s->epoch = wal_get_u64(buf + 24);
    s->first_lsn = wal_get_u64(buf + 32);
    s->last_lsn = wal_get_u64(buf + 40);
    s->n = wal_get_u32(buf + 48);
    s->data_len = wal_get_u64(buf + 56);
    if (s->n == 0 || s->last_lsn - s->first_lsn + 1 != s->n ||
        (uint64_t)SEG_HEADER + (uint64_t)s->n * SEG_ENTRY + s->data_len + 8 != len) {
        snprintf(err, errlen, "segment sizes do not add up (truncated?): %zu bytes for %u records", len, s->n);
        return -EPROTO;
    }
    if (XXH3_64bits(buf, len - 8) != wal_get_u64(buf + len - 8)) {
        snprintf(err, errlen, "segment checksum mismatch (damaged)");
        return -EPROTO;
    }
    s->index = buf + SEG_HEADER;
    s->data = s->index + (size_t)s->n * SEG_ENTRY;
    for (uint32_t i = 0; i < s->n; i++) {
        const uint8_t *e = s->index + (size_t)i * SEG_ENTRY;
        uint64_t off = wal_get_u64(e + 8), clen = wal_get_u32(e + 16);
        if (off + clen > s->data_len || wal_get_u32(e + 20) < WAL_RECORD_HEADER_BYTES) {
            snprintf(err, errlen, "segment index entry %u points outside the data", i);
            return -EPROTO;
        }
    }
    return 0;
}

int64_t wal_seg_commit_us(const struct wal_segment *s, uint32_t i)
{
    return (int64_t)wal_get_u64(s->index + (size_t)i * SEG_ENTRY);
}

int wal_seg_record(const struct wal_segment *s, uint32_t i, ZSTD_DCtx *dc, uint8_t **buf, size_t *cap, size_t *len)
{
    const uint8_t *e = s->index + (size_t)i * SEG_ENTRY;
    uint64_t off = wal_get_u64(e + 8);
    size_t clen = wal_get_u32(e + 16), rlen = wal_get_u32(e + 20);
    if (rlen > *cap) {
        *cap = rlen;
        free(*buf);
        *buf = sdk_xmalloc(rlen);
    }
    size_t n = ZSTD_decompressDCtx(dc, *buf, rlen, s->data + off, clen);
    if (ZSTD_isError(n) || n != rlen)
        return -EPROTO;
    *len = n;
    return 0;
}
