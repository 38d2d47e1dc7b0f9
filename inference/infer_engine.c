/*
 * infer_engine.c: what local and remote engines share: streams (a
 * thread-safe text queue per request, drained by the submitter's thread),
 * waiters, parameter checks and prompt rendering, and the generic engine
 * calls that dispatch to infer_sched.c or infer_remote.c.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infer_internal.h"
#include "infer_sched.h"

/* ---- waiters ----------------------------------------------------------------
 */

static void cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}

/* Waits on cv until *deadline (monotonic); false when it passed. */
static bool cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu,
                            const struct timespec *deadline)
{
    if (deadline == NULL) {
        pthread_cond_wait(cv, mu);
        return true;
    }
    return pthread_cond_timedwait(cv, mu, deadline) != ETIMEDOUT;
}

static struct timespec *deadline_in(int timeout_ms, struct timespec *ts)
{
    if (timeout_ms < 0)
        return NULL;
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += timeout_ms / 1000;
    ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
    return ts;
}

struct infer_waiter *infer_waiter_new(void)
{
    struct infer_waiter *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    pthread_mutex_init(&w->mu, NULL);
    cond_init_mono(&w->cv);
    return w;
}

void infer_waiter_free(struct infer_waiter *w)
{
    if (w == NULL)
        return;
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

int infer_waiter_wait(struct infer_waiter *w, int timeout_ms)
{
    struct timespec ts, *dl = deadline_in(timeout_ms, &ts);
    pthread_mutex_lock(&w->mu);
    while (!w->signalled && timeout_ms != 0 &&
           cond_wait_until(&w->cv, &w->mu, dl))
        ;
    int woken = w->signalled ? 1 : 0;
    w->signalled = false;
    pthread_mutex_unlock(&w->mu);
    return woken;
}

static void waiter_signal(struct infer_waiter *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->mu);
    w->signalled = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* ---- streams
 * ------------------------------------------------------------------ */

struct infer_stream *infer__stream_new(struct infer_waiter *w)
{
    struct infer_stream *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    atomic_init(&s->refs, 2);
    atomic_init(&s->cancelled, false);
    s->w = w;
    s->t_submit = infer_now();
    pthread_mutex_init(&s->mu, NULL);
    cond_init_mono(&s->cv);
    return s;
}

void infer__stream_unref(struct infer_stream *s)
{
    if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->buf);
    free(s->out);
    free(s->lp);
    free(s->lp_out);
    free(s);
}

static void stream_wake(struct infer_stream *s)
{
    pthread_cond_broadcast(&s->cv);
}

/* Room for need elements of size in p (cap of them now), doubling: the
 * buffer to use in *out (p if it had room). False if out of memory (*out
 * is p then, unchanged). */
static bool grow(void *p, size_t *cap, size_t need, size_t size, void **out)
{
    *out = p;
    if (need <= *cap)
        return true;
    size_t c = *cap > 0 ? *cap : 256 / size + 1;
    while (c < need)
        c *= 2;
    void *q = realloc(p, c * size);
    if (q == NULL)
        return false;
    *out = q;
    *cap = c;
    return true;
}

bool infer__stream_text(struct infer_stream *s, const char *text, size_t len)
{
    return infer__stream_text_tokens(s, text, len, NULL, 0);
}

bool infer__stream_text_tokens(struct infer_stream *s, const char *text,
                               size_t len, const struct infer_token_lp *tok,
                               size_t n_tok)
{
    if (len == 0 && n_tok == 0)
        return true;
    pthread_mutex_lock(&s->mu);
    void *l, *b;
    bool ok = grow(s->lp, &s->lp_cap, s->n_lp + n_tok, sizeof(*tok), &l);
    s->lp = l;
    if (ok && n_tok > 0) {
        memcpy(s->lp + s->n_lp, tok, n_tok * sizeof(*tok));
        s->n_lp += n_tok;
    }
    ok = ok && grow(s->buf, &s->cap, s->len + len, 1, &b);
    if (ok)
        s->buf = b;
    if (ok && len > 0) {
        memcpy(s->buf + s->len, text, len);
        s->len += len;
    }
    stream_wake(s);
    waiter_signal(s->w); /* under s->mu: infer_stream_free clears s->w */
    pthread_mutex_unlock(&s->mu);
    return ok;
}

