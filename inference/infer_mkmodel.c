/*
 * infer_mkmodel.c: writes GGUF v3 files of real model shapes with random
 * weights (for tests and benchmarks: weights' values do not change the
 * cost), and the `arena mkmodel` command.
 *
 * The header is built in memory (metadata, then tensor infos whose offsets
 * follow from the sizes), then each tensor is generated, quantised and
 * written row by row, so memory stays small even for large shapes.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer_model.h"

#define ALIGN 32

/* ---- shapes
 * ------------------------------------------------------------------- */

int infer_mkmodel_shape(const char *shape, struct infer_mkmodel_spec *s)
{
    memset(s, 0, sizeof(*s));
    struct infer_config *c = &s->cfg;
    c->arch = INFER_ARCH_LLAMA;
    c->rms_eps = 1e-5f;
    c->tied_output = true;
    s->type = "q8_0";
    s->seed = 1;
    if (shape != NULL && strcmp(shape, "smollm2-135m") == 0) {
        /* HuggingFaceTB/SmolLM2-135M */
        *c = (struct infer_config){.arch = INFER_ARCH_LLAMA,
                                   .n_vocab = 49152,
                                   .dim = 576,
                                   .n_layers = 30,
                                   .n_heads = 9,
                                   .n_kv_heads = 3,
                                   .head_dim = 64,
                                   .hidden = 1536,
                                   .n_rot = 64,
                                   .n_ctx_train = 8192,
                                   .rope_base = 100000.0f,
                                   .rms_eps = 1e-5f,
                                   .tied_output = true};
        s->name = "SmolLM2-135M (random weights)";
        s->chatml = true;
    } else if (shape != NULL && strcmp(shape, "qwen2.5-0.5b") == 0) {
        /* Qwen/Qwen2.5-0.5B */
        *c = (struct infer_config){.arch = INFER_ARCH_QWEN2,
                                   .n_vocab = 151936,
                                   .dim = 896,
                                   .n_layers = 24,
                                   .n_heads = 14,
                                   .n_kv_heads = 2,
                                   .head_dim = 64,
                                   .hidden = 4864,
                                   .n_rot = 64,
                                   .n_ctx_train = 32768,
                                   .rope_base = 1000000.0f,
                                   .rms_eps = 1e-6f,
                                   .rope_neox = true,
                                   .tied_output = true,
                                   .has_qkv_bias = true};
        s->name = "Qwen2.5-0.5B (random weights)";
        s->chatml = true;
    } else if (shape != NULL && strcmp(shape, "tiny") == 0) {
        /* Small, but every row a multiple of 256 so K-quants apply. */
        *c = (struct infer_config){.arch = INFER_ARCH_LLAMA,
                                   .n_vocab = 512,
                                   .dim = 256,
                                   .n_layers = 2,
                                   .n_heads = 8,
                                   .n_kv_heads = 4,
                                   .head_dim = 32,
                                   .hidden = 768,
                                   .n_rot = 32,
                                   .n_ctx_train = 512,
                                   .rope_base = 10000.0f,
                                   .rms_eps = 1e-5f,
                                   .tied_output = false};
        s->name = "tiny (random weights)";
    } else {
        return INFER_ERR_ARG;
    }
    return INFER_OK;
}

/* ---- a growable byte buffer for the header
 * ------------------------------------------ */

struct buf {
    unsigned char *p;
    size_t n, cap;
    bool oom;
    uint64_t n_kv; /* key/value pairs written */
};

static void put(struct buf *b, const void *d, size_t n)
{
    if (b->oom)
        return;
    if (b->cap - b->n < n) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->n < n)
            cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put_u32(struct buf *b, uint32_t v)
{
    put(b, &v, 4);
}

static void put_u64(struct buf *b, uint64_t v)
{
    put(b, &v, 8);
}

static void put_str(struct buf *b, const char *s)
{
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}

static void kv_str(struct buf *b, const char *k, const char *v)
{
    b->n_kv++;
    put_str(b, k);
    put_u32(b, INFER_GGUF_STRING);
    put_str(b, v);
}

static void kv_u32(struct buf *b, const char *k, uint32_t v)
{
    b->n_kv++;
    put_str(b, k);
    put_u32(b, INFER_GGUF_U32);
    put_u32(b, v);
}

static void kv_f32(struct buf *b, const char *k, float v)
{
    b->n_kv++;
    put_str(b, k);
    put_u32(b, INFER_GGUF_F32);
    put(b, &v, 4);
}

