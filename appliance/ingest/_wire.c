/* OTLP/protobuf trace export -> the spans' decoded fields, in one pass over the wire bytes.
 *
 * Why native: building rows in Python from the protobuf objects was the largest share of
 * an ingest batch's CPU (issue 9; docs/store-design.md). This reads the common shape of a
 * request straight from its bytes. It never decides anything on its own: whenever a
 * request holds something only the Python path handles (a value over the size limit, more
 * attributes or events than the limits keep, a bytes or key-value-list value, a singular
 * message repeated on the wire, a wire type that does not match its field, a malformed
 * message), walk() returns None and the caller takes the Python path for the whole
 * request, which gives the answer or the error. Both paths give the same structure
 * (appliance/ingest/rows.py documents it); tests/unit/test_wire.py compares them.
 *
 * walk(data, vlim, max_attrs, max_events, cache) ->
 *   None, or a list of
 *   (resource_attrs, [(scope_name, [span, ...]), ...]) and each span
 *   (trace_hex, span_hex, parent_hex|None, name, kind, start_ns, end_ns, status_code,
 *    status_message, attrs, dropped_attributes_count, [(name, time_ns, attrs), ...],
 *    [(trace_hex, span_hex, attrs), ...], dropped_events_count)
 * ``cache`` is attributes.py's dict of small decoded KeyValues by their encoded bytes:
 * this fills and reads it exactly as the Python decoder does.
 */
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "fixed64 fields are read as little-endian"
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define OK 0
#define PUNT 1   /* leave the request to the Python path */
#define FAIL 2   /* a Python exception is set */

#define CACHED_SIZE 128   /* attributes.py _CACHED_SIZE */
#define CACHE_MAX 16384   /* attributes.py: the cache is cleared when full */
#define MAX_DEPTH 8       /* nested arrays deeper than this are left to Python */

typedef struct {
    const uint8_t *p, *end;
} Buf;

typedef struct {
    Py_ssize_t vlim, max_attrs, max_events;
    PyObject *cache;
} Ctx;

static int varint(Buf *b, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (b->p >= b->end) return PUNT;
        uint8_t byte = *b->p++;
        if (shift == 63 && byte > 1) return PUNT;
        v |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *out = v;
            return OK;
        }
    }
    return PUNT;
}

static int tag(Buf *b, uint32_t *field, uint32_t *wire) {
    uint64_t t;
    if (varint(b, &t) != OK || t > UINT32_MAX || (t >> 3) == 0) return PUNT;
    *field = (uint32_t)(t >> 3);
    *wire = (uint32_t)(t & 7);
    return OK;
}

static int delimited(Buf *b, Buf *out) {
    uint64_t n;
    if (varint(b, &n) != OK || n > (uint64_t)(b->end - b->p)) return PUNT;
    out->p = b->p;
    out->end = b->p + n;
    b->p += n;
    return OK;
}

static int fixed64(Buf *b, uint64_t *out) {
    if (b->end - b->p < 8) return PUNT;
    memcpy(out, b->p, 8);
    b->p += 8;
    return OK;
}

/* Skip a field of an unknown number; groups (3, 4) are left to Python. */
static int skip(Buf *b, uint32_t wire) {
    uint64_t v;
    Buf s;
    switch (wire) {
    case 0: return varint(b, &v);
    case 1: if (b->end - b->p < 8) return PUNT; b->p += 8; return OK;
    case 2: return delimited(b, &s);
    case 5: if (b->end - b->p < 4) return PUNT; b->p += 4; return OK;
    default: return PUNT;
    }
}

static PyObject *text(Buf s) {
    return PyUnicode_DecodeUTF8((const char *)s.p, s.end - s.p, "replace");
}

static PyObject *hex(Buf s) {
    static const char digits[] = "0123456789abcdef";
    Py_ssize_t n = s.end - s.p;
    PyObject *out = PyUnicode_New(2 * n, 127);
    if (!out) return NULL;
    Py_UCS1 *w = PyUnicode_1BYTE_DATA(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        w[2 * i] = digits[s.p[i] >> 4];
        w[2 * i + 1] = digits[s.p[i] & 15];
    }
    return out;
}

static int all_zero(Buf s) {
    for (const uint8_t *q = s.p; q < s.end; q++)
        if (*q) return 0;
    return 1;
}

