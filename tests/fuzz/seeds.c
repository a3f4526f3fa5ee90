/*
 * seeds.c: writes the fuzz targets' seed corpora (tests/fuzz/corpus/), valid
 * inputs made by the real encoders, so the fuzzers start past the magic
 * numbers and checksums. `make fuzz-seeds` runs it; the output is committed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zstd.h>

#include "replicate.h"
#include "router.h"
#include "sdk_util.h"
#include "wal.h"

static void put(const char *dir, const char *name, const void *p, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(p, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "seeds: can not write %s\n", path);
        exit(1);
    }
}

/* With the selector byte the peer target reads first. */
static void put_sel(const char *dir, const char *name, uint8_t sel, const void *p, size_t len)
{
    uint8_t *b = sdk_xmalloc(len + 1);
    b[0] = sel;
    memcpy(b + 1, p, len);
    put(dir, name, b, len + 1);
    free(b);
}

static uint8_t *record(uint64_t lsn, uint32_t npages, size_t *len)
{
    static uint8_t pages[3][4096];
    struct wal_page pv[3];
    for (uint32_t i = 0; i < npages; i++) {
        memset(pages[i], 0, sizeof(pages[i]));
        snprintf((char *)pages[i] + 100, 64, "row %u of record %llu", i, (unsigned long long)lsn);
        pv[i] = (struct wal_page){.pgno = i + 1, .data = pages[i]};
    }
    struct wal_record r = {.epoch = 1, .lsn = lsn, .commit_us = 1700000000000000ll + (int64_t)lsn,
                           .db_pages = npages, .page_size = 4096, .npages = npages, .pages = pv};
    memset(r.object_id, 0x5a, sizeof(r.object_id));
    *len = wal_record_size(npages, 4096);
    uint8_t *buf = sdk_xmalloc(*len);
    wal_record_encode(&r, buf);
    return buf;
}

int main(int argc, char **argv)
{
    const char *root = argc > 1 ? argv[1] : "tests/fuzz/corpus";
    char dir[4][512];
    const char *names[4] = {"record", "segment", "peer", "name"};
    mkdir(root, 0755);
    for (int i = 0; i < 4; i++) {
        snprintf(dir[i], sizeof(dir[i]), "%s/%s", root, names[i]);
        if (mkdir(dir[i], 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "seeds: can not create %s\n", dir[i]);
            return 1;
        }
    }
    /* records: encoded and packed */
    size_t len;
    uint8_t *rec = record(7, 2, &len);
    put(dir[0], "encoded", rec, len);
    size_t cap = wal_record_pack_bound(len);
    uint8_t *packed = sdk_xmalloc(cap);
    size_t plen = wal_record_pack(rec, len, packed, cap);
    put(dir[0], "packed", packed, plen);
    /* a segment of three records, one added packed */
    struct wal_seg_builder b = {0};
    ZSTD_CCtx *zc = ZSTD_createCCtx();
    for (uint64_t lsn = 1; lsn <= 3; lsn++) {
        size_t l;
        uint8_t *r = record(lsn, (uint32_t)lsn, &l);
        if (lsn == 2) {
            size_t c = wal_record_pack_bound(l);
            uint8_t *p = sdk_xmalloc(c);
            size_t pl = wal_record_pack(r, l, p, c);
            wal_seg_add_packed(&b, p, pl);
            free(p);
        } else {
            wal_seg_add(&b, zc, r, l);
        }
        free(r);
    }
    size_t slen;
    uint8_t *seg = wal_seg_finish(&b, &slen);
    put(dir[1], "three", seg, slen);
    free(seg);
    wal_seg_builder_free(&b);
    ZSTD_freeCCtx(zc);
    /* peer: a frame header, an APPEND with a record, a forwarded request and
     * reply, a replica journal entry */
    uint8_t hdr[REPL_FRAME_HEADER_BYTES + 4] = {0};
    repl_frame_header(hdr, REPL_FRAME_HEARTBEAT, NULL, 0);
    put_sel(dir[2], "frame", 0, hdr, REPL_FRAME_HEADER_BYTES);
    struct repl_rec *x = repl_rec_create(7, (struct repl_epoch){.n = 3, .host = 1}, packed, (uint32_t)plen);
    struct repl_rec *recs[1] = {x};
    struct repl_msg m = {.type = REPL_MSG_APPEND, .from = 1, .to = 2, .epoch = {.n = 3, .host = 1}, .lsn = 7,
                         .origin = {.n = 3, .host = 1}, .commit_lsn = 6, .nrecs = 1, .recs = recs,
                         .name = "counter/alice", .name_len = 13};
    memset(m.object, 0x5a, sizeof(m.object));
    size_t mlen = repl_msg_size(&m);
    uint8_t *mb = sdk_xmalloc(mlen);
    repl_msg_encode(&m, mb);
    put_sel(dir[2], "append", 1, mb, mlen);
    free(mb);
    static const char hs[] = "x-test\0hi\0content-type\0text/plain";
    struct router_fwd fr = {.kind = ROUTER_FWD_REQUEST, .shard = 1, .id = 42, .cls = {"probe", 5},
                            .name = {"h\xc3\xa9llo", 6}, .method = {"POST", 4}, .path = {"/echo/a", 7},
                            .query = {"a=1", 3}, .headers = {hs, sizeof(hs)}, .body = {"body", 4}};
    uint8_t *fb = sdk_xmalloc(router_fwd_size(&fr));
    router_fwd_encode(&fr, fb);
    put_sel(dir[2], "forward", 2, fb, router_fwd_size(&fr));
    free(fb);
    struct router_fwd fc = {.kind = ROUTER_FWD_WS_CLOSE, .status = 1012, .ws = 5, .id = 6, .body = {"reconnect", 9}};
    fb = sdk_xmalloc(router_fwd_size(&fc));
    router_fwd_encode(&fc, fb);
    put_sel(dir[2], "ws-close", 2, fb, router_fwd_size(&fc));
    free(fb);
    struct repl_op op = {.type = REPL_OP_APPEND, .seq = 9, .lsn = 7, .nrecs = 1, .recs = recs};
    size_t olen = repl_op_size(&op, 13);
    uint8_t *ob = sdk_xmalloc(olen);
    repl_op_encode(&op, m.object, "counter/alice", 13, ob);
    put_sel(dir[2], "op", 3, ob, olen);
    free(ob);
    repl_rec_unref(x);
    /* names */
    static const char *const nm[] = {"alice", "h%C3%A9llo%2Fx", "%F0%9F%98%80", "a+b", "%25percent", "%zz", ""};
    for (size_t i = 0; i < sizeof(nm) / sizeof(nm[0]); i++) {
        char n[16];
        snprintf(n, sizeof(n), "n%zu", i);
        put(dir[3], n, nm[i], strlen(nm[i]));
    }
    free(packed);
    free(rec);
    printf("seeds: written under %s\n", root);
    return 0;
}
