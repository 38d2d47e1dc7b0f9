/*
 * test_infer.c: the GGUF reader against hostile files, model loading, the
 * batched forward pass against a float64 reference forward written here,
 * batched == unbatched, the KV pool, the story models end to end, and the
 * commands through $ARENA_BIN.
 *
 * Tolerances: logits of the engine vs the float64 reference (same
 * dequantised weights, float activations, K and V rounded to half
 * precision as the KV cache keeps them) within max|ref| times 2e-4 for
 * F32/F16/BF16 weights and 4e-2 for the types that quantise activations to
 * 8 bits (Q8_0, Q4_0, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K). Batched, chunked and
 * multi-threaded runs must equal the one-token-at-a-time run bit for bit.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "infer_model.h"

static char out_dir[1024];

static const char *test_out(void)
{
    if (out_dir[0] == '\0') {
        snprintf(out_dir, sizeof(out_dir), "%s/infer",
                 check_env("ARENA_TEST_OUT", "/tmp/arena-test-out"));
        char parent[1024];
        snprintf(parent, sizeof(parent), "%s",
                 check_env("ARENA_TEST_OUT", "/tmp/arena-test-out"));
        mkdir(parent, 0755);
        mkdir(out_dir, 0755);
    }
    return out_dir;
}

static char *shared_path(const char *rel, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/models/%s", check_env("ARENA_SHARED", "../shared"),
             rel);
    return access(buf, R_OK) == 0 ? buf : NULL;
}

/* ---- a minimal GGUF builder for hostile files
 * -------------------------------- */

struct gb {
    unsigned char p[8192];
    size_t n;
};

