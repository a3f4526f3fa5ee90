/*
 * sdk_util.h: small text and memory helpers shared by the SDK and the runtime.
 * Out of memory aborts (sdk_xmalloc): limits keep memory bounded instead.
 */
#ifndef SDK_UTIL_H
#define SDK_UTIL_H

#include <stdbool.h>
#include <stddef.h>

void *sdk_xmalloc(size_t size);
void *sdk_xcalloc(size_t n, size_t size);
void *sdk_xrealloc(void *p, size_t size);
/* A malloc'd copy of p[0..len). */
void *sdk_xmemdup(const void *p, size_t len);
/* Copies len bytes and adds a NUL. */
char *sdk_xstrndup(const char *s, size_t len);
char *sdk_xstrdup(const char *s);

/* True if s[0..len) is well-formed UTF-8 (no overlongs, no surrogates, at most
 * U+10FFFF). */
bool sdk_utf8_valid(const char *s, size_t len);
/* Length of the valid UTF-8 sequence at s (1-4), or 0 if none starts there. */
size_t sdk_utf8_seq_len(const unsigned char *s, size_t avail);

/* Percent-decodes src[0..len) into dst (at least len bytes). `plus_space`
 * turns '+' into ' ' (query strings). Returns the decoded length, or -1 for a
 * malformed escape. dst may equal src. */
long sdk_percent_decode(char *dst, const char *src, size_t len, bool plus_space);

#endif /* SDK_UTIL_H */
