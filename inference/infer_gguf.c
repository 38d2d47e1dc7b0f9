/*
 * infer_gguf.c: the GGUF v3 reader (also reads v2, whose layout is the same).
 *
 * Layout: magic "GGUF", u32 version, u64 n_tensors, u64 n_kv, then n_kv
 * key/value pairs, then n_tensors tensor infos, then padding to the
 * alignment (general.alignment, default 32), then the data section. Every
 * integer is little-endian and may sit at any byte offset.
 *
 * The whole file is validated at open time, with overflow-safe arithmetic,
 * so that accessors never need to re-check: counts are bounded by the bytes
 * left before anything is allocated, strings and arrays by the bytes left,
 * tensor shapes by int64 products, data ranges by the file size, tensor
 * offsets by the alignment; names must be unique and ranges disjoint.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "infer_internal.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF reader assumes a little-endian host"
#endif

#define GGUF_MAGIC             0x46554747u /* "GGUF" read as a little-endian u32 */
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DEPTH         4   /* nested arrays beyond this are rejected */
#define GGUF_MAX_NAME          256 /* longest tensor name accepted, bytes */

/* ---- tensor types ------------------------------------------------------- */

struct type_info {
    const char *name;
    int block;   /* elements per block */
    size_t size; /* bytes per block */
};

static const struct type_info type_table[INFER_TYPE_COUNT] = {
    [INFER_TYPE_F32] = {"F32", 1, 4},
    [INFER_TYPE_F16] = {"F16", 1, 2},
    [INFER_TYPE_Q4_0] = {"Q4_0", 32, 18},
    [INFER_TYPE_Q4_1] = {"Q4_1", 32, 20},
    [INFER_TYPE_Q5_0] = {"Q5_0", 32, 22},
    [INFER_TYPE_Q5_1] = {"Q5_1", 32, 24},
    [INFER_TYPE_Q8_0] = {"Q8_0", 32, 34},
    [INFER_TYPE_Q8_1] = {"Q8_1", 32, 36},
    [INFER_TYPE_Q2_K] = {"Q2_K", 256, 84},
    [INFER_TYPE_Q3_K] = {"Q3_K", 256, 110},
    [INFER_TYPE_Q4_K] = {"Q4_K", 256, 144},
    [INFER_TYPE_Q5_K] = {"Q5_K", 256, 176},
    [INFER_TYPE_Q6_K] = {"Q6_K", 256, 210},
    [INFER_TYPE_Q8_K] = {"Q8_K", 256, 292},
    [INFER_TYPE_I8] = {"I8", 1, 1},
    [INFER_TYPE_I16] = {"I16", 1, 2},
    [INFER_TYPE_I32] = {"I32", 1, 4},
    [INFER_TYPE_I64] = {"I64", 1, 8},
    [INFER_TYPE_F64] = {"F64", 1, 8},
    [INFER_TYPE_BF16] = {"BF16", 1, 2},
};

const char *infer_type_name(uint32_t type)
{
    return type < INFER_TYPE_COUNT ? type_table[type].name : NULL;
}

int infer_type_block(uint32_t type)
{
    return type < INFER_TYPE_COUNT ? type_table[type].block : 0;
}

size_t infer_type_size(uint32_t type)
{
    return type < INFER_TYPE_COUNT ? type_table[type].size : 0;
}

/* ---- errors and logging ------------------------------------------------- */

const char *infer_strerror(int status)
{
    switch (status) {
    case INFER_OK:
        return "success";
    case INFER_ERR_IO:
        return "cannot read file";
    case INFER_ERR_FORMAT:
        return "malformed file";
    case INFER_ERR_UNSUPPORTED:
        return "unsupported";
    case INFER_ERR_NOMEM:
        return "out of memory";
    case INFER_ERR_ARG:
        return "bad argument";
    case INFER_ERR_BUSY:
        return "busy";
    case INFER_ERR_CANCELLED:
        return "cancelled";
    case INFER_ERR_TOO_LONG:
        return "prompt too long for the context";
    default:
        return "unknown error";
    }
}

int infer_err_set(struct infer_err *err, int status, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return status;
}

static infer_log_fn log_fn;
static void *log_user;
static enum infer_log_level log_max = INFER_LOG_WARN;

void infer_log_set(infer_log_fn fn, void *user, enum infer_log_level max)
{
    log_fn = fn;
    log_user = user;
    log_max = max;
}

