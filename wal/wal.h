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

struct wal_record {
    uint8_t object_id[WAL_OBJECT_ID_BYTES];
    uint64_t epoch;
    uint64_t lsn;
    int64_t commit_us;
    uint32_t db_pages; /* database size in pages after the commit */
    uint32_t page_size;
    uint32_t flags;
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
/* The object id of a record without decoding the rest; buf holds at least
 * WAL_RECORD_HEADER_BYTES. */
void wal_record_peek(const uint8_t *buf, uint8_t id[WAL_OBJECT_ID_BYTES], uint64_t *lsn, uint32_t *len);

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

/* ---- apply ------------------------------------------------------------ */

/*
 * Writes a record's pages into a database file opened by the caller (no
 * SQLite connection may have it open, and it must have no -wal file) and
 * truncates the file to the record's size. Page images are whole, so applying
 * a record twice, or records older than the file's state, is harmless as long
 * as the newest one comes last. Returns 0 or -errno.
 */
int wal_apply(int fd, const struct wal_record *r);

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
