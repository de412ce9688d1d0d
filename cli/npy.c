/*
 * .npy reader and writer (float32; bool or uint8 masks are read too).  Format: magic "\x93NUMPY", major, minor, header
 * length (2 bytes in 1.0, 4 bytes in 2.0/3.0, little-endian), then a Python dict literal
 * {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded with spaces and '\n'.
 */
#include "npy.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int fail(char *err, size_t err_size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
    return 1;
}

/* Header text as it may appear in an error message: printable ASCII only, bounded. */
static void printable(char *dst, size_t dst_size, const char *src, size_t n)
{
    size_t j = 0;
    for (size_t i = 0; i < n && j + 1 < dst_size; i++)
        dst[j++] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
    dst[j] = '\0';
}

typedef struct header_parser {
    const char *p, *end;
} header_parser;

static void skip_ws(header_parser *h)
{
    while (h->p < h->end && (*h->p == ' ' || *h->p == '\t' || *h->p == '\n' || *h->p == '\r'))
        h->p++;
}

static int expect_char(header_parser *h, char c)
{
    skip_ws(h);
    if (h->p < h->end && *h->p == c) {
        h->p++;
        return 1;
    }
    return 0;
}

/* A quoted Python string without escapes, copied into out. */
static int parse_string(header_parser *h, char *out, size_t out_size)
{
    skip_ws(h);
    if (h->p >= h->end || (*h->p != '\'' && *h->p != '"')) return 0;
    char quote = *h->p++;
    const char *start = h->p;
    while (h->p < h->end && *h->p != quote) {
        if (*h->p == '\\') return 0;
        h->p++;
    }
    if (h->p >= h->end) return 0;
    printable(out, out_size, start, (size_t)(h->p - start));
    h->p++;
    return 1;
}

static int parse_bool(header_parser *h, int *value)
{
    skip_ws(h);
    size_t left = (size_t)(h->end - h->p);
    if (left >= 4 && memcmp(h->p, "True", 4) == 0) {
        h->p += 4;
        *value = 1;
        return 1;
    }
    if (left >= 5 && memcmp(h->p, "False", 5) == 0) {
        h->p += 5;
        *value = 0;
        return 1;
    }
    return 0;
}

/* "(2, 3)", "(3,)" or "()"; returns 0 on a syntax error, -1 when the rank is too large. */
static int parse_shape(header_parser *h, int *rank, int64_t *shape)
{
    if (!expect_char(h, '(')) return 0;
    *rank = 0;
    for (;;) {
        skip_ws(h);
        if (h->p < h->end && *h->p == ')') {
            h->p++;
            return 1;
        }
        if (h->p >= h->end || *h->p < '0' || *h->p > '9') return 0;
        int64_t v = 0;
        while (h->p < h->end && *h->p >= '0' && *h->p <= '9') {
            int digit = *h->p - '0';
            if (v > (INT64_MAX - digit) / 10) return 0;
            v = v * 10 + digit;
            h->p++;
        }
        /* Python 2 era files may write 3L. */
        if (h->p < h->end && *h->p == 'L') h->p++;
        if (*rank >= PA_NPY_MAX_RANK) return -1;
        shape[(*rank)++] = v;
        skip_ws(h);
        if (h->p < h->end && *h->p == ',') {
            h->p++;
            continue;
        }
        if (h->p < h->end && *h->p == ')') {
            h->p++;
            return 1;
        }
        return 0;
    }
}

static const char *dtype_words(const char *descr)
{
    static const struct {
        const char *descr, *words;
    } known[] = {
        {"<f4", "float32"},
        {"<f8", "float64"},
        {"<f2", "float16"},
        {">f4", "float32 big-endian"},
        {">f8", "float64 big-endian"},
        {"<i4", "int32"},
        {"<i8", "int64"},
        {"<i2", "int16"},
        {"|i1", "int8"},
        {"|u1", "uint8"},
        {"<u2", "uint16"},
        {"<u4", "uint32"},
        {"<u8", "uint64"},
        {"|b1", "bool"},
        {"<c8", "complex64"},
        {"<c16", "complex128"},
        {"<V2", "bfloat16 or void"},
        {"|V2", "bfloat16 or void"},
        {"=f4", "float32 native-endian"},
        {"|f4", "float32 no byte order"},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(known[i].descr, descr) == 0) return known[i].words;
    return "unsupported";
}

/* What a reader accepts: '<f4'; '|b1' or '|u1' (bytes); '<i4' or '<i8' (int32). */
enum { KIND_F32, KIND_U8, KIND_I32 };

