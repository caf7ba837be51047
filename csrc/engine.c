/*
 * Engine: one multi handle driving many sends, for send_many; LoopEngine: the same, driven by an
 * asyncio event loop, for AsyncClient.
 *
 * Engine: submit(), cancel() and wakeup() may come from any thread, also while another thread is
 * inside perform(): they only touch a mutex-protected queue of malloc'd requests and cancelled
 * tags, and cut a wait short (events.c). Everything libcurl is owned by the one thread in
 * perform() (the busy flag), which runs with the GIL released and drains the queue, so no
 * libcurl handle is ever used from two threads. The waiting itself is libcurl's socket API over
 * epoll on Linux (a wake-up costs the ready sockets, not every transfer in flight), libcurl's
 * curl_multi_poll() elsewhere.
 *
 * LoopEngine: no thread waits. drive() is called by the loop's thread when a socket is ready or
 * libcurl's timer is due; it runs libcurl without waiting (the GIL stays held: these are short,
 * non-blocking calls) and returns what finished plus the sockets and timer libcurl asked for,
 * which the caller registers with its loop (add_reader/add_writer, call_at).
 */
#include "native.h"

#include "events.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    gs_transfer *head, *tail;
} gs_list;

typedef struct {
    PyObject_HEAD
    CURLM *multi; /* NULL once closed */
    gs_events ev; /* its sockets, timer and wake-up fd */
    gs_options opts;
    PyObject *share;
    pid_t pid;
    atomic_int busy;      /* perform() or close() running */
    atomic_ulong owner;   /* PyThread_get_thread_ident() of the thread holding busy, else 0 */
    atomic_int is_closed; /* what .closed reads: close() may be running in another thread */

    pthread_mutex_t lock; /* guards the fields down to the next comment */
    gs_request *queue, **queue_tail;
    long long *cancels;
    size_t ncancels, cancels_cap;
    int woken;
    int closed;

    /* Owned by whoever holds busy. */
    gs_list active; /* in the multi */
    gs_list done;   /* finished, not yet returned */
    size_t nactive; /* transfers in active */
    size_t peak;    /* the most ever in active at once (see keep_connections) */
    gs_transfer *idle;
    int out_of_memory;

    PyObject *weakreflist;
} EngineObject;

static void list_push(gs_list *l, gs_transfer *t)
{
    t->next = NULL;
    t->prev = l->tail;
    if (l->tail != NULL)
        l->tail->next = t;
    else
        l->head = t;
    l->tail = t;
}

static void list_unlink(gs_list *l, gs_transfer *t)
{
    if (t->prev != NULL)
        t->prev->next = t->next;
    else
        l->head = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
    else
        l->tail = t->prev;
    t->next = t->prev = NULL;
}

/* ---- runs with the GIL released, in the thread holding busy -------------------------------- */

/* A transfer for req: recycled, else new. NULL only when out of memory. */
static gs_transfer *take_transfer(EngineObject *self, gs_request *req)
{
    gs_transfer *t = self->idle;
    const char *what = NULL;
    CURLcode rc;

    if (t != NULL) {
        self->idle = t->next;
    }
    else {
        t = gs_transfer_new();
        if (t == NULL)
            return NULL;
        rc = gs_transfer_setup(t, &self->opts, &what);
        if (rc == CURLE_OK && (rc = gs_events_easy(&self->ev, t)) != CURLE_OK)
            what = "CURLOPT_CLOSESOCKETFUNCTION";
        if (rc != CURLE_OK)
            gs_transfer_fail(t, rc, what, curl_easy_strerror(rc));
    }
    t->req = req;
    t->tag = req->tag;
    return t;
}

/*
 * libcurl sizes its connection cache at 4 times the transfers in the multi now, so as a batch
 * drains it closes idle connections (with 400 in flight, the last 100 to finish close theirs),
 * which the next batch opens again: a TCP (and TLS) handshake each. Sized at 4 times the most
 * ever in flight instead, what one batch opened is there for the next. Idle connections still go
 * when the server closes them or libcurl finds them too old (CURLOPT_MAXAGE_CONN).
 */
static void keep_connections(EngineObject *self)
{
    if (self->nactive <= self->peak || self->nactive > LONG_MAX / 4)
        return;
    /* Fails only for a bad handle or option: libcurl's own sizing stays, which is only slower. */
    if (curl_multi_setopt(self->multi, CURLMOPT_MAXCONNECTS, (long)self->nactive * 4) == CURLM_OK)
        self->peak = self->nactive;
}

/* Puts requests we could not start back at the head of the queue. */
static void requeue(EngineObject *self, gs_request *req)
{
    gs_request **tail = &req;
    while (*tail != NULL)
        tail = &(*tail)->next;
    pthread_mutex_lock(&self->lock);
    *tail = self->queue;
    if (self->queue == NULL)
        self->queue_tail = tail;
    self->queue = req;
    pthread_mutex_unlock(&self->lock);
}

