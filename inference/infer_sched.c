/*
 * infer_sched.c: local engines. One scheduler thread per loaded model runs
 * continuous batching over the batched forward pass:
 *
 *   every step: drop cancelled requests (their KV blocks go back to the
 *   pool at once) -> admit queued requests in arrival order while a batch
 *   slot and enough KV blocks are free (evicting cached sessions, least
 *   recently used first, when the pool is short) -> one forward call with
 *   one decode token of every generating request plus prompt chunks of the
 *   prefilling ones within step_token_budget -> sample, stream text, finish.
 *
 * Admission reserves a request's whole span (prompt + max new tokens) from
 * the pool, so a running request never runs out of blocks and nothing is
 * ever preempted; a head request that does not fit waits (FCFS, no
 * overtaking) until running ones finish. The KV pool, block tables, ctx and
 * cached sessions belong to the scheduler thread; the queue, the counters
 * and pool operations are under the engine mutex so infer_engine_info sees
 * a consistent snapshot.
 *
 * Engines with the same thread count share one compute pool (a process-wide
 * registry); a mutex around infer_forward serialises their steps, so two
 * resident models never fight over the cores.
 */
#include "infer_sched.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer_model.h"

#define KV_BLOCK         16
#define KV_DEFAULT_BYTES ((size_t)1 << 30) /* default pool cap */
#define CTX_DEFAULT_MAX  4096
#define PIECE_MAX        256
#define PLP_ROWS         16 /* logits rows a step gives prompt logprobs */
#define EMPTY_MAX        16 /* tokens an answer may spend before its text */

/* ---- the shared compute pools
 * ------------------------------------------------------ */

struct compute {
    int threads;
    int refs;
    struct infer_pool *pool;
    pthread_mutex_t mu; /* one forward at a time on this pool */
    struct compute *next;
};

static pthread_mutex_t compute_mu = PTHREAD_MUTEX_INITIALIZER;
static struct compute *compute_list;

static struct compute *compute_get(int threads)
{
    pthread_mutex_lock(&compute_mu);
    struct compute *c = compute_list;
    while (c != NULL && c->threads != threads)
        c = c->next;
    if (c == NULL) {
        c = calloc(1, sizeof(*c));
        if (c != NULL) {
            c->pool = infer_pool_new(threads);
            if (c->pool == NULL) {
                free(c);
                c = NULL;
            } else {
                c->threads = threads;
                pthread_mutex_init(&c->mu, NULL);
                c->next = compute_list;
                compute_list = c;
            }
        }
    }
    if (c != NULL)
        c->refs++;
    pthread_mutex_unlock(&compute_mu);
    return c;
}

static void compute_put(struct compute *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&compute_mu);
    if (--c->refs == 0) {
        struct compute **pp = &compute_list;
        while (*pp != c)
            pp = &(*pp)->next;
        *pp = c->next;
        infer_pool_free(c->pool);
        pthread_mutex_destroy(&c->mu);
        free(c);
    }
    pthread_mutex_unlock(&compute_mu);
}

/* ---- requests
 * ------------------------------------------------------------------------ */

struct req {
    struct infer_stream *s;
    struct req *next; /* queue link */
    int32_t *ids;     /* (cap) prompt, then generated tokens */
    int n_ids, cap;
    int n_prompt;
    int n_past; /* positions in the KV cache */
    int max_new, n_gen;
    int cached; /* positions reused from a session */
    uint64_t session;
    struct infer_seq seq; /* block table, allocated at submit */
    struct infer_sampler *smp;
    char **stops; /* (n_stops) copies */
    int n_stops;
    const char *eos_stop; /* the EOS text among stops, or NULL */
    size_t n_out;         /* bytes streamed so far */
    struct infer_utf8 u8;
    char *hold; /* (cap_hold) text held back for stop strings */
    size_t n_hold, cap_hold;
    bool strip_space; /* drop one leading space of the output */
    double t_first;
    int row; /* logits row this step, -1 if none */
    /* logprobs: each generated token's record, and where its bytes end
     * in the raw output (the pieces before UTF-8 assembly, stops and
     * holds); records are handed out, in order, once the text up to
     * their end has been (lp_sent of n_lp so far). */
    bool want_lp;
    int n_top;
    bool want_plp, prompt_only;   /* the prompt's logprobs; nothing else */
    int plp_row, plp_from, plp_n; /* this step: prompt rows from plp_row
                                     for positions plp_from.. (plp_n) */
    struct infer_token_lp *lp;    /* (cap_lp) */
    long long *lp_end;            /* (cap_lp) */
    int n_lp, cap_lp, lp_sent;
    long long raw_in; /* raw bytes pushed so far */
};

/* A finished conversation kept for prefix reuse. */
struct session {
    uint64_t id;
    struct infer_seq seq;
    int32_t *ids; /* (n) the tokens in its KV cache */
    int n;
    long long used; /* LRU clock */
};

