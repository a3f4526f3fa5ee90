/*
 * store.c: the object-store interface (wal.h) and its file:// backend.
 *
 * The file backend keeps each key as a file under the directory. A put writes
 * a temporary file, fsyncs it, renames it over the key and fsyncs the
 * directory: a reader sees the whole object or none of it, and an answered
 * put survives a crash. Its I/O runs on the caller's thread (the uploader's,
 * or a tool's); callbacks still come on the next loop turn, as with S3.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sdk_util.h"
#include "store_impl.h"

/* ---- logging ----------------------------------------------------------- */

static void log_stderr(int level, const char *msg)
{
    static const char *const names[] = {"error", "warn", "info"};
    fprintf(stderr, "level=%s %s\n", names[level < 0 ? 0 : level > 2 ? 2 : level], msg);
}

static void (*log_fn)(int, const char *) = log_stderr;

void wal_set_logger(void (*fn)(int level, const char *msg)) { log_fn = fn != NULL ? fn : log_stderr; }

void wal_logf(int level, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    log_fn(level, buf);
}

/* ---- requests ------------------------------------------------------------ */

static void on_done_timer(uv_timer_t *t)
{
    struct wal_store *s = t->data;
    struct store_req *r = s->done_head;
    s->done_head = NULL;
    s->done_tail = &s->done_head;
    while (r != NULL) {
        struct store_req *next = r->next;
        r->cb(r->arg, &r->res);
        wal_store_result_free(&r->res);
        free(r->key);
        free(r);
        s->pending--;
        r = next;
    }
}

void store_finish(struct store_req *r)
{
    struct wal_store *s = r->store;
    r->next = NULL;
    *s->done_tail = r;
    s->done_tail = &r->next;
    uv_timer_start(&s->done_timer, on_done_timer, 0, 0);
}

void store_errf(struct store_req *r, int status, const char *fmt, ...)
{
    r->res.status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->res.err, sizeof(r->res.err), fmt, ap);
    va_end(ap);
}

static bool key_valid(const char *k, bool prefix)
{
    size_t n = strlen(k);
    if ((n == 0 && !prefix) || n > 900 || k[0] == '/')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = k[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-' || c == '/'))
            return false;
        if (c == '.' && (i == 0 || k[i - 1] == '/'))
            return false; /* no ".", "..", or hidden names */
    }
    return true;
}

static void start(struct wal_store *s, enum store_op op, const char *key, const void *data, size_t len,
                  wal_store_cb cb, void *arg)
{
    struct store_req *r = sdk_xcalloc(1, sizeof(*r));
    r->store = s;
    r->op = op;
    r->key = sdk_xstrdup(key);
    r->body = data;
    r->body_len = len;
    r->cb = cb;
    r->arg = arg;
    s->pending++;
    if (!key_valid(key, op == STORE_LIST)) {
        store_errf(r, -EINVAL, "invalid store key \"%s\"", key);
        store_finish(r);
        return;
    }
    s->be->start(r);
}

void wal_store_put(struct wal_store *s, const char *key, const void *data, size_t len, wal_store_cb cb, void *arg)
{
    start(s, STORE_PUT, key, data, len, cb, arg);
}

void wal_store_get(struct wal_store *s, const char *key, wal_store_cb cb, void *arg)
{
    start(s, STORE_GET, key, NULL, 0, cb, arg);
}

void wal_store_list(struct wal_store *s, const char *prefix, wal_store_cb cb, void *arg)
{
    start(s, STORE_LIST, prefix, NULL, 0, cb, arg);
}

void wal_store_delete(struct wal_store *s, const char *key, wal_store_cb cb, void *arg)
{
    start(s, STORE_DELETE, key, NULL, 0, cb, arg);
}

void wal_store_entries_free(struct wal_store_entry *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].key);
    free(v);
}

void wal_store_result_free(struct wal_store_result *res)
{
    free(res->data);
    wal_store_entries_free(res->entries, res->nentries);
    res->data = NULL;
    res->entries = NULL;
    res->nentries = 0;
    res->len = 0;
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct wal_store_entry *)a)->key, ((const struct wal_store_entry *)b)->key);
}

void store_entries_sort(struct wal_store_entry *v, size_t n)
{
    if (n > 1)
        qsort(v, n, sizeof(*v), entry_cmp);
}

/* ---- blocking forms ------------------------------------------------------ */

struct sync_wait {
    bool done;
    struct wal_store_result *res;
};

static void on_sync(void *arg, struct wal_store_result *res)
{
    struct sync_wait *w = arg;
    *w->res = *res;
    res->data = NULL;
    res->entries = NULL;
    res->nentries = 0;
    w->done = true;
}

