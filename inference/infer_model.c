/*
 * infer_model.c: loading models. GGUF files of the llama and qwen2
 * architectures and llama2.c version-0 checkpoints, both memory-mapped;
 * weights stay in the mapping in their file type. Every tensor's shape and
 * type is checked against the hyperparameters before anything uses it;
 * small vectors (norms, biases) are converted to float copies.
 */
#include "infer_model.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "infer_kernels.h"

/* Sanity bounds on hyperparameters; real models are far inside them. */
#define MAX_DIM    (1 << 16)
#define MAX_LAYERS 1024
#define MAX_VOCAB  (1 << 22)
#define MAX_HIDDEN (1 << 20)
#define MAX_HEADS  1024

const char *infer_arch_name(enum infer_arch a)
{
    return a == INFER_ARCH_QWEN2 ? "qwen2" : "llama";
}

/* ---- owned float vectors ------------------------------------------------ */

/* Vectors are carved from one buffer sized up front (reserve), so pointers
 * handed out stay valid. */
static int owned_reserve(struct infer_model *m, size_t n)
{
    m->owned = malloc(n * sizeof(float) + 64);
    if (m->owned == NULL)
        return INFER_ERR_NOMEM;
    m->cap_owned = n;
    return INFER_OK;
}

static float *owned_take(struct infer_model *m, size_t n)
{
    if (m->cap_owned - m->n_owned < n)
        return NULL;
    float *p = m->owned + m->n_owned;
    m->n_owned += n;
    return p;
}

/* ---- GGUF -------------------------------------------------------------------
 */

static int get_int(const struct infer_gguf *g, const char *arch,
                   const char *key, int def, int lo, int hi, int *out,
                   struct infer_err *err)
{
    char full[128];
    snprintf(full, sizeof(full), "%s.%s", arch, key);
    int64_t v;
    if (infer_gguf_find_key(g, full) < 0) {
        if (def < 0)
            return infer_err_set(err, INFER_ERR_FORMAT, "model: missing key %s",
                                 full);
        *out = def;
        return INFER_OK;
    }
    if (infer_gguf_get_i64(g, full, &v) != INFER_OK || v < lo || v > hi)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "model: key %s is not an integer in [%d, %d]",
                             full, lo, hi);
    *out = (int)v;
    return INFER_OK;
}

static int get_float(const struct infer_gguf *g, const char *arch,
                     const char *key, double def, double lo, double hi,
                     float *out, struct infer_err *err)
{
    char full[128];
    snprintf(full, sizeof(full), "%s.%s", arch, key);
    double v = def;
    if (infer_gguf_find_key(g, full) >= 0 &&
        infer_gguf_get_f64(g, full, &v) != INFER_OK)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "model: key %s is not a number", full);
    if (!(v >= lo && v <= hi))
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "model: key %s = %g is out of range", full, v);
    *out = (float)v;
    return INFER_OK;
}