struct sched {
    struct infer_engine base;
    struct infer_model *m;
    struct infer_ctx *ctx;
    struct infer_kv *kv;
    struct compute *comp;
    struct infer_engine_opts o;
    int ctx_len, max_tokens_step;
    float *logits; /* (max_batch, n_vocab) */
    float *lp_raw; /* (n_vocab) a row's raw logits, for logprobs; lazy */
    struct infer_batch_entry *batch; /* (max_tokens_step) */
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    bool stop;
    struct req *q_head, *q_tail;
    int n_queued;
    struct req **run; /* (max_batch) in admission order */
    int n_run;
    struct session *sess; /* (max_sessions) */
    int n_sess;
    long long clock, steps;
};

static void req_free(struct sched *e, struct req *r)
{
    if (r == NULL)
        return;
    if (r->seq.n_blocks > 0) /* only the scheduler thread gets here */
        infer_kv_release(e->kv, &r->seq, 0);
    infer_seq_cleanup(&r->seq);
    infer_sampler_free(r->smp);
    for (int i = 0; i < r->n_stops; i++)
        free(r->stops[i]);
    free(r->stops);
    free(r->ids);
    free(r->hold);
    free(r->lp);
    free(r->lp_end);
    free(r);
}

/* ---- text output
 * ---------------------------------------------------------------------- */

static int blocks_for(int n_pos)
{
    return (n_pos + KV_BLOCK - 1) / KV_BLOCK;
}

/* Streams text with the logprobs records it completes: those whose raw
 * bytes end at or before raw position upto, or all of them. */
static bool req_send(struct req *r, const char *text, size_t len,
                     long long upto, bool all)
{
    int n = r->lp_sent;
    while (n < r->n_lp && (all || r->lp_end[n] <= upto))
        n++;
    bool ok = infer__stream_text_tokens(r->s, text, len, r->lp + r->lp_sent,
                                        (size_t)(n - r->lp_sent));
    r->lp_sent = n;
    return ok;
}

/* Streams the text of token tok; true when a stop string ended it. */
static bool req_emit(struct sched *e, struct req *r, int tok, bool flush)
{
    char buf[3 * (PIECE_MAX + 4)];
    size_t len = 0, k;
    const char *p =
        tok >= 0 ? infer_tok_piece(e->m->tok, tok, false, &len) : "";
    if (p == NULL)
        p = "", len = 0;
    if (len > PIECE_MAX)
        len = PIECE_MAX;
    r->raw_in += (long long)len;
    if (tok >= 0 && r->n_lp > r->lp_sent)
        r->lp_end[r->n_lp - 1] = r->raw_in;
    k = infer_utf8_push(&r->u8, p, len, buf, sizeof(buf));
    if (flush)
        k += infer_utf8_flush(&r->u8, buf + k, sizeof(buf) - k);
    const char *b = buf;
    if (r->strip_space && k > 0) {
        if (b[0] == ' ')
            b++, k--;
        r->strip_space = false;
    }
    if (r->n_stops == 0) {
        if (!req_send(r, b, k, r->raw_in - r->u8.n, flush))
            atomic_store(&r->s->cancelled, true);
        return false;
    }
    if (r->n_hold + k == 0) { /* nothing to stream or match */
        if (flush)            /* (and hold may be NULL) */
            req_send(r, NULL, 0, 0, true);
        return false;
    }
    if (r->n_hold + k > r->cap_hold) {
        size_t cap = (r->n_hold + k) * 2 + 64;
        char *h = realloc(r->hold, cap);
        if (h == NULL) {
            atomic_store(&r->s->cancelled, true);
            return false;
        }
        r->hold = h;
        r->cap_hold = cap;
    }
    memcpy(r->hold + r->n_hold, b, k);
    r->n_hold += k;
    size_t keep = 0;
    long at = infer_stop_find(r->hold, r->n_hold, (const char *const *)r->stops,
                              r->n_stops, &keep);
    /* An answer that opens with the model's end marker has not begun: a
     * story model ends the prompt's story there and starts its own, so the
     * marker is dropped rather than ending the answer empty. */
    size_t eos_len = r->eos_stop != NULL ? strlen(r->eos_stop) : 0;
    while (at == 0 && r->n_out == 0 && eos_len > 0 && r->n_hold >= eos_len &&
           memcmp(r->hold, r->eos_stop, eos_len) == 0) {
        r->n_hold -= eos_len;
        memmove(r->hold, r->hold + eos_len, r->n_hold);
        while (r->n_hold > 0 && (r->hold[0] == ' ' || r->hold[0] == '\n')) {
            r->n_hold--;
            memmove(r->hold, r->hold + 1, r->n_hold);
        }
        keep = 0;
        at = infer_stop_find(r->hold, r->n_hold, (const char *const *)r->stops,
                             r->n_stops, &keep);
    }
    size_t out = at >= 0 ? (size_t)at : flush ? r->n_hold : r->n_hold - keep;
    /* Never cut a character: hold back to a UTF-8 boundary. */
    while (out > 0 && out < r->n_hold &&
           ((unsigned char)r->hold[out] & 0xC0) == 0x80)
        out--;
    /* The raw position the text handed out reaches; at a stop, the tokens
     * with a byte before it come (the one that holds the stop's start
     * too) and the others never do. */
    long long upto = r->raw_in - r->u8.n - (long long)(r->n_hold - out);
    if (at >= 0) {
        int n = r->lp_sent;
        while (n < r->n_lp && (n == 0 ? 0 : r->lp_end[n - 1]) < upto)
            n++;
        infer__stream_text_tokens(r->s, r->hold, out, r->lp + r->lp_sent,
                                  (size_t)(n - r->lp_sent));
        r->lp_sent = r->n_lp;
    } else {
        req_send(r, r->hold, out, upto, flush);
    }
    r->n_out += out;
    memmove(r->hold, r->hold + out, r->n_hold - out);
    r->n_hold -= out;
    return at >= 0;
}

