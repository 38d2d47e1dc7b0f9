/*
 * infer_model.h: models, the paged KV cache and the batched forward pass.
 * Internal to inference/ (the scheduler of issue 4 and the commands use it).
 *
 * Objects and lifecycle:
 *   struct infer_model  weights of one file (GGUF mmap'd, or a llama2.c
 *                       checkpoint mmap'd) plus its tokenizer; immutable
 *                       after infer_model_load(), shared by any threads.
 *   struct infer_kv     a pool of KV blocks (block_size positions each, all
 *                       layers) allocated once; sequences own block lists.
 *   struct infer_seq    one sequence's block table (caller-embedded).
 *   struct infer_ctx    scratch for up to max_batch tokens and a thread
 *                       pool; runs infer_forward().
 * Threads: a kv pool, its seqs and a ctx belong to one engine thread at a
 * time (the scheduler); infer_forward() fans out to the ctx's pool inside.
 * The hot path (infer_forward) allocates nothing.
 */
#ifndef INFER_MODEL_H
#define INFER_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "infer.h"
#include "infer_internal.h"
#include "infer_kernels.h"

/* ---- the model ------------------------------------------------------------
 */

enum infer_arch {
    INFER_ARCH_LLAMA = 0,
    INFER_ARCH_QWEN2,
};

enum infer_source {
    INFER_SOURCE_GGUF = 0,
    INFER_SOURCE_LLAMA2C,
};

struct infer_config {
    enum infer_arch arch;
    int n_vocab;
    int dim; /* residual width */
    int n_layers;
    int n_heads;
    int n_kv_heads; /* divides n_heads (GQA) */
    int head_dim;
    int hidden;      /* MLP width */
    int n_rot;       /* dims rotated per head, even, <= head_dim */
    int n_ctx_train; /* context length the model was trained for */
    float rope_base;
    float rms_eps;
    bool rope_neox; /* pairs (i, i + n_rot/2); else (2i, 2i + 1) */
    bool tied_output;
    bool has_qkv_bias;
};

/* A matrix of rows x cols (cols contiguous) in its file type. */
struct infer_weight {
    const void *data;
    uint32_t type; /* enum infer_type, one infer_type_supported() */
    int64_t rows, cols;
    size_t row_bytes;
    /* The matmuls' copy in the packed layout of its type (infer_kernels.h:
     * Q8R, Q4R, Q4KR, Q6KR) of a matrix of rows a multiple of 16, made at
     * load when the best kernel set multiplies it; else NULL. data stays
     * for row lookups. */
    const void *packed;
};

struct infer_layer {
    const float *attn_norm, *ffn_norm;  /* (dim) */
    struct infer_weight wq, wk, wv, wo; /* (q_dim|kv_dim, dim), (dim, q_dim) */
    const float *bq, *bk, *bv;          /* (q_dim), (kv_dim); NULL if none */
    struct infer_weight w_gate, w_up;   /* (hidden, dim) */
    struct infer_weight w_down;         /* (dim, hidden) */
};

struct infer_model {
    /* read-only after load */
    struct infer_config cfg;
    enum infer_source source;
    struct infer_weight tok_embd; /* (n_vocab, dim) */
    struct infer_weight output;   /* (n_vocab, dim); = tok_embd if tied */
    const float *output_norm;     /* (dim) */
    struct infer_layer *layers;   /* (n_layers) */
    struct infer_tok *tok;        /* NULL if loaded without tokenizer */
    const char *name;             /* general.name or the file name */
    const char *chat_template;    /* NULL if none */
    uint64_t weight_bytes;        /* bytes read per decode step */
    uint64_t n_params;
    /* private */
    struct infer_gguf *gguf;
    void *map;
    size_t map_size;
    float *owned; /* converted norms and biases */
    void *packed; /* the packed copies of weights, one after another */
    size_t n_owned, cap_owned;
    char *name_buf;
};

struct infer_model_params {
    const char *tokenizer_path; /* NULL: the file's own, or found next to it */
    bool no_tokenizer;          /* weights only (tests) */
    bool no_repack; /* keep Q8_0 row-major only (also $ARENA_REPACK=0) */
};

