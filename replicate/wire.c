/*
 * wire.c: the peer protocol's bytes. All integers little-endian.
 *
 * A connection carries frames:
 *
 *   frame header, 24 bytes:
 *        0  4  magic "DPF1" (0x31465044)
 *        4  1  version (2)
 *        5  1  frame type (enum repl_frame_type)
 *        6  2  reserved (0)
 *        8  4  payload length P (at most REPL_FRAME_PAYLOAD_MAX)
 *       12  4  reserved (0)
 *       16  8  XXH3-64 of bytes [0, 16) and the P payload bytes
 *   then P payload bytes.
 *
 * A connection opens with a handshake that proves both ends know the cluster
 * secret without sending it:
 *
 *   client → HELLO      payload: host id (4), nonce (32)
 *   server → CHALLENGE  payload: host id (4), nonce (32),
 *                       HMAC-SHA256(secret, "dobj-peer-1" 'S' ids nonces) (32)
 *   client → AUTH       payload: HMAC-SHA256(secret, "dobj-peer-1" 'C' ids nonces) (32)
 *
 * then MSG frames (one protocol message each; many go out in one write),
 * APP frames (a payload the transport's user defines: the router's forwarded
 * requests and replies) and HEARTBEAT frames (empty) both ways.
 *
 *   MSG payload:
 *        0  1  message type (enum repl_msg_type)
 *        1  1  ok (0 or 1)
 *        2  2  length M of the object's name (class/name; 0: not sent)
 *        4  4  from host
 *        8  4  to host
 *       12 16  object id
 *       28 12  epoch (counter 8, host 4)
 *       40  8  lsn
 *       48 12  origin
 *       60  8  base lsn
 *       68 12  base origin
 *       80  8  commit lsn
 *       88  8  read round
 *       96  4  number of records N
 *      100  M  the object's name
 *    100+M     N records, each: lsn (8), origin (12), length L (4), L bytes
 *
 * A replica's journal entry (one repl_op; its length sits where a wal/
 * record's does, so the journal reads both alike):
 *        0  4  magic "DRO1" (0x314f5244)
 *        4  4  length of the whole entry
 *        8 16  object id
 *       24  8  op sequence number
 *       32 12  epoch
 *       44  8  lsn
 *       56 12  origin
 *       68  1  op type (enum repl_op_type)
 *       69  1  reset (0 or 1)
 *       70  2  length M of the object's name
 *       72  4  number of records N
 *       76  M  the object's name
 *     76+M     N records as in MSG
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include "replicate.h"
#include "sdk_util.h"
#include "wal.h"

#define FRAME_MAGIC 0x31465044u
#define FRAME_VERSION 2 /* 2: APP frames */
#define MSG_HEAD 100
#define REC_HEAD 24
#define OP_MAGIC 0x314f5244u
#define OP_HEAD 76

_Static_assert(REPL_FRAME_HEADER_BYTES == 16 + 8, "frame header: fields, then an XXH3-64");
_Static_assert(MSG_HEAD == 96 + 4, "message head: fields, then the record count");
_Static_assert(REC_HEAD == 8 + 12 + 4, "record head: lsn, origin, length");
_Static_assert(OP_HEAD == 72 + 4 && OP_HEAD >= 64, "op head: fields, record count; a wal/ record header's size");
_Static_assert(WAL_RECORD_BYTES_MAX + MSG_HEAD + REC_HEAD <= REPL_FRAME_PAYLOAD_MAX, "a largest record fits a frame");
_Static_assert(REPL_AUTH_NONCE_BYTES == 32 && REPL_AUTH_MAC_BYTES == 32, "HMAC-SHA256 sized handshake");

static uint64_t frame_hash(const uint8_t *hdr, const uint8_t *payload, uint32_t len)
{
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, hdr, 16);
    if (len > 0)
        XXH3_64bits_update(&st, payload, len);
    return XXH3_64bits_digest(&st);
}

