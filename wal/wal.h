/*
 * wal.h: commit capture and the record format.
 *
 * A record is one event's transaction as the pages it changed: the unit the
 * journal makes durable, replication will carry and object storage will keep.
 * Applying records 1..k of an object, in order, to an empty file gives the
 * object's database as it was after its k-th write.
 *
 * Nothing here knows about HTTP, shards or the journal; nothing here keeps
 * state across calls but what its structs hold.
 */
#ifndef WAL_H
#define WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WAL_OBJECT_ID_BYTES 16
#define WAL_RECORD_HEADER_BYTES 64
#define WAL_RECORD_TRAILER_BYTES 8
#define WAL_PAGE_SIZE_MIN 512
#define WAL_PAGE_SIZE_MAX 65536
/* A record larger than this is refused. The in-memory WAL refuses to grow
 * past it (SQLITE_FULL), so such a transaction fails and rolls back. */
#define WAL_RECORD_BYTES_MAX (64u << 20)
#define WAL_MEM_BYTES_MAX (WAL_RECORD_BYTES_MAX - 4096)

struct wal_page {
    uint32_t pgno;
    const uint8_t *data; /* page_size bytes, borrowed */
};

/* A journal-only record with no pages: every record of the object up to its
 * lsn is in object storage, so the journal need not keep them. Never applied,
 * never uploaded. */
#define WAL_REC_UPLOADED 1u
/* The write deleted all of the object's data (dobj_delete_all): once it is
 * older than the retention window, gc may remove the object from the store. */
#define WAL_REC_TOMBSTONE 2u

struct wal_record {
    uint8_t object_id[WAL_OBJECT_ID_BYTES];
    uint64_t epoch;
    uint64_t lsn;
    int64_t commit_us;
    uint32_t db_pages; /* database size in pages after the commit */
    uint32_t page_size;
    uint32_t flags; /* WAL_REC_* */
    uint32_t npages;
    const struct wal_page *pages; /* borrowed; by ascending pgno, each once */
};

/* Bytes wal_record_encode() writes for a record. */
size_t wal_record_size(uint32_t npages, uint32_t page_size);
/* Writes `r` into out[0 .. wal_record_size()), with its checksum. */
void wal_record_encode(const struct wal_record *r, uint8_t *out);

/*
 * Reads one record from buf[0 .. len). On success fills `r` (its pages point
 * into buf, which must outlive r) and *used with the record's length.
 * Returns 0; -1 if buf holds less than a whole record (a torn tail: more
 * bytes may make it whole); -2 if the bytes are not a valid record (bad magic,
 * impossible sizes, checksum mismatch). `pages` has room for `max_pages`.
 */
int wal_record_decode(const uint8_t *buf, size_t len, struct wal_record *r, struct wal_page *pages, uint32_t max_pages,
                      size_t *used);
/* wal_record_decode() with a page array that grows to fit (*pages, *cap
 * owned by the caller, freed with free()). */
int wal_record_decode_grow(const uint8_t *buf, size_t len, struct wal_record *r, struct wal_page **pages,
                           uint32_t *cap, size_t *used);
/* The object id of a record without decoding the rest; buf holds at least
 * WAL_RECORD_HEADER_BYTES. */
void wal_record_peek(const uint8_t *buf, uint8_t id[WAL_OBJECT_ID_BYTES], uint64_t *lsn, uint32_t *len);

/* The header fields of an encoded record (at least WAL_RECORD_HEADER_BYTES),
 * without checking it: for records that were checked when they were made. */
void wal_record_peek_header(const uint8_t *buf, struct wal_record *r);

/* ---- the in-memory WAL (memvfs.c) -------------------------------------- */

struct sqlite3;

#define WAL_VFS_NAME "dobj"

/* Registers the "dobj" VFS (the default VFS with WALs in memory); once,
 * before threads start. Databases opened with it must set
 * locking_mode=EXCLUSIVE before their first WAL access. */
int wal_memvfs_register(void);
/* The in-memory WAL of db's main database: its bytes, valid until the next
 * write to the database. -1 if db's WAL is not an in-memory one (yet). */
int wal_memvfs_bytes(struct sqlite3 *db, const uint8_t **data, size_t *size);

/* ---- capture ---------------------------------------------------------- */

/*
 * Follows one database's -wal file. After each commit (sqlite3_wal_hook gives
 * the WAL's frame count), wal_capture_commit() reads the frames the commit
 * appended and returns them as a record body. The capture notices WAL restarts
 * (new salts after a checkpoint) by itself.
 */
