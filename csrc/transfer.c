/* One POST on one easy handle: options, request block, result capture. Plain C, no Python. */
#define _POSIX_C_SOURCE 200809L

#include "transfer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define HEADER(s) {s, sizeof(s) - 1}
const gs_header_name gs_headers[GS_H_COUNT] = {
    HEADER("request-id"),   HEADER("client-request-id"), HEADER("date"),
    HEADER("retry-after"),  HEADER("content-type"),      HEADER("x-ms-ags-diagnostic"),
    HEADER("location"),
};

/*
 * Sent with every request ahead of the caller's headers. libcurl would otherwise add
 * "Content-Type: application/x-www-form-urlencoded" to an empty POST; "Expect:" makes sure no
 * 100-continue round trip can ever be asked for.
 */
static const char *const fixed_headers[] = {"Accept: application/json", "Expect:", "Content-Type:"};
#define FIXED_HEADERS (sizeof(fixed_headers) / sizeof(fixed_headers[0]))
#define FIXED_TEXT (sizeof("Accept: application/json") + sizeof("Expect:") + sizeof("Content-Type:"))

double gs_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void gs_options_clear(gs_options *o)
{
    free(o->ca_bundle);
    free(o->proxy);
    free(o->proxy_ca_bundle);
    free(o->user_agent);
    memset(o, 0, sizeof(*o));
}

int gs_request_begin(gs_request **reqp, size_t nheaders, size_t text_len, gs_request_writer *w)
{
    size_t nodes = FIXED_HEADERS + nheaders;
    size_t need = sizeof(gs_request) + nodes * sizeof(struct curl_slist) + FIXED_TEXT + text_len;
    gs_request *req = *reqp;

    if (req == NULL || req->size < need) {
        gs_request *grown = realloc(req, need);
        if (grown == NULL)
            return -1; /* *reqp is still valid */
        req = grown;
        req->size = need;
        *reqp = req;
    }
    req->next = NULL;
    req->tag = 0;
    req->url = NULL;
    req->crid = NULL;
    req->crid_len = 0;
    req->has_body = 0;
    req->headers = (struct curl_slist *)(req + 1);
    w->req = req;
    w->node = req->headers;
    w->text = (char *)(req->headers + nodes);
    for (size_t i = 0; i < FIXED_HEADERS; i++)
        gs_request_put_header(w, fixed_headers[i], strlen(fixed_headers[i]));
    return 0;
}

char *gs_request_url(gs_request_writer *w, size_t len)
{
    char *url = w->text;
    url[len] = '\0';
    w->req->url = url;
    w->text += len + 1;
    return url;
}

char *gs_request_header(gs_request_writer *w, size_t len)
{
    char *line = w->text;
    line[len] = '\0';
    w->node->data = line;
    w->node->next = w->node + 1;
    w->node++;
    w->text += len + 1;
    return line;
}

void gs_request_put_crid_header(gs_request_writer *w, const char *crid, size_t len)
{
    char *line = gs_request_header(w, sizeof(GS_CRID_PREFIX) - 1 + len);
    memcpy(line, GS_CRID_PREFIX, sizeof(GS_CRID_PREFIX) - 1);
    memcpy(line + sizeof(GS_CRID_PREFIX) - 1, crid, len);
    w->req->crid = line + sizeof(GS_CRID_PREFIX) - 1;
    w->req->crid_len = len;
}

void gs_request_put_url(gs_request_writer *w, const char *url, size_t len)
{
    memcpy(gs_request_url(w, len), url, len);
}

void gs_request_put_header(gs_request_writer *w, const char *line, size_t len)
{
    memcpy(gs_request_header(w, len), line, len);
}

void gs_request_end(gs_request_writer *w)
{
    w->node[-1].next = NULL; /* the fixed headers guarantee at least one node */
}

/* The body is kept up to its cap (GS_BODY_CAP; GS_BODY_CAP_OK for a 2xx answer to a
 * Handle.request()) and the rest is swallowed, so the connection stays usable. */
