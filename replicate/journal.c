/*
 * journal.c: the host journal. Files, all integers little-endian:
 *
 *   DIR/<segment, 16 hex digits>.log
 *
 *   segment header, 32 bytes:
 *        0  4  magic "DJS1" (0x31534a44)
 *        4  4  segment number
 *        8  8  creation time, microseconds since the epoch
 *       16  8  reserved (0)
 *       24  8  XXH3-64 of bytes [0, 24)
 *
 *   then batches, each:
 *        0  4  magic "DJB1" (0x31424a44), or "DJR1" (0x31524a44) for a
 *              payload stored as it is (a journal of entries that are
 *              compressed already: the replica journal's)
 *        4  4  compressed payload length C
 *        8  4  uncompressed payload length U (= C for DJR1)
 *       12  4  number of records
 *       16  8  batch sequence number (grows across segments)
 *       24  8  XXH3-64 of bytes [0, 24) and the C payload bytes
 *       32  C  zstd frame of the records, concatenated (wal/record.c format),
 *              or (DJR1) the records themselves
 *
 * One batch is one write and one fdatasync: a batch is durable whole or, torn
 * at the end of the last segment after a crash, not at all (its checksum
 * fails), and none of its records were acknowledged.
 *
 * The thread: take everything queued (the submission queue is a lock-free
 * stack, reversed to submit order), compress, write + fdatasync linked on
 * io_uring and wait, hand the records back to their shards. While one batch
 * is on its way to disk the next one gathers: that is the group commit.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>
#include <zstd.h>

#include "journal_format.h"
#include "replicate.h"
#include "sdk_util.h"
#include "wal.h"

#define SEG_RING 65536u
#define ZSTD_LEVEL 1


struct repl_journal {
    struct repl_journal_config cfg;
    char *dir;
    pthread_t thread;
    int efd; /* wakes the thread */
    _Atomic(struct repl_entry *) queue;
    atomic_bool sleeping;
    atomic_bool stopping;

    int fd; /* current segment */
    int dir_fd;
    uint32_t segment;
    uint64_t seg_bytes;
    uint32_t oldest; /* oldest segment file still on disk */
    uint64_t batch_seq;
    _Atomic uint32_t current;
    atomic_int pins[SEG_RING];

    bool uring_ok;
    struct io_uring ring;
    ZSTD_CCtx *zc;
    uint8_t *raw, *out;
    size_t raw_cap, out_cap;

    _Atomic uint64_t n_records, n_batches, n_fsyncs, n_bytes_in, n_bytes_written;
};

/* ---- logging ----------------------------------------------------------- */

static void log_stderr(int level, const char *msg)
{
    static const char *const names[] = {"error", "warn", "info"};
    fprintf(stderr, "level=%s %s src=replicate\n", names[level < 0 || level > 2 ? 2 : level], msg);
}

static void (*log_fn)(int, const char *) = log_stderr;

void repl_set_logger(void (*fn)(int level, const char *msg)) { log_fn = fn != NULL ? fn : log_stderr; }

void repl_logf(int level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_fn(level, msg);
}

/* ---- files ------------------------------------------------------------- */

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int write_full(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Creates segment `seg`, writes and fsyncs its header and the directory. */
static int segment_create(struct repl_journal *j, uint32_t seg, char *err, size_t errlen)
{
    char path[4096];
    journal_segment_path(path, sizeof(path), j->dir, seg);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "journal: can not create %s: %s", path, strerror(errno));
        return -errno;
    }
    uint8_t h[JOURNAL_SEGMENT_HEADER_BYTES] = {0};
    wal_put_u32(h, JOURNAL_SEGMENT_MAGIC);
    wal_put_u32(h + 4, seg);
    wal_put_u64(h + 8, (uint64_t)now_us());
    wal_put_u64(h + 24, XXH3_64bits(h, 24));
    int rv = write_full(fd, h, sizeof(h));
    if (rv == 0 && fdatasync(fd) != 0)
        rv = -errno;
    if (rv == 0 && fsync(j->dir_fd) != 0)
        rv = -errno;
    if (rv != 0) {
        snprintf(err, errlen, "journal: can not write %s: %s", path, strerror(-rv));
        close(fd);
        return rv;
    }
    if (j->fd >= 0)
        close(j->fd);
    j->fd = fd;
    j->segment = seg;
    j->seg_bytes = JOURNAL_SEGMENT_HEADER_BYTES;
    atomic_store(&j->current, seg);
    return 0;
}