static void req_stats(const struct req *r, struct infer_stats *st,
                      const char *reason)
{
    double now = infer_now();
    *st = (struct infer_stats){
        .prompt_tokens = r->n_prompt,
        .completion_tokens = r->n_gen,
        .cached_tokens = r->cached,
        .ttft_ms = r->t_first > 0 ? (r->t_first - r->s->t_submit) * 1e3 : 0,
        .gen_ms = r->t_first > 0 ? (now - r->t_first) * 1e3 : 0,
        .finish_reason = reason};
}

/* ---- sessions (prefix reuse)
 * -------------------------------------------------------------- */

static void session_drop(struct sched *e, int i)
{
    struct session *s = &e->sess[i];
    infer_kv_release(e->kv, &s->seq, 0);
    infer_seq_cleanup(&s->seq);
    free(s->ids);
    e->sess[i] = e->sess[--e->n_sess];
}

static int session_lru(const struct sched *e)
{
    int best = -1;
    for (int i = 0; i < e->n_sess; i++)
        if (best < 0 || e->sess[i].used < e->sess[best].used)
            best = i;
    return best;
}

/* Keeps a finished request's KV blocks for its session (under mu). */
static void session_keep(struct sched *e, struct req *r)
{
    for (int i = 0; i < e->n_sess; i++)
        if (e->sess[i].id == r->session) {
            session_drop(e, i);
            break;
        }
    if (e->n_sess == e->o.max_sessions)
        session_drop(e, session_lru(e));
    int32_t *ids =
        malloc((size_t)(r->n_past > 0 ? r->n_past : 1) * sizeof(int32_t));
    if (ids == NULL || e->o.max_sessions == 0)
        return free(ids);
    memcpy(ids, r->ids, (size_t)r->n_past * sizeof(int32_t));
    infer_kv_release(e->kv, &r->seq, r->n_past);
    e->sess[e->n_sess++] = (struct session){.id = r->session,
                                            .seq = r->seq,
                                            .ids = ids,
                                            .n = r->n_past,
                                            .used = ++e->clock};
    r->seq = (struct infer_seq){0};
}

/* Gives r the cached prefix of its session, if any (under mu). */
static void session_adopt(struct sched *e, struct req *r)
{
    int i = 0;
    while (i < e->n_sess && e->sess[i].id != r->session)
        i++;
    if (i == e->n_sess)
        return;
    struct session *s = &e->sess[i];
    int n = 0, lim = s->n < r->n_prompt - 1 ? s->n : r->n_prompt - 1;
    while (n < lim && s->ids[n] == r->ids[n])
        n++;
    if (n > 0 && s->seq.max_blocks >= r->seq.max_blocks) {
        /* Swap tables: r takes the cached blocks, the session gets r's
         * empty table and is dropped. */
        struct infer_seq t = r->seq;
        r->seq = s->seq;
        s->seq = t;
        infer_kv_release(e->kv, &r->seq, n);
        r->n_past = r->cached = n;
    }
    session_drop(e, i);
}

/* ---- admission
 * ----------------------------------------------------------------------------
 */

/* Tries to give the queue head its KV span (under mu). */
static bool admit_one(struct sched *e, struct req *r)
{
    if (r->session != 0 && r->n_past == 0)
        session_adopt(e, r);
    int need = r->n_prompt + r->max_new;
    while (infer_kv_reserve(e->kv, &r->seq, need) != INFER_OK) {
        if (e->n_sess == 0)
            return false;
        session_drop(e, session_lru(e));
    }
    return true;
}

/* Queued requests whose client is still there (under mu). Cancelled ones
 * wait for the engine thread to drop them, and must not make a new request
 * look busy meanwhile. */
