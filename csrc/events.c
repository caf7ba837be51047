/* How an Engine waits for libcurl's sockets (see events.h). */
#define _GNU_SOURCE

#include "events.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if GS_EV_EPOLL
#include <sys/epoll.h>
#include <sys/eventfd.h>
#endif

#include "transfer.h"

/*
 * A socket we cannot watch would leave its transfer waiting forever. Returning -1 would tell
 * libcurl to fail the whole multi, and with it every transfer in flight, so the one transfer is
 * marked instead and the Engine ends it after the step.
 */
static int unwatched(gs_events *ev, CURL *easy, int err)
{
    char *priv = NULL;
    if (easy != NULL && curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv) == CURLE_OK &&
        priv != NULL) {
        ((gs_transfer *)priv)->event_errno = err != 0 ? err : EIO;
        ev->unwatched = 1;
    }
    return 0;
}

/* ---- GS_EV_LOOP: record, the caller's event loop does the waiting --------------------------- */

static int record_change(gs_events *ev, curl_socket_t s, int what)
{
    if (ev->nchanges == ev->changes_cap) {
        size_t cap = ev->changes_cap ? ev->changes_cap * 2 : 16;
        gs_sock_change *grown = realloc(ev->changes, cap * sizeof(*grown));
        if (grown == NULL)
            return -1;
        ev->changes = grown;
        ev->changes_cap = cap;
    }
    ev->changes[ev->nchanges].fd = s;
    ev->changes[ev->nchanges].what = what;
    ev->nchanges++;
    return 0;
}

static int on_socket_loop(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    gs_events *ev = userp;
    (void)socketp;
    if (what == CURL_POLL_REMOVE && s >= 0 && (size_t)s < ev->conn_cap && ev->conn[s])
        what = GS_SOCK_IDLE;
    if (record_change(ev, s, what) < 0)
        /* A removal needs no watching (the caller keeps it registered until a readiness or the
         * close says otherwise); anything else is this transfer's failure. */
        return what == CURL_POLL_REMOVE || what == GS_SOCK_IDLE ? 0
                                                                : unwatched(ev, easy, ENOMEM);
    return 0;
}

/* A connection socket (transfer.c's SOCKOPTFUNCTION): its close comes through on_close_loop.
 * Unmarked when the mark cannot be stored: its CURL_POLL_REMOVE then stays a removal. */
static void on_open_loop(void *ctx, curl_socket_t s)
{
    gs_events *ev = ctx;
    if (s < 0)
        return;
    if ((size_t)s >= ev->conn_cap) {
        size_t cap = ev->conn_cap ? ev->conn_cap : 64;
        unsigned char *grown;
        while (cap <= (size_t)s)
            cap *= 2;
        grown = realloc(ev->conn, cap);
        if (grown == NULL)
            return;
        memset(grown + ev->conn_cap, 0, cap - ev->conn_cap);
        ev->conn = grown;
        ev->conn_cap = cap;
    }
    ev->conn[s] = 1;
}

/* CURLOPT_CLOSESOCKETFUNCTION: recorded before the close, so that in the changes a reused fd
 * number comes after the close of its previous socket. */
static int on_close_loop(void *clientp, curl_socket_t s)
{
    gs_events *ev = clientp;
    if (s >= 0 && (size_t)s < ev->conn_cap && ev->conn[s]) {
        ev->conn[s] = 0;
        if (record_change(ev, s, GS_SOCK_CLOSED) < 0)
            ev->close_lost = 1;
    }
    return close(s);
}

CURLcode gs_events_easy(gs_events *ev, gs_transfer *t)
{
    CURLcode rc;
    if (ev->mode != GS_EV_LOOP)
        return CURLE_OK;
    rc = curl_easy_setopt(t->easy, CURLOPT_CLOSESOCKETFUNCTION, on_close_loop);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(t->easy, CURLOPT_CLOSESOCKETDATA, ev);
    if (rc == CURLE_OK) {
        t->on_open = on_open_loop;
        t->on_open_ctx = ev;
    }
    return rc;
}

static int on_timer_loop(CURLM *multi, long timeout_ms, void *userp)
{
    gs_events *ev = userp;
    (void)multi;
    ev->timer_ms = timeout_ms;
    ev->timer_changed = 1;
    return 0;
}

