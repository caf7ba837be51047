/*
 * Share: a curl share handle for the DNS cache and TLS sessions, so handles in other threads skip
 * lookups and full handshakes. Never the connection cache: libcurl-thread forbids sharing it
 * across threads, and each Handle's own multi keeps its connection anyway.
 */
#include "native.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

/* Plain C so libcurl's lock callbacks never reach into a Python object. */
typedef struct {
    CURLSH *sh;
    pthread_mutex_t locks[CURL_LOCK_DATA_LAST];
} gs_share;

typedef struct {
    PyObject_HEAD
    gs_share *s;
    pid_t pid;
    PyObject *weakreflist;
} ShareObject;

static void share_lock(CURL *easy, curl_lock_data data, curl_lock_access access, void *userp)
{
    gs_share *s = userp;
    (void)easy, (void)access; /* shared and exclusive access both take the one mutex */
    if ((unsigned)data < CURL_LOCK_DATA_LAST)
        pthread_mutex_lock(&s->locks[data]);
}

static void share_unlock(CURL *easy, curl_lock_data data, void *userp)
{
    gs_share *s = userp;
    (void)easy;
    if ((unsigned)data < CURL_LOCK_DATA_LAST)
        pthread_mutex_unlock(&s->locks[data]);
}

static void share_free(gs_share *s, int nlocks)
{
    /* CURLSHE_IN_USE: an easy handle still points at it and would call our lock callbacks with
     * s, so the share, its mutexes and s are leaked rather than freed under it. */
    if (s->sh != NULL && curl_share_cleanup(s->sh) != CURLSHE_OK)
        return;
    for (int i = 0; i < nlocks; i++)
        pthread_mutex_destroy(&s->locks[i]);
    free(s);
}

#define SHSETOPT(option, value)                                                                    \
    do {                                                                                           \
        CURLSHcode rc = curl_share_setopt(s->sh, option, value);                                   \
        if (rc != CURLSHE_OK) {                                                                    \
            gs_setup_error(#option, rc == CURLSHE_NOMEM, curl_share_strerror(rc));                 \
            goto error;                                                                            \
        }                                                                                          \
    } while (0)

static PyObject *Share_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {NULL};
    ShareObject *self = NULL;
    gs_share *s = NULL;
    int nlocks = 0;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, ":Share", kwlist))
        return NULL;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return PyErr_NoMemory();
    for (; nlocks < CURL_LOCK_DATA_LAST; nlocks++) {
        if (pthread_mutex_init(&s->locks[nlocks], NULL) != 0) {
            gs_setup_error("pthread_mutex_init", 0, "cannot create a mutex");
            goto error;
        }
    }
    s->sh = curl_share_init();
    if (s->sh == NULL) {
        gs_setup_error("curl_share_init", 1, NULL);
        goto error;
    }
    SHSETOPT(CURLSHOPT_LOCKFUNC, share_lock);
    SHSETOPT(CURLSHOPT_UNLOCKFUNC, share_unlock);
    SHSETOPT(CURLSHOPT_USERDATA, s);
    SHSETOPT(CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    SHSETOPT(CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);

    self = (ShareObject *)PyType_GenericAlloc(type, 0);
    if (self == NULL)
        goto error;
    self->s = s;
    self->pid = gs_pid;
    return (PyObject *)self;

error:
    share_free(s, nlocks);
    return NULL;
}

CURLSH *gs_share_handle(PyObject *share)
{
    ShareObject *self = (ShareObject *)share;
    if (gs_check_process(self->pid, "Share") < 0)
        return NULL;
    return self->s->sh;
}

static void Share_dealloc(PyObject *op)
{
    ShareObject *self = (ShareObject *)op;
    if (self->weakreflist != NULL)
        PyObject_ClearWeakRefs(op);
    /* In a forked child a mutex may have been held by a parent thread: leave it all alone. */
    if (self->s != NULL && self->pid == gs_pid)
        share_free(self->s, CURL_LOCK_DATA_LAST);
    gs_dealloc_object(op);
}

static PyMemberDef Share_members[] = {
    {"__weaklistoffset__", Py_T_PYSSIZET, offsetof(ShareObject, weakreflist), Py_READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

PyDoc_STRVAR(Share_doc, "Share()\n--\n\n"
                        "DNS cache and TLS sessions shared between Handles and Engines, locked "
                        "with pthread mutexes.");

static PyType_Slot Share_slots[] = {
    {Py_tp_new, Share_new},
    {Py_tp_dealloc, Share_dealloc},
    {Py_tp_members, Share_members},
    {Py_tp_doc, (void *)Share_doc},
    {0, NULL},
};

PyType_Spec gs_share_spec = {
    .name = "graphsend._native.Share",
    .basicsize = sizeof(ShareObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Share_slots,
};