static int queue_live(const struct sched *e)
{
    int n = 0;
    for (const struct req *r = e->q_head; r != NULL; r = r->next)
        n += !infer__stream_cancelled(r->s);
    return n;
}

/* Moves cancelled queue entries to *dead and admits what fits (under mu). */
static void admit(struct sched *e, struct req **dead)
{
    struct req **pp = &e->q_head, *last = NULL;
    while (*pp != NULL) {
        struct req *r = *pp;
        if (infer__stream_cancelled(r->s)) {
            *pp = r->next;
            r->next = *dead;
            *dead = r;
            e->n_queued--;
        } else {
            last = r;
            pp = &r->next;
        }
    }
    e->q_tail = last;
    while (e->q_head != NULL && e->n_run < e->o.max_batch &&
           admit_one(e, e->q_head)) {
        struct req *r = e->q_head;
        e->q_head = r->next;
        if (e->q_head == NULL)
            e->q_tail = NULL;
        e->n_queued--;
        r->next = NULL;
        e->run[e->n_run++] = r;
    }
}

/* ---- one step
 * -------------------------------------------------------------------------------
 */

/* Fills e->batch; returns the entry count and sets each r->row. */
static int build_batch(struct sched *e)
{
    int n = 0, rows = 0, budget = e->o.step_token_budget, plp = PLP_ROWS;
    for (int i = 0; i < e->n_run; i++) { /* decode tokens first */
        struct req *r = e->run[i];
        r->row = -1;
        r->plp_n = 0;
        if (r->n_ids - r->n_past != 1)
            continue;
        e->batch[n++] = (struct infer_batch_entry){&r->seq, r->n_past,
                                                   r->ids[r->n_past], true};
        r->row = rows++;
    }
    for (int i = 0; i < e->n_run && budget > 0; i++) { /* prompt chunks */
        struct req *r = e->run[i];
        int left = r->n_ids - r->n_past;
        if (left <= 1 && r->row >= 0)
            continue;
        int chunk = left < budget ? left : budget;
        /* Prompt logprobs: a row for every position, within PLP_ROWS. */
        if (r->want_plp && chunk > plp)
            chunk = plp;
        if (chunk <= 0)
            continue;
        if (r->want_plp) {
            r->plp_row = rows;
            r->plp_from = r->n_past;
            r->plp_n = chunk;
            plp -= chunk;
        }
        for (int k = 0; k < chunk; k++) {
            int pos = r->n_past + k;
            bool last = pos == r->n_ids - 1;
            e->batch[n++] = (struct infer_batch_entry){
                &r->seq, pos, r->ids[pos], last || r->want_plp};
            if (last)
                r->row = r->want_plp ? r->plp_row + k : rows;
        }
        rows += r->want_plp ? chunk : r->row >= 0;
        budget -= chunk;
    }
    return n;
}

/* Logprobs, before sampling changes lg: the raw row kept in e->lp_raw, its
 * log-sum-exp in *lse and the n_top most likely tokens into t->top. False
 * if out of memory. */
static bool lp_measure(struct sched *e, const struct req *r, const float *lg,
                       struct infer_token_lp *t, double *lse)
{
    int n = e->m->cfg.n_vocab;
    if (e->lp_raw == NULL && (e->lp_raw = malloc(sizeof(float) * n)) == NULL)
        return false;
    memcpy(e->lp_raw, lg, sizeof(float) * n);
    float mx = lg[0];
    for (int i = 1; i < n; i++)
        mx = lg[i] > mx ? lg[i] : mx;
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += expf(lg[i] - mx);
    *lse = mx + log(sum);
    /* Top n_top by insertion (n_top <= 20): ties keep the lower id first. */
    t->n_top = 0;
    for (int i = 0; i < n && r->n_top > 0; i++) {
        if (t->n_top == r->n_top && !(lg[i] > t->top[t->n_top - 1].logprob))
            continue;
        int j = t->n_top < r->n_top ? t->n_top++ : t->n_top - 1;
        for (; j > 0 && lg[i] > t->top[j - 1].logprob; j--)
            t->top[j] = t->top[j - 1];
        t->top[j].token = i;
        t->top[j].logprob = lg[i];
    }
    for (int j = 0; j < t->n_top; j++)
        t->top[j].logprob = (float)(t->top[j].logprob - *lse);
    return true;
}

/* Keeps the record of generated token tok (its bytes' end is set when its
 * text is pushed). False if out of memory. */
static bool lp_push(struct sched *e, struct req *r, struct infer_token_lp *t,
                    int tok, double lse)
{
    if (r->n_lp == r->cap_lp) {
        int cap = r->cap_lp > 0 ? r->cap_lp * 2 : 64;
        struct infer_token_lp *l = realloc(r->lp, sizeof(*l) * cap);
        if (l != NULL)
            r->lp = l;
        long long *end = realloc(r->lp_end, sizeof(*end) * cap);
        if (end != NULL)
            r->lp_end = end;
        if (l == NULL || end == NULL)
            return false;
        r->cap_lp = cap;
    }
    t->token = tok;
    t->logprob = (float)(e->lp_raw[tok] - lse);
    r->lp_end[r->n_lp] = r->raw_in;
    r->lp[r->n_lp++] = *t;
    return true;
}

