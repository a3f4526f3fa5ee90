/*
 * The segment format (wal/segment.c), the object-store keys, and the file://
 * backend (wal/store.c) through the same interface the uploader uses.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>
#include <zstd.h>

#include "sdk_util.h"
#include "wal.h"

/* A record of one object with `npages` pages filled from `seed`. */
static uint8_t *make_record(uint64_t lsn, int64_t commit_us, uint32_t npages, uint32_t seed, size_t *len)
{
    static uint8_t pages[8][4096];
    struct wal_page pv[8];
    for (uint32_t i = 0; i < npages; i++) {
        for (size_t k = 0; k < sizeof(pages[i]); k++)
            pages[i][k] = (uint8_t)((k % 7 == 0) ? seed + k : 0);
        pv[i] = (struct wal_page){.pgno = i + 1, .data = pages[i]};
    }
    struct wal_record r = {.lsn = lsn, .commit_us = commit_us, .db_pages = npages, .page_size = 4096,
                           .npages = npages, .pages = pv};
    memset(r.object_id, 0xab, sizeof(r.object_id));
    *len = wal_record_size(npages, 4096);
    uint8_t *buf = sdk_xmalloc(*len);
    wal_record_encode(&r, buf);
    return buf;
}

static uint8_t *make_segment(uint64_t first, uint32_t n, size_t *len, uint8_t ***recs, size_t **lens)
{
    struct wal_seg_builder b = {0};
    ZSTD_CCtx *zc = ZSTD_createCCtx();
    *recs = sdk_xcalloc(n, sizeof(**recs));
    *lens = sdk_xcalloc(n, sizeof(**lens));
    for (uint32_t i = 0; i < n; i++) {
        (*recs)[i] = make_record(first + i, 1000000 + (int64_t)i * 10, 1 + i % 3, i, &(*lens)[i]);
        cr_assert_eq(wal_seg_add(&b, zc, (*recs)[i], (*lens)[i]), 0);
    }
    cr_assert_eq(b.first_lsn, first);
    cr_assert_eq(b.last_lsn, first + n - 1);
    uint8_t *seg = wal_seg_finish(&b, len);
    cr_assert_eq(b.n, 0, "finish empties the builder");
    wal_seg_builder_free(&b);
    ZSTD_freeCCtx(zc);
    return seg;
}