void infer_log(enum infer_log_level level, const char *fmt, ...)
{
    if (log_fn == NULL || level > log_max)
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    log_fn(level, buf, log_user);
}

/* ---- the parsed file ---------------------------------------------------- */

struct gguf_kv {
    char *key;
    uint32_t type; /* enum infer_gguf_type */
    union {
        uint64_t u; /* U8..U64, BOOL */
        int64_t i;  /* I8..I64 */
        double f;   /* F32, F64 */
    } v;
    char *str; /* STRING: NUL-terminated copy */
    /* ARRAY */
    uint32_t arr_type;
    uint64_t arr_n;
    const uint8_t *arr_data; /* numeric elements, in the file */
    char *arr_blob;          /* string elements, each NUL-terminated */
    uint64_t *arr_off;       /* (arr_n + 1) offsets into arr_blob */
};

struct infer_gguf {
    const uint8_t *base; /* the file's bytes */
    size_t size;
    bool mapped; /* base is our mmap */
    uint32_t version;
    uint32_t alignment;
    int64_t n_kv;
    struct gguf_kv *kv; /* (n_kv) */
    int64_t n_tensors;
    struct infer_gguf_tensor *tensors;        /* (n_tensors) file order */
    const struct infer_gguf_tensor **by_name; /* (n_tensors) sorted */
    uint64_t data_off;                        /* start of the data section */
};

/* A bounds-checked reading position. */
struct cursor {
    const uint8_t *p;
    size_t size;
    size_t pos;
};

static size_t cur_left(const struct cursor *c)
{
    return c->size - c->pos;
}

static bool cur_read(struct cursor *c, void *dst, size_t n)
{
    if (n > cur_left(c))
        return false;
    memcpy(dst, c->p + c->pos, n);
    c->pos += n;
    return true;
}

static bool cur_u32(struct cursor *c, uint32_t *v)
{
    return cur_read(c, v, 4);
}

static bool cur_u64(struct cursor *c, uint64_t *v)
{
    return cur_read(c, v, 8);
}

