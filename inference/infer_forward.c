/*
 * infer_forward.c: the paged KV cache and the batched forward pass.
 *
 * One infer_forward() call runs every thread of the pool through the whole
 * network once (ggml style: plan and allocate up front, then compute). The
 * pass is a fixed list of steps, walked once by the caller to set them up
 * (c->planning) and then by every thread. Each step is cut into chunks:
 * an entry (norms, activation quantisation, RoPE, KV writes), an (entry,
 * KV head) pair (attention for the query heads that share it; past
 * ATT_PART_MIN positions, a part of their positions, the parts merged by
 * the last to finish) or 32 weight rows multiplied by all n activation
 * rows while they are in cache (matmuls). Every thread owns an equal run
 * of a step's chunks and steals from the others' when done (struct step);
 * a step ends when all its chunks are done. Every output value is
 * computed from its own row alone, so results do not depend on the batch,
 * the chunking or the number of threads.
 * Per layer: q,k,v | attention (with bias+RoPE+KV write of its head when
 * each entry is its own sequence, else a step before it; and quantising
 * its output for wo) | wo (+ residual) | gate,up (and SiLU * up, quantised
 * for down) | down (+ residual). The inputs of q,k,v and gate,up (and of
 * the logits) are normed and quantised by a per-entry step before them,
 * or, in calls of up to FUSE_MAX entries, by every thread for itself as
 * it starts the step. The fused parts quantise whole Q8A blocks of the
 * columns the chunk wrote; weights that want Q8K activations (256-blocks)
 * get a separate per-entry quantising step instead.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "infer_model.h"

/* ---- KV cache ------------------------------------------------------------ */

int infer_kv_new(const struct infer_model *m, int n_blocks, int block_size,
                 struct infer_kv **out, struct infer_err *err)
{
    *out = NULL;
    if (n_blocks < 1 || block_size < 1 || block_size > 4096)
        return infer_err_set(err, INFER_ERR_ARG,
                             "kv: bad pool of %d blocks of %d", n_blocks,
                             block_size);
    struct infer_kv *kv = calloc(1, sizeof(*kv));
    if (kv == NULL)
        return infer_err_set(err, INFER_ERR_NOMEM, "kv: out of memory");
    kv->block_size = block_size;
    kv->n_blocks = n_blocks;
    kv->n_layers = m->cfg.n_layers;
    kv->kv_dim = m->cfg.n_kv_heads * m->cfg.head_dim;
    kv->head_dim = m->cfg.head_dim;
    size_t per = (size_t)kv->n_layers * (size_t)block_size * kv->kv_dim;
    if ((size_t)n_blocks > SIZE_MAX / sizeof(uint16_t) / per) {
        free(kv);
        return infer_err_set(err, INFER_ERR_NOMEM, "kv: pool too large");
    }
    size_t bytes = (size_t)n_blocks * per * sizeof(uint16_t);
    kv->k = infer_alloc_big(bytes);
    kv->v = infer_alloc_big(bytes);
    kv->free_ids = malloc((size_t)n_blocks * sizeof(int32_t));
    if (kv->k == NULL || kv->v == NULL || kv->free_ids == NULL) {
        infer_kv_free(kv);
        return infer_err_set(err, INFER_ERR_NOMEM,
                             "kv: cannot allocate %d blocks", n_blocks);
    }
    memset(kv->k, 0, bytes); /* paged in now (see infer_alloc_zeroed) */
    memset(kv->v, 0, bytes);
    /* Stack order: block 0 is handed out first. */
    for (int i = 0; i < n_blocks; i++)
        kv->free_ids[i] = n_blocks - 1 - i;
    kv->n_free = n_blocks;
    *out = kv;
    return INFER_OK;
}

void infer_kv_free(struct infer_kv *kv)
{
    if (kv == NULL)
        return;
    free(kv->k);
    free(kv->v);
    free(kv->free_ids);
    free(kv);
}

int infer_kv_n_free(const struct infer_kv *kv)
{
    return kv->n_free;
}

int infer_seq_init(struct infer_seq *s, const struct infer_kv *kv, int max_pos)
{
    memset(s, 0, sizeof(*s));
    if (max_pos < 1)
        return INFER_ERR_ARG;
    s->max_blocks = (max_pos + kv->block_size - 1) / kv->block_size;
    s->blocks = malloc((size_t)s->max_blocks * sizeof(int32_t));
    return s->blocks != NULL ? INFER_OK : INFER_ERR_NOMEM;
}

void infer_seq_cleanup(struct infer_seq *s)
{
    free(s->blocks);
    memset(s, 0, sizeof(*s));
}

int infer_kv_reserve(struct infer_kv *kv, struct infer_seq *s, int n_pos)
{
    if (n_pos < 0)
        return INFER_ERR_ARG;
    int need = (n_pos + kv->block_size - 1) / kv->block_size;
    if (need > s->max_blocks)
        return INFER_ERR_ARG;
    if (need - s->n_blocks > kv->n_free)
        return INFER_ERR_BUSY;
    while (s->n_blocks < need)
        s->blocks[s->n_blocks++] = kv->free_ids[--kv->n_free];
    return INFER_OK;
}

void infer_kv_release(struct infer_kv *kv, struct infer_seq *s, int keep_pos)
{
    int keep =
        keep_pos <= 0 ? 0 : (keep_pos + kv->block_size - 1) / kv->block_size;
    while (s->n_blocks > keep)
        kv->free_ids[kv->n_free++] = s->blocks[--s->n_blocks];
}

/* ---- context ---------------------------------------------------------------
 */

/* Calls of up to this many entries norm in the matmul steps (fuse_norm):
 * two step boundaries a layer less, for a little work repeated on every
 * thread (a norm costs a row; a boundary, every thread's wait). */
#define FUSE_MAX 4

/* Attention over more than ATT_PART_MIN positions is cut into up to
 * ATT_MAX_PARTS parts of whole 16-position runs, one chunk each, whose
 * softmaxes are merged after (att_part_size, att_merge): one sequence's
 * KV heads then keep every thread busy (3 KV heads on 2 threads leave one
 * idle for a head otherwise), and each thread keeps its own misses in
 * flight. The parts depend on the position alone, so results do not
 * depend on the batch or the threads either. */
#define ATT_PART_MIN  128
#define ATT_MAX_PARTS 4

/* One attention chunk: entry i, KV head g, part p of np. */
struct att_chunk {
    int32_t i;
    int16_t g;
    uint8_t p, np;
};

struct infer_ctx;
typedef void (*chunk_fn)(struct infer_ctx *c, int l, int k, int ith);

/* One step of a forward call: chunks [0, n), each thread owning an equal
 * run of them (struct share). A thread takes its own chunks from the
 * front, in order, so it streams one long run of weights that its
 * prefetches stay ahead of; when its share is empty it steals from the
 * back of the others'. So equal threads each stream one run per step, and
 * a slow or descheduled thread's chunks are taken over instead of holding
 * the step up. The step is over when done (chunks finished, added by each
 * thread once at the end) reaches n. */
struct step {
    _Alignas(64) atomic_int done;
    atomic_int sleepers; /* threads asleep on done */
    int n;
    chunk_fn fn; /* what a chunk does, at layer l (chunk_prefetch) */
    int l;
};

/* Whether thread t's chunk in progress does not follow its last one (its
 * prefetches are not ahead); a line each, as every chunk writes it. */
struct cold {
    _Alignas(64) bool v;
};