Test(segment, round_trip_gives_every_record_and_time)
{
    size_t len, *lens;
    uint8_t **recs;
    uint8_t *seg = make_segment(41, 25, &len, &recs, &lens);
    struct wal_segment s;
    char err[256];
    cr_assert_eq(wal_seg_parse(seg, len, &s, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(s.first_lsn, 41);
    cr_assert_eq(s.last_lsn, 65);
    cr_assert_eq(s.n, 25);
    ZSTD_DCtx *dc = ZSTD_createDCtx();
    uint8_t *buf = NULL;
    size_t cap = 0, rlen = 0, raw = 0;
    for (uint32_t i = 0; i < s.n; i++) {
        raw += lens[i];
        cr_assert_eq(wal_seg_commit_us(&s, i), 1000000 + (int64_t)i * 10);
        cr_assert_eq(wal_seg_record(&s, i, dc, &buf, &cap, &rlen), 0);
        cr_assert_eq(rlen, lens[i]);
        cr_assert(memcmp(buf, recs[i], rlen) == 0, "record %u differs", i);
        free(recs[i]);
    }
    cr_assert_lt(len, raw / 4, "pages of repeated patterns compress (%zu of %zu bytes)", len, raw);
    free(buf);
    ZSTD_freeDCtx(dc);
    free(recs);
    free(lens);
    free(seg);
}

Test(segment, every_flipped_byte_and_every_cut_is_refused)
{
    size_t len, *lens;
    uint8_t **recs;
    uint8_t *seg = make_segment(1, 5, &len, &recs, &lens);
    struct wal_segment s;
    char err[256];
    for (size_t off = 0; off < len; off += 1 + off / 16) {
        seg[off] ^= 0x5a;
        cr_assert_neq(wal_seg_parse(seg, len, &s, err, sizeof(err)), 0, "flip at %zu accepted", off);
        seg[off] ^= 0x5a;
    }
    for (size_t cut = 0; cut < len; cut += 1 + cut / 8)
        cr_assert_neq(wal_seg_parse(seg, cut, &s, err, sizeof(err)), 0, "cut at %zu accepted", cut);
    cr_assert_eq(wal_seg_parse(seg, len, &s, err, sizeof(err)), 0);
    for (int i = 0; i < 5; i++)
        free(recs[i]);
    free(recs);
    free(lens);
    free(seg);
}

Test(segment, records_out_of_order_are_refused)
{
    struct wal_seg_builder b = {0};
    ZSTD_CCtx *zc = ZSTD_createCCtx();
    size_t l1, l2, l3;
    uint8_t *r1 = make_record(7, 1, 1, 1, &l1), *r2 = make_record(9, 2, 1, 2, &l2), *r3 = make_record(8, 3, 1, 3, &l3);
    cr_assert_eq(wal_seg_add(&b, zc, r1, l1), 0);
    cr_assert_eq(wal_seg_add(&b, zc, r2, l2), -EINVAL, "a gap is refused");
    cr_assert_eq(wal_seg_add(&b, zc, r3, l3), 0);
    cr_assert_eq(b.n, 2);
    free(r1);
    free(r2);
    free(r3);
    wal_seg_builder_free(&b);
    ZSTD_freeCCtx(zc);
}

/* A cluster's records travel packed and go into segments as they are: the
 * segment reads back the same records as one built from encoded ones, and
 * mixing both in one segment works. */
Test(segment, packed_records_go_in_as_they_are)
{
    struct wal_seg_builder b = {0};
    ZSTD_CCtx *zc = ZSTD_createCCtx();
    uint8_t *recs[6];
    size_t lens[6];
    for (uint32_t i = 0; i < 6; i++) {
        recs[i] = make_record(10 + i, 500 + i, 1 + i % 3, i, &lens[i]);
        if (i % 2 == 0) {
            size_t cap = wal_record_pack_bound(lens[i]);
            uint8_t *p = sdk_xmalloc(cap);
            size_t plen = wal_record_pack(recs[i], lens[i], p, cap);
            cr_assert_lt(plen, lens[i] / 2, "a packed record is compressed (%zu of %zu bytes)", plen, lens[i]);
            uint8_t *back;
            size_t blen;
            cr_assert_eq(wal_record_unpack(p, plen, &back, &blen), 0);
            cr_assert(blen == lens[i] && memcmp(back, recs[i], blen) == 0);
            free(back);
            /* A wrong header in front of a good frame, a cut and garbage are refused. */
            p[40] ^= 1;
            cr_assert_eq(wal_record_unpack(p, plen, &back, &blen), -EINVAL);
            p[40] ^= 1;
            cr_assert_eq(wal_record_unpack(p, plen - 1, &back, &blen), -EINVAL);
            cr_assert_eq(wal_record_unpack(p, WAL_RECORD_HEADER_BYTES, &back, &blen), -EINVAL);
            cr_assert_eq(wal_seg_add_packed(&b, recs[i], 12), -EPROTO);
            cr_assert_eq(wal_seg_add_packed(&b, p, plen), 0);
            free(p);
        } else {
            cr_assert_eq(wal_seg_add(&b, zc, recs[i], lens[i]), 0);
        }
    }
    size_t len;
    uint8_t *seg = wal_seg_finish(&b, &len);
    struct wal_segment s;
    char err[256];
    cr_assert_eq(wal_seg_parse(seg, len, &s, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(s.first_lsn, 10);
    cr_assert_eq(s.n, 6);
    ZSTD_DCtx *dc = ZSTD_createDCtx();
    uint8_t *buf = NULL;
    size_t cap = 0, rlen = 0;
    for (uint32_t i = 0; i < 6; i++) {
        cr_assert_eq(wal_seg_commit_us(&s, i), 500 + i);
        cr_assert_eq(wal_seg_record(&s, i, dc, &buf, &cap, &rlen), 0);
        cr_assert(rlen == lens[i] && memcmp(buf, recs[i], rlen) == 0, "record %u differs", i);
        free(recs[i]);
    }
    free(buf);
    free(seg);
    ZSTD_freeDCtx(dc);
    ZSTD_freeCCtx(zc);
    wal_seg_builder_free(&b);
}

Test(keys, segment_and_snapshot_names_parse_back)
{
    char key[256];
    uint64_t a, b, c;
    wal_seg_key(key, sizeof(key), "counter/00ff/", 1, 123456789012ull, 7);
    cr_assert_str_eq(key, "counter/00ff/segments/00000000000000000001-00000000123456789012-00000000000000000007.seg");
    cr_assert(wal_seg_key_parse(key, &a, &b, &c));
    cr_assert(a == 1 && b == 123456789012ull && c == 7);
    cr_assert_not(wal_seg_key_parse("x/segments/00000000000000000002-00000000000000000001-00000000000000000000.seg",
                                    &a, &b, &c), "last < first");
    cr_assert_not(wal_seg_key_parse("x/segments/0000000000000000000a-00000000000000000001-00000000000000000000.seg",
                                    &a, &b, &c));
    cr_assert_not(wal_seg_key_parse("x/segments/1-2-0.seg", &a, &b, &c));
    wal_snapshot_key(key, sizeof(key), "c/ab/", 42);
    cr_assert_str_eq(key, "c/ab/snapshots/00000000000000000042.db");
    cr_assert(wal_snapshot_key_parse(key, &a) && a == 42);
    cr_assert_not(wal_snapshot_key_parse("c/ab/snapshots/00000000000000000000.db", &a), "lsn 0 is no snapshot");
    cr_assert_not(wal_snapshot_key_parse("c/ab/snapshots/42.db", &a));
}

/* ---- the file backend ---------------------------------------------------- */

struct fstore {
    uv_loop_t loop;
    struct wal_store *s;
    char dir[64];
};

static void fstore_open(struct fstore *f)
{
    snprintf(f->dir, sizeof(f->dir), "/tmp/dobj-store-XXXXXX");
    cr_assert_not_null(mkdtemp(f->dir));
    uv_loop_init(&f->loop);
    char url[128], err[256];
    snprintf(url, sizeof(url), "file://%s/", f->dir);
    struct wal_store_config c = {.url = url};
    cr_assert_eq(wal_store_open(&f->s, &c, &f->loop, err, sizeof(err)), 0, "%s", err);
}

static void fstore_close(struct fstore *f)
{
    wal_store_close(f->s);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&f->loop), 0, "the store left a handle open");
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    cr_assert_eq(system(cmd), 0);
}

static void on_cb(void *arg, struct wal_store_result *res)
{
    (void)res;
    ++*(int *)arg;
}

Test(file_store, put_get_list_delete)
{
    struct fstore f;
    fstore_open(&f);
    struct wal_store_result r = {0};
    cr_assert_eq(wal_store_put_sync(f.s, "a/b/one", "1", 1, &r), 0, "%s", r.err);
    cr_assert_eq(wal_store_put_sync(f.s, "a/b/two", "22", 2, &r), 0);
    cr_assert_eq(wal_store_put_sync(f.s, "a/c/three", "333", 3, &r), 0);
    cr_assert_eq(wal_store_put_sync(f.s, "a/b/one", "111", 3, &r), 0, "a put replaces");
    cr_assert_eq(wal_store_get_sync(f.s, "a/b/one", &r), 0);
    cr_assert(r.len == 3 && memcmp(r.data, "111", 3) == 0);
    wal_store_result_free(&r);
    cr_assert_eq(wal_store_get_sync(f.s, "a/b/none", &r), -ENOENT);
    wal_store_result_free(&r);
    cr_assert_eq(wal_store_list_sync(f.s, "a/b/", &r), 0);
    cr_assert_eq(r.nentries, 2);
    cr_assert_str_eq(r.entries[0].key, "a/b/one");
    cr_assert_eq(r.entries[0].size, 3);
    cr_assert_str_eq(r.entries[1].key, "a/b/two");
    cr_assert_gt(r.entries[1].mtime_us, 0);
    wal_store_result_free(&r);
    cr_assert_eq(wal_store_list_sync(f.s, "a/", &r), 0);
    cr_assert_eq(r.nentries, 3, "a prefix matches across directories");
    wal_store_result_free(&r);
    cr_assert_eq(wal_store_list_sync(f.s, "a/b/t", &r), 0);
    cr_assert(r.nentries == 1 && strcmp(r.entries[0].key, "a/b/two") == 0, "a prefix may end inside a name");
    wal_store_result_free(&r);
    cr_assert_eq(wal_store_delete_sync(f.s, "a/b/one", &r), 0);
    cr_assert_eq(wal_store_delete_sync(f.s, "a/b/one", &r), 0, "deleting a missing key succeeds");
    cr_assert_eq(wal_store_get_sync(f.s, "a/b/one", &r), -ENOENT);
    wal_store_result_free(&r);
    fstore_close(&f);
}

Test(file_store, bad_keys_are_refused_and_callbacks_never_run_inside_the_call)
{
    struct fstore f;
    fstore_open(&f);
    static const char *const bad[] = {"", "/abs", "a/../b", "a/./b", ".hidden", "a b", "a\nb", "a/é"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct wal_store_result r = {0};
        cr_assert_eq(wal_store_put_sync(f.s, bad[i], "x", 1, &r), -EINVAL, "key \"%s\" accepted", bad[i]);
        cr_assert(strstr(r.err, "invalid store key") != NULL, "%s", r.err);
    }
    int calls = 0;
    wal_store_put(f.s, "k", "v", 1, on_cb, &calls);
    wal_store_get(f.s, "k", on_cb, &calls);
    cr_assert_eq(calls, 0, "a callback ran inside the call");
    while (calls < 2)
        uv_run(&f.loop, UV_RUN_ONCE);
    fstore_close(&f);
}

Test(store, bad_urls_name_the_problem)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    static const char *const urls[] = {"ftp://x", "file://", "s3://ab", "s3://bucket/pre fix"};
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        struct wal_store *s = NULL;
        char err[256] = "";
        struct wal_store_config c = {.url = urls[i], .access_key = "k", .secret_key = "s"};
        cr_assert_eq(wal_store_open(&s, &c, &loop, err, sizeof(err)), -EINVAL, "%s accepted", urls[i]);
        cr_assert(strstr(err, urls[i]) != NULL || strstr(err, "bucket") != NULL, "%s: %s", urls[i], err);
    }
    struct wal_store *s = NULL;
    char err[256];
    unsetenv("AWS_ACCESS_KEY_ID");
    struct wal_store_config c = {.url = "s3://bucket/p"};
    cr_assert_eq(wal_store_open(&s, &c, &loop, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "AWS_ACCESS_KEY_ID") != NULL, "%s", err);
    uv_loop_close(&loop);
}