void infer__stream_done(struct infer_stream *s, const struct infer_stats *st)
{
    pthread_mutex_lock(&s->mu);
    if (s->state == STREAM_RUNNING) {
        s->state = STREAM_DONE;
        s->stats = *st;
    }
    stream_wake(s);
    waiter_signal(s->w); /* under s->mu: infer_stream_free clears s->w */
    pthread_mutex_unlock(&s->mu);
}

void infer__stream_fail(struct infer_stream *s, const struct infer_stats *st,
                        const char *fmt, ...)
{
    pthread_mutex_lock(&s->mu);
    if (s->state == STREAM_RUNNING) {
        s->state = STREAM_ERROR;
        if (st != NULL)
            s->stats = *st;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->error, sizeof(s->error), fmt, ap);
        va_end(ap);
    }
    stream_wake(s);
    waiter_signal(s->w); /* under s->mu: infer_stream_free clears s->w */
    pthread_mutex_unlock(&s->mu);
}

void infer__stream_detach(struct infer_stream *s)
{
    pthread_mutex_lock(&s->mu);
    s->e = NULL;
    pthread_mutex_unlock(&s->mu);
}

int infer_stream_next(struct infer_stream *s, int timeout_ms,
                      struct infer_event *ev)
{
    memset(ev, 0, sizeof(*ev));
    struct timespec ts, *dl = deadline_in(timeout_ms, &ts);
    pthread_mutex_lock(&s->mu);
    while (s->len == 0 && s->n_lp == 0 && s->state == STREAM_RUNNING &&
           timeout_ms != 0 && cond_wait_until(&s->cv, &s->mu, dl))
        ;
    if (s->len > 0 || s->n_lp > 0) {
        /* Hand the buffer over and keep the old one for the producer. */
        char *b = s->out;
        size_t cap = s->out_cap;
        s->out = s->buf;
        s->out_cap = s->cap;
        ev->kind = INFER_EV_TEXT;
        ev->text = s->out != NULL ? s->out : ""; /* tokens alone: no text yet */
        ev->len = s->len;
        s->buf = b;
        s->cap = cap;
        s->len = 0;
        struct infer_token_lp *l = s->lp_out;
        size_t lcap = s->lp_out_cap;
        s->lp_out = s->lp;
        s->lp_out_cap = s->lp_cap;
        ev->tokens = s->lp_out;
        ev->n_tokens = s->n_lp;
        s->lp = l;
        s->lp_cap = lcap;
        s->n_lp = 0;
    } else if (s->state == STREAM_DONE) {
        ev->kind = INFER_EV_DONE;
        ev->stats = s->stats;
    } else if (s->state == STREAM_ERROR) {
        ev->kind = INFER_EV_ERROR;
        ev->stats = s->stats;
        memcpy(ev->error, s->error, sizeof(ev->error));
    }
    pthread_mutex_unlock(&s->mu);
    return (int)ev->kind;
}

void infer_stream_cancel(struct infer_stream *s)
{
    if (s == NULL)
        return;
    atomic_store(&s->cancelled, true);
    pthread_mutex_lock(&s->mu);
    if (s->e != NULL && s->e->vt->wake != NULL)
        s->e->vt->wake(s->e); /* lock order: stream, then engine */
    pthread_mutex_unlock(&s->mu);
}

void infer_stream_free(struct infer_stream *s)
{
    if (s == NULL)
        return;
    /* The engine may hold the stream a step longer; from now on it wakes
     * no waiter, so the submitter may free the waiter at once. */
    pthread_mutex_lock(&s->mu);
    s->w = NULL;
    pthread_mutex_unlock(&s->mu);
    infer_stream_cancel(s);
    infer__stream_unref(s);
}

/* ---- parameters
 * ----------------------------------------------------------------- */