/* AnyValue -> *out (a new reference), as attributes.any_value/_pair decode it. */
static int any_value(Buf b, Ctx *c, int depth, PyObject **out) {
    uint32_t field, wire, which = 0;
    Buf chosen = {0, 0}, s;
    uint64_t scalar = 0;
    while (b.p < b.end) {
        if (tag(&b, &field, &wire) != OK) return PUNT;
        if (field == 1 || field == 5) {  /* string, array: length-delimited */
            if (wire != 2 || delimited(&b, &s) != OK) return PUNT;
            if (field == 5 && which == 5) return PUNT;  /* a repeated message merges */
            which = field;
            chosen = s;
        } else if (field == 2 || field == 3) {  /* bool, int */
            if (wire != 0 || varint(&b, &scalar) != OK) return PUNT;
            which = field;
        } else if (field == 4) {  /* double */
            if (wire != 1 || fixed64(&b, &scalar) != OK) return PUNT;
            which = field;
        } else if (field == 6 || field == 7) {  /* kvlist, bytes */
            return PUNT;
        } else if (skip(&b, wire) != OK) {
            return PUNT;
        }
    }
    switch (which) {
    case 0:
        Py_INCREF(Py_None);
        *out = Py_None;
        return OK;
    case 1:
        if (chosen.end - chosen.p > c->vlim) return PUNT;  /* truncation: Python's */
        return (*out = text(chosen)) ? OK : FAIL;
    case 2:
        *out = PyBool_FromLong(scalar != 0);
        return OK;
    case 3:
        return (*out = PyLong_FromLongLong((long long)scalar)) ? OK : FAIL;
    case 4: {
        double d;
        memcpy(&d, &scalar, 8);
        if (isnan(d)) *out = PyUnicode_FromString("NaN");
        else if (isinf(d)) *out = PyUnicode_FromString(d > 0 ? "Infinity" : "-Infinity");
        else *out = PyFloat_FromDouble(d);
        return *out ? OK : FAIL;
    }
    default: {  /* 5: ArrayValue, field 1 repeated AnyValue */
        if (depth >= MAX_DEPTH) return PUNT;
        PyObject *list = PyList_New(0);
        if (!list) return FAIL;
        Buf a = chosen;
        while (a.p < a.end) {
            if (tag(&a, &field, &wire) != OK) goto punt;
            if (field != 1) {
                if (skip(&a, wire) != OK) goto punt;
                continue;
            }
            PyObject *item;
            int rc;
            if (wire != 2 || delimited(&a, &s) != OK) goto punt;
            if ((rc = any_value(s, c, depth + 1, &item)) != OK) {
                Py_DECREF(list);
                return rc;
            }
            rc = PyList_Append(list, item);
            Py_DECREF(item);
            if (rc < 0) {
                Py_DECREF(list);
                return FAIL;
            }
        }
        *out = list;
        return OK;
    punt:
        Py_DECREF(list);
        return PUNT;
    }
    }
}

/* One encoded KeyValue -> a (key, value) tuple (new reference), through the cache. */
static int pair(Buf kv, Ctx *c, PyObject **out) {
    Py_ssize_t size = kv.end - kv.p;
    PyObject *raw = NULL;
    if (size <= CACHED_SIZE) {
        raw = PyBytes_FromStringAndSize((const char *)kv.p, size);
        if (!raw) return FAIL;
        PyObject *hit = PyDict_GetItemWithError(c->cache, raw);
        if (hit) {
            Py_DECREF(raw);
            Py_INCREF(hit);
            *out = hit;
            return OK;
        }
        if (PyErr_Occurred()) goto fail;
    }
    uint32_t field, wire;
    Buf key = {0, 0}, value = {0, 0}, s;
    int have_value = 0, rc;
    while (kv.p < kv.end) {
        if (tag(&kv, &field, &wire) != OK) goto punt;
        if (field == 1 || field == 2) {
            if (wire != 2 || delimited(&kv, &s) != OK) goto punt;
            if (field == 1) {
                key = s;
            } else {
                if (have_value) goto punt;  /* a repeated message merges */
                value = s;
                have_value = 1;
            }
        } else if (skip(&kv, wire) != OK) {
            goto punt;
        }
    }
    if (key.end - key.p > c->vlim) goto punt;
    PyObject *k = text(key), *v = NULL;
    if (!k) goto fail;
    if (have_value) {
        if ((rc = any_value(value, c, 0, &v)) != OK) {
            Py_DECREF(k);
            Py_XDECREF(raw);
            return rc;
        }
    } else {
        Py_INCREF(Py_None);
        v = Py_None;
    }
    PyObject *t = PyTuple_Pack(2, k, v);
    Py_DECREF(k);
    if (!t) {
        Py_DECREF(v);
        goto fail;
    }
    if (raw && !PyList_Check(v)) {  /* only immutable values are remembered */
        if (PyDict_GET_SIZE(c->cache) >= CACHE_MAX) PyDict_Clear(c->cache);
        if (PyDict_SetItem(c->cache, raw, t) < 0) {
            Py_DECREF(v);
            Py_DECREF(t);
            goto fail;
        }
    }
    Py_DECREF(v);
    Py_XDECREF(raw);
    *out = t;
    return OK;
punt:
    Py_XDECREF(raw);
    return PUNT;
fail:
    Py_XDECREF(raw);
    return FAIL;
}

