/*
 * arena_rating_io.c: battle files into a battle set.
 *
 * The file is memory-mapped and cut into one chunk per thread at record
 * boundaries (for CSV, a newline outside quotes: a newline is inside a
 * quoted field iff an odd number of quote characters precede it, doubled
 * quotes included). Each chunk is parsed on its own thread into a growing
 * array of records with its own name table; the chunks are then merged in
 * file order, so ids (first appearance in the file), records and errors are
 * the same whatever the thread count. Nothing is allocated per record:
 * field values point into the mapping, and only quoted fields with doubled
 * quotes (or JSON strings with escapes) are copied, into one reused buffer.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arena.h"
#include "arena_internal.h"

#define IO_MAX_THREADS 64

enum { COL_A, COL_B, COL_WINNER, COL_WEIGHT, N_COLS };

/* A field value: either a slice of the mapping or of the chunk's scratch
 * buffer (which may move while a record is parsed, hence the offset). */
struct field {
    const char *p; /* NULL: in scratch at off */
    size_t off, len;
    int set;
    int is_str; /* a JSON string (not a number or literal) */
};

struct chunk {
    const char *begin, *end;
    const char *map_end; /* end of the whole mapping */
    const int *cols;     /* (N_COLS,) column index or -1 (CSV) */
    int n_cols_needed;   /* fields a record must have (CSV) */
    int jsonl;
    struct arena__strtab names; /* local ids */
    struct arena__strtab langs; /* local ids, 0 = "" */
    struct arena_battle *items; /* (n,) with local ids */
    size_t n, cap;
    char *scratch; /* (scratch_cap,) unescaped strings */
    size_t scratch_len, scratch_cap;
    size_t line; /* current line, relative to begin (0-) */
    int rc;
    size_t err_line; /* relative line of the error */
    char msg[200];
};

static int chunk_fail(struct chunk *c, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
    va_end(ap);
    c->rc = rc;
    c->err_line = c->line;
    return -1;
}

static int scratch_put(struct chunk *c, const char *s, size_t len)
{
    if (len == 0)
        return 0;
    if (c->scratch_len + len > c->scratch_cap) {
        size_t cap = c->scratch_cap ? c->scratch_cap : 256;
        while (cap < c->scratch_len + len)
            cap *= 2;
        char *p = realloc(c->scratch, cap);
        if (p == NULL)
            return -1;
        c->scratch = p;
        c->scratch_cap = cap;
    }
    memcpy(c->scratch + c->scratch_len, s, len);
    c->scratch_len += len;
    return 0;
}

static const char *field_ptr(const struct chunk *c, const struct field *f)
{
    return f->p != NULL ? f->p : c->scratch + f->off;
}

/* Shows at most 40 bytes of a value in an error message. */
static int show_len(size_t len)
{
    return len > 40 ? 40 : (int)len;
}

/* Adds one record from its model, winner and weight fields. */
static int chunk_add(struct chunk *c, const struct field *fa,
                     const struct field *fb, const struct field *fw,
                     double weight, uint32_t tags, int32_t lang)
{
    const char *a = field_ptr(c, fa), *b = field_ptr(c, fb);
    const char *w = field_ptr(c, fw);
    if (fa->len == 0 || fb->len == 0)
        return chunk_fail(c, ARENA_ERR_PARSE, "empty model name");
    int winner = arena__winner_parse(w, fw->len);
    if (winner < 0)
        return chunk_fail(c, ARENA_ERR_PARSE,
                          "unknown winner '%.*s' (want model_a, model_b, "
                          "tie, tie (bothbad), both_bad, left or right)",
                          show_len(fw->len), w);
    /* Names in the mapping may be read 16 bytes at a time up to its end;
     * unescaped copies in scratch only up to the scratch's end. */
    const char *scratch_end = c->scratch + c->scratch_len;
    int32_t ia = arena__strtab_intern_at(&c->names, a, fa->len,
                                         fa->p ? c->map_end : scratch_end);
    int32_t ib = arena__strtab_intern_at(&c->names, b, fb->len,
                                         fb->p ? c->map_end : scratch_end);
    if (ia < 0 || ib < 0)
        return chunk_fail(c, ARENA_ERR_NOMEM, "out of memory");
    if (ia == ib)
        return chunk_fail(c, ARENA_ERR_PARSE,
                          "model_a and model_b are the same ('%.*s')",
                          show_len(fa->len), a);
    if (!(weight >= 0) || weight > 3.4e38)
        return chunk_fail(c, ARENA_ERR_PARSE, "weight must be >= 0");
    if (c->n == c->cap) /* cannot happen: a record takes >= 5 bytes */
        return chunk_fail(c, ARENA_ERR_PARSE, "record bound exceeded");
    struct arena_battle *r = &c->items[c->n++];
    memset(r, 0, sizeof(*r));
    r->model_a = (uint32_t)ia;
    r->model_b = (uint32_t)ib;
    r->winner = (uint8_t)winner;
    r->weight = (float)weight;
    r->tags = tags;
    r->lang = (uint16_t)lang;
    return 0;
}