static void start_requests(EngineObject *self, gs_request *req)
{
    while (req != NULL) {
        gs_request *next = req->next;
        gs_transfer *t = take_transfer(self, req);
        const char *what = "the request";
        CURLcode rc;
        CURLMcode mc;

        if (t == NULL) {
            self->out_of_memory = 1;
            requeue(self, req);
            return;
        }
        req->next = NULL;
        if (t->broken) {
            list_push(&self->done, t);
        }
        else if ((rc = gs_transfer_begin(t, req)) != CURLE_OK ||
                 (rc = req->has_body ? gs_transfer_body(t, &req->body, &what)
                                     : gs_transfer_plain(t)) != CURLE_OK) {
            gs_transfer_fail(t, rc, what, curl_easy_strerror(rc));
            list_push(&self->done, t);
        }
        else if ((mc = curl_multi_add_handle(self->multi, t->easy)) != CURLM_OK) {
            gs_transfer_fail(t, mc == CURLM_OUT_OF_MEMORY ? CURLE_OUT_OF_MEMORY : CURLE_FAILED_INIT,
                             "curl_multi_add_handle", curl_multi_strerror(mc));
            list_push(&self->done, t);
        }
        else {
            list_push(&self->active, t);
            self->nactive++;
        }
        req = next;
    }
    keep_connections(self);
}

static void end_transfer(EngineObject *self, gs_transfer *t, CURLcode code, const char *why)
{
    /* Cannot fail for a handle we added, called outside libcurl callbacks. */
    (void)curl_multi_remove_handle(self->multi, t->easy);
    gs_transfer_finish(t, code);
    if (why != NULL)
        snprintf(t->errbuf, sizeof(t->errbuf), "%s", why);
    list_unlink(&self->active, t);
    self->nactive--;
    list_push(&self->done, t);
}

static void apply_cancels(EngineObject *self, const long long *tags, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        gs_transfer *t = self->active.head;
        while (t != NULL) {
            gs_transfer *next = t->next;
            if (t->tag == tags[i])
                end_transfer(self, t, CURLE_ABORTED_BY_CALLBACK, "cancelled");
            t = next;
        }
    }
}

static void collect_finished(EngineObject *self)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(self->multi, &left)) != NULL) {
        char *priv = NULL;
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURLcode code = msg->data.result; /* msg dies with remove_handle */
        if (curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv) == CURLE_OK &&
            priv != NULL)
            end_transfer(self, (gs_transfer *)priv, code, NULL);
    }
}

/* The event loop could not watch some transfer's socket (epoll_ctl failed): that transfer ends
 * with the reason; the multi and every other transfer go on. */
static void fail_unwatched(EngineObject *self)
{
    char why[CURL_ERROR_SIZE];
    const char *how = self->ev.mode == GS_EV_LOOP ? "out of memory" : "epoll_ctl failed";
    gs_transfer *t = self->active.head;
    if (!self->ev.unwatched)
        return;
    self->ev.unwatched = 0;
    while (t != NULL) {
        gs_transfer *next = t->next;
        if (t->event_errno != 0) {
            snprintf(why, sizeof(why), "cannot watch the connection: %s: %s", how,
                     strerror(t->event_errno));
            end_transfer(self, t, t->event_errno == ENOMEM ? CURLE_OUT_OF_MEMORY : CURLE_RECV_ERROR,
                         why);
        }
        t = next;
    }
}

/* Everything in flight or queued ends as aborted, so each submitted tag still gets a result. */
static void abort_all(EngineObject *self, const char *why)
{
    gs_request *req;
    while (self->active.head != NULL)
        end_transfer(self, self->active.head, CURLE_ABORTED_BY_CALLBACK, why);
    pthread_mutex_lock(&self->lock);
    req = self->queue;
    self->queue = NULL;
    self->queue_tail = &self->queue;
    pthread_mutex_unlock(&self->lock);
    start_requests(self, req);
    while (self->active.head != NULL)
        end_transfer(self, self->active.head, CURLE_ABORTED_BY_CALLBACK, why);
}

typedef struct {
    double timeout;
    int check_signals;
    int raised;
    gs_step step; /* what failed, if the event loop did */
} perform_state;