static void kv_bool(struct buf *b, const char *k, bool v)
{
    unsigned char x = v;
    b->n_kv++;
    put_str(b, k);
    put_u32(b, INFER_GGUF_BOOL);
    put(b, &x, 1);
}

static void kv_arch_u32(struct buf *b, const char *arch, const char *k,
                        uint32_t v)
{
    char full[96];
    snprintf(full, sizeof(full), "%s.%s", arch, k);
    kv_u32(b, full, v);
}

/* ---- the vocabulary
 * ---------------------------------------------------------------- */

#define N_SPECIAL 5 /* <unk> <s> </s> <|im_start|> <|im_end|> */

static void vocab_piece(int id, char *out, size_t cap)
{
    static const char *const special[N_SPECIAL] = {
        "<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"};
    static const char *const words[] = {
        "the", "a",   "and", "to", "of",  "in",   "is", "it", "you", "that",
        "he",  "was", "for", "on", "are", "with", "as", "I",  "his", "they"};
    if (id < N_SPECIAL)
        snprintf(out, cap, "%s", special[id]);
    else if (id < N_SPECIAL + 256)
        snprintf(out, cap, "<0x%02X>", id - N_SPECIAL);
    else if (id < N_SPECIAL + 256 + 20)
        snprintf(out, cap, "\xe2\x96\x81%s", words[id - N_SPECIAL - 256]);
    else
        snprintf(out, cap, "\xe2\x96\x81w%d", id); /* distinct filler */
}

static void put_vocab(struct buf *b, const struct infer_mkmodel_spec *s)
{
    int n = s->cfg.n_vocab;
    char piece[64];
    b->n_kv += 3; /* the three arrays */
    put_str(b, "tokenizer.ggml.tokens");
    put_u32(b, INFER_GGUF_ARRAY);
    put_u32(b, INFER_GGUF_STRING);
    put_u64(b, (uint64_t)n);
    for (int i = 0; i < n; i++) {
        vocab_piece(i, piece, sizeof(piece));
        put_str(b, piece);
    }
    put_str(b, "tokenizer.ggml.scores");
    put_u32(b, INFER_GGUF_ARRAY);
    put_u32(b, INFER_GGUF_F32);
    put_u64(b, (uint64_t)n);
    for (int i = 0; i < n; i++) {
        float score = i < N_SPECIAL + 256 ? 0.0f : -(float)i;
        put(b, &score, 4);
    }
    put_str(b, "tokenizer.ggml.token_type");
    put_u32(b, INFER_GGUF_ARRAY);
    put_u32(b, INFER_GGUF_I32);
    put_u64(b, (uint64_t)n);
    for (int i = 0; i < n; i++) {
        /* 1 normal, 2 unknown, 3 control, 6 byte */
        int32_t t = i == 0                ? 2
                    : i < N_SPECIAL       ? 3
                    : i < N_SPECIAL + 256 ? 6
                                          : 1;
        put(b, &t, 4);
    }
    kv_str(b, "tokenizer.ggml.model", "llama");
    kv_u32(b, "tokenizer.ggml.unknown_token_id", 0);
    kv_u32(b, "tokenizer.ggml.bos_token_id", 1);
    kv_u32(b, "tokenizer.ggml.eos_token_id", s->chatml ? 4 : 2);
    kv_bool(b, "tokenizer.ggml.add_bos_token", true);
    if (s->chatml)
        kv_str(b, "tokenizer.chat_template",
               "{% for message in messages %}{{'<|im_start|>' + "
               "message['role'] + '\\n' + message['content'] + "
               "'<|im_end|>' + '\\n'}}{% endfor %}{% if "
               "add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
               "{% endif %}");
}

/* ---- tensors
 * ------------------------------------------------------------------------ */

enum tkind { T_EMBD, T_OUT, T_NORM, T_BIAS, T_ATTN, T_ATTN_V, T_FFN, T_DOWN };

struct tdesc {
    char name[64];
    enum tkind kind;
    int64_t cols, rows; /* ne[0], ne[1] (rows 1 for vectors) */
    uint32_t type;
    uint64_t offset, nbytes;
};

static uint32_t type_from_name(const char *t)
{
    static const struct {
        const char *n;
        uint32_t t;
    } map[] = {{"f32", INFER_TYPE_F32},    {"f16", INFER_TYPE_F16},
               {"bf16", INFER_TYPE_BF16},  {"q8_0", INFER_TYPE_Q8_0},
               {"q4_0", INFER_TYPE_Q4_0},  {"q5_0", INFER_TYPE_Q5_0},
               {"q5_1", INFER_TYPE_Q5_1},  {"q4_k", INFER_TYPE_Q4_K},
               {"q5_k", INFER_TYPE_Q5_K},  {"q6_k", INFER_TYPE_Q6_K},
               {"q4_k_m", INFER_TYPE_Q4_K}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(t, map[i].n) == 0)
            return map[i].t;
    return UINT32_MAX;
}