/* Thread t's share of a step: chunks [head, tail), packed head | tail << 32
 * in one word so that taking and stealing are one compare-and-swap. */
struct share {
    _Alignas(64) _Atomic uint64_t v;
};

struct infer_ctx {
    const struct infer_model *m;
    const struct infer_kernels *kern;
    struct infer_pool *pool;
    bool own_pool;
    int max_batch, max_ctx;
    /* scratch, allocated once */
    float *x, *xb, *xb2; /* (max_batch, dim) */
    float *q, *att;      /* (max_batch, q_dim) */
    float *k, *v;        /* (max_batch, kv_dim) */
    float *hb, *hb2;     /* (max_batch, hidden) */
    float *rope;         /* (max_batch, n_rot): cos, sin per pair */
    double *inv_freq;    /* (n_rot / 2) */
    float *scores;       /* (n_threads, n_heads / n_kv_heads, max_ctx + 1) */
    void *act[3];        /* per infer_act_kind: (max_batch, row) */
    void *act_down;      /* Q8A (max_batch, hidden): fused SiLU out */
    int32_t *out_rows;   /* (max_batch) entries that want logits */
    /* Per-thread normed inputs of the matmul steps, for calls of at most
     * FUSE_MAX entries (fuse_norm): (nth, FUSE_MAX, dim) floats and
     * (nth, FUSE_MAX, row) per infer_act_kind. */
    float *xb_th;
    void *act_th[3];
    size_t act_th_row[3]; /* bytes per row of act_th[kind] */
    /* Attention in parts (att_split): the chunks of a call, each part's
     * output (group, head_dim) and softmax maximum and sum (group, 2),
     * by chunk, and how many parts of (entry, KV head) have finished in
     * the call; the one that finishes a layer's last merges (att_merge). */
    struct att_chunk *att_map; /* (max_batch * n_kv_heads * ATT_MAX_PARTS) */
    float *att_part, *att_stat;
    float *q_th;            /* (nth, group, head_dim) a part's queries */
    atomic_int *att_done;   /* (max_batch * n_kv_heads) */
    int n_att;              /* attention chunks of the call */
    bool att_split;         /* some entry's attention is in parts */
    struct step *steps;     /* (max_steps) of one call */
    struct share *shares;   /* (max_steps, nth) */
    struct cold *cold;      /* (nth) */
    bool planning;          /* forward_worker only sets the steps up */
    int max_steps, n_steps; /* n_steps: of the call, set by planning */
    /* the call in progress */
    const struct infer_batch_entry *e;
    int n, n_out;
    int nth;           /* threads of the pool */
    bool fuse_norm;    /* n <= FUSE_MAX: each thread norms the input of
                          a matmul step for itself as it starts the step,
                          two steps less per layer (see normed_in) */
    bool rope_in_attn; /* every entry of its own sequence: the attention
                          chunk of (entry, KV head) does that head's RoPE
                          and KV write, a step less per layer */
    struct infer_kv *kv;
    float *logits;
};

int infer_ctx_new(const struct infer_model *m, const struct infer_ctx_params *p,
                  struct infer_ctx **out, struct infer_err *err)
{
    *out = NULL;
    if (p->max_batch < 1 || p->max_batch > 65536 || p->max_ctx < 1 ||
        p->max_ctx > (1 << 24))
        return infer_err_set(err, INFER_ERR_ARG,
                             "ctx: bad max_batch %d or max_ctx %d",
                             p->max_batch, p->max_ctx);
    const struct infer_kernels *kern = p->kernels != NULL
                                           ? infer_kernels_get(p->kernels)
                                           : infer_kernels_best();
    if (kern == NULL)
        return infer_err_set(err, INFER_ERR_UNSUPPORTED,
                             "ctx: kernel set '%s' does not run here",
                             p->kernels);
    struct infer_ctx *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return infer_err_set(err, INFER_ERR_NOMEM, "ctx: out of memory");
    c->m = m;
    c->kern = kern;
    c->max_batch = p->max_batch;
    c->max_ctx = p->max_ctx;
    c->pool = p->pool;
    if (c->pool == NULL) {
        c->pool = infer_pool_new(p->n_threads);
        c->own_pool = true;
    }
    const struct infer_config *cf = &m->cfg;
    size_t B = (size_t)p->max_batch, qd = (size_t)cf->n_heads * cf->head_dim;
    size_t kvd = (size_t)cf->n_kv_heads * cf->head_dim;
    int nth = c->pool != NULL ? infer_pool_size(c->pool) : 1;
    c->nth = nth;
    int64_t maxk = cf->dim;
    if ((int64_t)qd > maxk)
        maxk = (int64_t)qd;
    if (cf->hidden > maxk)
        maxk = cf->hidden;
    c->x = infer_alloc_zeroed(B * cf->dim * 4);
    c->xb = infer_alloc_zeroed(B * cf->dim * 4);
    c->xb2 = infer_alloc_zeroed(B * cf->dim * 4);
    c->q = infer_alloc_zeroed(B * qd * 4);
    c->att = infer_alloc_zeroed(B * qd * 4);
    c->k = infer_alloc_zeroed(B * kvd * 4);
    c->v = infer_alloc_zeroed(B * kvd * 4);
    c->hb = infer_alloc_zeroed(B * cf->hidden * 4);
    c->hb2 = infer_alloc_zeroed(B * cf->hidden * 4);
    c->rope = infer_alloc_zeroed(B * (cf->n_rot + 1) * 4);
    c->inv_freq = infer_alloc_zeroed((cf->n_rot / 2 + 1) * sizeof(double));
    c->scores = infer_alloc_zeroed(
        (size_t)nth * (cf->n_heads / cf->n_kv_heads) * (p->max_ctx + 1) * 4);
    c->out_rows = infer_alloc_zeroed(B * sizeof(int32_t));
    size_t n_parts = B * cf->n_kv_heads * ATT_MAX_PARTS;
    int grp = cf->n_heads / cf->n_kv_heads;
    c->att_map = infer_alloc_zeroed(n_parts * sizeof(struct att_chunk));
    c->att_part = infer_alloc_zeroed(n_parts * grp * cf->head_dim * 4);
    c->att_stat = infer_alloc_zeroed(n_parts * grp * 2 * 4);
    c->att_done = infer_alloc_zeroed(B * cf->n_kv_heads * sizeof(atomic_int));
    c->q_th = infer_alloc_zeroed((size_t)nth * grp * cf->head_dim * 4);
    c->max_steps = 10 * cf->n_layers + 4;
    c->steps = infer_alloc_zeroed((size_t)c->max_steps * sizeof(struct step));
    c->shares =
        infer_alloc_zeroed((size_t)c->max_steps * nth * sizeof(struct share));
    c->cold = infer_alloc_zeroed((size_t)nth * sizeof(struct cold));
    bool ok = c->pool != NULL && c->x && c->xb && c->xb2 && c->q && c->att &&
              c->k && c->v && c->hb && c->hb2 && c->rope && c->inv_freq &&
              c->scores && c->out_rows && c->steps && c->shares && c->cold &&
              c->att_map && c->att_part && c->att_stat && c->att_done &&
              c->q_th;
    c->act_down =
        infer_alloc_zeroed(B * infer_act_row_bytes(INFER_ACT_Q8A, maxk + 256));
    ok = ok && c->act_down != NULL;
    c->xb_th = infer_alloc_zeroed((size_t)nth * FUSE_MAX * cf->dim * 4);
    ok = ok && c->xb_th != NULL;
    for (int kind = INFER_ACT_Q8A; ok && kind <= INFER_ACT_Q8K; kind++) {
        c->act_th_row[kind] =
            (infer_act_row_bytes(kind, cf->dim + 256) + 63) / 64 * 64;
        c->act_th[kind] =
            infer_alloc_zeroed((size_t)nth * FUSE_MAX * c->act_th_row[kind]);
        ok = c->act_th[kind] != NULL;
    }
    for (int kind = INFER_ACT_Q8A; ok && kind <= INFER_ACT_Q8K; kind++) {
        c->act[kind] =
            infer_alloc_zeroed(B * infer_act_row_bytes(kind, maxk + 256));
        ok = c->act[kind] != NULL;
    }
    if (!ok) {
        infer_ctx_free(c);
        return infer_err_set(err, INFER_ERR_NOMEM,
                             "ctx: cannot allocate scratch for batch %d",
                             p->max_batch);
    }
    for (int i = 0; i < cf->n_rot / 2; i++)
        c->inv_freq[i] = pow(cf->rope_base, -2.0 * i / cf->n_rot);
    *out = c;
    return INFER_OK;
}

