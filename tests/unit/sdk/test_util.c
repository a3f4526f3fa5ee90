/*
 * test_util.c: sdk/src/util.c: UTF-8 validation, percent-decoding, JSON
 * string escaping, query parameters, the arena and buffers.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "sdk.h"
#include "sdk_util.h"

/* ---- UTF-8 -------------------------------------------------------------- */

static bool valid(const char *s) { return sdk_utf8_valid(s, strlen(s)); }

Test(utf8, ascii_and_empty)
{
    cr_assert(sdk_utf8_valid("", 0));
    cr_assert(valid("hello, world ~"));
    /* NUL is a valid code point; the length, not the terminator, counts. */
    cr_assert(sdk_utf8_valid("a\0b", 3));
    cr_assert(valid("\x7f"));
}

Test(utf8, multibyte_valid)
{
    cr_assert(valid("\xC2\x80"));             /* U+0080, smallest 2-byte */
    cr_assert(valid("\xC3\xA9"));             /* é */
    cr_assert(valid("\xDF\xBF"));             /* U+07FF */
    cr_assert(valid("\xE0\xA0\x80"));         /* U+0800, smallest 3-byte */
    cr_assert(valid("\xE2\x82\xAC"));         /* € */
    cr_assert(valid("\xED\x9F\xBF"));         /* U+D7FF, just below the surrogates */
    cr_assert(valid("\xEE\x80\x80"));         /* U+E000, just above them */
    cr_assert(valid("\xEF\xBF\xBF"));         /* U+FFFF */
    cr_assert(valid("\xF0\x90\x80\x80"));     /* U+10000, smallest 4-byte */
    cr_assert(valid("\xF0\x9F\x98\x80"));     /* 😀 */
    cr_assert(valid("\xF4\x8F\xBF\xBF"));     /* U+10FFFF, the largest */
    cr_assert(valid("a\xC3\xA9z\xE2\x82\xAC\xF0\x9F\x98\x80."));
}

Test(utf8, overlongs_refused)
{
    cr_assert_not(valid("\xC0\x80"));
    cr_assert_not(valid("\xC1\xBF"));
    cr_assert_not(valid("\xE0\x80\x80"));
    cr_assert_not(valid("\xE0\x9F\xBF"));
    cr_assert_not(valid("\xF0\x80\x80\x80"));
    cr_assert_not(valid("\xF0\x8F\xBF\xBF"));
}

Test(utf8, surrogates_and_out_of_range_refused)
{
    cr_assert_not(valid("\xED\xA0\x80")); /* U+D800 */
    cr_assert_not(valid("\xED\xBF\xBF")); /* U+DFFF */
    cr_assert_not(valid("\xF4\x90\x80\x80")); /* U+110000 */
    cr_assert_not(valid("\xF5\x80\x80\x80"));
    cr_assert_not(valid("\xF8\x88\x80\x80\x80"));
    cr_assert_not(valid("\xFF"));
    cr_assert_not(valid("\xFE"));
}

Test(utf8, stray_and_truncated_sequences_refused)
{
    cr_assert_not(valid("\x80"));
    cr_assert_not(valid("a\xBF"));
    cr_assert_not(valid("\xC3"));
    cr_assert_not(valid("abc\xC3"));
    cr_assert_not(valid("\xE2\x82"));
    cr_assert_not(valid("\xF0\x9F\x98"));
    /* A lead byte followed by ASCII instead of a continuation. */
    cr_assert_not(valid("\xC3" "a"));
    cr_assert_not(valid("\xE2\x82" "a"));
    cr_assert_not(valid("\xF0\x9F\x98" "a"));
    /* A valid sequence cut by the length given. */
    cr_assert_not(sdk_utf8_valid("\xC3\xA9", 1));
    cr_assert_not(sdk_utf8_valid("\xF0\x9F\x98\x80", 3));
    cr_assert(sdk_utf8_valid("x\xC3\xA9", 1));
}

Test(utf8, seq_len)
{
    cr_assert_eq(sdk_utf8_seq_len((const unsigned char *)"a", 1), 1);
    cr_assert_eq(sdk_utf8_seq_len((const unsigned char *)"\xC3\xA9", 2), 2);
    cr_assert_eq(sdk_utf8_seq_len((const unsigned char *)"\xE2\x82\xAC", 3), 3);
    cr_assert_eq(sdk_utf8_seq_len((const unsigned char *)"\xF0\x9F\x98\x80", 4), 4);
    cr_assert_eq(sdk_utf8_seq_len((const unsigned char *)"\xF0\x9F\x98\x80", 3), 0);
    cr_assert_eq(sdk_utf8_seq_len((const unsigned char *)"\x80", 1), 0);
    cr_assert_eq(sdk_utf8_seq_len((const unsigned char *)"\xED\xA0\x80", 3), 0);
}

/* ---- percent-decoding ---------------------------------------------------- */

/* Decodes the NUL-terminated `src`; returns the length, the result in `out`. */
static long decode(char *out, const char *src, bool plus_space)
{
    memset(out, 0, 64);
    return sdk_percent_decode(out, src, strlen(src), plus_space);
}

