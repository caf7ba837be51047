/*
 * graphsend._native: multi-phase init (PEP 489), module state instead of globals, heap types.
 * Import fails with ImportError when the libcurl loaded at run time cannot do what was built in.
 */
#include "native.h"

#include "events.h"

#include <pthread.h>

#include <string.h>
#include <unistd.h>

static int has_protocol(const curl_version_info_data *info, const char *name)
{
    for (const char *const *p = info->protocols; p != NULL && *p != NULL; p++)
        if (strcmp(*p, name) == 0)
            return 1;
    return 0;
}

/* Refuses a runtime libcurl older than the headers we compiled against or missing a need. */
static int check_runtime(const curl_version_info_data *info)
{
    if (info->version_num < LIBCURL_VERSION_NUM) {
        PyErr_Format(PyExc_ImportError,
                     "graphsend._native was built against libcurl %s but this process loaded "
                     "libcurl %s; upgrade libcurl or rebuild graphsend",
                     LIBCURL_VERSION, info->version);
        return -1;
    }
    if (!(info->features & CURL_VERSION_SSL) || !has_protocol(info, "https")) {
        PyErr_Format(PyExc_ImportError,
                     "graphsend needs libcurl with TLS (https), but libcurl %s has none",
                     info->version);
        return -1;
    }
    /*
     * Without an asynchronous resolver a DNS lookup blocks inside libcurl: no timeout, Ctrl-C
     * or cancel() can end it, and an Engine stalls every transfer meanwhile. Sends still work
     * (and the lookup runs with the GIL released), so this is a warning, not an ImportError:
     * refusing to import would break a working setup over a degraded corner case.
     */
    if (!(info->features & CURL_VERSION_ASYNCHDNS) &&
        PyErr_WarnFormat(PyExc_RuntimeWarning, 1,
                         "libcurl %s has no asynchronous DNS resolver: timeouts and Ctrl-C "
                         "cannot interrupt a slow DNS lookup",
                         info->version) < 0)
        return -1;
    return 0;
}

static int add_type(PyObject *module, PyType_Spec *spec, PyTypeObject **slot)
{
    *slot = (PyTypeObject *)PyType_FromModuleAndSpec(module, spec, NULL);
    if (*slot == NULL)
        return -1;
    return PyModule_AddType(module, *slot);
}

pid_t gs_pid;
/* curl_global_init/cleanup are not thread-safe in every libcurl, and sub-interpreters with their
 * own GIL may import or drop this module at the same time. */
static pthread_mutex_t global_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t pid_tracking = PTHREAD_ONCE_INIT;
static int pid_tracking_failed;

static void refresh_pid(void)
{
    gs_pid = getpid();
}

static void start_pid_tracking(void)
{
    refresh_pid();
    pid_tracking_failed = pthread_atfork(NULL, NULL, refresh_pid) != 0;
}

int gs_track_pid(void)
{
    if (pthread_once(&pid_tracking, start_pid_tracking) != 0 || pid_tracking_failed) {
        PyErr_SetString(PyExc_ImportError, "graphsend._native: pthread_atfork failed");
        return -1;
    }
    return 0;
}

static int module_exec(PyObject *module)
{
    gs_state *st = PyModule_GetState(module);
    const curl_version_info_data *info = curl_version_info(CURLVERSION_NOW);
    CURLcode rc;

    if (check_runtime(info) < 0 || gs_track_pid() < 0)
        return -1;
    /* Reference counted inside libcurl: every module instance pairs it with cleanup in m_free. */
    pthread_mutex_lock(&global_lock);
    rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    pthread_mutex_unlock(&global_lock);
    if (rc != CURLE_OK) {
        PyErr_Format(PyExc_ImportError, "curl_global_init failed: %s", curl_easy_strerror(rc));
        return -1;
    }
    st->curl_ready = 1;
    st->pid = gs_pid;
    if (add_type(module, &gs_share_spec, &st->share_type) < 0 ||
        add_type(module, &gs_handle_spec, &st->handle_type) < 0 ||
        add_type(module, &gs_engine_spec, &st->engine_type) < 0 ||
        add_type(module, &gs_loop_engine_spec, &st->loop_engine_type) < 0)
        return -1;
    for (int i = 0; i < GS_H_COUNT; i++) {
        st->header_keys[i] = PyUnicode_InternFromString(gs_headers[i].name);
        if (st->header_keys[i] == NULL)
            return -1;
    }
    if (PyModule_AddStringConstant(module, "libcurl_version", info->version) < 0 ||
        PyModule_AddStringConstant(module, "libcurl_build_version", LIBCURL_VERSION) < 0 ||
        PyModule_AddStringConstant(module, "event_backend", GS_EV_BACKEND) < 0 ||
        PyModule_AddStringConstant(module, "ssl_version",
                                   info->ssl_version ? info->ssl_version : "") < 0 ||
        PyModule_AddIntConstant(module, "body_limit", GS_BODY_CAP) < 0 ||
        PyModule_AddIntConstant(module, "body_limit_ok", GS_BODY_CAP_OK) < 0 ||
        PyModule_AddIntConstant(module, "id_limit", GS_ID_MAX) < 0)
        return -1;
#ifdef Py_LIMITED_API
    if (PyModule_AddObjectRef(module, "limited_api", Py_True) < 0)
        return -1;
#else
    if (PyModule_AddObjectRef(module, "limited_api", Py_False) < 0)
        return -1;
#endif
    PyObject *async_dns = PyBool_FromLong((info->features & CURL_VERSION_ASYNCHDNS) != 0);
    if (PyModule_AddObjectRef(module, "async_dns", async_dns) < 0) {
        Py_DECREF(async_dns);
        return -1;
    }
    Py_DECREF(async_dns);
    PyObject *http2 = PyBool_FromLong((info->features & CURL_VERSION_HTTP2) != 0);
    if (PyModule_AddObjectRef(module, "http2_supported", http2) < 0) {
        Py_DECREF(http2);
        return -1;
    }
    Py_DECREF(http2);
    return 0;
}

