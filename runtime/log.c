/*
 * log.c: one line per message on stderr: time, level, message, source.
 * RT_LOG checks the level before its arguments are evaluated.
 */
#include <stdarg.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

#include "runtime.h"

int rt_log_level = RT_LOG_INFO;

void rt_log_write(int level, const char *file, int line, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[32];
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    /* One fprintf per line keeps lines of different threads whole. */
    fprintf(stderr, "%s.%03ldZ level=%s %s src=%s:%d\n", ts, (long)tv.tv_usec / 1000, names[level], msg, file, line);
}

int64_t rt_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