/* Zeroed memory, 64-byte aligned, so every page is touched now: buffers
 * a forward call or a timed loop uses are committed from the start and
 * never stop on a first-touch page fault (~17 us a 4 KB page in this VM:
 * a step's worth of them cost a decode step 5-10%). free() releases it. */
void *infer_alloc_zeroed(size_t bytes);

/* Memory for the large buffers a decode step streams through (packed
 * weights, the KV pool): 2 MB aligned and, where the kernel grants them
 * on request (transparent huge pages in "madvise" mode, as on Debian),
 * in 2 MB pages, so streaming them walks a page table 512 times less
 * often. Not zeroed; free() releases it. */
void *infer_alloc_big(size_t bytes);

/* Loads a GGUF (llama, qwen2) or llama2.c version-0 file (chosen by magic)
 * with its tokenizer. INFER_ERR_IO, _FORMAT (the file is malformed: err
 * says what), _UNSUPPORTED (arch or tensor type), _NOMEM. Caller frees. */
int infer_model_load(const char *path, const struct infer_model_params *p,
                     struct infer_model **out, struct infer_err *err);
void infer_model_free(struct infer_model *m); /* NULL is a no-op */
const char *infer_arch_name(enum infer_arch a);

/* ---- paged KV cache --------------------------------------------------------
 */

struct infer_kv {
    /* read-only */
    int block_size; /* positions per block */
    int n_blocks;
    int n_layers, kv_dim;
    /* private */
    int head_dim;
    uint16_t *k, *v;   /* IEEE half precision (attention at long contexts
                          is bound by reading them): (n_blocks, n_layers,
                          n_kv_heads, then head_dim x block_size for k
                          and block_size x head_dim for v) */
    int32_t *free_ids; /* (n_blocks) stack of free block ids */
    int n_free;
};

/* One sequence's block table. Positions [0, n_blocks * block_size) are
 * backed; the caller tracks how many hold valid entries. */
struct infer_seq {
    int32_t *blocks; /* (max_blocks) */
    int max_blocks;
    int n_blocks;
};

int infer_kv_new(const struct infer_model *m, int n_blocks, int block_size,
                 struct infer_kv **out, struct infer_err *err);
void infer_kv_free(struct infer_kv *kv);
int infer_kv_n_free(const struct infer_kv *kv);
/* Table for sequences of up to max_pos positions (allocates once). */
int infer_seq_init(struct infer_seq *s, const struct infer_kv *kv, int max_pos);
void infer_seq_cleanup(struct infer_seq *s);
/* Backs positions [0, n_pos): takes blocks from the pool as needed.
 * INFER_ERR_BUSY if the pool has too few (nothing taken), INFER_ERR_ARG if
 * n_pos exceeds the table. */
int infer_kv_reserve(struct infer_kv *kv, struct infer_seq *s, int n_pos);
/* Keeps only the blocks that back [0, keep_pos) and returns the rest to the
 * pool (keep_pos 0 frees all). Cannot fail. */
void infer_kv_release(struct infer_kv *kv, struct infer_seq *s, int keep_pos);

/* For the benchmarks (infer_bench_sched.c): batch sequences (*seqs) of len
 * positions each, backed by a new pool (*kv) of blocks of 16; and their
 * release (NULLs are fine). */
int infer__bench_seqs(const struct infer_model *m, int batch, int len,
                      struct infer_kv **kv, struct infer_seq **seqs,
                      struct infer_err *err);
void infer__bench_seqs_free(struct infer_kv *kv, struct infer_seq *seqs,
                            int batch);
/* Prompt throughput of batch sequences prefilled as the scheduler does. */
int infer_bench_prompt_rate(const struct infer_model *m, int batch,
                            int prompt_tokens, int threads, const char *kernels,
                            double *tok_s, struct infer_err *err);

/* ---- forward pass
 * ------------------------------------------------------------ */

struct infer_ctx_params {
    int max_batch; /* tokens per infer_forward() call */
    int max_ctx;   /* positions per sequence (attention scratch) */
    int n_threads; /* <= 0: one per online CPU; ignored if pool given */
    struct infer_pool *pool; /* shared pool (not owned), or NULL */
    const char *kernels;     /* kernel set name, or NULL for the best */
};

struct infer_ctx;

int infer_ctx_new(const struct infer_model *m, const struct infer_ctx_params *p,
                  struct infer_ctx **out, struct infer_err *err);
