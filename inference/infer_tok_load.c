/*
 * infer_tok_load.c: building a struct infer_tok from a GGUF vocabulary, a
 * llama2.c tokenizer.bin or a Hugging Face tokenizer.json, and finding the
 * tokenizer that belongs to a model file. Every input is untrusted: sizes
 * are checked against the bytes present, and failures return
 * INFER_ERR_FORMAT with a message naming the problem.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "infer.h"
#include "infer_internal.h"
#include "infer_tok_internal.h"

#define MAX_VOCAB (1 << 24)
#define MAX_FILE  ((size_t)1 << 30)

/* ---- files --------------------------------------------------------------- */

/* Reads a whole regular file into a malloc'd buffer (NUL-terminated). */
static int read_file(const char *path, char **out, size_t *size,
                     struct infer_err *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return infer_err_set(err, INFER_ERR_IO, "%s: %s", path,
                             strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) ||
        (size_t)st.st_size > MAX_FILE) {
        fclose(f);
        return infer_err_set(err, INFER_ERR_IO,
                             "%s: not a regular file under 1 GiB", path);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (buf == NULL) {
        fclose(f);
        return infer_err_set(err, INFER_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t got = fread(buf, 1, n, f);
    fclose(f);
    if (got != n) {
        free(buf);
        return infer_err_set(err, INFER_ERR_IO, "%s: short read", path);
    }
    buf[n] = '\0';
    *out = buf;
    *size = n;
    return INFER_OK;
}

/* dir of path + "/" + name into out; false if it does not fit. */
static bool sibling(const char *path, const char *name, char *out, size_t cap)
{
    const char *slash = strrchr(path, '/');
    int dlen = slash ? (int)(slash - path) : 1;
    const char *dir = slash ? path : ".";
    int n = snprintf(out, cap, "%.*s/%s", dlen, dir, name);
    return n > 0 && (size_t)n < cap;
}

/* ---- llama2.c tokenizer.bin ---------------------------------------------- */

/* The format: int32 max_token_length, then per token float32 score, int32
 * len, len bytes. vocab_size comes from the checkpoint; <= 0 reads tokens
 * until the data ends. */
int infer_tok_from_llama2c_mem(const void *data, size_t size, int vocab_size,
                               struct infer_tok **out, struct infer_err *err)
{
    *out = NULL;
    const unsigned char *p = data;
    if (size < 4)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "tokenizer.bin: shorter than its header");
    int32_t max_len;
    memcpy(&max_len, p, 4);
    int n = vocab_size;
    if (n <= 0) { /* count the tokens present */
        n = 0;
        for (size_t off = 4; size - off >= 8 && n < MAX_VOCAB; n++) {
            int32_t len;
            memcpy(&len, p + off + 4, 4);
            if (len < 0 || (size_t)len > size - off - 8)
                break;
            off += 8 + (size_t)len;
        }
    }
    if (n <= 0 || n > MAX_VOCAB)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "tokenizer.bin: bad vocabulary size %d", n);
    struct infer_tok *t = infer_tok_alloc(n);
    if (t == NULL)
        return infer_err_set(err, INFER_ERR_NOMEM, "tokenizer: out of memory");
    size_t off = 4;
    int rc = INFER_OK;
    for (int i = 0; i < n && rc == INFER_OK; i++) {
        float score;
        int32_t len;
        if (size - off < 8) {
            rc = infer_err_set(err, INFER_ERR_FORMAT,
                               "tokenizer.bin: truncated at token %d of %d", i,
                               n);
            break;
        }
        memcpy(&score, p + off, 4);
        memcpy(&len, p + off + 4, 4);
        off += 8;
        if (len < 0 || (size_t)len > size - off || len > (1 << 20) ||
            (max_len > 0 && len > max_len)) {
            rc = infer_err_set(err, INFER_ERR_FORMAT,
                               "tokenizer.bin: token %d has bad length %d", i,
                               (int)len);
            break;
        }
        const char *s = (const char *)p + off;
        int type = INFER_TOK_NORMAL;
        if (i == 0)
            type = INFER_TOK_UNKNOWN;
        else if (i <= 2)
            type = INFER_TOK_CONTROL;
        else if (len == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>')
            type = INFER_TOK_BYTE;
        if (score != score) /* NaN would break the merge order */
            score = -1e30f;
        rc = infer_tok_set(t, i, s, (size_t)len, score, type);
        off += (size_t)len;
    }
    if (rc == INFER_OK) {
        /* llama2.c's encode(): a dummy " " prefix, pieces spelled with
         * plain spaces, byte fallback to <0xXX>, BOS 1 and EOS 2. */
        t->algo = INFER_TOK_ALGO_SPM;
        t->add_space_prefix = true;
        t->byte_fallback = true;
        t->add_bos = true;
        t->unk = 0;
        t->bos = n > 1 ? 1 : -1;
        t->eos = n > 2 ? 2 : -1;
        rc = infer_tok_finish(t, err);
    }
    if (rc != INFER_OK) {
        infer_tok_free(t);
        return rc;
    }
    *out = t;
    return INFER_OK;
}

int infer_tok_from_llama2c(const char *path, int vocab_size,
                           struct infer_tok **out, struct infer_err *err)
{
    char *buf;
    size_t size = 0;
    *out = NULL;
    int rc = read_file(path, &buf, &size, err);
    if (rc != INFER_OK)
        return rc;
    rc = infer_tok_from_llama2c_mem(buf, size, vocab_size, out, err);
    free(buf);
    return rc;
}

/* ---- GGUF ---------------------------------------------------------------- */

static int32_t gguf_id(const struct infer_gguf *g, const char *key,
                       int32_t dflt)
{
    int64_t v;
    if (infer_gguf_get_i64(g, key, &v) != INFER_OK)
        return dflt;
    return v >= 0 && v < MAX_VOCAB ? (int32_t)v : -1;
}

static bool gguf_bool(const struct infer_gguf *g, const char *key, bool dflt)
{
    int64_t v;
    if (infer_gguf_get_i64(g, key, &v) != INFER_OK)
        return dflt;
    return v != 0;
}

static enum infer_tok_pre pre_from_name(const char *pre, bool *ignore_merges)
{
    static const struct {
        const char *name;
        enum infer_tok_pre pre;
    } names[] = {
        {"default", INFER_TOK_PRE_GPT2},
        {"gpt-2", INFER_TOK_PRE_GPT2},
        {"gpt2", INFER_TOK_PRE_GPT2},
        {"llama3", INFER_TOK_PRE_LLAMA3},
        {"llama-v3", INFER_TOK_PRE_LLAMA3},
        {"llama-bpe", INFER_TOK_PRE_LLAMA3},
        {"qwen2", INFER_TOK_PRE_QWEN2},
        {"smollm", INFER_TOK_PRE_SMOLLM},
        {"starcoder", INFER_TOK_PRE_SMOLLM},
        {"refact", INFER_TOK_PRE_SMOLLM},
    };
    *ignore_merges = false;
    if (pre == NULL)
        return INFER_TOK_PRE_GPT2;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(pre, names[i].name) == 0) {
            *ignore_merges = names[i].pre == INFER_TOK_PRE_LLAMA3;
            return names[i].pre;
        }
    }
    infer_log(INFER_LOG_WARN,
              "tokenizer: pre-tokenizer '%s' unknown; using GPT-2's", pre);
    return INFER_TOK_PRE_GPT2;
}