static int parse_weight(struct chunk *c, const struct field *f, double *out)
{
    *out = 1.0;
    if (!f->set || f->len == 0)
        return 0;
    char buf[64];
    if (f->len >= sizeof(buf))
        return chunk_fail(c, ARENA_ERR_PARSE, "weight too long");
    memcpy(buf, field_ptr(c, f), f->len);
    buf[f->len] = '\0';
    char *e;
    errno = 0;
    *out = strtod(buf, &e);
    if (e == buf || *e != '\0' || errno != 0)
        return chunk_fail(c, ARENA_ERR_PARSE, "bad weight '%s'", buf);
    return 0;
}

/* ------------------------------------------------------------------------
 * CSV
 * ---------------------------------------------------------------------- */

/* One field starting at *pp; stores it if its column is wanted and leaves
 * *pp on the delimiter after it (',' '\n' or end). Returns -1 on error. */
static int csv_field(struct chunk *c, const char **pp, struct field *f)
{
    const char *p = *pp, *end = c->end;
    if (p < end && *p == '"') {
        p++;
        const char *start = p;
        int copied = 0;
        size_t off = c->scratch_len;
        for (;;) {
            const char *q = memchr(p, '"', (size_t)(end - p));
            if (q == NULL)
                return chunk_fail(c, ARENA_ERR_PARSE,
                                  "unterminated quoted field");
            for (const char *x = p; x < q; x++)
                if (*x == '\n')
                    c->line++;
            if (q + 1 < end && q[1] == '"') {
                /* A doubled quote: copy what came before plus one quote. */
                if (f != NULL && scratch_put(c, p, (size_t)(q + 1 - p)) != 0)
                    return chunk_fail(c, ARENA_ERR_NOMEM, "out of memory");
                copied = 1;
                p = q + 2;
                continue;
            }
            if (f != NULL) {
                if (copied) {
                    if (scratch_put(c, p, (size_t)(q - p)) != 0)
                        return chunk_fail(c, ARENA_ERR_NOMEM, "out of memory");
                    f->p = NULL;
                    f->off = off;
                    f->len = c->scratch_len - off;
                } else {
                    f->p = start;
                    f->len = (size_t)(q - start);
                }
                f->set = 1;
            }
            p = q + 1;
            if (p < end && *p == '\r' && p + 1 < end && p[1] == '\n')
                p++;
            if (p < end && *p != ',' && *p != '\n')
                return chunk_fail(c, ARENA_ERR_PARSE,
                                  "unexpected character after a closing "
                                  "quote");
            *pp = p;
            return 0;
        }
    }
    const char *start = p;
    while (p < end && *p != ',' && *p != '\n')
        p++;
    if (f != NULL) {
        f->p = start;
        f->len = (size_t)(p - start);
        if (f->len > 0 && (p == end || *p == '\n') && start[f->len - 1] == '\r')
            f->len--;
        f->set = 1;
    }
    *pp = p;
    return 0;
}

/* Which wanted column, if any, a field index is. */
static struct field *csv_slot(const struct chunk *c, struct field *fs, int col)
{
    for (int k = 0; k < N_COLS; k++)
        if (c->cols[k] == col)
            return &fs[k];
    return NULL;
}