static uint32_t file_type_of(const char *t)
{
    if (strcmp(t, "f32") == 0)
        return 0;
    if (strcmp(t, "f16") == 0)
        return 1;
    if (strcmp(t, "q4_0") == 0)
        return 2;
    if (strcmp(t, "q8_0") == 0)
        return 7;
    if (strcmp(t, "q5_0") == 0)
        return 8;
    if (strcmp(t, "q5_1") == 0)
        return 9;
    if (strcmp(t, "q4_k") == 0)
        return 14;
    if (strcmp(t, "q4_k_m") == 0)
        return 15;
    if (strcmp(t, "q5_k") == 0)
        return 16;
    if (strcmp(t, "q6_k") == 0)
        return 18;
    return 32; /* bf16 */
}

/* The type of one matrix, as llama.cpp's Q4_K_M recipe roughly does:
 * Q6_K for the classifier and for attn_v/ffn_down in the first and last
 * eighth of the layers and every third in between. */
static uint32_t pick_type(const char *spec, enum tkind kind, int64_t cols,
                          int layer, int n_layers)
{
    uint32_t t = type_from_name(spec);
    if (kind == T_NORM || kind == T_BIAS)
        return INFER_TYPE_F32;
    if (strcmp(spec, "q4_k_m") == 0) {
        bool more = layer < n_layers / 8 || layer >= 7 * n_layers / 8 ||
                    (layer - n_layers / 8) % 3 == 2;
        if (kind == T_OUT || ((kind == T_ATTN_V || kind == T_DOWN) && more))
            t = INFER_TYPE_Q6_K;
    }
    if (t == INFER_TYPE_Q4_K && cols % 256 != 0) /* llama.cpp's fallbacks */
        t = INFER_TYPE_Q5_0;
    if (t == INFER_TYPE_Q5_K && cols % 256 != 0)
        t = INFER_TYPE_Q5_1;
    if (t == INFER_TYPE_Q6_K && cols % 256 != 0)
        t = INFER_TYPE_Q8_0;
    return t;
}

static int add_tensor(struct tdesc *t, int *n, const char *name,
                      enum tkind kind, int64_t cols, int64_t rows,
                      const struct infer_mkmodel_spec *s, int layer)
{
    struct tdesc *d = &t[(*n)++];
    snprintf(d->name, sizeof(d->name), "%s", name);
    d->kind = kind;
    d->cols = cols;
    d->rows = rows;
    d->type = pick_type(s->type, kind, cols, layer, s->cfg.n_layers);
    d->nbytes = (uint64_t)rows * infer_row_bytes(d->type, cols);
    return INFER_OK;
}

static int plan_tensors(const struct infer_mkmodel_spec *s, struct tdesc *t)
{
    const struct infer_config *c = &s->cfg;
    int n = 0;
    int64_t qd = (int64_t)c->n_heads * c->head_dim;
    int64_t kvd = (int64_t)c->n_kv_heads * c->head_dim;
    add_tensor(t, &n, "token_embd.weight", T_EMBD, c->dim, c->n_vocab, s, 0);
    add_tensor(t, &n, "output_norm.weight", T_NORM, c->dim, 1, s, 0);
    if (!c->tied_output)
        add_tensor(t, &n, "output.weight", T_OUT, c->dim, c->n_vocab, s, 0);
    for (int l = 0; l < c->n_layers; l++) {
        char nm[64];
#define ADD(suffix, kind, cols, rows)                                          \
    (snprintf(nm, sizeof(nm), "blk.%d." suffix, l),                            \
     add_tensor(t, &n, nm, kind, cols, rows, s, l))
        ADD("attn_norm.weight", T_NORM, c->dim, 1);
        ADD("attn_q.weight", T_ATTN, c->dim, qd);
        ADD("attn_k.weight", T_ATTN, c->dim, kvd);
        ADD("attn_v.weight", T_ATTN_V, c->dim, kvd);
        if (c->has_qkv_bias) {
            ADD("attn_q.bias", T_BIAS, qd, 1);
            ADD("attn_k.bias", T_BIAS, kvd, 1);
            ADD("attn_v.bias", T_BIAS, kvd, 1);
        }
        ADD("attn_output.weight", T_ATTN, qd, c->dim);
        ADD("ffn_norm.weight", T_NORM, c->dim, 1);
        ADD("ffn_gate.weight", T_FFN, c->dim, c->hidden);
        ADD("ffn_up.weight", T_FFN, c->dim, c->hidden);
        ADD("ffn_down.weight", T_DOWN, c->hidden, c->dim);
#undef ADD
    }
    return n;
}

