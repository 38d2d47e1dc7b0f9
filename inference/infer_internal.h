/*
 * infer_internal.h: declarations shared by the files of inference/ and its
 * tests, not by other modules. Functions here use the infer_<area>_ prefix of
 * the file that defines them (infer_gguf.c -> infer_gguf_*).
 *
 * The GGUF reader: infer_gguf_open() maps a file, validates every count,
 * length, type, dimension, offset and alignment against the file size, and
 * copies the metadata strings; afterwards every accessor is bounds-checked
 * and cannot touch memory outside the mapping. A struct infer_gguf is
 * immutable once opened, so any number of threads may read it.
 */
#ifndef INFER_INTERNAL_H
#define INFER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "infer.h"

/* ---- tensor element types (numbered as ggml numbers them) ------------- */

enum infer_type {
    INFER_TYPE_F32 = 0,
    INFER_TYPE_F16 = 1,
    INFER_TYPE_Q4_0 = 2,
    INFER_TYPE_Q4_1 = 3,
    INFER_TYPE_Q5_0 = 6,
    INFER_TYPE_Q5_1 = 7,
    INFER_TYPE_Q8_0 = 8,
    INFER_TYPE_Q8_1 = 9,
    INFER_TYPE_Q2_K = 10,
    INFER_TYPE_Q3_K = 11,
    INFER_TYPE_Q4_K = 12,
    INFER_TYPE_Q5_K = 13,
    INFER_TYPE_Q6_K = 14,
    INFER_TYPE_Q8_K = 15,
    INFER_TYPE_I8 = 24,
    INFER_TYPE_I16 = 25,
    INFER_TYPE_I32 = 26,
    INFER_TYPE_I64 = 27,
    INFER_TYPE_F64 = 28,
    INFER_TYPE_BF16 = 30,
    INFER_TYPE_COUNT = 40 /* bound for tables indexed by type */
};

/* Name ("Q8_0"), or NULL for a type number the reader does not know. */
const char *infer_type_name(uint32_t type);
/* Elements per block (1 for plain types) and bytes per block; 0 if unknown. */
int infer_type_block(uint32_t type);
size_t infer_type_size(uint32_t type);

/* ---- GGUF v3 reader ---------------------------------------------------- */

enum infer_gguf_type { /* value types, numbered as in the GGUF v3 spec */
                       INFER_GGUF_U8 = 0,
                       INFER_GGUF_I8,
                       INFER_GGUF_U16,
                       INFER_GGUF_I16,
                       INFER_GGUF_U32,
                       INFER_GGUF_I32,
                       INFER_GGUF_F32,
                       INFER_GGUF_BOOL,
                       INFER_GGUF_STRING,
                       INFER_GGUF_ARRAY,
                       INFER_GGUF_U64,
                       INFER_GGUF_I64,
                       INFER_GGUF_F64,
};

struct infer_gguf; /* an opened, memory-mapped, fully validated GGUF file */

/* A tensor's description; data points into the mapping. ne[0] is the
 * innermost (contiguous) dimension: a matrix of n rows of k elements has
 * ne = {k, n}. Unused trailing ne[] are 1. */
struct infer_gguf_tensor {
    const char *name; /* NUL-terminated copy */
    uint32_t type;    /* enum infer_type; always one the reader knows */
    int n_dims;       /* 1..4 */
    int64_t ne[4];    /* each >= 1; product fits in int64 */
    uint64_t nbytes;  /* bytes of data */
    uint64_t offset;  /* from the start of the data section */
    const void *data; /* nbytes bytes inside the file */
};

/* Opens and validates path (mmap'd read-only). On failure returns
 * INFER_ERR_IO or INFER_ERR_FORMAT (or NOMEM) with err naming the problem
 * and *out = NULL. The caller frees the result with infer_gguf_free(). */
int infer_gguf_open(const char *path, struct infer_gguf **out,
                    struct infer_err *err);
/* Same, over a caller-owned buffer (used by the fuzz target); the buffer must
 * outlive the object. */
int infer_gguf_open_mem(const void *data, size_t size, struct infer_gguf **out,
                        struct infer_err *err);
void infer_gguf_free(struct infer_gguf *g); /* NULL is a no-op */

uint32_t infer_gguf_version(const struct infer_gguf *g);
uint32_t infer_gguf_alignment(const struct infer_gguf *g);
/* The file's bytes (the mapping or the caller's buffer). */
const void *infer_gguf_data(const struct infer_gguf *g, size_t *size);

int64_t infer_gguf_n_keys(const struct infer_gguf *g);
const char *infer_gguf_key_name(const struct infer_gguf *g, int64_t key);
int64_t infer_gguf_find_key(const struct infer_gguf *g,
                            const char *key); /* -1 if absent */
/* The key's value type; (enum infer_gguf_type)-1 for a bad index. */
enum infer_gguf_type infer_gguf_key_type(const struct infer_gguf *g,
                                         int64_t key);
/* Scalars, converted; INFER_ERR_FORMAT if absent or of a type that does not
 * convert (integers and bools convert to both; floats only to f64; a U64
 * above INT64_MAX does not convert to i64). */
int infer_gguf_get_i64(const struct infer_gguf *g, const char *key,
                       int64_t *out);
int infer_gguf_get_f64(const struct infer_gguf *g, const char *key,
                       double *out);
/* NUL-terminated copy made at open time; NULL if absent or not a string;
 * valid while g lives. */
const char *infer_gguf_get_str(const struct infer_gguf *g, const char *key);
/* Arrays (key is an index from infer_gguf_find_key). Element type
 * (enum infer_gguf_type)-1 and count 0 if key is not an array. */
enum infer_gguf_type infer_gguf_arr_type(const struct infer_gguf *g,
                                         int64_t key);
uint64_t infer_gguf_arr_n(const struct infer_gguf *g, int64_t key);
/* Element i of a string array: NUL-terminated copy, *len = byte length (may
 * contain NUL). NULL if not a string array or i out of range. */
const char *infer_gguf_arr_str(const struct infer_gguf *g, int64_t key,
                               uint64_t i, size_t *len);
/* Element i of a numeric array, converted as the scalars are.
 * INFER_ERR_FORMAT on type mismatch or i out of range. */
int infer_gguf_arr_i64(const struct infer_gguf *g, int64_t key, uint64_t i,
                       int64_t *out);
int infer_gguf_arr_f64(const struct infer_gguf *g, int64_t key, uint64_t i,
                       double *out);

/* Tensors, in file order. */
int64_t infer_gguf_n_tensors(const struct infer_gguf *g);
const struct infer_gguf_tensor *infer_gguf_tensor(const struct infer_gguf *g,
                                                  int64_t i); /* NULL if bad */
/* By exact name; NULL if absent. O(log n). */
const struct infer_gguf_tensor *
infer_gguf_find_tensor(const struct infer_gguf *g, const char *name);

/* ---- misc helpers shared inside the module ----------------------------- */

/* Formats into err (if not NULL); returns status, for `return err_set(...)`.*/
int infer_err_set(struct infer_err *err, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Logs through the installed logger, if any, at level or less verbose. */
void infer_log(enum infer_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
