/*
 * durable.c: the durability point, the one place that decides when an
 * object's committed records are durable and may release its output gate.
 *
 * Now: SQLite's own commit with synchronous=FULL fsyncs the WAL before COMMIT
 * returns, so a record is durable as soon as the event committed. The host
 * journal (replicate/) replaces this with group-committed fsyncs on its own
 * thread, reporting back through rt_actor_durable() later; the rest of the
 * runtime does not change.
 */
#include "runtime.h"

void rt_durable_submit(struct rt_shard *s, struct rt_actor *a, uint64_t lsn)
{
    rt_actor_durable(s, a, lsn);
}

const char *rt_durable_sqlite_synchronous(void) { return "FULL"; }