static int gguf_config(const struct infer_gguf *g, struct infer_config *c,
                       struct infer_err *err)
{
    const char *arch = infer_gguf_get_str(g, "general.architecture");
    if (arch == NULL)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "model: no general.architecture");
    if (strcmp(arch, "llama") == 0)
        c->arch = INFER_ARCH_LLAMA;
    else if (strcmp(arch, "qwen2") == 0)
        c->arch = INFER_ARCH_QWEN2;
    else
        return infer_err_set(err, INFER_ERR_UNSUPPORTED,
                             "model: architecture '%.40s' is not supported "
                             "(llama, qwen2)",
                             arch);
    int st = get_int(g, arch, "embedding_length", -1, 1, MAX_DIM, &c->dim, err);
    if (st == INFER_OK)
        st = get_int(g, arch, "block_count", -1, 1, MAX_LAYERS, &c->n_layers,
                     err);
    if (st == INFER_OK)
        st = get_int(g, arch, "attention.head_count", -1, 1, MAX_HEADS,
                     &c->n_heads, err);
    if (st == INFER_OK)
        st = get_int(g, arch, "attention.head_count_kv", c->n_heads, 1,
                     MAX_HEADS, &c->n_kv_heads, err);
    if (st == INFER_OK)
        st = get_int(g, arch, "feed_forward_length", -1, 1, MAX_HIDDEN,
                     &c->hidden, err);
    if (st == INFER_OK)
        st = get_int(g, arch, "context_length", 2048, 1, 1 << 24,
                     &c->n_ctx_train, err);
    if (st == INFER_OK)
        st = get_int(g, arch, "attention.key_length", c->dim / c->n_heads, 1,
                     MAX_DIM, &c->head_dim, err);
    if (st == INFER_OK)
        st = get_int(g, arch, "rope.dimension_count", c->head_dim, 0, MAX_DIM,
                     &c->n_rot, err);
    if (st == INFER_OK)
        st = get_float(g, arch, "rope.freq_base", 10000.0, 1.0, 1e12,
                       &c->rope_base, err);
    if (st == INFER_OK)
        st = get_float(g, arch, "attention.layer_norm_rms_epsilon", 1e-5, 0,
                       1.0, &c->rms_eps, err);
    if (st != INFER_OK)
        return st;
    c->rope_neox = c->arch == INFER_ARCH_QWEN2;
    return INFER_OK;
}

static int check_config(const struct infer_config *c, struct infer_err *err)
{
    if (c->n_heads % c->n_kv_heads != 0)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "model: %d heads is not a multiple of %d KV "
                             "heads",
                             c->n_heads, c->n_kv_heads);
    if ((int64_t)c->n_heads * c->head_dim > MAX_DIM)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "model: %d heads of %d dims is too wide",
                             c->n_heads, c->head_dim);
    if (c->n_rot % 2 != 0 || c->n_rot > c->head_dim)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "model: rope dimension %d must be even and at "
                             "most the head size %d",
                             c->n_rot, c->head_dim);
    if (c->n_vocab < 1 || c->n_vocab > MAX_VOCAB)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "model: vocabulary of %d tokens", c->n_vocab);
    return INFER_OK;
}

/* Finds a matrix tensor of exactly (rows, cols) and a supported type. */
static int gguf_matrix(const struct infer_gguf *g, const char *name,
                       int64_t rows, int64_t cols, bool optional,
                       struct infer_weight *w, struct infer_err *err)
{
    const struct infer_gguf_tensor *t = infer_gguf_find_tensor(g, name);
    memset(w, 0, sizeof(*w));
    if (t == NULL) {
        if (optional)
            return INFER_OK;
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "model: missing tensor '%s'", name);
    }
    if (t->n_dims > 2 || t->ne[0] != cols || t->ne[1] != rows)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "model: tensor '%s' is [%lld, %lld], expected "
                             "[%lld, %lld]",
                             name, (long long)t->ne[0], (long long)t->ne[1],
                             (long long)cols, (long long)rows);
    if (!infer_type_supported(t->type))
        return infer_err_set(err, INFER_ERR_UNSUPPORTED,
                             "model: tensor '%s' has type %s, which is not "
                             "supported",
                             name, infer_type_name(t->type));
    w->data = t->data;
    w->type = t->type;
    w->rows = rows;
    w->cols = cols;
    w->row_bytes = infer_row_bytes(t->type, cols);
    return INFER_OK;
}

/* A vector of n floats: F32 in place, F16/BF16 converted into m->owned. */
static int gguf_vector(struct infer_model *m, const char *name, int64_t n,
                       bool optional, const float **out, struct infer_err *err)
{
    *out = NULL;
    const struct infer_gguf_tensor *t = infer_gguf_find_tensor(m->gguf, name);
    if (t == NULL) {
        if (optional)
            return INFER_OK;
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "model: missing tensor '%s'", name);
    }
    if (t->ne[0] != n || t->ne[1] != 1 || t->ne[2] != 1 || t->ne[3] != 1)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "model: tensor '%s' is not a vector of %lld", name,
                             (long long)n);
    if (t->type != INFER_TYPE_F32 && t->type != INFER_TYPE_F16 &&
        t->type != INFER_TYPE_BF16)
        return infer_err_set(err, INFER_ERR_UNSUPPORTED,
                             "model: vector '%s' has type %s", name,
                             infer_type_name(t->type));
    if (t->type == INFER_TYPE_F32) {
        *out = t->data;
        return INFER_OK;
    }
    float *v = owned_take(m, (size_t)n);
    if (v == NULL)
        return infer_err_set(err, INFER_ERR_NOMEM, "model: out of memory");
    infer_dequantize_row(t->type, t->data, v, n);
    *out = v;
    return INFER_OK;
}