int infer__params_check(const struct infer_params *p, struct infer_err *err)
{
    if (p == NULL)
        return infer_err_set(err, INFER_ERR_ARG, "no parameters");
    if (p->msgs == NULL && p->n_msgs > 0)
        return infer_err_set(err, INFER_ERR_ARG, "n_msgs without msgs");
    if (!isfinite(p->temperature) || p->temperature < 0 || p->temperature > 100)
        return infer_err_set(err, INFER_ERR_ARG,
                             "temperature must be in [0, 100]");
    if (!isfinite(p->top_p) || p->top_p < 0 || p->top_p > 1)
        return infer_err_set(err, INFER_ERR_ARG, "top_p must be in [0, 1]");
    if (!isfinite(p->min_p) || p->min_p < 0 || p->min_p > 1)
        return infer_err_set(err, INFER_ERR_ARG, "min_p must be in [0, 1]");
    if (!isfinite(p->repeat_penalty) || p->repeat_penalty < 0 ||
        p->repeat_penalty > 100)
        return infer_err_set(err, INFER_ERR_ARG,
                             "repeat_penalty must be in [0, 100]");
    if ((p->prompt_logprobs && !p->logprobs) ||
        (p->prompt_only && !p->prompt_logprobs))
        return infer_err_set(err, INFER_ERR_ARG,
                             "prompt_logprobs needs logprobs, prompt_only "
                             "needs prompt_logprobs");
    if (p->top_logprobs < 0 || p->top_logprobs > INFER_MAX_TOP_LOGPROBS)
        return infer_err_set(err, INFER_ERR_ARG,
                             "top_logprobs must be in [0, %d]",
                             INFER_MAX_TOP_LOGPROBS);
    if (!isfinite(p->presence_penalty) || fabsf(p->presence_penalty) > 2)
        return infer_err_set(err, INFER_ERR_ARG,
                             "presence_penalty must be in [-2, 2]");
    if (!isfinite(p->frequency_penalty) || fabsf(p->frequency_penalty) > 2)
        return infer_err_set(err, INFER_ERR_ARG,
                             "frequency_penalty must be in [-2, 2]");
    if (p->top_k < 0)
        return infer_err_set(err, INFER_ERR_ARG, "top_k must be >= 0");
    if (p->n_logit_bias > INFER_MAX_LOGIT_BIAS ||
        (p->n_logit_bias > 0 && p->logit_bias == NULL))
        return infer_err_set(err, INFER_ERR_ARG,
                             "at most %d logit_bias entries",
                             INFER_MAX_LOGIT_BIAS);
    for (size_t i = 0; i < p->n_logit_bias; i++)
        if (p->logit_bias[i].token < 0 || !isfinite(p->logit_bias[i].bias) ||
            fabsf(p->logit_bias[i].bias) > 100)
            return infer_err_set(err, INFER_ERR_ARG,
                                 "logit_bias: token ids are >= 0 and biases "
                                 "in [-100, 100]");
    if (p->max_tokens < 0)
        return infer_err_set(err, INFER_ERR_ARG, "max_tokens must be >= 0");
    if (p->n_stop > 16 || (p->n_stop > 0 && p->stop == NULL))
        return infer_err_set(err, INFER_ERR_ARG, "at most 16 stop strings");
    for (size_t i = 0; i < p->n_stop; i++)
        if (p->stop[i] == NULL || strlen(p->stop[i]) > 256)
            return infer_err_set(err, INFER_ERR_ARG,
                                 "stop strings must be 1 to 256 bytes");
    return INFER_OK;
}