static int module_traverse(PyObject *module, visitproc visit, void *arg)
{
    gs_state *st = PyModule_GetState(module);
    Py_VISIT(st->share_type);
    Py_VISIT(st->handle_type);
    Py_VISIT(st->engine_type);
    Py_VISIT(st->loop_engine_type);
    Py_VISIT(st->receipt_type);
    return 0;
}

static int module_clear(PyObject *module)
{
    gs_state *st = PyModule_GetState(module);
    Py_CLEAR(st->share_type);
    Py_CLEAR(st->handle_type);
    Py_CLEAR(st->engine_type);
    Py_CLEAR(st->loop_engine_type);
    Py_CLEAR(st->receipt_type);
    for (int i = 0; i < GS_H_COUNT; i++)
        Py_CLEAR(st->header_keys[i]);
    return 0;
}

static void module_free(void *module)
{
    gs_state *st = PyModule_GetState(module);
    module_clear(module);
    /* Every object holds its type and so this module: no handle is left to outlive libcurl. */
    if (st->curl_ready && st->pid == gs_pid) {
        pthread_mutex_lock(&global_lock);
        curl_global_cleanup();
        pthread_mutex_unlock(&global_lock);
    }
    st->curl_ready = 0;
}

static PyObject *set_receipt_type(PyObject *module, PyObject *cls)
{
    gs_state *st = PyModule_GetState(module);
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "set_receipt_type() needs a subclass of tuple");
        return NULL;
    }
    /* The tuple's own constructor: a Receipt is built without running Receipt.__new__. */
    st->tuple_new = (newfunc)PyType_GetSlot(&PyTuple_Type, Py_tp_new);
    if (st->tuple_new == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "tuple has no tp_new slot");
        return NULL;
    }
    /* Stored before the old one is let go: its decref may run Python code (a finaliser) that
     * must find a valid type there, and another thread may be reading it. */
    PyObject *old = st->receipt_type;
    st->receipt_type = Py_NewRef(cls);
    Py_XDECREF(old);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"new_client_request_id", gs_new_client_request_id, METH_NOARGS,
     PyDoc_STR("new_client_request_id($module, /)\n--\n\n"
               "A fresh random (version 4) UUID string for the client-request-id header.")},
    {"check_text", (PyCFunction)(void (*)(void))gs_check_text_py, METH_FASTCALL,
     PyDoc_STR("check_text($module, value, what, /)\n--\n\n"
               "Return value if it is a non-empty printable str; else TypeError/ValueError.")},
    {"send_path", (PyCFunction)(void (*)(void))gs_send_path_py, METH_FASTCALL,
     PyDoc_STR("send_path($module, user, message_id, /)\n--\n\n"
               "/me|users/{user}/messages/{id}/send, each segment checked and percent-encoded.")},
    {"set_receipt_type", set_receipt_type, METH_O,
     PyDoc_STR("set_receipt_type($module, cls, /)\n--\n\n"
               "The tuple subclass that Handle.send_draft() returns on 202.")},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#ifdef Py_mod_gil
    /* All shared state is guarded by atomics or mutexes, never by the GIL. */
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
#if !defined(Py_LIMITED_API) && defined(Py_mod_multiple_interpreters)
    /* State is per module (heap types, module state); process-wide are only the pid (atomic
     * enough: set at import and in a fork child) and curl_global_init (under global_lock). */
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "graphsend._native",
    .m_doc = "libcurl transport for graphsend: Share, Handle, Engine.",
    .m_size = sizeof(gs_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__native(void)
{
    return PyModuleDef_Init(&module_def);
}