void infer_ctx_free(struct infer_ctx *c)
{
    if (c == NULL)
        return;
    if (c->own_pool)
        infer_pool_free(c->pool);
    float *bufs[] = {c->x, c->xb, c->xb2, c->q,    c->att,   c->k,
                     c->v, c->hb, c->hb2, c->rope, c->scores};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
        free(bufs[i]);
    free(c->inv_freq);
    free(c->out_rows);
    free(c->att_map);
    free(c->att_part);
    free(c->att_stat);
    free(c->att_done);
    free(c->q_th);
    free(c->steps);
    free(c->shares);
    free(c->cold);
    for (int i = 0; i < 3; i++) {
        free(c->act[i]);
        free(c->act_th[i]);
    }
    free(c->xb_th);
    free(c->act_down);
    free(c);
}

const char *infer_ctx_kernels(const struct infer_ctx *c)
{
    return c->kern->name;
}

int infer_ctx_threads(const struct infer_ctx *c)
{
    return infer_pool_size(c->pool);
}

/* ---- steps
 * ------------------------------------------------------------------- */

static void rmsnorm_k(const struct infer_ctx *c, float *o, const float *x,
                      const float *w)
{
    c->kern->rmsnorm(o, x, w, c->m->cfg.dim, c->m->cfg.rms_eps);
}

/* Quantises row i of src (k floats) for weight types that want kind, into
 * act (rows of `stride` bytes; 0: infer_act_row_bytes). */
static void act_row(struct infer_ctx *c, void *act, size_t stride,
                    enum infer_act_kind kind, const float *src, int64_t k,
                    int i)
{
    if (stride == 0)
        stride = infer_act_row_bytes(kind, k);
    char *dst = (char *)act + (size_t)i * stride;
    if (kind == INFER_ACT_Q8A)
        c->kern->quant_q8a(src, (struct infer_q8a *)dst, k);
    else if (kind == INFER_ACT_Q8K)
        c->kern->quant_q8k(src, (struct infer_q8k *)dst, k);
}

/* Quantises row i of src for each weight in ws that needs it: into
 * c->act, or, for ith >= 0, into thread ith's private rows. */
static void act_rows_th(struct infer_ctx *c, int ith,
                        const struct infer_weight *const *ws, int nw,
                        const float *src, int i)
{
    bool done[3] = {false, false, false};
    for (int j = 0; j < nw; j++) {
        enum infer_act_kind kind = infer_act_kind_of(ws[j]->type);
        if (!done[kind] && kind != INFER_ACT_F32) {
            const float *row = src + (size_t)i * ws[j]->cols;
            if (ith < 0)
                act_row(c, c->act[kind], 0, kind, row, ws[j]->cols, i);
            else
                act_row(c,
                        (char *)c->act_th[kind] +
                            (size_t)ith * FUSE_MAX * c->act_th_row[kind],
                        c->act_th_row[kind], kind, row, ws[j]->cols, i);
        }
        done[kind] = true;
    }
}

static void act_rows(struct infer_ctx *c, const struct infer_weight *const *ws,
                     int nw, const float *src, int i)
{
    act_rows_th(c, -1, ws, nw, src, i);
}

/* Weight rows per matmul chunk: 32 (Q8A blocks of fused outputs, a
 * multiple of the kernels' row groups). Small chunks cost nothing when a
 * thread runs them in order (see struct step) and let the others steal
 * finely. */
#define CHUNK_ROWS 32

/* True when the chunks that produce w's input, span columns each, can
 * also prepare it for w (float, or whole 32-blocks of Q8A), which saves a
 * step (and its wait) per layer. Q8K blocks (256) are done per row. */
static bool act_fusable(const struct infer_weight *w, int span)
{
    enum infer_act_kind kind = infer_act_kind_of(w->type);
    return kind == INFER_ACT_F32 ||
           (kind == INFER_ACT_Q8A && span % INFER_QK == 0 &&
            w->cols % span == 0);
}

/* Whether gate, up and SiLU share one step (see ch_gate_up_silu). */
static bool fuse_silu(const struct infer_layer *L)
{
    return act_fusable(&L->w_down, CHUNK_ROWS) &&
           L->w_gate.rows == L->w_up.rows;
}

/* Quantises columns [c0, c0 + cnt) of row i of src (rows of w->cols) for
 * w into act, if w wants Q8A (c0, cnt whole blocks); the blocks are the
 * ones a whole-row quantisation gives. */
static void act_part(const struct infer_ctx *c, void *act,
                     const struct infer_weight *w, const float *src, int i,
                     int64_t c0, int64_t cnt)
{
    if (infer_act_kind_of(w->type) != INFER_ACT_Q8A)
        return;
    size_t stride = infer_act_row_bytes(INFER_ACT_Q8A, w->cols);
    struct infer_q8a *dst =
        (struct infer_q8a *)((char *)act + (size_t)i * stride) + c0 / INFER_QK;
    c->kern->quant_q8a(src + (size_t)i * w->cols + c0, dst, cnt);
}

static int n_chunks(const struct infer_weight *w)
{
    return (int)((w->rows + CHUNK_ROWS - 1) / CHUNK_ROWS);
}

/* Weight rows [*r0, *r1) of w's chunk k. */
static void chunk_range(const struct infer_weight *w, int k, int64_t *r0,
                        int64_t *r1)
{
    *r0 = (int64_t)k * CHUNK_ROWS;
    *r1 = *r0 + CHUNK_ROWS < w->rows ? *r0 + CHUNK_ROWS : w->rows;
}

/* Chunk k of y = W x for nb activation rows at xa (xa_stride bytes apart,
 * in the format w's type wants), by thread ith: the packed copy if the
 * kernel set multiplies it, else the file's layout. */
static void mm_rows(struct infer_ctx *c, const struct infer_weight *w, int k,
                    const void *xa, size_t xa_stride, int nb, float *y,
                    int64_t ldy, int ith)
{
    int64_t r0, r1;
    chunk_range(w, k, &r0, &r1);
    if (nb == 0)
        return;
    infer_mm_packed_fn pfn =
        w->packed != NULL ? infer_packed_fn(c->kern, w->type) : NULL;
    if (pfn != NULL)
        pfn(w->packed, w->cols, r0, r1, w->rows, c->cold[ith].v, xa, xa_stride,
            nb, y, ldy);
    else
        c->kern->mm[w->type](w->data, w->row_bytes, w->cols, r0, r1, xa,
                             xa_stride, nb, y, ldy);
}