static int gguf_layer(struct infer_model *m, int i, struct infer_err *err)
{
    const struct infer_config *c = &m->cfg;
    struct infer_layer *L = &m->layers[i];
    int64_t qd = (int64_t)c->n_heads * c->head_dim;
    int64_t kvd = (int64_t)c->n_kv_heads * c->head_dim;
    char nm[96];
#define NM(s) (snprintf(nm, sizeof(nm), "blk.%d." s, i), nm)
    int st = gguf_vector(m, NM("attn_norm.weight"), c->dim, false,
                         &L->attn_norm, err);
    if (st == INFER_OK)
        st = gguf_vector(m, NM("ffn_norm.weight"), c->dim, false, &L->ffn_norm,
                         err);
    if (st == INFER_OK)
        st = gguf_matrix(m->gguf, NM("attn_q.weight"), qd, c->dim, false,
                         &L->wq, err);
    if (st == INFER_OK)
        st = gguf_matrix(m->gguf, NM("attn_k.weight"), kvd, c->dim, false,
                         &L->wk, err);
    if (st == INFER_OK)
        st = gguf_matrix(m->gguf, NM("attn_v.weight"), kvd, c->dim, false,
                         &L->wv, err);
    if (st == INFER_OK)
        st = gguf_matrix(m->gguf, NM("attn_output.weight"), c->dim, qd, false,
                         &L->wo, err);
    if (st == INFER_OK)
        st = gguf_matrix(m->gguf, NM("ffn_gate.weight"), c->hidden, c->dim,
                         false, &L->w_gate, err);
    if (st == INFER_OK)
        st = gguf_matrix(m->gguf, NM("ffn_up.weight"), c->hidden, c->dim, false,
                         &L->w_up, err);
    if (st == INFER_OK)
        st = gguf_matrix(m->gguf, NM("ffn_down.weight"), c->dim, c->hidden,
                         false, &L->w_down, err);
    bool need_bias = c->arch == INFER_ARCH_QWEN2;
    if (st == INFER_OK)
        st = gguf_vector(m, NM("attn_q.bias"), qd, !need_bias, &L->bq, err);
    if (st == INFER_OK)
        st = gguf_vector(m, NM("attn_k.bias"), kvd, !need_bias, &L->bk, err);
    if (st == INFER_OK)
        st = gguf_vector(m, NM("attn_v.bias"), kvd, !need_bias, &L->bv, err);
#undef NM
    return st;
}

