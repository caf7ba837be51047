/*
 * Python <-> C at the edges of a send: options and request arguments become malloc'd C records
 * (so nothing Python is needed once the GIL is released), results become the Result tuple.
 */
#include "native.h"

#include <stdlib.h>
#include <string.h>

/* The one place where a failure to set libcurl up becomes an exception. Returns NULL. */
PyObject *gs_setup_error(const char *what, int out_of_memory, const char *reason)
{
    char safe[CURL_ERROR_SIZE];
    if (out_of_memory)
        return PyErr_NoMemory();
    gs_redact(reason != NULL ? reason : "unknown error", safe, sizeof(safe));
    PyErr_Format(PyExc_RuntimeError, "graphsend: libcurl %s failed at %s: %s",
                 curl_version_info(CURLVERSION_NOW)->version, what, safe);
    return NULL;
}

static int copy_str(char **dst, const char *src)
{
    if (src == NULL)
        return 0;
    *dst = strdup(src);
    if (*dst == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

int gs_options_from_py(gs_state *st, PyObject *args, PyObject *kwds, int *check_signals,
                       gs_options *o, PyObject **share)
{
    static char *handle_kw[] = {"check_signals",   "connect_timeout_ms", "timeout_ms",
                                "allow_http",      "ca_bundle",          "proxy",
                                "proxy_ca_bundle", "user_agent",         "http2",
                                "share",           NULL};
    char **engine_kw = handle_kw + 1;
    long long connect_timeout_ms = 10000, timeout_ms = 60000;
    int allow_http = 0, http2 = 0, signals = 0;
    const char *ca_bundle = NULL, *proxy = NULL, *proxy_ca_bundle = NULL;
    const char *user_agent = "graphsend";
    PyObject *share_obj = Py_None, *user_agent_obj = NULL;
    Py_ssize_t ignored;
    int ok;

    memset(o, 0, sizeof(*o));
    *share = NULL;
    if (check_signals != NULL)
        ok = PyArg_ParseTupleAndKeywords(args, kwds, "|$pLLpzzzOpO:Handle", handle_kw, &signals,
                                         &connect_timeout_ms, &timeout_ms, &allow_http,
                                         &ca_bundle, &proxy, &proxy_ca_bundle, &user_agent_obj,
                                         &http2, &share_obj);
    else
        ok = PyArg_ParseTupleAndKeywords(args, kwds, "|$LLpzzzOpO:Engine", engine_kw,
                                         &connect_timeout_ms, &timeout_ms, &allow_http,
                                         &ca_bundle, &proxy, &proxy_ca_bundle, &user_agent_obj,
                                         &http2, &share_obj);
    if (!ok)
        return -1;
    /* The User-Agent is a header line like any other: the same CR/LF/NUL check. */
    if (user_agent_obj != NULL) {
        user_agent = gs_wire_line(user_agent_obj, "user_agent", &ignored);
        if (user_agent == NULL)
            return -1;
    }
    if (connect_timeout_ms < 0 || connect_timeout_ms > LONG_MAX || timeout_ms < 0 ||
        timeout_ms > LONG_MAX) {
        PyErr_SetString(PyExc_ValueError, "timeouts must be >= 0 milliseconds");
        return -1;
    }
    if (share_obj != Py_None) {
        if (Py_TYPE(share_obj) != st->share_type) {
            PyErr_SetString(PyExc_TypeError, "share must be a graphsend._native.Share or None");
            return -1;
        }
        o->share = gs_share_handle(share_obj);
        if (o->share == NULL)
            return -1;
        *share = Py_NewRef(share_obj);
    }
    if (check_signals != NULL)
        *check_signals = signals;
    o->connect_timeout_ms = (long)connect_timeout_ms;
    o->timeout_ms = (long)timeout_ms;
    o->allow_http = allow_http;
    o->http2 = http2;
    if (copy_str(&o->ca_bundle, ca_bundle) < 0 || copy_str(&o->proxy, proxy) < 0 ||
        copy_str(&o->proxy_ca_bundle, proxy_ca_bundle) < 0 ||
        copy_str(&o->user_agent, user_agent) < 0) {
        gs_options_clear(o);
        Py_CLEAR(*share);
        return -1;
    }
    return 0;
}

/* Binds the arguments of a METH_FASTCALL | METH_KEYWORDS call to out[] by parameter name. */
int gs_bind_args(const char *fname, const char *const *names, Py_ssize_t nrequired,
                 Py_ssize_t nmax, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                 PyObject **out)
{
    Py_ssize_t nkw = kwnames != NULL ? PyTuple_Size(kwnames) : 0;

    if (nargs > nmax) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %zd arguments (%zd given)", fname, nmax,
                     nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nmax; i++)
        out[i] = i < nargs ? args[i] : NULL;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GetItem(kwnames, k);
        Py_ssize_t i = 0;
        while (i < nmax && PyUnicode_CompareWithASCIIString(key, names[i]) != 0)
            i++;
        if (i == nmax) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument %R", fname,
                         key);
            return -1;
        }
        if (out[i] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname,
                         names[i]);
            return -1;
        }
        out[i] = args[nargs + k];
    }
    for (Py_ssize_t i = 0; i < nrequired; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname, names[i]);
            return -1;
        }
    }
    return 0;
}