/* xoshiro-free tiny generator: splitmix64 is plenty for weights. */
static float rand_uniform(uint64_t *st)
{
    uint64_t z = (*st += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

static int write_tensor(FILE *f, const struct tdesc *t, uint64_t *rng,
                        float *row, void *qrow)
{
    /* Scales keep activations of a random network in a sane range. */
    float amp = t->kind == T_EMBD   ? 1.0f
                : t->kind == T_BIAS ? 0.1f
                                    : 1.0f / sqrtf((float)t->cols);
    size_t rb = infer_row_bytes(t->type, t->cols);
    for (int64_t r = 0; r < t->rows; r++) {
        for (int64_t j = 0; j < t->cols; j++) {
            float u = rand_uniform(rng);
            row[j] = t->kind == T_NORM ? 1.0f + 0.1f * u : amp * u * 1.7f;
        }
        infer_quantize_row(t->type, row, qrow, t->cols);
        if (fwrite(qrow, 1, rb, f) != rb)
            return INFER_ERR_IO;
    }
    static const unsigned char zero[ALIGN];
    size_t pad = (size_t)((ALIGN - t->nbytes % ALIGN) % ALIGN);
    if (pad > 0 && fwrite(zero, 1, pad, f) != pad)
        return INFER_ERR_IO;
    return INFER_OK;
}

static void put_header(struct buf *b, const struct infer_mkmodel_spec *s,
                       const struct tdesc *t, int nt)
{
    const struct infer_config *c = &s->cfg;
    const char *arch = infer_arch_name(c->arch);
    put_u32(b, 0x46554747u);
    put_u32(b, 3);
    put_u64(b, (uint64_t)nt);
    put_u64(b, 0); /* n_kv, patched below */
    kv_str(b, "general.architecture", arch);
    kv_str(b, "general.name", s->name != NULL ? s->name : "random");
    kv_u32(b, "general.alignment", ALIGN);
    kv_u32(b, "general.file_type", file_type_of(s->type));
    kv_arch_u32(b, arch, "context_length", (uint32_t)c->n_ctx_train);
    kv_arch_u32(b, arch, "embedding_length", (uint32_t)c->dim);
    kv_arch_u32(b, arch, "block_count", (uint32_t)c->n_layers);
    kv_arch_u32(b, arch, "feed_forward_length", (uint32_t)c->hidden);
    kv_arch_u32(b, arch, "attention.head_count", (uint32_t)c->n_heads);
    kv_arch_u32(b, arch, "attention.head_count_kv", (uint32_t)c->n_kv_heads);
    kv_arch_u32(b, arch, "rope.dimension_count", (uint32_t)c->n_rot);
    kv_arch_u32(b, arch, "attention.key_length", (uint32_t)c->head_dim);
    kv_arch_u32(b, arch, "vocab_size", (uint32_t)c->n_vocab);
    char full[96];
    snprintf(full, sizeof(full), "%s.rope.freq_base", arch);
    kv_f32(b, full, c->rope_base);
    snprintf(full, sizeof(full), "%s.attention.layer_norm_rms_epsilon", arch);
    kv_f32(b, full, c->rms_eps);
    put_vocab(b, s);
    if (!b->oom)
        memcpy(b->p + 16, &b->n_kv, 8);
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        put_str(b, t[i].name);
        bool vec = t[i].rows == 1;
        put_u32(b, vec ? 1 : 2);
        put_u64(b, (uint64_t)t[i].cols);
        if (!vec)
            put_u64(b, (uint64_t)t[i].rows);
        put_u32(b, t[i].type);
        put_u64(b, off);
        off += (t[i].nbytes + ALIGN - 1) / ALIGN * ALIGN;
    }
    static const unsigned char zero[ALIGN];
    put(b, zero, (ALIGN - b->n % ALIGN) % ALIGN);
}

int infer_mkmodel_write(const struct infer_mkmodel_spec *s, const char *path,
                        struct infer_err *err)
{
    if (type_from_name(s->type) == UINT32_MAX)
        return infer_err_set(err, INFER_ERR_ARG, "mkmodel: unknown type '%s'",
                             s->type);
    if (s->cfg.n_vocab < N_SPECIAL + 256 + 20)
        return infer_err_set(err, INFER_ERR_ARG,
                             "mkmodel: vocabulary needs at least %d tokens",
                             N_SPECIAL + 256 + 20);
    int max_t = 3 + 12 * s->cfg.n_layers;
    struct tdesc *t = calloc((size_t)max_t, sizeof(*t));
    int64_t maxc = s->cfg.hidden > s->cfg.dim ? s->cfg.hidden : s->cfg.dim;
    maxc = maxc > (int64_t)s->cfg.n_heads * s->cfg.head_dim
               ? maxc
               : (int64_t)s->cfg.n_heads * s->cfg.head_dim;
    float *row = malloc((size_t)maxc * sizeof(float));
    void *qrow = malloc((size_t)maxc * sizeof(float));
    struct buf b = {0};
    FILE *f = NULL;
    int st = INFER_ERR_NOMEM;
    if (t == NULL || row == NULL || qrow == NULL)
        goto out;
    int nt = plan_tensors(s, t);
    put_header(&b, s, t, nt);
    if (b.oom)
        goto out;
    f = fopen(path, "wb");
    if (f == NULL) {
        st = infer_err_set(err, INFER_ERR_IO, "mkmodel: cannot create %s: %s",
                           path, strerror(errno));
        goto out;
    }
    st = fwrite(b.p, 1, b.n, f) == b.n ? INFER_OK : INFER_ERR_IO;
    uint64_t rng = s->seed * 0x2545f4914f6cdd1dull + 1;
    for (int i = 0; st == INFER_OK && i < nt; i++)
        st = write_tensor(f, &t[i], &rng, row, qrow);
    if (fclose(f) != 0 && st == INFER_OK)
        st = INFER_ERR_IO;
    f = NULL;
    if (st == INFER_ERR_IO)
        infer_err_set(err, st, "mkmodel: cannot write %s", path);
out:
    if (st == INFER_ERR_NOMEM)
        infer_err_set(err, st, "mkmodel: out of memory");
    free(b.p);
    free(t);
    free(row);
    free(qrow);
    return st;
}

/* ---- the command
 * --------------------------------------------------------------------- */

static void mkmodel_usage(FILE *f)
{
    fprintf(
        f,
        "usage: arena mkmodel --shape SHAPE --type TYPE --out FILE "
        "[--seed S]\n\n"
        "Writes a GGUF v3 model of a real shape with random weights.\n"
        "  --shape  smollm2-135m | qwen2.5-0.5b | tiny\n"
        "  --type   f32 | f16 | bf16 | q8_0 | q4_0 | q5_0 | q5_1 | q4_k | q5_k "
        "| q6_k | "
        "q4_k_m\n"
        "  --out    file to write\n"
        "  --seed   random seed (default 1)\n");
}

int infer_cmd_mkmodel(int argc, char **argv)
{
    static const struct option opts[] = {
        {"shape", required_argument, NULL, 's'},
        {"type", required_argument, NULL, 't'},
        {"out", required_argument, NULL, 'o'},
        {"seed", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *shape = NULL, *type = "q8_0", *out = NULL;
    unsigned long long seed = 1;
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 's':
            shape = optarg;
            break;
        case 't':
            type = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'S': {
            char *end;
            errno = 0;
            seed = strtoull(optarg, &end, 10);
            if (errno != 0 || *end != '\0' || optarg[0] == '\0') {
                fprintf(stderr, "arena mkmodel: --seed takes a number\n");
                return 2;
            }
            break;
        }
        case 'h':
            mkmodel_usage(stdout);
            return 0;
        default:
            fprintf(stderr,
                    "arena mkmodel: bad option '%s'; see 'arena "
                    "mkmodel --help'\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    struct infer_mkmodel_spec spec;
    if (shape == NULL || out == NULL || optind < argc) {
        fprintf(stderr, "arena mkmodel: needs --shape and --out; see 'arena "
                        "mkmodel --help'\n");
        return 2;
    }
    if (infer_mkmodel_shape(shape, &spec) != INFER_OK) {
        fprintf(stderr, "arena mkmodel: unknown shape '%s'\n", shape);
        return 2;
    }
    if (type_from_name(type) == UINT32_MAX) {
        fprintf(stderr, "arena mkmodel: unknown type '%s'\n", type);
        return 2;
    }
    spec.type = type;
    spec.seed = seed;
    struct infer_err err;
    if (infer_mkmodel_write(&spec, out, &err) != INFER_OK) {
        fprintf(stderr, "arena mkmodel: %s\n", err.msg);
        return 1;
    }
    return 0;
}