CURLMcode gs_events_action(gs_events *ev, CURLM *multi, curl_socket_t fd, int flags)
{
    int running;
    (void)ev;
    return curl_multi_socket_action(multi, fd, flags, &running);
}

/* ---- GS_EV_WAIT over epoll (Linux) ----------------------------------------------------------- */
#if GS_EV_EPOLL

#define MAX_EVENTS 64
#define REGISTERED ((void *)1) /* curl_multi_assign() mark: the socket is in the epoll set */

/* CURLMOPT_SOCKETFUNCTION: keep the epoll set in step with what libcurl waits for. */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    gs_events *ev = userp;
    struct epoll_event e = {0};

    if (what == CURL_POLL_REMOVE) {
        /* libcurl may already have closed it, which removed it from the set: nothing to undo. */
        (void)epoll_ctl(ev->epoll_fd, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    e.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
    e.data.fd = s;
    if (socketp == REGISTERED) {
        if (epoll_ctl(ev->epoll_fd, EPOLL_CTL_MOD, s, &e) == 0)
            return 0;
        if (errno != ENOENT) /* ENOENT: closed and reopened under the same number */
            return unwatched(ev, easy, errno);
    }
    if (epoll_ctl(ev->epoll_fd, EPOLL_CTL_ADD, s, &e) != 0 &&
        (errno != EEXIST || epoll_ctl(ev->epoll_fd, EPOLL_CTL_MOD, s, &e) != 0))
        return unwatched(ev, easy, errno);
    /* Remembered so later changes are one MOD. If it cannot be, the next change finds the
     * socket registered (EEXIST) and falls back to MOD: correct, one syscall dearer. */
    (void)curl_multi_assign(ev->multi, s, REGISTERED);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: libcurl wants a call with CURL_SOCKET_TIMEOUT after timeout_ms. */
static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    gs_events *ev = userp;
    (void)multi;
    ev->timer_at = timeout_ms < 0 ? -1.0 : gs_now() + (double)timeout_ms / 1000.0;
    return 0;
}

static int open_wait(gs_events *ev, CURLM *multi)
{
    struct epoll_event e = {.events = EPOLLIN};

    ev->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    ev->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (ev->epoll_fd < 0 || ev->wake_fd < 0)
        return -1;
    e.data.fd = ev->wake_fd;
    if (epoll_ctl(ev->epoll_fd, EPOLL_CTL_ADD, ev->wake_fd, &e) != 0)
        return -1;
    if (curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket) != CURLM_OK ||
        curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, ev) != CURLM_OK ||
        curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer) != CURLM_OK ||
        curl_multi_setopt(multi, CURLMOPT_TIMERDATA, ev) != CURLM_OK) {
        errno = ENOMEM;
        return -1;
    }
    return 0;
}

int gs_events_wake(gs_events *ev)
{
    uint64_t one = 1;
    /* EAGAIN: the counter is full, so the loop is woken already. */
    if (write(ev->wake_fd, &one, sizeof(one)) != (ssize_t)sizeof(one) && errno != EAGAIN)
        return -1;
    return 0;
}

static int fail(gs_step *st, const char *call)
{
    st->failed = call;
    st->sys_errno = errno;
    return -1;
}

static int run_timer(gs_events *ev, CURLM *multi, gs_step *st)
{
    int running;
    ev->timer_at = -1.0; /* libcurl sets the next one from inside the call */
    st->mc = curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
    return st->mc == CURLM_OK ? 0 : -1;
}