/* Deletes segments that no record pins any more, oldest first. */
static void segments_trim(struct repl_journal *j)
{
    while (j->oldest < j->segment && atomic_load(&j->pins[j->oldest % SEG_RING]) == 0) {
        char path[4096];
        journal_segment_path(path, sizeof(path), j->dir, j->oldest);
        if (unlink(path) != 0 && errno != ENOENT) {
            repl_logf(1, "msg=\"can not delete a journal segment\" file=%s err=\"%s\"", path, strerror(errno));
            return;
        }
        j->oldest++;
    }
}

/* ---- batches ----------------------------------------------------------- */

static void reserve(uint8_t **buf, size_t *cap, size_t need)
{
    if (*cap >= need)
        return;
    free(*buf);
    *cap = need > 2 * *cap ? need : 2 * *cap;
    *buf = sdk_xmalloc(*cap);
}

/* Takes the queue in submit order. */
static struct repl_entry *take_all(struct repl_journal *j)
{
    struct repl_entry *e = atomic_exchange(&j->queue, NULL), *fifo = NULL;
    while (e != NULL) {
        struct repl_entry *next = e->next;
        e->next = fifo;
        fifo = e;
        e = next;
    }
    return fifo;
}

/* Builds one batch from the head of `list`, at most JOURNAL_BATCH_BYTES_MAX of
 * records (but at least one); returns the rest. */
static struct repl_entry *batch_build(struct repl_journal *j, struct repl_entry *list, struct repl_entry **batch,
                                      size_t *out_len)
{
    size_t raw = 0;
    uint32_t n = 0;
    struct repl_entry *e = list, **tail = batch;
    while (e != NULL && (n == 0 || raw + e->len <= JOURNAL_BATCH_BYTES_MAX)) {
        raw += e->len;
        n++;
        *tail = e;
        tail = &e->next;
        e = e->next;
    }
    *tail = NULL;
    reserve(&j->raw, &j->raw_cap, raw);
    size_t off = 0;
    for (struct repl_entry *x = *batch; x != NULL; x = x->next) {
        memcpy(j->raw + off, x->data, x->len);
        off += x->len;
        x->segment = j->segment;
    }
    size_t c = raw;
    if (j->cfg.stored) {
        reserve(&j->out, &j->out_cap, JOURNAL_BATCH_HEADER_BYTES + raw);
        memcpy(j->out + JOURNAL_BATCH_HEADER_BYTES, j->raw, raw);
    } else {
        size_t bound = ZSTD_compressBound(raw);
        reserve(&j->out, &j->out_cap, JOURNAL_BATCH_HEADER_BYTES + bound);
        c = ZSTD_compressCCtx(j->zc, j->out + JOURNAL_BATCH_HEADER_BYTES, bound, j->raw, raw, ZSTD_LEVEL);
        if (ZSTD_isError(c)) {
            repl_logf(0, "msg=\"journal compression failed\" err=\"%s\"", ZSTD_getErrorName(c));
            abort();
        }
    }
    uint8_t *h = j->out;
    wal_put_u32(h, j->cfg.stored ? JOURNAL_BATCH_MAGIC_RAW : JOURNAL_BATCH_MAGIC);
    wal_put_u32(h + 4, (uint32_t)c);
    wal_put_u32(h + 8, (uint32_t)raw);
    wal_put_u32(h + 12, n);
    wal_put_u64(h + 16, ++j->batch_seq);
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, h, 24);
    XXH3_64bits_update(&st, h + JOURNAL_BATCH_HEADER_BYTES, c);
    wal_put_u64(h + 24, XXH3_64bits_digest(&st));
    *out_len = JOURNAL_BATCH_HEADER_BYTES + c;
    atomic_fetch_add(&j->n_records, n);
    atomic_fetch_add(&j->n_bytes_in, raw);
    return e;
}