static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    gs_transfer *t = userp;
    size_t len = size * nmemb;
    size_t limit = GS_BODY_CAP;
    size_t take;

    if (t->keep_ok_body && t->cur_status >= 200 && t->cur_status < 300)
        limit = GS_BODY_CAP_OK;
    take = t->body_len < limit ? limit - t->body_len : 0;
    if (take > len)
        take = len;
    if (take == 0)
        return len;
    if (t->body_len + take > t->body_cap) {
        size_t cap = t->body_cap ? t->body_cap * 2 : 1024;
        while (cap < t->body_len + take)
            cap *= 2;
        if (cap > limit)
            cap = limit;
        char *grown = realloc(t->body, cap);
        if (grown == NULL)
            return 0; /* CURLE_WRITE_ERROR */
        t->body = grown;
        t->body_cap = cap;
    }
    memcpy(t->body + t->body_len, data, take);
    t->body_len += take;
    return len;
}

/* "HTTP/1.1 201 Created" or "HTTP/2 201": the status, 0 when unreadable. */
static int status_of(const char *data, size_t len)
{
    const char *sp = memchr(data, ' ', len);
    int status = 0;
    if (sp == NULL)
        return 0;
    for (const char *p = sp + 1; p < data + len && p < sp + 4; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        status = status * 10 + (*p - '0');
    }
    return status;
}

/* libcurl's upload buffer for a file body (its default is 64 KiB, its maximum 2 MiB): one
 * pread, one poll and one pass of the multi loop per buffer, so 1,600 passes for 100 MB become
 * 50; measured 7% less time per upload over loopback HTTPS (bench/compose.py). Only while a
 * file body is sent: gs_transfer_finish() puts the default back (libcurl 7.x frees the larger
 * buffer then; a pooled handle must not keep 2 MiB for its sends). */
#define GS_UPLOAD_BUFFER (2L * 1024L * 1024L)
#define GS_UPLOAD_BUFFER_DEFAULT (64L * 1024L)

/* A file body, read in C: no Python runs while the GIL is released. */
static size_t on_read(char *buffer, size_t size, size_t nitems, void *userp)
{
    gs_transfer *t = userp;
    long long left = t->src_len - t->src_pos;
    size_t want = size * nitems;
    ssize_t got;

    if (left <= 0)
        return 0;
    if ((long long)want > left)
        want = (size_t)left;
    do
        got = pread(t->src_fd, buffer, want, (off_t)(t->src_off + t->src_pos));
    while (got < 0 && errno == EINTR);
    if (got <= 0) {
        /* A read error, or the file shrank under us: never send a short body. */
        snprintf(t->errbuf, sizeof(t->errbuf), "reading the file body failed at byte %lld: %s",
                 t->src_off + t->src_pos, got < 0 ? strerror(errno) : "unexpected end of file");
        return CURL_READFUNC_ABORT;
    }
    t->src_pos += got;
    return (size_t)got;
}

/* libcurl rewinds a body it must send again (a repeatable request on a fresh connection). */
static int on_seek(void *userp, curl_off_t offset, int origin)
{
    gs_transfer *t = userp;
    if (origin != SEEK_SET || offset < 0 || offset > t->src_len)
        return CURL_SEEKFUNC_CANTSEEK;
    t->src_pos = offset;
    return CURL_SEEKFUNC_OK;
}

/* Header values reach Python as text: a control byte there (a bare CR, NUL, other C0, DEL)
 * could forge a log line or confuse a parser, so each becomes a space. */
static void copy_value(char *out, const char *value, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)value[i];
        out[i] = (c < 0x20 || c == 0x7F) ? ' ' : (char)c;
    }
}

static int reserve_header_text(gs_transfer *t, size_t more)
{
    if (t->header_text_len + more <= t->header_text_cap)
        return 0;
    size_t cap = t->header_text_cap ? t->header_text_cap : 512;
    while (cap < t->header_text_len + more)
        cap *= 2;
    char *grown = realloc(t->header_text, cap);
    if (grown == NULL)
        return -1;
    t->header_text = grown;
    t->header_text_cap = cap;
    return 0;
}