struct wal_capture {
    struct sqlite3 *db; /* set: read the WAL in memory (memvfs.c) */
    int fd;           /* else the -wal file, or -1 until it exists */
    char *wal_path;
    uint32_t salt1, salt2;
    uint32_t frames_seen; /* frames of the current WAL generation already captured */
    uint32_t page_size;
    uint8_t *buf; /* frames read by the last commit */
    size_t buf_cap;
    struct wal_page *pages;
    uint32_t pages_cap;
};

/* `db_path` is the database file; its WAL is db_path + "-wal", or, if `db`
 * is not NULL and uses the "dobj" VFS, the WAL in memory. */
void wal_capture_init(struct wal_capture *c, const char *db_path, struct sqlite3 *db);
void wal_capture_close(struct wal_capture *c);

/*
 * Captures the commit that brought the WAL to `wal_frames` frames. Fills
 * r->pages (borrowed from the capture until its next call), npages, db_pages
 * and page_size; the caller sets id, epoch, lsn and time. Returns 0, or a
 * negative errno / -EPROTO with `err` set when the WAL can not be read or does
 * not hold the commit (the caller must treat the commit as not durable).
 */
int wal_capture_commit(struct wal_capture *c, uint32_t wal_frames, struct wal_record *r, char *err, size_t errlen);

/* A record as it travels between hosts in a cluster, and as a cluster's
 * uploader takes it: the record's 64-byte header as it is, then one zstd
 * frame (level -5) of the whole encoded record. Page images of small rows
 * are mostly zeros: a counter's write shrinks about fortyfold. The header
 * lets the uploader index the frame without decompressing it; the frame goes
 * into the segment as it is (segment.c's frames decompress to whole records).
 * pack writes at most wal_record_pack_bound(len) bytes into out and returns
 * how many. unpack checks the sizes against WAL_RECORD_BYTES_MAX and the
 * header against the one inside, and returns 0 with *out owned by the
 * caller, or -EINVAL. packed_header reads the header and finds the frame and
 * the record's length, or returns -EINVAL. */
size_t wal_record_pack_bound(size_t len);
size_t wal_record_pack(const uint8_t *rec, size_t len, uint8_t *out, size_t cap);
int wal_record_packed_header(const uint8_t *p, size_t len, struct wal_record *h, const uint8_t **frame,
                             size_t *frame_len, size_t *rec_len);
int wal_record_unpack(const uint8_t *p, size_t len, uint8_t **out, size_t *out_len);

/* ---- apply ------------------------------------------------------------ */

/*
 * Writes a record's pages into a database file opened by the caller (no
 * SQLite connection may have it open, and it must have no -wal file) and
 * truncates the file to the record's size. Page images are whole, so applying
 * a record twice, or records older than the file's state, is harmless as long
 * as the newest one comes last. Returns 0 or -errno.
 */
int wal_apply(int fd, const struct wal_record *r);
/* The same without the truncation, for a run of records whose last one sets
 * the size (a page a record needs is always in it: SQLite writes every page
 * it adds to a database). */
int wal_apply_pages(int fd, const struct wal_record *r);


/* ---- object storage (store.c, store_s3.c) ------------------------------ */

/*
 * One small interface over two backends: "file:///DIR" (a directory) and
 * "s3://BUCKET/PREFIX" (libcurl's multi interface with SigV4, driven by the
 * caller's libuv loop). Keys are relative to the URL's prefix and made of
 * [A-Za-z0-9._-/]. Objects are written whole and never changed: a put
 * replaces nothing that a reader could be reading half of.
 *
 * Every operation completes on the store's loop with its callback, never
 * inside the call. A store belongs to one loop (one thread).
 */
struct uv_loop_s;

struct wal_store_config {
    const char *url;        /* file:///dir or s3://bucket/prefix */
    const char *endpoint;   /* s3: http(s)://host[:port]; default https://s3.REGION.amazonaws.com */
    const char *region;     /* s3: default us-east-1 */
    bool path_style;        /* s3: ENDPOINT/BUCKET/KEY instead of BUCKET.ENDPOINT/KEY */
    const char *access_key; /* s3: default $AWS_ACCESS_KEY_ID */
    const char *secret_key; /* s3: default $AWS_SECRET_ACCESS_KEY */
    const char *session_token; /* s3: default $AWS_SESSION_TOKEN */
    unsigned timeout_ms;    /* one attempt; 0: 30000 */
    unsigned attempts;      /* tries per operation, with exponential backoff and jitter; 0: 5 */
};