Test(percent, plain_and_escapes)
{
    char out[64];
    cr_assert_eq(decode(out, "", false), 0);
    cr_assert_eq(decode(out, "abc-._~", false), 7);
    cr_assert_str_eq(out, "abc-._~");
    cr_assert_eq(decode(out, "a%2Fb", false), 3);
    cr_assert_str_eq(out, "a/b");
    cr_assert_eq(decode(out, "%2f%2F", false), 2);
    cr_assert_str_eq(out, "//");
    cr_assert_eq(decode(out, "%41", false), 1); /* an escape that ends the input */
    cr_assert_str_eq(out, "A");
    cr_assert_eq(decode(out, "%C3%A9", false), 2);
    cr_assert_str_eq(out, "\xC3\xA9");
    cr_assert_eq(decode(out, "x%00y", false), 3);
    cr_assert_eq(memcmp(out, "x\0y", 3), 0);
}

Test(percent, malformed_escapes)
{
    char out[64];
    cr_assert_eq(decode(out, "%zz", false), -1);
    cr_assert_eq(decode(out, "%4g", false), -1);
    cr_assert_eq(decode(out, "%g4", false), -1);
    cr_assert_eq(decode(out, "abc%", false), -1);
    cr_assert_eq(decode(out, "%", false), -1);
    cr_assert_eq(decode(out, "%4", false), -1);
    cr_assert_eq(decode(out, "ab%4", true), -1);
    /* The length bounds the input: "%41" cut to "%4" is malformed. */
    cr_assert_eq(sdk_percent_decode(out, "%41", 2, false), -1);
}

Test(percent, plus_space)
{
    char out[64];
    cr_assert_eq(decode(out, "a+b", true), 3);
    cr_assert_str_eq(out, "a b");
    cr_assert_eq(decode(out, "a+b", false), 3);
    cr_assert_str_eq(out, "a+b");
    /* An escaped plus stays a plus either way. */
    cr_assert_eq(decode(out, "%2B+", true), 2);
    cr_assert_str_eq(out, "+ ");
}

Test(percent, in_place)
{
    char s[] = "hello%20world%21";
    long n = sdk_percent_decode(s, s, strlen(s), false);
    cr_assert_eq(n, 12);
    cr_assert_eq(memcmp(s, "hello world!", 12), 0);
}

/* ---- JSON strings -------------------------------------------------------- */

static void json_is(const char *in, size_t len, const char *want)
{
    struct sdk_buf b = {0};
    sdk_buf_json_str(&b, in, len);
    cr_assert_eq(b.len, strlen(want), "length %zu, want %zu for \"%s\"", b.len, strlen(want), want);
    cr_assert_eq(memcmp(b.data, want, b.len), 0, "got %s, want %s", b.data, want);
    cr_assert_eq(b.data[b.len], '\0');
    sdk_buf_close(&b);
}

Test(json_str, plain_and_empty)
{
    json_is("", 0, "\"\"");
    json_is("hello world", 11, "\"hello world\"");
    json_is("/<>'", 4, "\"/<>'\"");
}

Test(json_str, quotes_and_backslash)
{
    json_is("a\"b", 3, "\"a\\\"b\"");
    json_is("a\\b", 3, "\"a\\\\b\"");
    json_is("\"\\\"", 3, "\"\\\"\\\\\\\"\"");
}

Test(json_str, control_characters)
{
    json_is("a\nb", 3, "\"a\\nb\"");
    json_is("\r\t", 2, "\"\\r\\t\"");
    json_is("\x01", 1, "\"\\u0001\"");
    json_is("\x1f", 1, "\"\\u001f\"");
    json_is("\b\f", 2, "\"\\u0008\\u000c\"");
    json_is("\x7f", 1, "\"\\u007f\"");
    json_is("a\0b", 3, "\"a\\u0000b\"");
}

Test(json_str, valid_utf8_kept)
{
    const char *s = "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80";
    json_is(s, strlen(s), "\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\"");
}

