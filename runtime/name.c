/*
 * name.c: object names and class names, the hashes derived from them, and
 * where an object's file lives.
 * The shard comes from a fast hash; the file name from SHA-256, so that no
 * chosen name can make two objects share a database.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>

#include <openssl/evp.h>
#include <xxhash.h>

#include "runtime.h"

bool rt_class_name_valid(const char *s, size_t len)
{
    if (len == 0 || len > RT_CLASS_NAME_MAX || s[0] == '_')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

long rt_name_decode(const char *raw, size_t len, char *out, const char **why)
{
    /* Every escape shrinks three bytes to one: more than 3 * max can not fit. */
    if (len > 3 * RT_NAME_MAX) {
        *why = "object name is longer than 512 bytes";
        return -1;
    }
    char tmp[3 * RT_NAME_MAX];
    long n = sdk_percent_decode(tmp, raw, len, false);
    if (n < 0) {
        *why = "object name has a malformed percent-escape";
        return -1;
    }
    if (n == 0) {
        *why = "object name is empty";
        return -1;
    }
    if (n > RT_NAME_MAX) {
        *why = "object name is longer than 512 bytes";
        return -1;
    }
    if (memchr(tmp, '\0', (size_t)n) != NULL) {
        *why = "object name contains a NUL byte";
        return -1;
    }
    if (!sdk_utf8_valid(tmp, (size_t)n)) {
        *why = "object name is not valid UTF-8";
        return -1;
    }
    memcpy(out, tmp, (size_t)n);
    out[n] = '\0';
    return n;
}

uint64_t rt_object_hash(const char *cls, const char *name, size_t name_len)
{
    char buf[RT_CLASS_NAME_MAX + 1 + RT_NAME_MAX];
    size_t clen = strlen(cls);
    if (clen > RT_CLASS_NAME_MAX || name_len > RT_NAME_MAX)
        abort(); /* callers validated both */
    memcpy(buf, cls, clen);
    buf[clen] = '/';
    memcpy(buf + clen + 1, name, name_len);
    return XXH3_64bits(buf, clen + 1 + name_len);
}

void rt_object_id(const char *cls, const char *name, size_t name_len, uint8_t out[16])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, cls, strlen(cls)) != 1 || EVP_DigestUpdate(ctx, "/", 1) != 1 ||
        EVP_DigestUpdate(ctx, name, name_len) != 1 || EVP_DigestFinal_ex(ctx, md, &mdlen) != 1)
        abort();
    EVP_MD_CTX_free(ctx);
    memcpy(out, md, 16);
}

void rt_object_id_hex(const uint8_t id[16], char out[33])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[id[i] >> 4];
        out[2 * i + 1] = hex[id[i] & 15];
    }
    out[32] = '\0';
}

void rt_object_file_id(const char *cls, const char *name, size_t name_len, char out[33])
{
    uint8_t id[16];
    rt_object_id(cls, name, name_len, id);
    rt_object_id_hex(id, out);
}

void rt_object_path(const struct rt_config *c, const uint8_t id[16], char *out, size_t len)
{
    char hex[33];
    rt_object_id_hex(id, hex);
    snprintf(out, len, "%s/objects/%.2s/%s.db", c->data_dir, hex, hex);
}

int rt_mkdir_parents(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        return 0;
    *slash = '\0';
    for (char *p = strchr(dir + 1, '/');; p = strchr(p + 1, '/')) {
        if (p != NULL)
            *p = '\0';
        if (mkdir(dir, 0755) != 0 && errno != EEXIST)
            return -errno;
        if (p == NULL)
            return 0;
        *p = '/';
    }
}