static void engine_run(EngineObject *self, perform_state *ps)
{
    double now = gs_now();
    double deadline = now + ps->timeout;
    double next_check = now + GS_SIGNAL_SLICE;
    int first = 1;
    PyThreadState *ts = PyEval_SaveThread();

    for (;;) {
        gs_request *reqs;
        long long *cancels;
        size_t ncancels;
        int woken;

        pthread_mutex_lock(&self->lock);
        reqs = self->queue;
        self->queue = NULL;
        self->queue_tail = &self->queue;
        cancels = self->cancels;
        ncancels = self->ncancels;
        self->cancels = NULL;
        self->ncancels = self->cancels_cap = 0;
        woken = self->woken;
        self->woken = 0;
        pthread_mutex_unlock(&self->lock);

        /* Work handed over while we waited ends this call, as documented; work queued before
         * the call is simply started. */
        if (!first && (reqs != NULL || ncancels != 0))
            woken = 1;
        start_requests(self, reqs);
        apply_cancels(self, cancels, ncancels);
        free(cancels);
        /* New transfers are due at once (libcurl's timer), and a call that is about to return
         * for a wake-up still lets libcurl run what is ready: a steady stream of submit() and
         * wakeup() must not starve the transfers in flight. */
        if ((reqs != NULL || woken) && gs_events_step(&self->ev, self->multi, 0.0, &ps->step) < 0)
            break;
        fail_unwatched(self);

        collect_finished(self);
        if (self->done.head != NULL || woken || self->out_of_memory)
            break;
        now = gs_now();
        if (!first && now >= deadline)
            break; /* the first round always lets libcurl run, so perform(0) makes progress */
        double wait = deadline > now ? deadline - now : 0.0;
        if (wait > 60.0)
            wait = 60.0; /* keeps the int milliseconds in range; the loop waits again */
        if (ps->check_signals && wait > GS_SIGNAL_SLICE)
            wait = GS_SIGNAL_SLICE;
        /* Runs libcurl for a due timer at once, else sleeps until a socket, the timer or a
         * wake-up, even with no transfer. */
        if (gs_events_step(&self->ev, self->multi, wait, &ps->step) < 0)
            break;
        fail_unwatched(self);
        if (ps->check_signals && gs_now() >= next_check) {
            PyEval_RestoreThread(ts);
            ps->raised = PyErr_CheckSignals() < 0;
            ts = PyEval_SaveThread();
            if (ps->raised) {
                abort_all(self, "aborted: perform() was interrupted by an exception");
                break;
            }
            next_check = gs_now() + GS_SIGNAL_SLICE;
        }
        first = 0;
    }
    PyEval_RestoreThread(ts);
}

/* ---- Python-facing ---------------------------------------------------------------------- */

/* Takes busy for this thread; raises (saying which case it is) when it is held. */
static int engine_take(EngineObject *self, const char *method)
{
    int idle = 0;
    unsigned long me = PyThread_get_thread_ident();
    if (!atomic_compare_exchange_strong(&self->busy, &idle, 1)) {
        if (atomic_load(&self->owner) == me)
            PyErr_Format(PyExc_RuntimeError,
                         "Engine.%s(): re-entered from the same thread while it runs "
                         "(a signal handler or other callback); call it once that returns",
                         method);
        else
            PyErr_Format(PyExc_RuntimeError,
                         "Engine.%s(): another thread is inside perform(); "
                         "only one thread may drive an Engine",
                         method);
        return -1;
    }
    atomic_store(&self->owner, me);
    return 0;
}

static void engine_leave(EngineObject *self)
{
    atomic_store(&self->owner, 0);
    atomic_store(&self->busy, 0);
}

static int engine_enter(EngineObject *self, const char *method)
{
    /* The process first: a thread that was inside perform() at fork() left busy set. */
    if (gs_check_process(self->pid, "Engine") < 0)
        return -1;
    if (engine_take(self, method) < 0)
        return -1;
    if (self->multi == NULL) {
        PyErr_Format(PyExc_ValueError, "%s() on a closed Engine", method);
        engine_leave(self);
        return -1;
    }
    return 0;
}

/* Called with the GIL held by the thread holding busy (or from dealloc); the libcurl teardown
 * runs with the GIL released, since it may wait on libcurl. */