/* Encoded KeyValues (field ``number`` of ``msg``) -> a dict; more than max_attrs: PUNT. */
static int attributes(Buf msg, uint32_t number, Ctx *c, PyObject **out) {
    uint32_t field, wire;
    Buf s;
    Py_ssize_t count = 0;
    Buf scan = msg;
    while (scan.p < scan.end) {  /* count first: over the limit is Python's rule */
        if (tag(&scan, &field, &wire) != OK) return PUNT;
        if (field == number) {
            if (wire != 2) return PUNT;
            count++;
        }
        if (skip(&scan, wire) != OK) return PUNT;
    }
    if (count > c->max_attrs) return PUNT;
    PyObject *dict = PyDict_New();
    if (!dict) return FAIL;
    while (msg.p < msg.end) {
        if (tag(&msg, &field, &wire) != OK) goto punt;
        if (field != number) {
            if (skip(&msg, wire) != OK) goto punt;
            continue;
        }
        if (delimited(&msg, &s) != OK) goto punt;
        PyObject *kv;
        int rc = pair(s, c, &kv);
        if (rc != OK) {
            Py_DECREF(dict);
            return rc;
        }
        rc = PyDict_SetItem(dict, PyTuple_GET_ITEM(kv, 0), PyTuple_GET_ITEM(kv, 1));
        Py_DECREF(kv);
        if (rc < 0) {
            Py_DECREF(dict);
            return FAIL;
        }
    }
    *out = dict;
    return OK;
punt:
    Py_DECREF(dict);
    return PUNT;
}

/* Bytes no longer than the value limit, as text (over it: Python's truncation rule). */
static int limited_text(Buf s, Ctx *c, PyObject **out) {
    if (s.end - s.p > c->vlim) return PUNT;
    return (*out = text(s)) ? OK : FAIL;
}

static int append_new(PyObject *list, PyObject *item) {
    if (!item) return FAIL;
    int rc = PyList_Append(list, item);
    Py_DECREF(item);
    return rc < 0 ? FAIL : OK;
}

/* Event: (name, time_unix_nano, attrs). */
static int event(Buf b, Ctx *c, PyObject *events) {
    uint32_t field, wire;
    uint64_t time = 0;
    Buf name = {b.p, b.p}, s, whole = b;
    while (b.p < b.end) {
        if (tag(&b, &field, &wire) != OK) return PUNT;
        if (field == 1) {
            if (wire != 1 || fixed64(&b, &time) != OK) return PUNT;
        } else if (field == 2) {
            if (wire != 2 || delimited(&b, &s) != OK) return PUNT;
            name = s;
        } else if (skip(&b, wire) != OK) {
            return PUNT;
        }
    }
    PyObject *n, *attrs;
    int rc;
    if ((rc = limited_text(name, c, &n)) != OK) return rc;
    if ((rc = attributes(whole, 3, c, &attrs)) != OK) {
        Py_DECREF(n);
        return rc;
    }
    return append_new(events, Py_BuildValue("(NKN)", n, (unsigned long long)time, attrs));
}

/* Link: (trace_hex, span_hex, attrs). */
static int span_link(Buf b, Ctx *c, PyObject *links) {
    uint32_t field, wire;
    Buf trace = {b.p, b.p}, span = {b.p, b.p}, s, whole = b;
    while (b.p < b.end) {
        if (tag(&b, &field, &wire) != OK) return PUNT;
        if (field == 1 || field == 2) {
            if (wire != 2 || delimited(&b, &s) != OK) return PUNT;
            if (field == 1) trace = s; else span = s;
        } else if (skip(&b, wire) != OK) {
            return PUNT;
        }
    }
    PyObject *attrs;
    int rc = attributes(whole, 4, c, &attrs);
    if (rc != OK) return rc;
    return append_new(links, Py_BuildValue("(NNN)", hex(trace), hex(span), attrs));
}

