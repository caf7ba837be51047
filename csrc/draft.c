/*
 * The input rules and the request of one Graph send, in C: check_text() and send_path() (module
 * functions the Python layer uses for every check and URL), and the request block that
 * Handle.send_draft() sends straight from Client.send's arguments.
 *
 * Why C: between two sequential transfers the CPU's caches are cold (libcurl, the kernel and the
 * server ran in between), so each Python step costs several times its timeit figure there.
 * Building the path, the client-request-id and the header tuple in Python was most of what
 * separated Client.send from the C loop (bench/breakdown.py).
 */
#include "native.h"

#include <string.h>

const char *gs_check_text(PyObject *value, const char *what, Py_ssize_t *len)
{
    const char *p;
    int ascii = 1;

    if (!PyUnicode_Check(value)) {
        PyObject *name = PyObject_GetAttrString((PyObject *)Py_TYPE(value), "__name__");
        if (name != NULL) {
            PyErr_Format(PyExc_TypeError, "%s must be a str, not %U", what, name);
            Py_DECREF(name);
        }
        return NULL;
    }
    p = PyUnicode_AsUTF8AndSize(value, len);
    if (p == NULL) {
        /* Only lone surrogates fail to encode, and str.isprintable() rejects those as well. */
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
            return NULL;
        PyErr_Clear();
        goto not_printable;
    }
    if (*len == 0) {
        PyErr_Format(PyExc_ValueError, "%s must not be empty", what);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < *len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x80)
            ascii = 0;
        else if (c < 0x20 || c == 0x7F)
            goto not_printable;
    }
    if (!ascii) {
        /* Beyond ASCII, what prints is a question for Python's Unicode database: str's own
         * isprintable, never a subclass's override (no Python code runs inside the check). */
        PyObject *ok = PyObject_CallMethod((PyObject *)&PyUnicode_Type, "isprintable", "O", value);
        int printable;
        if (ok == NULL)
            return NULL;
        printable = PyObject_IsTrue(ok);
        Py_DECREF(ok);
        if (printable < 0)
            return NULL;
        if (!printable)
            goto not_printable;
    }
    return p;

not_printable:
    PyErr_Format(PyExc_ValueError, "%s must not contain control characters", what);
    return NULL;
}

/* RFC 3986 unreserved characters, never percent-encoded. */
static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

static int kept(const gs_segment *s, unsigned char c)
{
    if (c == '.')
        return !s->dots_only; /* "." and ".." would be dot segments that normalisation removes */
    /* "@" is legal in a path segment and keeps userPrincipalNames readable in logs. */
    return unreserved(c) || (c == '@' && s->keep_at);
}

static int segment_check(PyObject *value, const char *what, int keep_at, gs_segment *s)
{
    Py_ssize_t len;
    /* Before any encoding or allocation: a megabyte id is a caller's mistake, not a send. */
    if (PyUnicode_Check(value) && PyUnicode_GetLength(value) > GS_ID_MAX) {
        PyErr_Format(PyExc_ValueError,
                     "%s is longer than %d characters (Graph ids are a few hundred at most)", what,
                     GS_ID_MAX);
        return -1;
    }
    s->text = gs_check_text(value, what, &len);
    if (s->text == NULL)
        return -1;
    s->len = (size_t)len;
    s->keep_at = keep_at;
    s->dots_only = strspn(s->text, ".") == s->len; /* text has no NUL: checked above */
    s->encoded_len = 0;
    for (size_t i = 0; i < s->len; i++)
        s->encoded_len += kept(s, (unsigned char)s->text[i]) ? 1 : 3;
    return 0;
}

static char *segment_write(const gs_segment *s, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < s->len; i++) {
        unsigned char c = (unsigned char)s->text[i];
        if (kept(s, c)) {
            *out++ = (char)c;
        } else {
            *out++ = '%';
            *out++ = hex[c >> 4];
            *out++ = hex[c & 0x0F];
        }
    }
    return out;
}

static char *put(char *out, const char *text, size_t len)
{
    memcpy(out, text, len);
    return out + len;
}
#define PUT(out, literal) put(out, literal, sizeof(literal) - 1)