/* Chunk k of y = W x for nb activation rows of src (quantised in act, or
 * in c->act[kind] if act is NULL), by thread ith. */
static void mm_chunk_in(struct infer_ctx *c, const struct infer_weight *w,
                        const float *src, int nb, float *y, int64_t ldy, int k,
                        const void *act, int ith)
{
    enum infer_act_kind kind = infer_act_kind_of(w->type);
    const void *xa = kind == INFER_ACT_F32 ? (const void *)src
                     : act != NULL         ? act
                                           : c->act[kind];
    mm_rows(c, w, k, xa, infer_act_row_bytes(kind, w->cols), nb, y, ldy, ith);
}

static void mm_chunk(struct infer_ctx *c, const struct infer_weight *w,
                     const float *src, int nb, float *y, int64_t ldy, int k,
                     int ith)
{
    mm_chunk_in(c, w, src, nb, y, ldy, k, NULL, ith);
}

/* Chunk k of y = W xn for nb rows of the step's normed input xn: the
 * shared c->xb (and c->act), written by a per-entry norm step, or with
 * fuse_norm the rows thread ith normed for itself (norm_th). */
static void mm_normed(struct infer_ctx *c, const struct infer_weight *w, int nb,
                      float *y, int64_t ldy, int k, int ith)
{
    if (!c->fuse_norm) {
        mm_chunk(c, w, c->xb, nb, y, ldy, k, ith);
        return;
    }
    enum infer_act_kind kind = infer_act_kind_of(w->type);
    if (kind == INFER_ACT_F32)
        mm_rows(c, w, k, c->xb_th + (size_t)ith * FUSE_MAX * c->m->cfg.dim,
                (size_t)w->cols * sizeof(float), nb, y, ldy, ith);
    else
        mm_rows(c, w, k,
                (char *)c->act_th[kind] +
                    (size_t)ith * FUSE_MAX * c->act_th_row[kind],
                c->act_th_row[kind], nb, y, ldy, ith);
}

/* x += xb2 on the rows of w's chunk k, for every entry: the residual of
 * wo and w_down, added by the chunk that computed those rows. */
static void residual_rows(struct infer_ctx *c, const struct infer_weight *w,
                          int k)
{
    int dim = c->m->cfg.dim;
    int64_t r0, r1;
    chunk_range(w, k, &r0, &r1);
    for (int b = 0; b < c->n; b++) {
        float *restrict x = c->x + (size_t)b * dim;
        const float *restrict d = c->xb2 + (size_t)b * dim;
        for (int64_t r = r0; r < r1; r++)
            x[r] += d[r];
    }
}

/* RoPE of one head: pairs (2j, 2j + 1), or (j, j + half) for NeoX
 * pairing, rotated by cs[2j] = cos, cs[2j + 1] = sin; one loop per
 * pairing, so each vectorises. */
static void rope_apply(const struct infer_config *cf, float *restrict v,
                       const float *restrict cs)
{
    int half = cf->n_rot / 2;
    if (cf->rope_neox) {
        float *restrict v1 = v + half;
        for (int j = 0; j < half; j++) {
            float c = cs[2 * j], s = cs[2 * j + 1], x0 = v[j], x1 = v1[j];
            v[j] = x0 * c - x1 * s;
            v1[j] = x0 * s + x1 * c;
        }
        return;
    }
    for (int j = 0; j < half; j++) {
        float c = cs[2 * j], s = cs[2 * j + 1], x0 = v[2 * j],
              x1 = v[2 * j + 1];
        v[2 * j] = x0 * c - x1 * s;
        v[2 * j + 1] = x0 * s + x1 * c;
    }
}

/* The head_dim halves of KV head h at position pos of layer `layer`. A
 * block holds, per layer and head, one contiguous run: V as its positions
 * one after another, K by dimension (element j of the block's position p
 * at j * block_size + p, as the attention score kernels read it); for K,
 * call this with the block's first position. */
static uint16_t *kv_at(const struct infer_kv *kv, uint16_t *base,
                       const struct infer_seq *s, int layer, int h, int pos)
{
    int32_t blk = s->blocks[pos / kv->block_size];
    size_t n_heads = (size_t)(kv->kv_dim / kv->head_dim);
    size_t row =
        (((size_t)blk * kv->n_layers + layer) * n_heads + h) * kv->block_size +
        (size_t)(pos % kv->block_size);
    return base + row * kv->head_dim;
}

/* K and V rows as the cache keeps them: half precision, saturated at the
 * largest finite half (never an infinity that softmax turns to NaN). */
static void kv_half(const struct infer_ctx *c, float *x, uint16_t *h, int n)
{
    for (int j = 0; j < n; j++)
        x[j] = x[j] > 65504.0f ? 65504.0f : x[j] < -65504.0f ? -65504.0f : x[j];
    c->kern->to_half(x, h, n);
}

/* Bias and RoPE of the query heads of entry i that share KV head g, at
 * layer l, from c->q into q (c->q's own place, or a copy). */
static void rope_q(const struct infer_ctx *c, int l, int i, int g, float *q)
{
    const struct infer_config *cf = &c->m->cfg;
    const struct infer_layer *L = &c->m->layers[l];
    int hd = cf->head_dim, grp = cf->n_heads / cf->n_kv_heads;
    const float *src =
        c->q + (size_t)i * cf->n_heads * hd + (size_t)g * grp * hd;
    for (int j = 0; j < grp * hd; j++)
        q[j] = L->bq != NULL ? src[j] + L->bq[g * grp * hd + j] : src[j];
    const float *cs = c->rope + (size_t)i * (cf->n_rot + 1);
    for (int h = 0; h < grp; h++)
        rope_apply(cf, q + h * hd, cs);
}

/* Bias and RoPE of K head g of entry i at layer l, and the KV write of
 * its position. */
static void rope_kv_write(struct infer_ctx *c, int l, int i, int g)
{
    const struct infer_config *cf = &c->m->cfg;
    const struct infer_layer *L = &c->m->layers[l];
    int hd = cf->head_dim, kvd = cf->n_kv_heads * hd;
    float *k = c->k + (size_t)i * kvd + (size_t)g * hd;
    float *v = c->v + (size_t)i * kvd + (size_t)g * hd;
    if (L->bk != NULL)
        for (int j = 0; j < hd; j++)
            k[j] += L->bk[g * hd + j];
    if (L->bv != NULL)
        for (int j = 0; j < hd; j++)
            v[j] += L->bv[g * hd + j];
    rope_apply(cf, k, c->rope + (size_t)i * (cf->n_rot + 1));
    const struct infer_batch_entry *e = &c->e[i];
    int bs = c->kv->block_size, off = e->pos % bs;
    uint16_t *kt = kv_at(c->kv, c->kv->k, e->seq, l, g, e->pos - off);
    for (int j0 = 0; j0 < hd; j0 += 64) { /* K by dimension (attn_qk) */
        uint16_t kh[64];
        int n = hd - j0 < 64 ? hd - j0 : 64;
        kv_half(c, k + j0, kh, n);
        for (int j = 0; j < n; j++)
            kt[(size_t)(j0 + j) * bs + off] = kh[j];
    }
    kv_half(c, v, kv_at(c->kv, c->kv->v, e->seq, l, g, e->pos), hd);
}

/* Bias, RoPE and the KV write for entry i at layer l, for KV head g and
 * the query heads that share it (all heads: qkv_finish). Element-wise, so
 * the values do not depend on how the heads are split. */
