/*
 * Handle: one easy handle and a private multi, one send per call with the GIL released.
 *
 * The loop is the one curl_easy_perform() runs inside (curl_multi_perform + curl_multi_poll),
 * written out so that with check_signals it can take the GIL every GS_SIGNAL_SLICE and run
 * PyErr_CheckSignals(): Ctrl-C then stops a send in a notebook within about 100 ms. The multi
 * owns the connection cache, so the connection outlives each send.
 */
#include "native.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct {
    PyObject_HEAD
    gs_transfer *t; /* NULL once released */
    CURLM *multi;
    PyObject *share;
    atomic_int busy;       /* one thread at a time: libcurl handles are not thread-safe */
    atomic_ulong owner;    /* PyThread_get_thread_ident() of the busy thread, 0 when idle */
    atomic_int closing;    /* close() was called: .closed, and the busy thread releases on leave */
    int check_signals;
    pid_t pid;
    PyObject *weakreflist;
} HandleObject;

/* Frees the libcurl side. Called with the GIL held, by the one thread holding busy (or from
 * dealloc); the GIL is let go meanwhile, since tearing down may wait on libcurl. */
static void handle_release(HandleObject *self)
{
    CURLM *multi = self->multi;
    gs_transfer *t = self->t;

    self->multi = NULL;
    self->t = NULL;
    if (self->pid != gs_pid) {
        /* In a forked child the parent's TLS streams must not see a close_notify from us, and
         * a parent thread may have been inside libcurl at fork(): leak the libcurl side. */
        gs_transfer_free(t, 1);
    }
    else if (multi != NULL || t != NULL) {
        Py_BEGIN_ALLOW_THREADS
        if (multi != NULL)
            curl_multi_cleanup(multi); /* the easy handle left it at the end of each send */
        gs_transfer_free(t, 0);
        Py_END_ALLOW_THREADS
    }
    Py_CLEAR(self->share);
}

static PyObject *Handle_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    gs_state *st = PyType_GetModuleState(type);
    HandleObject *self;
    gs_options o;
    PyObject *share;
    int check_signals;
    const char *what = NULL;
    CURLcode rc;

    if (gs_options_from_py(st, args, kwds, &check_signals, &o, &share) < 0)
        return NULL;
    self = (HandleObject *)PyType_GenericAlloc(type, 0);
    if (self == NULL) {
        gs_options_clear(&o);
        Py_XDECREF(share);
        return NULL;
    }
    self->share = share;
    self->check_signals = check_signals;
    self->pid = gs_pid;
    self->multi = curl_multi_init();
    if (self->multi == NULL) {
        gs_setup_error("curl_multi_init", 1, NULL);
        goto error;
    }
    self->t = gs_transfer_new();
    if (self->t == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    rc = gs_transfer_setup(self->t, &o, &what); /* libcurl copies the option strings */
    if (rc != CURLE_OK) {
        gs_setup_error(what, rc == CURLE_OUT_OF_MEMORY, curl_easy_strerror(rc));
        goto error;
    }
    gs_options_clear(&o);
    return (PyObject *)self;

error:
    gs_options_clear(&o);
    Py_DECREF(self); /* dealloc frees what was built */
    return NULL;
}

/* Takes the busy flag; raises unless this thread may use the handle now. */
static int handle_enter(HandleObject *self, const char *method)
{
    int idle = 0;
    unsigned long me = PyThread_get_thread_ident();

    if (!atomic_compare_exchange_strong(&self->busy, &idle, 1)) {
        if (atomic_load(&self->owner) == me)
            PyErr_Format(PyExc_RuntimeError,
                         "Handle.%s(): re-entered from the same thread while a send is running "
                         "(a signal handler or other callback); use another Handle there",
                         method);
        else
            PyErr_Format(PyExc_RuntimeError,
                         "Handle.%s(): the Handle is in use by another thread; "
                         "use one Handle per thread",
                         method);
        return -1;
    }
    atomic_store(&self->owner, me);
    return 0;
}

/* Lets go of busy; a close() that came meanwhile (another thread, a signal handler) is carried
 * out here, by whichever thread wins busy back. */
static void handle_leave(HandleObject *self)
{
    int idle = 0;
    atomic_store(&self->owner, 0);
    atomic_store(&self->busy, 0);
    if (atomic_load(&self->closing) && atomic_compare_exchange_strong(&self->busy, &idle, 1)) {
        handle_release(self);
        atomic_store(&self->busy, 0);
    }
}