int gs_send_path_check(PyObject *user, PyObject *message_id, gs_send_path *p)
{
    p->me = user == Py_None;
    if (!p->me && segment_check(user, "user", 1, &p->user) < 0)
        return -1;
    if (segment_check(message_id, "message_id", 0, &p->id) < 0)
        return -1;
    p->len = (p->me ? sizeof("/me") - 1 : sizeof("/users/") - 1 + p->user.encoded_len) +
             sizeof("/messages/") - 1 + p->id.encoded_len + sizeof("/send") - 1;
    return 0;
}

void gs_send_path_write(const gs_send_path *p, char *out)
{
    if (p->me) {
        out = PUT(out, "/me");
    } else {
        out = PUT(out, "/users/");
        out = segment_write(&p->user, out);
    }
    out = PUT(out, "/messages/");
    out = segment_write(&p->id, out);
    PUT(out, "/send");
}

int gs_draft_request(gs_request **reqp, PyObject *const draft[GS_DRAFT_ARGS], PyObject **crid_out,
                     size_t *prefix_len)
{
    gs_send_path path;
    const char *prefix, *auth, *crid;
    Py_ssize_t prefix_n, auth_n, crid_n = GS_REQUEST_ID_LEN;
    char fresh[GS_REQUEST_ID_LEN];
    gs_request_writer w;
    char *url;

    *crid_out = NULL;
    prefix = gs_wire_line(draft[GS_DRAFT_PREFIX], "prefix", &prefix_n);
    if (prefix == NULL || gs_send_path_check(draft[GS_DRAFT_USER], draft[GS_DRAFT_ID], &path) < 0)
        return -1;
    auth = gs_wire_line(draft[GS_DRAFT_AUTH], "auth", &auth_n);
    if (auth == NULL)
        return -1;
    if (draft[GS_DRAFT_CRID] == Py_None) {
        gs_request_id(fresh);
        crid = fresh;
    } else {
        crid = gs_check_text(draft[GS_DRAFT_CRID], "client_request_id", &crid_n);
        if (crid == NULL)
            return -1;
    }
    if (gs_request_begin(reqp, 2,
                         (size_t)prefix_n + path.len + 1 + (size_t)auth_n + 1 +
                             GS_CRID_LINE((size_t)crid_n),
                         &w) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    url = gs_request_url(&w, (size_t)prefix_n + path.len);
    gs_send_path_write(&path, put(url, prefix, (size_t)prefix_n));
    gs_request_put_header(&w, auth, (size_t)auth_n);
    gs_request_put_crid_header(&w, crid, (size_t)crid_n);
    gs_request_end(&w);

    if (crid == fresh)
        *crid_out = PyUnicode_FromStringAndSize(fresh, GS_REQUEST_ID_LEN);
    else
        *crid_out = Py_NewRef(draft[GS_DRAFT_CRID]);
    *prefix_len = (size_t)prefix_n;
    return *crid_out == NULL ? -1 : 0;
}

PyObject *gs_check_text_py(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    const char *what;
    Py_ssize_t len;
    (void)module;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "check_text() takes exactly 2 arguments (value, what)");
        return NULL;
    }
    what = PyUnicode_Check(args[1]) ? PyUnicode_AsUTF8AndSize(args[1], &len) : NULL;
    if (what == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "check_text(): what must be a str");
        return NULL;
    }
    if (gs_check_text(args[0], what, &len) == NULL)
        return NULL;
    return Py_NewRef(args[0]);
}

PyObject *gs_send_path_py(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    gs_send_path path;
    char small[512], *text = small;
    PyObject *result;
    (void)module;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "send_path() takes exactly 2 arguments (user, message_id)");
        return NULL;
    }
    if (gs_send_path_check(args[0], args[1], &path) < 0)
        return NULL;
    if (path.len > sizeof(small)) {
        text = PyMem_Malloc(path.len);
        if (text == NULL)
            return PyErr_NoMemory();
    }
    gs_send_path_write(&path, text);
    result = PyUnicode_FromStringAndSize(text, (Py_ssize_t)path.len); /* ASCII: all encoded */
    if (text != small)
        PyMem_Free(text);
    return result;
}