/* One record from *pp (which is at a record start) through its newline. */
static int csv_record(struct chunk *c, const char **pp)
{
    struct field fs[N_COLS] = {{0}};
    const char *p = *pp;
    int col = 0;
    c->scratch_len = 0;
    for (;;) {
        if (csv_field(c, &p, csv_slot(c, fs, col)) != 0)
            return -1;
        col++;
        if (p < c->end && *p == ',') {
            p++;
            continue;
        }
        break;
    }
    if (p < c->end)
        p++; /* the newline */
    *pp = p;
    if (col < c->n_cols_needed)
        return chunk_fail(c, ARENA_ERR_PARSE,
                          "expected at least %d fields, found %d",
                          c->n_cols_needed, col);
    double weight;
    if (parse_weight(c, &fs[COL_WEIGHT], &weight) != 0)
        return -1;
    return chunk_add(c, &fs[COL_A], &fs[COL_B], &fs[COL_WINNER], weight, 0, 0);
}

/* Whether [p, end) up to the next newline is a blank line (or "\r"). */
static const char *blank_line(const char *p, const char *end)
{
    if (p < end && *p == '\n')
        return p + 1;
    if (p + 1 < end && p[0] == '\r' && p[1] == '\n')
        return p + 2;
    if (p + 1 == end && *p == '\r')
        return end;
    return NULL;
}

static void csv_chunk(struct chunk *c)
{
    const char *p = c->begin;
    while (p < c->end) {
        const char *next = blank_line(p, c->end);
        if (next != NULL) {
            p = next;
            c->line++;
            continue;
        }
        if (csv_record(c, &p) != 0)
            return;
        c->line++;
    }
}

/* ------------------------------------------------------------------------
 * JSONL: a small scanner for one flat object per line
 * ---------------------------------------------------------------------- */

static const char *jl_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
        p++;
    return p;
}

static int jl_put_utf8(struct chunk *c, uint32_t cp)
{
    char b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xc0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xe0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        b[0] = (char)(0xf0 | (cp >> 18));
        b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    return scratch_put(c, b, n);
}