static void qkv_finish_head(struct infer_ctx *c, int l, int i, int g)
{
    const struct infer_config *cf = &c->m->cfg;
    int hd = cf->head_dim, grp = cf->n_heads / cf->n_kv_heads;
    rope_q(c, l, i, g,
           c->q + (size_t)i * cf->n_heads * hd + (size_t)g * grp * hd);
    rope_kv_write(c, l, i, g);
}

static void qkv_finish(struct infer_ctx *c, int l, int i)
{
    for (int g = 0; g < c->m->cfg.n_kv_heads; g++)
        qkv_finish_head(c, l, i, g);
}

/* Positions per attention part for an entry attending to n positions,
 * or 0 if it is one chunk (see ATT_PART_MIN); parts = ceil(n / size). */
static int att_part_size(int n)
{
    if (n <= ATT_PART_MIN)
        return 0;
    int np = (n + ATT_PART_MIN - 1) / ATT_PART_MIN;
    np = np < ATT_MAX_PARTS ? np : ATT_MAX_PARTS;
    return ((n + np - 1) / np + 15) / 16 * 16;
}

static int att_n_parts(int n)
{
    int size = att_part_size(n);
    return size > 0 ? (n + size - 1) / size : 1;
}

/* Positions from p on (before p1) that lie in p's KV block: attention
 * walks [p0, p1) in such runs, one per block it touches. */
static int kv_run(int p, int p1, int bs)
{
    return p1 - p < bs - p % bs ? p1 - p : bs - p % bs;
}

/* Attention of entry i at layer l over positions [p0, p1) for the query
 * heads that share KV head g, whose rows (after RoPE) are at q: their
 * scores against each run of a KV block come from one small matmul (the
 * block's K rows x the group's query rows), and each run of V rows is
 * read once for the whole group (attn_v). s: (group, max_ctx + 1)
 * scores, then softmax weights; o: (group, head_dim) output; stat: NULL,
 * or each head's softmax maximum and sum (group, 2) when [p0, p1) is a
 * part of the positions. */
static void attend(struct infer_ctx *c, int l, int i, int g, const float *q,
                   int p0, int p1, float *s, float *o, float *stat)
{
    const struct infer_config *cf = &c->m->cfg;
    const struct infer_batch_entry *e = &c->e[i];
    const struct infer_kv *kv = c->kv;
    int hd = cf->head_dim, grp = cf->n_heads / cf->n_kv_heads;
    int bs = kv->block_size, ls = c->max_ctx + 1;
    float scale = 1.0f / sqrtf((float)hd);
    for (int p = p0, cnt; p < p1; p += cnt) {
        int off = p % bs; /* K by dimension: a run starts at its offset */
        cnt = kv_run(p, p1, bs);
        c->kern->attn_qk(q, grp, kv_at(kv, kv->k, e->seq, l, g, p - off) + off,
                         bs, cnt, hd, s + (p - p0), ls);
    }
    for (int h = 0; h < grp; h++)
        c->kern->softmax(s + (size_t)h * ls, p1 - p0, scale,
                         stat != NULL ? stat + 2 * h : NULL);
    memset(o, 0, (size_t)grp * hd * sizeof(float));
    for (int p = p0, cnt; p < p1; p += cnt) {
        cnt = kv_run(p, p1, bs);
        c->kern->attn_v(s + (p - p0), ls, grp,
                        kv_at(kv, kv->v, e->seq, l, g, p), cnt, hd, o);
    }
}

/* Asks for every cache line of the KV cache that attention of entry i
 * at layer l for KV head g over positions [p0, p1) reads or writes, at
 * once. The blocks lie apart, a short run each, too short for the
 * hardware prefetcher: read on demand, they cost a memory latency every
 * few lines. */
static void kv_prefetch(const struct infer_ctx *c, int l, int i, int g, int p0,
                        int p1)
{
    const struct infer_kv *kv = c->kv;
    const struct infer_batch_entry *e = &c->e[i];
    int hd = c->m->cfg.head_dim, bs = kv->block_size;
    for (int p = p0, cnt; p < p1; p += cnt) {
        int off = p % bs;
        cnt = kv_run(p, p1, bs);
        const char *kt = (const char *)kv_at(kv, kv->k, e->seq, l, g, p - off);
        const char *v = (const char *)kv_at(kv, kv->v, e->seq, l, g, p);
        for (size_t t = 0; t < (size_t)bs * hd * sizeof(uint16_t); t += 64)
            __builtin_prefetch(kt + t, 0, 3);
        for (size_t t = 0; t < (size_t)cnt * hd * sizeof(uint16_t); t += 64)
            __builtin_prefetch(v + t, 0, 3);
    }
}

/* The output of the np parts of an (entry, KV head), at chunks k0 on, into
 * o: each part's softmax is rescaled to the largest maximum and the parts
 * are added in their order, whichever thread merges. */
static void att_merge(const struct infer_ctx *c, int k0, int np, float *o)
{
    const struct infer_config *cf = &c->m->cfg;
    int hd = cf->head_dim, grp = cf->n_heads / cf->n_kv_heads;
    for (int h = 0; h < grp; h++) {
        float mx = -INFINITY, w[ATT_MAX_PARTS], t = 0;
        for (int p = 0; p < np; p++) {
            const float *st = c->att_stat + ((size_t)(k0 + p) * grp + h) * 2;
            mx = st[0] > mx ? st[0] : mx;
        }
        for (int p = 0; p < np; p++) {
            const float *st = c->att_stat + ((size_t)(k0 + p) * grp + h) * 2;
            w[p] = st[1] * expf(st[0] - mx);
            t += w[p];
        }
        for (int j = 0; j < hd; j++) {
            float acc = 0;
            for (int p = 0; p < np; p++)
                acc +=
                    w[p] * c->att_part[((size_t)(k0 + p) * grp + h) * hd + j];
            o[(size_t)h * hd + j] = acc / t;
        }
    }
}

static void embed(struct infer_ctx *c, int i)
{
    const struct infer_model *m = c->m;
    const struct infer_weight *w = &m->tok_embd;
    const char *row =
        (const char *)w->data + (size_t)c->e[i].token * w->row_bytes;
    infer_dequantize_row(w->type, row, c->x + (size_t)i * m->cfg.dim,
                         m->cfg.dim);
    float *cs = c->rope + (size_t)i * (m->cfg.n_rot + 1);
    for (int j = 0; j < m->cfg.n_rot / 2; j++) {
        double th = (double)c->e[i].pos * c->inv_freq[j];
        cs[2 * j] = (float)cos(th);
        cs[2 * j + 1] = (float)sin(th);
    }
}

/* Takes chunks from a share: from the front (its owner) a quarter of
 * what is left, at least one (few locked instructions, each a full fence
 * that waits for the loads in flight, while the end stays fine-grained),
 * or one from the back (a thief). Returns how many, the first in *k, and
 * how many the share still holds in *left. */
static int share_take(struct share *sh, bool front, int *k, int *left)
{
    uint64_t v = atomic_load_explicit(&sh->v, memory_order_relaxed);
    for (;;) {
        uint32_t head = (uint32_t)v, tail = (uint32_t)(v >> 32);
        if (head >= tail)
            return 0;
        uint32_t g = front ? (tail - head) / 4 : 1;
        g = g < 1 ? 1 : g;
        uint64_t nv = front ? (uint64_t)tail << 32 | (head + g)
                            : (uint64_t)(tail - 1) << 32 | head;
        if (atomic_compare_exchange_weak_explicit(
                &sh->v, &v, nv, memory_order_acquire, memory_order_relaxed)) {
            *k = (int)(front ? head : tail - 1);
            *left = (int)(tail - head - g);
            return (int)g;
        }
    }
}