static void engine_release(EngineObject *self)
{
    gs_transfer *t;
    gs_request *req;

    atomic_store(&self->is_closed, 1);
    if (self->pid != gs_pid) {
        /* A forked child: a parent thread may have held the lock at fork() and the parent's TLS
         * streams must not see a close_notify from us, so all of it is leaked on purpose. */
        self->closed = 1;
        self->multi = NULL;
        gs_events_close(&self->ev); /* our copies of the fds only */
        gs_options_clear(&self->opts);
        Py_CLEAR(self->share);
        return;
    }
    Py_BEGIN_ALLOW_THREADS
    /* Closed before the multi goes, so engine_post() never wakes a freed multi. */
    pthread_mutex_lock(&self->lock);
    self->closed = 1;
    req = self->queue;
    self->queue = NULL;
    self->queue_tail = &self->queue;
    free(self->cancels);
    self->cancels = NULL;
    self->ncancels = self->cancels_cap = 0;
    pthread_mutex_unlock(&self->lock);
    while (req != NULL) {
        gs_request *next = req->next;
        free(req);
        req = next;
    }
    if (self->multi != NULL) {
        while ((t = self->active.head) != NULL) {
            (void)curl_multi_remove_handle(self->multi, t->easy);
            list_unlink(&self->active, t);
            self->nactive--;
            gs_transfer_free(t, 0);
        }
        while ((t = self->done.head) != NULL) {
            list_unlink(&self->done, t);
            gs_transfer_free(t, 0);
        }
        while ((t = self->idle) != NULL) {
            self->idle = t->next;
            gs_transfer_free(t, 0);
        }
        curl_multi_cleanup(self->multi); /* after its easy handles left it */
        self->multi = NULL;
    }
    gs_events_close(&self->ev); /* after the multi, which still reports sockets to remove */
    gs_options_clear(&self->opts);
    Py_END_ALLOW_THREADS
    Py_CLEAR(self->share);
}

static PyObject *engine_new(PyTypeObject *type, PyObject *args, PyObject *kwds, int mode)
{
    gs_state *st = PyType_GetModuleState(type);
    EngineObject *self;
    gs_options o;
    PyObject *share;
    CURLMcode mc;

    if (gs_options_from_py(st, args, kwds, NULL, &o, &share) < 0)
        return NULL;
    o.pipewait = o.http2;
    self = (EngineObject *)PyType_GenericAlloc(type, 0);
    if (self == NULL) {
        gs_options_clear(&o);
        Py_XDECREF(share);
        return NULL;
    }
    gs_events_init(&self->ev); /* fds -1, not 0, which dealloc would close */
    if (pthread_mutex_init(&self->lock, NULL) != 0) {
        gs_options_clear(&o);
        Py_XDECREF(share);
        self->closed = -1; /* no mutex to destroy */
        Py_DECREF(self);
        return gs_setup_error("pthread_mutex_init", 0, "cannot create a mutex");
    }
    self->opts = o;
    self->share = share;
    self->pid = gs_pid;
    self->queue_tail = &self->queue;
    self->multi = curl_multi_init();
    if (self->multi == NULL) {
        Py_DECREF(self);
        return gs_setup_error("curl_multi_init", 1, NULL);
    }
    /* HTTP/2 transfers to one host share a connection (the default since 7.62; stated here). */
    mc = curl_multi_setopt(self->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    if (mc != CURLM_OK) {
        Py_DECREF(self);
        return gs_setup_error("CURLMOPT_PIPELINING", mc == CURLM_OUT_OF_MEMORY,
                              curl_multi_strerror(mc));
    }
    if (gs_events_open(&self->ev, self->multi, mode) < 0) {
        int err = errno;
        Py_DECREF(self);
        return gs_setup_error("the event loop (" GS_EV_BACKEND ")", err == ENOMEM, strerror(err));
    }
    return (PyObject *)self;
}

static PyObject *Engine_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    return engine_new(type, args, kwds, GS_EV_WAIT);
}

static PyObject *LoopEngine_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    return engine_new(type, args, kwds, GS_EV_LOOP);
}

static void Engine_dealloc(PyObject *op)
{
    EngineObject *self = (EngineObject *)op;
    if (self->weakreflist != NULL)
        PyObject_ClearWeakRefs(op);
    if (self->closed != -1) {
        int same_process = self->pid == gs_pid;
        engine_release(self);
        if (same_process)
            pthread_mutex_destroy(&self->lock);
    }
    gs_dealloc_object(op);
}

enum { POST_OK, POST_CLOSED, POST_NO_MEMORY, POST_WAKE_FAILED };

/* Queues under the lock; the wake-up stays under it so close() cannot close the eventfd. The
 * exception is raised after the mutex is let go: nothing Python runs while it is held. */
