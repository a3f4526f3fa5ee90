/*
 * forward.c: a forwarded request and its reply, and the traffic of a
 * proxied WebSocket: the payload of a peer APP frame (replicate/wire.c). All
 * integers little-endian:
 *
 *        0  1  kind: 1 request, 2 reply, 3 WebSocket open (a request),
 *              4 WebSocket message, 5 WebSocket close, 6 wake (class and
 *              name only: lead the object, runtime/cluster.c)
 *        1  3  reserved (0)
 *        4  4  the origin's shard, where the client's request waits
 *        8  8  the origin's request id
 *       16  4  reply: HTTP status; message: its kind (DOBJ_WS_TEXT or
 *              DOBJ_WS_BINARY); close: its code
 *       20  4  reply: the id of the host that served it
 *       24  8  a socket id: in an open, the origin's socket; in its reply
 *              (101), the leader's; in a message or close, the receiver's
 *       32     seven fields, each a length (4) and its bytes: class, name,
 *              method, path (after the name), query, headers ("name\0value\0"
 *              pairs), body. Replies, messages and closes send only headers
 *              and body (a message's data, a close's reason).
 *
 * The decoder checks every length against the payload and that the headers
 * are whole pairs; nothing it hands out points outside the payload.
 */
#include <string.h>

#include "router.h"

#define FWD_HEAD 32
#define FWD_FIELDS 7

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static const struct router_str *field(const struct router_fwd *f, unsigned i)
{
    const struct router_str *all[FWD_FIELDS] = {&f->cls, &f->name, &f->method, &f->path,
                                                &f->query, &f->headers, &f->body};
    return all[i];
}

size_t router_fwd_size(const struct router_fwd *f)
{
    size_t n = FWD_HEAD;
    for (unsigned i = 0; i < FWD_FIELDS; i++)
        n += 4 + field(f, i)->len;
    return n;
}

void router_fwd_encode(const struct router_fwd *f, uint8_t *out)
{
    memset(out, 0, FWD_HEAD);
    out[0] = f->kind;
    put32(out + 4, f->shard);
    put32(out + 8, (uint32_t)f->id);
    put32(out + 12, (uint32_t)(f->id >> 32));
    put32(out + 16, f->status);
    put32(out + 20, f->served_by);
    put32(out + 24, (uint32_t)f->ws);
    put32(out + 28, (uint32_t)(f->ws >> 32));
    uint8_t *p = out + FWD_HEAD;
    for (unsigned i = 0; i < FWD_FIELDS; i++) {
        const struct router_str *s = field(f, i);
        put32(p, s->len);
        if (s->len > 0)
            memcpy(p + 4, s->p, s->len);
        p += 4 + s->len;
    }
}

/* Whole "name\0value\0" pairs, names not empty. */
static bool headers_ok(const struct router_str *h)
{
    size_t off = 0;
    while (off < h->len) {
        const char *name = h->p + off;
        const char *nul = memchr(name, '\0', h->len - off);
        if (nul == NULL || nul == name)
            return false;
        off = (size_t)(nul - h->p) + 1;
        nul = memchr(h->p + off, '\0', h->len - off);
        if (nul == NULL)
            return false;
        off = (size_t)(nul - h->p) + 1;
    }
    return true;
}

int router_fwd_decode(struct router_fwd *f, const uint8_t *p, size_t len)
{
    memset(f, 0, sizeof(*f));
    if (len < FWD_HEAD || p[0] < ROUTER_FWD_REQUEST || p[0] > ROUTER_FWD_WAKE || p[1] != 0 || p[2] != 0 ||
        p[3] != 0)
        return -1;
    f->kind = p[0];
    f->shard = get32(p + 4);
    f->id = (uint64_t)get32(p + 8) | (uint64_t)get32(p + 12) << 32;
    f->status = get32(p + 16);
    f->served_by = get32(p + 20);
    f->ws = (uint64_t)get32(p + 24) | (uint64_t)get32(p + 28) << 32;
    size_t off = FWD_HEAD;
    struct router_str *all[FWD_FIELDS] = {&f->cls, &f->name, &f->method, &f->path,
                                          &f->query, &f->headers, &f->body};
    for (unsigned i = 0; i < FWD_FIELDS; i++) {
        if (len - off < 4)
            return -1;
        uint32_t n = get32(p + off);
        off += 4;
        if (n > len - off)
            return -1;
        all[i]->p = (const char *)p + off;
        all[i]->len = n;
        off += n;
    }
    if (off != len || !headers_ok(&f->headers))
        return -1;
    bool request = f->kind == ROUTER_FWD_REQUEST || f->kind == ROUTER_FWD_WS_OPEN;
    if (request && (f->cls.len == 0 || f->method.len == 0))
        return -1;
    if (f->kind == ROUTER_FWD_WAKE)
        return f->cls.len == 0 || f->method.len + f->path.len + f->query.len + f->headers.len + f->body.len != 0
                   ? -1
                   : 0;
    if (!request && f->cls.len + f->name.len + f->method.len + f->path.len + f->query.len != 0)
        return -1;
    if (f->kind == ROUTER_FWD_WS_CLOSE && (f->status < 1000 || f->status > 4999))
        return -1;
    if (f->kind == ROUTER_FWD_REPLY && (f->status < 100 || f->status > 999))
        return -1;
    return 0;
}