/* Runs step *si: the chunks of fn this thread takes (its own, then stolen
 * ones), then waits until every chunk has finished: a short spin, then a
 * futex sleep that the thread finishing the last chunk ends. prologue (or
 * NULL) runs before this thread's first chunk. When c->planning, only sets
 * the step up for n chunks (infer_forward does so before the threads
 * start). */
static void chunk_prefetch(const struct infer_ctx *c, const struct step *s,
                           int k);

/* The first of the n chunks of a step that thread t of nth owns (its run
 * ends where thread t + 1's starts). */
static int own_first(int n, int t, int nth)
{
    return (int)((int64_t)n * t / nth);
}

static void run_step_pro(struct infer_ctx *c, int *si, int n, chunk_fn fn,
                         int l, int ith, chunk_fn prologue)
{
    int nth = c->nth;
    struct step *s = &c->steps[*si];
    struct share *sh = c->shares + (size_t)(*si) * nth;
    (*si)++;
    if (c->planning) {
        s->n = n;
        s->fn = fn;
        s->l = l;
        c->n_steps = *si;
        atomic_store_explicit(&s->done, 0, memory_order_relaxed);
        atomic_store_explicit(&s->sleepers, 0, memory_order_relaxed);
        for (int t = 0; t < nth; t++)
            atomic_store_explicit(&sh[t].v,
                                  (uint64_t)own_first(n, t + 1, nth) << 32 |
                                      (uint64_t)own_first(n, t, nth),
                                  memory_order_relaxed);
        return;
    }
    int k, mine = 0, prev = -2, left;
    for (;;) {
        int got = share_take(&sh[ith], true, &k, &left);
        if (got > 0 && left == 0 && *si < c->n_steps) {
            /* This thread's last own chunks: its first of the next step. */
            const struct step *ns = &c->steps[*si];
            int k0 = own_first(ns->n, ith, nth);
            if (k0 < own_first(ns->n, ith + 1, nth))
                chunk_prefetch(c, ns, k0);
        }
        for (int o = 1; got == 0 && o < nth; o++)
            got = share_take(&sh[(ith + o) % nth], false, &k, &left);
        if (got == 0)
            break;
        if (prologue != NULL) { /* before this thread's first chunk */
            chunk_prefetch(c, s, k);
            prologue(c, l, 0, ith);
            prologue = NULL;
        }
        for (int j = 0; j < got; j++, k++) {
            c->cold[ith].v = k != prev + 1;
            fn(c, l, k, ith);
            prev = k;
        }
        mine += got;
    }
    if (mine > 0 && atomic_fetch_add(&s->done, mine) + mine == n)
        infer_pool_wake(&s->done, &s->sleepers);
    infer_pool_wait_ge(&s->done, n, &s->sleepers);
}

static void run_step(struct infer_ctx *c, int *si, int n, chunk_fn fn, int l,
                     int ith)
{
    run_step_pro(c, si, n, fn, l, ith, NULL);
}

/* Per-entry chunks (k is an entry). */

static void ch_attn_norm(struct infer_ctx *c, int l, int k, int ith);

/* Embedding and the first layer's norm of entry k. */
static void ch_embed(struct infer_ctx *c, int l, int k, int ith)
{
    embed(c, k);
    if (!c->fuse_norm)
        ch_attn_norm(c, l, k, ith);
}

static void ch_attn_norm(struct infer_ctx *c, int l, int k, int ith)
{
    const struct infer_config *cf = &c->m->cfg;
    const struct infer_layer *L = &c->m->layers[l];
    int dim = cf->dim;
    (void)ith;
    rmsnorm_k(c, c->xb + (size_t)k * dim, c->x + (size_t)k * dim, L->attn_norm);
    const struct infer_weight *qkv[3] = {&L->wq, &L->wk, &L->wv};
    act_rows(c, qkv, 3, c->xb, k);
}

static void ch_rope(struct infer_ctx *c, int l, int k, int ith)
{
    (void)ith;
    qkv_finish(c, l, k);
}

/* Attention chunk k: its (entry, KV head, part) in *a. Returns whether
 * the output of that (entry, KV head) is now complete: a whole one, or
 * the last of its parts to finish, which merges them. First, if rope
 * (c->rope_in_attn: no step does them before), bias and RoPE of the
 * head's queries (every part, into its own copy) and of its key, and the
 * KV write of its position (the one part that reads it: the last). */
static bool attend_chunk(struct infer_ctx *c, int l, int k, int ith, bool rope,
                         struct att_chunk *a)
{
    const struct infer_config *cf = &c->m->cfg;
    int nkv = cf->n_kv_heads, grp = cf->n_heads / nkv;
    int span = grp * cf->head_dim;
    *a = c->att_split ? c->att_map[k]
                      : (struct att_chunk){k / nkv, (int16_t)(k % nkv), 0, 1};
    int n = c->e[a->i].pos + 1, size = att_part_size(n);
    int p0 = a->np > 1 ? a->p * size : 0;
    int p1 = a->np > 1 && p0 + size < n ? p0 + size : n;
    float *s = c->scores + (size_t)ith * grp * (c->max_ctx + 1);
    float *o = c->att + (size_t)a->i * cf->n_heads * cf->head_dim +
               (size_t)a->g * span;
    const float *q =
        c->q + (size_t)a->i * cf->n_heads * cf->head_dim + (size_t)a->g * span;
    kv_prefetch(c, l, a->i, a->g, p0, p1);
    if (rope && a->np == 1) {
        qkv_finish_head(c, l, a->i, a->g);
    } else if (rope) {
        float *qc = c->q_th + (size_t)ith * span;
        rope_q(c, l, a->i, a->g, qc);
        q = qc;
        if (a->p == a->np - 1)
            rope_kv_write(c, l, a->i, a->g);
    }
    if (a->np == 1) {
        attend(c, l, a->i, a->g, q, p0, p1, s, o, NULL);
        return true;
    }
    attend(c, l, a->i, a->g, q, p0, p1, s, c->att_part + (size_t)k * span,
           c->att_stat + (size_t)k * grp * 2);
    /* Each layer adds np, one step after the other: the part that brings
     * the count to a multiple of np is the layer's last (acq_rel: it sees
     * every other part's output). */
    if ((atomic_fetch_add_explicit(&c->att_done[a->i * nkv + a->g], 1,
                                   memory_order_acq_rel) +
         1) %
            a->np !=
        0)
        return false;
    att_merge(c, k - a->p, a->np, o);
    return true;
}

static void ch_attend(struct infer_ctx *c, int l, int k, int ith)
{
    struct att_chunk a;
    attend_chunk(c, l, k, ith, false, &a);
}

/* Attention, then (when fusable) quantising the columns of a completed
 * (entry, KV head) for wo. */
static void ch_attend_act(struct infer_ctx *c, int l, int k, int ith)
{
    const struct infer_config *cf = &c->m->cfg;
    int span = cf->n_heads / cf->n_kv_heads * cf->head_dim;
    struct att_chunk a;
    if (attend_chunk(c, l, k, ith, c->rope_in_attn, &a))
        act_part(c, c->act[INFER_ACT_Q8A], &c->m->layers[l].wo, c->att, a.i,
                 (int64_t)a.g * span, span);
}