static int gguf_load(struct infer_model *m, struct infer_err *err)
{
    struct infer_config *c = &m->cfg;
    int st = gguf_config(m->gguf, c, err);
    if (st != INFER_OK)
        return st;
    const struct infer_gguf_tensor *emb =
        infer_gguf_find_tensor(m->gguf, "token_embd.weight");
    if (emb == NULL)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "model: missing tensor 'token_embd.weight'");
    if (emb->ne[1] > MAX_VOCAB)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "model: token_embd.weight has %lld rows",
                             (long long)emb->ne[1]);
    c->n_vocab = (int)emb->ne[1];
    st = check_config(c, err);
    if (st != INFER_OK)
        return st;
    int64_t qd = (int64_t)c->n_heads * c->head_dim;
    int64_t kvd = (int64_t)c->n_kv_heads * c->head_dim;
    /* Two norms per layer plus biases plus the final norm, as floats. */
    st = owned_reserve(m, (size_t)c->n_layers * (2 * c->dim + qd + 2 * kvd) +
                              (size_t)c->dim);
    if (st != INFER_OK)
        return infer_err_set(err, st, "model: out of memory");
    m->layers = calloc((size_t)c->n_layers, sizeof(*m->layers));
    if (m->layers == NULL)
        return infer_err_set(err, INFER_ERR_NOMEM, "model: out of memory");
    st = gguf_matrix(m->gguf, "token_embd.weight", c->n_vocab, c->dim, false,
                     &m->tok_embd, err);
    if (st == INFER_OK)
        st = gguf_matrix(m->gguf, "output.weight", c->n_vocab, c->dim, true,
                         &m->output, err);
    if (st == INFER_OK)
        st = gguf_vector(m, "output_norm.weight", c->dim, false,
                         &m->output_norm, err);
    for (int i = 0; st == INFER_OK && i < c->n_layers; i++)
        st = gguf_layer(m, i, err);
    if (st != INFER_OK)
        return st;
    c->tied_output = m->output.data == NULL;
    if (c->tied_output)
        m->output = m->tok_embd;
    c->has_qkv_bias = m->layers[0].bq != NULL;
    m->chat_template = infer_gguf_get_str(m->gguf, "tokenizer.chat_template");
    m->name = infer_gguf_get_str(m->gguf, "general.name");
    return INFER_OK;
}

/* ---- llama2.c
 * ---------------------------------------------------------------- */

/* Version-0 header: dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 * vocab_size (negative: separate classifier), seq_len; then float32 arrays
 * in a fixed order (see llama2c_load). */
static int llama2c_load(struct infer_model *m, struct infer_err *err)
{
    int32_t h[7];
    if (m->map_size < sizeof(h))
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "llama2c: file too small for the header");
    memcpy(h, m->map, sizeof(h));
    struct infer_config *c = &m->cfg;
    bool shared = h[5] > 0;
    c->arch = INFER_ARCH_LLAMA;
    c->dim = h[0];
    c->hidden = h[1];
    c->n_layers = h[2];
    c->n_heads = h[3];
    c->n_kv_heads = h[4];
    c->n_vocab = h[5] == INT32_MIN ? 0 : abs(h[5]);
    c->n_ctx_train = h[6];
    if (c->dim < 1 || c->dim > MAX_DIM || c->hidden < 1 ||
        c->hidden > MAX_HIDDEN || c->n_layers < 1 || c->n_layers > MAX_LAYERS ||
        c->n_heads < 1 || c->n_heads > MAX_HEADS || c->n_kv_heads < 1 ||
        c->n_kv_heads > MAX_HEADS || c->n_ctx_train < 1 ||
        c->n_ctx_train > (1 << 24) || c->dim % c->n_heads != 0)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "llama2c: bad header (dim %d hidden %d layers "
                             "%d heads %d/%d seq %d)",
                             h[0], h[1], h[2], h[3], h[4], h[6]);
    c->head_dim = c->dim / c->n_heads;
    c->n_rot = c->head_dim;
    c->rope_base = 10000.0f;
    c->rms_eps = 1e-5f;
    c->tied_output = shared;
    int st = check_config(c, err);
    if (st != INFER_OK)
        return st;
    uint64_t D = (uint64_t)c->dim, L = (uint64_t)c->n_layers;
    uint64_t kvd = (uint64_t)c->n_kv_heads * c->head_dim;
    uint64_t H = (uint64_t)c->hidden, V = (uint64_t)c->n_vocab;
    /* All products are far below 2^64 given the bounds above. */
    uint64_t need =
        (V * D + L * D + L * D * D + 2 * L * D * kvd + L * D * D + L * D +
         3 * L * D * H + D + (uint64_t)c->n_ctx_train * c->head_dim +
         (shared ? 0 : V * D)) *
            4 +
        sizeof(h);
    if (need > m->map_size)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "llama2c: file has %zu bytes, the header needs "
                             "%llu",
                             m->map_size, (unsigned long long)need);
    m->layers = calloc((size_t)L, sizeof(*m->layers));
    if (m->layers == NULL)
        return infer_err_set(err, INFER_ERR_NOMEM, "llama2c: out of memory");
    const float *p = (const float *)((const char *)m->map + sizeof(h));