/* Span -> appended to ``spans``. A span its ids cannot key is left to Python with its
 * request: Python parses the rest of such a span, and says how many were rejected. */
static int span(Buf b, Ctx *c, PyObject *spans) {
    uint32_t field, wire;
    uint64_t v, start = 0, end = 0, dropped_attrs = 0, dropped_events = 0;
    uint64_t kind = 0, code = 0;
    Buf trace = {b.p, b.p}, sid = {b.p, b.p}, parent = {b.p, b.p}, name = {b.p, b.p};
    Buf message = {b.p, b.p}, status = {b.p, b.p}, s, whole = b;
    int have_status = 0;
    Py_ssize_t n_events = 0;
    while (b.p < b.end) {
        if (tag(&b, &field, &wire) != OK) return PUNT;
        switch (field) {
        case 1: case 2: case 4: case 5: case 9: case 11: case 13: case 15:
            if (wire != 2 || delimited(&b, &s) != OK) return PUNT;
            if (field == 1) trace = s;
            else if (field == 2) sid = s;
            else if (field == 4) parent = s;
            else if (field == 5) name = s;
            else if (field == 11) n_events++;
            else if (field == 15) {
                if (have_status) return PUNT;  /* a repeated message merges */
                status = s;
                have_status = 1;
            }
            break;
        case 6: case 10: case 12:
            if (wire != 0 || varint(&b, &v) != OK) return PUNT;
            if (field == 6) kind = v;
            else if (field == 10) dropped_attrs = v;
            else dropped_events = v;
            break;
        case 7: case 8:
            if (wire != 1 || fixed64(&b, &v) != OK) return PUNT;
            if (field == 7) start = v; else end = v;
            break;
        default:
            if (skip(&b, wire) != OK) return PUNT;
        }
    }
    if (trace.end - trace.p != 16 || sid.end - sid.p != 8 || all_zero(trace) || all_zero(sid))
        return PUNT;
    if (n_events > c->max_events) return PUNT;
    while (status.p < status.end) {  /* Status: 2 message, 3 code */
        if (tag(&status, &field, &wire) != OK) return PUNT;
        if (field == 2) {
            if (wire != 2 || delimited(&status, &s) != OK) return PUNT;
            message = s;
        } else if (field == 3) {
            if (wire != 0 || varint(&status, &code) != OK) return PUNT;
        } else if (skip(&status, wire) != OK) {
            return PUNT;
        }
    }
    PyObject *events = NULL, *links = NULL, *attrs = NULL, *nm = NULL, *msg = NULL, *par;
    int rc;
    if ((rc = limited_text(name, c, &nm)) != OK) return rc;
    if ((rc = limited_text(message, c, &msg)) != OK) goto out;
    if ((rc = attributes(whole, 9, c, &attrs)) != OK) goto out;
    rc = FAIL;
    if (!(events = PyList_New(0)) || !(links = PyList_New(0))) goto out;
    b = whole;
    while (b.p < b.end) {  /* events and links, in wire order (already checked) */
        tag(&b, &field, &wire);
        if (field == 11 || field == 13) {
            delimited(&b, &s);
            if ((rc = (field == 11 ? event(s, c, events) : span_link(s, c, links))) != OK)
                goto out;
        } else {
            skip(&b, wire);
        }
    }
    if (parent.end - parent.p == 8 && !all_zero(parent)) {
        par = hex(parent);
        if (!par) { rc = FAIL; goto out; }
    } else {
        Py_INCREF(Py_None);
        par = Py_None;
    }
    /* enums are int32 and counts uint32 on the wire: truncated as protobuf does */
    rc = append_new(spans, Py_BuildValue(
        "(NNNOiKKiOOkOOk)", hex(trace), hex(sid), par, nm, (int)(int32_t)kind,
        (unsigned long long)start, (unsigned long long)end, (int)(int32_t)code, msg, attrs,
        (unsigned long)(uint32_t)dropped_attrs, events, links,
        (unsigned long)(uint32_t)dropped_events));
out:
    Py_XDECREF(nm);
    Py_XDECREF(msg);
    Py_XDECREF(attrs);
    Py_XDECREF(events);
    Py_XDECREF(links);
    return rc;
}

typedef int (*Child)(Buf, Ctx *, PyObject *);

/* ResourceSpans and ScopeSpans alike: field 1 a singular message (``*head``; repeated,
 * protobuf would merge it: left to Python), field 2 the children, each walked by
 * ``child`` into the new list ``*children``. */