static int engine_post(EngineObject *self, gs_request *req, const long long *cancel_tag,
                       int wake, const char *method)
{
    int outcome = POST_OK, wake_errno = 0;
    if (gs_check_process(self->pid, "Engine") < 0)
        return -1;
    pthread_mutex_lock(&self->lock);
    if (self->closed) {
        outcome = POST_CLOSED;
    }
    else if (req != NULL) {
        *self->queue_tail = req;
        self->queue_tail = &req->next;
    }
    else if (cancel_tag != NULL) {
        if (self->ncancels == self->cancels_cap) {
            size_t cap = self->cancels_cap ? self->cancels_cap * 2 : 16;
            long long *grown = realloc(self->cancels, cap * sizeof(*grown));
            if (grown == NULL)
                outcome = POST_NO_MEMORY;
            else {
                self->cancels = grown;
                self->cancels_cap = cap;
            }
        }
        if (outcome == POST_OK)
            self->cancels[self->ncancels++] = *cancel_tag;
    }
    else {
        self->woken = 1;
    }
    /* A perform() that is not running sees the queue when it starts: no syscall needed. A
     * failed wakeup only delays a running perform() to its next poll slice, so only an explicit
     * wakeup() reports it. */
    if (outcome == POST_OK && self->ev.mode == GS_EV_WAIT && (wake || atomic_load(&self->busy))) {
        if (gs_events_wake(&self->ev) < 0 && wake) {
            wake_errno = errno;
            outcome = POST_WAKE_FAILED;
        }
    }
    pthread_mutex_unlock(&self->lock);
    switch (outcome) {
    case POST_CLOSED:
        PyErr_Format(PyExc_ValueError, "%s() on a closed Engine", method);
        return -1;
    case POST_NO_MEMORY:
        PyErr_NoMemory();
        return -1;
    case POST_WAKE_FAILED:
        gs_setup_error(GS_EV_EPOLL ? "write(eventfd)" : "curl_multi_wakeup", 0,
                       strerror(wake_errno));
        return -1;
    default:
        return 0;
    }
}

/* A bytes body is copied after the request block's own bytes: the block is grown, then built
 * again in place (gs_request_begin() reuses a block that is big enough, and its size field still
 * says where the request part ends), so the queue's one free() releases both. */
static int attach_body(gs_request **reqp, PyObject *url, PyObject *headers, gs_body *b)
{
    gs_request *req = *reqp;
    size_t used = req->size;
    if (b->mem != NULL && b->len > 0) {
        gs_request *grown = realloc(req, used + (size_t)b->len);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        *reqp = req = grown;
        if (gs_request_from_py(reqp, url, headers, NULL) < 0)
            return -1; /* cannot happen: the same arguments succeeded a moment ago */
        req = *reqp;
        memcpy((char *)req + used, b->mem, (size_t)b->len);
        b->mem = (char *)req + used;
    }
    req->has_body = 1;
    req->body = *b;
    return 0;
}

