/*
 * The peer protocol's bytes (replicate/wire.c) and the transport
 * (replicate/peer.c): round trips, every cut and flipped byte refused, the
 * handshake's proofs, and three real transports on loopback, one of them
 * with the wrong secret, and a stranger sending garbage.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "replicate.h"
#include "sdk_util.h"

static struct repl_msg sample(struct repl_rec **recs, uint32_t n)
{
    struct repl_msg m = {.type = REPL_MSG_APPEND, .ok = true, .from = 3, .to = 5, .epoch = {7, 3}, .lsn = 41,
                         .origin = {6, 2}, .base_lsn = 40, .base_origin = {6, 2}, .commit_lsn = 39, .round = 77,
                         .nrecs = n, .recs = recs};
    memcpy(m.object, "0123456789abcdef", 16);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t data[100];
        for (size_t k = 0; k < sizeof(data); k++)
            data[k] = (uint8_t)(i * 31 + k);
        recs[i] = repl_rec_create(42 + i, (struct repl_epoch){7, 3}, data, 10 + i * 30);
    }
    return m;
}

static void unref_all(struct repl_rec **recs, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        repl_rec_unref(recs[i]);
}

Test(wire, message_round_trip)
{
    struct repl_rec *recs[3];
    struct repl_msg m = sample(recs, 3);
    size_t len = repl_msg_size(&m);
    uint8_t *buf = sdk_xmalloc(len);
    repl_msg_encode(&m, buf);
    struct repl_msg d;
    cr_assert_eq(repl_msg_decode(&d, buf, len), 0);
    cr_assert_eq(d.type, m.type);
    cr_assert(d.ok);
    cr_assert_eq(d.from, 3);
    cr_assert_eq(d.to, 5);
    cr_assert_eq(memcmp(d.object, m.object, 16), 0);
    cr_assert(repl_epoch_cmp(d.epoch, m.epoch) == 0 && repl_epoch_cmp(d.origin, m.origin) == 0);
    cr_assert(d.lsn == 41 && d.base_lsn == 40 && d.commit_lsn == 39 && d.round == 77 && d.nrecs == 3);
    for (uint32_t i = 0; i < 3; i++) {
        cr_assert_eq(d.recs[i]->lsn, recs[i]->lsn);
        cr_assert_eq(d.recs[i]->len, recs[i]->len);
        cr_assert_eq(memcmp(d.recs[i]->data, recs[i]->data, recs[i]->len), 0);
    }
    repl_msg_release(&d);
    free(buf);
    unref_all(recs, 3);
}

Test(wire, every_cut_and_extension_refused)
{
    struct repl_rec *recs[2];
    struct repl_msg m = sample(recs, 2);
    size_t len = repl_msg_size(&m);
    uint8_t *buf = sdk_xmalloc(len + 1);
    repl_msg_encode(&m, buf);
    struct repl_msg d;
    for (size_t cut = 0; cut < len; cut++)
        cr_assert_neq(repl_msg_decode(&d, buf, cut), 0, "cut at %zu accepted", cut);
    buf[len] = 0;
    cr_assert_neq(repl_msg_decode(&d, buf, len + 1), 0);
    /* a record count or length that lies */
    uint8_t save = buf[96];
    buf[96] = 200;
    cr_assert_neq(repl_msg_decode(&d, buf, len), 0);
    buf[96] = save;
    buf[100 + 20] = 0xff;
    cr_assert_neq(repl_msg_decode(&d, buf, len), 0);
    free(buf);
    unref_all(recs, 2);
}

