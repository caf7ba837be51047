/*
 * sendloop: the physical limit for sequential sends (scenario S1).
 *
 * One easy handle, reused for every send so the connection (and TLS session) stays open, with the
 * options graphsend sets.  Per send it does what graphsend's C layer must do at minimum: set the
 * URL, build the header list with a fresh client-request-id, perform, read the status.
 *
 *   sendloop --base URL [--user U] [--token T] [--cainfo F] [--http2]
 * then reads counts on stdin and answers "<elapsed_ns> <ok> <cpu_ns>" per count (see common.h).
 *
 * Built with -DSENDLOOP_LIBRARY it is a shared library instead (sendloop_init(argc, argv) with the
 * same arguments, then sendloop_run(n)), so bench/breakdown.py can run the very same loop inside
 * a Python process: what the process costs, apart from the Python code per send.
 */
#include "common.h"

static options_t o;
static CURL *e;
static char errbuf[CURL_ERROR_SIZE] = "", rid[64] = "", url[512];
static char *auth;
static long next_id = 0;

int sendloop_init(int argc, char **argv) {
    parse_options(argc, argv, &o);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return 1;
    e = curl_easy_init();
    if (!e) return 1;
    set_static_options(e, &o, errbuf, rid);
    auth = auth_line(o.token);
    return 0;
}

/* n sends; returns how many were answered 202. */
long sendloop_run(long n) {
    long ok = 0;
    for (long i = 0; i < n; i++) {
        build_url(url, sizeof url, &o, o.user, next_id++ % 100000);
        struct curl_slist *h = request_headers(auth);
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
        CURLcode rc = curl_easy_perform(e);
        long status = 0;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        if (rc == CURLE_OK && status == 202) ok++;
        else if (ok == 0 && i == 0) fprintf(stderr, "sendloop: %d %ld %s\n", rc, status, errbuf);
        curl_slist_free_all(h);
    }
    return ok;
}

#ifndef SENDLOOP_LIBRARY
int main(int argc, char **argv) {
    if (sendloop_init(argc, argv) != 0) return 1;
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        long n = atol(line);
        if (n <= 0) break;
        int64_t t0 = now_ns(), c0 = cpu_ns();
        long ok = sendloop_run(n);
        int64_t t1 = now_ns(), c1 = cpu_ns();
        printf("%lld %ld %lld\n", (long long)(t1 - t0), ok, (long long)(c1 - c0));
        fflush(stdout);
    }
    curl_easy_cleanup(e);
    curl_global_cleanup();
    free(auth);
    return 0;
}
#endif