/* A printable, shortened copy of an untrusted name for messages. */
static const char *safe_name(const char *s, char *buf, size_t cap)
{
    size_t n = 0;
    for (; s[n] != '\0' && n + 4 < cap && n < 60; n++) {
        unsigned char ch = (unsigned char)s[n];
        buf[n] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    if (s[n] != '\0') {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

/* Size in bytes of a scalar value type; 0 for STRING, ARRAY or unknown. */
static size_t scalar_size(uint32_t t)
{
    switch (t) {
    case INFER_GGUF_U8:
    case INFER_GGUF_I8:
    case INFER_GGUF_BOOL:
        return 1;
    case INFER_GGUF_U16:
    case INFER_GGUF_I16:
        return 2;
    case INFER_GGUF_U32:
    case INFER_GGUF_I32:
    case INFER_GGUF_F32:
        return 4;
    case INFER_GGUF_U64:
    case INFER_GGUF_I64:
    case INFER_GGUF_F64:
        return 8;
    default:
        return 0;
    }
}

/* Decodes one scalar of type t at p into kv->v. */
static void scalar_decode(uint32_t t, const uint8_t *p, struct gguf_kv *kv)
{
    switch (t) {
    case INFER_GGUF_U8:
    case INFER_GGUF_BOOL:
        kv->v.u = p[0];
        break;
    case INFER_GGUF_I8:
        kv->v.i = (int8_t)p[0];
        break;
    case INFER_GGUF_U16: {
        uint16_t x;
        memcpy(&x, p, 2);
        kv->v.u = x;
        break;
    }
    case INFER_GGUF_I16: {
        int16_t x;
        memcpy(&x, p, 2);
        kv->v.i = x;
        break;
    }
    case INFER_GGUF_U32: {
        uint32_t x;
        memcpy(&x, p, 4);
        kv->v.u = x;
        break;
    }
    case INFER_GGUF_I32: {
        int32_t x;
        memcpy(&x, p, 4);
        kv->v.i = x;
        break;
    }
    case INFER_GGUF_F32: {
        float x;
        memcpy(&x, p, 4);
        kv->v.f = x;
        break;
    }
    case INFER_GGUF_U64:
        memcpy(&kv->v.u, p, 8);
        break;
    case INFER_GGUF_I64:
        memcpy(&kv->v.i, p, 8);
        break;
    case INFER_GGUF_F64:
        memcpy(&kv->v.f, p, 8);
        break;
    default:
        break;
    }
}

static int scalar_i64(uint32_t t, const struct gguf_kv *kv, int64_t *out)
{
    switch (t) {
    case INFER_GGUF_U8:
    case INFER_GGUF_U16:
    case INFER_GGUF_U32:
    case INFER_GGUF_BOOL:
        *out = (int64_t)kv->v.u;
        return INFER_OK;
    case INFER_GGUF_U64:
        if (kv->v.u > (uint64_t)INT64_MAX)
            return INFER_ERR_FORMAT;
        *out = (int64_t)kv->v.u;
        return INFER_OK;
    case INFER_GGUF_I8:
    case INFER_GGUF_I16:
    case INFER_GGUF_I32:
    case INFER_GGUF_I64:
        *out = kv->v.i;
        return INFER_OK;
    default:
        return INFER_ERR_FORMAT;
    }
}

static int scalar_f64(uint32_t t, const struct gguf_kv *kv, double *out)
{
    if (t == INFER_GGUF_F32 || t == INFER_GGUF_F64) {
        *out = kv->v.f;
        return INFER_OK;
    }
    if (t == INFER_GGUF_U64) {
        *out = (double)kv->v.u;
        return INFER_OK;
    }
    int64_t i;
    if (scalar_i64(t, kv, &i) != INFER_OK)
        return INFER_ERR_FORMAT;
    *out = (double)i;
    return INFER_OK;
}

/* Reads a GGUF string (u64 length + bytes) into a new NUL-terminated copy. */
static int read_string(struct cursor *c, char **out, size_t *len,
                       const char *what, struct infer_err *err)
{
    uint64_t n;
    if (!cur_u64(c, &n))
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "gguf: file ends inside the length of %s", what);
    if (n > cur_left(c))
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "gguf: %s of %llu bytes runs past end of file",
                             what, (unsigned long long)n);
    char *s = malloc((size_t)n + 1);
    if (s == NULL)
        return infer_err_set(err, INFER_ERR_NOMEM, "gguf: out of memory");
    cur_read(c, s, (size_t)n);
    s[n] = '\0';
    *out = s;
    if (len != NULL)
        *len = (size_t)n;
    return INFER_OK;
}

/* Skips an array body of element type t and n elements (for nested arrays,
 * which nothing reads but which must still be well-formed). */
static int skip_array(struct cursor *c, uint32_t t, uint64_t n, int depth,
                      const char *key, struct infer_err *err)
{
    char nb[72];
    if (depth > GGUF_MAX_DEPTH)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "gguf: key '%s' nests arrays too deeply",
                             safe_name(key, nb, sizeof(nb)));
    size_t es = scalar_size(t);
    if (es > 0) {
        if (n > cur_left(c) / es)
            return infer_err_set(err, INFER_ERR_FORMAT,
                                 "gguf: key '%s': array of %llu elements "
                                 "runs past end of file",
                                 safe_name(key, nb, sizeof(nb)),
                                 (unsigned long long)n);
        c->pos += (size_t)(n * es);
        return INFER_OK;
    }
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len;
        if (t == INFER_GGUF_STRING) {
            if (!cur_u64(c, &len) || len > cur_left(c))
                return infer_err_set(err, INFER_ERR_FORMAT,
                                     "gguf: key '%s': string %llu runs past "
                                     "end of file",
                                     safe_name(key, nb, sizeof(nb)),
                                     (unsigned long long)i);
            c->pos += (size_t)len;
        } else if (t == INFER_GGUF_ARRAY) {
            uint32_t it;
            if (!cur_u32(c, &it) || !cur_u64(c, &len))
                return infer_err_set(err, INFER_ERR_FORMAT,
                                     "gguf: key '%s': nested array header "
                                     "runs past end of file",
                                     safe_name(key, nb, sizeof(nb)));
            int st = skip_array(c, it, len, depth + 1, key, err);
            if (st != INFER_OK)
                return st;
        } else {
            return infer_err_set(err, INFER_ERR_FORMAT,
                                 "gguf: key '%s': bad array element type %u",
                                 safe_name(key, nb, sizeof(nb)), t);
        }
    }
    return INFER_OK;
}