static int holder(Buf b, Ctx *c, Buf *head, Child child, PyObject **children) {
    uint32_t field, wire;
    Buf s, whole = b;
    int have_head = 0, rc;
    head->p = head->end = b.p;
    while (b.p < b.end) {
        if (tag(&b, &field, &wire) != OK) return PUNT;
        if (field == 1 || field == 2) {
            if (wire != 2 || delimited(&b, &s) != OK) return PUNT;
            if (field == 1) {
                if (have_head) return PUNT;
                *head = s;
                have_head = 1;
            }
        } else if (skip(&b, wire) != OK) {
            return PUNT;
        }
    }
    PyObject *list = PyList_New(0);
    if (!list) return FAIL;
    b = whole;
    while (b.p < b.end) {  /* already checked */
        tag(&b, &field, &wire);
        if (field == 2) {
            delimited(&b, &s);
            if ((rc = child(s, c, list)) != OK) {
                Py_DECREF(list);
                return rc;
            }
        } else {
            skip(&b, wire);
        }
    }
    *children = list;
    return OK;
}

/* ScopeSpans -> (scope_name, spans) appended to ``scopes``. */
static int scope_spans(Buf b, Ctx *c, PyObject *scopes) {
    uint32_t field, wire;
    Buf scope, name = {b.p, b.p}, s;
    PyObject *nm, *spans;
    int rc = holder(b, c, &scope, span, &spans);
    if (rc != OK) return rc;
    while (scope.p < scope.end) {  /* InstrumentationScope: 1 name */
        if (tag(&scope, &field, &wire) != OK) goto punt;
        if (field == 1) {
            if (wire != 2 || delimited(&scope, &s) != OK) goto punt;
            name = s;
        } else if (skip(&scope, wire) != OK) {
            goto punt;
        }
    }
    if ((rc = limited_text(name, c, &nm)) != OK) {
        Py_DECREF(spans);
        return rc;
    }
    return append_new(scopes, Py_BuildValue("(NN)", nm, spans));
punt:
    Py_DECREF(spans);
    return PUNT;
}

/* ResourceSpans -> (resource_attrs, scopes) appended to ``out``. */
static int resource_spans(Buf b, Ctx *c, PyObject *out) {
    uint32_t field, wire;
    Buf resource;
    PyObject *attrs, *scopes;
    int rc = holder(b, c, &resource, scope_spans, &scopes);
    if (rc != OK) return rc;
    for (Buf r = resource; r.p < r.end;) {  /* Resource: 1 attributes, 3 entity_refs */
        if (tag(&r, &field, &wire) != OK || field == 3 || skip(&r, wire) != OK) {
            Py_DECREF(scopes);
            return PUNT;
        }
    }
    if ((rc = attributes(resource, 1, c, &attrs)) != OK) {
        Py_DECREF(scopes);
        return rc;
    }
    return append_new(out, Py_BuildValue("(NN)", attrs, scopes));
}

static PyObject *walk(PyObject *self, PyObject *args) {
    Py_buffer data;
    Ctx c;
    if (!PyArg_ParseTuple(args, "y*nnnO!", &data, &c.vlim, &c.max_attrs, &c.max_events,
                          &PyDict_Type, &c.cache))
        return NULL;
    Buf b = {(const uint8_t *)data.buf, (const uint8_t *)data.buf + data.len}, s;
    uint32_t field, wire;
    int rc = OK;
    PyObject *out = PyList_New(0);
    if (!out) {
        PyBuffer_Release(&data);
        return NULL;
    }
    while (rc == OK && b.p < b.end) {
        if (tag(&b, &field, &wire) != OK) {
            rc = PUNT;
        } else if (field == 1) {  /* ExportTraceServiceRequest: 1 resource_spans */
            if (wire != 2 || delimited(&b, &s) != OK) rc = PUNT;
            else rc = resource_spans(s, &c, out);
        } else {
            rc = skip(&b, wire);
        }
    }
    PyBuffer_Release(&data);
    if (rc != OK) {
        Py_DECREF(out);
        if (rc == FAIL) return NULL;
        Py_RETURN_NONE;
    }
    return out;
}

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS,
     "walk(data, vlim, max_attrs, max_events, cache): a request's spans, decoded, or None "
     "when the Python path must decode it (see appliance/ingest/rows.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "appliance.ingest._wire",
    "OTLP/protobuf trace export -> decoded span fields (see appliance/ingest/rows.py).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__wire(void) { return PyModule_Create(&module); }