static void ch_att_act(struct infer_ctx *c, int l, int k, int ith)
{
    const struct infer_weight *wo[1] = {&c->m->layers[l].wo};
    (void)ith;
    act_rows(c, wo, 1, c->att, k);
}

static void ch_ffn_norm(struct infer_ctx *c, int l, int k, int ith)
{
    const struct infer_config *cf = &c->m->cfg;
    const struct infer_layer *L = &c->m->layers[l];
    int dim = cf->dim;
    (void)ith;
    rmsnorm_k(c, c->xb + (size_t)k * dim, c->x + (size_t)k * dim, L->ffn_norm);
    const struct infer_weight *gu[2] = {&L->w_gate, &L->w_up};
    act_rows(c, gu, 2, c->xb, k);
}

static void ch_silu(struct infer_ctx *c, int l, int k, int ith)
{
    int hid = c->m->cfg.hidden;
    float *g = c->hb + (size_t)k * hid, *u = c->hb2 + (size_t)k * hid;
    (void)ith;
    c->kern->silu_mul(g, u, hid);
    const struct infer_weight *dn[1] = {&c->m->layers[l].w_down};
    act_rows(c, dn, 1, c->hb, k);
}

/* Final residual and norm of output row k (entry out_rows[k]). */
static void ch_out_norm(struct infer_ctx *c, int l, int k, int ith)
{
    const struct infer_model *m = c->m;
    int dim = m->cfg.dim, i = c->out_rows[k];
    (void)l;
    (void)ith;
    rmsnorm_k(c, c->xb + (size_t)k * dim, c->x + (size_t)i * dim,
              m->output_norm);
    const struct infer_weight *ow[1] = {&m->output};
    act_rows(c, ow, 1, c->xb, k);
}

/* Prologues of the matmul steps with fuse_norm: thread ith norms (and
 * quantises) every entry's input for itself, exactly as the per-entry
 * steps would (the same operations, so the same bits). */
static void norm_th(struct infer_ctx *c, int ith, const float *nw,
                    const struct infer_weight *const *ws, int n_ws, int i,
                    int row)
{
    int dim = c->m->cfg.dim;
    float *xn = c->xb_th + (size_t)ith * FUSE_MAX * dim;
    rmsnorm_k(c, xn + (size_t)row * dim, c->x + (size_t)i * dim, nw);
    act_rows_th(c, ith, ws, n_ws, xn, row);
}

static void pro_attn_norm(struct infer_ctx *c, int l, int k, int ith)
{
    const struct infer_layer *L = &c->m->layers[l];
    const struct infer_weight *qkv[3] = {&L->wq, &L->wk, &L->wv};
    (void)k;
    for (int i = 0; i < c->n; i++)
        norm_th(c, ith, L->attn_norm, qkv, 3, i, i);
}

static void pro_ffn_norm(struct infer_ctx *c, int l, int k, int ith)
{
    const struct infer_layer *L = &c->m->layers[l];
    const struct infer_weight *gu[2] = {&L->w_gate, &L->w_up};
    (void)k;
    for (int i = 0; i < c->n; i++)
        norm_th(c, ith, L->ffn_norm, gu, 2, i, i);
}

static void pro_out_norm(struct infer_ctx *c, int l, int k, int ith)
{
    const struct infer_weight *ow[1] = {&c->m->output};
    (void)l;
    (void)k;
    for (int j = 0; j < c->n_out; j++)
        norm_th(c, ith, c->m->output_norm, ow, 1, c->out_rows[j], j);
}

/* Matmul chunks (k is a block of CHUNK_ROWS weight rows). */

/* Chunk k of a step over the weights ws[0, nw) one after another: the
 * index of the weight it falls in, and its chunk there in *kk. */
static int chunk_of(const struct infer_weight *const *ws, int nw, int k,
                    int *kk)
{
    int i = 0;
    for (; i + 1 < nw && k >= n_chunks(ws[i]); i++)
        k -= n_chunks(ws[i]);
    *kk = k;
    return i;
}

static void ch_qkv(struct infer_ctx *c, int l, int k, int ith)
{
    const struct infer_config *cf = &c->m->cfg;
    const struct infer_layer *L = &c->m->layers[l];
    const struct infer_weight *ws[3] = {&L->wq, &L->wk, &L->wv};
    float *ys[3] = {c->q, c->k, c->v};
    int kvd = cf->n_kv_heads * cf->head_dim, kk, i = chunk_of(ws, 3, k, &kk);
    mm_normed(c, ws[i], c->n, ys[i], i == 0 ? cf->n_heads * cf->head_dim : kvd,
              kk, ith);
}

static void ch_wo(struct infer_ctx *c, int l, int k, int ith)
{
    mm_chunk(c, &c->m->layers[l].wo, c->att, c->n, c->xb2, c->m->cfg.dim, k,
             ith);
    residual_rows(c, &c->m->layers[l].wo, k);
}

static void ch_gate_up(struct infer_ctx *c, int l, int k, int ith)
{
    const struct infer_layer *L = &c->m->layers[l];
    const struct infer_weight *ws[2] = {&L->w_gate, &L->w_up};
    int kk, i = chunk_of(ws, 2, k, &kk);
    mm_normed(c, ws[i], c->n, i == 0 ? c->hb : c->hb2, c->m->cfg.hidden, kk,
              ith);
}

/* Gate and up rows [32k, 32k + 32) for all entries, then SiLU(gate) * up
 * on those columns and their Q8A blocks for w_down (when fuse_silu(L)),
 * into act_down: the gate and up chunks still read act[Q8A]. */
static void ch_gate_up_silu(struct infer_ctx *c, int l, int k, int ith)
{
    const struct infer_layer *L = &c->m->layers[l];
    int hid = c->m->cfg.hidden;
    int64_t r0, r1;
    chunk_range(&L->w_gate, k, &r0, &r1);
    mm_normed(c, &L->w_gate, c->n, c->hb, hid, k, ith);
    mm_normed(c, &L->w_up, c->n, c->hb2, hid, k, ith);
    /* Two loops, not one: each row's work is a chain of latencies (exp,
     * division, horizontal max and sum), and rows apart overlap. */
    for (int b = 0; b < c->n; b++)
        c->kern->silu_mul(c->hb + (size_t)b * hid + r0,
                          c->hb2 + (size_t)b * hid + r0, r1 - r0);
    for (int b = 0; b < c->n; b++)
        act_part(c, c->act_down, &L->w_down, c->hb, b, r0, r1 - r0);
}

static void ch_down(struct infer_ctx *c, int l, int k, int ith)
{
    const struct infer_layer *L = &c->m->layers[l];
    mm_chunk_in(c, &L->w_down, c->hb, c->n, c->xb2, c->m->cfg.dim, k,
                fuse_silu(L) ? c->act_down : NULL, ith);
    residual_rows(c, &L->w_down, k);
}

static void ch_logits(struct infer_ctx *c, int l, int k, int ith)
{
    (void)l;
    mm_normed(c, &c->m->output, c->n_out, c->logits, c->m->cfg.n_vocab, k, ith);
}

/* Bytes of a chunk's weights chunk_prefetch asks for. */
#define PF_FIRST 8192

