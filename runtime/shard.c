/*
 * shard.c: shard threads and the messages between them.
 *
 * Each shard is one thread running one libuv loop. Shards share nothing but
 * their inboxes: a lock-free multi-producer stack that the owner takes whole
 * and reverses (so each producer's messages keep their order), plus a
 * uv_async_t to wake the loop. A message posted to the shard itself goes on a
 * plain local list drained on the next loop turn, never inside the caller,
 * so h2o and wslay callbacks are never re-entered.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"
#include "wal.h"

struct rt_host rt_host;

void rt_msg_free(struct rt_msg *m)
{
    switch (m->type) {
    case RT_MSG_REPLY: {
        struct rt_reply *r = (struct rt_reply *)m;
        free(r->headers);
        free(r->body);
        break;
    }
    case RT_MSG_WS_OUT:
        free(((struct rt_ws_out *)m)->out);
        break;
    case RT_MSG_FWD_REPLY:
        free(((struct rt_fwd_reply *)m)->headers);
        free(((struct rt_fwd_reply *)m)->body);
        break;
    case RT_MSG_FWD_WS:
        free(((struct rt_fwd_ws *)m)->data);
        break;
    case RT_MSG_REPL:
        repl_msg_release(&((struct rt_repl_msg *)m)->m);
        break;
    case RT_MSG_DURABLE:
        /* Never dropped: it carries the journal's answers. */
        RT_ERROR("msg=\"bug: a journal answer was freed unread\"");
        abort();
    default:
        break;
    }
    free(m);
}

static void dispatch(struct rt_shard *s, struct rt_msg *m)
{
    switch (m->type) {
    case RT_MSG_EVENT:
        rt_actors_on_event(s, (struct rt_event *)m);
        break;
    case RT_MSG_REPLY:
        rt_front_on_reply(s, (struct rt_reply *)m);
        break;
    case RT_MSG_WS_OUT:
        rt_front_on_ws_out(s, (struct rt_ws_out *)m);
        break;
    case RT_MSG_DURABLE:
        rt_durable_on_msg(s, (struct rt_durable_msg *)m);
        break;
    case RT_MSG_STOP:
        /* No new events from here on (they get 503); the journal may still
         * answer for the ones already submitted. */
        free(m);
        s->stopping = true;
        rt_front_stop(s);
        uv_sem_post(&rt_host.stopped);
        break;
    case RT_MSG_SNAPSHOT:
        rt_actors_on_snapshot(s, (struct rt_snapshot_msg *)m);
        break;
    case RT_MSG_REPL:
        rt_leader_on_msg(s, (struct rt_repl_msg *)m);
        break;
    case RT_MSG_UPLOADED:
        rt_leader_on_uploaded(s, (struct rt_uploaded_msg *)m);
        break;
    case RT_MSG_FWD_REPLY:
        rt_front_on_fwd_reply(s, (struct rt_fwd_reply *)m);
        break;
    case RT_MSG_FWD_WS:
        rt_front_on_fwd_ws(s, (struct rt_fwd_ws *)m);
        break;
    case RT_MSG_RECONFIG:
        free(m);
        rt_leaders_reconfigured(s);
        break;
    case RT_MSG_FINISH:
        free(m);
        rt_leaders_stop(s);
        rt_actors_stop(s);
        uv_stop(&s->loop);
        break;
    }
}

static void on_wake(uv_async_t *h)
{
    struct rt_shard *s = h->data;
    struct rt_msg *m = atomic_exchange_explicit(&s->inbox_head, NULL, memory_order_acquire);
    struct rt_msg *fifo = NULL;
    while (m != NULL) {
        struct rt_msg *next = atomic_load_explicit(&m->next, memory_order_relaxed);
        atomic_store_explicit(&m->next, fifo, memory_order_relaxed);
        fifo = m;
        m = next;
    }
    while (fifo != NULL) {
        struct rt_msg *next = atomic_load_explicit(&fifo->next, memory_order_relaxed);
        dispatch(s, fifo);
        fifo = next;
    }
}