void repl_frame_header(uint8_t out[REPL_FRAME_HEADER_BYTES], uint8_t type, const uint8_t *payload, uint32_t len)
{
    memset(out, 0, REPL_FRAME_HEADER_BYTES);
    wal_put_u32(out, FRAME_MAGIC);
    out[4] = FRAME_VERSION;
    out[5] = type;
    wal_put_u32(out + 8, len);
    wal_put_u64(out + 16, frame_hash(out, payload, len));
}

int repl_frame_parse(const uint8_t hdr[REPL_FRAME_HEADER_BYTES], uint8_t *type, uint32_t *len)
{
    if (wal_get_u32(hdr) != FRAME_MAGIC)
        return REPL_WIRE_EMAGIC;
    if (hdr[4] != FRAME_VERSION)
        return REPL_WIRE_EVERSION;
    if (hdr[5] < REPL_FRAME_HELLO || hdr[5] > REPL_FRAME_APP || hdr[6] != 0 || hdr[7] != 0)
        return REPL_WIRE_EMALFORMED;
    uint32_t n = wal_get_u32(hdr + 8);
    if (n > REPL_FRAME_PAYLOAD_MAX)
        return REPL_WIRE_ETOOBIG;
    *type = hdr[5];
    *len = n;
    return 0;
}

int repl_frame_verify(const uint8_t hdr[REPL_FRAME_HEADER_BYTES], const uint8_t *payload, uint32_t len)
{
    return frame_hash(hdr, payload, len) == wal_get_u64(hdr + 16) ? 0 : REPL_WIRE_ECHECKSUM;
}

const char *repl_wire_strerror(int rc)
{
    switch (rc) {
    case REPL_WIRE_EMAGIC:
        return "not a dobj peer (bad magic)";
    case REPL_WIRE_EVERSION:
        return "unsupported peer protocol version";
    case REPL_WIRE_EMALFORMED:
        return "malformed frame";
    case REPL_WIRE_ETOOBIG:
        return "frame larger than the limit";
    case REPL_WIRE_ECHECKSUM:
        return "frame checksum mismatch";
    default:
        return "ok";
    }
}

/* ---- messages ---------------------------------------------------------- */

static void put_epoch(uint8_t *p, struct repl_epoch e)
{
    wal_put_u64(p, e.n);
    wal_put_u32(p + 8, e.host);
}

static struct repl_epoch get_epoch(const uint8_t *p) { return (struct repl_epoch){wal_get_u64(p), wal_get_u32(p + 8)}; }

static size_t recs_size(struct repl_rec *const *recs, uint32_t n)
{
    size_t len = 0;
    for (uint32_t i = 0; i < n; i++)
        len += REC_HEAD + recs[i]->len;
    return len;
}

static uint8_t *recs_encode(struct repl_rec *const *recs, uint32_t n, uint8_t *p)
{
    for (uint32_t i = 0; i < n; i++) {
        const struct repl_rec *r = recs[i];
        wal_put_u64(p, r->lsn);
        put_epoch(p + 8, r->origin);
        wal_put_u32(p + 20, r->len);
        memcpy(p + REC_HEAD, r->data, r->len);
        p += REC_HEAD + r->len;
    }
    return p;
}

/* Checks that p[off, len) holds exactly n records. */
static bool recs_valid(const uint8_t *p, size_t off, size_t len, uint32_t n)
{
    if (n > (len - off) / REC_HEAD)
        return false;
    for (uint32_t i = 0; i < n; i++) {
        if (len - off < REC_HEAD)
            return false;
        uint32_t rl = wal_get_u32(p + off + 20);
        if (rl > WAL_RECORD_BYTES_MAX || len - off - REC_HEAD < rl)
            return false;
        off += REC_HEAD + rl;
    }
    return off == len;
}