static void prefetch_rows(const struct infer_ctx *c,
                          const struct infer_weight *w, int k)
{
    int64_t r0, r1;
    chunk_range(w, k, &r0, &r1);
    const char *p;
    size_t bytes;
    if (w->packed != NULL && infer_packed_fn(c->kern, w->type) != NULL) {
        size_t gb = infer_packed_group_bytes(w->type, w->cols);
        p = (const char *)w->packed + (size_t)(r0 / INFER_Q8R_ROWS) * gb;
        bytes = (size_t)(r1 - r0) / INFER_Q8R_ROWS * gb;
    } else {
        p = (const char *)w->data + (size_t)r0 * w->row_bytes;
        bytes = (size_t)(r1 - r0) * w->row_bytes;
    }
    for (size_t o = 0; o < bytes && o < PF_FIRST; o += 64)
        __builtin_prefetch(p + o, 0, 3);
}

/* Asks for the first weights of matmul chunk k of step s. A thread does
 * so for its first own chunk of the next step as it takes its last own
 * chunks of a step, and for its first chunk of a step before the step's
 * prologue: the weights then arrive while it computes, waits at the step's
 * end or norms its input, and the chunk starts nearer streaming speed: at
 * batch 1 a thread's first chunk of a step took 1.7-2.1x the time of its
 * later ones without this, 1.2-1.7x with it (rdtsc per chunk). */
static void chunk_prefetch(const struct infer_ctx *c, const struct step *s,
                           int k)
{
    const struct infer_layer *L = &c->m->layers[s->l];
    const struct infer_weight *qkv[3] = {&L->wq, &L->wk, &L->wv};
    const struct infer_weight *gu[2] = {&L->w_gate, &L->w_up};
    int kk;
    if (s->fn == ch_qkv) {
        int i = chunk_of(qkv, 3, k, &kk);
        prefetch_rows(c, qkv[i], kk);
    } else if (s->fn == ch_wo) {
        prefetch_rows(c, &L->wo, k);
    } else if (s->fn == ch_down) {
        prefetch_rows(c, &L->w_down, k);
    } else if (s->fn == ch_gate_up_silu) {
        prefetch_rows(c, &L->w_gate, k);
        prefetch_rows(c, &L->w_up, k);
    } else if (s->fn == ch_gate_up) {
        int i = chunk_of(gu, 2, k, &kk);
        prefetch_rows(c, gu[i], kk);
    } else if (s->fn == ch_logits) {
        prefetch_rows(c, &c->m->output, k);
    }
}

static void forward_worker(void *arg, int ith, int nth)
{
    struct infer_ctx *c = arg;
    const struct infer_model *m = c->m;
    int n = c->n, si = 0;
    bool fn = c->fuse_norm;
    (void)nth;
    run_step(c, &si, n, ch_embed, 0, ith);
    int span = m->cfg.n_heads / m->cfg.n_kv_heads * m->cfg.head_dim;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const struct infer_layer *L = &m->layers[l];
        if (l > 0 && !fn)
            run_step(c, &si, n, ch_attn_norm, l, ith);
        run_step_pro(c, &si,
                     n_chunks(&L->wq) + n_chunks(&L->wk) + n_chunks(&L->wv),
                     ch_qkv, l, ith, fn ? pro_attn_norm : NULL);
        bool fuse = act_fusable(&L->wo, span);
        if (!fuse || !c->rope_in_attn)
            run_step(c, &si, n, ch_rope, l, ith);
        if (fuse) {
            run_step(c, &si, c->n_att, ch_attend_act, l, ith);
        } else {
            run_step(c, &si, c->n_att, ch_attend, l, ith);
            run_step(c, &si, n, ch_att_act, l, ith);
        }
        run_step(c, &si, n_chunks(&L->wo), ch_wo, l, ith);
        if (!fn)
            run_step(c, &si, n, ch_ffn_norm, l, ith);
        if (fuse_silu(L)) {
            run_step_pro(c, &si, n_chunks(&L->w_gate), ch_gate_up_silu, l, ith,
                         fn ? pro_ffn_norm : NULL);
        } else {
            run_step_pro(c, &si, n_chunks(&L->w_gate) + n_chunks(&L->w_up),
                         ch_gate_up, l, ith, fn ? pro_ffn_norm : NULL);
            run_step(c, &si, n, ch_silu, l, ith);
        }
        run_step(c, &si, n_chunks(&L->w_down), ch_down, l, ith);
    }
    if (!fn)
        run_step(c, &si, c->n_out, ch_out_norm, 0, ith);
    run_step_pro(c, &si, c->n_out > 0 ? n_chunks(&m->output) : 0, ch_logits, 0,
                 ith, fn ? pro_out_norm : NULL);
}

int infer_forward(struct infer_ctx *c, struct infer_kv *kv,
                  const struct infer_batch_entry *e, int n, float *logits,
                  struct infer_err *err)
{
    if (n < 1 || n > c->max_batch || e == NULL || kv == NULL)
        return infer_err_set(err, INFER_ERR_ARG,
                             "forward: batch of %d entries (1 to %d)", n,
                             c->max_batch);
    if (kv->n_layers != c->m->cfg.n_layers ||
        kv->kv_dim != c->m->cfg.n_kv_heads * c->m->cfg.head_dim)
        return infer_err_set(err, INFER_ERR_ARG,
                             "forward: KV pool of another model");
    int n_out = 0;
    for (int i = 0; i < n; i++) {
        const struct infer_batch_entry *b = &e[i];
        if (b->token < 0 || b->token >= c->m->cfg.n_vocab)
            return infer_err_set(err, INFER_ERR_ARG,
                                 "forward: entry %d: token %d out of range", i,
                                 b->token);
        if (b->seq == NULL || b->pos < 0 || b->pos >= c->max_ctx ||
            b->pos >= b->seq->n_blocks * kv->block_size)
            return infer_err_set(err, INFER_ERR_ARG,
                                 "forward: entry %d: position %d is not "
                                 "backed by the KV cache",
                                 i, b->pos);
        if (b->logits)
            c->out_rows[n_out++] = i;
    }
    if (n_out > 0 && logits == NULL)
        return infer_err_set(err, INFER_ERR_ARG,
                             "forward: logits wanted but no buffer");
    c->e = e;
    c->n = n;
    c->n_out = n_out;
    /* An entry attends to KV written by earlier entries of its sequence
     * in this call, so the fusion needs one entry per sequence (decode). */
    c->rope_in_attn = true;
    for (int i = 0; i < n && c->rope_in_attn; i++)
        for (int j = 0; j < i; j++)
            if (e[j].seq == e[i].seq) {
                c->rope_in_attn = false;
                break;
            }
    /* The attention chunks: (entry, KV head), or parts of them. */
    int nkv = c->m->cfg.n_kv_heads;
    c->att_split = false;
    for (int i = 0; i < n && !c->att_split; i++)
        c->att_split = att_n_parts(e[i].pos + 1) > 1;
    c->n_att = c->att_split ? 0 : n * nkv;
    for (int i = 0; i < n && c->att_split; i++) {
        int np = att_n_parts(e[i].pos + 1);
        for (int g = 0; g < nkv; g++) {
            atomic_store_explicit(&c->att_done[i * nkv + g], 0,
                                  memory_order_relaxed);
            for (int p = 0; p < np; p++)
                c->att_map[c->n_att++] =
                    (struct att_chunk){i, (int16_t)g, (uint8_t)p, (uint8_t)np};
        }
    }
    c->fuse_norm = n <= FUSE_MAX;
    c->kv = kv;
    c->logits = logits;
    c->planning = true; /* the steps and their shares, for this call */
    forward_worker(c, 0, c->nth);
    c->planning = false;
    /* infer_pool_run publishes these stores to the workers. */
    infer_pool_run(c->pool, forward_worker, c);
    c->e = NULL;
    return INFER_OK;
}