static int gguf_merges(struct infer_tok *t, const struct infer_gguf *g,
                       struct infer_err *err)
{
    int64_t key = infer_gguf_find_key(g, "tokenizer.ggml.merges");
    if (key < 0)
        return INFER_OK;
    if (infer_gguf_arr_type(g, key) != INFER_GGUF_STRING)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "tokenizer.ggml.merges: not a string array");
    uint64_t n = infer_gguf_arr_n(g, key);
    if (n > (uint64_t)MAX_VOCAB * 4)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "tokenizer.ggml.merges: %llu merges",
                             (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++) {
        size_t len;
        const char *s = infer_gguf_arr_str(g, key, i, &len);
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (sp == NULL)
            continue; /* not "left right": no merge */
        size_t l = (size_t)(sp - s);
        int rc = infer_tok_add_merge(t, s, l, sp + 1, len - l - 1, (int)i);
        if (rc != INFER_OK)
            return infer_err_set(err, rc, "tokenizer: out of memory");
    }
    return INFER_OK;
}

static int gguf_tokens(struct infer_tok *t, const struct infer_gguf *g,
                       int64_t key, struct infer_err *err)
{
    int64_t ks = infer_gguf_find_key(g, "tokenizer.ggml.scores");
    int64_t kt = infer_gguf_find_key(g, "tokenizer.ggml.token_type");
    uint64_t n = (uint64_t)t->n_vocab;
    if (ks >= 0 && infer_gguf_arr_n(g, ks) != n)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "tokenizer.ggml.scores: %llu entries for %llu "
                             "tokens",
                             (unsigned long long)infer_gguf_arr_n(g, ks),
                             (unsigned long long)n);
    if (kt >= 0 && infer_gguf_arr_n(g, kt) != n)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "tokenizer.ggml.token_type: %llu entries for "
                             "%llu tokens",
                             (unsigned long long)infer_gguf_arr_n(g, kt),
                             (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++) {
        size_t len;
        const char *s = infer_gguf_arr_str(g, key, i, &len);
        double score = 0;
        int64_t type = INFER_TOK_NORMAL;
        if (s == NULL || (ks >= 0 && infer_gguf_arr_f64(g, ks, i, &score)) ||
            (kt >= 0 && infer_gguf_arr_i64(g, kt, i, &type)))
            return infer_err_set(err, INFER_ERR_FORMAT,
                                 "tokenizer: token %llu: bad text, score or "
                                 "type",
                                 (unsigned long long)i);
        if (score != score || score > 1e30 || score < -1e30)
            score = -1e30;
        int rc = infer_tok_set(t, (int)i, s, len, (float)score,
                               type < 0 || type > 6 ? 1 : (int)type);
        if (rc != INFER_OK)
            return infer_err_set(err, rc, "tokenizer: token %llu too long",
                                 (unsigned long long)i);
    }
    return INFER_OK;
}