/* Runs the transfer with the GIL released. -1: a signal handler raised (transfer abandoned). */
static int handle_run(HandleObject *self, CURLMcode *mcode)
{
    CURLM *multi = self->multi;
    gs_transfer *t = self->t;
    CURLcode code = CURLE_OK;
    int running = 1, raised = 0, left;
    int slice_ms = self->check_signals ? (int)(GS_SIGNAL_SLICE * 1000) : 1000;
    double next_check = gs_now() + GS_SIGNAL_SLICE;
    PyThreadState *ts = PyEval_SaveThread();
    CURLMcode mc = curl_multi_add_handle(multi, t->easy);

    while (mc == CURLM_OK) {
        mc = curl_multi_perform(multi, &running);
        if (mc != CURLM_OK || running == 0)
            break;
        /* Wakes on socket activity or libcurl's own timers, so the slice only bounds the wait. */
        mc = curl_multi_poll(multi, NULL, 0, slice_ms, NULL);
        if (self->check_signals && gs_now() >= next_check) {
            PyEval_RestoreThread(ts);
            raised = PyErr_CheckSignals() < 0;
            ts = PyEval_SaveThread();
            if (raised)
                break;
            next_check = gs_now() + GS_SIGNAL_SLICE;
        }
    }
    if (mc == CURLM_OK && !raised) {
        CURLMsg *msg = curl_multi_info_read(multi, &left);
        if (msg != NULL && msg->msg == CURLMSG_DONE)
            code = msg->data.result;
        gs_transfer_finish(t, code);
    }
    /* Removing an unfinished transfer closes its connection: nothing half-sent is reused. */
    CURLMcode rm = curl_multi_remove_handle(multi, t->easy);
    if (mc == CURLM_OK)
        mc = rm;
    PyEval_RestoreThread(ts);
    *mcode = mc;
    return raised ? -1 : 0;
}

/* Sends the request in t->req: 0 when a result was recorded, -1 with an exception set. */
static int handle_transfer(HandleObject *self)
{
    CURLMcode mc;
    CURLcode rc = gs_transfer_begin(self->t, self->t->req);

    if (rc != CURLE_OK) {
        gs_setup_error("the request", rc == CURLE_OUT_OF_MEMORY, curl_easy_strerror(rc));
        return -1;
    }
    if (handle_run(self, &mc) < 0)
        return -1;
    if (mc != CURLM_OK) {
        gs_setup_error("the transfer loop", mc == CURLM_OUT_OF_MEMORY, curl_multi_strerror(mc));
        return -1;
    }
    return 0;
}

/* handle_enter() plus: the Handle belongs to this process and is open. */
static int handle_usable(HandleObject *self, const char *method)
{
    /* The process first: a thread that was mid-send at fork() left busy set in the child. */
    if (gs_check_process(self->pid, "Handle") < 0)
        return -1;
    if (atomic_load(&self->closing)) {
        PyErr_Format(PyExc_ValueError, "%s() on a closed Handle", method);
        return -1;
    }
    if (handle_enter(self, method) < 0)
        return -1;
    if (self->t == NULL) { /* a close() won the race between the two checks */
        PyErr_Format(PyExc_ValueError, "%s() on a closed Handle", method);
        handle_leave(self);
        return -1;
    }
    return 0;
}

static PyObject *Handle_send(PyObject *op, PyTypeObject *cls, PyObject *const *args,
                             Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"url", "headers"};
    HandleObject *self = (HandleObject *)op;
    PyObject *argv[2], *result = NULL;

    if (gs_bind_args("send", names, 2, 2, args, nargs, kwnames, argv) < 0)
        return NULL;
    if (handle_usable(self, "send") < 0)
        return NULL;
    if (gs_request_from_py(&self->t->req, argv[0], argv[1], NULL) == 0 &&
        handle_transfer(self) == 0)
        result = gs_result_to_py(PyType_GetModuleState(cls), self->t);
    handle_leave(self);
    return result;
}

/* "GET" | "POST" | "PUT" | "DELETE", else ValueError. */
int gs_method_from_py(PyObject *m, enum gs_method *out)
{
    static const char *const names[] = {"GET", "POST", "PUT", "DELETE"};
    static const enum gs_method methods[] = {GS_GET, GS_POST, GS_PUT, GS_DELETE};
    if (PyUnicode_Check(m)) {
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            if (PyUnicode_CompareWithASCIIString(m, names[i]) == 0) {
                *out = methods[i];
                return 0;
            }
    }
    PyErr_Format(PyExc_ValueError, "method must be 'GET', 'POST', 'PUT' or 'DELETE', not %R", m);
    return -1;
}

