/*
 * Shared by the two libcurl benchmark programs: command line, draft ids, per-request headers and
 * the easy-handle options that graphsend sets (csrc/transfer.c is the reference; keep in step).
 * Not mirrored: graphsend's share handle and its prereq/sockopt callbacks (resend bookkeeping):
 * their cost is part of what the comparison measures.
 *
 * The harness drives both programs over stdin/stdout with one line per command: it writes a
 * count N, the program does N units of work (sends, or bulk rounds) and answers
 * "<elapsed_ns> <ok> <cpu_ns>": wall time, how many 202 answers, and the process's CPU time.
 * EOF or 0 ends the program.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#define _GNU_SOURCE
#include <curl/curl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    const char *base;   /* e.g. http://127.0.0.1:8080 */
    const char *token;  /* bearer token */
    const char *user;   /* mailbox for /users/{user}, NULL for /me */
    const char *cainfo; /* CA bundle for the self-signed loopback certificate */
    int http2;          /* CURL_HTTP_VERSION_2TLS instead of 1.1 */
    long timeout_ms, connect_timeout_ms;
    int mailboxes, per_mailbox, cap; /* bulk program only */
} options_t;

static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* CPU time of the whole process (user + system), as the Python workers report it. */
static inline int64_t cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void parse_options(int argc, char **argv, options_t *o) {
    *o = (options_t){.base = "http://127.0.0.1:8080", .token = "bench-token", .timeout_ms = 100000,
                     .connect_timeout_ms = 30000, .mailboxes = 100, .per_mailbox = 20, .cap = 4};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--http2") == 0) {
            o->http2 = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "missing value for %s\n", a);
            exit(2);
        }
        i++;
        if (strcmp(a, "--base") == 0) o->base = v;
        else if (strcmp(a, "--token") == 0) o->token = v;
        else if (strcmp(a, "--user") == 0) o->user = *v ? v : NULL;
        else if (strcmp(a, "--cainfo") == 0) o->cainfo = *v ? v : NULL;
        else if (strcmp(a, "--timeout-ms") == 0) o->timeout_ms = atol(v);
        else if (strcmp(a, "--connect-timeout-ms") == 0) o->connect_timeout_ms = atol(v);
        else if (strcmp(a, "--mailboxes") == 0) o->mailboxes = atoi(v);
        else if (strcmp(a, "--per-mailbox") == 0) o->per_mailbox = atoi(v);
        else if (strcmp(a, "--cap") == 0) o->cap = atoi(v);
        else {
            fprintf(stderr, "unknown option %s\n", a);
            exit(2);
        }
    }
}

/* Same ids and mailboxes as bench/common.py: the draft id ends in '=', sent as %3D. */
static inline void build_url(char *out, size_t n, const options_t *o, const char *user, long i) {
    if (user)
        snprintf(out, n, "%s/v1.0/users/%s/messages/AAMkAGVmMDEz%08ldAAA%%3D/send", o->base, user, i);
    else
        snprintf(out, n, "%s/v1.0/me/messages/AAMkAGVmMDEz%08ldAAA%%3D/send", o->base, i);
}

static inline void mailbox_name(char *out, size_t n, int m) {
    snprintf(out, n, "user%03d@contoso.example", m); /* graphsend keeps "@" as is */
}

/* A fresh client-request-id per request, uuid4-shaped, as graphsend and the SDK send. */
static inline void request_id(char out[37]) {
    static uint64_t s = 0x9E3779B97F4A7C15ULL;
    uint64_t a = (s ^= s << 13, s ^= s >> 7, s ^= s << 17);
    uint64_t b = (s ^= s << 13, s ^= s >> 7, s ^= s << 17);
    snprintf(out, 37, "%08x-%04x-4%03x-%04x-%012llx", (unsigned)(a >> 32), (unsigned)(a >> 16) & 0xffff,
             (unsigned)a & 0xfff, 0x8000 | ((unsigned)(b >> 48) & 0x3fff),
             (unsigned long long)(b & 0xffffffffffffULL));
}

/* "Authorization: Bearer <token>", sized to the token (Graph tokens are 1-2 KB: a fixed buffer
 * would cut them and make the C floor cheaper than the requests graphsend sends). */
static inline char *auth_line(const char *token) {
    size_t n = strlen("Authorization: Bearer ") + strlen(token) + 1;
    char *line = malloc(n);
    if (!line) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    snprintf(line, n, "Authorization: Bearer %s", token);
    return line;
}

/* Per-request header list: Authorization and client-request-id change per request, as in
 * graphsend, where Python hands the C layer a fresh tuple of headers for every send. */
static inline struct curl_slist *request_headers(const char *auth_line) {
    char rid[37], line[64];
    request_id(rid);
    snprintf(line, sizeof line, "client-request-id: %s", rid);
    struct curl_slist *h = curl_slist_append(NULL, auth_line);
    h = curl_slist_append(h, line);
    h = curl_slist_append(h, "Accept: application/json");
    /* As graphsend: no "Content-Type: application/x-www-form-urlencoded" on the empty POST, and
     * never an "Expect: 100-continue" round trip. */
    h = curl_slist_append(h, "Expect:");
    h = curl_slist_append(h, "Content-Type:");
    return h;
}

static size_t discard_body(char *ptr, size_t size, size_t nmemb, void *userdata) {
    (void)ptr;
    (void)userdata;
    return size * nmemb;
}

/* graphsend keeps a few response headers; capture request-id the same way so the work matches. */
static size_t keep_request_id(char *buf, size_t size, size_t nitems, void *userdata) {
    size_t n = size * nitems;
    if (n > 12 && strncasecmp(buf, "request-id:", 11) == 0) {
        char *dst = userdata;
        size_t len = n - 11 < 63 ? n - 11 : 63;
        memcpy(dst, buf + 11, len);
        dst[len] = '\0';
    }
    return n;
}

/* Options set once per easy handle, mirroring graphsend's transfer setup. */
static inline void set_static_options(CURL *e, const options_t *o, char *errbuf, char *rid_buf) {
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_HEADEROPT, (long)CURLHEADER_SEPARATE);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 30L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 15L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, o->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "graphsend-bench-c/1");
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, keep_request_id);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, rid_buf);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                     o->http2 ? (long)CURL_HTTP_VERSION_2TLS : (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (o->cainfo) curl_easy_setopt(e, CURLOPT_CAINFO, o->cainfo);
}

#endif
