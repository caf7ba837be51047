/*
 * One POST on one easy handle, in plain C: easy-handle options, the request block, the captured
 * result. Nothing here touches Python, so all of it may run with the GIL released.
 */
#ifndef GRAPHSEND_TRANSFER_H
#define GRAPHSEND_TRANSFER_H

#include <curl/curl.h>
#include <stddef.h>

/*
 * The oldest libcurl this code works with: CURLOPT_PROTOCOLS_STR (7.85) is the newest option it
 * cannot do without (CURLOPT_PREREQFUNCTION is 7.80). CURLOPT_QUICK_EXIT (7.87) is used when the
 * headers have it.
 */
#if LIBCURL_VERSION_NUM < 0x075500
#error "graphsend needs libcurl 7.85.0 or newer (CURLOPT_PROTOCOLS_STR)"
#endif

/* Graph's error bodies are a few hundred bytes; anything beyond this is read and dropped. */
#define GS_BODY_CAP (64 * 1024)
/* Handle.request(): a 2xx answer (a message's JSON) is kept whole up to this; errors keep
 * GS_BODY_CAP. Graph's largest message JSON without attachment bytes is far below it. */
#define GS_BODY_CAP_OK (8 * 1024 * 1024)

/* The response headers the Python layer needs (support asks for these), in result order. */
enum gs_header {
    GS_H_REQUEST_ID,
    GS_H_CLIENT_REQUEST_ID,
    GS_H_DATE,
    GS_H_RETRY_AFTER,
    GS_H_CONTENT_TYPE,
    GS_H_DIAGNOSTIC,
    GS_H_LOCATION, /* the last chunk of an upload session names the attachment here */
    GS_H_COUNT
};
typedef struct {
    const char *name; /* lower case, as Python sees it */
    size_t len;
} gs_header_name;
extern const gs_header_name gs_headers[GS_H_COUNT];

typedef struct gs_options {
    long connect_timeout_ms; /* 0: libcurl's built-in 300 s */
    long timeout_ms;         /* 0: no limit */
    int allow_http;
    int http2;
    int pipewait; /* set by the Engine so concurrent HTTP/2 transfers share one connection */
    char *ca_bundle;  /* malloc'd; NULL: libcurl's default CA store */
    char *proxy;      /* malloc'd; NULL: libcurl reads the proxy environment variables */
    char *proxy_ca_bundle; /* malloc'd; NULL: libcurl's default CA store for an HTTPS proxy */
    char *user_agent; /* malloc'd; "" sends none */
    CURLSH *share;    /* borrowed from a Share object the owner keeps alive */
} gs_options;

void gs_options_clear(gs_options *o);

/*
 * The method and body of a Handle.request(): none (the send default, an empty POST), bytes the
 * caller keeps alive for the transfer, or len bytes of an open file from off, read in C with
 * pread() while the GIL is released.
 */
enum gs_method { GS_GET, GS_POST, GS_PUT, GS_DELETE };
typedef struct gs_body {
    enum gs_method method;
    const char *mem; /* bytes body, or NULL */
    int fd;          /* file body when >= 0 */
    long long off, len;
} gs_body;

/*
 * A request lives in one malloc'd block: this header, the curl_slist nodes of the header list,
 * then the strings. libcurl does not copy CURLOPT_HTTPHEADER, so the block must outlive the
 * transfer; building the list ourselves costs no allocation once a Handle's block is big enough.
 */
typedef struct gs_request {
    struct gs_request *next; /* Engine queue link */
    long long tag;
    size_t size; /* bytes allocated */
    char *url;
    struct curl_slist *headers;
    const char *crid; /* the client-request-id sent, when the block wrote it; else NULL */
    size_t crid_len;
    /* Engine.submit() with a method or body: has_body set, and a bytes body is a copy kept in
     * this same block after its first size bytes, so freeing the block frees it too. */
    int has_body;
    gs_body body;
} gs_request;

typedef struct gs_request_writer {
    gs_request *req;
    struct curl_slist *node;
    char *text;
} gs_request_writer;

/* Sizes *reqp for nheaders caller headers and text_len bytes of their strings (each counted with
 * its NUL, the URL included), reusing the block when it is big enough. -1 when out of memory. */
int gs_request_begin(gs_request **reqp, size_t nheaders, size_t text_len, gs_request_writer *w);
/* Take len bytes (plus a NUL written here) for the URL or the next header line; the caller fills
 * them in. The put_ forms copy a ready string. */