Test(json_str, invalid_bytes_replaced)
{
    json_is("a\xFF" "b", 3, "\"a\xEF\xBF\xBD" "b\"");
    json_is("\xC3", 1, "\"\xEF\xBF\xBD\"");
    /* Each byte of an overlong is replaced on its own. */
    json_is("\xC0\x80", 2, "\"\xEF\xBF\xBD\xEF\xBF\xBD\"");
    json_is("\xED\xA0\x80", 3, "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"");
    /* A sequence cut by the length given. */
    json_is("\xC3\xA9", 1, "\"\xEF\xBF\xBD\"");
    /* The replacement does not swallow the ASCII after a bad lead byte. */
    json_is("\xE2\x82\"", 3, "\"\xEF\xBF\xBD\xEF\xBF\xBD\\\"\"");
}

Test(json_str, appends)
{
    struct sdk_buf b = {0};
    sdk_buf_append(&b, "[", 1);
    sdk_buf_json_str(&b, "x", 1);
    sdk_buf_append(&b, ",", 1);
    sdk_buf_json_str(&b, "y\n", 2);
    sdk_buf_append(&b, "]", 1);
    cr_assert_str_eq(b.data, "[\"x\",\"y\\n\"]");
    cr_assert_eq(b.len, strlen("[\"x\",\"y\\n\"]"));
    sdk_buf_close(&b);
}

/* ---- query parameters ---------------------------------------------------- */

static struct sdk_arena arena;

static void arena_setup(void) { sdk_arena_init(&arena); }
static void arena_teardown(void) { sdk_arena_close(&arena); }

TestSuite(query, .init = arena_setup, .fini = arena_teardown);

static const char *param(const char *query, const char *key) { return sdk_query_param(&arena, query, key); }

Test(query, first_occurrence)
{
    cr_assert_str_eq(param("a=1&b=2&a=3", "a"), "1");
    cr_assert_str_eq(param("a=1&b=2&a=3", "b"), "2");
    cr_assert_str_eq(param("b=2&a=3", "a"), "3");
}

Test(query, missing)
{
    cr_assert_null(param("a=1&b=2", "c"));
    cr_assert_null(param("", "a"));
    cr_assert_null(param(NULL, "a"));
    /* Keys match whole, not by prefix. */
    cr_assert_null(param("ab=1", "a"));
    cr_assert_null(param("a=1", "ab"));
    cr_assert_null(param("xa=1", "a"));
}

Test(query, empty_value_and_key_without_equals)
{
    cr_assert_str_eq(param("a=&b=2", "a"), "");
    cr_assert_str_eq(param("flag&x=1", "flag"), "");
    cr_assert_str_eq(param("x=1&flag", "flag"), "");
    cr_assert_str_eq(param("x=1&flag", "x"), "1");
}

Test(query, decoding)
{
    cr_assert_str_eq(param("q=hello+world%21", "q"), "hello world!");
    cr_assert_str_eq(param("q=a%20b", "q"), "a b");
    cr_assert_str_eq(param("q=a%2Bb", "q"), "a+b");
    cr_assert_str_eq(param("q=a%26b%3Dc", "q"), "a&b=c");
    cr_assert_str_eq(param("q=b=c", "q"), "b=c");
    /* Keys are decoded too. */
    cr_assert_str_eq(param("my+key=v", "my key"), "v");
    cr_assert_str_eq(param("my%20key=w", "my key"), "w");
}

Test(query, malformed)
{
    cr_assert_null(param("a=%zz", "a"));
    cr_assert_null(param("a=x%4", "a"));
    /* A malformed key elsewhere does not hide a later parameter. */
    cr_assert_str_eq(param("%zz=1&a=2", "a"), "2");
    cr_assert_str_eq(param("b=%zz&a=2", "a"), "2");
}

Test(query, through_the_ctx)
{
    static const dobj_class cls = {.abi_version = DOBJ_ABI_VERSION, .name = "probe"};
    struct dobj_ctx ctx;
    sdk_ctx_init(&ctx, &cls, "n", NULL);
    cr_assert_null(dobj_req_param(&ctx, "a"));
    ctx.query = "a=x+y&b";
    cr_assert_str_eq(dobj_req_param(&ctx, "a"), "x y");
    cr_assert_str_eq(dobj_req_param(&ctx, "b"), "");
    sdk_ctx_close(&ctx);
}

/* ---- arena and buffers --------------------------------------------------- */

Test(arena, alignment_and_large_blocks)
{
    struct sdk_arena a;
    sdk_arena_init(&a);
    char *p1 = sdk_arena_alloc(&a, 1);
    char *p2 = sdk_arena_alloc(&a, 3);
    cr_assert_eq((uintptr_t)p1 % 16, 0);
    cr_assert_eq((uintptr_t)p2 % 16, 0);
    cr_assert_neq(p1, p2);
    /* Larger than a chunk: still usable end to end. */
    char *big = sdk_arena_alloc(&a, 100000);
    memset(big, 'x', 100000);
    cr_assert_eq((uintptr_t)big % 16, 0);
    char *s = sdk_arena_strndup(&a, "hello!", 5);
    cr_assert_str_eq(s, "hello");
    sdk_arena_close(&a);
    cr_assert_null(a.head);
}

Test(buf, printf_and_steal)
{
    struct sdk_buf b = {0};
    for (int i = 0; i < 100; i++)
        sdk_buf_printf(&b, "%d,", i);
    cr_assert_eq(b.len, 10 * 2 + 90 * 3);
    cr_assert_eq(strncmp(b.data, "0,1,2,", 6), 0);
    cr_assert_eq(strcmp(b.data + b.len - 3, "99,"), 0);
    size_t len = 0;
    char *d = sdk_buf_steal(&b, &len);
    cr_assert_eq(len, 290);
    cr_assert_null(b.data);
    cr_assert_eq(b.len, 0);
    free(d);
    sdk_buf_close(&b);
}
