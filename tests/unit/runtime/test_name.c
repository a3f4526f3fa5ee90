/*
 * test_name.c: runtime/name.c: class names, object names, and the shard hash
 * and file id derived from them.
 */
#include <criterion/criterion.h>
#include <string.h>
#include <xxhash.h>

#include "runtime.h"

/* ---- class names --------------------------------------------------------- */

static bool class_ok(const char *s) { return rt_class_name_valid(s, strlen(s)); }

Test(class_name, valid)
{
    cr_assert(class_ok("counter"));
    cr_assert(class_ok("a"));
    cr_assert(class_ok("chat-room_2"));
    cr_assert(class_ok("0"));
    cr_assert(class_ok("a_"));
    char s[65];
    memset(s, 'a', 64);
    s[64] = '\0';
    cr_assert(class_ok(s), "64 bytes is the limit, not over it");
}

Test(class_name, invalid)
{
    cr_assert_not(rt_class_name_valid("", 0));
    char s[66];
    memset(s, 'a', 65);
    s[65] = '\0';
    cr_assert_not(class_ok(s));
    cr_assert_not(class_ok("_counter"));
    cr_assert_not(class_ok("_"));
    cr_assert_not(class_ok("Counter"));
    cr_assert_not(class_ok("counteR"));
    cr_assert_not(class_ok("a/b"));
    cr_assert_not(class_ok("a b"));
    cr_assert_not(class_ok("a.b"));
    cr_assert_not(class_ok("a%2f"));
    cr_assert_not(class_ok("caf\xC3\xA9"));
    cr_assert_not(rt_class_name_valid("a\0b", 3));
}

Test(class_name, length_is_respected)
{
    /* Only the first len bytes count: what follows the class in a path. */
    cr_assert(rt_class_name_valid("counter/alice", 7));
    cr_assert_not(rt_class_name_valid("counter/alice", 8));
}

/* ---- object names -------------------------------------------------------- */

static char out[RT_NAME_MAX + 1];

/* Decodes `raw`; on success checks the NUL and returns the length. */
static long decode(const char *raw, const char **why)
{
    *why = NULL;
    long n = rt_name_decode(raw, strlen(raw), out, why);
    if (n >= 0) {
        cr_assert_null(*why, "why set on success");
        cr_assert_eq(out[n], '\0');
    } else {
        cr_assert_eq(n, -1);
        cr_assert_not_null(*why, "no reason for refusing '%.40s'", raw);
        cr_assert_gt(strlen(*why), 10, "reason '%s' is not a sentence", *why);
    }
    return n;
}

/* `raw` repeated `times`, in a buffer that the caller frees. */
static char *repeat(const char *raw, size_t times, const char *tail)
{
    size_t len = strlen(raw);
    char *s = malloc(len * times + strlen(tail) + 1);
    cr_assert_not_null(s);
    for (size_t i = 0; i < times; i++)
        memcpy(s + i * len, raw, len);
    strcpy(s + len * times, tail);
    return s;
}

Test(object_name, ok)
{
    const char *why;
    cr_assert_eq(decode("alice", &why), 5);
    cr_assert_str_eq(out, "alice");
    cr_assert_eq(decode("a%2Fb", &why), 3);
    cr_assert_str_eq(out, "a/b");
    cr_assert_eq(decode("caf%C3%A9", &why), 5);
    cr_assert_str_eq(out, "caf\xC3\xA9");
    cr_assert_eq(decode("caf\xC3\xA9", &why), 5);
    /* Paths are not query strings: '+' stays a plus. */
    cr_assert_eq(decode("a+b", &why), 3);
    cr_assert_str_eq(out, "a+b");
    cr_assert_eq(decode("%20", &why), 1);
    cr_assert_str_eq(out, " ");
}

Test(object_name, empty)
{
    const char *why;
    cr_assert_eq(decode("", &why), -1);
    cr_assert_not_null(strstr(why, "empty"), "why: %s", why);
}

Test(object_name, length_limit_after_decoding)
{
    const char *why;
    char *s = repeat("x", 512, "");
    cr_assert_eq(decode(s, &why), 512);
    cr_assert_eq(memcmp(out, s, 512), 0);
    free(s);

    s = repeat("x", 513, "");
    cr_assert_eq(decode(s, &why), -1);
    cr_assert_not_null(strstr(why, "512"), "why: %s", why);
    free(s);

    /* 1536 raw bytes that decode to 512: accepted. */
    s = repeat("%78", 512, "");
    cr_assert_eq(strlen(s), 1536);
    cr_assert_eq(decode(s, &why), 512);
    cr_assert_eq(out[0], 'x');
    cr_assert_eq(out[511], 'x');
    free(s);

    /* 1535 raw bytes (under the raw bound) that decode to 513: refused. */
    s = repeat("%78", 511, "xx");
    cr_assert_eq(strlen(s), 1535);
    cr_assert_eq(decode(s, &why), -1);
    cr_assert_not_null(strstr(why, "512"), "why: %s", why);
    free(s);

    s = repeat("%78", 513, "");
    cr_assert_eq(decode(s, &why), -1);
    free(s);

    /* Multi-byte characters count in bytes: 256 × 2 bytes fits, 257 does not. */
    s = repeat("%C3%A9", 256, "");
    cr_assert_eq(decode(s, &why), 512);
    free(s);
    s = repeat("\xC3\xA9", 256, "x");
    cr_assert_eq(decode(s, &why), -1);
    free(s);
}