/* Reads a string array's elements into one blob plus offsets. */
static int read_string_array(struct cursor *c, struct gguf_kv *kv,
                             struct infer_err *err)
{
    char nb[72];
    uint64_t n = kv->arr_n;
    /* Each element needs at least its 8-byte length. */
    if (n > cur_left(c) / 8)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "gguf: key '%s': array of %llu strings runs "
                             "past end of file",
                             safe_name(kv->key, nb, sizeof(nb)),
                             (unsigned long long)n);
    /* First pass: validate lengths and total the bytes. */
    size_t start = c->pos;
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len;
        if (!cur_u64(c, &len) || len > cur_left(c))
            return infer_err_set(err, INFER_ERR_FORMAT,
                                 "gguf: key '%s': string %llu runs past end "
                                 "of file",
                                 safe_name(kv->key, nb, sizeof(nb)),
                                 (unsigned long long)i);
        c->pos += (size_t)len;
        total += len + 1; /* cannot overflow: bounded by the file size */
    }
    kv->arr_off = malloc((size_t)(n + 1) * sizeof(uint64_t));
    kv->arr_blob = malloc((size_t)total + 1);
    if (kv->arr_off == NULL || kv->arr_blob == NULL)
        return infer_err_set(err, INFER_ERR_NOMEM, "gguf: out of memory");
    /* Second pass: copy. */
    c->pos = start;
    uint64_t o = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len = 0;
        cur_u64(c, &len);
        kv->arr_off[i] = o;
        cur_read(c, kv->arr_blob + o, (size_t)len);
        kv->arr_blob[o + len] = '\0';
        o += len + 1;
    }
    kv->arr_off[n] = o;
    return INFER_OK;
}

static int read_value(struct cursor *c, struct gguf_kv *kv,
                      struct infer_err *err)
{
    char nb[72];
    if (kv->type == INFER_GGUF_STRING) {
        char what[96];
        snprintf(what, sizeof(what), "value of key '%s'",
                 safe_name(kv->key, nb, sizeof(nb)));
        return read_string(c, &kv->str, NULL, what, err);
    }
    if (kv->type == INFER_GGUF_ARRAY) {
        if (!cur_u32(c, &kv->arr_type) || !cur_u64(c, &kv->arr_n))
            return infer_err_set(err, INFER_ERR_FORMAT,
                                 "gguf: key '%s': array header runs past "
                                 "end of file",
                                 safe_name(kv->key, nb, sizeof(nb)));
        if (kv->arr_type == INFER_GGUF_STRING)
            return read_string_array(c, kv, err);
        if (kv->arr_type == INFER_GGUF_ARRAY)
            return skip_array(c, kv->arr_type, kv->arr_n, 1, kv->key, err);
        size_t es = scalar_size(kv->arr_type);
        if (es == 0)
            return infer_err_set(err, INFER_ERR_FORMAT,
                                 "gguf: key '%s': bad array element type %u",
                                 safe_name(kv->key, nb, sizeof(nb)),
                                 kv->arr_type);
        kv->arr_data = c->p + c->pos;
        return skip_array(c, kv->arr_type, kv->arr_n, 1, kv->key, err);
    }
    size_t es = scalar_size(kv->type);
    if (es == 0)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "gguf: key '%s' has bad value type %u",
                             safe_name(kv->key, nb, sizeof(nb)), kv->type);
    if (es > cur_left(c))
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "gguf: value of key '%s' runs past end of file",
                             safe_name(kv->key, nb, sizeof(nb)));
    scalar_decode(kv->type, c->p + c->pos, kv);
    c->pos += es;
    return INFER_OK;
}

static int cmp_kv_ptr(const void *a, const void *b)
{
    const struct gguf_kv *x = *(const struct gguf_kv *const *)a;
    const struct gguf_kv *y = *(const struct gguf_kv *const *)b;
    return strcmp(x->key, y->key);
}