#define W(rows_, cols_)                                                        \
    ((struct infer_weight){NULL, INFER_TYPE_F32, (int64_t)(rows_),             \
                           (int64_t)(cols_), (size_t)(cols_)*4, NULL})
    m->tok_embd = W(V, D);
    m->tok_embd.data = p;
    p += V * D;
    for (uint64_t l = 0; l < L; l++)
        m->layers[l].attn_norm = p + l * D;
    p += L * D;
    for (uint64_t l = 0; l < L; l++) {
        m->layers[l].wq = W(D, D);
        m->layers[l].wq.data = p + l * D * D;
    }
    p += L * D * D;
    for (uint64_t l = 0; l < L; l++) {
        m->layers[l].wk = W(kvd, D);
        m->layers[l].wk.data = p + l * D * kvd;
    }
    p += L * D * kvd;
    for (uint64_t l = 0; l < L; l++) {
        m->layers[l].wv = W(kvd, D);
        m->layers[l].wv.data = p + l * D * kvd;
    }
    p += L * D * kvd;
    for (uint64_t l = 0; l < L; l++) {
        m->layers[l].wo = W(D, D);
        m->layers[l].wo.data = p + l * D * D;
    }
    p += L * D * D;
    for (uint64_t l = 0; l < L; l++)
        m->layers[l].ffn_norm = p + l * D;
    p += L * D;
    for (uint64_t l = 0; l < L; l++) {
        m->layers[l].w_gate = W(H, D);
        m->layers[l].w_gate.data = p + l * D * H;
    }
    p += L * D * H;
    for (uint64_t l = 0; l < L; l++) {
        m->layers[l].w_down = W(D, H);
        m->layers[l].w_down.data = p + l * D * H;
    }
    p += L * D * H;
    for (uint64_t l = 0; l < L; l++) {
        m->layers[l].w_up = W(H, D);
        m->layers[l].w_up.data = p + l * D * H;
    }
    p += L * D * H;
    m->output_norm = p;
    p += D;
    p += (uint64_t)c->n_ctx_train * c->head_dim; /* freq_cis_real, _imag */
    m->output = shared ? m->tok_embd : W(V, D);
    if (!shared)
        m->output.data = p;
#undef W
    return INFER_OK;
}

/* ---- tokenizer
 * ----------------------------------------------------------------- */

/* dir of path + name into buf; false if it does not fit. */
static bool sibling(const char *path, const char *name, char *buf, size_t cap)
{
    const char *slash = strrchr(path, '/');
    int dl = slash != NULL ? (int)(slash - path + 1) : 0;
    int n = snprintf(buf, cap, "%.*s%s", dl, path, name);
    return n > 0 && (size_t)n < cap;
}

static bool file_exists(const char *p)
{
    return access(p, R_OK) == 0;
}

static int load_tokenizer(struct infer_model *m, const char *path,
                          const struct infer_model_params *p,
                          struct infer_err *err)
{
    char buf[4096];
    const char *tp = p != NULL ? p->tokenizer_path : NULL;
    int st;
    if (tp == NULL && m->source == INFER_SOURCE_LLAMA2C) {
        char alt[32];
        snprintf(alt, sizeof(alt), "tok%d.bin", m->cfg.n_vocab);
        if (sibling(path, "tokenizer.bin", buf, sizeof(buf)) &&
            file_exists(buf))
            tp = buf;
        else if (sibling(path, alt, buf, sizeof(buf)) && file_exists(buf))
            tp = buf;
        else
            return infer_err_set(err, INFER_ERR_IO,
                                 "model: no tokenizer.bin or %s next to %s",
                                 alt, path);
    }
    if (tp == NULL) {
        /* Its own vocabulary, or the tokenizer.json beside it when that
         * vocabulary has no merge data (TinyStories-656K). */
        st = infer_tok_for_gguf(m->gguf, path, &m->tok, err);
    } else {
        size_t n = strlen(tp);
        if (n >= 5 && strcmp(tp + n - 5, ".json") == 0)
            st = infer_tok_from_hf_json(tp, &m->tok, err);
        else
            st = infer_tok_from_llama2c(tp, m->cfg.n_vocab, &m->tok, err);
    }
    if (st != INFER_OK)
        return st;
    if (infer_tok_n_vocab(m->tok) > m->cfg.n_vocab)
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "model: tokenizer has %d tokens, the model %d",
                             infer_tok_n_vocab(m->tok), m->cfg.n_vocab);
    return INFER_OK;
}

