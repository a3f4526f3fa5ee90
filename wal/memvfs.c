/*
 * memvfs.c: the "dobj" VFS. Databases are ordinary files of the default VFS;
 * their WAL lives in memory.
 *
 * Why: the host journal is the durability point, not the WAL. A WAL on disk
 * would cost two pwrites per frame on every commit, and the capture a pread to
 * read them back, for bytes that recovery throws away anyway (a crash loses
 * the WAL; the journal has every durable record; see runtime/recover.c). In
 * memory, capture reads the commit's frames where SQLite just wrote them.
 *
 * The WAL is needed only as long as its connection: SQLite opens it once when
 * the connection enters WAL mode and, on a clean close, checkpoints it into
 * the database file and deletes it. So its bytes live in the open file
 * object; "deleting" a -wal is a no-op and a -wal never "exists" on disk for
 * SQLite to recover. This needs locking_mode=EXCLUSIVE, set before the WAL is
 * first used: the WAL index then lives in the heap and no shared memory is
 * ever asked of the VFS.
 */
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "sdk_util.h"
#include "wal.h"

struct memfile {
    sqlite3_file base;
    uint8_t *data;
    size_t size, cap;
};

static sqlite3_vfs vfs;
static sqlite3_vfs *parent;

static int mem_close(sqlite3_file *f)
{
    free(((struct memfile *)f)->data);
    return SQLITE_OK;
}

static int mem_read(sqlite3_file *f, void *buf, int amt, sqlite3_int64 off)
{
    struct memfile *m = (struct memfile *)f;
    size_t n = 0;
    if ((size_t)off < m->size)
        n = m->size - (size_t)off < (size_t)amt ? m->size - (size_t)off : (size_t)amt;
    if (n > 0)
        memcpy(buf, m->data + off, n);
    if (n < (size_t)amt) {
        memset((uint8_t *)buf + n, 0, (size_t)amt - n);
        return SQLITE_IOERR_SHORT_READ;
    }
    return SQLITE_OK;
}

static int mem_write(sqlite3_file *f, const void *buf, int amt, sqlite3_int64 off)
{
    struct memfile *m = (struct memfile *)f;
    size_t end = (size_t)off + (size_t)amt;
    /* A transaction that would not fit in one record fails here, as a full
     * disk: its commit rolls back, and WAL memory stays bounded. */
    if (end > WAL_MEM_BYTES_MAX)
        return SQLITE_FULL;
    if (end > m->cap) {
        size_t cap = m->cap ? m->cap : 1 << 16;
        while (cap < end)
            cap *= 2;
        m->data = sdk_xrealloc(m->data, cap);
        m->cap = cap;
    }
    if ((size_t)off > m->size)
        memset(m->data + m->size, 0, (size_t)off - m->size);
    memcpy(m->data + off, buf, (size_t)amt);
    if (end > m->size)
        m->size = end;
    return SQLITE_OK;
}

static int mem_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    struct memfile *m = (struct memfile *)f;
    if ((size_t)size < m->size)
        m->size = (size_t)size;
    /* journal_size_limit truncates a restarted WAL: give the memory back. */
    if (m->cap > (1u << 20) && m->size * 2 < m->cap) {
        size_t cap = m->size > (1u << 16) ? m->size : (1u << 16);
        m->data = sdk_xrealloc(m->data, cap);
        m->cap = cap;
    }
    return SQLITE_OK;
}

static int mem_sync(sqlite3_file *f, int flags)
{
    (void)f;
    (void)flags;
    return SQLITE_OK;
}

static int mem_size(sqlite3_file *f, sqlite3_int64 *out)
{
    *out = (sqlite3_int64)((struct memfile *)f)->size;
    return SQLITE_OK;
}

static int mem_lock(sqlite3_file *f, int level)
{
    (void)f;
    (void)level;
    return SQLITE_OK;
}

static int mem_reserved(sqlite3_file *f, int *out)
{
    (void)f;
    *out = 0;
    return SQLITE_OK;
}

static int mem_fcntl(sqlite3_file *f, int op, void *arg)
{
    (void)f;
    (void)op;
    (void)arg;
    return SQLITE_NOTFOUND;
}

static int mem_sector(sqlite3_file *f)
{
    (void)f;
    return 4096;
}

static int mem_caps(sqlite3_file *f)
{
    (void)f;
    return SQLITE_IOCAP_SAFE_APPEND | SQLITE_IOCAP_SEQUENTIAL | SQLITE_IOCAP_POWERSAFE_OVERWRITE;
}