int infer_tok_from_gguf(const struct infer_gguf *g, struct infer_tok **out,
                        struct infer_err *err)
{
    *out = NULL;
    const char *model = infer_gguf_get_str(g, "tokenizer.ggml.model");
    if (model == NULL)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "GGUF has no tokenizer.ggml.model");
    bool spm = strcmp(model, "llama") == 0;
    if (!spm && strcmp(model, "gpt2") != 0)
        return infer_err_set(err, INFER_ERR_UNSUPPORTED,
                             "tokenizer model '%s' is not supported "
                             "(llama or gpt2)",
                             model);
    int64_t key = infer_gguf_find_key(g, "tokenizer.ggml.tokens");
    if (key < 0 || infer_gguf_arr_type(g, key) != INFER_GGUF_STRING)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "tokenizer.ggml.tokens: missing or not strings");
    uint64_t n = infer_gguf_arr_n(g, key);
    if (n == 0 || n > MAX_VOCAB)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "tokenizer.ggml.tokens: %llu tokens",
                             (unsigned long long)n);
    struct infer_tok *t = infer_tok_alloc((int)n);
    if (t == NULL)
        return infer_err_set(err, INFER_ERR_NOMEM, "tokenizer: out of memory");
    int rc = gguf_tokens(t, g, key, err);
    if (spm) {
        t->algo = INFER_TOK_ALGO_SPM;
        t->space_escape = true;
        t->byte_fallback = true;
        t->add_space_prefix =
            gguf_bool(g, "tokenizer.ggml.add_space_prefix", true);
    } else {
        t->algo = INFER_TOK_ALGO_BPE;
        t->byte_level = true;
        t->pre = pre_from_name(infer_gguf_get_str(g, "tokenizer.ggml.pre"),
                               &t->ignore_merges);
        if (rc == INFER_OK)
            rc = gguf_merges(t, g, err);
    }
    t->bos = gguf_id(g, "tokenizer.ggml.bos_token_id", spm ? 1 : -1);
    t->eos = gguf_id(g, "tokenizer.ggml.eos_token_id", spm ? 2 : -1);
    t->unk = gguf_id(g, "tokenizer.ggml.unknown_token_id", spm ? 0 : -1);
    t->eot = gguf_id(g, "tokenizer.ggml.eot_token_id", -1);
    t->eom = gguf_id(g, "tokenizer.ggml.eom_token_id", -1);
    t->add_bos = gguf_bool(g, "tokenizer.ggml.add_bos_token", spm);
    t->add_eos = gguf_bool(g, "tokenizer.ggml.add_eos_token", false);
    if (rc == INFER_OK)
        rc = infer_tok_finish(t, err);
    if (rc != INFER_OK) {
        infer_tok_free(t);
        return rc;
    }
    *out = t;
    return INFER_OK;
}

