/* Internal header of graphsend._native: module state, the types, Python <-> C conversions. */
#ifndef GRAPHSEND_NATIVE_H
#define GRAPHSEND_NATIVE_H

/*
 * The Limited API (3.10) covers all we use; setup.py builds against it (an abi3 extension) only
 * when asked (GRAPHSEND_ABI3=1). The default, a build for one Python version, uses the full API,
 * which lets 3.12+ declare per-interpreter GIL support. Free-threaded builds do not support the
 * Limited API at all; pyconfig.h is what tells those apart.
 */
#include <pyconfig.h>
#if defined(GRAPHSEND_ABI3) && !defined(Py_GIL_DISABLED)
#define Py_LIMITED_API 0x030A0000
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#ifndef Py_T_PYSSIZET
#include <structmember.h>
#define Py_T_PYSSIZET T_PYSSIZET
#define Py_READONLY READONLY
#endif

#include <curl/curl.h>
#include <sys/types.h>
#include <unistd.h>

#include "transfer.h"

typedef struct {
    PyTypeObject *share_type;
    PyTypeObject *handle_type;
    PyTypeObject *engine_type;
    PyTypeObject *loop_engine_type;
    PyObject *header_keys[GS_H_COUNT]; /* interned names for result dicts */
    PyObject *receipt_type;            /* graphsend.Receipt, a tuple subclass (set_receipt_type) */
    newfunc tuple_new;                 /* tuple.__new__, to build a Receipt without Python code */
    pid_t pid;                         /* process that ran curl_global_init */
    int curl_ready;
} gs_state;

/* Type specs, one per file. */
extern PyType_Spec gs_share_spec;
extern PyType_Spec gs_handle_spec;
extern PyType_Spec gs_engine_spec;
extern PyType_Spec gs_loop_engine_spec; /* engine.c: an Engine an event loop drives */

/* request_id.c: a fresh version 4 UUID (36 characters, no NUL), and the module function. */
#define GS_REQUEST_ID_LEN 36
void gs_request_id(char text[GS_REQUEST_ID_LEN]);
PyObject *gs_new_client_request_id(PyObject *module, PyObject *unused);

/* share.c: the CURLSH behind a Share object, or NULL (with an exception) if it is unusable. */
CURLSH *gs_share_handle(PyObject *share);

/* convert.c */
PyObject *gs_setup_error(const char *what, int out_of_memory, const char *reason);
int gs_options_from_py(gs_state *st, PyObject *args, PyObject *kwds, int *check_signals,
                       gs_options *o, PyObject **share);
int gs_bind_args(const char *fname, const char *const *names, Py_ssize_t nrequired,
                 Py_ssize_t nmax, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                 PyObject **out);
const char *gs_wire_line(PyObject *s, const char *what, Py_ssize_t *len);
/* crid: NULL or None, or a client-request-id: sent as its own header line, and carried by the
 * Receipt of a 202 (Engine). */
int gs_request_from_py(gs_request **reqp, PyObject *url, PyObject *headers, PyObject *crid);
/* Handle.request()'s and Engine.submit()'s method ("GET", "POST", "PUT", "DELETE") and body
 * (bytes, or file = (fd, offset, length)); -1 with an exception set. */
int gs_method_from_py(PyObject *m, enum gs_method *out);
int gs_body_from_py(PyObject *body, PyObject *file, gs_body *b);
PyObject *gs_result_to_py(gs_state *st, const gs_transfer *t);
/* Receipt(202, request_id, client_request_id, date, elapsed, message_id, user, False);
 * RuntimeError before registration. message_id and user are borrowed (None when unknown). */
PyObject *gs_receipt_to_py(gs_state *st, const gs_transfer *t, PyObject *client_request_id,
                           PyObject *message_id, PyObject *user);

/* draft.c: Python's check_text() as C; UTF-8 of value, or NULL with TypeError/ValueError. */
const char *gs_check_text(PyObject *value, const char *what, Py_ssize_t *len);

typedef struct {
    const char *text; /* checked UTF-8 */
    size_t len, encoded_len;
    int keep_at;   /* "@" stays as is (user segments) */
    int dots_only; /* "." or "..": each dot is encoded */
} gs_segment;

/* The longest user and message_id accepted, in characters: Graph's message ids are about 150-200
 * characters and user ids or principal names far shorter, so this only stops mistakes. */
#define GS_ID_MAX 2048

/* "/me|users/{user}/messages/{id}/send": checked first, then written into len bytes. */
typedef struct {
    gs_segment user, id;
    int me;
    size_t len;
} gs_send_path;
int gs_send_path_check(PyObject *user, PyObject *message_id, gs_send_path *p);
void gs_send_path_write(const gs_send_path *p, char *out);

/* Handle.send_draft()'s arguments, in order. */
enum {
    GS_DRAFT_PREFIX,
    GS_DRAFT_USER,
    GS_DRAFT_ID,
    GS_DRAFT_AUTH,
    GS_DRAFT_CRID,
    GS_DRAFT_ARGS
};
/* Builds the request (URL = prefix + send path; Authorization and client-request-id lines) and
 * returns the client-request-id sent (a new reference) and the prefix's length. -1 on error. */
int gs_draft_request(gs_request **reqp, PyObject *const draft[GS_DRAFT_ARGS], PyObject **crid_out,
                     size_t *prefix_len);
PyObject *gs_check_text_py(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *gs_send_path_py(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

/* Shared helpers for the three types. */
#define GS_SIGNAL_SLICE 0.1 /* seconds between PyErr_CheckSignals() while a transfer runs */

/*
 * This process's pid without a system call per send (glibc no longer caches getpid()): set at
 * import and refreshed in a fork child by a pthread_atfork handler (module.c).
 */
extern pid_t gs_pid;
int gs_track_pid(void);

/* A forked child must not drive the parent's libcurl handles: RuntimeError, -1. */
static inline int gs_check_process(pid_t pid, const char *type)
{
    if (pid == gs_pid)
        return 0;
    PyErr_Format(PyExc_RuntimeError,
                 "this %s was created in another process (before fork); "
                 "create a new one in this process",
                 type);
    return -1;
}

static inline void gs_dealloc_object(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    tp_free(self);
    Py_DECREF(tp);
}

#endif
