/*
 * util.c: memory, arena, buffers, UTF-8, percent-decoding and JSON escaping.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdk.h"
#include "sdk_util.h"

static void oom(size_t size)
{
    fprintf(stderr, "dobj: out of memory allocating %zu bytes\n", size);
    abort();
}

void *sdk_xmalloc(size_t size)
{
    void *p = malloc(size == 0 ? 1 : size);
    if (p == NULL)
        oom(size);
    return p;
}

void *sdk_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);
    if (p == NULL)
        oom(n * size);
    return p;
}

void *sdk_xrealloc(void *p, size_t size)
{
    p = realloc(p, size == 0 ? 1 : size);
    if (p == NULL)
        oom(size);
    return p;
}

char *sdk_xstrdup(const char *s) { return sdk_xstrndup(s, strlen(s)); }

void *sdk_xmemdup(const void *p, size_t len)
{
    void *d = sdk_xmalloc(len > 0 ? len : 1);
    memcpy(d, p, len);
    return d;
}

char *sdk_xstrndup(const char *s, size_t len)
{
    char *d = sdk_xmalloc(len + 1);
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

/* ---- arena ------------------------------------------------------------- */

struct sdk_arena_chunk {
    struct sdk_arena_chunk *next;
    size_t cap;
    size_t used;
    _Alignas(16) char data[];
};

#define ARENA_CHUNK_MIN 4000

void sdk_arena_init(struct sdk_arena *a) { memset(a, 0, sizeof(*a)); }

void sdk_arena_close(struct sdk_arena *a)
{
    struct sdk_arena_chunk *c = a->head;
    while (c != NULL) {
        struct sdk_arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}

void *sdk_arena_alloc(struct sdk_arena *a, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    struct sdk_arena_chunk *c = a->head;
    if (c == NULL || c->cap - c->used < size) {
        size_t cap = size > ARENA_CHUNK_MIN ? size : ARENA_CHUNK_MIN;
        c = sdk_xmalloc(sizeof(*c) + cap);
        c->cap = cap;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += size;
    return p;
}

char *sdk_arena_strndup(struct sdk_arena *a, const char *s, size_t len)
{
    char *d = sdk_arena_alloc(a, len + 1);
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

char *sdk_arena_vprintf(struct sdk_arena *a, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        n = 0;
    char *s = sdk_arena_alloc(a, (size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

/* ---- buffers ----------------------------------------------------------- */

void sdk_buf_reserve(struct sdk_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra + 1)
        return;
    size_t cap = b->cap == 0 ? 256 : b->cap;
    while (cap - b->len < extra + 1)
        cap *= 2;
    b->data = sdk_xrealloc(b->data, cap);
    b->cap = cap;
}

void sdk_buf_append(struct sdk_buf *b, const void *data, size_t len)
{
    sdk_buf_reserve(b, len);
    if (len > 0)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void sdk_buf_vprintf(struct sdk_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n <= 0)
        return;
    sdk_buf_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void sdk_buf_printf(struct sdk_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sdk_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void sdk_buf_json_error(struct sdk_buf *b, const char *msg)
{
    sdk_buf_append(b, "{\"error\":", 9);
    sdk_buf_json_str(b, msg, strlen(msg));
    sdk_buf_append(b, "}\n", 2);
}

char *sdk_buf_steal(struct sdk_buf *b, size_t *len)
{
    char *d = b->data;
    if (len != NULL)
        *len = b->len;
    memset(b, 0, sizeof(*b));
    return d;
}

void sdk_buf_close(struct sdk_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

void sdk_buf_json_str(struct sdk_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    sdk_buf_reserve(b, len + 2);
    sdk_buf_append(b, "\"", 1);
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        if (c >= 0x80) {
            size_t n = sdk_utf8_seq_len(p + i, len - i);
            if (n == 0) {
                sdk_buf_append(b, "\xEF\xBF\xBD", 3);
                i++;
            } else {
                sdk_buf_append(b, p + i, n);
                i += n;
            }
            continue;
        }
        char esc[7];
        switch (c) {
        case '"':
            sdk_buf_append(b, "\\\"", 2);
            break;
        case '\\':
            sdk_buf_append(b, "\\\\", 2);
            break;
        case '\n':
            sdk_buf_append(b, "\\n", 2);
            break;
        case '\r':
            sdk_buf_append(b, "\\r", 2);
            break;
        case '\t':
            sdk_buf_append(b, "\\t", 2);
            break;
        default:
            if (c < 0x20 || c == 0x7f) {
                memcpy(esc, "\\u00", 4);
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 15];
                sdk_buf_append(b, esc, 6);
            } else {
                sdk_buf_append(b, &p[i], 1);
            }
        }
        i++;
    }
    sdk_buf_append(b, "\"", 1);
}

/* ---- UTF-8 and percent-decoding ---------------------------------------- */

size_t sdk_utf8_seq_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

bool sdk_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t n = sdk_utf8_seq_len(p + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

long sdk_percent_decode(char *dst, const char *src, size_t len, bool plus_space)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (c == '%') {
            if (i + 2 >= len)
                return -1;
            int h = hexval(src[i + 1]);
            int l = hexval(src[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            dst[o++] = (char)(h << 4 | l);
            i += 2;
        } else if (c == '+' && plus_space) {
            dst[o++] = ' ';
        } else {
            dst[o++] = c;
        }
    }
    return (long)o;
}

const char *sdk_query_param(struct sdk_arena *a, const char *query, const char *key)
{
    size_t klen = strlen(key);
    const char *p = query;
    while (p != NULL && *p != '\0') {
        const char *end = strchr(p, '&');
        size_t plen = end != NULL ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', plen);
        size_t nlen = eq != NULL ? (size_t)(eq - p) : plen;
        char *name = sdk_arena_alloc(a, nlen + 1);
        long n = sdk_percent_decode(name, p, nlen, true);
        if (n >= 0 && (size_t)n == klen && memcmp(name, key, klen) == 0) {
            size_t vlen = eq != NULL ? plen - nlen - 1 : 0;
            char *val = sdk_arena_alloc(a, vlen + 1);
            long m = eq != NULL ? sdk_percent_decode(val, eq + 1, vlen, true) : 0;
            if (m < 0)
                return NULL;
            val[m] = '\0';
            return val;
        }
        p = end != NULL ? end + 1 : NULL;
    }
    return NULL;
}