static void keep_header(gs_transfer *t, int which, const char *value, size_t len)
{
    if (reserve_header_text(t, len) < 0)
        return; /* the header is simply missing from the result */
    copy_value(t->header_text + t->header_text_len, value, len);
    t->header_off[which] = t->header_text_len;
    t->header_len[which] = len;
    t->header_text_len += len;
    t->header_present |= 1u << which;
    t->last_kept = which;
}

/* An obs-fold continuation of the header kept from the line before: joined with one space. The
 * kept value is the last text written, so it grows in place. */
static void continue_header(gs_transfer *t, const char *value, size_t len)
{
    int which = t->last_kept;
    if (len == 0 || reserve_header_text(t, len + 1) < 0)
        return;
    t->header_text[t->header_text_len] = ' ';
    copy_value(t->header_text + t->header_text_len + 1, value, len);
    t->header_text_len += len + 1;
    t->header_len[which] += len + 1;
}

/* The value of a header line without the whitespace and line ending around it. */
static size_t trim_value(const char **value, const char *end)
{
    const char *v = *value;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *value = v;
    return (size_t)(end - v);
}

/* Locale-free: strncasecmp() follows the C library's locale. */
static int name_is(const char *data, const gs_header_name *h)
{
    for (size_t i = 0; i < h->len; i++) {
        unsigned char c = (unsigned char)data[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c + ('a' - 'A'));
        if (c != (unsigned char)h->name[i])
            return 0;
    }
    return 1;
}

/*
 * Response headers come from a header callback, not from curl_easy_header() after the transfer:
 * under callgrind on loopback the six curl_easy_header() lookups cost about 2,300 instructions a
 * send against about 800 here, 1.5% of a whole send (wall-clock runs could not tell them apart).
 * The callback must then skip what curl_easy_header() would: a proxy's CONNECT reply
 * (CURLOPT_SUPPRESS_CONNECT_HEADERS), 1xx responses (each status line starts afresh) and
 * trailers (after the blank line). The first of repeated headers wins.
 */
static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
    gs_transfer *t = userp;
    size_t len = size * nmemb;
    const char *colon, *value, *end;

    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        t->cur_status = status_of(data, len);
        t->in_headers = 1;
        t->last_kept = -1;
        t->header_present = 0;
        t->header_text_len = 0;
        return len;
    }
    if (!t->in_headers)
        return len;
    if (len == 0 || data[0] == '\r' || data[0] == '\n') {
        t->in_headers = 0;
        t->last_kept = -1;
        return len;
    }
    if (data[0] == ' ' || data[0] == '\t') {
        /* A folded continuation line (obsolete, still legal to receive): it belongs to the
         * header before it, so a kept value must not lose its tail. */
        if (t->last_kept >= 0) {
            value = data;
            size_t n = trim_value(&value, data + len);
            continue_header(t, value, n);
        }
        return len;
    }
    t->last_kept = -1;
    colon = memchr(data, ':', len);
    if (colon == NULL)
        return len;
    for (int i = 0; i < GS_H_COUNT; i++) {
        const gs_header_name *h = &gs_headers[i];
        if ((size_t)(colon - data) != h->len || !name_is(data, h))
            continue;
        if (t->header_present & (1u << i))
            break;
        value = colon + 1;
        end = data + len;
        /* Trim first, in a statement of its own: C leaves the order of a call's arguments
         * open, and clang (zig cc, macOS) read `value` before the trim moved it. */
        size_t n = trim_value(&value, end);
        keep_header(t, i, value, n);
        break;
    }
    return len;
}

static long request_bytes(gs_transfer *t)
{
    long n = 0;
    if (curl_easy_getinfo(t->easy, CURLINFO_REQUEST_SIZE, &n) != CURLE_OK)
        return 0;
    return n;
}