static int wait_sync(struct wal_store *s, struct sync_wait *w)
{
    while (!w->done)
        uv_run(s->loop, UV_RUN_ONCE);
    return w->res->status;
}

int wal_store_put_sync(struct wal_store *s, const char *key, const void *data, size_t len,
                       struct wal_store_result *res)
{
    struct sync_wait w = {.res = res};
    wal_store_put(s, key, data, len, on_sync, &w);
    return wait_sync(s, &w);
}

int wal_store_get_sync(struct wal_store *s, const char *key, struct wal_store_result *res)
{
    struct sync_wait w = {.res = res};
    wal_store_get(s, key, on_sync, &w);
    return wait_sync(s, &w);
}

int wal_store_list_sync(struct wal_store *s, const char *prefix, struct wal_store_result *res)
{
    struct sync_wait w = {.res = res};
    wal_store_list(s, prefix, on_sync, &w);
    return wait_sync(s, &w);
}

int wal_store_delete_sync(struct wal_store *s, const char *key, struct wal_store_result *res)
{
    struct sync_wait w = {.res = res};
    wal_store_delete(s, key, on_sync, &w);
    return wait_sync(s, &w);
}

/* ---- the file backend ------------------------------------------------------ */

static int mkdir_parents(char *path)
{
    for (char *p = path + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rv = mkdir(path, 0755) != 0 && errno != EEXIST ? -errno : 0;
        *p = '/';
        if (rv != 0)
            return rv;
    }
    return 0;
}

static int fsync_dir_of(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        return 0;
    *slash = '\0';
    int fd = open(dir[0] != '\0' ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rv = fsync(fd) != 0 ? -errno : 0;
    close(fd);
    return rv;
}

static void file_put(struct store_req *r, const char *path)
{
    static unsigned counter;
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d.%u", path, (int)getpid(), counter++);
    int rv = mkdir_parents(tmp);
    int fd = rv == 0 ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : -1;
    if (fd < 0) {
        store_errf(r, rv != 0 ? rv : -errno, "can not create %s: %s", tmp, strerror(rv != 0 ? -rv : errno));
        return;
    }
    size_t off = 0;
    while (off < r->body_len) {
        ssize_t n = write(fd, r->body + off, r->body_len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rv = -errno;
            break;
        }
        off += (size_t)n;
    }
    if (rv == 0 && fsync(fd) != 0)
        rv = -errno;
    close(fd);
    if (rv == 0 && rename(tmp, path) != 0)
        rv = -errno;
    if (rv == 0)
        rv = fsync_dir_of(path);
    if (rv != 0) {
        unlink(tmp);
        store_errf(r, rv, "can not write %s: %s", path, strerror(-rv));
    }
}

static void file_get(struct store_req *r, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        store_errf(r, -e, "can not read %s: %s", path, strerror(e));
        return;
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = sdk_xmalloc(len > 0 ? len : 1);
    size_t off = 0;
    while (off < len) {
        ssize_t n = read(fd, buf + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    close(fd);
    if (off != len) {
        free(buf);
        store_errf(r, -EIO, "can not read %s: short read", path);
        return;
    }
    r->res.data = buf;
    r->res.len = len;
}

struct list_acc {
    struct wal_store_entry *v;
    size_t n, cap;
};

/* Walks dir (whose key is `rel`, "" or ending in '/') for keys under prefix. */
static void file_walk(const char *dir, const char *rel, const char *prefix, struct list_acc *acc)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *de;
    size_t plen = strlen(prefix);
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || strstr(de->d_name, ".tmp.") != NULL)
            continue;
        char key[2048], path[4096];
        snprintf(key, sizeof(key), "%s%s", rel, de->d_name);
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        struct stat st;
        if (stat(path, &st) != 0)
            continue;
        size_t klen = strlen(key);
        if (S_ISDIR(st.st_mode)) {
            /* Descend only where the prefix can still match. */
            size_t m = klen < plen ? klen : plen;
            if (strncmp(key, prefix, m) == 0) {
                char sub[2048];
                snprintf(sub, sizeof(sub), "%s/", key);
                file_walk(path, sub, prefix, acc);
            }
        } else if (S_ISREG(st.st_mode) && strncmp(key, prefix, plen) == 0) {
            if (acc->n == acc->cap) {
                acc->cap = acc->cap ? acc->cap * 2 : 64;
                acc->v = sdk_xrealloc(acc->v, acc->cap * sizeof(*acc->v));
            }
            acc->v[acc->n++] = (struct wal_store_entry){
                .key = sdk_xstrdup(key),
                .size = (uint64_t)st.st_size,
                .mtime_us = (int64_t)st.st_mtim.tv_sec * 1000000 + st.st_mtim.tv_nsec / 1000,
            };
        }
    }
    closedir(d);
}