/* The body: bytes (immutable, so it may be read without the GIL while the caller's reference
 * keeps it alive), or file = (fd, offset, length), read with pread() in C. */
int gs_body_from_py(PyObject *body, PyObject *file, gs_body *b)
{
    b->mem = NULL;
    b->fd = -1;
    b->off = b->len = 0;
    if (body != NULL && body != Py_None && file != NULL && file != Py_None) {
        PyErr_SetString(PyExc_ValueError, "pass body or file, not both");
        return -1;
    }
    if (body != NULL && body != Py_None) {
        if (!PyBytes_Check(body)) {
            PyErr_Format(PyExc_TypeError, "body must be bytes or None, not %R",
                         (PyObject *)Py_TYPE(body));
            return -1;
        }
        /* The checked call, not the macros: the abi3 wheel builds against the Limited API. */
        char *mem;
        Py_ssize_t len;
        if (PyBytes_AsStringAndSize(body, &mem, &len) < 0)
            return -1;
        b->mem = mem;
        b->len = (long long)len;
    }
    else if (file != NULL && file != Py_None) {
        int fd;
        long long off, len;
        if (!PyTuple_Check(file) || !PyArg_ParseTuple(file, "iLL", &fd, &off, &len)) {
            if (!PyErr_Occurred() || PyErr_ExceptionMatches(PyExc_TypeError)) {
                PyErr_Clear();
                PyErr_SetString(PyExc_TypeError, "file must be a tuple (fd, offset, length)");
            }
            return -1;
        }
        if (fd < 0 || off < 0 || len < 0) {
            PyErr_SetString(PyExc_ValueError, "file: fd, offset and length must be >= 0");
            return -1;
        }
        if (off > LLONG_MAX - len) { /* on_read adds offset and position: no overflow there */
            PyErr_SetString(PyExc_ValueError, "file: offset + length is too large");
            return -1;
        }
        b->fd = fd;
        b->off = off;
        b->len = len;
    }
    if ((b->method == GS_GET || b->method == GS_DELETE) && (b->mem != NULL || b->fd >= 0)) {
        PyErr_SetString(PyExc_ValueError, "GET and DELETE take no body");
        return -1;
    }
    return 0;
}

/*
 * Any request: method, URL, header lines and a body (bytes or a byte range of an open file),
 * the GIL released meanwhile. A 2xx body comes back whole (up to 8 MiB), others capped as for a
 * send. POST keeps the resend guard; PUT, GET and DELETE may be resent by libcurl.
 */
static PyObject *Handle_request(PyObject *op, PyTypeObject *cls, PyObject *const *args,
                                Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"method", "url", "headers", "body", "file"};
    HandleObject *self = (HandleObject *)op;
    PyObject *argv[5], *result = NULL;
    gs_body b;
    const char *what = "the request body";
    CURLcode rc;

    if (gs_bind_args("request", names, 3, 5, args, nargs, kwnames, argv) < 0)
        return NULL;
    if (gs_method_from_py(argv[0], &b.method) < 0 || gs_body_from_py(argv[3], argv[4], &b) < 0)
        return NULL;
    if (handle_usable(self, "request") < 0)
        return NULL;
    if (gs_request_from_py(&self->t->req, argv[1], argv[2], NULL) == 0) {
        rc = gs_transfer_body(self->t, &b, &what);
        if (rc != CURLE_OK)
            gs_setup_error(what, rc == CURLE_OUT_OF_MEMORY, curl_easy_strerror(rc));
        else if (handle_transfer(self) == 0)
            result = gs_result_to_py(PyType_GetModuleState(cls), self->t);
    }
    /* The send fast path expects its empty POST back. */
    rc = gs_transfer_plain(self->t);
    if (rc != CURLE_OK && result != NULL) {
        Py_CLEAR(result);
        gs_setup_error("restoring the send options", rc == CURLE_OUT_OF_MEMORY,
                       curl_easy_strerror(rc));
    }
    handle_leave(self);
    return result;
}

/*
 * The whole of Client.send's first attempt in one call: the request is built here from the raw
 * arguments, and a 202 comes back as the Receipt itself. Anything else returns
 * (path, client_request_id, Result) for the Python layer's error and retry handling.
 */