/*
 * Duplicate POSTs. libcurl 7.88 (and 8.x) silently sends a request again on a fresh connection
 * when it went out on a reused connection that then died before any response byte arrived
 * (Curl_retry_request, up to 5 times; also for HTTP/2 REFUSED_STREAM). That is right when the
 * server closed the idle connection before reading the request, but a server (or a proxy) that
 * read the request, acted on it and then dropped the connection gets it twice: a second mail. No
 * option turns the resend off; CURLOPT_FORBID_REUSE avoids it only by paying a TCP and TLS
 * handshake per send, and CURLOPT_MAXAGE_CONN merely narrows the idle-close race.
 *
 * So we watch the attempts. CURLINFO_REQUEST_SIZE counts every request byte written during the
 * transfer, across attempts, and grows only after a successful write. CURLOPT_PREREQFUNCTION runs
 * once per attempt, after any proxy CONNECT and TLS handshake and right before the request is
 * written. CONNECT bytes count in REQUEST_SIZE too, which is why a new socket (SOCKOPTFUNCTION)
 * settles the previous attempt's account before its own CONNECT is written. When an attempt
 * starts after an earlier one wrote request bytes, we refuse it: the transfer then ends like the
 * same failure on a fresh connection would (CURLE_GOT_NOTHING, request_sent true). An earlier
 * attempt that wrote nothing (the send itself failed) may be resent: the server saw nothing.
 * The one resend we refuse needlessly follows an HTTP/2 REFUSED_STREAM (the server promises it
 * did not act); that is rare, and it comes back as "may have been sent", never as a duplicate.
 *
 * request_sent is therefore "request bytes were written": a partial write counts as sent, which
 * errs on the side of not retrying. A TLS handshake or CONNECT that fails counts as not sent.
 */
static void settle_attempt(gs_transfer *t)
{
    if (t->sent_mark >= 0 && request_bytes(t) > t->sent_mark)
        t->request_written = 1;
}

static int on_prereq(void *userp, char *primary_ip, char *local_ip, int primary_port,
                     int local_port)
{
    gs_transfer *t = userp;
    (void)primary_ip, (void)local_ip, (void)primary_port, (void)local_port;

    settle_attempt(t);
    if (t->request_written && !t->resend_ok) {
        t->resend_blocked = 1;
        return CURL_PREREQFUNC_ABORT;
    }
    t->sent_mark = request_bytes(t);
    return CURL_PREREQFUNC_OK;
}

static int on_socket(void *userp, curl_socket_t fd, curlsocktype purpose)
{
    gs_transfer *t = userp;
    (void)purpose;

    settle_attempt(t);
    t->sent_mark = -1;
    if (t->on_open != NULL)
        t->on_open(t->on_open_ctx, fd);
    return CURL_SOCKOPT_OK;
}

gs_transfer *gs_transfer_new(void)
{
    return calloc(1, sizeof(gs_transfer));
}

#define SETOPT(option, value)                                                                      \
    do {                                                                                           \
        rc = curl_easy_setopt(e, option, value);                                                   \
        if (rc != CURLE_OK) {                                                                      \
            *what = #option;                                                                       \
            return rc;                                                                             \
        }                                                                                          \
    } while (0)