static void file_start(struct store_req *r)
{
    struct wal_store *s = r->store;
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", s->root, r->key);
    switch (r->op) {
    case STORE_PUT:
        file_put(r, path);
        break;
    case STORE_GET:
        file_get(r, path);
        break;
    case STORE_LIST: {
        struct list_acc acc = {0};
        file_walk(s->root, "", r->key, &acc);
        store_entries_sort(acc.v, acc.n);
        r->res.entries = acc.v;
        r->res.nentries = acc.n;
        break;
    }
    case STORE_DELETE:
        if (unlink(path) != 0 && errno != ENOENT)
            store_errf(r, -errno, "can not delete %s: %s", path, strerror(errno));
        break;
    }
    store_finish(r);
}

static void file_close(struct wal_store *s) { (void)s; }

/* File requests complete at once: nothing is ever in flight. */
static void file_cancel(struct wal_store *s) { (void)s; }

static const struct store_backend file_backend = {.start = file_start, .cancel = file_cancel, .close = file_close};

/* ---- open and close ---------------------------------------------------------- */

int wal_store_open(struct wal_store **out, const struct wal_store_config *cfg, struct uv_loop_s *loop, char *err,
                   size_t errlen)
{
    const char *url = cfg->url;
    struct wal_store *s = sdk_xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->url = sdk_xstrdup(url);
    s->done_tail = &s->done_head;
    int rv = 0;
    if (strncmp(url, "file://", 7) == 0) {
        const char *dir = url + 7;
        size_t n = strlen(dir);
        while (n > 1 && dir[n - 1] == '/')
            n--;
        if (n == 0) {
            snprintf(err, errlen, "store URL \"%s\" names no directory (file:///path/to/dir)", url);
            rv = -EINVAL;
        } else {
            s->root = sdk_xstrndup(dir, n);
            s->be = &file_backend;
            char probe[4200];
            snprintf(probe, sizeof(probe), "%s/x", s->root);
            int m = mkdir_parents(probe);
            if (m != 0) {
                snprintf(err, errlen, "store %s: can not create the directory: %s", url, strerror(-m));
                rv = -EINVAL;
            }
        }
    } else if (strncmp(url, "s3://", 5) == 0) {
        const char *b = url + 5;
        const char *slash = strchr(b, '/');
        size_t blen = slash != NULL ? (size_t)(slash - b) : strlen(b);
        if (blen < 3 || blen > 63) {
            snprintf(err, errlen, "store URL \"%s\" needs a bucket name of 3 to 63 characters (s3://bucket/prefix)",
                     url);
            rv = -EINVAL;
        } else {
            char bucket[64];
            memcpy(bucket, b, blen);
            bucket[blen] = '\0';
            const char *prefix = slash != NULL ? slash + 1 : "";
            size_t plen = strlen(prefix);
            while (plen > 0 && prefix[plen - 1] == '/')
                plen--;
            if (plen > 0) {
                s->root = sdk_xmalloc(plen + 2);
                memcpy(s->root, prefix, plen);
                s->root[plen] = '/';
                s->root[plen + 1] = '\0';
            } else {
                s->root = sdk_xstrdup("");
            }
            if (plen > 0 && !key_valid(s->root, true)) {
                snprintf(err, errlen, "store URL \"%s\": the prefix may hold only letters, digits, '.', '_', '-' "
                                      "and '/'", url);
                rv = -EINVAL;
            } else {
                rv = store_s3_open(s, cfg, bucket, err, errlen);
            }
        }
    } else {
        snprintf(err, errlen, "store URL \"%s\" is neither file:///DIR nor s3://BUCKET/PREFIX", url);
        rv = -EINVAL;
    }
    if (rv != 0) {
        free(s->root);
        free(s->url);
        free(s);
        return rv;
    }
    uv_timer_init(loop, &s->done_timer);
    s->done_timer.data = s;
    *out = s;
    return 0;
}

const char *wal_store_url(const struct wal_store *s) { return s->url; }

void wal_store_cancel(struct wal_store *s) { s->be->cancel(s); }

static void on_timer_closed(uv_handle_t *h)
{
    struct wal_store *s = h->data;
    free(s->root);
    free(s->url);
    free(s);
}

void wal_store_close(struct wal_store *s)
{
    if (s == NULL)
        return;
    s->be->close(s);
    uv_close((uv_handle_t *)&s->done_timer, on_timer_closed);
}
