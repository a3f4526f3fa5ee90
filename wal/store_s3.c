/*
 * store_s3.c: the s3:// backend. libcurl's multi interface on the store's
 * libuv loop (a uv_poll per socket, one uv_timer for curl's timeouts), so a
 * slow or absent server never blocks the thread that owns the loop.
 *
 * Signing is libcurl's (CURLOPT_AWS_SIGV4). What it leaves to us: the
 * x-amz-content-sha256 header (the payload's SHA-256), query parameters
 * written sorted and percent-encoded (they are signed as written), and an
 * explicit content length on every upload.
 *
 * A failed attempt (no connection, timeout, 5xx, 429) is retried with
 * exponential backoff and full jitter; a 4xx other than those is final. A
 * request that fails for good is logged once, with its key and status.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "sdk_util.h"
#include "store_impl.h"

#define BACKOFF_BASE_MS 100
#define BACKOFF_MAX_MS 5000

struct s3 {
    CURLM *multi;
    uv_timer_t timer;
    char *base;      /* objects: "http://host:port/bucket/" or "http://bucket.host:port/" */
    char *list_base; /* listing: "http://host:port/bucket" or "http://bucket.host:port/": the
                      * signed path is exactly what is sent */
    char *sigv4;  /* "aws:amz:REGION:s3" */
    char *user, *password; /* apart: tempauth keys hold a ':' */
    char *token_header; /* "x-amz-security-token: ..." or NULL */
    unsigned timeout_ms, attempts;
    bool closing;
    uv_loop_t *loop;
    struct s3_call *calls; /* every call not yet ended, for cancel */
};

struct s3_sock {
    uv_poll_t poll;
    curl_socket_t fd;
    struct s3 *s3;
};

/* One request's attempts. */
struct s3_call {
    struct s3_call *prev, *next; /* in s3->calls */
    struct store_req *req;
    struct s3 *s3;
    CURL *easy;
    struct curl_slist *headers;
    char *url;
    unsigned attempt;
    uv_timer_t retry;
    size_t sent;
    uint8_t *buf; /* response body */
    size_t len, cap;
    char *token; /* list: continuation token */
    struct wal_store_entry *entries;
    size_t n, ncap;
};

static void call_attempt(struct s3_call *c);

/* ---- small helpers ------------------------------------------------------ */

static void sha256_hex(const uint8_t *p, size_t n, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(p, n, md, &mdlen, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* RFC 3986 percent-encoding of a query value: everything but unreserved. */
static void query_encode(const char *in, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p != '\0' && o + 4 < cap; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
            *p == '.' || *p == '_' || *p == '~') {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
}

/* The text of <tag>...</tag> in [p, end), entities decoded; NULL if absent.
 * *next is set past the closing tag. */
static char *xml_text(const char *p, const char *end, const char *tag, const char **next)
{
    char open[64], close[64];
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    const char *a = memmem(p, (size_t)(end - p), open, strlen(open));
    if (a == NULL)
        return NULL;
    a += strlen(open);
    const char *b = memmem(a, (size_t)(end - a), close, strlen(close));
    if (b == NULL)
        return NULL;
    if (next != NULL)
        *next = b + strlen(close);
    char *out = sdk_xmalloc((size_t)(b - a) + 1);
    size_t o = 0;
    static const struct {
        const char *ent;
        char c;
    } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    while (a < b) {
        bool done = false;
        if (*a == '&') {
            for (size_t i = 0; i < sizeof(ents) / sizeof(ents[0]); i++) {
                size_t el = strlen(ents[i].ent);
                if ((size_t)(b - a) >= el && memcmp(a, ents[i].ent, el) == 0) {
                    out[o++] = ents[i].c;
                    a += el;
                    done = true;
                    break;
                }
            }
        }
        if (!done)
            out[o++] = *a++;
    }
    out[o] = '\0';
    return out;
}

/* "2026-12-04T18:00:00.000Z" */
static int64_t parse_iso8601(const char *s)
{
    struct tm tm = {0};
    int ms = 0;
    if (sscanf(s, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
               &tm.tm_sec, &ms) < 6)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000000 + (int64_t)ms * 1000;
}

/* ---- curl <-> libuv ------------------------------------------------------- */

static void check_done(struct s3 *s3);

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct s3_sock *k = h->data;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    struct s3 *s3 = k->s3;
    curl_multi_socket_action(s3->multi, k->fd, flags, &running);
    check_done(s3);
}

static void on_sock_closed(uv_handle_t *h) { free(h->data); }

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    struct s3 *s3 = userp;
    struct s3_sock *k = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (k != NULL) {
            uv_poll_stop(&k->poll);
            uv_close((uv_handle_t *)&k->poll, on_sock_closed);
            curl_multi_assign(s3->multi, fd, NULL);
        }
        return 0;
    }
    if (k == NULL) {
        k = sdk_xcalloc(1, sizeof(*k));
        k->fd = fd;
        k->s3 = s3;
        uv_poll_init_socket(s3->loop, &k->poll, fd);
        k->poll.data = k;
        curl_multi_assign(s3->multi, fd, k);
    }
    int ev = 0;
    if (what & CURL_POLL_IN)
        ev |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        ev |= UV_WRITABLE;
    uv_poll_start(&k->poll, ev, on_poll);
    return 0;
}