CURLcode gs_transfer_setup(gs_transfer *t, const gs_options *o, const char **what)
{
    CURLcode rc;
    CURL *e = t->easy = curl_easy_init();
    if (e == NULL) {
        *what = "curl_easy_init";
        return CURLE_OUT_OF_MEMORY;
    }
    SETOPT(CURLOPT_PRIVATE, t);
    SETOPT(CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM-based DNS timeouts */
#if LIBCURL_VERSION_NUM >= 0x075700
    /* Removing a transfer that is still resolving leaves libcurl's resolver thread to finish on
     * its own instead of joining it: a timeout, Ctrl-C, cancel() or close() during a slow DNS
     * lookup then ends at once, and no other transfer of the multi waits for it. */
    SETOPT(CURLOPT_QUICK_EXIT, 1L);
#endif
    SETOPT(CURLOPT_ERRORBUFFER, t->errbuf);
    SETOPT(CURLOPT_PROTOCOLS_STR, o->allow_http ? "http,https" : "https");
    SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
    /* An empty POST with "Content-Length: 0": POSTFIELDS is not copied, a literal outlives us. */
    SETOPT(CURLOPT_POSTFIELDS, "");
    SETOPT(CURLOPT_POSTFIELDSIZE, 0L);
    SETOPT(CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
    SETOPT(CURLOPT_TIMEOUT_MS, o->timeout_ms);
    SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
    SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
    if (o->ca_bundle != NULL)
        SETOPT(CURLOPT_CAINFO, o->ca_bundle);
    if (o->proxy != NULL)
        SETOPT(CURLOPT_PROXY, o->proxy);
    /* An https:// proxy's own certificate is verified against CURLOPT_PROXY_CAINFO, not
     * CURLOPT_CAINFO; the wheel's libcurl has no default for it. Set whenever a proxy may be
     * used (explicit or from the environment): "" turns proxies off. */
    if (o->proxy == NULL || o->proxy[0] != '\0') {
        SETOPT(CURLOPT_PROXY_SSL_VERIFYPEER, 1L);
        SETOPT(CURLOPT_PROXY_SSL_VERIFYHOST, 2L);
        if (o->proxy_ca_bundle != NULL)
            SETOPT(CURLOPT_PROXY_CAINFO, o->proxy_ca_bundle);
    }
    /* Through an HTTP proxy, plain http is tunnelled too: a proxy only ever sees a CONNECT,
     * never a forwarded request carrying our headers (the bearer token) in clear text. */
    SETOPT(CURLOPT_HTTPPROXYTUNNEL, 1L);
    /* Our headers (the bearer token) must never reach a proxy in its CONNECT request. */
    SETOPT(CURLOPT_HEADEROPT, (long)CURLHEADER_SEPARATE);
    if (o->user_agent != NULL && o->user_agent[0] != '\0')
        SETOPT(CURLOPT_USERAGENT, o->user_agent);
    SETOPT(CURLOPT_HTTP_VERSION,
           o->http2 ? (long)CURL_HTTP_VERSION_2TLS : (long)CURL_HTTP_VERSION_1_1);
    /* Pooled connections sit idle between sends: probe them so a dead peer is found early. */
    SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
    SETOPT(CURLOPT_TCP_KEEPIDLE, 30L);
    SETOPT(CURLOPT_TCP_KEEPINTVL, 15L);
    if (o->share != NULL)
        SETOPT(CURLOPT_SHARE, o->share);
    SETOPT(CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(CURLOPT_HEADERDATA, t);
    SETOPT(CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
    SETOPT(CURLOPT_WRITEFUNCTION, on_body);
    SETOPT(CURLOPT_WRITEDATA, t);
    SETOPT(CURLOPT_PREREQFUNCTION, on_prereq);
    SETOPT(CURLOPT_PREREQDATA, t);
    SETOPT(CURLOPT_SOCKOPTFUNCTION, on_socket);
    SETOPT(CURLOPT_SOCKOPTDATA, t);
    SETOPT(CURLOPT_READFUNCTION, on_read);
    SETOPT(CURLOPT_READDATA, t);
    SETOPT(CURLOPT_SEEKFUNCTION, on_seek);
    SETOPT(CURLOPT_SEEKDATA, t);
    t->src_fd = -1;
    t->pipewait = o->pipewait;
    return CURLE_OK;
}

static int is_https(const char *url)
{
    static const char scheme[] = "https:";
    for (size_t i = 0; i < sizeof(scheme) - 1; i++) {
        char c = url[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c + ('a' - 'A'));
        if (c != scheme[i])
            return 0;
    }
    return 1;
}

CURLcode gs_transfer_begin(gs_transfer *t, gs_request *req)
{
    CURLcode rc;
    CURL *e = t->easy;
    const char *ignored;
    const char **what = &ignored;

    SETOPT(CURLOPT_URL, req->url); /* copied by libcurl */
    SETOPT(CURLOPT_HTTPHEADER, req->headers);
    /* Only TLS can bring HTTP/2; on plain http PIPEWAIT would hold every transfer but the first
     * until that one's connection proved unable to multiplex (a whole round trip). */
    if (t->pipewait)
        SETOPT(CURLOPT_PIPEWAIT, (long)is_https(req->url));
    t->req = req;
    t->tag = req->tag;
    t->sent_mark = -1;
    t->request_written = 0;
    t->resend_blocked = 0;
    t->status = 0;
    t->code = CURLE_OK;
    t->request_sent = 0;
    t->body_len = 0;
    t->in_headers = 0;
    t->last_kept = -1;
    t->event_errno = 0;
    t->header_present = 0;
    t->header_text_len = 0;
    t->cur_status = 0;
    t->errbuf[0] = '\0';
    t->started = gs_now();
    return CURLE_OK;
}

/*
 * Method and body for a Handle.request(). Every body goes out with its Content-Length (libcurl
 * sends POSTFIELDSIZE_LARGE as such for a POST and for a custom method on the POST path). A
 * POST keeps the resend guard (it may be a sendMail); PUT, GET and DELETE may be resent, and a
 * file body is then rewound by on_seek().
 */
CURLcode gs_transfer_body(gs_transfer *t, const gs_body *b, const char **what)
{
    CURLcode rc;
    CURL *e = t->easy;

    t->custom = 1;
    t->keep_ok_body = 1;
    t->resend_ok = b->method != GS_POST;
    t->src_fd = -1;
    if (b->method == GS_GET || b->method == GS_DELETE) {
        SETOPT(CURLOPT_HTTPGET, 1L);
        SETOPT(CURLOPT_CUSTOMREQUEST, b->method == GS_DELETE ? "DELETE" : NULL);
        return CURLE_OK;
    }
    if (b->fd >= 0) {
        t->src_fd = b->fd;
        t->src_off = b->off;
        t->src_len = b->len;
        t->src_pos = 0;
        SETOPT(CURLOPT_POSTFIELDS, NULL); /* the read callback supplies the body */
        SETOPT(CURLOPT_POST, 1L);
        SETOPT(CURLOPT_UPLOAD_BUFFERSIZE, GS_UPLOAD_BUFFER);
        t->big_upload_buffer = 1;
    } else {
        SETOPT(CURLOPT_POSTFIELDS, b->mem != NULL ? b->mem : "");
    }
    SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(b->mem != NULL || b->fd >= 0 ? b->len : 0));
    SETOPT(CURLOPT_CUSTOMREQUEST, b->method == GS_PUT ? "PUT" : NULL);
    return CURLE_OK;
}

CURLcode gs_transfer_plain(gs_transfer *t)
{
    CURLcode rc;
    CURL *e = t->easy;
    const char *ignored;
    const char **what = &ignored;

    t->keep_ok_body = 0;
    t->resend_ok = 0;
    t->src_fd = -1;
    if (!t->custom)
        return CURLE_OK;
    t->custom = 0;
    SETOPT(CURLOPT_CUSTOMREQUEST, NULL);
    SETOPT(CURLOPT_POSTFIELDS, "");
    SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    return CURLE_OK;
}

/*
 * libcurl's text for an untrusted certificate does not say whose it was, and the fix differs
 * (proxy_ca_bundle=), so a failure of the HTTPS proxy's certificate gets GS_PROXY_TLS_PREFIX.
 * It is the proxy's when its verification result is set and no CONNECT was answered: the result
 * lives in the handle's settings and may be an earlier transfer's, the CONNECT code is reset by
 * each transfer.
 */
static void mark_proxy_certificate(gs_transfer *t, CURLcode code)
{
    static const char prefix[] = GS_PROXY_TLS_PREFIX;
    long verify = 0, connect_code = 0;
    size_t len;

    if (code != CURLE_PEER_FAILED_VERIFICATION)
        return;
    if (curl_easy_getinfo(t->easy, CURLINFO_PROXY_SSL_VERIFYRESULT, &verify) != CURLE_OK ||
        verify == 0)
        return;
    if (curl_easy_getinfo(t->easy, CURLINFO_HTTP_CONNECTCODE, &connect_code) != CURLE_OK ||
        connect_code != 0)
        return;
    len = strlen(t->errbuf);
    if (len > sizeof(t->errbuf) - sizeof(prefix))
        len = sizeof(t->errbuf) - sizeof(prefix); /* keep the text's start, drop its end */
    memmove(t->errbuf + sizeof(prefix) - 1, t->errbuf, len);
    memcpy(t->errbuf, prefix, sizeof(prefix) - 1);
    t->errbuf[sizeof(prefix) - 1 + len] = '\0';
}

void gs_transfer_finish(gs_transfer *t, CURLcode code)
{
    long status = 0;

    t->elapsed = gs_now() - t->started;
    settle_attempt(t);
    t->request_sent = t->request_written;
    if (t->resend_blocked) {
        code = CURLE_GOT_NOTHING;
        snprintf(t->errbuf, sizeof(t->errbuf),
                 "Connection closed with no response after the request was sent "
                 "(libcurl's automatic resend was refused: it could duplicate the send)");
    }
    t->code = code;
    if (curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
        status = 0;
    t->status = status;
    if (status != 0)
        t->request_sent = 1;
    else
        t->header_present = 0; /* only a proxy or interim answer was seen */
    if (code == CURLE_OK)
        t->errbuf[0] = '\0'; /* text from a failure libcurl recovered from is no error */
    else if (t->errbuf[0] == '\0')
        snprintf(t->errbuf, sizeof(t->errbuf), "%s", curl_easy_strerror(code));
    mark_proxy_certificate(t, code);
    /* Frees the 2 MiB buffer, so a pooled handle keeps only the default. Both callers get here
     * once libcurl reported the transfer done, and libcurl wants this option set on no active
     * transfer (on a failure, which a libcurl that took the larger size has no reason for, the
     * next finish tries again). */
    if (t->big_upload_buffer &&
        curl_easy_setopt(t->easy, CURLOPT_UPLOAD_BUFFERSIZE, GS_UPLOAD_BUFFER_DEFAULT) == CURLE_OK)
        t->big_upload_buffer = 0;
}

void gs_transfer_fail(gs_transfer *t, CURLcode code, const char *what, const char *reason)
{
    t->broken = 1;
    t->elapsed = 0.0;
    t->status = 0;
    t->code = code;
    t->request_sent = 0;
    t->body_len = 0;
    t->header_present = 0;
    snprintf(t->errbuf, sizeof(t->errbuf), "setting up the transfer failed at %s: %s", what,
             reason);
}

void gs_transfer_free(gs_transfer *t, int keep_curl)
{
    if (t == NULL)
        return;
    if (t->easy != NULL && !keep_curl)
        curl_easy_cleanup(t->easy);
    free(t->req);
    free(t->body);
    free(t->header_text);
    free(t);
}

/* Only whitespace ends a token: a password may hold quotes or backticks, and libcurl wraps
 * URLs in '...', so a token may start with a quote; the mask runs to the token's last '@'. */
static int token_end(char c)
{
    return c == '\0' || c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' ||
           c == '\f';
}

void gs_redact(const char *text, char *out, size_t size)
{
    size_t o = 0;
    if (size == 0)
        return;
    while (*text != '\0' && o + 1 < size) {
        if (token_end(*text)) {
            out[o++] = *text++;
            continue;
        }
        /* One token (a URL, a host:port, a word): mask everything before its last '@' that
         * follows "://", or the whole "user:password" part of a scheme-less token. */
        const char *a = text, *b = text, *at = NULL, *scheme = NULL;
        while (!token_end(*b)) {
            if (*b == '@')
                at = b;
            b++;
        }
        const char *start = a;
        if (at != NULL) {
            for (const char *p = a; p + 2 < at; p++)
                if (p[0] == ':' && p[1] == '/' && p[2] == '/') {
                    scheme = p + 3;
                    break;
                }
            if (scheme != NULL)
                start = scheme;
            else if (memchr(a, ':', (size_t)(at - a)) == NULL)
                at = NULL; /* a plain name@host carries no password */
        }
        for (const char *p = a; p < (at != NULL ? start : b) && o + 1 < size; p++)
            out[o++] = *p;
        if (at != NULL) {
            for (const char *m = "***"; *m != '\0' && o + 1 < size; m++)
                out[o++] = *m;
            for (const char *p = at; p < b && o + 1 < size; p++)
                out[o++] = *p;
        }
        text = b;
    }
    out[o] = '\0';
}