/* ---- Hugging Face tokenizer.json ------------------------------------------
 */

static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static bool jtrue(const json_t *o, const char *key)
{
    return json_is_true(json_object_get(o, key));
}

/* The Llama 3 and Qwen2 Split patterns, as their tokenizer.json spell them. */
static const char llama3_re[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char qwen2_re[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* Reads one pre-tokenizer (or a Sequence of them) into t. */
static int hf_pre(struct infer_tok *t, const json_t *pre, bool *digits,
                  struct infer_err *err)
{
    const char *type = jstr(pre, "type");
    if (pre == NULL || json_is_null(pre))
        return INFER_OK;
    if (type == NULL)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "tokenizer.json: pre_tokenizer without type");
    if (strcmp(type, "Sequence") == 0) {
        const json_t *arr = json_object_get(pre, "pretokenizers");
        size_t i;
        const json_t *v;
        json_array_foreach(arr, i, v)
        {
            int rc = hf_pre(t, v, digits, err);
            if (rc != INFER_OK)
                return rc;
        }
    } else if (strcmp(type, "ByteLevel") == 0) {
        t->byte_level = true;
        if (t->pre == INFER_TOK_PRE_NONE &&
            !json_is_false(json_object_get(pre, "use_regex")))
            t->pre = *digits ? INFER_TOK_PRE_SMOLLM : INFER_TOK_PRE_GPT2;
    } else if (strcmp(type, "Digits") == 0) {
        *digits = jtrue(pre, "individual_digits");
    } else if (strcmp(type, "Split") == 0) {
        const char *re = jstr(json_object_get(pre, "pattern"), "Regex");
        if (re != NULL && strcmp(re, llama3_re) == 0) {
            t->pre = INFER_TOK_PRE_LLAMA3;
        } else if (re != NULL && strcmp(re, qwen2_re) == 0) {
            t->pre = INFER_TOK_PRE_QWEN2;
        } else {
            t->pre = INFER_TOK_PRE_GPT2;
            infer_log(INFER_LOG_WARN, "tokenizer.json: Split pattern not "
                                      "recognised; using GPT-2's");
        }
    } else if (strcmp(type, "Metaspace") == 0) {
        t->space_escape = true;
        const char *scheme = jstr(pre, "prepend_scheme");
        t->add_space_prefix = scheme == NULL || strcmp(scheme, "never") != 0;
    } else {
        return infer_err_set(err, INFER_ERR_UNSUPPORTED,
                             "tokenizer.json: pre_tokenizer %s", type);
    }
    return INFER_OK;
}

static int hf_normalizer(struct infer_tok *t, const json_t *n,
                         struct infer_err *err)
{
    if (n == NULL || json_is_null(n))
        return INFER_OK;
    const char *type = jstr(n, "type");
    if (type == NULL)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "tokenizer.json: normalizer without type");
    if (strcmp(type, "Sequence") == 0) {
        size_t i;
        const json_t *v;
        json_array_foreach(json_object_get(n, "normalizers"), i, v)
        {
            int rc = hf_normalizer(t, v, err);
            if (rc != INFER_OK)
                return rc;
        }
    } else if (strcmp(type, "Prepend") == 0) {
        const char *p = jstr(n, "prepend");
        if (p == NULL || strcmp(p, "\xE2\x96\x81") != 0)
            return infer_err_set(err, INFER_ERR_UNSUPPORTED,
                                 "tokenizer.json: Prepend of other than "
                                 "U+2581");
        t->add_space_prefix = true;
    } else if (strcmp(type, "Replace") == 0) {
        const char *from = jstr(json_object_get(n, "pattern"), "String");
        const char *to = jstr(n, "content");
        if (from == NULL || to == NULL || strcmp(from, " ") != 0 ||
            strcmp(to, "\xE2\x96\x81") != 0)
            return infer_err_set(err, INFER_ERR_UNSUPPORTED,
                                 "tokenizer.json: Replace other than ' ' "
                                 "-> U+2581");
        t->space_escape = true;
    } else if (strcmp(type, "NFC") == 0 || strcmp(type, "NFKC") == 0) {
        infer_log(INFER_LOG_WARN,
                  "tokenizer.json: %s normalizer skipped "
                  "(input is taken as normalized)",
                  type);
    } else {
        return infer_err_set(err, INFER_ERR_UNSUPPORTED,
                             "tokenizer.json: normalizer %s", type);
    }
    return INFER_OK;
}