static void on_curl_timer(uv_timer_t *t)
{
    struct s3 *s3 = t->data;
    int running;
    curl_multi_socket_action(s3->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(s3);
}

static int on_timer_change(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct s3 *s3 = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&s3->timer);
    else
        uv_timer_start(&s3->timer, on_curl_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- one call ------------------------------------------------------------------ */

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct s3_call *c = arg;
    size_t len = size * n;
    if (c->len + len + 1 > c->cap) {
        c->cap = (c->len + len + 1) * 2;
        c->buf = sdk_xrealloc(c->buf, c->cap);
    }
    memcpy(c->buf + c->len, p, len);
    c->len += len;
    c->buf[c->len] = '\0';
    return len;
}

static size_t on_upload(char *p, size_t size, size_t n, void *arg)
{
    struct s3_call *c = arg;
    size_t left = c->req->body_len - c->sent;
    size_t len = size * n < left ? size * n : left;
    memcpy(p, c->req->body + c->sent, len);
    c->sent += len;
    return len;
}

static void call_free(struct s3_call *c)
{
    free(c->url);
    free(c->buf);
    free(c->token);
    wal_store_entries_free(c->entries, c->n);
    free(c);
}

static void on_retry_closed(uv_handle_t *h) { call_free(h->data); }

static void call_end(struct s3_call *c)
{
    struct store_req *r = c->req;
    if (r->op == STORE_LIST && r->res.status == 0) {
        store_entries_sort(c->entries, c->n);
        r->res.entries = c->entries;
        r->res.nentries = c->n;
        c->entries = NULL;
        c->n = 0;
    } else if (r->op == STORE_GET && r->res.status == 0) {
        r->res.data = c->buf != NULL ? c->buf : sdk_xmalloc(1);
        r->res.len = c->len;
        c->buf = NULL;
    }
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        c->s3->calls = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    /* The caller says what failed, once (the uploader logs the first failure
     * of an outage, the tools print theirs). */
    store_finish(r);
    uv_close((uv_handle_t *)&c->retry, on_retry_closed);
}

/* Reads a list page; 0, or -1 if the XML is not a list result. */
static int list_page(struct s3_call *c)
{
    const char *p = (const char *)c->buf, *end = p + c->len;
    if (p == NULL || memmem(p, (size_t)(end - p), "<ListBucketResult", 17) == NULL)
        return -1;
    size_t plen = strlen(c->req->store->root);
    const char *next;
    char *block;
    while ((block = xml_text(p, end, "Contents", &next)) != NULL) {
        const char *bend = block + strlen(block);
        /* Entities were decoded once already: keys are plain [A-Za-z0-9._-/]. */
        char *key = xml_text(block, bend, "Key", NULL);
        char *size = xml_text(block, bend, "Size", NULL);
        char *mtime = xml_text(block, bend, "LastModified", NULL);
        if (key != NULL && strncmp(key, c->req->store->root, plen) == 0) {
            if (c->n == c->ncap) {
                c->ncap = c->ncap ? c->ncap * 2 : 64;
                c->entries = sdk_xrealloc(c->entries, c->ncap * sizeof(*c->entries));
            }
            c->entries[c->n++] = (struct wal_store_entry){
                .key = sdk_xstrdup(key + plen),
                .size = size != NULL ? strtoull(size, NULL, 10) : 0,
                .mtime_us = mtime != NULL ? parse_iso8601(mtime) : 0,
            };
        }
        free(key);
        free(size);
        free(mtime);
        free(block);
        p = next;
    }
    p = (const char *)c->buf;
    char *trunc = xml_text(p, end, "IsTruncated", NULL);
    free(c->token);
    c->token = NULL;
    if (trunc != NULL && strcmp(trunc, "true") == 0)
        c->token = xml_text(p, end, "NextContinuationToken", NULL);
    free(trunc);
    return 0;
}

static void on_retry(uv_timer_t *t) { call_attempt(t->data); }

static void call_retry_or_fail(struct s3_call *c, int status, const char *what)
{
    struct store_req *r = c->req;
    if (c->attempt < c->s3->attempts && !c->s3->closing) {
        uint64_t backoff = BACKOFF_BASE_MS << (c->attempt < 10 ? c->attempt : 10);
        if (backoff > BACKOFF_MAX_MS)
            backoff = BACKOFF_MAX_MS;
        uint64_t wait = backoff / 2 + (uint64_t)random() % (backoff / 2 + 1);
        uv_timer_start(&c->retry, on_retry, wait, 0);
        return;
    }
    store_errf(r, status, "%s (after %u attempts)", what, c->attempt);
    call_end(c);
}

static void call_finished(struct s3_call *c, CURLcode cc)
{
    struct store_req *r = c->req;
    long code = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &code);
    curl_multi_remove_handle(c->s3->multi, c->easy);
    curl_easy_cleanup(c->easy);
    curl_slist_free_all(c->headers);
    c->easy = NULL;
    c->headers = NULL;
    if (cc != CURLE_OK) {
        call_retry_or_fail(c, -EIO, curl_easy_strerror(cc));
        return;
    }
    if (code >= 500 || code == 429 || code == 408) {
        char what[64];
        snprintf(what, sizeof(what), "HTTP status %ld", code);
        call_retry_or_fail(c, -EIO, what);
        return;
    }
    if (code == 404 && r->op == STORE_DELETE) {
        call_end(c);
        return;
    }
    if (code == 404 && r->op == STORE_GET) {
        store_errf(r, -ENOENT, "no such key");
        call_end(c);
        return;
    }
    if (code < 200 || code >= 300) {
        const char *end = c->buf != NULL ? (const char *)c->buf + c->len : NULL;
        char *scode = c->buf != NULL ? xml_text((const char *)c->buf, end, "Code", NULL) : NULL;
        char *smsg = c->buf != NULL ? xml_text((const char *)c->buf, end, "Message", NULL) : NULL;
        store_errf(r, code == 403 || code == 401 ? -EACCES : -EIO, "HTTP status %ld%s%s%s%s", code,
                   scode != NULL ? " " : "", scode != NULL ? scode : "", smsg != NULL ? ": " : "",
                   smsg != NULL ? smsg : "");
        free(scode);
        free(smsg);
        call_end(c);
        return;
    }
    if (r->op == STORE_LIST) {
        if (list_page(c) != 0) {
            store_errf(r, -EPROTO, "the list answer is not a ListBucketResult");
            call_end(c);
            return;
        }
        if (c->token != NULL) {
            c->attempt = 0;
            c->len = 0;
            call_attempt(c);
            return;
        }
    }
    call_end(c);
}