static int read_kvs(struct cursor *c, struct infer_gguf *g, uint64_t n,
                    struct infer_err *err)
{
    /* The smallest pair is an empty key (8), a type (4) and a u8 (1). */
    if (n > cur_left(c) / 13)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "gguf: %llu metadata keys cannot fit in the "
                             "file",
                             (unsigned long long)n);
    g->kv = calloc((size_t)n + 1, sizeof(*g->kv));
    if (g->kv == NULL)
        return infer_err_set(err, INFER_ERR_NOMEM, "gguf: out of memory");
    for (uint64_t i = 0; i < n; i++) {
        struct gguf_kv *kv = &g->kv[i];
        char what[48];
        snprintf(what, sizeof(what), "key %llu", (unsigned long long)i);
        int st = read_string(c, &kv->key, NULL, what, err);
        if (st != INFER_OK)
            return st;
        g->n_kv = (int64_t)i + 1; /* kv[i] now owns memory to free */
        char nb[72];
        if (!cur_u32(c, &kv->type))
            return infer_err_set(err, INFER_ERR_FORMAT,
                                 "gguf: type of key '%s' runs past end of "
                                 "file",
                                 safe_name(kv->key, nb, sizeof(nb)));
        st = read_value(c, kv, err);
        if (st != INFER_OK)
            return st;
    }
    /* Duplicate keys make lookups ambiguous: reject them. */
    if (n > 1) {
        const struct gguf_kv **s = malloc((size_t)n * sizeof(*s));
        if (s == NULL)
            return infer_err_set(err, INFER_ERR_NOMEM, "gguf: out of memory");
        for (uint64_t i = 0; i < n; i++)
            s[i] = &g->kv[i];
        qsort(s, (size_t)n, sizeof(*s), cmp_kv_ptr);
        for (uint64_t i = 1; i < n; i++) {
            if (strcmp(s[i - 1]->key, s[i]->key) == 0) {
                char nb[72];
                infer_err_set(err, INFER_ERR_FORMAT, "gguf: duplicate key '%s'",
                              safe_name(s[i]->key, nb, sizeof(nb)));
                free(s);
                return INFER_ERR_FORMAT;
            }
        }
        free(s);
    }
    return INFER_OK;
}

static int read_alignment(struct infer_gguf *g, struct infer_err *err)
{
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t k = infer_gguf_find_key(g, "general.alignment");
    if (k < 0)
        return INFER_OK;
    if (g->kv[k].type != INFER_GGUF_U32)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "gguf: general.alignment is not a u32");
    uint64_t a = g->kv[k].v.u;
    if (a == 0 || (a & (a - 1)) != 0 || a > (1u << 24))
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "gguf: general.alignment %llu is not a power "
                             "of two up to 16 MiB",
                             (unsigned long long)a);
    g->alignment = (uint32_t)a;
    return INFER_OK;
}

/* Reads one tensor info and checks its shape and type (not its range). */
static int read_tensor_info(struct cursor *c, struct infer_gguf_tensor *t,
                            uint64_t i, struct infer_err *err)
{
    char what[48], nb[72];
    snprintf(what, sizeof(what), "name of tensor %llu", (unsigned long long)i);
    size_t len = 0;
    char *name = NULL;
    int st = read_string(c, &name, &len, what, err);
    if (st != INFER_OK)
        return st;
    t->name = name;
    if (len == 0 || len > GGUF_MAX_NAME || strlen(name) != len)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "gguf: tensor %llu has a bad name (length %zu)",
                             (unsigned long long)i, len);
    const char *tn = safe_name(name, nb, sizeof(nb));
    uint32_t nd;
    if (!cur_u32(c, &nd))
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "gguf: tensor '%s' info runs past end of file",
                             tn);
    if (nd < 1 || nd > 4)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "gguf: tensor '%s' has %u dimensions (1 to 4 "
                             "allowed)",
                             tn, nd);
    t->n_dims = (int)nd;
    int64_t nel = 1;
    for (int d = 0; d < 4; d++) {
        uint64_t ne = 1;
        if (d < (int)nd && !cur_u64(c, &ne))
            return infer_err_set(err, INFER_ERR_FORMAT,
                                 "gguf: tensor '%s' info runs past end of "
                                 "file",
                                 tn);
        if (ne == 0 || ne > (uint64_t)INT64_MAX ||
            __builtin_mul_overflow(nel, (int64_t)ne, &nel))
            return infer_err_set(err, INFER_ERR_FORMAT,
                                 "gguf: tensor '%s' has a bad dimension %llu",
                                 tn, (unsigned long long)ne);
        t->ne[d] = (int64_t)ne;
    }
    if (!cur_u32(c, &t->type) || !cur_u64(c, &t->offset))
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "gguf: tensor '%s' info runs past end of file",
                             tn);
    int blk = infer_type_block(t->type);
    if (blk == 0)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "gguf: tensor '%s' has unknown type %u", tn,
                             t->type);
    if (t->ne[0] % blk != 0)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "gguf: tensor '%s': row of %lld elements is not "
                             "a multiple of the %s block (%d)",
                             tn, (long long)t->ne[0], infer_type_name(t->type),
                             blk);
    uint64_t nb_bytes;
    if (__builtin_mul_overflow((uint64_t)(nel / blk),
                               (uint64_t)infer_type_size(t->type), &nb_bytes))
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "gguf: tensor '%s' is too large", tn);
    t->nbytes = nb_bytes;
    return INFER_OK;
}