static int hex4(const char *p, const char *end, uint32_t *out)
{
    if (end - p < 4)
        return -1;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char h = p[i];
        v <<= 4;
        if (h >= '0' && h <= '9')
            v |= (uint32_t)(h - '0');
        else if (h >= 'a' && h <= 'f')
            v |= (uint32_t)(h - 'a' + 10);
        else if (h >= 'A' && h <= 'F')
            v |= (uint32_t)(h - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* A string at *pp (on its opening quote). With f, its decoded value. */
static int jl_string(struct chunk *c, const char **pp, const char *end,
                     struct field *f)
{
    const char *p = *pp + 1, *start = p;
    size_t off = c->scratch_len;
    int copied = 0;
    for (;;) {
        const char *q = p;
        while (q < end && *q != '"' && *q != '\\' && *q != '\n')
            q++;
        if (q >= end || *q == '\n')
            return chunk_fail(c, ARENA_ERR_PARSE, "unterminated string");
        if (*q == '"') {
            if (f != NULL) {
                if (copied && scratch_put(c, p, (size_t)(q - p)) != 0)
                    return chunk_fail(c, ARENA_ERR_NOMEM, "out of memory");
                f->p = copied ? NULL : start;
                f->off = off;
                f->len = copied ? c->scratch_len - off : (size_t)(q - start);
                f->set = 1;
                f->is_str = 1;
            }
            *pp = q + 1;
            return 0;
        }
        /* A backslash escape. */
        if (f != NULL && scratch_put(c, p, (size_t)(q - p)) != 0)
            return chunk_fail(c, ARENA_ERR_NOMEM, "out of memory");
        copied = 1;
        if (q + 1 >= end)
            return chunk_fail(c, ARENA_ERR_PARSE, "unterminated string");
        char e = q[1];
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        const char *k = memchr(from, e, sizeof(from) - 1);
        uint32_t cp;
        if (k != NULL) {
            if (f != NULL && scratch_put(c, &to[k - from], 1) != 0)
                return chunk_fail(c, ARENA_ERR_NOMEM, "out of memory");
            p = q + 2;
            continue;
        }
        if (e != 'u' || hex4(q + 2, end, &cp) != 0)
            return chunk_fail(c, ARENA_ERR_PARSE, "bad escape in string");
        p = q + 6;
        if (cp >= 0xd800 && cp < 0xdc00) {
            uint32_t lo;
            if (end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
                hex4(p + 2, end, &lo) != 0 || lo < 0xdc00 || lo >= 0xe000)
                return chunk_fail(c, ARENA_ERR_PARSE, "bad surrogate pair");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            p += 6;
        } else if (cp >= 0xdc00 && cp < 0xe000) {
            return chunk_fail(c, ARENA_ERR_PARSE, "bad surrogate pair");
        }
        if (f != NULL && jl_put_utf8(c, cp) != 0)
            return chunk_fail(c, ARENA_ERR_NOMEM, "out of memory");
    }
}

/* Skips any value (nested up to 64 levels) at *pp. A scalar is returned as
 * a slice in f when f != NULL. */
static int jl_skip(struct chunk *c, const char **pp, const char *end,
                   struct field *f, int depth)
{
    const char *p = jl_ws(*pp, end);
    if (depth > 64)
        return chunk_fail(c, ARENA_ERR_PARSE, "nesting too deep");
    if (p >= end || *p == '\n')
        return chunk_fail(c, ARENA_ERR_PARSE, "missing value");
    if (*p == '"') {
        *pp = p;
        return jl_string(c, pp, end, f);
    }
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = jl_ws(p + 1, end);
        if (p < end && *p == close) {
            *pp = p + 1;
            return 0;
        }
        for (;;) {
            if (close == '}') {
                if (p >= end || *p != '"')
                    return chunk_fail(c, ARENA_ERR_PARSE, "expected a key");
                if (jl_string(c, &p, end, NULL) != 0)
                    return -1;
                p = jl_ws(p, end);
                if (p >= end || *p != ':')
                    return chunk_fail(c, ARENA_ERR_PARSE, "expected ':'");
                p++;
            }
            if (jl_skip(c, &p, end, NULL, depth + 1) != 0)
                return -1;
            p = jl_ws(p, end);
            if (p < end && *p == ',') {
                p = jl_ws(p + 1, end);
                continue;
            }
            if (p < end && *p == close) {
                *pp = p + 1;
                return 0;
            }
            return chunk_fail(c, ARENA_ERR_PARSE, "expected ',' or '%c'",
                              close);
        }
    }
    const char *start = p;
    while (p < end &&
           (*p == '-' || *p == '+' || *p == '.' || (*p >= '0' && *p <= '9') ||
            (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
        p++;
    if (p == start)
        return chunk_fail(c, ARENA_ERR_PARSE, "unexpected character '%c'", *p);
    if (f != NULL) {
        f->p = start;
        f->len = (size_t)(p - start);
        f->set = 1;
    }
    *pp = p;
    return 0;
}

/* The "tags" array: names of tags, or an object of name: true. */
static int jl_tags(struct chunk *c, const char **pp, const char *end,
                   uint32_t *tags)
{
    const char *p = jl_ws(*pp, end);
    if (p >= end || *p != '[')
        return jl_skip(c, pp, end, NULL, 0);
    p = jl_ws(p + 1, end);
    while (p < end && *p != ']') {
        struct field f = {0};
        size_t mark = c->scratch_len;
        if (*p != '"' || jl_string(c, &p, end, &f) != 0)
            return c->rc ? -1
                         : chunk_fail(c, ARENA_ERR_PARSE,
                                      "tags must be an array of strings");
        char name[32];
        if (f.len < sizeof(name)) {
            memcpy(name, field_ptr(c, &f), f.len);
            name[f.len] = '\0';
            *tags |= arena_tag_from_name(name);
        }
        c->scratch_len = mark;
        p = jl_ws(p, end);
        if (p < end && *p == ',')
            p = jl_ws(p + 1, end);
    }
    if (p >= end)
        return chunk_fail(c, ARENA_ERR_PARSE, "unterminated tags");
    *pp = p + 1;
    return 0;
}

static int jl_key_is(const struct chunk *c, const struct field *k,
                     const char *name)
{
    return k->len == strlen(name) && memcmp(field_ptr(c, k), name, k->len) == 0;
}

static int jsonl_record(struct chunk *c, const char **pp, const char *eol)
{
    struct field fs[N_COLS] = {{0}}, lang = {0};
    uint32_t tags = 0;
    const char *p = jl_ws(*pp, eol);
    c->scratch_len = 0;
    if (p >= eol || *p != '{')
        return chunk_fail(c, ARENA_ERR_PARSE, "expected a JSON object");
    p = jl_ws(p + 1, eol);
    while (p < eol && *p != '}') {
        struct field key = {0};
        if (*p != '"' || jl_string(c, &p, eol, &key) != 0)
            return c->rc ? -1
                         : chunk_fail(c, ARENA_ERR_PARSE, "expected a key");
        p = jl_ws(p, eol);
        if (p >= eol || *p != ':')
            return chunk_fail(c, ARENA_ERR_PARSE, "expected ':'");
        p++;
        struct field *dst = jl_key_is(c, &key, "model_a")    ? &fs[COL_A]
                            : jl_key_is(c, &key, "model_b")  ? &fs[COL_B]
                            : jl_key_is(c, &key, "winner")   ? &fs[COL_WINNER]
                            : jl_key_is(c, &key, "weight")   ? &fs[COL_WEIGHT]
                            : jl_key_is(c, &key, "language") ? &lang
                                                             : NULL;
        int rc = jl_key_is(c, &key, "tags") ? jl_tags(c, &p, eol, &tags)
                                            : jl_skip(c, &p, eol, dst, 0);
        if (rc != 0)
            return -1;
        p = jl_ws(p, eol);
        if (p < eol && *p == ',')
            p = jl_ws(p + 1, eol);
        else if (p < eol && *p != '}')
            return chunk_fail(c, ARENA_ERR_PARSE, "expected ',' or '}'");
    }
    if (p >= eol)
        return chunk_fail(c, ARENA_ERR_PARSE, "unterminated object");
    static const char *names[] = {"model_a", "model_b", "winner"};
    for (int k = 0; k < 3; k++) {
        if (!fs[k].set)
            return chunk_fail(c, ARENA_ERR_PARSE, "missing \"%s\"", names[k]);
        if (!fs[k].is_str)
            return chunk_fail(c, ARENA_ERR_PARSE, "\"%s\" must be a string",
                              names[k]);
    }
    if (fs[COL_WEIGHT].set && fs[COL_WEIGHT].len == 4 &&
        memcmp(field_ptr(c, &fs[COL_WEIGHT]), "null", 4) == 0)
        fs[COL_WEIGHT].set = 0;
    double weight;
    if (parse_weight(c, &fs[COL_WEIGHT], &weight) != 0)
        return -1;
    int32_t lid = 0;
    if (lang.set && lang.is_str && lang.len > 0) {
        const char *l = field_ptr(c, &lang);
        lid = arena__strtab_intern(&c->langs, l, lang.len,
                                   arena__strtab_hash(l, lang.len));
        if (lid < 0 || lid > UINT16_MAX)
            return chunk_fail(c, ARENA_ERR_NOMEM, "too many languages");
    }
    *pp = p + 1;
    return chunk_add(c, &fs[COL_A], &fs[COL_B], &fs[COL_WINNER], weight, tags,
                     lid);
}

static void jsonl_chunk(struct chunk *c)
{
    const char *p = c->begin;
    while (p < c->end) {
        const char *eol = memchr(p, '\n', (size_t)(c->end - p));
        if (eol == NULL)
            eol = c->end;
        const char *q = jl_ws(p, eol);
        if (q < eol) {
            if (jsonl_record(c, &q, eol) != 0)
                return;
            q = jl_ws(q, eol);
            if (q < eol) {
                chunk_fail(c, ARENA_ERR_PARSE, "text after the object");
                return;
            }
        }
        c->line++;
        p = eol < c->end ? eol + 1 : eol;
    }
}

/* ------------------------------------------------------------------------
 * Files, chunks, merging
 * ---------------------------------------------------------------------- */

static void *chunk_thread(void *arg)
{
    struct chunk *c = arg;
    if (c->jsonl)
        jsonl_chunk(c);
    else
        csv_chunk(c);
    return NULL;
}

static size_t count_lines(const char *p, const char *end)
{
    size_t n = 0;
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        n++;
        p++;
    }
    return n;
}

/* A record boundary at or after want: the byte after a newline with an even
 * number of quotes before it (counted from from, a known boundary). */
static const char *csv_boundary(const char *from, const char *want,
                                const char *end, int quotes_matter)
{
    if (!quotes_matter) {
        const char *nl = memchr(want, '\n', (size_t)(end - want));
        return nl ? nl + 1 : end;
    }
    int odd = 0;
    const char *p = from;
    while ((p = memchr(p, '"', (size_t)(want - p))) != NULL) {
        odd ^= 1;
        p++;
    }
    for (p = want; p < end; p++) {
        if (*p == '"')
            odd ^= 1;
        else if (*p == '\n' && !odd)
            return p + 1;
    }
    return end;
}

/* Local ids of a chunk to the set's ids. NULL maps when out of memory. */
static int chunk_maps(struct arena_battles *set, const struct chunk *c,
                      uint32_t **map, uint16_t **lmap)
{
    *map = malloc((c->names.n + 1) * sizeof(**map));
    *lmap = malloc((c->langs.n + 1) * sizeof(**lmap));
    if (*map == NULL || *lmap == NULL)
        return -1;
    for (size_t k = 0; k < c->names.n; k++) {
        int32_t g = arena__strtab_intern(
            &set->models, arena__strtab_name(&c->names, (uint32_t)k),
            c->names.len[k], c->names.hash[k]);
        if (g < 0)
            return -1;
        (*map)[k] = (uint32_t)g;
    }
    for (size_t k = 0; k < c->langs.n; k++) {
        int32_t g = arena__strtab_intern(
            &set->langs, arena__strtab_name(&c->langs, (uint32_t)k),
            c->langs.len[k], c->langs.hash[k]);
        if (g < 0 || g > UINT16_MAX)
            return -1;
        (*lmap)[k] = (uint16_t)g;
    }
    return 0;
}

/* Parses [body, end) on n chunks and appends the records to set.
 *
 * Chunk i writes straight into the set's mapping at an offset that leaves
 * room for its upper bound (a record takes at least 5 bytes), so nothing is
 * copied while parsing; the merge then renumbers the ids and slides the
 * records down in place (a record only ever moves to a lower index). */
static int parse_chunks(struct arena_battles *set, const char *body,
                        const char *end, size_t body_line, int n, int jsonl,
                        const int *cols, int n_needed, struct arena_err *err)
{
    struct chunk ch[IO_MAX_THREADS];
    pthread_t th[IO_MAX_THREADS];
    int quotes = !jsonl && memchr(body, '"', (size_t)(end - body)) != NULL;
    const char *from = body;
    size_t bound = 0, base = set->n;
    for (int i = 0; i < n; i++) {
        memset(&ch[i], 0, sizeof(ch[i]));
        ch[i].begin = from;
        const char *want = body + (size_t)(end - body) / n * (i + 1);
        ch[i].end = i == n - 1     ? end
                    : want <= from ? from
                                   : csv_boundary(from, want, end, quotes);
        from = ch[i].end;
        ch[i].cap = (size_t)(ch[i].end - ch[i].begin) / 5 + 1;
        bound += ch[i].cap;
        ch[i].cols = cols;
        ch[i].n_cols_needed = n_needed;
        ch[i].jsonl = jsonl;
        ch[i].map_end = end;
        arena__strtab_init(&ch[i].names);
        arena__strtab_init(&ch[i].langs);
    }
    int rc = arena__battles_reserve(set, bound);
    if (rc != ARENA_OK) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return rc;
    }
    size_t off = base;
    for (int i = 0; i < n; i++) {
        ch[i].items = set->items + off;
        off += ch[i].cap;
        if (arena__strtab_intern(&ch[i].langs, "", 0,
                                 arena__strtab_hash("", 0)) != 0)
            ch[i].rc = ARENA_ERR_NOMEM;
    }
    int started[IO_MAX_THREADS] = {0};
    for (int i = 1; i < n; i++)
        started[i] = pthread_create(&th[i], NULL, chunk_thread, &ch[i]) == 0;
    chunk_thread(&ch[0]);
    for (int i = 1; i < n; i++) {
        if (started[i])
            pthread_join(th[i], NULL);
        else
            chunk_thread(&ch[i]);
    }
    for (int i = 0; i < n && rc == ARENA_OK; i++) {
        if (ch[i].rc == ARENA_OK)
            continue;
        rc = ch[i].rc;
        size_t line =
            body_line + count_lines(body, ch[i].begin) + ch[i].err_line;
        snprintf(err->msg, sizeof(err->msg), "line %zu: %s", line, ch[i].msg);
    }
    for (int i = 0; i < n && rc == ARENA_OK; i++) {
        uint32_t *map = NULL;
        uint16_t *lmap = NULL;
        if (chunk_maps(set, &ch[i], &map, &lmap) != 0) {
            rc = ARENA_ERR_NOMEM;
            snprintf(err->msg, sizeof(err->msg), "out of memory");
        } else {
            struct arena_battle *dst = set->items + set->n;
            for (size_t k = 0; k < ch[i].n; k++) {
                struct arena_battle b = ch[i].items[k];
                b.model_a = map[b.model_a];
                b.model_b = map[b.model_b];
                b.lang = lmap[b.lang];
                dst[k] = b;
            }
            set->n += ch[i].n;
        }
        free(map);
        free(lmap);
    }
    if (rc != ARENA_OK)
        set->n = base;
    /* Give back the pages the later chunks filled before sliding down. */
    uintptr_t lo = (uintptr_t)(set->items + set->n),
              hi = (uintptr_t)(set->items + off);
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    lo = (lo + page - 1) & ~(page - 1);
    if (hi > lo + page)
        madvise((void *)lo, (hi - lo) & ~(page - 1), MADV_DONTNEED);
    for (int i = 0; i < n; i++) {
        arena__strtab_cleanup(&ch[i].names);
        arena__strtab_cleanup(&ch[i].langs);
        free(ch[i].scratch);
    }
    return rc;
}

struct mapped {
    const char *p;
    size_t len;
};

static int map_file(const char *path, struct mapped *m, struct arena_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err->msg, sizeof(err->msg), "%s: %s", path, strerror(errno));
        return ARENA_ERR_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err->msg, sizeof(err->msg), "%s: not a regular file", path);
        close(fd);
        return ARENA_ERR_IO;
    }
    m->len = (size_t)st.st_size;
    m->p = "";
    if (m->len > 0) {
        void *p =
            mmap(NULL, m->len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
        if (p == MAP_FAILED) {
            snprintf(err->msg, sizeof(err->msg), "%s: mmap: %s", path,
                     strerror(errno));
            close(fd);
            return ARENA_ERR_IO;
        }
        madvise(p, m->len, MADV_SEQUENTIAL);
        m->p = p;
    }
    close(fd);
    return ARENA_OK;
}