static void check_done(struct s3 *s3)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(s3->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct s3_call *c = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
        call_finished(c, m->data.result);
    }
}

static void call_attempt(struct s3_call *c)
{
    struct s3 *s3 = c->s3;
    struct store_req *r = c->req;
    c->attempt++;
    c->sent = 0;
    c->len = 0;
    free(c->url);
    char url[4096];
    static const char empty_sha[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    char sha[65];
    if (r->op == STORE_LIST) {
        char prefix[3072], token[2048] = "";
        char full[1200];
        snprintf(full, sizeof(full), "%s%s", r->store->root, r->key);
        query_encode(full, prefix, sizeof(prefix));
        if (c->token != NULL) {
            char enc[1800];
            query_encode(c->token, enc, sizeof(enc));
            snprintf(token, sizeof(token), "continuation-token=%s&", enc);
        }
        snprintf(url, sizeof(url), "%s?%slist-type=2&prefix=%s", s3->list_base, token, prefix);
    } else {
        snprintf(url, sizeof(url), "%s%s%s", s3->base, r->store->root, r->key);
    }
    c->url = sdk_xstrdup(url);
    if (r->op == STORE_PUT)
        sha256_hex(r->body, r->body_len, sha);
    else
        memcpy(sha, empty_sha, sizeof(sha));
    char h[128];
    snprintf(h, sizeof(h), "x-amz-content-sha256: %s", sha);
    c->headers = curl_slist_append(NULL, h);
    /* No "Expect:" to turn 100-continue off: curl 7.88 would sign the
     * empty header it then does not send. */
    if (s3->token_header != NULL)
        c->headers = curl_slist_append(c->headers, s3->token_header);

    CURL *e = curl_easy_init();
    c->easy = e;
    curl_easy_setopt(e, CURLOPT_URL, c->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, c);
    curl_easy_setopt(e, CURLOPT_AWS_SIGV4, s3->sigv4);
    curl_easy_setopt(e, CURLOPT_USERNAME, s3->user);
    curl_easy_setopt(e, CURLOPT_PASSWORD, s3->password);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    if (getenv("DOBJ_CURL_VERBOSE") != NULL)
        curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(s3->timeout_ms < 5000 ? s3->timeout_ms : 5000));
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)s3->timeout_ms);
    switch (r->op) {
    case STORE_PUT:
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_upload);
        curl_easy_setopt(e, CURLOPT_READDATA, c);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body_len);
        break;
    case STORE_DELETE:
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
        break;
    case STORE_GET:
    case STORE_LIST:
        break;
    }
    curl_multi_add_handle(s3->multi, e);
}