char *infer__params_text(const struct infer_params *p, enum infer_chat_format f,
                         const char *jinja, struct infer_err *err)
{
    if (p->msgs == NULL) {
        char *t = strdup(p->prompt != NULL ? p->prompt : "");
        if (t == NULL)
            infer_err_set(err, INFER_ERR_NOMEM, "out of memory");
        return t;
    }
    if (p->n_msgs == 0) {
        infer_err_set(err, INFER_ERR_ARG, "no messages");
        return NULL;
    }
    for (size_t i = 0; i < p->n_msgs; i++) {
        const char *r = p->msgs[i].role;
        if (r == NULL || p->msgs[i].content == NULL ||
            (strcmp(r, "system") != 0 && strcmp(r, "user") != 0 &&
             strcmp(r, "assistant") != 0)) {
            infer_err_set(err, INFER_ERR_ARG,
                          "message %zu: role must be system, user or "
                          "assistant, with content",
                          i);
            return NULL;
        }
    }
    char *sys = NULL;
    if (f == INFER_CHAT_CHATML && strcmp(p->msgs[0].role, "system") != 0)
        sys = infer_chat_default_system(jinja);
    const struct infer_chat_msg *msgs = p->msgs;
    struct infer_chat_msg *tmp = NULL;
    size_t n = p->n_msgs;
    if (sys != NULL) {
        tmp = malloc((n + 1) * sizeof(*tmp));
        if (tmp != NULL) {
            tmp[0] = (struct infer_chat_msg){"system", sys};
            memcpy(tmp + 1, p->msgs, n * sizeof(*tmp));
            msgs = tmp;
            n++;
        }
    }
    char *t = infer_chat_render(f, msgs, n, true);
    free(tmp);
    free(sys);
    if (t == NULL)
        infer_err_set(err, INFER_ERR_ARG, "cannot render the messages");
    return t;
}

/* ---- generic engine calls
 * --------------------------------------------------------- */

void infer_engine_opts_default(struct infer_engine_opts *o)
{
    *o = (struct infer_engine_opts){.threads = 0,
                                    .max_batch = 64,
                                    .max_queue = 256,
                                    .kv_blocks = 0,
                                    .ctx_len = 0,
                                    .step_token_budget = 128,
                                    .max_sessions = 0};
}

int infer_engine_open_local(const char *model_path,
                            const struct infer_engine_opts *o,
                            struct infer_engine **out, struct infer_err *err)
{
    *out = NULL;
    if (model_path == NULL)
        return infer_err_set(err, INFER_ERR_ARG, "no model path");
    return infer__sched_open(model_path, o, out, err);
}

int infer_engine_open_remote(const struct infer_remote_opts *o,
                             struct infer_engine **out, struct infer_err *err)
{
    *out = NULL;
    if (o == NULL || o->base_url == NULL || o->model == NULL ||
        o->base_url[0] == '\0' || o->model[0] == '\0')
        return infer_err_set(err, INFER_ERR_ARG,
                             "remote engine needs base_url and model");
    return infer__remote_open(o, out, err);
}

void infer_engine_free(struct infer_engine *e)
{
    if (e != NULL)
        e->vt->destroy(e);
}

const char *infer_engine_model_name(const struct infer_engine *e)
{
    return e->name;
}

enum infer_chat_format infer_engine_chat_format(const struct infer_engine *e)
{
    return e->fmt;
}

const char *infer_engine_token_text(const struct infer_engine *e, int token,
                                    size_t *len)
{
    *len = 0;
    return e->vt->token_text != NULL ? e->vt->token_text(e, token, len) : NULL;
}

void infer_engine_info(struct infer_engine *e, struct infer_engine_info *out)
{
    memset(out, 0, sizeof(*out));
    e->vt->info(e, out);
}

int infer_engine_submit(struct infer_engine *e, const struct infer_params *p,
                        struct infer_waiter *w, struct infer_stream **out,
                        struct infer_err *err)
{
    *out = NULL;
    int st = infer__params_check(p, err);
    if (st != INFER_OK)
        return st;
    struct infer_stream *s = infer__stream_new(w);
    if (s == NULL)
        return infer_err_set(err, INFER_ERR_NOMEM, "out of memory");
    s->e = e;
    st = e->vt->submit(e, p, s, err);
    if (st != INFER_OK) {
        s->e = NULL;
        infer__stream_unref(s);
        infer__stream_unref(s);
        return st;
    }
    *out = s;
    return INFER_OK;
}