static struct repl_rec **recs_decode(const uint8_t *p, size_t off, uint32_t n)
{
    if (n == 0)
        return NULL;
    struct repl_rec **recs = sdk_xmalloc(n * sizeof(*recs));
    for (uint32_t i = 0; i < n; i++) {
        uint32_t rl = wal_get_u32(p + off + 20);
        recs[i] = repl_rec_create(wal_get_u64(p + off), get_epoch(p + off + 8), p + off + REC_HEAD, rl);
        off += REC_HEAD + rl;
    }
    return recs;
}

size_t repl_msg_size(const struct repl_msg *m) { return MSG_HEAD + m->name_len + recs_size(m->recs, m->nrecs); }

void repl_msg_encode(const struct repl_msg *m, uint8_t *out)
{
    memset(out, 0, MSG_HEAD);
    out[0] = m->type;
    out[1] = m->ok ? 1 : 0;
    out[2] = (uint8_t)m->name_len;
    out[3] = (uint8_t)(m->name_len >> 8);
    wal_put_u32(out + 4, m->from);
    wal_put_u32(out + 8, m->to);
    memcpy(out + 12, m->object, 16);
    put_epoch(out + 28, m->epoch);
    wal_put_u64(out + 40, m->lsn);
    put_epoch(out + 48, m->origin);
    wal_put_u64(out + 60, m->base_lsn);
    put_epoch(out + 68, m->base_origin);
    wal_put_u64(out + 80, m->commit_lsn);
    wal_put_u64(out + 88, m->round);
    wal_put_u32(out + 96, m->nrecs);
    if (m->name_len > 0)
        memcpy(out + MSG_HEAD, m->name, m->name_len);
    recs_encode(m->recs, m->nrecs, out + MSG_HEAD + m->name_len);
}

int repl_msg_decode(struct repl_msg *out, const uint8_t *p, size_t len)
{
    if (len < MSG_HEAD || p[0] < REPL_MSG_PREPARE || p[0] > REPL_MSG_TYPE_MAX || p[1] > 1)
        return REPL_WIRE_EMALFORMED;
    uint32_t nrecs = wal_get_u32(p + 96);
    size_t name_len = (size_t)p[2] | (size_t)p[3] << 8;
    if (name_len > REPL_NAME_MAX || len - MSG_HEAD < name_len || !recs_valid(p, MSG_HEAD + name_len, len, nrecs))
        return REPL_WIRE_EMALFORMED;
    struct repl_msg m = {
        .type = p[0],
        .ok = p[1] == 1,
        .from = wal_get_u32(p + 4),
        .to = wal_get_u32(p + 8),
        .epoch = get_epoch(p + 28),
        .lsn = wal_get_u64(p + 40),
        .origin = get_epoch(p + 48),
        .base_lsn = wal_get_u64(p + 60),
        .base_origin = get_epoch(p + 68),
        .commit_lsn = wal_get_u64(p + 80),
        .round = wal_get_u64(p + 88),
        .nrecs = nrecs,
    };
    memcpy(m.object, p + 12, 16);
    if (name_len > 0) {
        char *name = sdk_xmalloc(name_len + 1);
        memcpy(name, p + MSG_HEAD, name_len);
        name[name_len] = '\0';
        m.name = name;
        m.name_len = (uint16_t)name_len;
    }
    m.recs = recs_decode(p, MSG_HEAD + name_len, nrecs);
    *out = m;
    return 0;
}

void repl_msg_release(struct repl_msg *m)
{
    for (uint32_t i = 0; i < m->nrecs; i++)
        repl_rec_unref(m->recs[i]);
    free(m->recs);
    free((char *)m->name);
    m->recs = NULL;
    m->nrecs = 0;
    m->name = NULL;
    m->name_len = 0;
}

/* ---- a replica's journal entries --------------------------------------- */

size_t repl_op_size(const struct repl_op *op, size_t name_len)
{
    return OP_HEAD + name_len + recs_size(op->recs, op->nrecs);
}