static void s3_start(struct store_req *r)
{
    struct s3 *s3 = r->store->impl;
    struct s3_call *c = sdk_xcalloc(1, sizeof(*c));
    c->req = r;
    c->s3 = s3;
    c->next = s3->calls;
    if (s3->calls != NULL)
        s3->calls->prev = c;
    s3->calls = c;
    uv_timer_init(r->store->loop, &c->retry);
    c->retry.data = c;
    call_attempt(c);
}

static void s3_cancel(struct wal_store *st)
{
    struct s3 *s3 = st->impl;
    while (s3->calls != NULL) {
        struct s3_call *c = s3->calls;
        uv_timer_stop(&c->retry);
        if (c->easy != NULL) {
            curl_multi_remove_handle(s3->multi, c->easy);
            curl_easy_cleanup(c->easy);
            curl_slist_free_all(c->headers);
            c->easy = NULL;
            c->headers = NULL;
        }
        store_errf(c->req, -ECANCELED, "cancelled");
        call_end(c);
    }
}

/* The store itself may be gone by now (its own close callback can run
 * first): only the s3 part is freed here. */
static void on_s3_timer_closed(uv_handle_t *h) { free(h->data); }

static void s3_close(struct wal_store *st)
{
    struct s3 *s3 = st->impl;
    s3->closing = true;
    curl_multi_cleanup(s3->multi);
    free(s3->base);
    free(s3->list_base);
    free(s3->sigv4);
    free(s3->user);
    free(s3->password);
    free(s3->token_header);
    uv_close((uv_handle_t *)&s3->timer, on_s3_timer_closed);
}