/* The prompt's logprobs of this step's rows: the token after each position
 * (and, at position 0, the first token, with nothing to measure). */
static void plp_emit(struct sched *e, struct req *r)
{
    struct infer_token_lp t[PLP_ROWS + 1];
    int n = 0;
    if (r->plp_from == 0)
        t[n++] = (struct infer_token_lp){
            .token = r->ids[0], .logprob = NAN, .prompt = true};
    for (int k = 0; k < r->plp_n; k++) {
        int pos = r->plp_from + k;
        if (pos + 1 >= r->n_prompt)
            break;
        const float *lg =
            e->logits + (size_t)(r->plp_row + k) * e->m->cfg.n_vocab;
        double lse;
        t[n] = (struct infer_token_lp){.prompt = true};
        if (!lp_measure(e, r, lg, &t[n], &lse)) {
            atomic_store(&r->s->cancelled, true);
            return;
        }
        t[n].token = r->ids[pos + 1];
        t[n].logprob = (float)(lg[r->ids[pos + 1]] - lse);
        n++;
    }
    if (!infer__stream_text_tokens(r->s, NULL, 0, t, (size_t)n))
        atomic_store(&r->s->cancelled, true);
}

/* After the forward pass: advance, sample, stream; true if r finished. */
static bool req_advance(struct sched *e, struct req *r, int computed,
                        const char **reason)
{
    r->n_past += computed;
    if (r->plp_n > 0)
        plp_emit(e, r);
    if (r->row < 0)
        return false;
    if (r->prompt_only) { /* scored: nothing to generate */
        req_emit(e, r, -1, true);
        *reason = "length";
        return true;
    }
    float *lg = e->logits + (size_t)r->row * e->m->cfg.n_vocab;
    struct infer_token_lp t = {0};
    double lse = 0;
    bool lp = r->want_lp && lp_measure(e, r, lg, &t, &lse);
    if (r->want_lp && !lp)
        atomic_store(&r->s->cancelled, true); /* out of memory */
    /* An answer does not end before it has said anything (for its first
     * EMPTY_MAX tokens): a story model that first closes the prompt's story
     * with its end marker then writes its own instead of nothing. This
     * depends only on the request's own tokens, so batching cannot change
     * it. */
    if (r->n_out == 0 && r->n_gen < EMPTY_MAX)
        for (int i = 0; i < e->m->cfg.n_vocab; i++)
            if (infer_tok_is_eog(e->m->tok, i))
                lg[i] = -INFINITY;
    int tok = infer_sampler_sample(r->smp, lg);
    if (r->t_first == 0)
        r->t_first = infer_now();
    *reason = "stop";
    if (infer_tok_is_eog(e->m->tok, tok)) {
        req_emit(e, r, -1, true);
        return true;
    }
    infer_sampler_accept(r->smp, tok, true);
    if (lp && !lp_push(e, r, &t, tok, lse))
        atomic_store(&r->s->cancelled, true);
    r->ids[r->n_ids++] = tok;
    r->n_gen++;
    bool last = r->n_gen >= r->max_new;
    if (req_emit(e, r, tok, last))
        return true;
    *reason = "length";
    return last;
}

/* Ends r: stats to the stream, KV to a session or back to the pool. */
static void req_finish(struct sched *e, struct req *r, const char *reason,
                       const char *error)
{
    struct infer_stats st;
    req_stats(r, &st, reason);
    /* Blocks first, so a client that saw the end sees them back. */
    pthread_mutex_lock(&e->mu);
    if (error == NULL && r->session != 0 && r->n_past > 0)
        session_keep(e, r);
    if (r->seq.n_blocks > 0)
        infer_kv_release(e->kv, &r->seq, 0);
    pthread_mutex_unlock(&e->mu);
    infer__stream_detach(r->s);
    if (error != NULL)
        infer__stream_fail(r->s, &st, "%s", error);
    else
        infer__stream_done(r->s, &st);
    infer__stream_unref(r->s);
    r->s = NULL;
    req_free(e, r);
}

static void step(struct sched *e)
{
    int n = build_batch(e);
    struct infer_err err = {{0}};
    int st = INFER_OK;
    if (n > 0) {
        pthread_mutex_lock(&e->comp->mu);
        st = infer_forward(e->ctx, e->kv, e->batch, n, e->logits, &err);
        pthread_mutex_unlock(&e->comp->mu);
    }
    /* Positions computed per request this step. */
    int keep = 0;
    for (int i = 0; i < e->n_run; i++) {
        struct req *r = e->run[i];
        int computed = 0;
        for (int k = 0; k < n; k++)
            computed += e->batch[k].seq == &r->seq;
        const char *reason = NULL;
        if (st != INFER_OK) {
            req_finish(e, r, "stop", err.msg);
            continue;
        }
        if (req_advance(e, r, computed, &reason))
            req_finish(e, r, reason, NULL);
        else
            e->run[keep++] = r;
    }
    pthread_mutex_lock(&e->mu);
    e->n_run = keep;
    e->steps++;
    pthread_mutex_unlock(&e->mu);
}