int gs_events_step(gs_events *ev, CURLM *multi, double wait, gs_step *st)
{
    struct epoll_event events[MAX_EVENTS];
    double now = gs_now();
    int n, running;

    st->mc = CURLM_OK;
    st->failed = NULL;
    if (!(wait > 0.0)) /* also NaN */
        wait = 0.0;
    if (wait > 60.0)
        wait = 60.0; /* the int milliseconds below stay in range whatever the caller passed */
    /* A due timer runs first; the sockets are then still polled, without waiting, so that a
     * caller stepping often (every submit() and wakeup()) cannot starve them. */
    if (ev->timer_at >= 0.0 && ev->timer_at <= now) {
        if (run_timer(ev, multi, st) < 0)
            return -1;
        wait = 0.0;
    }
    if (ev->timer_at >= 0.0 && ev->timer_at - now < wait)
        wait = ev->timer_at - now > 0.0 ? ev->timer_at - now : 0.0;
    /* Rounded up: waking a fraction of a millisecond early would spin until the timer is due. */
    n = epoll_wait(ev->epoll_fd, events, MAX_EVENTS, (int)(wait * 1000.0 + 0.999));
    if (n < 0)
        return errno == EINTR ? 0 : fail(st, "epoll_wait");
    for (int i = 0; i < n; i++) {
        int fd = events[i].data.fd, flags = 0;
        if (fd == ev->wake_fd) {
            uint64_t count;
            if (read(ev->wake_fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
                return fail(st, "read(eventfd)");
            continue;
        }
        if (events[i].events & EPOLLIN)
            flags |= CURL_CSELECT_IN;
        if (events[i].events & EPOLLOUT)
            flags |= CURL_CSELECT_OUT;
        if (events[i].events & (EPOLLERR | EPOLLHUP))
            flags |= CURL_CSELECT_ERR;
        st->mc = curl_multi_socket_action(multi, fd, flags, &running);
        if (st->mc != CURLM_OK)
            return -1;
    }
    if (ev->timer_at >= 0.0 && ev->timer_at <= gs_now())
        return run_timer(ev, multi, st);
    return 0;
}

/* ---- GS_EV_WAIT, portable: libcurl's own wait and wake-up ----------------------------------- */
#else

static int open_wait(gs_events *ev, CURLM *multi)
{
    (void)ev;
    (void)multi;
    return 0; /* curl_multi_poll() needs no callbacks: it asks every transfer for its sockets */
}

int gs_events_wake(gs_events *ev)
{
    if (curl_multi_wakeup(ev->multi) != CURLM_OK) {
        errno = EIO;
        return -1;
    }
    return 0;
}

int gs_events_step(gs_events *ev, CURLM *multi, double wait, gs_step *st)
{
    int running;
    (void)ev;
    st->failed = NULL;
    if (!(wait > 0.0)) /* also NaN */
        wait = 0.0;
    if (wait > 60.0)
        wait = 60.0;
    /* Transfers first, so that new ones start and a caller stepping often cannot starve them;
     * curl_multi_poll() returns early for libcurl's own timeouts and for curl_multi_wakeup(). */
    st->mc = curl_multi_perform(multi, &running);
    if (st->mc != CURLM_OK)
        return -1;
    if (wait > 0.0) {
        st->mc = curl_multi_poll(multi, NULL, 0, (int)(wait * 1000.0 + 0.999), NULL);
        if (st->mc != CURLM_OK)
            return -1;
        st->mc = curl_multi_perform(multi, &running);
        if (st->mc != CURLM_OK)
            return -1;
    }
    return 0;
}

#endif

/* ---- both ---------------------------------------------------------------------------------- */

void gs_events_init(gs_events *ev)
{
    ev->multi = NULL;
    ev->mode = GS_EV_WAIT;
    ev->epoll_fd = ev->wake_fd = -1;
    ev->timer_at = -1.0;
    ev->unwatched = 0;
    ev->changes = NULL;
    ev->nchanges = ev->changes_cap = 0;
    ev->timer_ms = -1;
    ev->timer_changed = 0;
    ev->close_lost = 0;
    ev->conn = NULL;
    ev->conn_cap = 0;
}

int gs_events_open(gs_events *ev, CURLM *multi, int mode)
{
    ev->multi = multi;
    ev->mode = mode;
    if (mode == GS_EV_WAIT)
        return open_wait(ev, multi);
    if (curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket_loop) != CURLM_OK ||
        curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, ev) != CURLM_OK ||
        curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer_loop) != CURLM_OK ||
        curl_multi_setopt(multi, CURLMOPT_TIMERDATA, ev) != CURLM_OK) {
        errno = ENOMEM;
        return -1;
    }
    return 0;
}

void gs_events_close(gs_events *ev)
{
    if (ev->epoll_fd >= 0)
        close(ev->epoll_fd);
    if (ev->wake_fd >= 0)
        close(ev->wake_fd);
    ev->epoll_fd = ev->wake_fd = -1;
    free(ev->changes);
    ev->changes = NULL;
    free(ev->conn);
    ev->conn = NULL;
    ev->conn_cap = 0;
    ev->nchanges = ev->changes_cap = 0;
}