void repl_op_encode(const struct repl_op *op, const uint8_t id[16], const char *name, size_t name_len, uint8_t *out)
{
    memset(out, 0, OP_HEAD);
    wal_put_u32(out, OP_MAGIC);
    wal_put_u32(out + 4, (uint32_t)repl_op_size(op, name_len));
    memcpy(out + 8, id, 16);
    wal_put_u64(out + 24, op->seq);
    put_epoch(out + 32, op->epoch);
    wal_put_u64(out + 44, op->lsn);
    put_epoch(out + 56, op->origin);
    out[68] = op->type;
    out[69] = op->reset ? 1 : 0;
    out[70] = (uint8_t)name_len;
    out[71] = (uint8_t)(name_len >> 8);
    wal_put_u32(out + 72, op->nrecs);
    if (name_len > 0)
        memcpy(out + OP_HEAD, name, name_len);
    recs_encode(op->recs, op->nrecs, out + OP_HEAD + name_len);
}

bool repl_op_is(const uint8_t *p, size_t len) { return len >= OP_HEAD && wal_get_u32(p) == OP_MAGIC; }

int repl_op_decode(struct repl_op *out, uint8_t id[16], char **name, const uint8_t *p, size_t len)
{
    if (!repl_op_is(p, len) || wal_get_u32(p + 4) != len || p[68] < REPL_OP_PROMISE || p[68] > REPL_OP_BASE ||
        p[69] > 1)
        return REPL_WIRE_EMALFORMED;
    size_t name_len = (size_t)p[70] | (size_t)p[71] << 8;
    uint32_t nrecs = wal_get_u32(p + 72);
    if (name_len > REPL_NAME_MAX || len - OP_HEAD < name_len || !recs_valid(p, OP_HEAD + name_len, len, nrecs))
        return REPL_WIRE_EMALFORMED;
    memcpy(id, p + 8, 16);
    *out = (struct repl_op){.type = p[68], .reset = p[69] == 1, .seq = wal_get_u64(p + 24),
                            .epoch = get_epoch(p + 32), .lsn = wal_get_u64(p + 44), .origin = get_epoch(p + 56),
                            .nrecs = nrecs, .recs = recs_decode(p, OP_HEAD + name_len, nrecs)};
    *name = NULL;
    if (name_len > 0) {
        *name = sdk_xmalloc(name_len + 1);
        memcpy(*name, p + OP_HEAD, name_len);
        (*name)[name_len] = '\0';
    }
    return 0;
}

void repl_op_release(struct repl_op *op)
{
    for (uint32_t i = 0; i < op->nrecs; i++)
        repl_rec_unref(op->recs[i]);
    free(op->recs);
    op->recs = NULL;
    op->nrecs = 0;
}

/* ---- the handshake ------------------------------------------------------ */

void repl_auth_mac(uint8_t out[REPL_AUTH_MAC_BYTES], const char *secret, char role, uint32_t client,
                   uint32_t server, const uint8_t cnonce[REPL_AUTH_NONCE_BYTES],
                   const uint8_t snonce[REPL_AUTH_NONCE_BYTES])
{
    static const char label[] = "dobj-peer-1";
    uint8_t msg[sizeof(label) - 1 + 1 + 8 + 2 * REPL_AUTH_NONCE_BYTES];
    uint8_t *p = msg;
    memcpy(p, label, sizeof(label) - 1);
    p += sizeof(label) - 1;
    *p++ = (uint8_t)role;
    wal_put_u32(p, client);
    wal_put_u32(p + 4, server);
    p += 8;
    memcpy(p, cnonce, REPL_AUTH_NONCE_BYTES);
    memcpy(p + REPL_AUTH_NONCE_BYTES, snonce, REPL_AUTH_NONCE_BYTES);
    unsigned len = REPL_AUTH_MAC_BYTES;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), msg, sizeof(msg), out, &len);
}

bool repl_auth_equal(const uint8_t a[REPL_AUTH_MAC_BYTES], const uint8_t b[REPL_AUTH_MAC_BYTES])
{
    return CRYPTO_memcmp(a, b, REPL_AUTH_MAC_BYTES) == 0;
}