struct wal_store_entry {
    char *key;
    uint64_t size;
    int64_t mtime_us;
};

/* What an operation gives its callback; the callback may take `data` or
 * `entries` (setting them NULL), the rest is freed after it returns. */
struct wal_store_result {
    int status; /* 0; -ENOENT: no such key; another negative errno: failed (err says why) */
    char err[256];
    uint8_t *data; /* get */
    size_t len;
    struct wal_store_entry *entries; /* list, sorted by key */
    size_t nentries;
};

typedef void (*wal_store_cb)(void *arg, struct wal_store_result *res);

struct wal_store;

/* Opens a store on `loop`. Returns 0, or -EINVAL with err naming what is
 * wrong with the configuration. */
int wal_store_open(struct wal_store **out, const struct wal_store_config *cfg, struct uv_loop_s *loop, char *err,
                   size_t errlen);
/* Ends every operation in flight with -ECANCELED (their callbacks follow on
 * the loop, as always). */
void wal_store_cancel(struct wal_store *s);
/* Frees the store once nothing is pending (run the loop until then). */
void wal_store_close(struct wal_store *s);
/* The URL it was opened with, for messages. */
const char *wal_store_url(const struct wal_store *s);
/* data[0..len) is borrowed until the callback. */
void wal_store_put(struct wal_store *s, const char *key, const void *data, size_t len, wal_store_cb cb, void *arg);
void wal_store_get(struct wal_store *s, const char *key, wal_store_cb cb, void *arg);
/* Every key that starts with `prefix`, with sizes and modification times. */
void wal_store_list(struct wal_store *s, const char *prefix, wal_store_cb cb, void *arg);
/* Deleting a key that is not there succeeds. */
void wal_store_delete(struct wal_store *s, const char *key, wal_store_cb cb, void *arg);
void wal_store_result_free(struct wal_store_result *res);
void wal_store_entries_free(struct wal_store_entry *v, size_t n);

/* Blocking forms of the four operations, for a store whose loop the caller
 * owns. They fill `res` (free it with wal_store_result_free) and return its
 * status. */
int wal_store_put_sync(struct wal_store *s, const char *key, const void *data, size_t len,
                       struct wal_store_result *res);
int wal_store_get_sync(struct wal_store *s, const char *key, struct wal_store_result *res);
int wal_store_list_sync(struct wal_store *s, const char *prefix, struct wal_store_result *res);
int wal_store_delete_sync(struct wal_store *s, const char *key, struct wal_store_result *res);