static const struct store_backend s3_backend = {.start = s3_start, .cancel = s3_cancel, .close = s3_close};

static void global_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static const char *env_or(const char *v, const char *name)
{
    if (v != NULL && v[0] != '\0')
        return v;
    const char *e = getenv(name);
    return e != NULL && e[0] != '\0' ? e : NULL;
}

int store_s3_open(struct wal_store *st, const struct wal_store_config *cfg, const char *bucket, char *err,
                  size_t errlen)
{
    static uv_once_t once = UV_ONCE_INIT;
    uv_once(&once, global_init);
    const char *key = env_or(cfg->access_key, "AWS_ACCESS_KEY_ID");
    const char *secret = env_or(cfg->secret_key, "AWS_SECRET_ACCESS_KEY");
    const char *token = env_or(cfg->session_token, "AWS_SESSION_TOKEN");
    if (key == NULL || secret == NULL) {
        snprintf(err, errlen, "store %s: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                              "store_access_key and store_secret_key",
                 st->url);
        return -EINVAL;
    }
    const char *region = cfg->region != NULL && cfg->region[0] != '\0' ? cfg->region : "us-east-1";
    char endpoint[1024];
    if (cfg->endpoint != NULL && cfg->endpoint[0] != '\0')
        snprintf(endpoint, sizeof(endpoint), "%s", cfg->endpoint);
    else
        snprintf(endpoint, sizeof(endpoint), "https://s3.%s.amazonaws.com", region);
    size_t n = strlen(endpoint);
    while (n > 0 && endpoint[n - 1] == '/')
        endpoint[--n] = '\0';
    const char *hostpart = strstr(endpoint, "://");
    if (hostpart == NULL || hostpart[3] == '\0' || strchr(hostpart + 3, '/') != NULL) {
        snprintf(err, errlen, "store endpoint \"%s\" is not http(s)://HOST[:PORT]", endpoint);
        return -EINVAL;
    }
    struct s3 *s3 = sdk_xcalloc(1, sizeof(*s3));
    char base[1200];
    if (cfg->path_style)
        snprintf(base, sizeof(base), "%s/%s/", endpoint, bucket);
    else
        snprintf(base, sizeof(base), "%.*s%s.%s/", (int)(hostpart + 3 - endpoint), endpoint, bucket, hostpart + 3);
    s3->base = sdk_xstrdup(base);
    if (cfg->path_style)
        base[strlen(base) - 1] = '\0';
    s3->list_base = sdk_xstrdup(base);
    char sig[128];
    snprintf(sig, sizeof(sig), "aws:amz:%s:s3", region);
    s3->sigv4 = sdk_xstrdup(sig);
    s3->user = sdk_xstrdup(key);
    s3->password = sdk_xstrdup(secret);
    if (token != NULL) {
        size_t tl = strlen(token) + 32;
        s3->token_header = sdk_xmalloc(tl);
        snprintf(s3->token_header, tl, "x-amz-security-token: %s", token);
    }
    s3->timeout_ms = cfg->timeout_ms != 0 ? cfg->timeout_ms : 30000;
    s3->attempts = cfg->attempts != 0 ? cfg->attempts : 5;
    s3->loop = st->loop;
    s3->multi = curl_multi_init();
    curl_multi_setopt(s3->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(s3->multi, CURLMOPT_SOCKETDATA, s3);
    curl_multi_setopt(s3->multi, CURLMOPT_TIMERFUNCTION, on_timer_change);
    curl_multi_setopt(s3->multi, CURLMOPT_TIMERDATA, s3);
    curl_multi_setopt(s3->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 16L);
    uv_timer_init(st->loop, &s3->timer);
    s3->timer.data = s3;
    st->impl = s3;
    st->be = &s3_backend;
    return 0;
}