static PyObject *Handle_send_draft(PyObject *op, PyTypeObject *cls, PyObject *const *args,
                                   Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[GS_DRAFT_ARGS] = {"prefix", "user", "message_id", "auth",
                                                     "client_request_id"};
    HandleObject *self = (HandleObject *)op;
    gs_state *st = PyType_GetModuleState(cls);
    PyObject *argv[GS_DRAFT_ARGS], *crid = NULL, *path = NULL, *result = NULL;
    size_t prefix_len;

    if (gs_bind_args("send_draft", names, GS_DRAFT_ARGS, GS_DRAFT_ARGS, args, nargs, kwnames,
                     argv) < 0)
        return NULL;
    if (handle_usable(self, "send_draft") < 0)
        return NULL;
    if (gs_draft_request(&self->t->req, argv, &crid, &prefix_len) < 0 ||
        handle_transfer(self) < 0)
        goto done;
    if (self->t->status == 202) {
        result = gs_receipt_to_py(st, self->t, crid, argv[2], argv[1]);
        goto done;
    }
    path = PyUnicode_FromString(self->t->req->url + prefix_len);
    if (path == NULL)
        goto done;
    result = gs_result_to_py(st, self->t);
    if (result != NULL)
        result = Py_BuildValue("(OON)", path, crid, result);
done:
    handle_leave(self);
    Py_XDECREF(crid);
    Py_XDECREF(path);
    return result;
}

/*
 * Never fails. While a send runs (another thread, or a signal handler on this one) the handle is
 * marked closed and the sending thread frees it as it returns. In a forked child the handle is
 * only dropped: busy may be a dead parent thread's, and libcurl's state is the parent's.
 */
static PyObject *Handle_close(PyObject *op, PyObject *unused)
{
    HandleObject *self = (HandleObject *)op;
    int idle = 0;
    (void)unused;

    atomic_store(&self->closing, 1);
    if (self->pid != gs_pid) {
        handle_release(self);
        Py_RETURN_NONE;
    }
    if (atomic_compare_exchange_strong(&self->busy, &idle, 1)) {
        handle_release(self);
        atomic_store(&self->busy, 0);
    }
    Py_RETURN_NONE;
}

static void Handle_dealloc(PyObject *op)
{
    HandleObject *self = (HandleObject *)op;
    if (self->weakreflist != NULL)
        PyObject_ClearWeakRefs(op);
    handle_release(self);
    gs_dealloc_object(op);
}

static PyObject *Handle_get_closed(PyObject *op, void *closure)
{
    (void)closure;
    return PyBool_FromLong(atomic_load(&((HandleObject *)op)->closing));
}

static PyMethodDef Handle_methods[] = {
    {"send", (PyCFunction)(void (*)(void))Handle_send, METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("send($self, /, url, headers)\n--\n\n"
               "POST url with an empty body and the given header lines; return a Result.")},
    {"send_draft", (PyCFunction)(void (*)(void))Handle_send_draft,
     METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("send_draft($self, /, prefix, user, message_id, auth, client_request_id)\n--\n\n"
               "Send a draft: a Receipt on 202, else (path, client_request_id, Result).")},
    {"request", (PyCFunction)(void (*)(void))Handle_request,
     METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("request($self, /, method, url, headers, body=None, file=None)\n--\n\n"
               "Any request: body is bytes, or file is (fd, offset, length) read in C. "
               "Returns a Result; a 2xx body is kept whole (up to 8 MiB).")},
    {"close", Handle_close, METH_NOARGS,
     PyDoc_STR("close($self, /)\n--\n\nFree the easy handle and its connection; during a send "
               "(another thread), when that send returns.")},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Handle_getset[] = {
    {"closed", Handle_get_closed, NULL, PyDoc_STR("True after close()."), NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef Handle_members[] = {
    {"__weaklistoffset__", Py_T_PYSSIZET, offsetof(HandleObject, weakreflist), Py_READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

PyDoc_STRVAR(Handle_doc,
             "Handle(*, check_signals=False, connect_timeout_ms=10000, timeout_ms=60000, "
             "allow_http=False, ca_bundle=None, proxy=None, proxy_ca_bundle=None, "
             "user_agent='graphsend', http2=False, share=None)\n--\n\n"
             "One libcurl easy handle that keeps its connection between sends.");

static PyType_Slot Handle_slots[] = {
    {Py_tp_new, Handle_new},
    {Py_tp_dealloc, Handle_dealloc},
    {Py_tp_methods, Handle_methods},
    {Py_tp_getset, Handle_getset},
    {Py_tp_members, Handle_members},
    {Py_tp_doc, (void *)Handle_doc},
    {0, NULL},
};

PyType_Spec gs_handle_spec = {
    .name = "graphsend._native.Handle",
    .basicsize = sizeof(HandleObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Handle_slots,
};
