/*
 * The Engine's event loop under libcurl's socket API: an epoll set of the sockets libcurl asks
 * for, libcurl's one timer, and an eventfd that other threads write to wake the loop. Plain C.
 *
 * curl_multi_poll() rebuilds a pollfd array of every socket and curl_multi_perform() walks every
 * transfer on each wake-up, so with hundreds of transfers in flight each finished one costs
 * O(transfers). Here a wake-up costs only the sockets that are ready (bench/c/sendmulti.c
 * measures both ways in C).
 */
#ifndef GRAPHSEND_EVENTS_H
#define GRAPHSEND_EVENTS_H

#include <curl/curl.h>

typedef struct gs_events {
    CURLM *multi;
    int epoll_fd; /* -1 when not open */
    int wake_fd;  /* eventfd; -1 when not open */
    double timer_at; /* libcurl's timer, gs_now() seconds; < 0: none */
    int unwatched;   /* a socket could not be watched: its transfer's event_errno is set */
} gs_events;

/* Opens the fds and installs the socket and timer callbacks on multi. -1 with errno set. */
int gs_events_open(gs_events *ev, CURLM *multi);
/* Closes the fds; call after curl_multi_cleanup() (which still reports sockets to remove). */
void gs_events_close(gs_events *ev);
/* Makes a waiting (or the next) gs_events_step() return; any thread. -1 with errno set. */
int gs_events_wake(gs_events *ev);

typedef struct gs_step {
    CURLMcode mc;       /* from libcurl */
    const char *failed; /* the system call that failed (errno in sys_errno), else NULL */
    int sys_errno;
} gs_step;

/* Lets libcurl run what is due: an expired timer, then the sockets that are ready, waiting up to
 * `wait` seconds (clamped to [0, 60]; none once a timer ran) for a socket, the timer or a wake-up.
 * 0, or -1 with *st saying what failed. A socket that epoll cannot watch does not fail the step:
 * its transfer is marked (gs_transfer.event_errno, ev->unwatched) for the caller to end. */
int gs_events_step(gs_events *ev, CURLM *multi, double wait, gs_step *st);

#endif