static void gb_put(struct gb *b, const void *d, size_t n)
{
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void gb_u32(struct gb *b, uint32_t v)
{
    gb_put(b, &v, 4);
}
static void gb_u64(struct gb *b, uint64_t v)
{
    gb_put(b, &v, 8);
}
static void gb_str(struct gb *b, const char *s)
{
    gb_u64(b, strlen(s));
    gb_put(b, s, strlen(s));
}

enum hostile {
    H_NONE,
    H_MAGIC,
    H_VERSION,
    H_N_TENSORS,
    H_N_KV,
    H_KEY_LEN,
    H_VALUE_TYPE,
    H_ARRAY_N,
    H_ARRAY_TYPE,
    H_NESTED,
    H_DUP_KEY,
    H_ALIGN,
    H_ALIGN_TYPE,
    H_NDIMS,
    H_DIM_ZERO,
    H_DIM_HUGE,
    H_TYPE,
    H_BLOCK,
    H_MISALIGNED,
    H_PAST_END,
    H_OVERLAP,
    H_DUP_NAME,
    H_NAME_LEN,
    H_COUNT
};

/* Two keys, an alignment key and two tensors: "a" F32 [32, 2] and "b" Q8_0
 * [32, 4]; h breaks one thing. */
static void build_gguf(struct gb *b, enum hostile h)
{
    b->n = 0;
    gb_u32(b, h == H_MAGIC ? 0x46554748u : 0x46554747u);
    gb_u32(b, h == H_VERSION ? 7 : 3);
    gb_u64(b, h == H_N_TENSORS ? (1ull << 60) : 2);
    gb_u64(b, h == H_N_KV ? (1ull << 40) : 4);
    if (h == H_KEY_LEN) {
        gb_u64(b, 1ull << 62);
        memset(b->p + b->n, 0, 256);
        b->n += 256;
        return;
    }
    gb_str(b, "general.architecture");
    gb_u32(b, h == H_VALUE_TYPE ? 13 : INFER_GGUF_STRING);
    gb_str(b, "llama");
    gb_str(b, h == H_DUP_KEY ? "general.architecture" : "test.numbers");
    gb_u32(b, INFER_GGUF_ARRAY);
    if (h == H_NESTED) { /* arrays nested 6 deep */
        for (int d = 0; d < 6; d++) {
            gb_u32(b, INFER_GGUF_ARRAY);
            gb_u64(b, 1);
        }
        gb_u32(b, INFER_GGUF_U8);
        gb_u64(b, 0);
    } else {
        gb_u32(b, h == H_ARRAY_TYPE ? 77 : INFER_GGUF_I32);
        gb_u64(b, h == H_ARRAY_N ? (1ull << 61) : 3);
        for (int32_t i = 0; i < 3; i++)
            gb_put(b, &i, 4);
    }
    gb_str(b, "general.alignment");
    gb_u32(b, h == H_ALIGN_TYPE ? INFER_GGUF_U64 : INFER_GGUF_U32);
    if (h == H_ALIGN_TYPE)
        gb_u64(b, 32);
    else
        gb_u32(b, h == H_ALIGN ? 3 : 32);
    gb_str(b, "test.flag");
    gb_u32(b, INFER_GGUF_BOOL);
    gb_put(b, "\1", 1);
    /* tensor a */
    if (h == H_NAME_LEN)
        gb_u64(b, 1ull << 50);
    else
        gb_str(b, "a");
    gb_u32(b, h == H_NDIMS ? 5 : 2);
    gb_u64(b, 32);
    gb_u64(b, h == H_DIM_ZERO ? 0 : h == H_DIM_HUGE ? (1ull << 40) : 2);
    gb_u32(b, h == H_TYPE ? 99 : INFER_TYPE_F32);
    gb_u64(b, h == H_MISALIGNED ? 4 : 0);
    /* tensor b */
    gb_str(b, h == H_DUP_NAME ? "a" : "b");
    gb_u32(b, 2);
    gb_u64(b, h == H_BLOCK ? 20 : 32);
    gb_u64(b, 4);
    gb_u32(b, INFER_TYPE_Q8_0);
    gb_u64(b, h == H_PAST_END ? 4096 : h == H_OVERLAP ? 224 : 256);
    while (b->n % 32 != 0)
        gb_put(b, "", 1);
    size_t data = 256 + 4 * 34;
    memset(b->p + b->n, 0x11, data);
    b->n += data;
}

TEST(gguf_valid_minimal_file)
{
    struct gb b;
    build_gguf(&b, H_NONE);
    struct infer_gguf *g;
    struct infer_err err = {{0}};
    CHECK_EQ(infer_gguf_open_mem(b.p, b.n, &g, &err), INFER_OK);
    CHECK_STREQ(infer_gguf_get_str(g, "general.architecture"), "llama");
    int64_t k = infer_gguf_find_key(g, "test.numbers");
    CHECK(k >= 0);
    CHECK_EQ(infer_gguf_arr_type(g, k), INFER_GGUF_I32);
    CHECK_EQ(infer_gguf_arr_n(g, k), 3);
    int64_t v;
    CHECK_EQ(infer_gguf_arr_i64(g, k, 2, &v), INFER_OK);
    CHECK_EQ(v, 2);
    CHECK_EQ(infer_gguf_arr_i64(g, k, 3, &v), INFER_ERR_FORMAT);
    CHECK_EQ(infer_gguf_get_i64(g, "test.flag", &v), INFER_OK);
    CHECK_EQ(v, 1);
    CHECK_EQ(infer_gguf_get_i64(g, "general.architecture", &v),
             INFER_ERR_FORMAT);
    CHECK_EQ(infer_gguf_find_key(g, "nope"), -1);
    CHECK_EQ(infer_gguf_n_tensors(g), 2);
    const struct infer_gguf_tensor *t = infer_gguf_find_tensor(g, "b");
    CHECK(t != NULL);
    CHECK_EQ(t->type, INFER_TYPE_Q8_0);
    CHECK_EQ(t->nbytes, 4 * 34);
    CHECK_EQ(t->ne[1], 4);
    CHECK(infer_gguf_find_tensor(g, "c") == NULL);
    infer_gguf_free(g);
    infer_gguf_free(NULL);
}

TEST(gguf_hostile_fields_rejected_with_message)
{
    static const char *const expect[H_COUNT] = {
        [H_MAGIC] = "bad magic",
        [H_VERSION] = "version 7",
        [H_N_TENSORS] = "tensors cannot fit",
        [H_N_KV] = "keys cannot fit",
        [H_KEY_LEN] = "past end of file",
        [H_VALUE_TYPE] = "bad value type",
        [H_ARRAY_N] = "past end of file",
        [H_ARRAY_TYPE] = "bad array element",
        [H_NESTED] = "too deeply",
        [H_DUP_KEY] = "duplicate key",
        [H_ALIGN] = "power of two",
        [H_ALIGN_TYPE] = "not a u32",
        [H_NDIMS] = "5 dimensions",
        [H_DIM_ZERO] = "bad dimension",
        [H_DIM_HUGE] = "past end of file",
        [H_TYPE] = "unknown type 99",
        [H_BLOCK] = "not a multiple",
        [H_MISALIGNED] = "not aligned",
        [H_PAST_END] = "past end of file",
        [H_OVERLAP] = "overlap",
        [H_DUP_NAME] = "duplicate tensor",
        [H_NAME_LEN] = "past end of file",
    };
    for (int h = H_MAGIC; h < H_COUNT; h++) {
        struct gb b;
        build_gguf(&b, (enum hostile)h);
        struct infer_gguf *g = (struct infer_gguf *)&b;
        struct infer_err err = {{0}};
        int st = infer_gguf_open_mem(b.p, b.n, &g, &err);
        if (st != INFER_ERR_FORMAT || g != NULL ||
            strstr(err.msg, expect[h]) == NULL)
            CHECK_FAIL_("case %d: status %d, message '%s' (wanted '%s')", h, st,
                        err.msg, expect[h]);
    }
}

/* Every truncation before the end of the last tensor's data fails cleanly;
 * random corruption never crashes (ASan/UBSan watch the accessors). */
static void poke_all(const struct infer_gguf *g)
{
    for (int64_t k = 0; k < infer_gguf_n_keys(g); k++) {
        int64_t v;
        double d;
        size_t len;
        const char *name = infer_gguf_key_name(g, k);
        (void)infer_gguf_get_i64(g, name, &v);
        (void)infer_gguf_get_f64(g, name, &d);
        (void)infer_gguf_get_str(g, name);
        for (uint64_t i = 0; i < infer_gguf_arr_n(g, k) && i < 64; i++) {
            (void)infer_gguf_arr_str(g, k, i, &len);
            (void)infer_gguf_arr_i64(g, k, i, &v);
        }
    }
    volatile unsigned char sink = 0;
    for (int64_t i = 0; i < infer_gguf_n_tensors(g); i++) {
        const struct infer_gguf_tensor *t = infer_gguf_tensor(g, i);
        if (t->nbytes > 0)
            sink ^= ((const unsigned char *)t->data)[t->nbytes - 1];
    }
    (void)sink;
}

static int sweep(const unsigned char *data, size_t size, size_t dense)
{
    struct infer_gguf *g;
    struct infer_err err;
    if (infer_gguf_open_mem(data, size, &g, &err) != INFER_OK) {
        fprintf(stderr, "sweep: the intact file fails: %s\n", err.msg);
        return 1;
    }
    uint64_t end = 0;
    size_t fsize;
    const unsigned char *base = infer_gguf_data(g, &fsize);
    for (int64_t i = 0; i < infer_gguf_n_tensors(g); i++) {
        const struct infer_gguf_tensor *t = infer_gguf_tensor(g, i);
        uint64_t e =
            (uint64_t)((const unsigned char *)t->data - base) + t->nbytes;
        end = e > end ? e : end;
    }
    infer_gguf_free(g);
    int bad = 0;
    for (size_t cut = 0; cut < end; cut += cut < dense ? 1 : 49999) {
        unsigned char *copy = malloc(cut + 1);
        memcpy(copy, data, cut);
        int st = infer_gguf_open_mem(copy, cut, &g, &err);
        if (st != INFER_ERR_FORMAT || g != NULL) {
            fprintf(stderr, "truncated at %zu: status %d\n", cut, st);
            bad++;
            infer_gguf_free(g);
        }
        free(copy);
    }
    return bad;
}

TEST(gguf_truncated_everywhere_rejected)
{
    struct gb b;
    build_gguf(&b, H_NONE);
    CHECK_EQ(sweep(b.p, b.n, b.n), 0);
    char path[1024];
    if (shared_path("stories260K/stories260K.gguf", path, sizeof(path))) {
        FILE *f = fopen(path, "rb");
        CHECK(f != NULL);
        static unsigned char buf[2 << 20];
        size_t n = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        CHECK_EQ(sweep(buf, n, 16384), 0);
    }
}

TEST(gguf_random_corruption_never_crashes)
{
    struct gb b, m;
    build_gguf(&b, H_NONE);
    uint64_t s = 12345;
    int opened = 0;
    for (int it = 0; it < 20000; it++) {
        m = b;
        int flips = 1 + it % 4;
        for (int f = 0; f < flips; f++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)(s >> 33) % 400; /* the header region */
            m.p[at] = (unsigned char)(s >> 24);
        }
        struct infer_gguf *g;
        struct infer_err err;
        if (infer_gguf_open_mem(m.p, m.n, &g, &err) == INFER_OK) {
            poke_all(g);
            infer_gguf_free(g);
            opened++;
        } else {
            CHECK(err.msg[0] != '\0');
        }
    }
    fprintf(stderr, "%d of 20000 corrupted files still parsed\n", opened);
    struct infer_gguf *g;
    struct infer_err err;
    CHECK_EQ(infer_gguf_open("/nonexistent/x.gguf", &g, &err), INFER_ERR_IO);
    CHECK(strstr(err.msg, "cannot open") != NULL);
}