static void on_local(uv_idle_t *h)
{
    struct rt_shard *s = h->data;
    /* Take the list: messages posted while dispatching wait for the next turn. */
    struct rt_msg *m = s->local_head;
    s->local_head = NULL;
    s->local_tail = &s->local_head;
    uv_idle_stop(&s->local_idle);
    while (m != NULL) {
        struct rt_msg *next = atomic_load_explicit(&m->next, memory_order_relaxed);
        dispatch(s, m);
        m = next;
    }
}

void rt_shard_post(struct rt_shard *from, unsigned to, struct rt_msg *m)
{
    struct rt_shard *t = &rt_host.shards[to];
    if (from == t) {
        atomic_store_explicit(&m->next, NULL, memory_order_relaxed);
        *t->local_tail = m;
        t->local_tail = (struct rt_msg **)&m->next;
        uv_idle_start(&t->local_idle, on_local);
        return;
    }
    struct rt_msg *head = atomic_load_explicit(&t->inbox_head, memory_order_relaxed);
    do {
        atomic_store_explicit(&m->next, head, memory_order_relaxed);
    } while (!atomic_compare_exchange_weak_explicit(&t->inbox_head, &head, m, memory_order_release,
                                                    memory_order_relaxed));
    uv_async_send(&t->wake);
}

bool rt_shard_event_reserve(unsigned to)
{
    struct rt_shard *t = &rt_host.shards[to];
    unsigned n = atomic_fetch_add_explicit(&t->inflight, 1, memory_order_relaxed);
    /* Records still on their way to the journal count too: a slow disk fills
     * the gates, and that is back-pressure, not memory without a bound. */
    n += atomic_load_explicit(&t->records_inflight, memory_order_relaxed);
    if (n >= rt_host.config->max_inflight) {
        atomic_fetch_sub_explicit(&t->inflight, 1, memory_order_relaxed);
        return false;
    }
    return true;
}

void rt_shard_event_done(struct rt_shard *s)
{
    atomic_fetch_sub_explicit(&s->inflight, 1, memory_order_relaxed);
}

static int shard_init(struct rt_shard *s, unsigned id, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    s->id = id;
    s->config = rt_host.config;
    s->local_tail = &s->local_head;
    atomic_init(&s->inbox_head, NULL);
    atomic_init(&s->inflight, 0);
    atomic_init(&s->records_inflight, 0);
    int rc = uv_loop_init(&s->loop);
    if (rc != 0) {
        snprintf(err, errlen, "shard %u: uv_loop_init: %s", id, uv_strerror(rc));
        return DOBJ_EIO;
    }
    s->loop.data = s;
    uv_async_init(&s->loop, &s->wake, on_wake);
    s->wake.data = s;
    uv_idle_init(&s->loop, &s->local_idle);
    s->local_idle.data = s;
    rt_actors_start(s);
    rt_leaders_start(s);
    return rt_front_start(s, err, errlen);
}

static void shard_main(void *arg)
{
    struct rt_shard *s = arg;
    char name[16];
    snprintf(name, sizeof(name), "dobj-shard%u", s->id);
    pthread_setname_np(pthread_self(), name); /* for top -H and perf */
    uv_run(&s->loop, UV_RUN_DEFAULT);
}

static uv_signal_t stop_signals[2], hup_signal;