/* The highest id in vocab and added_tokens, or -1 on a bad entry. */
static int64_t hf_max_id(const json_t *vocab, const json_t *added)
{
    int64_t max = -1;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)vocab, k, v)
    {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) >= MAX_VOCAB)
            return -2;
        if (json_integer_value(v) > max)
            max = json_integer_value(v);
    }
    size_t i;
    json_array_foreach(added, i, v)
    {
        json_int_t id = json_integer_value(json_object_get(v, "id"));
        if (!json_is_integer(json_object_get(v, "id")) || id < 0 ||
            id >= MAX_VOCAB || jstr(v, "content") == NULL)
            return -2;
        if (id > max)
            max = id;
    }
    return max;
}

static int hf_vocab(struct infer_tok *t, const json_t *vocab,
                    const json_t *added, struct infer_err *err)
{
    const char *k;
    const json_t *v;
    int rc = INFER_OK;
    json_object_foreach((json_t *)vocab, k, v)
    {
        int id = (int)json_integer_value(v);
        rc = infer_tok_set(t, id, k, strlen(k), 0, INFER_TOK_NORMAL);
        if (rc != INFER_OK)
            return infer_err_set(err, rc, "tokenizer.json: token %d", id);
    }
    size_t i;
    json_array_foreach(added, i, v)
    {
        int id = (int)json_integer_value(json_object_get(v, "id"));
        const char *s = jstr(v, "content");
        int type =
            jtrue(v, "special") ? INFER_TOK_CONTROL : INFER_TOK_USER_DEFINED;
        rc = infer_tok_set(t, id, s, strlen(s), 0, type);
        if (rc != INFER_OK)
            return infer_err_set(err, rc, "tokenizer.json: token %d", id);
    }
    /* Ids no entry names stay empty and unused. */
    for (int id = 0; id < t->n_vocab; id++) {
        if (t->type[id] == INFER_TOK_UNDEFINED)
            t->type[id] = INFER_TOK_UNUSED;
    }
    return INFER_OK;
}