static int cmp_tensor_name(const void *a, const void *b)
{
    const struct infer_gguf_tensor *x =
        *(const struct infer_gguf_tensor *const *)a;
    const struct infer_gguf_tensor *y =
        *(const struct infer_gguf_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int cmp_tensor_offset(const void *a, const void *b)
{
    const struct infer_gguf_tensor *x =
        *(const struct infer_gguf_tensor *const *)a;
    const struct infer_gguf_tensor *y =
        *(const struct infer_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Names unique, ranges disjoint; leaves g->by_name sorted by name. */
static int check_tensor_set(struct infer_gguf *g, struct infer_err *err)
{
    size_t n = (size_t)g->n_tensors;
    char nb[72], nb2[72];
    for (size_t i = 0; i < n; i++)
        g->by_name[i] = &g->tensors[i];
    qsort(g->by_name, n, sizeof(*g->by_name), cmp_tensor_offset);
    for (size_t i = 1; i < n; i++) {
        const struct infer_gguf_tensor *a = g->by_name[i - 1];
        const struct infer_gguf_tensor *b = g->by_name[i];
        if (a->offset + a->nbytes > b->offset)
            return infer_err_set(err, INFER_ERR_FORMAT,
                                 "gguf: data of tensors '%s' and '%s' overlap",
                                 safe_name(a->name, nb, sizeof(nb)),
                                 safe_name(b->name, nb2, sizeof(nb2)));
    }
    qsort(g->by_name, n, sizeof(*g->by_name), cmp_tensor_name);
    for (size_t i = 1; i < n; i++)
        if (strcmp(g->by_name[i - 1]->name, g->by_name[i]->name) == 0)
            return infer_err_set(
                err, INFER_ERR_FORMAT, "gguf: duplicate tensor '%s'",
                safe_name(g->by_name[i]->name, nb, sizeof(nb)));
    return INFER_OK;
}

static int read_tensors(struct cursor *c, struct infer_gguf *g, uint64_t n,
                        struct infer_err *err)
{
    /* Smallest info: name (8+1), n_dims (4), one dim (8), type, offset. */
    if (n > cur_left(c) / 33)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "gguf: %llu tensors cannot fit in the file",
                             (unsigned long long)n);
    g->tensors = calloc((size_t)n + 1, sizeof(*g->tensors));
    g->by_name = calloc((size_t)n + 1, sizeof(*g->by_name));
    if (g->tensors == NULL || g->by_name == NULL)
        return infer_err_set(err, INFER_ERR_NOMEM, "gguf: out of memory");
    for (uint64_t i = 0; i < n; i++) {
        g->n_tensors = (int64_t)i + 1;
        int st = read_tensor_info(c, &g->tensors[i], i, err);
        if (st != INFER_OK)
            return st;
    }
    /* The data section starts at the next multiple of the alignment. */
    uint64_t a = g->alignment;
    uint64_t off = ((uint64_t)c->pos + a - 1) / a * a;
    if (n > 0 && off > g->size)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "gguf: data section starts past end of file");
    g->data_off = off;
    uint64_t room = n > 0 ? g->size - off : 0;
    for (uint64_t i = 0; i < n; i++) {
        struct infer_gguf_tensor *t = &g->tensors[i];
        char nb[72];
        if (t->offset % a != 0)
            return infer_err_set(err, INFER_ERR_FORMAT,
                                 "gguf: tensor '%s' data offset %llu is not "
                                 "aligned to %llu",
                                 safe_name(t->name, nb, sizeof(nb)),
                                 (unsigned long long)t->offset,
                                 (unsigned long long)a);
        if (t->offset > room || t->nbytes > room - t->offset)
            return infer_err_set(err, INFER_ERR_FORMAT,
                                 "gguf: tensor '%s' data runs past end of "
                                 "file",
                                 safe_name(t->name, nb, sizeof(nb)));
        t->data = g->base + off + t->offset;
    }
    return check_tensor_set(g, err);
}

static int parse(struct infer_gguf *g, struct infer_err *err)
{
    struct cursor c = {g->base, g->size, 0};
    uint32_t magic;
    uint64_t n_tensors, n_kv;
    if (!cur_u32(&c, &magic) || magic != GGUF_MAGIC)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "gguf: not a GGUF file (bad magic)");
    if (!cur_u32(&c, &g->version))
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "gguf: file ends inside the header");
    if (g->version == 0x03000000u || g->version == 0x02000000u)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "gguf: big-endian files are not supported");
    if (g->version != 2 && g->version != 3)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "gguf: version %u is not supported (2 or 3)",
                             g->version);
    if (!cur_u64(&c, &n_tensors) || !cur_u64(&c, &n_kv))
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "gguf: file ends inside the header");
    int st = read_kvs(&c, g, n_kv, err);
    if (st == INFER_OK)
        st = read_alignment(g, err);
    if (st == INFER_OK)
        st = read_tensors(&c, g, n_tensors, err);
    return st;
}