/* Writes and fdatasyncs buf at the end of the current segment. */
static int batch_write(struct repl_journal *j, size_t len)
{
    off_t off = (off_t)j->seg_bytes;
    if (j->uring_ok) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&j->ring);
        io_uring_prep_write(sqe, j->fd, j->out, (unsigned)len, (uint64_t)off);
        sqe->flags |= IOSQE_IO_LINK;
        sqe = io_uring_get_sqe(&j->ring);
        io_uring_prep_fsync(sqe, j->fd, IORING_FSYNC_DATASYNC);
        int rv = io_uring_submit_and_wait(&j->ring, 2);
        if (rv < 0)
            return rv;
        int res[2] = {0, 0};
        for (int i = 0; i < 2; i++) {
            struct io_uring_cqe *cqe;
            rv = io_uring_wait_cqe(&j->ring, &cqe);
            if (rv < 0)
                return rv;
            res[i] = cqe->res;
            io_uring_cqe_seen(&j->ring, cqe);
        }
        if (res[0] < 0)
            return res[0];
        if ((size_t)res[0] != len)
            return -EIO; /* a short write: the fsync was cancelled with it */
        if (res[1] < 0)
            return res[1];
    } else {
        const uint8_t *p = j->out;
        size_t left = len;
        while (left > 0) {
            ssize_t n = pwrite(j->fd, p, left, off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                return -errno;
            p += n;
            off += n;
            left -= (size_t)n;
        }
        if (fdatasync(j->fd) != 0)
            return -errno;
    }
    j->seg_bytes += len;
    atomic_fetch_add(&j->n_fsyncs, 1);
    atomic_fetch_add(&j->n_batches, 1);
    atomic_fetch_add(&j->n_bytes_written, len);
    return 0;
}

/* Hands each route its entries, in order. Each record pins its segment until
 * its owner gives the pin back. */
static void batch_done(struct repl_journal *j, struct repl_entry *batch)
{
    for (struct repl_entry *e = batch; e != NULL; e = e->next)
        atomic_fetch_add(&j->pins[e->segment % SEG_RING], 1);
    while (batch != NULL) {
        unsigned route = batch->route;
        struct repl_entry *mine = NULL, **mt = &mine, *rest = NULL, **rt = &rest;
        for (struct repl_entry *e = batch, *next; e != NULL; e = next) {
            next = e->next;
            e->next = NULL;
            struct repl_entry ***t = e->route == route ? &mt : &rt;
            **t = e;
            *t = &e->next;
        }
        j->cfg.done_cb(j->cfg.done_arg, route, mine);
        batch = rest;
    }
}

static void journal_round(struct repl_journal *j, struct repl_entry *list)
{
    while (list != NULL) {
        struct repl_entry *batch = NULL;
        size_t len = 0;
        list = batch_build(j, list, &batch, &len);
        int rv = batch_write(j, len);
        if (rv != 0) {
            /* After a failed fsync the kernel may have dropped the dirty
             * pages: nothing in this batch can be called durable, and no later
             * batch may be acknowledged before it. Recovery from the journal
             * on restart is the only safe way on. */
            repl_logf(0, "msg=\"journal write failed: stopping the host\" segment=%" PRIu32 " err=\"%s\"", j->segment,
                  strerror(-rv));
            abort();
        }
        batch_done(j, batch);
        if (j->seg_bytes >= j->cfg.segment_bytes) {
            char err[512];
            if (segment_create(j, j->segment + 1, err, sizeof(err)) != 0) {
                repl_logf(0, "msg=\"%s: stopping the host\"", err);
                abort();
            }
        }
    }
    segments_trim(j);
}

static void *journal_main(void *arg)
{
    struct repl_journal *j = arg;
    pthread_setname_np(pthread_self(), "dobj-journal");
    for (;;) {
        struct repl_entry *list = take_all(j);
        if (list != NULL) {
            journal_round(j, list);
            continue;
        }
        if (atomic_load(&j->stopping))
            break;
        atomic_store(&j->sleeping, true);
        if (atomic_load(&j->queue) != NULL || atomic_load(&j->stopping)) {
            atomic_store(&j->sleeping, false);
            continue;
        }
        uint64_t v;
        if (read(j->efd, &v, sizeof(v)) < 0 && errno != EINTR && errno != EAGAIN)
            break;
        atomic_store(&j->sleeping, false);
    }
    segments_trim(j);
    return NULL;
}