/* ---- float64 reference forward
 * ---------------------------------------------------- */

struct dmat {
    double *w; /* (rows, cols) */
    int64_t rows, cols;
};

static struct dmat dq(const struct infer_weight *w)
{
    struct dmat d = {malloc(sizeof(double) * w->rows * w->cols), w->rows,
                     w->cols};
    float *row = malloc(sizeof(float) * w->cols);
    for (int64_t r = 0; r < w->rows; r++) {
        infer_dequantize_row(w->type, (const char *)w->data + r * w->row_bytes,
                             row, w->cols);
        for (int64_t j = 0; j < w->cols; j++)
            d.w[r * w->cols + j] = row[j];
    }
    free(row);
    return d;
}

static void dmv(const struct dmat *m, const double *x, double *y)
{
    for (int64_t r = 0; r < m->rows; r++) {
        double s = 0;
        for (int64_t j = 0; j < m->cols; j++)
            s += m->w[r * m->cols + j] * x[j];
        y[r] = s;
    }
}

static void drms(const double *x, const float *w, int n, double eps, double *o)
{
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += x[i] * x[i];
    double s = 1 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++)
        o[i] = x[i] * s * w[i];
}

static void drope(const struct infer_config *c, double *v, int pos)
{
    for (int j = 0; j < c->n_rot / 2; j++) {
        double th = pos * pow(c->rope_base, -2.0 * j / c->n_rot);
        int a = c->rope_neox ? j : 2 * j;
        int b = c->rope_neox ? j + c->n_rot / 2 : 2 * j + 1;
        double x0 = v[a], x1 = v[b];
        v[a] = x0 * cos(th) - x1 * sin(th);
        v[b] = x0 * sin(th) + x1 * cos(th);
    }
}

/* Logits (T, vocab) of tokens[0..T) as one sequence. */
static void ref_forward(const struct infer_model *m, const int *tok, int T,
                        double *logits)
{
    const struct infer_config *c = &m->cfg;
    int D = c->dim, hd = c->head_dim, qd = c->n_heads * hd;
    int kvd = c->n_kv_heads * hd, H = c->hidden, L = c->n_layers;
    double *kc = calloc((size_t)L * T * kvd, sizeof(double));
    double *vc = calloc((size_t)L * T * kvd, sizeof(double));
    double *x = malloc(sizeof(double) * D), *xb = malloc(sizeof(double) * D);
    double *q = malloc(sizeof(double) * qd), *att = malloc(sizeof(double) * qd);
    double *o = malloc(sizeof(double) * D), *g = malloc(sizeof(double) * H);
    double *u = malloc(sizeof(double) * H), *s = malloc(sizeof(double) * T);
    struct dmat emb = dq(&m->tok_embd), out = dq(&m->output);
    struct dmat *W = malloc(sizeof(struct dmat) * 7 * L);
    for (int l = 0; l < L; l++) {
        const struct infer_layer *ly = &m->layers[l];
        const struct infer_weight *ws[7] = {&ly->wq,    &ly->wk,     &ly->wv,
                                            &ly->wo,    &ly->w_gate, &ly->w_up,
                                            &ly->w_down};
        for (int j = 0; j < 7; j++)
            W[7 * l + j] = dq(ws[j]);
    }
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < D; i++)
            x[i] = emb.w[(int64_t)tok[t] * D + i];
        for (int l = 0; l < L; l++) {
            const struct infer_layer *ly = &m->layers[l];
            double *kt = kc + ((size_t)l * T + t) * kvd;
            double *vt = vc + ((size_t)l * T + t) * kvd;
            drms(x, ly->attn_norm, D, c->rms_eps, xb);
            dmv(&W[7 * l], xb, q);
            dmv(&W[7 * l + 1], xb, kt);
            dmv(&W[7 * l + 2], xb, vt);
            for (int i = 0; ly->bq && i < qd; i++)
                q[i] += ly->bq[i];
            for (int i = 0; ly->bk && i < kvd; i++) {
                kt[i] += ly->bk[i];
                vt[i] += ly->bv[i];
            }
            for (int h = 0; h < c->n_heads; h++)
                drope(c, q + h * hd, t);
            for (int h = 0; h < c->n_kv_heads; h++)
                drope(c, kt + h * hd, t);
            for (int i = 0; i < kvd; i++) { /* the cache keeps halves */
                kt[i] = infer_fp16_to_f32(infer_f32_to_fp16((float)kt[i]));
                vt[i] = infer_fp16_to_f32(infer_f32_to_fp16((float)vt[i]));
            }
            for (int h = 0; h < c->n_heads; h++) {
                int kh = h / (c->n_heads / c->n_kv_heads);
                double mx = -1e300, sum = 0;
                for (int p = 0; p <= t; p++) {
                    const double *kp = kc + ((size_t)l * T + p) * kvd + kh * hd;
                    s[p] = 0;
                    for (int i = 0; i < hd; i++)
                        s[p] += q[h * hd + i] * kp[i];
                    s[p] /= sqrt((double)hd);
                    mx = s[p] > mx ? s[p] : mx;
                }
                for (int p = 0; p <= t; p++)
                    sum += (s[p] = exp(s[p] - mx));
                for (int i = 0; i < hd; i++) {
                    double a = 0;
                    for (int p = 0; p <= t; p++)
                        a += s[p] / sum *
                             vc[((size_t)l * T + p) * kvd + kh * hd + i];
                    att[h * hd + i] = a;
                }
            }
            dmv(&W[7 * l + 3], att, o);
            for (int i = 0; i < D; i++)
                x[i] += o[i];
            drms(x, ly->ffn_norm, D, c->rms_eps, xb);
            dmv(&W[7 * l + 4], xb, g);
            dmv(&W[7 * l + 5], xb, u);
            for (int i = 0; i < H; i++)
                g[i] = g[i] / (1 + exp(-g[i])) * u[i];
            dmv(&W[7 * l + 6], g, o);
            for (int i = 0; i < D; i++)
                x[i] += o[i];
        }
        drms(x, m->output_norm, D, c->rms_eps, xb);
        dmv(&out, xb, logits + (size_t)t * c->n_vocab);
    }
    for (int i = 0; i < 7 * L; i++)
        free(W[i].w);
    free(W);
    free(emb.w);
    free(out.w);
    free(kc);
    free(vc);
    free(x);
    free(xb);
    free(q);
    free(att);
    free(o);
    free(g);
    free(u);
    free(s);
}