static void unmap_file(struct mapped *m)
{
    if (m->len > 0)
        munmap((void *)m->p, m->len);
}

static int threads_for(int n_threads, size_t bytes)
{
    if (n_threads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = c < 1 ? 1 : (int)c;
    }
    /* Below 1 MiB per thread the threads cost more than they save. */
    size_t most = bytes / (1u << 20) + 1;
    if ((size_t)n_threads > most)
        n_threads = (int)most;
    return n_threads > IO_MAX_THREADS ? IO_MAX_THREADS : n_threads;
}

/* Reads the header row into column indices. Returns the body start. */
static int csv_header(struct chunk *h, int *cols, int *n_needed,
                      const char **body)
{
    static const char *names[N_COLS][2] = {{"model_a", "left"},
                                           {"model_b", "right"},
                                           {"winner", NULL},
                                           {"weight", NULL}};
    int pos[N_COLS][2];
    for (int k = 0; k < N_COLS; k++)
        pos[k][0] = pos[k][1] = -1;
    const char *p = h->begin;
    for (int col = 0;; col++) {
        struct field f = {0};
        h->scratch_len = 0;
        if (csv_field(h, &p, &f) != 0)
            return -1;
        const char *s = field_ptr(h, &f);
        for (int k = 0; k < N_COLS; k++)
            for (int alt = 0; alt < 2; alt++)
                if (names[k][alt] != NULL && pos[k][alt] < 0 &&
                    strlen(names[k][alt]) == f.len &&
                    memcmp(names[k][alt], s, f.len) == 0)
                    pos[k][alt] = col;
        if (p < h->end && *p == ',') {
            p++;
            continue;
        }
        break;
    }
    /* model_a and model_b if both are there, else left and right. */
    int alt = pos[COL_A][0] >= 0 && pos[COL_B][0] >= 0 ? 0 : 1;
    cols[COL_A] = pos[COL_A][alt];
    cols[COL_B] = pos[COL_B][alt];
    cols[COL_WINNER] = pos[COL_WINNER][0];
    cols[COL_WEIGHT] = pos[COL_WEIGHT][0];
    *body = p < h->end ? p + 1 : p;
    if (cols[COL_A] < 0 || cols[COL_B] < 0)
        return chunk_fail(h, ARENA_ERR_PARSE,
                          "no model_a and model_b (or left and right) "
                          "columns in the header");
    if (cols[COL_WINNER] < 0)
        return chunk_fail(h, ARENA_ERR_PARSE, "no winner column in the header");
    *n_needed = 0;
    for (int k = 0; k < COL_WEIGHT; k++)
        if (cols[k] + 1 > *n_needed)
            *n_needed = cols[k] + 1;
    return 0;
}

