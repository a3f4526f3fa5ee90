/*
 * durable.c: the durability point, the one place that decides when an
 * object's committed records are durable and may release its output gate.
 *
 * On a single host that is the host journal (replicate/): SQLite files run
 * with synchronous=OFF, every event's record goes to the journal thread, and
 * the journal's answer comes back to the actor's shard as one RT_MSG_DURABLE
 * per batch and shard. The quorum protocol of the cluster plugs in here.
 */
#include <stdio.h>
#include <stdlib.h>

#include "runtime.h"

static void on_journal_done(void *arg, unsigned route, struct repl_entry *list)
{
    (void)arg;
    struct rt_durable_msg *m = sdk_xcalloc(1, sizeof(*m));
    m->msg.type = RT_MSG_DURABLE;
    m->list = list;
    rt_shard_post(NULL, route, &m->msg);
}

static void log_bridge(int level, const char *msg) { RT_LOG(level, "%s", msg); }

void rt_durable_init_logging(void) { repl_set_logger(log_bridge); }

int rt_durable_start(struct rt_config *c, uint32_t first_segment, char *err, size_t errlen)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/journal", c->data_dir);
    struct repl_journal_config jc = {
        .dir = dir,
        .segment_bytes = c->journal_segment_bytes,
        .no_uring = getenv("DOBJ_NO_URING") != NULL,
        .done_cb = on_journal_done,
        .done_arg = NULL,
    };
    return repl_journal_create(&rt_host.journal, &jc, first_segment, err, errlen);
}

void rt_durable_stop(void)
{
    if (rt_host.journal != NULL)
        repl_journal_stop(rt_host.journal);
}

void rt_durable_destroy(void)
{
    if (rt_host.journal != NULL)
        repl_journal_destroy(rt_host.journal);
    rt_host.journal = NULL;
}

void rt_durable_submit(struct rt_shard *s, struct rt_actor *a, uint64_t lsn, uint8_t *rec, size_t len)
{
    atomic_fetch_add_explicit(&s->records_inflight, 1, memory_order_relaxed);
    struct repl_entry *e = sdk_xcalloc(1, sizeof(*e));
    e->route = s->id;
    e->owner = a;
    e->lsn = lsn;
    e->data = rec;
    e->len = len;
    repl_journal_submit(rt_host.journal, e);
}

void rt_durable_on_msg(struct rt_shard *s, struct rt_durable_msg *m)
{
    struct repl_entry *e = m->list;
    free(m);
    while (e != NULL) {
        struct repl_entry *next = e->next;
        atomic_fetch_sub_explicit(&s->records_inflight, 1, memory_order_relaxed);
        rt_actor_pin(e->owner, e->segment);
        rt_actor_durable(s, e->owner, e->lsn);
        free(e->data);
        free(e);
        e = next;
    }
}

void rt_durable_release(uint32_t segment)
{
    if (rt_host.journal != NULL)
        repl_journal_release(rt_host.journal, segment);
}

void rt_durable_stats(struct repl_stats *out)
{
    if (rt_host.journal != NULL)
        repl_journal_stats(rt_host.journal, out);
}

const char *rt_durable_sqlite_synchronous(void) { return "OFF"; }