Test(wire, frame_checksum_catches_every_flipped_byte)
{
    uint8_t payload[40];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)i;
    uint8_t hdr[REPL_FRAME_HEADER_BYTES];
    repl_frame_header(hdr, REPL_FRAME_MSG, payload, sizeof(payload));
    uint8_t type;
    uint32_t len;
    cr_assert_eq(repl_frame_parse(hdr, &type, &len), 0);
    cr_assert(type == REPL_FRAME_MSG && len == sizeof(payload));
    cr_assert_eq(repl_frame_verify(hdr, payload, len), 0);
    for (size_t i = 0; i < sizeof(payload); i++) {
        payload[i] ^= 0x10;
        cr_assert_eq(repl_frame_verify(hdr, payload, len), REPL_WIRE_ECHECKSUM);
        payload[i] ^= 0x10;
    }
    for (size_t i = 0; i < REPL_FRAME_HEADER_BYTES; i++) {
        hdr[i] ^= 0x01;
        int rv = repl_frame_parse(hdr, &type, &len);
        if (rv == 0)
            rv = repl_frame_verify(hdr, payload, len <= sizeof(payload) ? len : 0);
        cr_assert_neq(rv, 0, "flipped header byte %zu accepted", i);
        hdr[i] ^= 0x01;
    }
    uint8_t version = hdr[4];
    hdr[4] = version + 1; /* a newer peer's frame */
    cr_assert_eq(repl_frame_parse(hdr, &type, &len), REPL_WIRE_EVERSION);
    hdr[4] = version - 1; /* an older one's */
    cr_assert_eq(repl_frame_parse(hdr, &type, &len), REPL_WIRE_EVERSION);
    hdr[4] = version;
    uint8_t big[REPL_FRAME_HEADER_BYTES];
    repl_frame_header(big, REPL_FRAME_MSG, NULL, 0);
    big[11] = 0x7f; /* 2 GB */
    cr_assert_eq(repl_frame_parse(big, &type, &len), REPL_WIRE_ETOOBIG);
}

Test(wire, proofs_depend_on_secret_role_and_nonces)
{
    uint8_t cn[REPL_AUTH_NONCE_BYTES] = {1}, sn[REPL_AUTH_NONCE_BYTES] = {2};
    uint8_t a[REPL_AUTH_MAC_BYTES], b[REPL_AUTH_MAC_BYTES];
    repl_auth_mac(a, "s3cret", 'S', 1, 2, cn, sn);
    repl_auth_mac(b, "s3cret", 'S', 1, 2, cn, sn);
    cr_assert(repl_auth_equal(a, b));
    repl_auth_mac(b, "s3cret", 'C', 1, 2, cn, sn);
    cr_assert_not(repl_auth_equal(a, b));
    repl_auth_mac(b, "s3creT", 'S', 1, 2, cn, sn);
    cr_assert_not(repl_auth_equal(a, b));
    repl_auth_mac(b, "s3cret", 'S', 2, 1, cn, sn);
    cr_assert_not(repl_auth_equal(a, b));
    sn[5] = 9;
    repl_auth_mac(b, "s3cret", 'S', 1, 2, cn, sn);
    cr_assert_not(repl_auth_equal(a, b));
}

/* ---- the transport on loopback ------------------------------------------ */

#define N 3

struct inbox {
    pthread_mutex_t mu;
    unsigned count[N + 1]; /* by sender */
    uint64_t last_lsn[N + 1];
    bool in_order;
};

static struct inbox boxes[N + 1];

static void on_recv(void *arg, struct repl_msg *m)
{
    struct inbox *b = arg;
    pthread_mutex_lock(&b->mu);
    if (m->from <= N) {
        if (m->lsn != b->last_lsn[m->from] + 1)
            b->in_order = false;
        b->last_lsn[m->from] = m->lsn;
        b->count[m->from]++;
    }
    pthread_mutex_unlock(&b->mu);
    repl_msg_release(m);
}

static unsigned received(unsigned at, unsigned from)
{
    pthread_mutex_lock(&boxes[at].mu);
    unsigned n = boxes[at].count[from];
    pthread_mutex_unlock(&boxes[at].mu);
    return n;
}

static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    socklen_t l = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &l);
    close(fd);
    return ntohs(a.sin_port);
}

static struct repl_peers *start(unsigned self, const struct repl_peer_addr *hosts, const char *secret)
{
    pthread_mutex_init(&boxes[self].mu, NULL);
    boxes[self].in_order = true;
    struct repl_peers_config c = {.self = self, .hosts = hosts, .nhosts = N, .secret = secret,
                                  .heartbeat_ms = 50, .dead_ms = 500, .queue_bytes_max = 1 << 20,
                                  .tick_ms = 10, .recv = on_recv, .arg = &boxes[self]};
    struct repl_peers *p;
    char err[256];
    cr_assert_eq(repl_peers_start(&p, &c, err, sizeof(err)), 0, "%s", err);
    return p;
}