/* Fills *wide (the file holds int64) for KIND_I32. */
static int parse_header(const char *text, size_t n, pa_npy_array *out, int kind, int *wide,
                        char *err, size_t err_size)
{
    header_parser h = {text, text + n};
    char key[64], descr[64] = "";
    int have_descr = 0, have_order = 0, have_shape = 0, fortran = 0;
    char shown[96];
    printable(shown, sizeof shown, text, n < 80 ? n : 80);

    if (!expect_char(&h, '{'))
        return fail(err, err_size, "malformed .npy header (expected a dict): '%s'", shown);
    for (;;) {
        if (expect_char(&h, '}')) break;
        if (!parse_string(&h, key, sizeof key) || !expect_char(&h, ':'))
            return fail(err, err_size, "malformed .npy header: '%s'", shown);
        if (strcmp(key, "descr") == 0) {
            skip_ws(&h);
            if (h.p < h.end && *h.p == '[')
                return fail(err, err_size, "dtype is a structured type, expected '<f4' (float32)");
            if (!parse_string(&h, descr, sizeof descr))
                return fail(err, err_size, "malformed .npy header ('descr'): '%s'", shown);
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (!parse_bool(&h, &fortran))
                return fail(err, err_size, "malformed .npy header ('fortran_order'): '%s'", shown);
            have_order = 1;
        } else if (strcmp(key, "shape") == 0) {
            int r = parse_shape(&h, &out->rank, out->shape);
            if (r < 0)
                return fail(err, err_size, "rank above %d is not supported", PA_NPY_MAX_RANK);
            if (r == 0) return fail(err, err_size, "malformed .npy header ('shape'): '%s'", shown);
            have_shape = 1;
        } else {
            return fail(err, err_size, "malformed .npy header (unknown key '%s')", key);
        }
        if (expect_char(&h, ',')) continue;
        if (expect_char(&h, '}')) break;
        return fail(err, err_size, "malformed .npy header: '%s'", shown);
    }
    if (!have_descr || !have_order || !have_shape)
        return fail(err, err_size, "malformed .npy header (missing '%s')",
                    !have_descr   ? "descr"
                    : !have_order ? "fortran_order"
                                  : "shape");
    if (kind == KIND_U8 && strcmp(descr, "|b1") != 0 && strcmp(descr, "|u1") != 0)
        return fail(err, err_size, "dtype is '%s' (%s), expected '|b1' (bool) or '|u1' (uint8)",
                    descr, dtype_words(descr));
    if (kind == KIND_I32 && strcmp(descr, "<i4") != 0 && strcmp(descr, "<i8") != 0)
        return fail(err, err_size, "dtype is '%s' (%s), expected '<i4' (int32) or '<i8' (int64)",
                    descr, dtype_words(descr));
    *wide = kind == KIND_I32 && strcmp(descr, "<i8") == 0;
    if (kind == KIND_F32 && strcmp(descr, "<f4") != 0)
        return fail(err, err_size, "dtype is '%s' (%s), expected '<f4' (float32)", descr,
                    dtype_words(descr));
    if (fortran)
        return fail(err, err_size,
                    "array is in Fortran order, expected C order "
                    "(use numpy.ascontiguousarray)");
    return 0;
}