static PyObject *Engine_submit(PyObject *op, PyTypeObject *cls, PyObject *const *args,
                               Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"tag",    "url",  "headers", "client_request_id",
                                        "method", "body", "file"};
    EngineObject *self = (EngineObject *)op;
    PyObject *argv[7];
    gs_request *req = NULL;
    gs_body b = {GS_POST, NULL, -1, 0, 0};
    int custom;
    long long tag;
    (void)cls;

    if (gs_bind_args("submit", names, 3, 7, args, nargs, kwnames, argv) < 0)
        return NULL;
    tag = PyLong_AsLongLong(argv[0]);
    if (tag == -1 && PyErr_Occurred())
        return NULL;
    custom = (argv[4] != NULL && argv[4] != Py_None) || (argv[5] != NULL && argv[5] != Py_None) ||
             (argv[6] != NULL && argv[6] != Py_None);
    if (argv[4] != NULL && argv[4] != Py_None && gs_method_from_py(argv[4], &b.method) < 0)
        return NULL;
    if (custom && gs_body_from_py(argv[5], argv[6], &b) < 0)
        return NULL;
    if (gs_request_from_py(&req, argv[1], argv[2], argv[3]) < 0) {
        free(req);
        return NULL;
    }
    /* Not the send: the whole 2xx body comes back, and the method/body are set per transfer. */
    if (custom && attach_body(&req, argv[1], argv[2], &b) < 0) {
        free(req);
        return NULL;
    }
    req->tag = tag;
    if (engine_post(self, req, NULL, 0, "submit") < 0) {
        free(req);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Engine_cancel(PyObject *op, PyTypeObject *cls, PyObject *const *args,
                               Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"tag"};
    EngineObject *self = (EngineObject *)op;
    PyObject *argv[1];
    long long tag;
    (void)cls;

    if (gs_bind_args("cancel", names, 1, 1, args, nargs, kwnames, argv) < 0)
        return NULL;
    tag = PyLong_AsLongLong(argv[0]);
    if (tag == -1 && PyErr_Occurred())
        return NULL;
    if (engine_post(self, NULL, &tag, 0, "cancel") < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Engine_wakeup(PyObject *op, PyObject *unused)
{
    (void)unused;
    if (engine_post((EngineObject *)op, NULL, NULL, 1, "wakeup") < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* A Receipt for a 202 submitted with a client_request_id, else the Result tuple. */
static PyObject *outcome_to_py(gs_state *st, const gs_transfer *t)
{
    PyObject *crid, *receipt;
    if (t->status != 202 || t->req == NULL || t->req->crid == NULL)
        return gs_result_to_py(st, t);
    crid = PyUnicode_DecodeUTF8(t->req->crid, (Py_ssize_t)t->req->crid_len, NULL);
    if (crid == NULL)
        return NULL;
    receipt = gs_receipt_to_py(st, t, crid, Py_None, Py_None); /* the Scheduler adds them */
    Py_DECREF(crid);
    return receipt;
}

/* [(tag, Receipt | Result)] for everything finished; the records are recycled only once all
 * converted. */
static PyObject *finished_to_py(EngineObject *self, gs_state *st)
{
    PyObject *list = PyList_New(0);
    if (list == NULL)
        return NULL;
    for (gs_transfer *t = self->done.head; t != NULL; t = t->next) {
        PyObject *result = outcome_to_py(st, t);
        PyObject *tag = result != NULL ? PyLong_FromLongLong(t->tag) : NULL;
        PyObject *pair = tag != NULL ? PyTuple_New(2) : NULL;
        if (pair == NULL) {
            Py_XDECREF(result);
            Py_XDECREF(tag);
            Py_DECREF(list);
            return NULL;
        }
        PyTuple_SetItem(pair, 0, tag);
        PyTuple_SetItem(pair, 1, result);
        if (PyList_Append(list, pair) < 0) {
            Py_DECREF(pair);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(pair);
    }
    gs_transfer *t;
    while ((t = self->done.head) != NULL) {
        list_unlink(&self->done, t);
        free(t->req);
        t->req = NULL;
        if (t->broken) {
            gs_transfer_free(t, 0);
            continue;
        }
        t->next = self->idle;
        self->idle = t;
    }
    return list;
}

static PyObject *Engine_perform(PyObject *op, PyTypeObject *cls, PyObject *const *args,
                                Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"timeout", "check_signals"};
    EngineObject *self = (EngineObject *)op;
    PyObject *argv[2], *result = NULL;
    perform_state ps = {0};

    if (gs_bind_args("perform", names, 1, 2, args, nargs, kwnames, argv) < 0)
        return NULL;
    ps.timeout = PyFloat_AsDouble(argv[0]);
    if (ps.timeout == -1.0 && PyErr_Occurred())
        return NULL;
    if (!(ps.timeout >= 0.0)) { /* also NaN */
        PyErr_SetString(PyExc_ValueError, "timeout must be >= 0 seconds");
        return NULL;
    }
    if (argv[1] != NULL) {
        ps.check_signals = PyObject_IsTrue(argv[1]);
        if (ps.check_signals < 0)
            return NULL;
    }
    if (engine_enter(self, "perform") < 0)
        return NULL;
    self->out_of_memory = 0;
    engine_run(self, &ps);
    if (ps.raised)
        goto done; /* results stay queued for the next perform() */
    if (ps.step.failed != NULL) {
        gs_setup_error(ps.step.failed, ps.step.sys_errno == ENOMEM, strerror(ps.step.sys_errno));
        goto done;
    }
    if (ps.step.mc != CURLM_OK) {
        gs_setup_error("curl_multi_socket_action", ps.step.mc == CURLM_OUT_OF_MEMORY,
                       curl_multi_strerror(ps.step.mc));
        goto done;
    }
    if (self->out_of_memory && self->done.head == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    result = finished_to_py(self, PyType_GetModuleState(cls));
done:
    engine_leave(self);
    return result;
}

/* LoopEngine.drive()'s libcurl part, plain C: start, cancel, one socket_action, collect. */
static void drive_libcurl(EngineObject *self, gs_request *reqs, long long *cancels,
                          size_t ncancels, long fd, int flags)
{
    CURLMcode mc;
    start_requests(self, reqs);
    apply_cancels(self, cancels, ncancels);
    free(cancels);
    mc = gs_events_action(&self->ev, self->multi, fd < 0 ? CURL_SOCKET_TIMEOUT : (curl_socket_t)fd,
                          fd < 0 ? 0 : flags);
    if (mc != CURLM_OK) {
        /* libcurl cannot go on with this multi: every transfer still gets a result. */
        char why[CURL_ERROR_SIZE];
        snprintf(why, sizeof(why), "aborted: curl_multi_socket_action failed: %s",
                 curl_multi_strerror(mc));
        abort_all(self, why);
    }
    fail_unwatched(self);
    collect_finished(self);
}

/* [(fd, what)] libcurl asked for since the last drive(); None when nothing changed. */
static PyObject *socket_changes_to_py(const gs_events *ev)
{
    PyObject *list, *pair;
    size_t n = ev->nchanges + (ev->close_lost ? 1 : 0);
    if (n == 0)
        Py_RETURN_NONE;
    list = PyList_New((Py_ssize_t)n);
    if (list == NULL)
        return NULL;
    for (size_t i = 0; i < ev->nchanges; i++) {
        pair = Py_BuildValue("(li)", (long)ev->changes[i].fd, ev->changes[i].what);
        if (pair == NULL)
            goto error;
        PyList_SetItem(list, (Py_ssize_t)i, pair);
    }
    if (ev->close_lost) { /* last: a socket opened meanwhile has been recorded as wanted */
        pair = Py_BuildValue("(li)", -1L, GS_SOCK_CLOSED);
        if (pair == NULL)
            goto error;
        PyList_SetItem(list, (Py_ssize_t)(n - 1), pair);
    }
    return list;
error:
    Py_DECREF(list);
    return NULL;
}

static PyObject *LoopEngine_drive(PyObject *op, PyTypeObject *cls, PyObject *const *args,
                                  Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"fd", "flags"};
    EngineObject *self = (EngineObject *)op;
    PyObject *argv[2], *result = NULL, *item;
    gs_request *reqs;
    long long *cancels;
    size_t ncancels;
    long fd;
    long flags = 0;

    if (gs_bind_args("drive", names, 1, 2, args, nargs, kwnames, argv) < 0)
        return NULL;
    fd = PyLong_AsLong(argv[0]);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (argv[1] != NULL) {
        flags = PyLong_AsLong(argv[1]);
        if (flags == -1 && PyErr_Occurred())
            return NULL;
    }
    if (fd > INT_MAX || flags < 0 || flags > (CURL_CSELECT_IN | CURL_CSELECT_OUT | CURL_CSELECT_ERR)) {
        PyErr_SetString(PyExc_ValueError, "drive(): fd or flags out of range");
        return NULL;
    }
    /* Made first: once finished_to_py() has taken the results, nothing may fail. */
    result = PyTuple_New(3);
    if (result == NULL)
        return NULL;
    if (engine_enter(self, "drive") < 0) {
        Py_DECREF(result);
        return NULL;
    }
    self->out_of_memory = 0;
    pthread_mutex_lock(&self->lock);
    reqs = self->queue;
    self->queue = NULL;
    self->queue_tail = &self->queue;
    cancels = self->cancels;
    ncancels = self->ncancels;
    self->cancels = NULL;
    self->ncancels = self->cancels_cap = 0;
    pthread_mutex_unlock(&self->lock);
    /* One ready socket is a few microseconds of libcurl: the GIL stays held. Starting a batch
     * (hundreds of transfers after a gather) takes milliseconds, so other threads may run then. */
    if (reqs != NULL) {
        Py_BEGIN_ALLOW_THREADS
        drive_libcurl(self, reqs, cancels, ncancels, fd, (int)flags);
        Py_END_ALLOW_THREADS
    }
    else {
        drive_libcurl(self, reqs, cancels, ncancels, fd, (int)flags);
    }
    if (self->out_of_memory && self->done.head == NULL) {
        PyErr_NoMemory(); /* the requests stay queued for the next drive() */
        goto error;
    }
    item = socket_changes_to_py(&self->ev);
    if (item == NULL)
        goto error;
    PyTuple_SetItem(result, 1, item);
    if (self->ev.timer_changed)
        item = PyFloat_FromDouble(self->ev.timer_ms < 0 ? -1.0 : (double)self->ev.timer_ms / 1e3);
    else
        item = Py_NewRef(Py_None);
    if (item == NULL)
        goto error;
    PyTuple_SetItem(result, 2, item);
    item = finished_to_py(self, PyType_GetModuleState(cls));
    if (item == NULL)
        goto error; /* the results stay for the next drive() */
    PyTuple_SetItem(result, 0, item);
    self->ev.nchanges = 0;
    self->ev.timer_changed = 0;
    self->ev.close_lost = 0;
    engine_leave(self);
    return result;
error:
    engine_leave(self);
    Py_DECREF(result);
    return NULL;
}

static PyObject *Engine_close(PyObject *op, PyObject *unused)
{
    EngineObject *self = (EngineObject *)op;
    (void)unused;
    if (self->pid != gs_pid) {
        /* A forked child: busy may be a dead parent thread's; drop everything, free no libcurl. */
        engine_release(self);
        Py_RETURN_NONE;
    }
    if (atomic_load(&self->busy) && atomic_load(&self->owner) != PyThread_get_thread_ident()) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Engine.close(): another thread is inside perform(); wakeup() it first");
        return NULL;
    }
    if (engine_take(self, "close") < 0)
        return NULL;
    engine_release(self);
    engine_leave(self);
    Py_RETURN_NONE;
}

static PyObject *Engine_get_closed(PyObject *op, void *closure)
{
    (void)closure;
    return PyBool_FromLong(atomic_load(&((EngineObject *)op)->is_closed));
}

#define FASTCALL_METHOD(f) (PyCFunction)(void (*)(void))(f)

static PyMethodDef Engine_methods[] = {
    {"submit", FASTCALL_METHOD(Engine_submit), METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("submit($self, /, tag, url, headers, client_request_id=None, method=None, "
               "body=None, file=None)\n--\n\n"
               "Queue a send; safe from any thread. With client_request_id, it is sent as its "
               "own header line and a 202 comes back from perform() as a Receipt carrying it. "
               "With method, body (bytes, copied) or file ((fd, offset, length), kept open by "
               "the caller until the result), any request as Handle.request makes it.")},
    {"cancel", FASTCALL_METHOD(Engine_cancel), METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("cancel($self, /, tag)\n--\n\n"
               "Abort the transfers with this tag (curl_code 42); safe from any thread.")},
    {"wakeup", Engine_wakeup, METH_NOARGS,
     PyDoc_STR("wakeup($self, /)\n--\n\n"
               "Make the running (or next) perform() return; safe from any thread.")},
    {"perform", FASTCALL_METHOD(Engine_perform), METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("perform($self, /, timeout, check_signals=False)\n--\n\n"
               "Run transfers until one finishes, timeout passes or another thread hands over "
               "work; return [(tag, Result)].")},
    {"close", Engine_close, METH_NOARGS,
     PyDoc_STR("close($self, /)\n--\n\n"
               "Abort everything and free the multi handle; results not yet returned are "
               "dropped.")},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Engine_getset[] = {
    {"closed", Engine_get_closed, NULL, PyDoc_STR("True after close()."), NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef Engine_members[] = {
    {"__weaklistoffset__", Py_T_PYSSIZET, offsetof(EngineObject, weakreflist), Py_READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

PyDoc_STRVAR(Engine_doc,
             "Engine(*, connect_timeout_ms=10000, timeout_ms=60000, allow_http=False, "
             "ca_bundle=None, proxy=None, proxy_ca_bundle=None, user_agent='graphsend', "
             "http2=False, share=None)\n"
             "--\n\n"
             "A libcurl multi handle running many sends; submit/cancel/wakeup from any thread.");

static PyType_Slot Engine_slots[] = {
    {Py_tp_new, Engine_new},
    {Py_tp_dealloc, Engine_dealloc},
    {Py_tp_methods, Engine_methods},
    {Py_tp_getset, Engine_getset},
    {Py_tp_members, Engine_members},
    {Py_tp_doc, (void *)Engine_doc},
    {0, NULL},
};

PyType_Spec gs_engine_spec = {
    .name = "graphsend._native.Engine",
    .basicsize = sizeof(EngineObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Engine_slots,
};

static PyMethodDef LoopEngine_methods[] = {
    {"submit", FASTCALL_METHOD(Engine_submit), METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("submit($self, /, tag, url, headers, client_request_id=None, method=None, "
               "body=None, file=None)\n--\n\n"
               "Queue a send (or any request, as Engine.submit); the next drive() starts it.")},
    {"cancel", FASTCALL_METHOD(Engine_cancel), METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("cancel($self, /, tag)\n--\n\n"
               "Abort the transfers with this tag (curl_code 42) at the next drive().")},
    {"drive", FASTCALL_METHOD(LoopEngine_drive), METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("drive($self, /, fd, flags=0)\n--\n\n"
               "Start what was submitted, apply cancels, let libcurl run socket fd (flags: "
               "CURL_CSELECT_IN 1 | OUT 2 | ERR 4), or its timer when fd < 0, without waiting. "
               "Returns (finished [(tag, Receipt | Result)], socket changes [(fd, what)] or None, "
               "timer in seconds (-1.0: none) or None when unchanged).")},
    {"close", Engine_close, METH_NOARGS,
     PyDoc_STR("close($self, /)\n--\n\n"
               "Abort everything and free the multi handle; results not yet returned are "
               "dropped.")},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(LoopEngine_doc,
             "LoopEngine(*, connect_timeout_ms=10000, timeout_ms=60000, allow_http=False, "
             "ca_bundle=None, proxy=None, proxy_ca_bundle=None, user_agent='graphsend', "
             "http2=False, share=None)\n"
             "--\n\n"
             "A libcurl multi handle that an event loop drives: one thread, no waiting.");

static PyType_Slot LoopEngine_slots[] = {
    {Py_tp_new, LoopEngine_new},
    {Py_tp_dealloc, Engine_dealloc},
    {Py_tp_methods, LoopEngine_methods},
    {Py_tp_getset, Engine_getset},
    {Py_tp_members, Engine_members},
    {Py_tp_doc, (void *)LoopEngine_doc},
    {0, NULL},
};

PyType_Spec gs_loop_engine_spec = {
    .name = "graphsend._native.LoopEngine",
    .basicsize = sizeof(EngineObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = LoopEngine_slots,
};