int arena_battles_read_csv(struct arena_battles *set, const char *path,
                           int n_threads, struct arena_err *err)
{
    struct arena_err dummy;
    if (err == NULL)
        err = &dummy;
    struct mapped m;
    int rc = map_file(path, &m, err);
    if (rc != ARENA_OK)
        return rc;
    const char *end = m.p + m.len;
    struct chunk h = {0};
    h.begin = m.p;
    h.end = end;
    const char *body = m.p;
    /* A UTF-8 byte order mark (spreadsheet exports) is not part of the
     * first column's name. */
    if (m.len >= 3 && memcmp(body, "\xef\xbb\xbf", 3) == 0)
        body += 3;
    while (body < end && blank_line(body, end) != NULL) {
        body = blank_line(body, end);
        h.line++;
    }
    h.begin = body;
    int cols[N_COLS], n_needed = 0;
    if (body >= end) {
        snprintf(err->msg, sizeof(err->msg), "%s: empty file (no header row)",
                 path);
        rc = ARENA_ERR_PARSE;
    } else if (csv_header(&h, cols, &n_needed, &body) != 0) {
        snprintf(err->msg, sizeof(err->msg), "line %zu: %s", h.line + 1, h.msg);
        rc = h.rc;
    } else {
        size_t body_line = count_lines(m.p, body) + 1;
        rc = parse_chunks(set, body, end, body_line,
                          threads_for(n_threads, (size_t)(end - body)), 0, cols,
                          n_needed, err);
    }
    free(h.scratch);
    unmap_file(&m);
    return rc;
}

int arena_battles_read_jsonl(struct arena_battles *set, const char *path,
                             struct arena_err *err)
{
    struct arena_err dummy;
    if (err == NULL)
        err = &dummy;
    struct mapped m;
    int rc = map_file(path, &m, err);
    if (rc != ARENA_OK)
        return rc;
    const char *end = m.p + m.len;
    rc = parse_chunks(set, m.p, end, 1, threads_for(0, (size_t)(end - m.p)), 1,
                      NULL, 0, err);
    unmap_file(&m);
    return rc;
}