static uint32_t read_le(const unsigned char *p, int bytes)
{
    uint32_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static int read_npy(const char *path, pa_npy_array *out, int kind, char *err, size_t err_size)
{
    uint64_t esize = kind == KIND_U8 ? 1 : 4;
    int wide = 0;
    memset(out, 0, sizeof *out);
    struct stat st;
    if (stat(path, &st) != 0) return fail(err, err_size, "cannot open: %s", strerror(errno));
    if (!S_ISREG(st.st_mode)) return fail(err, err_size, "not a regular file");
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, err_size, "cannot open: %s", strerror(errno));

    int rc = 1;
    char *header = NULL;
    unsigned char pre[12];
    size_t got = fread(pre, 1, 10, f);
    if (got == 0) {
        fail(err, err_size, "not a .npy file (empty)");
        goto done;
    }
    if (got < 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        fail(err, err_size, "not a .npy file (bad magic)");
        goto done;
    }
    int major = pre[6], minor = pre[7];
    uint64_t header_len, data_offset;
    if (major == 1) {
        header_len = read_le(pre + 8, 2);
        data_offset = 10 + header_len;
    } else if (major == 2 || major == 3) {
        if (fread(pre + 10, 1, 2, f) != 2) {
            fail(err, err_size, "truncated .npy header");
            goto done;
        }
        header_len = read_le(pre + 8, 4);
        data_offset = 12 + header_len;
    } else {
        fail(err, err_size, ".npy format version %d.%d is not supported (1.0, 2.0, 3.0)", major,
             minor);
        goto done;
    }
    if (data_offset > (uint64_t)st.st_size) {
        fail(err, err_size, "truncated .npy header (%llu bytes announced, file has %lld)",
             (unsigned long long)header_len, (long long)st.st_size);
        goto done;
    }
    header = malloc(header_len + 1);
    if (!header || fread(header, 1, header_len, f) != header_len) {
        fail(err, err_size, header ? "cannot read the .npy header" : "out of host memory");
        goto done;
    }
    header[header_len] = '\0';
    if (parse_header(header, header_len, out, kind, &wide, err, err_size) != 0) goto done;
    if (wide) esize = 8;

    uint64_t count = 1;
    for (int i = 0; i < out->rank; i++) {
        uint64_t d = (uint64_t)out->shape[i];
        if (d != 0 && count > UINT64_MAX / 8 / d) { /* 8: room for an int64 copy */
            fail(err, err_size, "shape is too large");
            goto done;
        }
        count *= d;
    }
    out->count = count;
    uint64_t want = data_offset + count * esize;
    if ((uint64_t)st.st_size != want) {
        fail(err, err_size, "file is %lld bytes but header and shape need %llu (%s)",
             (long long)st.st_size, (unsigned long long)want,
             (uint64_t)st.st_size < want ? "truncated" : "trailing bytes");
        goto done;
    }
    void *dst = malloc(count ? count * esize : esize);
    if (kind == KIND_U8) out->bytes = dst;
    else if (kind == KIND_I32) out->ints = dst;
    else out->data = dst;
    if (!dst) {
        fail(err, err_size, "out of host memory (%llu elements)", (unsigned long long)count);
        goto done;
    }
    if (count && fread(dst, esize, count, f) != count) {
        fail(err, err_size, "read error: %s", strerror(errno));
        goto done;
    }
    /* The data are little-endian; swap on a big-endian host. */
    {
        const uint16_t one = 1;
        if (kind != KIND_U8 && *(const unsigned char *)&one == 0) {
            for (uint64_t i = 0; i < count; i++) {
                unsigned char *b = (unsigned char *)dst + i * esize, t;
                for (uint64_t k = 0; k < esize / 2; k++)
                    t = b[k], b[k] = b[esize - 1 - k], b[esize - 1 - k] = t;
            }
        }
    }
    /* int64 files narrow to int32 in place; a value beyond int32 is refused. */
    if (wide) {
        const int64_t *w = dst;
        for (uint64_t i = 0; i < count; i++) {
            if (w[i] < INT32_MIN || w[i] > INT32_MAX) {
                fail(err, err_size, "element %llu is %lld, beyond int32", (unsigned long long)i,
                     (long long)w[i]);
                goto done;
            }
            out->ints[i] = (int32_t)w[i];
        }
    }
    rc = 0;
done:
    free(header);
    fclose(f);
    if (rc != 0) pa_npy_free(out);
    return rc;
}

int pa_npy_read_f32(const char *path, pa_npy_array *out, char *err, size_t err_size)
{
    return read_npy(path, out, KIND_F32, err, err_size);
}

int pa_npy_read_u8(const char *path, pa_npy_array *out, char *err, size_t err_size)
{
    return read_npy(path, out, KIND_U8, err, err_size);
}

int pa_npy_read_i32(const char *path, pa_npy_array *out, char *err, size_t err_size)
{
    return read_npy(path, out, KIND_I32, err, err_size);
}

void pa_npy_free(pa_npy_array *array)
{
    free(array->data);
    free(array->bytes);
    free(array->ints);
    array->data = NULL;
    array->bytes = NULL;
    array->ints = NULL;
    array->count = 0;
}

int pa_npy_write_f32(FILE *file, const float *data, int rank, const int64_t *shape)
{
    if (rank < 0 || rank > PA_NPY_MAX_RANK) return 1;
    char dict[256];
    int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    uint64_t count = 1;
    for (int i = 0; i < rank; i++) {
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%lld,%s", (long long)shape[i],
                      (rank > 1 && i + 1 < rank) ? " " : "");
        count *= (uint64_t)shape[i];
    }
    /* Python writes "(3,)" for rank 1 and "(2, 3)" otherwise. */
    if (rank > 1) n--; /* drop the trailing comma */
    n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
    /* magic(6) + version(2) + length(2) + dict + padding + '\n' is a multiple of 64. */
    size_t total = 10 + (size_t)n + 1;
    size_t pad = (64 - total % 64) % 64;
    size_t header_len = (size_t)n + pad + 1;
    unsigned char pre[10] = {0x93,
                             'N',
                             'U',
                             'M',
                             'P',
                             'Y',
                             1,
                             0,
                             (unsigned char)(header_len & 0xff),
                             (unsigned char)(header_len >> 8)};
    if (fwrite(pre, 1, 10, file) != 10 || fwrite(dict, 1, (size_t)n, file) != (size_t)n) return 1;
    for (size_t i = 0; i < pad; i++)
        if (fputc(' ', file) == EOF) return 1;
    if (fputc('\n', file) == EOF) return 1;
    const uint16_t one = 1;
    if (*(const unsigned char *)&one == 1) {
        if (count && fwrite(data, 4, count, file) != count) return 1;
    } else {
        for (uint64_t i = 0; i < count; i++) {
            unsigned char b[4];
            memcpy(b, &data[i], 4);
            unsigned char s[4] = {b[3], b[2], b[1], b[0]};
            if (fwrite(s, 1, 4, file) != 4) return 1;
        }
    }
    return 0;
}
