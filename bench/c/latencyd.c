/*
 * latencyd: a loopback HTTP/1.1 server that answers Graph's send path with 202 after a fixed delay.
 *
 * Why C and not asyncio: the bulk scenario pushes 2,000 requests through 400 connections in about
 * 100 ms.  A Python server would be the bottleneck and would blur the comparison between clients;
 * this one costs a few microseconds per request, so the wall time measures the client.
 *
 * Every request waits the same delay, so responses fall due in arrival order: one FIFO queue is
 * the whole timer wheel.  The server also counts requests in flight per mailbox (/me or
 * /users/{id}), which lets the harness check that each client kept to its per-mailbox cap.
 *
 *   latencyd --port 0 --latency-ms 20     prints "port N" on stdout once listening
 *   GET  /stats   -> {"requests":..,"peak_in_flight":..,"peak_per_mailbox":..,"mailboxes":..}
 *   POST /reset   -> clears the counters
 * POST .../messages/{id}/send and POST .../sendMail answer 202 after the delay, POST .../messages
 * (a new draft) 201 with {"id":"AAMkLD<n>"} after the delay; anything else 404.
 * It exits when stdin closes (the harness holds the pipe) or on SIGTERM.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONN 8192
#define BUF_SIZE 16384
#define MAILBOX_SLOTS 8192 /* open addressing, power of two */
#define MAILBOX_LEN 128

typedef struct {
    int fd;
    unsigned gen;       /* bumped on close so stale queue entries are ignored */
    size_t len;         /* bytes buffered */
    char buf[BUF_SIZE]; /* request bytes not yet parsed */
} conn_t;

typedef struct {
    char name[MAILBOX_LEN];
    int used;
    int in_flight;
    int peak;
} mailbox_t;

typedef struct {
    int conn;       /* index into conns */
    unsigned gen;   /* conns[conn].gen when queued */
    int64_t due_ns; /* monotonic time the answer falls due */
    int mailbox;    /* index into mailboxes, -1 for none */
    int create;     /* POST .../messages: 201 with a new draft's id, not 202 */
    char rid[40];   /* client-request-id to echo back */
} pending_t;

static conn_t *conns[MAX_CONN];
static mailbox_t mailboxes[MAILBOX_SLOTS];
static pending_t *queue;
static size_t q_head, q_tail, q_cap;
static int64_t latency_ns;
static long long stat_requests, stat_in_flight, stat_peak, stat_mailbox_peak, stat_mailboxes;
static unsigned long long request_counter;
static volatile sig_atomic_t stopping;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void on_term(int sig) {
    (void)sig;
    stopping = 1;
}

static int mailbox_index(const char *name, size_t n) {
    if (n >= MAILBOX_LEN) n = MAILBOX_LEN - 1;
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)name[i]) * 1099511628211ULL;
    for (size_t probe = 0; probe < MAILBOX_SLOTS; probe++) {
        size_t i = (h + probe) & (MAILBOX_SLOTS - 1);
        mailbox_t *m = &mailboxes[i];
        if (!m->used) {
            memcpy(m->name, name, n);
            m->name[n] = '\0';
            m->used = 1;
            stat_mailboxes++;
            return (int)i;
        }
        if (strlen(m->name) == n && memcmp(m->name, name, n) == 0) return (int)i;
    }
    return -1;
}

static void reset_stats(void) {
    /* Counts of requests still in flight stay right: only peaks and totals are cleared. */
    for (size_t i = 0; i < MAILBOX_SLOTS; i++) mailboxes[i].peak = mailboxes[i].in_flight;
    stat_requests = 0;
    stat_peak = stat_in_flight;
    stat_mailbox_peak = 0;
}

static void queue_push(pending_t p) {
    if (q_tail - q_head == q_cap) {
        size_t ncap = q_cap ? q_cap * 2 : 1024;
        pending_t *nq = malloc(ncap * sizeof *nq);
        if (!nq) abort();
        for (size_t i = 0; i < q_cap; i++) nq[i] = queue[(q_head + i) % q_cap];
        free(queue);
        queue = nq;
        q_tail = q_tail - q_head;
        q_head = 0;
        q_cap = ncap;
    }
    queue[q_tail % q_cap] = p;
    q_tail++;
}

static void close_conn(int epfd, int ci) {
    conn_t *c = conns[ci];
    if (!c || c->fd < 0) return;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->gen++;
    c->len = 0;
}