/* ---- engine runs
 * -------------------------------------------------------------------- */

struct run {
    struct infer_kv *kv;
    struct infer_ctx *ctx;
    struct infer_seq seq[3];
};

static int run_open(struct run *r, const struct infer_model *m, int batch,
                    int threads, const char *kernels)
{
    struct infer_err err;
    struct infer_ctx_params cp = {.max_batch = batch,
                                  .max_ctx = 64,
                                  .n_threads = threads,
                                  .kernels = kernels};
    memset(r, 0, sizeof(*r));
    if (infer_ctx_new(m, &cp, &r->ctx, &err) != INFER_OK ||
        infer_kv_new(m, 16, 8, &r->kv, &err) != INFER_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    for (int i = 0; i < 3; i++)
        if (infer_seq_init(&r->seq[i], r->kv, 64) != INFER_OK)
            return -1;
    return 0;
}

static void run_close(struct run *r)
{
    for (int i = 0; i < 3; i++) {
        if (r->kv != NULL && r->seq[i].blocks != NULL)
            infer_kv_release(r->kv, &r->seq[i], 0);
        infer_seq_cleanup(&r->seq[i]);
    }
    infer_kv_free(r->kv);
    infer_ctx_free(r->ctx);
}

/* One token at a time: logits (T, vocab). */
static int run_steps(struct run *r, int s, const int *tok, int T, float *lg,
                     int vocab)
{
    struct infer_err err;
    if (infer_kv_reserve(r->kv, &r->seq[s], T) != INFER_OK)
        return -1;
    for (int t = 0; t < T; t++) {
        struct infer_batch_entry e = {&r->seq[s], t, tok[t], true};
        if (infer_forward(r->ctx, r->kv, &e, 1, lg + (size_t)t * vocab, &err) !=
            INFER_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return -1;
        }
    }
    return 0;
}

static const int toks[3][7] = {{1, 17, 300, 5, 42, 261, 99},
                               {1, 261, 262, 263, 270, 280, 290},
                               {1, 2, 3, 4, 5, 6, 7}};

struct model_case {
    const char *name;
    enum infer_arch arch;
    bool tied, bias;
    int heads, kv_heads;
};

static const struct model_case model_cases[] = {
    {"llama untied gqa", INFER_ARCH_LLAMA, false, false, 8, 2},
    {"llama tied mha", INFER_ARCH_LLAMA, true, false, 8, 8},
    {"qwen2 tied gqa bias", INFER_ARCH_QWEN2, true, true, 8, 4},
};
static const char *const model_types[] = {"f32",  "f16",  "bf16",  "q8_0",
                                          "q4_0", "q5_0", "q5_1",  "q4_k",
                                          "q5_k", "q6_k", "q4_k_m"};

static int make_model(const struct model_case *mc, const char *type, char *path,
                      size_t cap)
{
    struct infer_mkmodel_spec s = {
        .cfg = {.arch = mc->arch,
                .n_vocab = 320,
                .dim = 256,
                .n_layers = 2,
                .n_heads = mc->heads,
                .n_kv_heads = mc->kv_heads,
                .head_dim = 256 / mc->heads,
                .hidden = 512,
                .n_rot = 256 / mc->heads,
                .n_ctx_train = 64,
                .rope_base = mc->arch == INFER_ARCH_QWEN2 ? 1e6f : 1e4f,
                .rms_eps = 1e-5f,
                .rope_neox = mc->arch == INFER_ARCH_QWEN2,
                .tied_output = mc->tied,
                .has_qkv_bias = mc->bias},
        .type = type,
        .seed = 7,
        .name = mc->name};
    snprintf(path, cap, "%s/%s-%s.gguf", test_out(),
             mc->arch == INFER_ARCH_QWEN2 ? "qwen2"
             : mc->tied                   ? "llamat"
                                          : "llama",
             type);
    struct infer_err err;
    if (infer_mkmodel_write(&s, path, &err) != INFER_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    return 0;
}

TEST(forward_matches_float64_reference)
{
    for (size_t c = 0; c < sizeof(model_cases) / sizeof(model_cases[0]); c++) {
        for (size_t t = 0; t < sizeof(model_types) / sizeof(model_types[0]);
             t++) {
            char path[1200];
            CHECK_EQ(
                make_model(&model_cases[c], model_types[t], path, sizeof(path)),
                0);
            struct infer_model *m;
            struct infer_err err;
            struct infer_model_params p = {.no_tokenizer = true};
            CHECK_EQ(infer_model_load(path, &p, &m, &err), INFER_OK);
            CHECK_EQ(m->cfg.tied_output, model_cases[c].tied);
            CHECK_EQ(m->cfg.has_qkv_bias, model_cases[c].bias);
            int V = m->cfg.n_vocab, T = 7;
            double *ref = malloc(sizeof(double) * T * V);
            float *lg = malloc(sizeof(float) * T * V);
            ref_forward(m, toks[0], T, ref);
            struct run r;
            CHECK_EQ(run_open(&r, m, 8, 1, NULL), 0);
            CHECK_EQ(run_steps(&r, 0, toks[0], T, lg, V), 0);
            double mx = 0, err_max = 0;
            for (int i = 0; i < T * V; i++) {
                mx = fmax(mx, fabs(ref[i]));
                err_max = fmax(err_max, fabs(lg[i] - ref[i]));
            }
            uint32_t wt = m->layers[0].wq.type;
            double tol = wt == INFER_TYPE_F32 || wt == INFER_TYPE_F16 ||
                                 wt == INFER_TYPE_BF16
                             ? 2e-4
                             : 4e-2;
            fprintf(
                stderr, "%-20s %-7s max|ref| %.3f max err %.2e (%.1e rel)\n",
                model_cases[c].name, model_types[t], mx, err_max, err_max / mx);
            run_close(&r);
            free(ref);
            free(lg);
            infer_model_free(m);
            CHECK(mx > 0.1);
            CHECK(err_max <= tol * mx);
        }
    }
}

/* Chunked prompts, mixed batches of several sequences and more threads
 * give the same logits, bit for bit, as one token at a time. */
TEST(batched_equals_unbatched)
{
    static const char *const types[] = {"q8_0", "q4_k_m", "f16"};
    for (size_t ti = 0; ti < 3; ti++) {
        char path[1200];
        CHECK_EQ(make_model(&model_cases[ti == 2 ? 2 : 0], types[ti], path,
                            sizeof(path)),
                 0);
        struct infer_model *m;
        struct infer_err err;
        struct infer_model_params p = {.no_tokenizer = true};
        CHECK_EQ(infer_model_load(path, &p, &m, &err), INFER_OK);
        int V = m->cfg.n_vocab;
        float *alone = malloc(sizeof(float) * 3 * 7 * V);
        float *mixed = malloc(sizeof(float) * 21 * V);
        struct run r;
        CHECK_EQ(run_open(&r, m, 16, 1, NULL), 0);
        for (int s = 0; s < 3; s++)
            CHECK_EQ(run_steps(&r, s, toks[s], 7, alone + s * 7 * V, V), 0);
        run_close(&r);
        /* Seq 0: a 4-token chunk then 3 decode steps; seq 1: all 7 in one
         * chunk; seq 2: one per step; all in the same calls, 2 threads. */
        CHECK_EQ(run_open(&r, m, 16, 2, NULL), 0);
        for (int s = 0; s < 3; s++)
            CHECK_EQ(infer_kv_reserve(r.kv, &r.seq[s], 7), INFER_OK);
        int done[3] = {0, 0, 0};
        int rowpos[3][7];
        int n_rows = 0;
        for (int step = 0; step < 7 && (done[0] < 7 || done[2] < 7); step++) {
            struct infer_batch_entry e[16];
            int n = 0;
            int take[3] = {step == 0 ? 4 : 1, step == 0 ? 7 : 0, 1};
            for (int s = 0; s < 3; s++)
                for (int k = 0; k < take[s] && done[s] < 7; k++, done[s]++) {
                    e[n++] = (struct infer_batch_entry){&r.seq[s], done[s],
                                                        toks[s][done[s]], true};
                    rowpos[s][done[s]] = n_rows++;
                }
            CHECK_EQ(infer_forward(r.ctx, r.kv, e, n,
                                   mixed + (size_t)(n_rows - n) * V, &err),
                     INFER_OK);
        }
        for (int s = 0; s < 3; s++)
            for (int t = 0; t < 7; t++)
                CHECK(memcmp(mixed + (size_t)rowpos[s][t] * V,
                             alone + (size_t)(s * 7 + t) * V,
                             sizeof(float) * V) == 0);
        run_close(&r);
        /* Every kernel set this CPU runs agrees with the best closely. */
        for (int k = 0; infer_kernel_names[k] != NULL; k++) {
            if (infer_kernels_get(infer_kernel_names[k]) == NULL)
                continue;
            float *other = malloc(sizeof(float) * 7 * V);
            CHECK_EQ(run_open(&r, m, 4, 1, infer_kernel_names[k]), 0);
            CHECK_EQ(run_steps(&r, 0, toks[0], 7, other, V), 0);
            run_close(&r);
            double mx = 0, err_max = 0;
            for (int i = 0; i < 7 * V; i++) {
                mx = fmax(mx, fabs(alone[i]));
                err_max = fmax(err_max, fabs(other[i] - alone[i]));
            }
            fprintf(stderr, "%-7s %-7s vs the best set: max err %.2e of %.3f\n",
                    types[ti], infer_kernel_names[k], err_max, mx);
            CHECK(err_max <= 1e-3 * mx);
            free(other);
        }
        free(alone);
        free(mixed);
        infer_model_free(m);
    }
}

/* Attention over more than ATT_PART_MIN (128) positions runs in parts
 * merged after: 300 positions against float64, and bit for bit the same
 * alone, one token a call on one thread, as in prompt chunks beside
 * another sequence on two threads. KV blocks of 12 positions, so parts
 * start inside blocks. */
TEST(long_context_attention_in_parts)
{
    enum { T = 300 };
    static const char *const types[] = {"f32", "q8_0"};
    static int tok[2][T];
    for (int s = 0; s < 2; s++)
        for (int t = 0; t < T; t++)
            tok[s][t] = (t * 37 + s * 101 + 11) % 320;
    for (size_t ti = 0; ti < 2; ti++) {
        char path[1200];
        CHECK_EQ(make_model(&model_cases[0], types[ti], path, sizeof(path)), 0);
        struct infer_model *m;
        struct infer_err err;
        struct infer_model_params p = {.no_tokenizer = true};
        CHECK_EQ(infer_model_load(path, &p, &m, &err), INFER_OK);
        int V = m->cfg.n_vocab;
        double *ref = malloc(sizeof(double) * T * V);
        float *alone = malloc(sizeof(float) * T * V);
        float *mixed = malloc(sizeof(float) * 2 * T * V);
        ref_forward(m, tok[0], T, ref);
        for (int threads = 1; threads <= 2; threads++) {
            struct infer_ctx_params cp = {
                .max_batch = 64, .max_ctx = T, .n_threads = threads};
            struct infer_ctx *ctx;
            struct infer_kv *kv;
            struct infer_seq seq[2];
            CHECK_EQ(infer_ctx_new(m, &cp, &ctx, &err), INFER_OK);
            CHECK_EQ(infer_kv_new(m, 2 * (T + 11) / 12, 12, &kv, &err),
                     INFER_OK);
            for (int s = 0; s < 2; s++) {
                CHECK_EQ(infer_seq_init(&seq[s], kv, T), INFER_OK);
                CHECK_EQ(infer_kv_reserve(kv, &seq[s], T), INFER_OK);
            }
            if (threads == 1) { /* seq 0 alone, a token a call */
                for (int t = 0; t < T; t++) {
                    struct infer_batch_entry e = {&seq[0], t, tok[0][t], true};
                    CHECK_EQ(infer_forward(ctx, kv, &e, 1,
                                           alone + (size_t)t * V, &err),
                             INFER_OK);
                }
            } else { /* seq 0 in chunks of 50, seq 1 a token a call */
                int done[2] = {0, 0}, row[T], n_rows = 0;
                while (done[0] < T) {
                    struct infer_batch_entry e[64];
                    int n = 0;
                    for (int k = 0; k < 50 && done[0] < T; k++, done[0]++) {
                        e[n++] = (struct infer_batch_entry){
                            &seq[0], done[0], tok[0][done[0]], true};
                        row[done[0]] = n_rows++;
                    }
                    e[n++] = (struct infer_batch_entry){&seq[1], done[1],
                                                        tok[1][done[1]], true};
                    done[1]++;
                    n_rows++;
                    CHECK_EQ(infer_forward(ctx, kv, e, n,
                                           mixed + (size_t)(n_rows - n) * V,
                                           &err),
                             INFER_OK);
                }
                for (int t = 0; t < T; t++)
                    CHECK(memcmp(mixed + (size_t)row[t] * V,
                                 alone + (size_t)t * V,
                                 sizeof(float) * V) == 0);
            }
            for (int s = 0; s < 2; s++)
                infer_seq_cleanup(&seq[s]);
            infer_kv_free(kv);
            infer_ctx_free(ctx);
        }
        double mx = 0, err_max = 0, err_late = 0;
        for (int i = 0; i < T * V; i++) {
            mx = fmax(mx, fabs(ref[i]));
            err_max = fmax(err_max, fabs(alone[i] - ref[i]));
            if (i >= 129 * V)
                err_late = fmax(err_late, fabs(alone[i] - ref[i]));
        }
        double tol = ti == 0 ? 2e-4 : 4e-2;
        fprintf(stderr,
                "%-5s %d positions: max|ref| %.3f max err %.2e (%.2e past "
                "128)\n",
                types[ti], T, mx, err_max, err_late);
        CHECK(mx > 0.1);
        CHECK(err_max <= tol * mx);
        free(ref);
        free(alone);
        free(mixed);
        infer_model_free(m);
    }
}

TEST(forward_rejects_bad_entries)
{
    char path[1200];
    CHECK_EQ(make_model(&model_cases[0], "q8_0", path, sizeof(path)), 0);
    struct infer_model *m;
    struct infer_err err;
    struct infer_model_params p = {.no_tokenizer = true};
    CHECK_EQ(infer_model_load(path, &p, &m, &err), INFER_OK);
    struct run r;
    CHECK_EQ(run_open(&r, m, 2, 1, NULL), 0);
    float lg[320 * 2];
    struct infer_batch_entry e = {&r.seq[0], 0, 5, true};
    /* Not reserved yet. */
    CHECK_EQ(infer_forward(r.ctx, r.kv, &e, 1, lg, &err), INFER_ERR_ARG);
    CHECK(strstr(err.msg, "not backed") != NULL);
    CHECK_EQ(infer_kv_reserve(r.kv, &r.seq[0], 1), INFER_OK);
    e.token = 320;
    CHECK_EQ(infer_forward(r.ctx, r.kv, &e, 1, lg, &err), INFER_ERR_ARG);
    e.token = 5;
    CHECK_EQ(infer_forward(r.ctx, r.kv, &e, 3, lg, &err), INFER_ERR_ARG);
    CHECK_EQ(infer_forward(r.ctx, r.kv, &e, 1, NULL, &err), INFER_ERR_ARG);
    CHECK_EQ(infer_forward(r.ctx, r.kv, &e, 1, lg, &err), INFER_OK);
    run_close(&r);
    infer_model_free(m);
}

TEST(kv_pool_accounting)
{
    char path[1200];
    CHECK_EQ(make_model(&model_cases[0], "q8_0", path, sizeof(path)), 0);
    struct infer_model *m;
    struct infer_err err;
    struct infer_model_params p = {.no_tokenizer = true};
    CHECK_EQ(infer_model_load(path, &p, &m, &err), INFER_OK);
    struct infer_kv *kv;
    CHECK_EQ(infer_kv_new(m, 10, 16, &kv, &err), INFER_OK);
    struct infer_seq a, b;
    CHECK_EQ(infer_seq_init(&a, kv, 160), INFER_OK);
    CHECK_EQ(infer_seq_init(&b, kv, 100), INFER_OK);
    CHECK_EQ(infer_kv_reserve(kv, &a, 17), INFER_OK); /* 2 blocks */
    CHECK_EQ(infer_kv_n_free(kv), 8);
    CHECK_EQ(infer_kv_reserve(kv, &b, 100), INFER_OK); /* 7 blocks */
    CHECK_EQ(infer_kv_n_free(kv), 1);
    CHECK_EQ(infer_kv_reserve(kv, &b, 113), INFER_ERR_ARG); /* table */
    CHECK_EQ(infer_kv_reserve(kv, &a, 64), INFER_ERR_BUSY); /* pool */
    CHECK_EQ(a.n_blocks, 2);      /* nothing taken on failure */
    infer_kv_release(kv, &b, 20); /* keeps 2 */
    CHECK_EQ(infer_kv_n_free(kv), 6);
    CHECK_EQ(infer_kv_reserve(kv, &a, 64), INFER_OK);
    infer_kv_release(kv, &a, 0);
    infer_kv_release(kv, &b, 0);
    CHECK_EQ(infer_kv_n_free(kv), 10);
    infer_seq_cleanup(&a);
    infer_seq_cleanup(&b);
    infer_kv_free(kv);
    infer_model_free(m);
}

TEST(model_load_rejects_bad_files)
{
    struct infer_model *m;
    struct infer_err err;
    char path[1200];
    snprintf(path, sizeof(path), "%s/bad.bin", test_out());
    FILE *f = fopen(path, "wb");
    int32_t h[7] = {64, 172, 5, 8, 4, 512, 512};
    fwrite(h, 4, 7, f);
    fwrite(h, 4, 7, f); /* far too short for its header */
    fclose(f);
    CHECK_EQ(infer_model_load(path, NULL, &m, &err), INFER_ERR_FORMAT);
    CHECK(strstr(err.msg, "the header needs") != NULL);
    h[3] = 7; /* 64 % 7 != 0 */
    f = fopen(path, "wb");
    fwrite(h, 4, 7, f);
    fwrite(h, 4, 7, f);
    fclose(f);
    CHECK_EQ(infer_model_load(path, NULL, &m, &err), INFER_ERR_FORMAT);
    char tok[1024];
    if (shared_path("tokenizers/ggml-vocab-gpt-2.gguf", tok, sizeof(tok))) {
        CHECK_EQ(infer_model_load(tok, NULL, &m, &err), INFER_ERR_UNSUPPORTED);
        CHECK(strstr(err.msg, "gpt2") != NULL);
    }
    if (shared_path("tokenizers/ggml-vocab-llama-spm.gguf", tok, sizeof(tok))) {
        CHECK_EQ(infer_model_load(tok, NULL, &m, &err), INFER_ERR_FORMAT);
        CHECK(strstr(err.msg, "token_embd") != NULL);
    }
}

/* ---- the story models
 * --------------------------------------------------------------- */

static int greedy(const char *path, int n, int32_t *ids, char *text, size_t cap)
{
    struct infer_model *m;
    struct infer_err err;
    if (infer_model_load(path, NULL, &m, &err) != INFER_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    struct run r;
    if (run_open(&r, m, 1, 0, NULL) != 0)
        return -1;
    infer_seq_cleanup(&r.seq[0]);
    infer_kv_free(r.kv);
    infer_kv_new(m, (n + 16) / 16 + 1, 16, &r.kv, &err);
    infer_seq_init(&r.seq[0], r.kv, n + 1);
    infer_kv_reserve(r.kv, &r.seq[0], n + 1);
    infer_ctx_free(r.ctx);
    struct infer_ctx_params cp = {.max_batch = 1, .max_ctx = n + 1};
    infer_ctx_new(m, &cp, &r.ctx, &err);
    float *lg = malloc(sizeof(float) * m->cfg.n_vocab);
    int tok = infer_tok_bos(m->tok), got = 0;
    for (int pos = 0; pos < n; pos++) {
        struct infer_batch_entry e = {&r.seq[0], pos, tok, true};
        if (infer_forward(r.ctx, r.kv, &e, 1, lg, &err) != INFER_OK)
            break;
        int best = 0;
        for (int i = 1; i < m->cfg.n_vocab; i++)
            if (lg[i] > lg[best])
                best = i;
        ids[got++] = tok = best;
        if (infer_tok_is_eog(m->tok, tok))
            break;
    }
    infer_tok_decode(m->tok, ids, (size_t)got, false, text, cap - 1);
    text[cap - 1] = '\0';
    size_t len =
        infer_tok_decode(m->tok, ids, (size_t)got, false, text, cap - 1);
    text[len < cap - 1 ? len : cap - 1] = '\0';
    free(lg);
    run_close(&r);
    infer_model_free(m);
    return got;
}

static int count_words(const char *text)
{
    static const char *const words[] = {" the ", " was ", " a ",  " and ",
                                        " to ",  " she ", " he ", " day"};
    int n = 0;
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        n += strstr(text, words[i]) != NULL;
    return n;
}

TEST(stories260k_gguf_and_bin_agree)
{
    char g[1024], b[1024];
    if (!shared_path("stories260K/stories260K.gguf", g, sizeof(g)) ||
        !shared_path("stories260K/stories260K.bin", b, sizeof(b)))
        check_skip("stories260K not in ARENA_SHARED");
    enum { N = 200 };
    static int32_t ig[N], ib[N];
    static char tg[8192], tb[8192];
    int ng = greedy(g, N, ig, tg, sizeof(tg));
    int nb = greedy(b, N, ib, tb, sizeof(tb));
    CHECK(ng > 50);
    CHECK_EQ(ng, nb);
    CHECK(memcmp(ig, ib, sizeof(int32_t) * (size_t)ng) == 0);
    CHECK_STREQ(tg, tb);
    fprintf(stderr, "stories260K: %.160s...\n", tg);
    CHECK(strncmp(tg, "Once upon a time", 16) == 0);
    CHECK(count_words(tg) >= 4);
}

TEST(tinystories656k_f16_and_q8_0)
{
    char f[1024], q[1024];
    if (!shared_path("tinystories-656K/TinyStories-656K-F16.gguf", f,
                     sizeof(f)) ||
        !shared_path("tinystories-656K/TinyStories-656K-Q8_0.gguf", q,
                     sizeof(q)))
        check_skip("TinyStories-656K not in ARENA_SHARED");
    enum { N = 200 };
    static int32_t i16[N], i8[N];
    static char t16[8192], t8[8192];
    int n16 = greedy(f, N, i16, t16, sizeof(t16));
    int n8 = greedy(q, N, i8, t8, sizeof(t8));
    int agree = 0;
    while (agree < n16 && agree < n8 && i16[agree] == i8[agree])
        agree++;
    fprintf(stderr,
            "TinyStories-656K: F16 and Q8_0 agree on the first %d of %d/%d "
            "greedy tokens\nF16: %.160s...\n",
            agree, n16, n8, t16);
    CHECK(n16 > 50 && n8 > 50);
    CHECK(agree >= 50);
    CHECK(strncmp(t16, "Once upon a time", 16) == 0);
    CHECK(count_words(t16) >= 4 && count_words(t8) >= 4);
}

/* ---- the commands
 * --------------------------------------------------------------------- */

static int run_cmd(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(commands)
{
    const char *bin = getenv("ARENA_BIN");
    char g[1024], b[1024], cmd[4096];
    static char o1[16384], o2[16384];
    if (bin == NULL ||
        !shared_path("stories260K/stories260K.gguf", g, sizeof(g)) ||
        !shared_path("stories260K/stories260K.bin", b, sizeof(b)))
        check_skip("needs ARENA_BIN and stories260K");
    snprintf(cmd, sizeof(cmd),
             "%s generate --model %s --max-tokens 40 --ids "
             "--threads 1 2>/dev/null",
             bin, g);
    CHECK_EQ(run_cmd(cmd, o1, sizeof(o1)), 0);
    snprintf(cmd, sizeof(cmd),
             "%s generate --model %s --max-tokens 40 --ids "
             "2>/dev/null",
             bin, b);
    CHECK_EQ(run_cmd(cmd, o2, sizeof(o2)), 0);
    CHECK_STREQ(o1, o2);
    CHECK(strchr(o1, '\n') == o1 + strlen(o1) - 1); /* one line */
    /* Sampling with a seed is reproducible; the text streams. */
    snprintf(cmd, sizeof(cmd),
             "%s generate --model %s --max-tokens 40 "
             "--temperature 0.9 --seed 11 2>/dev/null",
             bin, g);
    CHECK_EQ(run_cmd(cmd, o1, sizeof(o1)), 0);
    CHECK_EQ(run_cmd(cmd, o2, sizeof(o2)), 0);
    CHECK_STREQ(o1, o2);
    CHECK(strlen(o1) > 40);
    /* A stop string cuts the text before it. */
    snprintf(cmd, sizeof(cmd),
             "%s generate --model %s --max-tokens 60 "
             "--stop Lily 2>/dev/null",
             bin, g);
    CHECK_EQ(run_cmd(cmd, o1, sizeof(o1)), 0);
    CHECK(strstr(o1, "Lily") == NULL);
    CHECK(strstr(o1, "named") != NULL);
    snprintf(cmd, sizeof(cmd), "%s tokenize --model %s --text 'Once upon' ",
             bin, g);
    CHECK_EQ(run_cmd(cmd, o1, sizeof(o1)), 0);
    CHECK(o1[0] == '1' && o1[1] == ' ');
    snprintf(cmd, sizeof(cmd), "%s model-info %s", bin, g);
    CHECK_EQ(run_cmd(cmd, o1, sizeof(o1)), 0);
    CHECK(strstr(o1, "architecture: llama") != NULL);
    CHECK(strstr(o1, "F32 x48") != NULL);
    /* mkmodel, then model-info and generate on what it wrote. */
    snprintf(cmd, sizeof(cmd),
             "%s mkmodel --shape tiny --type q4_k_m --out "
             "%s/cli-tiny.gguf && %s model-info "
             "%s/cli-tiny.gguf && %s generate --model "
             "%s/cli-tiny.gguf --max-tokens 5 --ids 2>&1",
             bin, test_out(), bin, test_out(), bin, test_out());
    CHECK_EQ(run_cmd(cmd, o1, sizeof(o1)), 0);
    CHECK(strstr(o1, "Q6_K x") != NULL && strstr(o1, "Q4_K x") != NULL);
    /* Usage errors exit 2 with one line; --help exits 0. */
    static const char *const bad[] = {"generate",
                                      "generate --model",
                                      "generate --model x --max-tokens -1",
                                      "mkmodel --shape nope --out /tmp/x",
                                      "model-info",
                                      "tokenize --model x",
                                      "bench infer --batch 1,x --model y"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(cmd, sizeof(cmd), "%s %s 2>&1", bin, bad[i]);
        CHECK_EQ(run_cmd(cmd, o1, sizeof(o1)), 2);
        CHECK(strchr(o1, '\n') == o1 + strlen(o1) - 1);
    }
    static const char *const help[] = {"generate", "tokenize", "model-info",
                                       "mkmodel", "bench infer"};
    for (size_t i = 0; i < sizeof(help) / sizeof(help[0]); i++) {
        snprintf(cmd, sizeof(cmd), "%s %s --help", bin, help[i]);
        CHECK_EQ(run_cmd(cmd, o1, sizeof(o1)), 0);
        CHECK(strstr(o1, "usage: arena") != NULL);
    }
    snprintf(cmd, sizeof(cmd), "%s generate --model /nonexistent 2>&1", bin);
    CHECK_EQ(run_cmd(cmd, o1, sizeof(o1)), 1);
}

static const struct check_test tests[] = {
    TEST_ENTRY(gguf_valid_minimal_file),
    TEST_ENTRY(gguf_hostile_fields_rejected_with_message),
    TEST_ENTRY(gguf_truncated_everywhere_rejected),
    TEST_ENTRY(gguf_random_corruption_never_crashes),
    TEST_ENTRY(forward_matches_float64_reference),
    TEST_ENTRY(batched_equals_unbatched),
    TEST_ENTRY(long_context_attention_in_parts),
    TEST_ENTRY(forward_rejects_bad_entries),
    TEST_ENTRY(kv_pool_accounting),
    TEST_ENTRY(model_load_rejects_bad_files),
    TEST_ENTRY(stories260k_gguf_and_bin_agree),
    TEST_ENTRY(tinystories656k_f16_and_q8_0),
    TEST_ENTRY(commands),
};

CHECK_MAIN(tests)