Test(object_name, nul_refused)
{
    const char *why;
    cr_assert_eq(decode("%00", &why), -1);
    cr_assert_not_null(strstr(why, "NUL"), "why: %s", why);
    cr_assert_eq(decode("a%00b", &why), -1);
    cr_assert_eq(rt_name_decode("a\0b", 3, out, &why), -1, "a raw NUL byte");
}

Test(object_name, invalid_utf8_refused)
{
    const char *why;
    cr_assert_eq(decode("%FF", &why), -1);
    cr_assert_not_null(strstr(why, "UTF-8"), "why: %s", why);
    cr_assert_eq(decode("%C0%80", &why), -1);
    cr_assert_eq(decode("%ED%A0%80", &why), -1);
    cr_assert_eq(decode("%F4%90%80%80", &why), -1);
    cr_assert_eq(decode("caf%C3", &why), -1);
    cr_assert_eq(decode("\xFF", &why), -1);
}

Test(object_name, malformed_escape)
{
    const char *why;
    cr_assert_eq(decode("%zz", &why), -1);
    cr_assert_not_null(strstr(why, "escape"), "why: %s", why);
    cr_assert_eq(decode("abc%", &why), -1);
    cr_assert_eq(decode("abc%4", &why), -1);
    cr_assert_eq(decode("%g0", &why), -1);
}

Test(object_name, failure_leaves_out_untouched)
{
    const char *why;
    memset(out, 'Q', sizeof(out));
    cr_assert_eq(rt_name_decode("ab%00", 5, out, &why), -1);
    cr_assert_eq(rt_name_decode("ab%FF", 5, out, &why), -1);
    cr_assert_eq(out[0], 'Q');
    cr_assert_eq(out[2], 'Q');
}

Test(object_name, length_is_respected)
{
    const char *why;
    cr_assert_eq(rt_name_decode("alice/rest", 5, out, &why), 5);
    cr_assert_str_eq(out, "alice");
}

/* ---- hashes -------------------------------------------------------------- */

Test(object_hash, stable_and_keyed_by_class_and_name)
{
    uint64_t h = rt_object_hash("counter", "alice", 5);
    cr_assert_eq(h, rt_object_hash("counter", "alice", 5));
    /* The name's length, not its terminator, counts. */
    cr_assert_eq(h, rt_object_hash("counter", "alice-and-more", 5));
    cr_assert_neq(h, rt_object_hash("counter", "alicf", 5));
    cr_assert_neq(h, rt_object_hash("counters", "alice", 5));
    cr_assert_neq(h, rt_object_hash("chat", "alice", 5));
    /* The same as the hash of "class/name": pinned, since shards depend on it. */
    cr_assert_eq(h, XXH3_64bits("counter/alice", 13));
}

Test(object_hash, separator_keeps_splits_apart)
{
    cr_assert_neq(rt_object_hash("ab", "c", 1), rt_object_hash("a", "bc", 2));
    cr_assert_neq(rt_object_hash("a", "b/c", 3), rt_object_hash("a-b", "c", 1));
}

Test(object_hash, longest_inputs)
{
    char cls[RT_CLASS_NAME_MAX + 1];
    memset(cls, 'c', RT_CLASS_NAME_MAX);
    cls[RT_CLASS_NAME_MAX] = '\0';
    char name[RT_NAME_MAX];
    memset(name, 'n', sizeof(name));
    uint64_t h = rt_object_hash(cls, name, sizeof(name));
    cr_assert_eq(h, rt_object_hash(cls, name, sizeof(name)));
    cr_assert_neq(h, rt_object_hash(cls, name, sizeof(name) - 1));
}

static void file_id(const char *cls, const char *name, char id[33])
{
    memset(id, '?', 33);
    rt_object_file_id(cls, name, strlen(name), id);
    cr_assert_eq(id[32], '\0');
    cr_assert_eq(strlen(id), 32);
    for (int i = 0; i < 32; i++)
        cr_assert((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f'), "'%c' in %s", id[i], id);
}

Test(object_file_id, lowercase_hex_of_sha256)
{
    char id[33];
    file_id("counter", "alice", id);
    /* The first 16 bytes of SHA-256("counter/alice"), from sha256sum. */
    cr_assert_str_eq(id, "22366d3f8ec56054789f2b258ae4d219");
}

Test(object_file_id, differs_per_object)
{
    char a[33], b[33], c[33], d[33], e[33];
    file_id("counter", "alice", a);
    file_id("counter", "bob", b);
    file_id("chat", "alice", c);
    file_id("ab", "c", d);
    file_id("a", "bc", e);
    cr_assert_str_neq(a, b);
    cr_assert_str_neq(a, c);
    cr_assert_str_neq(b, c);
    cr_assert_str_neq(d, e);
    char again[33];
    file_id("counter", "alice", again);
    cr_assert_str_eq(a, again);
    /* Binary names: the length counts, a NUL inside is hashed. */
    char x[33], y[33];
    rt_object_file_id("k", "a\0b", 3, x);
    rt_object_file_id("k", "a\0c", 3, y);
    cr_assert_str_neq(x, y);
}