static void *sched_main(void *arg)
{
    struct sched *e = arg;
    for (;;) {
        struct req *dead = NULL;
        pthread_mutex_lock(&e->mu);
        for (;;) {
            /* Drop cancelled running requests: blocks back at once. */
            int keep = 0;
            for (int i = 0; i < e->n_run; i++) {
                struct req *r = e->run[i];
                if (infer__stream_cancelled(r->s)) {
                    r->next = dead;
                    dead = r;
                } else {
                    e->run[keep++] = r;
                }
            }
            e->n_run = keep;
            admit(e, &dead);
            if (e->stop || e->n_run > 0 || dead != NULL)
                break;
            pthread_cond_wait(&e->cv, &e->mu);
        }
        bool stop = e->stop;
        pthread_mutex_unlock(&e->mu);
        while (dead != NULL) {
            struct req *r = dead;
            dead = r->next;
            req_finish(e, r, "stop", "cancelled");
        }
        if (stop)
            break;
        if (e->n_run > 0)
            step(e);
    }
    return NULL;
}

/* ---- submit
 * -----------------------------------------------------------------------------------
 */

static int sched_submit(struct infer_engine *base, const struct infer_params *p,
                        struct infer_stream *s, struct infer_err *err)
{
    struct sched *e = (struct sched *)base;
    char *text = infer__params_text(p, base->fmt, e->m->chat_template, err);
    if (text == NULL)
        return p->msgs != NULL ? INFER_ERR_ARG : INFER_ERR_NOMEM;
    struct req *r = calloc(1, sizeof(*r));
    int st = r != NULL ? INFER_OK : INFER_ERR_NOMEM;
    size_t len = strlen(text);
    bool chat = p->msgs != NULL;
    int n = 0;
    if (st == INFER_OK) {
        r->cap = e->ctx_len;
        r->ids = malloc((size_t)r->cap * sizeof(int32_t));
        st = r->ids != NULL ? INFER_OK : INFER_ERR_NOMEM;
    }
    if (st == INFER_OK) {
        n = infer_tok_encode(e->m->tok, text, len, true, chat, r->ids, r->cap);
        if (n < 0)
            st = infer_err_set(err, n, "cannot tokenize the prompt");
        else if (n == 0 && infer_tok_bos(e->m->tok) >= 0)
            r->ids[n++] = infer_tok_bos(e->m->tok);
    }
    free(text);
    if (st == INFER_OK && n == 0)
        st = infer_err_set(err, INFER_ERR_ARG, "empty prompt");
    for (size_t i = 0; st == INFER_OK && i < p->n_logit_bias; i++)
        if (p->logit_bias[i].token >= e->m->cfg.n_vocab)
            st = infer_err_set(err, INFER_ERR_ARG,
                               "logit_bias: token %d is not in this model's "
                               "vocabulary (0 to %d)",
                               (int)p->logit_bias[i].token,
                               e->m->cfg.n_vocab - 1);
    int span = e->ctx_len < e->o.kv_blocks * KV_BLOCK
                   ? e->ctx_len
                   : e->o.kv_blocks * KV_BLOCK;
    if (st == INFER_OK && n >= span)
        st = infer_err_set(err, INFER_ERR_TOO_LONG,
                           "the prompt has %d tokens; this model's context "
                           "holds %d (prompt plus at least one new token)",
                           n, span);
    if (st != INFER_OK) {
        req_free(e, r);
        return st == INFER_ERR_NOMEM ? infer_err_set(err, st, "out of memory")
                                     : st;
    }
    r->n_prompt = r->n_ids = n;
    int room = span - n;
    r->max_new =
        p->max_tokens > 0 && p->max_tokens < room ? p->max_tokens : room;
    r->session = p->session;
    r->want_lp = p->logprobs;
    r->n_top = p->top_logprobs;
    r->want_plp = p->prompt_logprobs;
    r->prompt_only = p->prompt_only;
    if (r->want_plp)
        r->session = 0; /* every position's logits are wanted */
    if (r->prompt_only)
        r->max_new = 1; /* KV for the prompt; the one token is never made */
    r->strip_space = n == 1 || infer_tok_is_special(e->m->tok, r->ids[n - 1]);
    struct infer_sampler_params sp = {
        .temperature = p->temperature,
        .top_k = p->top_k,
        .top_p = p->top_p > 0 ? p->top_p : 1.0f,
        .min_p = p->min_p,
        .repeat_penalty = p->repeat_penalty > 0 ? p->repeat_penalty : 1.0f,
        .repeat_last_n =
            p->repeat_penalty > 0 && p->repeat_penalty != 1.0f ? 64 : 0,
        .presence_penalty = p->presence_penalty,
        .frequency_penalty = p->frequency_penalty,
        .logit_bias = p->logit_bias,
        .n_logit_bias = (int)p->n_logit_bias,
        .seed = p->seed};
    st = infer_sampler_new(&sp, e->m->cfg.n_vocab, &r->smp);
    if (st == INFER_OK)
        st = infer_seq_init(&r->seq, e->kv, e->ctx_len);
    /* A model may also write its end-of-text marker out as ordinary pieces
     * (TinyStories-656K learnt "<|end_story|>" as text), so the text of the
     * EOS token is always one more stop string. */
    size_t eos_len = 0;
    const char *eos_text = NULL;
    if (infer_tok_eos(e->m->tok) >= 0)
        eos_text = infer_tok_piece(e->m->tok, infer_tok_eos(e->m->tok), true,
                                   &eos_len);
    if (eos_text != NULL && (eos_len < 3 || eos_len > 256))
        eos_text = NULL;
    if (st == INFER_OK && (p->n_stop > 0 || eos_text != NULL)) {
        r->stops = calloc(p->n_stop + 1, sizeof(char *));
        st = r->stops != NULL ? INFER_OK : INFER_ERR_NOMEM;
        for (size_t i = 0; st == INFER_OK && i < p->n_stop; i++) {
            if (p->stop[i][0] == '\0')
                continue;
            r->stops[r->n_stops] = strdup(p->stop[i]);
            st = r->stops[r->n_stops++] != NULL ? INFER_OK : INFER_ERR_NOMEM;
        }
        if (st == INFER_OK && eos_text != NULL) {
            r->stops[r->n_stops] = strndup(eos_text, eos_len);
            r->eos_stop = r->stops[r->n_stops];
            st = r->stops[r->n_stops++] != NULL ? INFER_OK : INFER_ERR_NOMEM;
        }
    }
    for (int i = 0; st == INFER_OK && i < n; i++)
        infer_sampler_accept(r->smp, r->ids[i], false);
    if (st != INFER_OK) {
        req_free(e, r);
        return infer_err_set(err, st, "out of memory");
    }
    r->s = s;
    pthread_mutex_lock(&e->mu);
    if (e->stop)
        st = infer_err_set(err, INFER_ERR_CANCELLED, "the engine is closing");
    else if (e->n_queued >= e->o.max_queue && queue_live(e) >= e->o.max_queue)
        st = infer_err_set(err, INFER_ERR_BUSY,
                           "%d requests are waiting; try again later",
                           e->n_queued);
    if (st == INFER_OK) {
        if (e->q_tail != NULL)
            e->q_tail->next = r;
        else
            e->q_head = r;
        e->q_tail = r;
        e->n_queued++;
        pthread_cond_signal(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    if (st != INFER_OK) {
        r->s = NULL;
        req_free(e, r);
    }
    return st;
}

static void sched_wake(struct infer_engine *base)
{
    struct sched *e = (struct sched *)base;
    pthread_mutex_lock(&e->mu);
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

static void sched_info(struct infer_engine *base, struct infer_engine_info *o)
{
    struct sched *e = (struct sched *)base;
    pthread_mutex_lock(&e->mu);
    o->remote = false;
    o->ctx_len = e->ctx_len;
    o->kv_blocks = e->kv->n_blocks;
    o->kv_free = infer_kv_n_free(e->kv);
    o->cached_sessions = e->n_sess;
    o->running = e->n_run;
    o->queued = e->n_queued;
    o->steps = e->steps;
    pthread_mutex_unlock(&e->mu);
}

static void sched_destroy(struct infer_engine *base)
{
    struct sched *e = (struct sched *)base;
    if (e->started) {
        pthread_mutex_lock(&e->mu);
        e->stop = true;
        pthread_cond_signal(&e->cv);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->thread, NULL);
    }
    for (int i = 0; i < e->n_run; i++)
        req_finish(e, e->run[i], "stop", "the engine was closed");
    while (e->q_head != NULL) {
        struct req *r = e->q_head;
        e->q_head = r->next;
        req_finish(e, r, "stop", "the engine was closed");
    }
    while (e->n_sess > 0)
        session_drop(e, e->n_sess - 1);
    free(e->sess);
    free(e->run);
    free(e->batch);
    free(e->logits);
    free(e->lp_raw);
    infer_kv_free(e->kv);
    infer_ctx_free(e->ctx);
    compute_put(e->comp);
    infer_model_free(e->m);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e->base.name);
    free(e);
}

static const char *sched_token_text(const struct infer_engine *base, int token,
                                    size_t *len)
{
    const struct sched *e = (const struct sched *)base;
    return infer_tok_piece(e->m->tok, token, false, len);
}

static const struct infer_engine_vt sched_vt = {
    sched_submit, sched_wake, sched_info, sched_destroy, sched_token_text};

/* ---- open
 * -------------------------------------------------------------------------------------
 */

static void opts_fill(struct infer_engine_opts *o,
                      const struct infer_engine_opts *in)
{
    infer_engine_opts_default(o);
    if (in == NULL)
        return;
    if (in->threads > 0)
        o->threads = in->threads;
    if (in->max_batch > 0)
        o->max_batch = in->max_batch < 4096 ? in->max_batch : 4096;
    if (in->max_queue > 0)
        o->max_queue = in->max_queue;
    if (in->kv_blocks > 0)
        o->kv_blocks = in->kv_blocks;
    if (in->ctx_len > 0)
        o->ctx_len = in->ctx_len;
    if (in->step_token_budget > 0)
        o->step_token_budget = in->step_token_budget;
    if (in->max_sessions > 0)
        o->max_sessions = in->max_sessions;
}

int infer__sched_open(const char *model_path,
                      const struct infer_engine_opts *in,
                      struct infer_engine **out, struct infer_err *err)
{
    struct sched *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return infer_err_set(err, INFER_ERR_NOMEM, "out of memory");
    e->base.vt = &sched_vt;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    opts_fill(&e->o, in);
    int st = infer_model_load(model_path, NULL, &e->m, err);
    if (st == INFER_OK && e->m->tok == NULL)
        st = infer_err_set(err, INFER_ERR_FORMAT, "%s has no tokenizer",
                           model_path);
    if (st != INFER_OK) {
        sched_destroy(&e->base);
        return st;
    }
    const struct infer_config *c = &e->m->cfg;
    int ctx =
        c->n_ctx_train < CTX_DEFAULT_MAX ? c->n_ctx_train : CTX_DEFAULT_MAX;
    e->ctx_len = e->o.ctx_len > 0 ? e->o.ctx_len : ctx;
    if (e->o.max_sessions <= 0)
        e->o.max_sessions = e->o.max_batch;
    if (e->o.kv_blocks <= 0) {
        size_t per_block = (size_t)KV_BLOCK * c->n_layers * c->n_kv_heads *
                           c->head_dim * 2 * sizeof(uint16_t);
        size_t want = (size_t)blocks_for(e->ctx_len) * e->o.max_batch;
        size_t cap = KV_DEFAULT_BYTES / per_block;
        if (cap < (size_t)blocks_for(e->ctx_len))
            cap = (size_t)blocks_for(e->ctx_len);
        e->o.kv_blocks = (int)(want < cap ? want : cap);
    }
    e->max_tokens_step = e->o.max_batch + e->o.step_token_budget;
    e->base.fmt = infer_chat_detect(e->m->chat_template);
    e->base.name = strdup(e->m->name != NULL ? e->m->name : model_path);
    e->comp = compute_get(e->o.threads);
    e->logits = infer_alloc_zeroed((size_t)(e->o.max_batch + PLP_ROWS) *
                                   c->n_vocab * sizeof(float));
    e->batch = malloc((size_t)e->max_tokens_step * sizeof(*e->batch));
    e->run = calloc((size_t)e->o.max_batch, sizeof(*e->run));
    e->sess = calloc((size_t)e->o.max_sessions, sizeof(*e->sess));
    if (e->base.name == NULL || e->comp == NULL || e->logits == NULL ||
        e->batch == NULL || e->run == NULL || e->sess == NULL)
        st = infer_err_set(err, INFER_ERR_NOMEM, "out of memory");
    struct infer_ctx_params cp = {.max_batch = e->max_tokens_step,
                                  .max_ctx = e->ctx_len,
                                  .pool = e->comp ? e->comp->pool : NULL};
    if (st == INFER_OK)
        st = infer_ctx_new(e->m, &cp, &e->ctx, err);
    if (st == INFER_OK)
        st = infer_kv_new(e->m, e->o.kv_blocks, KV_BLOCK, &e->kv, err);
    if (st == INFER_OK) {
        if (pthread_create(&e->thread, NULL, sched_main, e) != 0)
            st = infer_err_set(err, INFER_ERR_NOMEM, "cannot start a thread");
        else
            e->started = true;
    }
    if (st != INFER_OK) {
        sched_destroy(&e->base);
        return st;
    }
    infer_log(INFER_LOG_INFO,
              "engine %s: context %d, batch %d, %d KV blocks of %d, %d "
              "threads, %s",
              e->base.name, e->ctx_len, e->o.max_batch, e->o.kv_blocks,
              KV_BLOCK, infer_ctx_threads(e->ctx), infer_ctx_kernels(e->ctx));
    *out = &e->base;
    return INFER_OK;
}