static void post_all(enum rt_msg_type type)
{
    for (unsigned i = 0; i < rt_host.nshards; i++) {
        struct rt_msg *m = sdk_xcalloc(1, sizeof(*m));
        m->type = type;
        rt_shard_post(NULL, i, m);
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    (void)h;
    RT_INFO("msg=\"stopping\" signal=%d", signum);
    post_all(RT_MSG_STOP);
    /* With no handle left, the main loop returns and joins the shards. */
    for (int i = 0; i < 2; i++)
        uv_close((uv_handle_t *)&stop_signals[i], NULL);
    if (uv_is_active((uv_handle_t *)&hup_signal))
        uv_close((uv_handle_t *)&hup_signal, NULL);
}

/* SIGHUP on a cluster host: the cluster file again (cluster.c says what may
 * change); a file that can not follow the loaded one is refused and logged,
 * and the loaded one stays. */
static void on_hup(uv_signal_t *h, int signum)
{
    (void)h;
    (void)signum;
    char err[1024];
    if (rt_cluster_reload(err, sizeof(err)) != 0) {
        RT_ERROR("msg=\"cluster file not loaded: the loaded one stays\" file=%s err=\"%s\"",
                 rt_host.config->cluster_file, err);
        return;
    }
    post_all(RT_MSG_RECONFIG);
}

int rt_host_run(struct rt_config *c)
{
    char err[1024];
    rt_host.config = c;
    rt_host.nshards = c->shards;
    rt_host.shards = sdk_xcalloc(c->shards, sizeof(struct rt_shard));
    signal(SIGPIPE, SIG_IGN);
    rt_durable_init_logging();
    if (wal_memvfs_register() != 0) {
        fprintf(stderr, "dobj: can not register the SQLite VFS\n");
        return 1;
    }
    uint32_t first_segment = 1, keep_from = 1;
    int64_t t0 = rt_now_us();
    if (c->cluster != NULL) {
        /* A cluster host: the replica journal is read back instead, and the
         * objects' files are rebuilt by their leaders (cluster.c). */
        if (rt_durable_start(c, 1, 1, err, sizeof(err)) != 0 || rt_cluster_start(c, err, sizeof(err)) != 0) {
            fprintf(stderr, "dobj: %s\n", err);
            return 1;
        }
    } else {
        if (rt_recover(c, &first_segment, &keep_from, err, sizeof(err)) != 0) {
            fprintf(stderr, "dobj: %s\n", err);
            return 1;
        }
        RT_INFO("msg=\"recovered\" took_ms=%lld", (long long)((rt_now_us() - t0) / 1000));
        if (rt_durable_start(c, first_segment, keep_from, err, sizeof(err)) != 0 ||
            rt_recover_uploads(c, err, sizeof(err)) != 0) {
            fprintf(stderr, "dobj: %s\n", err);
            return 1;
        }
    }
    uv_sem_init(&rt_host.stopped, 0);
    /* Listeners bind here, before any thread starts, so a busy port is an
     * error at start. */
    for (unsigned i = 0; i < c->shards; i++) {
        if (shard_init(&rt_host.shards[i], i, err, sizeof(err)) != 0) {
            fprintf(stderr, "dobj: %s\n", err);
            return 1;
        }
    }
    atomic_store(&rt_host.shards_ready, true);
    uv_loop_t *main_loop = uv_default_loop();
    static const int signums[2] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) {
        uv_signal_init(main_loop, &stop_signals[i]);
        uv_signal_start(&stop_signals[i], on_signal, signums[i]);
    }
    if (c->cluster != NULL) {
        uv_signal_init(main_loop, &hup_signal);
        uv_signal_start(&hup_signal, on_hup, SIGHUP);
    }
    for (unsigned i = 0; i < c->shards; i++)
        uv_thread_create(&rt_host.shards[i].thread, shard_main, &rt_host.shards[i]);
    RT_INFO("msg=\"serving\" listen=http://%s:%d shards=%u data=%s classes=%u", c->listen_host, c->listen_port,
            c->shards, c->data_dir, c->nclasses);
    uv_run(main_loop, UV_RUN_DEFAULT);
    /* Every shard has stopped taking events: drain the journal, whose answers
     * reach the shards before FINISH does, then close the databases. */
    for (unsigned i = 0; i < c->shards; i++)
        uv_sem_wait(&rt_host.stopped);
    rt_durable_stop();
    atomic_store(&rt_host.shards_ready, false); /* forwards from other hosts get 503 now */
    post_all(RT_MSG_FINISH);
    for (unsigned i = 0; i < c->shards; i++)
        uv_thread_join(&rt_host.shards[i].thread);
    rt_cluster_stop();
    rt_cluster_destroy();
    rt_durable_destroy();
    RT_INFO("msg=\"stopped\"");
    return 0;
}
