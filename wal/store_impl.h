/*
 * store_impl.h: what store.c (the interface, the file backend) and
 * store_s3.c (the S3 backend) share. Not for use outside wal/.
 */
#ifndef WAL_STORE_IMPL_H
#define WAL_STORE_IMPL_H

#include <uv.h>

#include "wal.h"

enum store_op { STORE_PUT, STORE_GET, STORE_LIST, STORE_DELETE };

/* One operation in flight; the backend completes it with store_finish(). */
struct store_req {
    struct store_req *next;
    struct wal_store *store;
    enum store_op op;
    char *key; /* or the list prefix */
    const uint8_t *body;
    size_t body_len;
    wal_store_cb cb;
    void *arg;
    struct wal_store_result res;
};

struct store_backend {
    void (*start)(struct store_req *r);
    /* Ends every request in flight with -ECANCELED (callbacks on the next
     * loop turn, as always). */
    void (*cancel)(struct wal_store *s);
    void (*close)(struct wal_store *s);
};

struct wal_store {
    const struct store_backend *be;
    uv_loop_t *loop;
    char *url;
    char *root;   /* file: the directory; s3: the key prefix ("" or "p/") */
    void *impl;   /* the backend's own */
    unsigned pending;
    /* Completed requests, called back on the next loop turn. */
    struct store_req *done_head, **done_tail;
    uv_timer_t done_timer;
};

/* Completes `r` on the next loop turn (its callback, then it is freed). */
void store_finish(struct store_req *r);
void store_errf(struct store_req *r, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

int store_s3_open(struct wal_store *s, const struct wal_store_config *cfg, const char *bucket, char *err,
                  size_t errlen);
/* Sorts entries by key. */
void store_entries_sort(struct wal_store_entry *v, size_t n);

#endif /* WAL_STORE_IMPL_H */