static int hf_merges(struct infer_tok *t, const json_t *merges,
                     struct infer_err *err)
{
    size_t i;
    const json_t *m;
    json_array_foreach(merges, i, m)
    {
        const char *a, *b;
        size_t la, lb;
        if (json_is_string(m)) { /* "left right" */
            const char *s = json_string_value(m);
            size_t len = json_string_length(m);
            const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
            if (sp == NULL)
                continue;
            a = s, la = (size_t)(sp - s), b = sp + 1, lb = len - la - 1;
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            la = json_string_length(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            lb = json_string_length(json_array_get(m, 1));
        } else {
            return infer_err_set(err, INFER_ERR_FORMAT,
                                 "tokenizer.json: merge %zu is neither "
                                 "\"a b\" nor [a, b]",
                                 i);
        }
        if (i > INT_MAX)
            break;
        int rc = infer_tok_add_merge(t, a, la, b, lb, (int)i);
        if (rc != INFER_OK)
            return infer_err_set(err, rc, "tokenizer: out of memory");
    }
    return INFER_OK;
}

/* BOS from a TemplateProcessing post-processor that starts with a special
 * token (TinyStories: <|start_story|>), EOS from one that ends with one. */
static void hf_post(struct infer_tok *t, const json_t *post)
{
    const char *type = jstr(post, "type");
    if (type == NULL || strcmp(type, "TemplateProcessing") != 0)
        return;
    const json_t *single = json_object_get(post, "single");
    size_t n = json_array_size(single);
    for (size_t k = 0; k<n; k += n> 1 ? n - 1 : 1) {
        const json_t *sp =
            json_object_get(json_array_get(single, k), "SpecialToken");
        const char *name = jstr(sp, "id");
        if (name == NULL)
            continue;
        int32_t id = infer_tok_find(t, name, strlen(name));
        if (id < 0)
            continue;
        if (k == 0) {
            t->bos = id;
            t->add_bos = true;
        } else {
            t->eos = id;
            t->add_eos = true;
        }
    }
}

static void hf_default_eos(struct infer_tok *t)
{
    static const char *const names[] = {"<|endoftext|>", "</s>",
                                        "<|end_of_text|>", "<|im_end|>"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && t->eos < 0; i++)
        t->eos = infer_tok_find(t, names[i], strlen(names[i]));
}

static int hf_build(struct infer_tok *t, const json_t *root,
                    const json_t *model, struct infer_err *err)
{
    int rc = hf_vocab(t, json_object_get(model, "vocab"),
                      json_object_get(root, "added_tokens"), err);
    if (rc != INFER_OK)
        return rc;
    t->algo = INFER_TOK_ALGO_BPE;
    t->hf_bpe = true;
    t->byte_fallback = jtrue(model, "byte_fallback");
    t->fuse_unk = jtrue(model, "fuse_unk");
    t->ignore_merges = jtrue(model, "ignore_merges");
    const char *unk = jstr(model, "unk_token");
    if (unk != NULL) {
        rc = infer_tok_index(t);
        if (rc != INFER_OK)
            return infer_err_set(err, rc, "tokenizer: out of memory");
        t->unk = infer_tok_find(t, unk, strlen(unk));
    }
    bool digits = false;
    rc = hf_normalizer(t, json_object_get(root, "normalizer"), err);
    if (rc == INFER_OK)
        rc = hf_pre(t, json_object_get(root, "pre_tokenizer"), &digits, err);
    if (rc == INFER_OK)
        rc = hf_merges(t, json_object_get(model, "merges"), err);
    if (rc != INFER_OK)
        return rc;
    const char *dec = jstr(json_object_get(root, "decoder"), "type");
    if (dec != NULL && strcmp(dec, "ByteLevel") == 0)
        t->byte_level = true;
    hf_post(t, json_object_get(root, "post_processor"));
    return INFER_OK;
}

/* Loads the JSON; config (optional, a config.json) supplies bos/eos ids. */
static int hf_load(const char *json, size_t size, const char *config,
                   size_t config_size, struct infer_tok **out,
                   struct infer_err *err)
{
    *out = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(json, size, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "tokenizer.json: line %d: %s", jerr.line,
                             jerr.text);
    const json_t *model = json_object_get(root, "model");
    const char *type = jstr(model, "type");
    int rc = INFER_OK;
    struct infer_tok *t = NULL;
    if (type == NULL || strcmp(type, "BPE") != 0 ||
        !json_is_object(json_object_get(model, "vocab"))) {
        rc = infer_err_set(err, INFER_ERR_UNSUPPORTED,
                           "tokenizer.json: model type %s (only BPE)",
                           type ? type : "(none)");
        goto out;
    }
    int64_t max = hf_max_id(json_object_get(model, "vocab"),
                            json_object_get(root, "added_tokens"));
    if (max < 0) {
        rc = infer_err_set(err, INFER_ERR_FORMAT,
                           "tokenizer.json: empty vocab or a bad token id");
        goto out;
    }
    t = infer_tok_alloc((int)max + 1);
    if (t == NULL) {
        rc = infer_err_set(err, INFER_ERR_NOMEM, "tokenizer: out of memory");
        goto out;
    }
    rc = hf_build(t, root, model, err);
    if (rc != INFER_OK)
        goto out;
    json_t *cfg = config ? json_loadb(config, config_size, 0, NULL) : NULL;
    json_t *b = json_object_get(cfg, "bos_token_id");
    json_t *e = json_object_get(cfg, "eos_token_id");
    if (json_is_integer(b))
        t->bos = (int32_t)json_integer_value(b);
    if (json_is_integer(e))
        t->eos = (int32_t)json_integer_value(e);
    json_decref(cfg);
    hf_default_eos(t);
    rc = infer_tok_finish(t, err);
out:
    json_decref(root);
    if (rc != INFER_OK) {
        infer_tok_free(t);
        return rc;
    }
    *out = t;
    return INFER_OK;
}

int infer_tok_from_hf_json_mem(const char *json, size_t size,
                               struct infer_tok **out, struct infer_err *err)
{
    return hf_load(json, size, NULL, 0, out, err);
}

int infer_tok_from_hf_json(const char *path, struct infer_tok **out,
                           struct infer_err *err)
{
    char *buf, *cfg = NULL;
    size_t size = 0, cfg_size = 0;
    *out = NULL;
    int rc = read_file(path, &buf, &size, err);
    if (rc != INFER_OK)
        return rc;
    char cpath[PATH_MAX];
    if (sibling(path, "config.json", cpath, sizeof(cpath)) &&
        access(cpath, R_OK) == 0 &&
        read_file(cpath, &cfg, &cfg_size, NULL) != INFER_OK)
        cfg = NULL;
    rc = hf_load(buf, size, cfg, cfg_size, out, err);
    free(buf);
    free(cfg);
    return rc;
}

/* ---- the tokenizer of a model file ----------------------------------------
 */

/* True when a GGUF SentencePiece vocabulary cannot drive the merges: every
 * score equal (TinyStories-656K writes -1000 for all). */
static bool gguf_vocab_flat(const struct infer_tok *t)
{
    if (t->algo != INFER_TOK_ALGO_SPM)
        return t->n_merges == 0;
    for (int i = 1; i < t->n_vocab; i++) {
        if (t->score[i] != t->score[0])
            return false;
    }
    return true;
}

/* Makes hf carry gguf's special ids and flags after checking that every
 * token has the same text in both. */
static int adopt(struct infer_tok *hf, const struct infer_tok *gg,
                 const char *path, struct infer_err *err)
{
    if (hf->n_vocab != gg->n_vocab)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "%s: %d tokens, the GGUF has %d", path,
                             hf->n_vocab, gg->n_vocab);
    for (int i = 0; i < hf->n_vocab; i++) {
        if (hf->text_len[i] != gg->text_len[i] ||
            memcmp(hf->text + hf->text_off[i], gg->text + gg->text_off[i],
                   hf->text_len[i]) != 0)
            return infer_err_set(err, INFER_ERR_FORMAT,
                                 "%s: token %d differs from the GGUF's", path,
                                 i);
    }
    hf->bos = gg->bos;
    hf->eos = gg->eos;
    hf->eot = gg->eot;
    hf->add_bos = gg->add_bos;
    hf->add_eos = gg->add_eos;
    memcpy(hf->eog, gg->eog, (size_t)hf->n_vocab);
    return INFER_OK;
}