/* Where the store's few log lines go (0 error, 1 warn, 2 info). */
void wal_set_logger(void (*fn)(int level, const char *msg));
void wal_logf(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- segments (segment.c) ---------------------------------------------- */

/*
 * A segment is a run of one object's consecutive records as one immutable
 * object-store object, each record compressed on its own (zstd) behind an
 * index of commit times, so a restore finds a moment without decompressing
 * anything. Format in segment.c.
 */
struct ZSTD_CCtx_s;
struct ZSTD_DCtx_s;

struct wal_seg_builder {
    uint8_t id[WAL_OBJECT_ID_BYTES];
    uint64_t epoch;
    uint64_t first_lsn, last_lsn;
    uint32_t n;
    uint8_t *index; /* n entries */
    size_t index_cap;
    uint8_t *data; /* compressed records */
    size_t data_len, data_cap;
    uint64_t raw_bytes;
};

/* Adds the next record (lsn last_lsn + 1, or the first). 0, or -EINVAL if it
 * does not follow, or -ENOMEM if zstd fails. */
int wal_seg_add(struct wal_seg_builder *b, struct ZSTD_CCtx_s *zc, const uint8_t *rec, size_t len);
/* The same for a packed record (wal_record_pack): its zstd frame goes in as
 * it is, no second compression. -EPROTO if it is not a packed record. */
int wal_seg_add_packed(struct wal_seg_builder *b, const uint8_t *packed, size_t len);
/* The segment object (malloc'd) of what was added; the builder is emptied. */
uint8_t *wal_seg_finish(struct wal_seg_builder *b, size_t *len);
void wal_seg_builder_free(struct wal_seg_builder *b);
/* "CLASS/HEX/segments/<first 20d>-<last 20d>-<epoch 20d>.seg" */
void wal_seg_key(char *out, size_t cap, const char *object_prefix, uint64_t first, uint64_t last, uint64_t epoch);
/* Parses the last path element of a segment key; false if it is not one. */
bool wal_seg_key_parse(const char *key, uint64_t *first, uint64_t *last, uint64_t *epoch);

struct wal_segment {
    uint8_t id[WAL_OBJECT_ID_BYTES];
    uint64_t epoch, first_lsn, last_lsn;
    uint32_t n;
    const uint8_t *index, *data;
    size_t data_len;
};

/* Checks a segment object (sizes, checksum) and points `s` into buf. 0, or
 * -EPROTO with err saying what is wrong. */
int wal_seg_parse(const uint8_t *buf, size_t len, struct wal_segment *s, char *err, size_t errlen);
int64_t wal_seg_commit_us(const struct wal_segment *s, uint32_t i);
/* Decompresses record i into *buf (grown as needed). 0 or -EPROTO. */
int wal_seg_record(const struct wal_segment *s, uint32_t i, struct ZSTD_DCtx_s *dc, uint8_t **buf, size_t *cap,
                   size_t *len);

/* ---- the uploader (upload.c) -------------------------------------------- */

/*
 * A thread with its own libuv loop and store. Durable records come in (any
 * thread); per object they are cut into segments (segment_bytes of records,
 * or segment_interval_ms after the first), uploaded in lsn order, one at a
 * time per object and many objects at once. Once a segment is in the store,
 * `uploaded` says so with the tags its records came with (the journal pins
 * they hold). A failed upload is retried, with backoff, until it succeeds or
 * the uploader stops: the journal still holds those records.
 *
 * Store layout, per object (HEX: the 32-digit object id):
 *   CLASS/HEX/meta.json                 {"class", "name", "id", "created"}
 *   CLASS/HEX/segments/<first>-<last>-<epoch>.seg   (20 digits each)
 *   CLASS/HEX/snapshots/<lsn>.db        zstd frame of the database at lsn
 */
struct wal_uploader;

struct wal_upload_config {
    struct wal_store_config store;
    uint64_t segment_bytes;       /* 0: 16 MiB */
    uint64_t segment_interval_ms; /* 0: 10000 */
    /* On the uploader's thread: object `id`'s records up to `lsn` are in the
     * store. `tags` (malloc'd, the callee frees) are those of the records. */
    void (*uploaded)(void *arg, const uint8_t id[WAL_OBJECT_ID_BYTES], uint64_t lsn, uint32_t *tags, size_t ntags);
    /* On the uploader's thread: the object's segments since its last
     * snapshot outweigh the database (or snapshot_min_bytes): make one and
     * hand it over with wal_uploader_snapshot(). Asked again after a minute
     * if none comes. */
    void (*want_snapshot)(void *arg, const char *cls, const char *name, size_t name_len);
    uint64_t snapshot_min_bytes;
    void *arg;
};

struct wal_upload_stats {
    uint64_t records_in;        /* records handed over */
    uint64_t records_uploaded;
    uint64_t segments_uploaded;
    uint64_t bytes_uploaded;    /* segment bytes */
    uint64_t failures;          /* failed attempts */
    uint64_t snapshots;         /* snapshots uploaded */
    uint64_t records_pending;   /* handed over, not yet in the store */
    int64_t lag_us;             /* age of the oldest pending record, 0 if none */
    bool store_down;            /* the last attempt failed */
};

/* Opens the store and starts the thread. */
int wal_uploader_start(struct wal_uploader **out, const struct wal_upload_config *cfg, char *err, size_t errlen);
/* Hands over a durable record of object cls/name (rec is owned by the
 * uploader from now on): encoded, or packed (wal_record_pack, a cluster's
 * leader and replicas) and then stored as it is. Records of one object come
 * in lsn order. */
void wal_uploader_submit(struct wal_uploader *u, const char *cls, const char *name, size_t name_len, uint8_t *rec,
                         size_t len, bool packed, uint32_t tag);
/* Hands over a snapshot: the file at `path` (owned; deleted once uploaded)
 * holds the object's database as of record `lsn`. It is uploaded once the
 * store has every record up to lsn. Thread-safe. */
void wal_uploader_snapshot(struct wal_uploader *u, const uint8_t id[WAL_OBJECT_ID_BYTES], const char *cls,
                           const char *name, size_t name_len, uint64_t lsn, char *path);
/* The object was closed after being idle: if the store lacks a snapshot of
 * its newest records, want_snapshot follows. Thread-safe. */
void wal_uploader_idle(struct wal_uploader *u, const uint8_t id[WAL_OBJECT_ID_BYTES], const char *cls,
                       const char *name, size_t name_len);
void wal_uploader_stats(struct wal_uploader *u, struct wal_upload_stats *out);
/* Cuts every open segment, uploads for at most wait_ms, then stops the
 * thread: no `uploaded` call follows. Records not uploaded stay in the
 * journal. Submitting after it is harmless (the records are dropped). */
void wal_uploader_stop(struct wal_uploader *u, unsigned wait_ms);
/* Frees it, once no thread submits any more. */
void wal_uploader_destroy(struct wal_uploader *u);

/* "CLASS/HEX/" for an object. */
void wal_object_prefix(char *out, size_t cap, const char *cls, const uint8_t id[WAL_OBJECT_ID_BYTES]);

/* ---- point-in-time restore (restore.c) ---------------------------------- */

struct wal_restore_progress {
    uint64_t bytes;    /* downloaded so far */
    uint32_t segments; /* segments applied so far */
    uint32_t segments_total;
};

#define WAL_LSN_LATEST UINT64_MAX

struct wal_restore_opts {
    const char *object_prefix; /* "CLASS/HEX/" */
    uint64_t lsn;              /* the state after this record (WAL_LSN_LATEST: the newest), or (when 0) */
    int64_t at_us;             /* the state after the last record committed at or before this */
    const char *out;           /* the database file to write; written as out + ".part", then renamed */
    void (*progress)(void *arg, const struct wal_restore_progress *p);
    void *arg;
};

struct wal_restore_result {
    uint64_t lsn;          /* the record the database ends at */
    int64_t commit_us;     /* its commit time (0 if it came from a snapshot alone) */
    uint64_t snapshot_lsn; /* the snapshot it started from (0: none) */
    uint64_t records;      /* records applied */
    uint32_t segments;     /* segments downloaded */
    uint64_t bytes;        /* bytes downloaded */
    uint64_t db_bytes;     /* size of the database written */
};

/*
 * Builds the object's database as of a moment from a store whose loop the
 * caller owns: the newest snapshot at or before it, then the records up to
 * it. The result carries the target lsn (checked; every byte came through a
 * checksum, so it passes integrity_check), or nothing is
 * left at `out`. Errors name what is wrong: -ENOENT: the store has no such
 * object; -ERANGE: a moment before the object's first record, an lsn past the
 * store's last; -ENODATA: a missing range of records; -EPROTO: a damaged or
 * truncated segment or snapshot (by key); else the store's error.
 */
int wal_restore(struct wal_store *s, const struct wal_restore_opts *o, struct wal_restore_result *res, char *err,
                size_t errlen);

/* The newest lsn of an object the store holds, and the upload time of its
 * newest segment (from the listing). 0 if it has none. */
struct wal_object_info {
    char cls[64];
    uint8_t id[WAL_OBJECT_ID_BYTES];
    uint64_t last_lsn;
    uint64_t snapshot_lsn;
    uint64_t bytes; /* in the store */
    uint32_t segments, snapshots;
    int64_t last_upload_us;
};
/* Summarises the keys of one object (entries of a listing under its prefix). */
void wal_object_info(const struct wal_store_entry *v, size_t n, const char *prefix, struct wal_object_info *info);
/* Whether the object's newest record (the last of its newest segment) is a
 * tombstone; entries are its keys. 0, or an error with err set. */
int wal_object_tombstoned(struct wal_store *s, const struct wal_store_entry *v, size_t n, const char *prefix,
                          bool *yes, char *err, size_t errlen);
/* Reads a database file into one zstd frame (with its checksum). 0 or
 * -errno. */
int wal_snapshot_compress(const char *path, uint8_t **out, size_t *len);
/* "snapshots/<lsn 20d>.db" key of an object, and its parser. */
void wal_snapshot_key(char *out, size_t cap, const char *object_prefix, uint64_t lsn);
bool wal_snapshot_key_parse(const char *key, uint64_t *lsn);

/* ---- little-endian helpers --------------------------------------------- */

static inline void wal_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline void wal_put_u64(uint8_t *p, uint64_t v)
{
    wal_put_u32(p, (uint32_t)v);
    wal_put_u32(p + 4, (uint32_t)(v >> 32));
}

static inline uint32_t wal_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t wal_get_u64(const uint8_t *p) { return wal_get_u32(p) | (uint64_t)wal_get_u32(p + 4) << 32; }

#endif /* WAL_H */