/* ---- entry points
 * ---------------------------------------------------------------- */

/* Bytes of w a matmul streams: its packed copy if it has one. */
static uint64_t streamed_bytes(const struct infer_weight *w)
{
    if (w->packed != NULL)
        return (uint64_t)(w->rows / INFER_Q8R_ROWS) *
               infer_packed_group_bytes(w->type, w->cols);
    return (uint64_t)w->rows * w->row_bytes;
}

static void account(struct infer_model *m)
{
    const struct infer_config *c = &m->cfg;
    uint64_t bytes = 0, params = 0;
    for (int i = 0; i < c->n_layers; i++) {
        const struct infer_weight *w[7] = {
            &m->layers[i].wq,    &m->layers[i].wk,     &m->layers[i].wv,
            &m->layers[i].wo,    &m->layers[i].w_gate, &m->layers[i].w_up,
            &m->layers[i].w_down};
        for (int j = 0; j < 7; j++) {
            bytes += streamed_bytes(w[j]);
            params += (uint64_t)w[j]->rows * (uint64_t)w[j]->cols;
        }
        bytes += 2 * (uint64_t)c->dim * 4;
    }
    bytes += streamed_bytes(&m->output) + c->dim * 4u;
    params += (uint64_t)m->tok_embd.rows * (uint64_t)m->tok_embd.cols;
    if (!c->tied_output)
        params += (uint64_t)m->output.rows * (uint64_t)m->output.cols;
    m->weight_bytes = bytes;
    m->n_params = params;
}

void *infer_alloc_zeroed(size_t bytes)
{
    size_t n = bytes > 0 ? (bytes + 63) / 64 * 64 : 64;
    void *p = aligned_alloc(64, n);
    if (p != NULL)
        memset(p, 0, n);
    return p;
}

void *infer_alloc_big(size_t bytes)
{
    const size_t huge = (size_t)2 << 20;
    size_t n = (bytes + huge - 1) / huge * huge;
    void *p = aligned_alloc(huge, n > 0 ? n : huge);
#ifdef MADV_HUGEPAGE
    if (p != NULL) /* before the first touch, which then faults 2 MB in */
        madvise(p, n > 0 ? n : huge, MADV_HUGEPAGE);
#endif
    return p;
}

/* Whether w gets a packed copy (infer_kernels.h): whole 16-row groups of
 * a type the best kernel set multiplies packed. */
static bool packs(const struct infer_weight *w)
{
    return w->rows % INFER_Q8R_ROWS == 0 &&
           infer_packed_fn(infer_kernels_best(), w->type) != NULL &&
           infer_packed_group_bytes(w->type, w->cols) != 0;
}

static size_t packed_bytes(const struct infer_weight *w)
{
    size_t b = (size_t)(w->rows / INFER_Q8R_ROWS) *
               infer_packed_group_bytes(w->type, w->cols);
    return (b + 63) / 64 * 64;
}

/* Packs w at dst, then lets the kernel drop the file pages it came from
 * (the file stays mapped; a row lookup faults its page back in). */
static void repack(struct infer_weight *w, char *dst)
{
    infer_pack(w->type, w->data, w->row_bytes, w->rows, w->cols, dst);
    w->packed = dst;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)w->data + page - 1) / page * page;
    uintptr_t b =
        ((uintptr_t)w->data + (size_t)w->rows * w->row_bytes) / page * page;
    if (b > a)
        madvise((void *)a, b - a, MADV_DONTNEED);
}

/* Every layer weight and the output that packs, into one buffer in the
 * order a forward pass reads them, on 2 MB pages (infer_alloc_big): on
 * SmolLM2-135M Q8_0 here, 5-20% more tokens a second at batch 1 and
 * 10-25% at batch 16 than separate buffers on 4 KB pages (interleaved
 * runs). */