static void send_n(struct repl_peers *p, unsigned from, unsigned to, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        struct repl_rec *r = repl_rec_create(i + 1, (struct repl_epoch){1, from}, "abcdefgh", 8);
        struct repl_msg m = {.type = REPL_MSG_APPEND, .from = from, .to = to, .lsn = i + 1, .nrecs = 1, .recs = &r};
        repl_peers_send(p, &m);
        repl_rec_unref(r);
    }
}

static bool wait_for(unsigned at, unsigned from, unsigned n, int ms)
{
    for (int t = 0; t < ms; t += 10) {
        if (received(at, from) >= n)
            return true;
        usleep(10000);
    }
    return received(at, from) >= n;
}

Test(peers, messages_flow_in_order_and_strangers_are_dropped)
{
    struct repl_peer_addr hosts[N];
    for (unsigned i = 0; i < N; i++) {
        hosts[i].id = i + 1;
        strcpy(hosts[i].host, "127.0.0.1");
        hosts[i].port = free_port();
    }
    struct repl_peers *p1 = start(1, hosts, "the-secret");
    struct repl_peers *p2 = start(2, hosts, "the-secret");
    struct repl_peers *p3 = start(3, hosts, "not-the-secret");

    /* Sent before the connection is up: they wait in the queue. */
    send_n(p1, 1, 2, 5000);
    send_n(p2, 2, 1, 100);
    send_n(p1, 1, 1, 10); /* to itself */
    cr_assert(wait_for(2, 1, 5000, 5000), "host 2 got %u of 5000", received(2, 1));
    cr_assert(wait_for(1, 2, 100, 5000));
    cr_assert(wait_for(1, 1, 10, 5000));
    cr_assert(boxes[2].in_order && boxes[1].in_order);

    /* Host 3 has the wrong secret: nothing flows either way. */
    send_n(p1, 1, 3, 10);
    send_n(p3, 3, 1, 10);
    usleep(400000);
    cr_assert_eq(received(3, 1), 0);
    cr_assert_eq(received(1, 3), 0);
    struct repl_peers_stats s1;
    repl_peers_stats(p1, &s1);
    cr_assert_gt(s1.auth_failures, 0);
    cr_assert(repl_peers_connected(p1, 2));
    cr_assert_not(repl_peers_connected(p1, 3));

    /* A stranger sends garbage, then a well-formed frame that claims a host
     * id outside the cluster: dropped, and the host goes on working. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(hosts[0].port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(write(fd, "GET / HTTP/1.1\r\n\r\nxxxxxxxxxxxxxxxxxxxx", 38), 38);
    char buf[16];
    cr_assert_leq(read(fd, buf, sizeof(buf)), 0, "the host answered garbage instead of closing");
    close(fd);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    uint8_t hello[REPL_FRAME_HEADER_BYTES + 36] = {0};
    hello[REPL_FRAME_HEADER_BYTES] = 99; /* host 99 */
    repl_frame_header(hello, REPL_FRAME_HELLO, hello + REPL_FRAME_HEADER_BYTES, 36);
    cr_assert_eq(write(fd, hello, sizeof(hello)), (ssize_t)sizeof(hello));
    cr_assert_leq(read(fd, buf, sizeof(buf)), 0);
    close(fd);
    send_n(p2, 2, 1, 100);
    cr_assert(wait_for(1, 2, 200, 5000));

    /* Host 2 restarts: host 1 dials it again and messages flow. */
    repl_peers_destroy(p2);
    boxes[2].count[1] = 0;
    boxes[2].last_lsn[1] = 0;
    p2 = start(2, hosts, "the-secret");
    for (int t = 0; t < 300 && !repl_peers_connected(p1, 2); t++)
        usleep(10000);
    cr_assert(repl_peers_connected(p1, 2), "host 1 did not reconnect to host 2");
    send_n(p1, 1, 2, 50);
    cr_assert(wait_for(2, 1, 50, 5000));

    repl_peers_destroy(p1);
    repl_peers_destroy(p2);
    repl_peers_destroy(p3);
}