int infer_tok_for_gguf(const struct infer_gguf *g, const char *model_path,
                       struct infer_tok **out, struct infer_err *err)
{
    struct infer_tok *t;
    *out = NULL;
    int rc = infer_tok_from_gguf(g, &t, err);
    if (rc != INFER_OK)
        return rc;
    char jpath[PATH_MAX];
    if (!gguf_vocab_flat(t) || model_path == NULL ||
        !sibling(model_path, "tokenizer.json", jpath, sizeof(jpath)) ||
        access(jpath, R_OK) != 0) {
        if (gguf_vocab_flat(t))
            infer_log(INFER_LOG_WARN,
                      "tokenizer: %s has no merge data and no "
                      "tokenizer.json beside it; prompts will tokenize "
                      "poorly",
                      model_path ? model_path : "the GGUF");
        *out = t;
        return INFER_OK;
    }
    struct infer_tok *hf;
    rc = infer_tok_from_hf_json(jpath, &hf, err);
    if (rc == INFER_OK)
        rc = adopt(hf, t, jpath, err);
    infer_tok_free(t);
    if (rc != INFER_OK) {
        infer_tok_free(hf);
        return rc;
    }
    *out = hf;
    return INFER_OK;
}

/* llama2.c: the header's vocab_size (sixth int32; negative means an
 * unshared classifier), then tokenizer.bin or tok<N>.bin beside it. */
