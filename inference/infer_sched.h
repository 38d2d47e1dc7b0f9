/*
 * infer_sched.h: internals of engines, streams and waiters shared by
 * infer_engine.c (streams, waiters, the generic engine calls),
 * infer_sched.c (local engines: the continuous-batching scheduler),
 * infer_remote.c (remote OpenAI-compatible engines), infer_hub.c and the
 * scheduler bench (infer_bench_sched.c). Not for other modules.
 *
 * Streams are reference-counted: the submitter holds one reference (dropped
 * by infer_stream_free) and the engine one (dropped when it finishes the
 * request). Lock order: a stream's mutex, then an engine's; an engine never
 * takes a stream's mutex while holding its own.
 */
#ifndef INFER_SCHED_H
#define INFER_SCHED_H

#include <pthread.h>
#include <stdatomic.h>

#include "infer.h"

struct infer_engine_vt {
    /* Takes over s (one reference) or fails with *s untouched. */
    int (*submit)(struct infer_engine *e, const struct infer_params *p,
                  struct infer_stream *s, struct infer_err *err);
    void (*wake)(struct infer_engine *e); /* a stream was cancelled */
    void (*info)(struct infer_engine *e, struct infer_engine_info *out);
    void (*destroy)(struct infer_engine *e);
    /* NULL if the engine has no vocabulary of its own (remote) */
    const char *(*token_text)(const struct infer_engine *e, int token,
                              size_t *len);
};

struct infer_engine {
    const struct infer_engine_vt *vt;
    char *name;
    enum infer_chat_format fmt;
};

struct infer_waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool signalled;
};

enum stream_state { STREAM_RUNNING = 0, STREAM_DONE, STREAM_ERROR };

struct infer_stream {
    atomic_int refs;
    atomic_bool cancelled;
    double t_submit; /* infer_now() */
    struct infer_waiter *w;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    struct infer_engine *e; /* NULL once the engine let go of it */
    char *buf;              /* (cap) text not yet read */
    size_t len, cap;
    struct infer_token_lp *lp; /* (lp_cap) tokens not yet read */
    size_t n_lp, lp_cap;
    enum stream_state state;
    struct infer_stats stats;
    char error[256];
    /* the reader's */
    char *out; /* (out_cap) text handed out by the last next() */
    size_t out_cap;
    struct infer_token_lp *lp_out; /* (lp_out_cap) tokens handed out */
    size_t lp_out_cap;
};

double infer_now(void); /* monotonic seconds (infer_generate.c) */

/* A new stream with two references (submitter and engine). */
struct infer_stream *infer__stream_new(struct infer_waiter *w);
/* Drops one reference; frees at zero. */
void infer__stream_unref(struct infer_stream *s);
/* Producer side: appends text (whole UTF-8 characters); false if out of
 * memory. Then wakes the reader and its waiter. */
bool infer__stream_text(struct infer_stream *s, const char *text, size_t len);
/* The same with the tokens (logprobs) that this text completes, both
 * appended at once so that a reader sees them together. */
bool infer__stream_text_tokens(struct infer_stream *s, const char *text,
                               size_t len, const struct infer_token_lp *tok,
                               size_t n_tok);
/* Ends the stream with stats, or with an error message. */
void infer__stream_done(struct infer_stream *s, const struct infer_stats *st);
void infer__stream_fail(struct infer_stream *s, const struct infer_stats *st,
                        const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The engine lets go: later cancels no longer wake it. */
void infer__stream_detach(struct infer_stream *s);
static inline bool infer__stream_cancelled(struct infer_stream *s)
{
    return atomic_load_explicit(&s->cancelled, memory_order_relaxed);
}

/* The prompt text of p for an engine of format f: the chat rendered (with
 * the default system prompt of a ChatML template, if any and none given)
 * or the raw prompt; malloc'd. NULL and err filled on bad params. */
char *infer__params_text(const struct infer_params *p, enum infer_chat_format f,
                         const char *jinja, struct infer_err *err);
/* Checks the numeric fields of p (INFER_ERR_ARG with err). */
int infer__params_check(const struct infer_params *p, struct infer_err *err);

/* Local and remote constructors of engines of infer_sched.c and
 * infer_remote.c (infer_engine_open_* call them). */
int infer__sched_open(const char *model_path, const struct infer_engine_opts *o,
                      struct infer_engine **out, struct infer_err *err);
int infer__remote_open(const struct infer_remote_opts *o,
                       struct infer_engine **out, struct infer_err *err);

#endif