void infer_ctx_free(struct infer_ctx *c);
const char *infer_ctx_kernels(const struct infer_ctx *c);
int infer_ctx_threads(const struct infer_ctx *c);

/* One token of one sequence. Entries of the same sequence must be in
 * increasing pos order; each attends to positions [0, pos] of its sequence,
 * including those written by earlier entries of the same call. So one call
 * mixes decode steps of many sequences with chunks of prompts. */
struct infer_batch_entry {
    struct infer_seq *seq; /* backed up to pos (infer_kv_reserve) */
    int32_t pos;
    int32_t token;
    bool logits; /* want this entry's logits */
};

/* Runs the model on n entries (n <= max_batch) and writes, for each entry
 * with logits set, in entry order, one row of n_vocab floats to logits
 * (rows: the number of such entries). INFER_ERR_ARG (with err) for a bad
 * token, position or n. */
int infer_forward(struct infer_ctx *c, struct infer_kv *kv,
                  const struct infer_batch_entry *e, int n, float *logits,
                  struct infer_err *err);

#endif

/* ---- sampling (infer_sample.c)
 * ------------------------------------------------ */

struct infer_sampler_params {
    float temperature;    /* <= 0: greedy (argmax) */
    int top_k;            /* <= 0: off */
    float top_p;          /* >= 1: off */
    float min_p;          /* <= 0: off; relative to the top probability */
    float repeat_penalty; /* 1: off; > 1 discourages repeats */
    int repeat_last_n;    /* window of recent tokens the penalty covers */
    /* OpenAI's penalties over the tokens generated so far (not the
     * prompt): logit -= count * frequency_penalty + (count > 0) *
     * presence_penalty. 0: off. */
    float presence_penalty, frequency_penalty;
    const struct infer_logit_bias *logit_bias; /* (n_logit_bias) copied; */
    int n_logit_bias;                          /* tokens < n_vocab */
    uint64_t seed; /* same seed, same logits -> same tokens */
};

/* Owns its RNG (xoshiro256**), the repetition window, the generated
 * tokens' counts (only when a presence or frequency penalty is set) and
 * scratch for n_vocab candidates; one thread at a time. */
struct infer_sampler;
int infer_sampler_new(const struct infer_sampler_params *p, int n_vocab,
                      struct infer_sampler **out);
void infer_sampler_free(struct infer_sampler *s);
/* Forgets the window and the counts, and reseeds. */
void infer_sampler_reset(struct infer_sampler *s);
/* Adds a token to the repetition window; a generated one (not the
 * prompt's) is also counted for the presence and frequency penalties. */
void infer_sampler_accept(struct infer_sampler *s, int token, bool generated);
/* Picks a token from n_vocab logits (modified in place). Cannot fail. */
int infer_sampler_sample(struct infer_sampler *s, float *logits);

/* Stop strings over streamed text: returns the offset in text[0..len) where
 * the earliest complete stop string starts, or -1 and sets *hold to the
 * length of the longest suffix of text that could still begin one (the
 * bytes to keep back before printing). */
long infer_stop_find(const char *text, size_t len, const char *const *stops,
                     int n_stops, size_t *hold);

/* ---- random models of real shapes (infer_mkmodel.c)
 * -------------------------- */

struct infer_mkmodel_spec {
    struct infer_config cfg; /* arch, sizes, rope, eps, tied, bias */
    const char *type;        /* f32 f16 bf16 q8_0 q4_0 q4_k q6_k q4_k_m */
    uint64_t seed;
    const char *name; /* general.name */
    bool chatml;      /* add <|im_start|>/<|im_end|> and a template */
};
/* The spec of a named shape (smollm2-135m, qwen2.5-0.5b, tiny);
 * INFER_ERR_ARG if unknown. */
int infer_mkmodel_shape(const char *shape, struct infer_mkmodel_spec *spec);
/* Writes a GGUF v3 file with random weights and a small valid SentencePiece
 * vocabulary (cfg.n_vocab tokens, byte fallback). K-quant types fall back
 * to Q4_0 / Q8_0 for rows that are not a multiple of 256. */
int infer_mkmodel_write(const struct infer_mkmodel_spec *spec, const char *path,
                        struct infer_err *err);
