/*
 * fetch.c: an object's database rebuilt from object storage when its local
 * file is gone (a new host, a wiped disk). Recovery calls it before the
 * shards run, for an object whose journal records do not start at lsn 1;
 * activation calls it on the thread pool for a file that does not exist, so
 * a shard's loop never waits on the store.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "runtime.h"
#include "wal.h"

/* The most a request for an object whose file is missing waits on the store. */
#define FETCH_TIMEOUT_MS 5000

int rt_fetch_object(const struct rt_config *c, const char *cls, const uint8_t id[16], const char *path,
                    uint64_t *lsn, char *err, size_t errlen)
{
    if (strcmp(c->store_url, "none") == 0)
        return -ENOENT;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct wal_store *store = NULL;
    struct wal_store_config sc = rt_store_config(c);
    if (cls != NULL) {
        /* At activation a client waits: one quick attempt, then 503. */
        sc.attempts = 1;
        if (sc.timeout_ms > FETCH_TIMEOUT_MS)
            sc.timeout_ms = FETCH_TIMEOUT_MS;
    }
    int rv = wal_store_open(&store, &sc, &loop, err, errlen);
    if (rv == 0)
        rv = rt_mkdir_parents(path);
    if (rv == 0)
        rv = -ENOENT;
    for (unsigned i = 0; rv == -ENOENT; i++) {
        const char *k = cls;
        if (k == NULL) {
            const struct rt_class *rc = rt_class_at(i);
            if (rc == NULL)
                break;
            k = rc->cls->name;
        } else if (i > 0) {
            break;
        }
        char prefix[256];
        wal_object_prefix(prefix, sizeof(prefix), k, id);
        struct wal_restore_opts o = {.object_prefix = prefix, .lsn = WAL_LSN_LATEST, .out = path};
        struct wal_restore_result res;
        rv = wal_restore(store, &o, &res, err, errlen);
        if (rv == 0) {
            *lsn = res.lsn;
            RT_INFO("msg=\"rebuilt a missing database from object storage\" object=%s file=%s lsn=%llu "
                    "bytes=%llu",
                    prefix, path, (unsigned long long)res.lsn, (unsigned long long)res.db_bytes);
            break;
        }
    }
    if (store != NULL)
        wal_store_close(store);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return rv;
}

int rt_restore_object(const struct rt_config *c, const char *cls, const uint8_t id[16], uint64_t lsn, int64_t at_us,
                      const char *path, uint64_t *got, char *err, size_t errlen)
{
    if (strcmp(c->store_url, "none") == 0) {
        snprintf(err, errlen, "no object storage is configured (store = none)");
        return -ENOENT;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct wal_store *store = NULL;
    struct wal_store_config sc = rt_store_config(c);
    int rv = wal_store_open(&store, &sc, &loop, err, errlen);
    if (rv == 0)
        rv = rt_mkdir_parents(path);
    if (rv == 0) {
        char prefix[256];
        wal_object_prefix(prefix, sizeof(prefix), cls, id);
        struct wal_restore_opts o = {.object_prefix = prefix, .lsn = lsn, .at_us = at_us, .out = path};
        struct wal_restore_result res;
        rv = wal_restore(store, &o, &res, err, errlen);
        if (rv == 0)
            *got = res.lsn;
    }
    if (store != NULL)
        wal_store_close(store);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return rv;
}