static int open_common(struct infer_gguf *g, struct infer_gguf **out,
                       struct infer_err *err)
{
    int st = parse(g, err);
    if (st != INFER_OK) {
        infer_gguf_free(g);
        return st;
    }
    *out = g;
    return INFER_OK;
}

int infer_gguf_open_mem(const void *data, size_t size, struct infer_gguf **out,
                        struct infer_err *err)
{
    if (out == NULL)
        return infer_err_set(err, INFER_ERR_ARG, "gguf: no output pointer");
    *out = NULL;
    if (data == NULL && size > 0)
        return infer_err_set(err, INFER_ERR_ARG, "gguf: no data");
    struct infer_gguf *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return infer_err_set(err, INFER_ERR_NOMEM, "gguf: out of memory");
    static const uint8_t empty[1];
    g->base = data != NULL ? data : empty;
    g->size = size;
    return open_common(g, out, err);
}

int infer_gguf_open(const char *path, struct infer_gguf **out,
                    struct infer_err *err)
{
    if (out == NULL || path == NULL)
        return infer_err_set(err, INFER_ERR_ARG, "gguf: bad arguments");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return infer_err_set(err, INFER_ERR_IO, "gguf: cannot open %s: %s",
                             path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return infer_err_set(err, INFER_ERR_IO,
                             "gguf: %s is not a regular file", path);
    }
    if (sb.st_size < 24) {
        close(fd);
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "gguf: %s is too small for a GGUF header", path);
    }
    void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED)
        return infer_err_set(err, INFER_ERR_IO, "gguf: cannot map %s: %s", path,
                             strerror(e));
    struct infer_gguf *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        munmap(p, (size_t)sb.st_size);
        return infer_err_set(err, INFER_ERR_NOMEM, "gguf: out of memory");
    }
    g->base = p;
    g->size = (size_t)sb.st_size;
    g->mapped = true;
    return open_common(g, out, err);
}

void infer_gguf_free(struct infer_gguf *g)
{
    if (g == NULL)
        return;
    for (int64_t i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].str);
        free(g->kv[i].arr_blob);
        free(g->kv[i].arr_off);
    }
    free(g->kv);
    for (int64_t i = 0; i < g->n_tensors; i++)
        free((char *)g->tensors[i].name);
    free(g->tensors);
    free(g->by_name);
    if (g->mapped)
        munmap((void *)g->base, g->size);
    free(g);
}

/* ---- accessors ---------------------------------------------------------- */

uint32_t infer_gguf_version(const struct infer_gguf *g)
{
    return g->version;
}

uint32_t infer_gguf_alignment(const struct infer_gguf *g)
{
    return g->alignment;
}

const void *infer_gguf_data(const struct infer_gguf *g, size_t *size)
{
    if (size != NULL)
        *size = g->size;
    return g->base;
}

int64_t infer_gguf_n_keys(const struct infer_gguf *g)
{
    return g->n_kv;
}

const char *infer_gguf_key_name(const struct infer_gguf *g, int64_t key)
{
    return key >= 0 && key < g->n_kv ? g->kv[key].key : NULL;
}

int64_t infer_gguf_find_key(const struct infer_gguf *g, const char *key)
{
    if (g == NULL || key == NULL)
        return -1;
    for (int64_t i = 0; i < g->n_kv; i++)
        if (strcmp(g->kv[i].key, key) == 0)
            return i;
    return -1;
}