static const sqlite3_io_methods mem_methods = {
    .iVersion = 1,
    .xClose = mem_close,
    .xRead = mem_read,
    .xWrite = mem_write,
    .xTruncate = mem_truncate,
    .xSync = mem_sync,
    .xFileSize = mem_size,
    .xLock = mem_lock,
    .xUnlock = mem_lock,
    .xCheckReservedLock = mem_reserved,
    .xFileControl = mem_fcntl,
    .xSectorSize = mem_sector,
    .xDeviceCharacteristics = mem_caps,
};

static bool is_wal(const char *path)
{
    size_t n = path != NULL ? strlen(path) : 0;
    return n > 4 && strcmp(path + n - 4, "-wal") == 0;
}

static int vfs_open(sqlite3_vfs *v, sqlite3_filename name, sqlite3_file *f, int flags, int *out_flags)
{
    (void)v;
    if ((flags & SQLITE_OPEN_WAL) == 0)
        return parent->xOpen(parent, name, f, flags, out_flags);
    struct memfile *m = (struct memfile *)f;
    memset(m, 0, sizeof(*m));
    m->base.pMethods = &mem_methods;
    if (out_flags != NULL)
        *out_flags = flags;
    return SQLITE_OK;
}

static int vfs_delete(sqlite3_vfs *v, const char *path, int sync_dir)
{
    (void)v;
    if (is_wal(path))
        return SQLITE_OK;
    return parent->xDelete(parent, path, sync_dir);
}

static int vfs_access(sqlite3_vfs *v, const char *path, int flags, int *out)
{
    (void)v;
    if (is_wal(path)) {
        *out = 0;
        return SQLITE_OK;
    }
    return parent->xAccess(parent, path, flags, out);
}

/* The rest is the default VFS's. */
static int vfs_fullpath(sqlite3_vfs *v, const char *p, int n, char *out)
{
    (void)v;
    return parent->xFullPathname(parent, p, n, out);
}
static void *vfs_dlopen(sqlite3_vfs *v, const char *p)
{
    (void)v;
    return parent->xDlOpen(parent, p);
}
static void vfs_dlerror(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    parent->xDlError(parent, n, out);
}
static void (*vfs_dlsym(sqlite3_vfs *v, void *h, const char *s))(void)
{
    (void)v;
    return parent->xDlSym(parent, h, s);
}
static void vfs_dlclose(sqlite3_vfs *v, void *h)
{
    (void)v;
    parent->xDlClose(parent, h);
}
static int vfs_random(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return parent->xRandomness(parent, n, out);
}
static int vfs_sleep(sqlite3_vfs *v, int us)
{
    (void)v;
    return parent->xSleep(parent, us);
}
static int vfs_time(sqlite3_vfs *v, double *out)
{
    (void)v;
    return parent->xCurrentTime(parent, out);
}
static int vfs_lasterror(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return parent->xGetLastError(parent, n, out);
}
static int vfs_time64(sqlite3_vfs *v, sqlite3_int64 *out)
{
    (void)v;
    return parent->xCurrentTimeInt64(parent, out);
}

int wal_memvfs_register(void)
{
    if (parent != NULL)
        return 0;
    parent = sqlite3_vfs_find(NULL);
    if (parent == NULL || parent->iVersion < 2)
        return -1;
    vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = parent->szOsFile > (int)sizeof(struct memfile) ? parent->szOsFile : (int)sizeof(struct memfile),
        .mxPathname = parent->mxPathname,
        .zName = WAL_VFS_NAME,
        .xOpen = vfs_open,
        .xDelete = vfs_delete,
        .xAccess = vfs_access,
        .xFullPathname = vfs_fullpath,
        .xDlOpen = vfs_dlopen,
        .xDlError = vfs_dlerror,
        .xDlSym = vfs_dlsym,
        .xDlClose = vfs_dlclose,
        .xRandomness = vfs_random,
        .xSleep = vfs_sleep,
        .xCurrentTime = vfs_time,
        .xGetLastError = vfs_lasterror,
        .xCurrentTimeInt64 = vfs_time64,
    };
    return sqlite3_vfs_register(&vfs, 0) == SQLITE_OK ? 0 : -1;
}

int wal_memvfs_bytes(sqlite3 *db, const uint8_t **data, size_t *size)
{
    sqlite3_file *f = NULL;
    if (sqlite3_file_control(db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &f) != SQLITE_OK || f == NULL ||
        f->pMethods != &mem_methods)
        return -1;
    struct memfile *m = (struct memfile *)f;
    *data = m->data;
    *size = m->size;
    return 0;
}
