/*
 * How an Engine waits for libcurl's sockets, in plain C. Two ways, chosen when it is made:
 *
 * - GS_EV_WAIT (Engine.perform(), send_many): the Engine's own thread waits. On Linux that is
 *   libcurl's socket API over epoll, with an eventfd that other threads write to cut a wait
 *   short: a wake-up costs the ready sockets, not every transfer in flight (curl_multi_poll()
 *   rebuilds a pollfd array of every socket and curl_multi_perform() walks every transfer;
 *   bench/c/sendmulti.c measures both ways). Elsewhere, or when built with GRAPHSEND_PORTABLE
 *   (setup.py: GRAPHSEND_PORTABLE=1), it is libcurl's own portable wait: curl_multi_poll() and
 *   curl_multi_wakeup().
 * - GS_EV_LOOP (LoopEngine, AsyncClient): an event loop the caller runs waits. The socket and
 *   timer callbacks only record what libcurl asks for (gs_events_take()); the caller registers
 *   the sockets with its loop and calls back with the one that is ready.
 *
 * Nothing here needs a Linux-only header unless GS_EV_EPOLL is set.
 */
#ifndef GRAPHSEND_EVENTS_H
#define GRAPHSEND_EVENTS_H

#include <curl/curl.h>
#include <stddef.h>

#if defined(__linux__) && !defined(GRAPHSEND_PORTABLE)
#define GS_EV_EPOLL 1
#define GS_EV_BACKEND "epoll"
#else
#define GS_EV_EPOLL 0
#define GS_EV_BACKEND "curl_multi_poll"
#endif

enum { GS_EV_WAIT, GS_EV_LOOP };

/* GS_EV_LOOP: libcurl closed this socket (CURLOPT_CLOSESOCKETFUNCTION). Not a CURL_POLL_* bit:
 * the caller keeps a socket libcurl no longer waits on registered (a kept-alive connection is
 * used again soon, and registering costs a system call each time) until it is closed. With
 * fd -1: a close could not be recorded (out of memory), so any such socket may be gone. */
#define GS_SOCK_CLOSED 8
/* GS_EV_LOOP: libcurl no longer waits on this connection socket (its CURL_POLL_REMOVE), and
 * will report its close (GS_SOCK_CLOSED). Other sockets (the threaded resolver's socketpair)
 * are closed without telling: their CURL_POLL_REMOVE stays as it is. */
#define GS_SOCK_IDLE 16

typedef struct gs_sock_change {
    curl_socket_t fd;
    int what; /* CURL_POLL_IN, _OUT, _INOUT or _REMOVE, or GS_SOCK_CLOSED */
} gs_sock_change;

typedef struct gs_events {
    CURLM *multi;
    int mode;
    int epoll_fd; /* GS_EV_EPOLL only; -1 when not open */
    int wake_fd;  /* eventfd, GS_EV_EPOLL only; -1 when not open */
    double timer_at; /* libcurl's timer, gs_now() seconds; < 0: none (epoll) */
    int unwatched;   /* a socket could not be watched: its transfer's event_errno is set */

    /* GS_EV_LOOP: what libcurl asked for since the last gs_events_take(). */
    gs_sock_change *changes;
    size_t nchanges, changes_cap;
    long timer_ms;     /* libcurl's last timer request (-1: none) */
    int timer_changed; /* set since the last take */
    int close_lost;    /* a GS_SOCK_CLOSED could not be recorded since the last take */
    unsigned char *conn; /* conn[fd]: a connection socket, whose close libcurl will report */
    size_t conn_cap;
} gs_events;

/* Sets the fields to "not open" (safe to gs_events_close() afterwards). */
void gs_events_init(gs_events *ev);
/* Opens what the mode needs and installs libcurl's callbacks. -1 with errno set. */
int gs_events_open(gs_events *ev, CURLM *multi, int mode);
/* Frees everything; call after curl_multi_cleanup() (which still reports sockets to remove). */
void gs_events_close(gs_events *ev);
/* GS_EV_WAIT: makes a waiting (or the next) gs_events_step() return; any thread, but not after
 * curl_multi_cleanup(). -1 with errno set. */
int gs_events_wake(gs_events *ev);

typedef struct gs_step {
    CURLMcode mc;       /* from libcurl */
    const char *failed; /* the system call that failed (errno in sys_errno), else NULL */
    int sys_errno;
} gs_step;

/* GS_EV_WAIT: lets libcurl run what is due: an expired timer, then the sockets that are ready,
 * waiting up to `wait` seconds (clamped to [0, 60]; none once a timer ran) for a socket, the
 * timer or a wake-up. 0, or -1 with *st saying what failed. A socket that epoll cannot watch does
 * not fail the step: its transfer is marked (gs_transfer.event_errno, ev->unwatched) for the
 * caller to end. */
int gs_events_step(gs_events *ev, CURLM *multi, double wait, gs_step *st);

struct gs_transfer;
/* GS_EV_LOOP: makes libcurl report the connection sockets it opens for t and every one it
 * closes (a GS_SOCK_CLOSED change, recorded before the close). Nothing in GS_EV_WAIT. */
CURLcode gs_events_easy(gs_events *ev, struct gs_transfer *t);

/* GS_EV_LOOP: one socket is ready (flags: CURL_CSELECT_*), or fd == CURL_SOCKET_TIMEOUT for the
 * timer. Never waits. */
CURLMcode gs_events_action(gs_events *ev, CURLM *multi, curl_socket_t fd, int flags);

#endif