static void write_all(int epfd, int ci, const char *data, size_t n) {
    /* Responses are tiny and loopback buffers large: a short write means a dead peer. */
    conn_t *c = conns[ci];
    while (n > 0) {
        ssize_t w = send(c->fd, data, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            close_conn(epfd, ci);
            return;
        }
        data += w;
        n -= (size_t)w;
    }
}

static void answer_now(int epfd, int ci, int status, const char *reason, const char *body) {
    char out[1024];
    int n = snprintf(out, sizeof out,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     status, reason, strlen(body), body);
    write_all(epfd, ci, out, (size_t)n);
}

/* Case-insensitive search for a header's value inside the header block; returns its length. */
static size_t header_value(const char *head, size_t n, const char *name, const char **value) {
    size_t nl = strlen(name);
    const char *p = head, *end = head + n;
    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol) eol = end;
        if ((size_t)(eol - p) > nl + 1 && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t')) v++;
            *value = v;
            return (size_t)(eol - v);
        }
        p = eol + 2;
    }
    return 0;
}

/* Parses every complete request in the buffer; returns -1 when the connection must close. */
static int handle_requests(int epfd, int ci) {
    conn_t *c = conns[ci];
    size_t off = 0;
    for (;;) {
        char *start = c->buf + off;
        size_t avail = c->len - off;
        char *hend = memmem(start, avail, "\r\n\r\n", 4);
        if (!hend) break;
        size_t head_len = (size_t)(hend - start) + 4;
        const char *v = NULL;
        size_t vl = header_value(start, head_len, "content-length", &v);
        size_t body = vl ? strtoul(v, NULL, 10) : 0;
        if (body > BUF_SIZE / 2) return -1;
        if (avail < head_len + body) break;

        char *sp1 = memchr(start, ' ', head_len);
        char *sp2 = sp1 ? memchr(sp1 + 1, ' ', head_len - (size_t)(sp1 + 1 - start)) : NULL;
        if (!sp1 || !sp2) return -1;
        size_t mlen = (size_t)(sp1 - start), plen = (size_t)(sp2 - sp1 - 1);
        const char *path = sp1 + 1;

        if (mlen == 3 && memcmp(start, "GET", 3) == 0 && plen == 6 && memcmp(path, "/stats", 6) == 0) {
            char js[256];
            snprintf(js, sizeof js,
                     "{\"requests\":%lld,\"peak_in_flight\":%lld,\"peak_per_mailbox\":%lld,"
                     "\"mailboxes\":%lld,\"in_flight\":%lld}",
                     stat_requests, stat_peak, stat_mailbox_peak, stat_mailboxes, stat_in_flight);
            answer_now(epfd, ci, 200, "OK", js);
        } else if (mlen == 4 && memcmp(start, "POST", 4) == 0 && plen == 6 &&
                   memcmp(path, "/reset", 6) == 0) {
            reset_stats();
            answer_now(epfd, ci, 200, "OK", "{}");
        } else if (mlen == 4 && memcmp(start, "POST", 4) == 0 &&
                   ((plen > 5 && memcmp(path + plen - 5, "/send", 5) == 0 &&
                     memmem(path, plen, "/messages/", 10)) ||
                    (plen > 9 && memcmp(path + plen - 9, "/sendMail", 9) == 0) ||
                    (plen > 9 && memcmp(path + plen - 9, "/messages", 9) == 0))) {
            int create = memcmp(path + plen - 9, "/messages", 9) == 0;
            /* Mailbox: the segment after /users/, or "me". */
            const char *mb = "me";
            size_t mbl = 2;
            const char *u = memmem(path, plen, "/users/", 7);
            if (u) {
                mb = u + 7;
                const char *slash = memchr(mb, '/', (size_t)(path + plen - mb));
                mbl = slash ? (size_t)(slash - mb) : 0;
            }
            int mi = mailbox_index(mb, mbl);
            if (mi >= 0) {
                mailbox_t *m = &mailboxes[mi];
                if (++m->in_flight > m->peak) m->peak = m->in_flight;
                if (m->peak > stat_mailbox_peak) stat_mailbox_peak = m->peak;
            }
            if (++stat_in_flight > stat_peak) stat_peak = stat_in_flight;
            stat_requests++;
            pending_t p = {.conn = ci, .gen = c->gen, .due_ns = now_ns() + latency_ns, .mailbox = mi,
                           .create = create};
            size_t rl = header_value(start, head_len, "client-request-id", &v);
            if (rl >= sizeof p.rid) rl = sizeof p.rid - 1;
            memcpy(p.rid, v ? v : "", rl);
            p.rid[rl] = '\0';
            queue_push(p);
        } else {
            answer_now(epfd, ci, 404, "Not Found", "{\"error\":{\"code\":\"NotFound\"}}");
        }
        if (conns[ci]->fd < 0) return -1;
        off += head_len + body;
    }
    if (off) {
        memmove(c->buf, c->buf + off, c->len - off);
        c->len -= off;
    }
    return 0;
}