enum infer_gguf_type infer_gguf_key_type(const struct infer_gguf *g,
                                         int64_t key)
{
    if (key < 0 || key >= g->n_kv)
        return (enum infer_gguf_type) - 1;
    return (enum infer_gguf_type)g->kv[key].type;
}

int infer_gguf_get_i64(const struct infer_gguf *g, const char *key,
                       int64_t *out)
{
    int64_t k = infer_gguf_find_key(g, key);
    if (k < 0)
        return INFER_ERR_FORMAT;
    return scalar_i64(g->kv[k].type, &g->kv[k], out);
}

int infer_gguf_get_f64(const struct infer_gguf *g, const char *key, double *out)
{
    int64_t k = infer_gguf_find_key(g, key);
    if (k < 0)
        return INFER_ERR_FORMAT;
    return scalar_f64(g->kv[k].type, &g->kv[k], out);
}

const char *infer_gguf_get_str(const struct infer_gguf *g, const char *key)
{
    int64_t k = infer_gguf_find_key(g, key);
    if (k < 0 || g->kv[k].type != INFER_GGUF_STRING)
        return NULL;
    return g->kv[k].str;
}

enum infer_gguf_type infer_gguf_arr_type(const struct infer_gguf *g,
                                         int64_t key)
{
    if (key < 0 || key >= g->n_kv || g->kv[key].type != INFER_GGUF_ARRAY)
        return (enum infer_gguf_type) - 1;
    return (enum infer_gguf_type)g->kv[key].arr_type;
}

uint64_t infer_gguf_arr_n(const struct infer_gguf *g, int64_t key)
{
    if (key < 0 || key >= g->n_kv || g->kv[key].type != INFER_GGUF_ARRAY)
        return 0;
    return g->kv[key].arr_n;
}

const char *infer_gguf_arr_str(const struct infer_gguf *g, int64_t key,
                               uint64_t i, size_t *len)
{
    if (key < 0 || key >= g->n_kv)
        return NULL;
    const struct gguf_kv *kv = &g->kv[key];
    if (kv->type != INFER_GGUF_ARRAY || kv->arr_type != INFER_GGUF_STRING ||
        i >= kv->arr_n)
        return NULL;
    if (len != NULL)
        *len = (size_t)(kv->arr_off[i + 1] - kv->arr_off[i] - 1);
    return kv->arr_blob + kv->arr_off[i];
}

/* Decodes element i of a numeric array into a scratch kv. */
static int arr_elem(const struct infer_gguf *g, int64_t key, uint64_t i,
                    struct gguf_kv *tmp)
{
    if (key < 0 || key >= g->n_kv)
        return INFER_ERR_FORMAT;
    const struct gguf_kv *kv = &g->kv[key];
    size_t es = scalar_size(kv->arr_type);
    if (kv->type != INFER_GGUF_ARRAY || es == 0 || kv->arr_data == NULL ||
        i >= kv->arr_n)
        return INFER_ERR_FORMAT;
    scalar_decode(kv->arr_type, kv->arr_data + i * es, tmp);
    return INFER_OK;
}

int infer_gguf_arr_i64(const struct infer_gguf *g, int64_t key, uint64_t i,
                       int64_t *out)
{
    struct gguf_kv tmp = {0};
    int st = arr_elem(g, key, i, &tmp);
    if (st != INFER_OK)
        return st;
    return scalar_i64(g->kv[key].arr_type, &tmp, out);
}

int infer_gguf_arr_f64(const struct infer_gguf *g, int64_t key, uint64_t i,
                       double *out)
{
    struct gguf_kv tmp = {0};
    int st = arr_elem(g, key, i, &tmp);
    if (st != INFER_OK)
        return st;
    return scalar_f64(g->kv[key].arr_type, &tmp, out);
}

int64_t infer_gguf_n_tensors(const struct infer_gguf *g)
{
    return g->n_tensors;
}

const struct infer_gguf_tensor *infer_gguf_tensor(const struct infer_gguf *g,
                                                  int64_t i)
{
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const struct infer_gguf_tensor *
infer_gguf_find_tensor(const struct infer_gguf *g, const char *name)
{
    if (name == NULL)
        return NULL;
    size_t lo = 0, hi = (size_t)g->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(g->by_name[mid]->name, name);
        if (c == 0)
            return g->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}
