/*
 * sendmulti: the physical limit for bulk sends (scenario S3) with curl's multi interface.
 *
 * mailboxes x per_mailbox sends, at most `cap` in flight per mailbox (Outlook's concurrency limit),
 * no global limit.  When a transfer finishes its mailbox starts its next one at once, which is the
 * best schedule this workload has.  Easy handles and the multi handle (and so its connection
 * cache) are kept across rounds, as a long-lived client would.
 *
 * Two ways to drive the multi handle:
 *   --api poll    curl_multi_perform + curl_multi_poll (graphsend's Engine did until c3b1f44). Each
 *                 call walks every transfer and polls every socket: O(transfers) per wakeup.
 *   --api socket  curl_multi_socket_action over epoll: only the sockets that are ready (as the
 *                 Engine, csrc/events.c).
 *
 *   sendmulti --base URL [--api poll|socket] [--token T] [--mailboxes 100] [--per-mailbox 20]
 *             [--cap 4]
 * then reads counts on stdin: N bulk rounds, answered "<elapsed_ns> <ok> <cpu_ns>" (see common.h).
 */
#include <sys/epoll.h>

#include "common.h"

typedef struct {
    CURL *easy;
    struct curl_slist *headers;
    int mailbox;
    char errbuf[CURL_ERROR_SIZE];
    char rid[64];
} slot_t;

static options_t o;
static CURLM *multi;
static slot_t **free_slots;
static int n_free, running, *next_send;
static char (*names)[64];
static char *auth;
static long id_counter, ok;
static int epfd = -1;
static long timer_ms = -1; /* socket API: libcurl's requested timeout, -1 for none */

static void start(slot_t *s, int m) {
    char url[512];
    s->mailbox = m;
    next_send[m]++;
    build_url(url, sizeof url, &o, names[m], id_counter++ % 100000);
    s->headers = request_headers(auth);
    curl_easy_setopt(s->easy, CURLOPT_URL, url);
    curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->headers);
    curl_multi_add_handle(multi, s->easy);
    running++;
}

/* Collects finished transfers; each frees a slot that its mailbox's next send takes at once. */
static void reap(void) {
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(multi, &left))) {
        if (msg->msg != CURLMSG_DONE) continue;
        slot_t *s;
        CURLcode result = msg->data.result;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
        long status = 0;
        curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
        if (result == CURLE_OK && status == 202) ok++;
        else fprintf(stderr, "sendmulti: %d %ld %s\n", result, status, s->errbuf);
        curl_multi_remove_handle(multi, s->easy);
        curl_slist_free_all(s->headers);
        s->headers = NULL;
        running--;
        if (next_send[s->mailbox] < o.per_mailbox) start(s, s->mailbox);
        else free_slots[n_free++] = s;
    }
}

static int on_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp) {
    (void)e;
    (void)userp;
    struct epoll_event ev = {.data.fd = fd};
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
        curl_multi_assign(multi, fd, NULL);
        return 0;
    }
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
    if (socketp) {
        epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
    } else {
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
        curl_multi_assign(multi, fd, (void *)1);
    }
    return 0;
}

static int on_timer(CURLM *m, long timeout_ms, void *userp) {
    (void)m;
    (void)userp;
    timer_ms = timeout_ms;
    return 0;
}

static void drive_poll(void) {
    while (running > 0) {
        int still;
        curl_multi_perform(multi, &still);
        reap();
        if (running > 0) curl_multi_poll(multi, NULL, 0, 1000, NULL);
    }
}

static void drive_socket(void) {
    struct epoll_event events[512];
    int still;
    while (running > 0) {
        if (timer_ms == 0) {
            timer_ms = -1;
            curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &still);
            reap();
            continue;
        }
        int n = epoll_wait(epfd, events, 512, timer_ms < 0 ? 1000 : (int)timer_ms);
        if (n == 0) {
            timer_ms = -1;
            curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &still);
        }
        for (int i = 0; i < n; i++) {
            int flags = (events[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
                        (events[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                        (events[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
            curl_multi_socket_action(multi, events[i].data.fd, flags, &still);
        }
        reap();
    }
}

int main(int argc, char **argv) {
    int use_socket = 0;
    for (int i = 1; i + 1 < argc; i++) /* --api is ours; the rest is common.h's */
        if (strcmp(argv[i], "--api") == 0) {
            use_socket = strcmp(argv[i + 1], "socket") == 0;
            memmove(&argv[i], &argv[i + 2], (size_t)(argc - i - 2) * sizeof *argv);
            argc -= 2;
            break;
        }
    parse_options(argc, argv, &o);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return 1;
    int total_slots = o.mailboxes * o.cap;
    multi = curl_multi_init();
    if (!multi) return 1;
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)total_slots);
    if (use_socket) {
        epfd = epoll_create1(0);
        if (epfd < 0) {
            perror("sendmulti: epoll_create1");
            return 1;
        }
        curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
        curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer);
    }

    slot_t *slots = calloc((size_t)total_slots, sizeof *slots);
    free_slots = calloc((size_t)total_slots, sizeof *free_slots);
    next_send = calloc((size_t)o.mailboxes, sizeof *next_send);
    names = calloc((size_t)o.mailboxes, sizeof *names);
    if (!slots || !free_slots || !next_send || !names) {
        fprintf(stderr, "sendmulti: out of memory\n");
        return 1;
    }
    for (int i = 0; i < total_slots; i++) {
        slots[i].easy = curl_easy_init();
        if (!slots[i].easy) return 1;
        set_static_options(slots[i].easy, &o, slots[i].errbuf, slots[i].rid);
        curl_easy_setopt(slots[i].easy, CURLOPT_PRIVATE, &slots[i]);
        free_slots[n_free++] = &slots[i];
    }
    for (int m = 0; m < o.mailboxes; m++) mailbox_name(names[m], sizeof names[m], m);
    auth = auth_line(o.token);

    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        long rounds = atol(line);
        if (rounds <= 0) break;
        ok = 0;
        int64_t t0 = now_ns(), c0 = cpu_ns();
        for (long r = 0; r < rounds; r++) {
            memset(next_send, 0, (size_t)o.mailboxes * sizeof *next_send);
            /* Fill every mailbox to its cap, taking the mailboxes in turn. */
            for (int k = 0; k < o.cap; k++)
                for (int m = 0; m < o.mailboxes; m++)
                    if (next_send[m] < o.per_mailbox) start(free_slots[--n_free], m);
            if (use_socket) drive_socket();
            else drive_poll();
        }
        int64_t t1 = now_ns(), c1 = cpu_ns();
        printf("%lld %ld %lld\n", (long long)(t1 - t0), ok, (long long)(c1 - c0));
        fflush(stdout);
    }
    for (int i = 0; i < total_slots; i++) curl_easy_cleanup(slots[i].easy);
    curl_multi_cleanup(multi);
    curl_global_cleanup();
    return 0;
}
