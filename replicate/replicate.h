/*
 * replicate.h: the host journal, the durability point of a single host.
 *
 * Shards submit records (encoded by wal/); one journal thread takes whatever
 * has queued, compresses it into one batch, writes and fdatasyncs it (io_uring,
 * write and fsync linked), and hands each shard back the list of its records
 * that are now durable. Many objects' commits share one fsync: the number of
 * fsyncs per second stays far below the number of commits under load.
 *
 * Segments. The journal is a sequence of segment files; a record pins its
 * segment until its object's database file has been checkpointed and fsync'd
 * past it (repl_journal_release); unpinned segments older than every pinned
 * one are deleted.
 *
 * Nothing here knows about SQLite or HTTP: records are opaque bytes whose
 * first 64 bytes are a wal/ record header.
 */
#ifndef REPLICATE_H
#define REPLICATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One record on its way to the journal. Allocated and freed by the caller;
 * owned by the journal between submit and the done callback. */
struct repl_entry {
    struct repl_entry *next; /* queue and done-list link */
    unsigned route;          /* which done callback group (the shard) */
    void *owner;             /* the caller's (the actor) */
    uint64_t lsn;
    uint8_t *data; /* the encoded record, owned by the entry's owner */
    size_t len;
    uint32_t segment; /* set by the journal: the segment that holds it (pinned) */
};

/* Called on the journal thread with one route's durable entries, in submit
 * order. The callee takes the list (and the segment pins, see above). */
typedef void (*repl_done_cb)(void *arg, unsigned route, struct repl_entry *list);

struct repl_journal_config {
    const char *dir;        /* DATA/journal */
    uint64_t segment_bytes; /* start a new segment past this size */
    bool no_uring;          /* use pwrite + fdatasync even where io_uring works */
    repl_done_cb done_cb;
    void *done_arg;
};

struct repl_journal;

struct repl_stats {
    uint64_t records;
    uint64_t batches;
    uint64_t fsyncs;
    uint64_t bytes_in;      /* record bytes */
    uint64_t bytes_written; /* compressed batch bytes */
    uint32_t segment;       /* current segment number */
};

/* Where the journal's few log lines go (level 0 error, 1 warn, 2 info); set
 * once before any journal starts. Default: stderr. */
void repl_set_logger(void (*fn)(int level, const char *msg));

/* Internal: one log line through the logger above. */
void repl_logf(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Creates the journal in cfg->dir and starts its thread. The first segment
 * is numbered `first_segment`; the older segments `keep_from` ..
 * first_segment - 1 that recovery left stay until nothing pins them (pin
 * them with repl_journal_pin before the first submit). */
int repl_journal_create(struct repl_journal **out, const struct repl_journal_config *cfg, uint32_t first_segment,
                        uint32_t keep_from, char *err, size_t errlen);
/* Takes one more pin on `segment`, which must be pinned already or kept by
 * create. Thread-safe. */
void repl_journal_pin(struct repl_journal *j, uint32_t segment);
/* Queues an entry; thread-safe, never blocks on I/O. */
void repl_journal_submit(struct repl_journal *j, struct repl_entry *e);
/* Gives back the pin an entry held on `segment`. Thread-safe. */
void repl_journal_release(struct repl_journal *j, uint32_t segment);
uint32_t repl_journal_segment(struct repl_journal *j);
void repl_journal_stats(struct repl_journal *j, struct repl_stats *out);
/* Writes what is queued and stops the thread: every submitted entry has had
 * its done callback. Release, segment and stats still work after it. */
void repl_journal_stop(struct repl_journal *j);
/* Closes the files and frees the journal: once no thread uses it. */
void repl_journal_destroy(struct repl_journal *j);

/*
 * Recovery: reads every segment of `dir` in order and calls on_record for each
 * valid record. A torn or invalid batch at the end of the last segment is cut
 * off (it was never acknowledged). An invalid batch anywhere else refuses with
 * an error naming the file and offset, unless `repair` is set: then it is
 * skipped, logged, cut out of its segment file, and recovery goes on. on_record returning non-zero stops
 * the scan with that error.
 */
typedef int (*repl_record_cb)(void *arg, uint32_t segment, const uint8_t *rec, size_t len);
struct repl_recovered {
    uint32_t next_segment; /* where the next journal starts */
    unsigned skipped;      /* damaged batches --repair skipped (and removed from their segments) */
};
int repl_journal_recover(const char *dir, bool repair, repl_record_cb on_record, void *arg,
                         struct repl_recovered *out, char *err, size_t errlen);
/* Deletes every segment file of `dir` numbered below `below`. */
int repl_journal_drop_before(const char *dir, uint32_t below);

#endif /* REPLICATE_H */