static void wake(struct repl_journal *j)
{
    if (atomic_exchange(&j->sleeping, false)) {
        uint64_t one = 1;
        ssize_t rc = write(j->efd, &one, sizeof(one));
        (void)rc; /* an eventfd write can only fail on overflow, which still wakes */
    }
}

void repl_journal_submit(struct repl_journal *j, struct repl_entry *e)
{
    struct repl_entry *head = atomic_load(&j->queue);
    do {
        e->next = head;
    } while (!atomic_compare_exchange_weak(&j->queue, &head, e));
    wake(j);
}

void repl_journal_release(struct repl_journal *j, uint32_t segment)
{
    int before = atomic_fetch_sub(&j->pins[segment % SEG_RING], 1);
    if (before <= 0) {
        repl_logf(0, "msg=\"bug: segment %" PRIu32 " released more often than pinned\"", segment);
        abort();
    }
}

void repl_journal_pin(struct repl_journal *j, uint32_t segment) { atomic_fetch_add(&j->pins[segment % SEG_RING], 1); }

uint32_t repl_journal_segment(struct repl_journal *j) { return atomic_load(&j->current); }

void repl_journal_stats(struct repl_journal *j, struct repl_stats *out)
{
    out->records = atomic_load(&j->n_records);
    out->batches = atomic_load(&j->n_batches);
    out->fsyncs = atomic_load(&j->n_fsyncs);
    out->bytes_in = atomic_load(&j->n_bytes_in);
    out->bytes_written = atomic_load(&j->n_bytes_written);
    out->segment = atomic_load(&j->current);
}

int repl_journal_create(struct repl_journal **out, const struct repl_journal_config *cfg, uint32_t first_segment,
                        uint32_t keep_from, char *err, size_t errlen)
{
    struct repl_journal *j = sdk_xcalloc(1, sizeof(*j));
    j->cfg = *cfg;
    j->dir = sdk_xstrdup(cfg->dir);
    j->fd = -1;
    j->oldest = keep_from <= first_segment && first_segment - keep_from < SEG_RING ? keep_from : first_segment;
    if (mkdir(j->dir, 0755) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "journal: can not create %s: %s", j->dir, strerror(errno));
        goto fail_dir;
    }
    j->dir_fd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (j->dir_fd < 0) {
        snprintf(err, errlen, "journal: can not open %s: %s", j->dir, strerror(errno));
        goto fail_dir;
    }
    if (segment_create(j, first_segment, err, errlen) != 0)
        goto fail_segment;
    j->efd = eventfd(0, EFD_CLOEXEC);
    j->zc = ZSTD_createCCtx();
    if (!cfg->no_uring) {
        int rv = io_uring_queue_init(8, &j->ring, 0);
        j->uring_ok = rv == 0;
        if (!j->uring_ok)
            repl_logf(1, "msg=\"io_uring is not available: the journal uses pwrite and fdatasync\" err=\"%s\"",
                      strerror(-rv));
    } else {
        repl_logf(2, "msg=\"io_uring turned off: the journal uses pwrite and fdatasync\"");
    }
    if (pthread_create(&j->thread, NULL, journal_main, j) != 0) {
        snprintf(err, errlen, "journal: can not start its thread");
        goto fail_thread;
    }
    *out = j;
    return 0;

fail_thread:
    if (j->uring_ok)
        io_uring_queue_exit(&j->ring);
    ZSTD_freeCCtx(j->zc);
    close(j->efd);
    close(j->fd);
fail_segment:
    close(j->dir_fd);
fail_dir:
    free(j->dir);
    free(j);
    return -EIO;
}

void repl_journal_stop(struct repl_journal *j)
{
    atomic_store(&j->stopping, true);
    uint64_t one = 1;
    ssize_t rc = write(j->efd, &one, sizeof(one));
    (void)rc;
    pthread_join(j->thread, NULL);
}

void repl_journal_destroy(struct repl_journal *j)
{
    if (j->uring_ok)
        io_uring_queue_exit(&j->ring);
    ZSTD_freeCCtx(j->zc);
    close(j->efd);
    close(j->fd);
    close(j->dir_fd);
    free(j->raw);
    free(j->out);
    free(j->dir);
    free(j);
}