/* UTF-8 of a str that may go on the wire as one line: no NUL, CR or LF (no header injection). */
const char *gs_wire_line(PyObject *s, const char *what, Py_ssize_t *len)
{
    const char *p;
    if (!PyUnicode_Check(s)) {
        PyErr_Format(PyExc_TypeError, "%s must be str, not %R", what, (PyObject *)Py_TYPE(s));
        return NULL;
    }
    p = PyUnicode_AsUTF8AndSize(s, len);
    if (p == NULL)
        return NULL;
    if (memchr(p, '\r', (size_t)*len) || memchr(p, '\n', (size_t)*len) ||
        strlen(p) != (size_t)*len) {
        PyErr_Format(PyExc_ValueError, "%s must not contain CR, LF or NUL", what);
        return NULL;
    }
    return p;
}

int gs_request_from_py(gs_request **reqp, PyObject *url, PyObject *headers, PyObject *crid)
{
    Py_ssize_t url_len, n, len, crid_len = 0;
    const char *u, *line, *crid_text = NULL;
    size_t text;
    gs_request_writer w;

    if (!PyTuple_Check(headers)) {
        PyErr_Format(PyExc_TypeError, "headers must be a tuple of str, not %R",
                     (PyObject *)Py_TYPE(headers));
        return -1;
    }
    u = gs_wire_line(url, "url", &url_len);
    if (u == NULL)
        return -1;
    text = (size_t)url_len + 1;
    n = PyTuple_Size(headers);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (gs_wire_line(PyTuple_GetItem(headers, i), "each header", &len) == NULL)
            return -1;
        text += (size_t)len + 1;
    }
    if (crid != NULL && crid != Py_None) {
        crid_text = gs_check_text(crid, "client_request_id", &crid_len);
        if (crid_text == NULL)
            return -1;
        text += GS_CRID_LINE((size_t)crid_len);
    }
    if (gs_request_begin(reqp, (size_t)n + (crid_text != NULL), text, &w) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    gs_request_put_url(&w, u, (size_t)url_len);
    for (Py_ssize_t i = 0; i < n; i++) {
        /* Cannot fail: the first pass made and cached every UTF-8 form. */
        line = PyUnicode_AsUTF8AndSize(PyTuple_GetItem(headers, i), &len);
        gs_request_put_header(&w, line, (size_t)len);
    }
    if (crid_text != NULL)
        gs_request_put_crid_header(&w, crid_text, (size_t)crid_len);
    gs_request_end(&w);
    return 0;
}

static PyObject *header_to_py(const gs_transfer *t, int i)
{
    if (!(t->header_present & (1u << i)))
        return Py_NewRef(Py_None);
    return PyUnicode_DecodeLatin1(t->header_text + t->header_off[i],
                                  (Py_ssize_t)t->header_len[i], NULL);
}

static PyObject *headers_to_py(gs_state *st, const gs_transfer *t)
{
    PyObject *d = PyDict_New();
    if (d == NULL)
        return NULL;
    for (int i = 0; i < GS_H_COUNT; i++) {
        if (!(t->header_present & (1u << i)))
            continue;
        PyObject *v = header_to_py(t, i);
        if (v == NULL || PyDict_SetItem(d, st->header_keys[i], v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(v);
    }
    return d;
}

/* (status, headers, body, elapsed, curl_code, error, request_sent) */
PyObject *gs_result_to_py(gs_state *st, const gs_transfer *t)
{
    PyObject *items[7];
    PyObject *result;
    char error[CURL_ERROR_SIZE];

    items[0] = PyLong_FromLong(t->status);
    items[1] = headers_to_py(st, t);
    items[2] = PyBytes_FromStringAndSize(t->body, (Py_ssize_t)t->body_len);
    items[3] = PyFloat_FromDouble(t->elapsed);
    items[4] = PyLong_FromLong((long)t->code);
    gs_redact(t->errbuf, error, sizeof(error));
    items[5] = PyUnicode_DecodeUTF8(error, (Py_ssize_t)strlen(error), "replace");
    items[6] = PyBool_FromLong(t->request_sent);
    result = PyTuple_New(7);
    for (int i = 0; i < 7; i++) {
        if (items[i] == NULL || result == NULL) {
            for (int j = 0; j < 7; j++)
                Py_XDECREF(items[j]);
            Py_XDECREF(result);
            return NULL;
        }
    }
    for (int i = 0; i < 7; i++)
        PyTuple_SetItem(result, i, items[i]); /* steals */
    return result;
}

PyObject *gs_receipt_to_py(gs_state *st, const gs_transfer *t, PyObject *client_request_id,
                           PyObject *message_id, PyObject *user)
{
    PyObject *fields, *args, *receipt;

    if (st->receipt_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "graphsend._native: set_receipt_type() was not called");
        return NULL;
    }
    fields = Py_BuildValue("(lNONdOOO)", t->status, header_to_py(t, GS_H_REQUEST_ID),
                           client_request_id, header_to_py(t, GS_H_DATE), t->elapsed, message_id,
                           user, Py_False);
    if (fields == NULL)
        return NULL;
    args = PyTuple_Pack(1, fields);
    Py_DECREF(fields);
    if (args == NULL)
        return NULL;
    receipt = st->tuple_new((PyTypeObject *)st->receipt_type, args, NULL);
    Py_DECREF(args);
    return receipt;
}