static int llama2c_for(const char *path, struct infer_tok **out,
                       struct infer_err *err)
{
    FILE *f = fopen(path, "rb");
    int32_t hdr[7];
    if (f == NULL)
        return infer_err_set(err, INFER_ERR_IO, "%s: %s", path,
                             strerror(errno));
    size_t got = fread(hdr, sizeof(int32_t), 7, f);
    fclose(f);
    if (got != 7 || hdr[5] == 0 || hdr[5] == INT32_MIN ||
        abs(hdr[5]) > MAX_VOCAB)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "%s: not a GGUF or llama2.c checkpoint", path);
    int vocab = abs(hdr[5]);
    char name[32], tpath[PATH_MAX];
    snprintf(name, sizeof(name), "tok%d.bin", vocab);
    const char *names[] = {"tokenizer.bin", name};
    for (size_t i = 0; i < 2; i++) {
        if (sibling(path, names[i], tpath, sizeof(tpath)) &&
            access(tpath, R_OK) == 0)
            return infer_tok_from_llama2c(tpath, vocab, out, err);
    }
    return infer_err_set(err, INFER_ERR_IO,
                         "%s: no tokenizer.bin or %s beside it", path, name);
}

int infer_tok_load_for_model(const char *model_path, struct infer_tok **out,
                             struct infer_err *err)
{
    *out = NULL;
    if (model_path == NULL)
        return infer_err_set(err, INFER_ERR_ARG, "no model path");
    char magic[4] = {0};
    FILE *f = fopen(model_path, "rb");
    if (f == NULL)
        return infer_err_set(err, INFER_ERR_IO, "%s: %s", model_path,
                             strerror(errno));
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    if (got == 4 && memcmp(magic, "GGUF", 4) == 0) {
        struct infer_gguf *g;
        int rc = infer_gguf_open(model_path, &g, err);
        if (rc != INFER_OK)
            return rc;
        rc = infer_tok_for_gguf(g, model_path, out, err);
        infer_gguf_free(g);
        return rc;
    }
    if (got == 4 && (memcmp(magic, "{", 1) == 0))
        return infer_tok_from_hf_json(model_path, out, err);
    return llama2c_for(model_path, out, err);
}