static int repack_all(struct infer_model *m, const struct infer_model_params *p,
                      struct infer_err *err)
{
    const char *env = getenv("ARENA_REPACK");
    if ((p != NULL && p->no_repack) || (env != NULL && strcmp(env, "0") == 0))
        return INFER_OK;
    int nl = m->cfg.n_layers, nw = 7 * nl + 1;
    struct infer_weight **w = malloc((size_t)nw * sizeof(*w));
    if (w == NULL)
        return infer_err_set(err, INFER_ERR_NOMEM, "model: out of memory");
    for (int i = 0; i < nl; i++) {
        struct infer_layer *L = &m->layers[i];
        struct infer_weight *lw[7] = {&L->wq,     &L->wk,   &L->wv,    &L->wo,
                                      &L->w_gate, &L->w_up, &L->w_down};
        memcpy(w + 7 * i, lw, sizeof(lw));
    }
    w[nw - 1] = &m->output;
    size_t total = 0;
    for (int i = 0; i < nw; i++)
        total += packs(w[i]) ? packed_bytes(w[i]) : 0;
    if (total > 0) {
        m->packed = infer_alloc_big(total);
        if (m->packed == NULL) {
            free(w);
            return infer_err_set(err, INFER_ERR_NOMEM,
                                 "model: out of memory repacking");
        }
    }
    char *at = m->packed;
    for (int i = 0; i < nw; i++)
        if (packs(w[i])) {
            repack(w[i], at);
            at += packed_bytes(w[i]);
        }
    free(w);
    return INFER_OK;
}

static int map_file(struct infer_model *m, const char *path,
                    struct infer_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return infer_err_set(err, INFER_ERR_IO, "model: cannot open %s: %s",
                             path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size < 32) {
        close(fd);
        return infer_err_set(err, INFER_ERR_FORMAT,
                             "model: %s is not a model file", path);
    }
    void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return infer_err_set(err, INFER_ERR_IO, "model: cannot map %s", path);
    m->map = p;
    m->map_size = (size_t)sb.st_size;
    return INFER_OK;
}

int infer_model_load(const char *path, const struct infer_model_params *p,
                     struct infer_model **out, struct infer_err *err)
{
    if (path == NULL || out == NULL)
        return infer_err_set(err, INFER_ERR_ARG, "model: bad arguments");
    *out = NULL;
    struct infer_model *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return infer_err_set(err, INFER_ERR_NOMEM, "model: out of memory");
    int st = map_file(m, path, err);
    if (st == INFER_OK && memcmp(m->map, "GGUF", 4) == 0) {
        m->source = INFER_SOURCE_GGUF;
        munmap(m->map, m->map_size); /* the reader maps it itself */
        m->map = NULL;
        st = infer_gguf_open(path, &m->gguf, err);
        if (st == INFER_OK)
            st = gguf_load(m, err);
    } else if (st == INFER_OK) {
        m->source = INFER_SOURCE_LLAMA2C;
        st = llama2c_load(m, err);
    }
    if (st == INFER_OK && m->name == NULL) {
        const char *slash = strrchr(path, '/');
        m->name_buf = strdup(slash != NULL ? slash + 1 : path);
        m->name = m->name_buf != NULL ? m->name_buf : "model";
    }
    if (st == INFER_OK && (p == NULL || !p->no_tokenizer))
        st = load_tokenizer(m, path, p, err);
    if (st == INFER_OK)
        st = repack_all(m, p, err);
    if (st != INFER_OK) {
        infer_model_free(m);
        return st;
    }
    account(m);
    *out = m;
    return INFER_OK;
}

void infer_model_free(struct infer_model *m)
{
    if (m == NULL)
        return;
    infer_tok_free(m->tok);
    infer_gguf_free(m->gguf);
    if (m->map != NULL)
        munmap(m->map, m->map_size);
    free(m->packed);
    free(m->layers);
    free(m->owned);
    free(m->name_buf);
    free(m);
}