static void flush_due(int epfd, int64_t now) {
    while (q_head != q_tail) {
        pending_t *p = &queue[q_head % q_cap];
        if (p->due_ns > now) break;
        if (p->mailbox >= 0) mailboxes[p->mailbox].in_flight--;
        stat_in_flight--;
        conn_t *c = conns[p->conn];
        if (c && c->fd >= 0 && c->gen == p->gen) {
            char out[320];
            int n;
            if (p->create) {
                char js[64];
                int jl = snprintf(js, sizeof js, "{\"id\":\"AAMkLD%llu\"}", ++request_counter);
                n = snprintf(out, sizeof out,
                             "HTTP/1.1 201 Created\r\nrequest-id: bench-%llu\r\n"
                             "client-request-id: %s\r\nContent-Type: application/json\r\n"
                             "Content-Length: %d\r\n\r\n%s",
                             request_counter, p->rid, jl, js);
            } else {
                n = snprintf(out, sizeof out,
                             "HTTP/1.1 202 Accepted\r\nrequest-id: bench-%llu\r\n"
                             "client-request-id: %s\r\nContent-Length: 0\r\n\r\n",
                             ++request_counter, p->rid);
            }
            write_all(epfd, p->conn, out, (size_t)n);
        }
        q_head++;
    }
}

static int parse_int_arg(int argc, char **argv, const char *name, int dflt) {
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) return atoi(argv[i + 1]);
    return dflt;
}

int main(int argc, char **argv) {
    int port = parse_int_arg(argc, argv, "--port", 0);
    latency_ns = (int64_t)parse_int_arg(argc, argv, "--latency-ms", 50) * 1000000LL;
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    signal(SIGPIPE, SIG_IGN);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 4096) < 0) {
        perror("latencyd: bind/listen");
        return 1;
    }
    socklen_t al = sizeof addr;
    getsockname(lfd, (struct sockaddr *)&addr, &al);
    printf("port %d\n", ntohs(addr.sin_port));
    fflush(stdout);

    int epfd = epoll_create1(0);
    if (epfd < 0) {
        perror("latencyd: epoll_create1");
        return 1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)-1};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    ev.data.u64 = (uint64_t)-2;
    epoll_ctl(epfd, EPOLL_CTL_ADD, STDIN_FILENO, &ev); /* EOF on stdin: the harness went away */

    struct epoll_event events[256];
    while (!stopping) {
        /* epoll_pwait2 takes a timespec: millisecond epoll_wait would add up to 1 ms per round. */
        struct timespec ts, *tsp = NULL;
        if (q_head != q_tail) {
            int64_t wait = queue[q_head % q_cap].due_ns - now_ns();
            if (wait < 0) wait = 0;
            ts.tv_sec = wait / 1000000000LL;
            ts.tv_nsec = wait % 1000000000LL;
            tsp = &ts;
        }
        int n = epoll_pwait2(epfd, events, 256, tsp, NULL);
        if (n < 0 && errno != EINTR) break;
        for (int i = 0; i < n; i++) {
            uint64_t tag = events[i].data.u64;
            if (tag == (uint64_t)-2) {
                char tmp[64];
                if (read(STDIN_FILENO, tmp, sizeof tmp) <= 0) stopping = 1;
                continue;
            }
            if (tag == (uint64_t)-1) {
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
                    if (fd < 0) break;
                    if (fd >= MAX_CONN) {
                        close(fd);
                        continue;
                    }
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    if (!conns[fd]) conns[fd] = calloc(1, sizeof(conn_t));
                    if (!conns[fd]) {
                        close(fd);
                        continue;
                    }
                    conns[fd]->fd = fd;
                    conns[fd]->len = 0;
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = (uint64_t)fd};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            int ci = (int)tag;
            conn_t *c = conns[ci];
            if (!c || c->fd < 0) continue;
            ssize_t r = recv(c->fd, c->buf + c->len, BUF_SIZE - c->len, 0);
            if (r <= 0) {
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                close_conn(epfd, ci);
                continue;
            }
            c->len += (size_t)r;
            if (handle_requests(epfd, ci) < 0 || c->len == BUF_SIZE) close_conn(epfd, ci);
        }
        flush_due(epfd, now_ns());
    }
    return 0;
}