char *gs_request_url(gs_request_writer *w, size_t len);
char *gs_request_header(gs_request_writer *w, size_t len);
/* "client-request-id: <crid>" as the next header line (GS_CRID_LINE(len) bytes of text); the
 * request remembers the id (crid) so that a 202 can come back as a Receipt carrying it. */
#define GS_CRID_PREFIX "client-request-id: "
#define GS_CRID_LINE(len) (sizeof(GS_CRID_PREFIX) - 1 + (len) + 1)
void gs_request_put_crid_header(gs_request_writer *w, const char *crid, size_t len);
void gs_request_put_url(gs_request_writer *w, const char *url, size_t len);
void gs_request_put_header(gs_request_writer *w, const char *line, size_t len);
void gs_request_end(gs_request_writer *w);


typedef struct gs_transfer {
    CURL *easy;
    struct gs_transfer *next, *prev; /* Engine lists */
    gs_request *req;                 /* owned: a Handle reuses it, the Engine frees it per send */
    long long tag;
    double started;
    int broken;   /* setup failed: free it rather than reuse it */
    int pipewait; /* from gs_options, applied per URL */
    /* Told of every connection socket libcurl opens for this transfer (SOCKOPTFUNCTION), when
     * set: LoopEngine's events.c keeps kept-alive connections' sockets registered. */
    void (*on_open)(void *ctx, curl_socket_t fd);
    void *on_open_ctx;

    /* Resend guard: see on_prereq() in transfer.c. */
    long sent_mark;      /* CURLINFO_REQUEST_SIZE when the current attempt began; -1: none yet */
    int request_written; /* some attempt of this transfer wrote request bytes */
    int resend_blocked;
    int resend_ok; /* a repeatable request (PUT of a chunk, GET, DELETE): libcurl may resend */

    /* Handle.request(): a file body (pread from src_fd) and the 2xx body cap. */
    int src_fd;
    long long src_off, src_len, src_pos;
    int big_upload_buffer; /* GS_UPLOAD_BUFFER is set for this file body: put back at finish */
    int keep_ok_body; /* a 2xx body is kept up to GS_BODY_CAP_OK */
    int custom;       /* the easy handle's method options differ from the send's */
    int cur_status;   /* from the latest status line, for the body cap */

    /* Result. */
    long status;
    CURLcode code;
    int request_sent;
    double elapsed;
    char *body;
    size_t body_len, body_cap;
    int in_headers;          /* between a status line and the blank line after it */
    int last_kept;           /* enum gs_header kept from the previous line, else -1 (folding) */
    int event_errno;         /* the Engine's epoll_ctl() failed for this transfer's socket */
    unsigned header_present; /* bit per enum gs_header */
    size_t header_off[GS_H_COUNT], header_len[GS_H_COUNT];
    char *header_text;
    size_t header_text_len, header_text_cap;
    char errbuf[CURL_ERROR_SIZE]; /* CURLOPT_ERRORBUFFER: lives as long as the easy handle */
} gs_transfer;

double gs_now(void); /* monotonic seconds */

/* Copies text to out (size bytes, truncated, NUL-terminated) with the userinfo of any URL, and
 * any scheme-less "user:password@host", replaced by three asterisks: libcurl's error texts may
 * quote a proxy URL, password included. */
void gs_redact(const char *text, char *out, size_t size);

/* Starts the error text of a transfer whose HTTPS proxy's certificate was not trusted
 * (CURLE_PEER_FAILED_VERIFICATION); graphsend/_rules/errors.py looks for it. */
#define GS_PROXY_TLS_PREFIX "HTTPS proxy: "

gs_transfer *gs_transfer_new(void);
/* Creates the easy handle and sets every per-handle option. On failure *what names the step. */
CURLcode gs_transfer_setup(gs_transfer *t, const gs_options *o, const char **what);
/* Points the easy handle at req (URL, header list) and clears the previous result. */
CURLcode gs_transfer_begin(gs_transfer *t, gs_request *req);
/* Sets method and body for the next transfer (after gs_transfer_begin). */
CURLcode gs_transfer_body(gs_transfer *t, const gs_body *b, const char **what);
/* Puts back the send's empty POST after a gs_transfer_body() transfer. */
CURLcode gs_transfer_plain(gs_transfer *t);
/* Records the result once libcurl is done with the transfer (or it was removed early). */
void gs_transfer_finish(gs_transfer *t, CURLcode code);
/* Gives a transfer that never started a result saying why; it is not reused afterwards. */
void gs_transfer_fail(gs_transfer *t, CURLcode code, const char *what, const char *reason);
/* Frees everything; with keep_curl (another process after fork) the easy handle is leaked. */
void gs_transfer_free(gs_transfer *t, int keep_curl);

#endif
