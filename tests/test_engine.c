/*
 * test_engine.c: local engines through the public API (inference/infer.h)
 * on the story models: greedy output equal to a plain one-sequence loop
 * over the forward pass, identical alone and beside 31 other requests
 * joining and leaving at random, cancellation returning every KV block,
 * the busy queue, context overflow, stop strings, the waiter, sessions
 * (prefix reuse), the hub's directory scan, and logprobs (against a
 * log-softmax of the plain loop's logits, and cut at stop strings).
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "infer.h"
#include "infer_model.h"

#define GEN 24 /* tokens per request: short for ASan */

static char model_path[4096];

static bool have_model(void)
{
    snprintf(model_path, sizeof(model_path),
             "%s/models/stories260K/stories260K.gguf",
             check_env("ARENA_SHARED", "../shared"));
    return access(model_path, R_OK) == 0;
}

static const char *prompts[] = {
    "Once upon a time",
    "The little dog",
    "Lily and Ben went to the park. They saw a big",
    "One day, a girl named Sue",
    "Tom had a red ball",
    "",
    "The sun was hot and the birds",
    "Mom said",
};
#define N_PROMPTS (sizeof(prompts) / sizeof(prompts[0]))

/* Collects a stream into buf; returns the final event kind. */
static int drain(struct infer_stream *s, char *buf, size_t cap,
                 struct infer_stats *st)
{
    size_t n = 0;
    struct infer_event ev;
    for (;;) {
        int k = infer_stream_next(s, -1, &ev);
        if (k == INFER_EV_TEXT) {
            size_t c = ev.len < cap - 1 - n ? ev.len : cap - 1 - n;
            memcpy(buf + n, ev.text, c);
            n += c;
            continue;
        }
        buf[n] = '\0';
        if (st != NULL)
            *st = ev.stats;
        if (k == INFER_EV_ERROR)
            fprintf(stderr, "stream error: %s\n", ev.error);
        return k;
    }
}

static struct infer_engine *open_engine(int max_batch, int kv_blocks)
{
    struct infer_engine_opts o;
    infer_engine_opts_default(&o);
    o.max_batch = max_batch;
    o.kv_blocks = kv_blocks;
    o.step_token_budget = 16; /* several chunks per prompt */
    o.threads = 2;
    struct infer_engine *e = NULL;
    struct infer_err err = {{0}};
    if (infer_engine_open_local(model_path, &o, &e, &err) != INFER_OK)
        fprintf(stderr, "open: %s\n", err.msg);
    return e;
}

/* What reference_run() measures besides the text. */
struct ref_out {
    int32_t gen[GEN]; /* the generated ids */
    double *lsm;      /* (GEN, n_vocab) each step's log-softmax; malloc'd */
    int n_vocab;
    int32_t pids[256]; /* the prompt's ids */
    double plp[256];   /* plp[k]: log-probability of pids[k] after the
                          ones before it (k >= 1) */
    int n_pids;
};

/* The reference: one sequence, whole prompt in one call, then one token
 * per call, greedy. Writes the decoded text of GEN tokens (or to EOS) to
 * out (if not NULL) and, with ro, the logprobs of the prompt and of the
 * generated tokens. Returns the tokens made, or -1. */
static int reference_run(const char *prompt, char *out, size_t cap,
                         struct ref_out *ro)
{
    struct infer_model *m;
    struct infer_err err;
    if (infer_model_load(model_path, NULL, &m, &err) != INFER_OK)
        return -1;
    int V = m->cfg.n_vocab, ctx_len = 256;
    int32_t ids[256];
    int n = infer_tok_encode(m->tok, prompt, strlen(prompt), true, false, ids,
                             ctx_len);
    if (n == 0)
        ids[n++] = infer_tok_bos(m->tok);
    struct infer_ctx *ctx;
    struct infer_kv *kv;
    struct infer_seq seq;
    struct infer_ctx_params cp = {
        .max_batch = 64, .max_ctx = ctx_len, .n_threads = 1};
    infer_ctx_new(m, &cp, &ctx, &err);
    infer_kv_new(m, ctx_len / 16, 16, &kv, &err);
    infer_seq_init(&seq, kv, ctx_len);
    infer_kv_reserve(kv, &seq, ctx_len);
    /* With ro, every prompt position's logits, then the last row first. */
    float *logits = malloc((size_t)n * V * sizeof(float));
    struct infer_batch_entry e[64];
    for (int i = 0; i < n; i++)
        e[i] = (struct infer_batch_entry){&seq, i, ids[i],
                                          ro != NULL || i == n - 1};
    infer_forward(ctx, kv, e, n, logits, &err);
    if (ro != NULL) {
        ro->lsm = malloc((size_t)GEN * V * sizeof(double));
        ro->n_vocab = V;
        ro->n_pids = n;
        memcpy(ro->pids, ids, sizeof(int32_t) * n);
        for (int k = 0; k + 1 < n; k++) {
            const float *row = logits + (size_t)k * V;
            double mx = row[0], sum = 0;
            for (int v = 1; v < V; v++)
                mx = row[v] > mx ? row[v] : mx;
            for (int v = 0; v < V; v++)
                sum += exp(row[v] - mx);
            ro->plp[k + 1] = row[ids[k + 1]] - mx - log(sum);
        }
        memmove(logits, logits + (size_t)(n - 1) * V, sizeof(float) * V);
    }
    int n0 = n, g = 0;
    for (; g < GEN; g++) {
        int best = 0;
        for (int v = 1; v < V; v++)
            if (logits[v] > logits[best])
                best = v;
        if (ro != NULL) {
            double sum = 0, mx = logits[best];
            for (int v = 0; v < V; v++)
                sum += exp(logits[v] - mx);
            for (int v = 0; v < V; v++)
                ro->lsm[(size_t)g * V + v] = logits[v] - mx - log(sum);
        }
        if (infer_tok_is_eog(m->tok, best))
            break;
        if (ro != NULL)
            ro->gen[g] = best;
        ids[n] = best;
        e[0] = (struct infer_batch_entry){&seq, n, best, true};
        n++;
        if (g + 1 < GEN)
            infer_forward(ctx, kv, e, 1, logits, &err);
    }
    if (out != NULL) {
        size_t len = infer_tok_decode(m->tok, ids + n0, (size_t)(n - n0), false,
                                      out, cap - 1);
        out[len < cap - 1 ? len : cap - 1] = '\0';
    }
    free(logits);
    infer_kv_release(kv, &seq, 0);
    infer_seq_cleanup(&seq);
    infer_kv_free(kv);
    infer_ctx_free(ctx);
    infer_model_free(m);
    return g;
}

static int reference(const char *prompt, char *out, size_t cap)
{
    return reference_run(prompt, out, cap, NULL) < 0 ? -1 : 0;
}

static int run_one(struct infer_engine *e, const char *prompt, char *out,
                   size_t cap, struct infer_stats *st)
{
    struct infer_params p = {.prompt = prompt, .max_tokens = GEN};
    struct infer_stream *s;
    struct infer_err err;
    if (infer_engine_submit(e, &p, NULL, &s, &err) != INFER_OK) {
        fprintf(stderr, "submit: %s\n", err.msg);
        return -1;
    }
    int k = drain(s, out, cap, st);
    infer_stream_free(s);
    return k;
}

TEST(alone_matches_reference)
{
    if (!have_model())
        check_skip("no %s", model_path);
    struct infer_engine *e = open_engine(8, 0);
    CHECK(e != NULL);
    for (size_t i = 0; i < N_PROMPTS; i++) {
        char got[4096], want[4096];
        struct infer_stats st;
        CHECK_EQ(run_one(e, prompts[i], got, sizeof(got), &st), INFER_EV_DONE);
        CHECK_EQ(reference(prompts[i], want, sizeof(want)), 0);
        /* infer_tok_decode drops the leading space of a whole encoding;
         * a continuation keeps it: compare without it */
        const char *w = want[0] == ' ' ? want + 1 : want;
        const char *g = got[0] == ' ' ? got + 1 : got;
        if (strcmp(g, w) != 0)
            fprintf(stderr, "prompt %zu:\n got  [%s]\n want [%s]\n", i, g, w);
        CHECK_STREQ(g, w);
        CHECK(strlen(g) > 0);
        CHECK(st.completion_tokens > 0 && st.completion_tokens <= GEN);
        CHECK(st.prompt_tokens > 0);
        CHECK(strcmp(st.finish_reason, "stop") == 0 ||
              strcmp(st.finish_reason, "length") == 0);
    }
    struct infer_engine_info in;
    infer_engine_info(e, &in);
    CHECK_EQ(in.kv_free, in.kv_blocks);
    infer_engine_free(e);
}

TEST(batched_equals_alone)
{
    if (!have_model())
        check_skip("no %s", model_path);
    struct infer_engine *e = open_engine(32, 0);
    CHECK(e != NULL);
    char alone[N_PROMPTS][4096];
    for (size_t i = 0; i < N_PROMPTS; i++)
        CHECK_EQ(run_one(e, prompts[i], alone[i], sizeof(alone[i]), NULL),
                 INFER_EV_DONE);
    /* 32 requests arriving at random times, some cancelled midway. */
    enum { N = 32 };
    struct infer_stream *s[N] = {0};
    char out[N][4096];
    size_t len[N] = {0};
    bool over[N] = {0}, cancel[N];
    unsigned seed = 12345;
    for (int i = 0; i < N; i++)
        cancel[i] = rand_r(&seed) % 5 == 0;
    struct infer_waiter *w = infer_waiter_new();
    int submitted = 0, finished = 0;
    while (finished < N) {
        if (submitted < N && rand_r(&seed) % 3 == 0) {
            struct infer_params p = {.prompt = prompts[submitted % N_PROMPTS],
                                     .max_tokens = GEN};
            struct infer_err err;
            CHECK_EQ(infer_engine_submit(e, &p, w, &s[submitted], &err),
                     INFER_OK);
            submitted++;
        }
        infer_waiter_wait(w, 2);
        for (int i = 0; i < submitted; i++) {
            struct infer_event ev;
            int k;
            while (!over[i] &&
                   (k = infer_stream_next(s[i], 0, &ev)) != INFER_EV_NONE) {
                if (k == INFER_EV_TEXT) {
                    memcpy(out[i] + len[i], ev.text, ev.len);
                    len[i] += ev.len;
                    if (cancel[i] && len[i] > 8) {
                        infer_stream_cancel(s[i]);
                        over[i] = true;
                        finished++;
                    }
                } else {
                    CHECK_EQ(k, INFER_EV_DONE);
                    over[i] = true;
                    finished++;
                }
            }
        }
        if (submitted == N && finished < N)
            infer_waiter_wait(w, 50);
    }
    int compared = 0;
    for (int i = 0; i < N; i++) {
        if (cancel[i] && len[i] > 8) {
            /* what came before the cancel is a prefix of the full text */
            CHECK(strncmp(out[i], alone[i % N_PROMPTS], len[i]) == 0);
        } else {
            out[i][len[i]] = '\0';
            if (strcmp(out[i], alone[i % N_PROMPTS]) != 0)
                fprintf(stderr, "request %d:\n got  [%s]\n want [%s]\n", i,
                        out[i], alone[i % N_PROMPTS]);
            CHECK_STREQ(out[i], alone[i % N_PROMPTS]);
            compared++;
        }
        infer_stream_free(s[i]);
    }
    CHECK(compared >= N / 2);
    /* every block back once the cancelled ones are dropped */
    struct infer_engine_info in;
    for (int t = 0; t < 200; t++) {
        infer_engine_info(e, &in);
        if (in.kv_free == in.kv_blocks && in.running == 0)
            break;
        usleep(5000);
    }
    CHECK_EQ(in.kv_free, in.kv_blocks);
    infer_waiter_free(w);
    infer_engine_free(e);
}

TEST(busy_toolong_stop)
{
    if (!have_model())
        check_skip("no %s", model_path);
    struct infer_engine_opts o;
    infer_engine_opts_default(&o);
    o.max_batch = 1;
    o.max_queue = 2;
    o.threads = 1;
    struct infer_engine *e;
    struct infer_err err;
    CHECK_EQ(infer_engine_open_local(model_path, &o, &e, &err), INFER_OK);
    struct infer_params p = {.prompt = "Once upon a time", .max_tokens = 200};
    struct infer_stream *s[8] = {0};
    int busy = 0, ok = 0;
    for (int i = 0; i < 8; i++) {
        int st = infer_engine_submit(e, &p, NULL, &s[i], &err);
        busy += st == INFER_ERR_BUSY;
        ok += st == INFER_OK;
        CHECK(st == INFER_OK || (st == INFER_ERR_BUSY && s[i] == NULL));
    }
    CHECK(busy >= 1);
    CHECK(ok >= 2);
    for (int i = 0; i < 8; i++)
        infer_stream_free(s[i]); /* cancels */
    /* context overflow */
    struct infer_engine_info in;
    infer_engine_info(e, &in);
    size_t big = (size_t)in.ctx_len * 8;
    char *text = malloc(big + 1);
    for (size_t i = 0; i < big; i++)
        text[i] = "ab cd "[i % 6];
    text[big] = '\0';
    struct infer_params pl = {.prompt = text};
    struct infer_stream *sl = NULL;
    CHECK_EQ(infer_engine_submit(e, &pl, NULL, &sl, &err), INFER_ERR_TOO_LONG);
    CHECK(sl == NULL && strstr(err.msg, "context") != NULL);
    free(text);
    /* stop strings: the text ends before the first stop string */
    char full[4096], cut[4096];
    struct infer_stats st;
    CHECK_EQ(run_one(e, "Once upon a time", full, sizeof(full), &st),
             INFER_EV_DONE);
    CHECK(strlen(full) > 10);
    char stop[8];
    memcpy(stop, full + 6, 3);
    stop[3] = '\0';
    const char *stops[] = {"zzzz", stop};
    struct infer_params ps = {.prompt = "Once upon a time",
                              .max_tokens = GEN,
                              .stop = stops,
                              .n_stop = 2};
    struct infer_stream *ss;
    CHECK_EQ(infer_engine_submit(e, &ps, NULL, &ss, &err), INFER_OK);
    CHECK_EQ(drain(ss, cut, sizeof(cut), &st), INFER_EV_DONE);
    infer_stream_free(ss);
    CHECK_STREQ(st.finish_reason, "stop");
    CHECK(strstr(full, stop) != NULL);
    CHECK_EQ((long)strlen(cut), (long)(strstr(full, stop) - full));
    CHECK(strncmp(cut, full, strlen(cut)) == 0);
    /* bad parameters */
    struct infer_params pb = {.prompt = "x", .temperature = -1};
    CHECK_EQ(infer_engine_submit(e, &pb, NULL, &ss, &err), INFER_ERR_ARG);
    struct infer_chat_msg bad = {"robot", "hi"};
    struct infer_params pc = {.msgs = &bad, .n_msgs = 1};
    CHECK_EQ(infer_engine_submit(e, &pc, NULL, &ss, &err), INFER_ERR_ARG);
    infer_engine_free(e);
}

TEST(sessions_reuse_prefix)
{
    if (!have_model())
        check_skip("no %s", model_path);
    struct infer_engine *e = open_engine(4, 0);
    CHECK(e != NULL);
    char a[4096], b[4096], c[4096];
    struct infer_stats st;
    struct infer_err err;
    struct infer_params p = {.prompt = "Once upon a time, there was a cat",
                             .max_tokens = 8,
                             .session = 77};
    struct infer_stream *s;
    CHECK_EQ(infer_engine_submit(e, &p, NULL, &s, &err), INFER_OK);
    CHECK_EQ(drain(s, a, sizeof(a), &st), INFER_EV_DONE);
    infer_stream_free(s);
    CHECK_EQ(st.cached_tokens, 0);
    int first_prompt = st.prompt_tokens;
    struct infer_engine_info in;
    infer_engine_info(e, &in);
    CHECK_EQ(in.cached_sessions, 1);
    CHECK(in.kv_free < in.kv_blocks);
    /* the next turn: same start, more text */
    char next[8192];
    snprintf(next, sizeof(next), "Once upon a time, there was a cat%s. The", a);
    p.prompt = next;
    CHECK_EQ(infer_engine_submit(e, &p, NULL, &s, &err), INFER_OK);
    CHECK_EQ(drain(s, b, sizeof(b), &st), INFER_EV_DONE);
    infer_stream_free(s);
    CHECK(st.cached_tokens >= first_prompt - 1);
    CHECK(st.cached_tokens < st.prompt_tokens);
    /* the same text without a session computes everything, same output */
    p.session = 0;
    CHECK_EQ(infer_engine_submit(e, &p, NULL, &s, &err), INFER_OK);
    CHECK_EQ(drain(s, c, sizeof(c), &st), INFER_EV_DONE);
    infer_stream_free(s);
    CHECK_EQ(st.cached_tokens, 0);
    CHECK_STREQ(b, c);
    infer_engine_free(e);
}

TEST(hub_scan)
{
    if (!have_model())
        check_skip("no %s", model_path);
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/models",
             check_env("ARENA_SHARED", "../shared"));
    struct infer_engine_opts o;
    infer_engine_opts_default(&o);
    o.max_batch = 4;
    o.threads = 1;
    struct infer_hub *h = infer_hub_new(&o);
    struct infer_err err;
    int n = infer_hub_scan_dir(h, dir, &err);
    CHECK(n >= 3);
    const char *names[16];
    size_t k = infer_hub_names(h, names, 16);
    CHECK_EQ((long)k, n);
    CHECK(infer_hub_get(h, "stories260k") != NULL);
    CHECK(infer_hub_get(h, "tinystories-656k-q8_0") != NULL);
    CHECK(infer_hub_get(h, "ggml-vocab-gpt-2") == NULL); /* vocab only */
    CHECK(infer_hub_get(h, "nope") == NULL);
    /* stories260K.bin is the same model as stories260K.gguf: served once */
    for (size_t i = 0; i < k; i++)
        CHECK(strncmp(names[i], "stories260k", 11) != 0 ||
              strcmp(names[i], "stories260k") == 0);
    struct infer_engine *e = open_engine(1, 0);
    CHECK_EQ(infer_hub_add(h, "stories260k", e, &err), INFER_ERR_ARG);
    infer_hub_free(h);
}

/* TinyStories-656K writes its end marker "<|end_story|>" as ordinary
 * pieces, not as token 2: the engine must stop there and never stream it. */
TEST(eos_text_stops)
{
    char path[4096];
    snprintf(path, sizeof(path),
             "%s/models/tinystories-656K/TinyStories-656K-Q8_0.gguf",
             check_env("ARENA_SHARED", "../shared"));
    if (access(path, R_OK) != 0)
        check_skip("no %s", path);
    struct infer_engine_opts o;
    infer_engine_opts_default(&o);
    o.max_batch = 1;
    o.threads = 2;
    struct infer_engine *e = NULL;
    struct infer_err err;
    CHECK_EQ(infer_engine_open_local(path, &o, &e, &err), INFER_OK);
    struct infer_params p = {.prompt = "", .max_tokens = 400};
    struct infer_stream *s = NULL;
    CHECK_EQ(infer_engine_submit(e, &p, NULL, &s, &err), INFER_OK);
    static char out[16384];
    struct infer_stats st;
    int k = drain(s, out, sizeof(out), &st);
    infer_stream_free(s);
    infer_engine_free(e);
    CHECK_EQ(k, INFER_EV_DONE);
    CHECK(strlen(out) > 100);
    CHECK(strstr(out, "<|end") == NULL);
    CHECK_STREQ(st.finish_reason, "stop");
    CHECK(st.completion_tokens < 400);

    /* Given a finished sentence, the model closes that story first
     * ("<|end_story|>", then its EOS token): the answer is a new story, not
     * nothing and not the marker. */
    CHECK_EQ(infer_engine_open_local(path, &o, &e, &err), INFER_OK);
    struct infer_params p2 = {.prompt = "Tell me a story about a cat.",
                              .max_tokens = 60};
    CHECK_EQ(infer_engine_submit(e, &p2, NULL, &s, &err), INFER_OK);
    k = drain(s, out, sizeof(out), &st);
    infer_stream_free(s);
    infer_engine_free(e);
    CHECK_EQ(k, INFER_EV_DONE);
    CHECK(strlen(out) > 20);
    CHECK(strstr(out, "<|end") == NULL);
}

/* Logprobs through the engine, beside other requests: every prompt token
 * (the first without a value) and every generated token once, in order,
 * with the reference's log-softmax for it and its top alternatives, and
 * the generated ones' bytes making the text. */
TEST(logprobs_match_reference)
{
    if (!have_model())
        check_skip("no %s", model_path);
    struct infer_engine *e = open_engine(8, 0);
    CHECK(e != NULL);
    const char *prompt = prompts[2];
    struct infer_params p = {.prompt = prompt,
                             .max_tokens = GEN,
                             .logprobs = true,
                             .top_logprobs = 5,
                             .prompt_logprobs = true};
    struct infer_params other = {.prompt = prompts[0], .max_tokens = GEN};
    struct infer_stream *s, *o[3];
    struct infer_err err;
    for (int i = 0; i < 3; i++)
        CHECK_EQ(infer_engine_submit(e, &other, NULL, &o[i], &err), INFER_OK);
    CHECK_EQ(infer_engine_submit(e, &p, NULL, &s, &err), INFER_OK);
    static struct infer_token_lp got[GEN + 1], pgot[256];
    char text[4096] = "", pieces[4096] = "";
    size_t n_got = 0, n_pgot = 0, n_text = 0, n_pieces = 0;
    struct infer_event ev;
    int k;
    while ((k = infer_stream_next(s, -1, &ev)) == INFER_EV_TEXT) {
        memcpy(text + n_text, ev.text, ev.len);
        n_text += ev.len;
        for (size_t i = 0; i < ev.n_tokens; i++) {
            if (ev.tokens[i].prompt) {
                CHECK_EQ(n_got, 0); /* the prompt's tokens come first */
                if (n_pgot < 256)
                    pgot[n_pgot++] = ev.tokens[i];
                continue;
            }
            if (n_got > GEN)
                continue;
            got[n_got++] = ev.tokens[i];
            size_t len;
            const char *pc =
                infer_engine_token_text(e, ev.tokens[i].token, &len);
            CHECK(pc != NULL);
            memcpy(pieces + n_pieces, pc, len);
            n_pieces += len;
        }
    }
    CHECK_EQ(k, INFER_EV_DONE);
    text[n_text] = pieces[n_pieces] = '\0';
    CHECK_EQ((int)n_got, ev.stats.completion_tokens);
    CHECK_EQ((int)n_pgot, ev.stats.prompt_tokens);
    /* The pieces are the text (less the answer's first space). */
    CHECK_STREQ(pieces[0] == ' ' && text[0] != ' ' ? pieces + 1 : pieces, text);
    static struct ref_out ro;
    int n_ref = reference_run(prompt, NULL, 0, &ro);
    int V = ro.n_vocab;
    CHECK_EQ(n_ref, (int)n_got);
    CHECK_EQ(ro.n_pids, (int)n_pgot);
    for (int i = 0; i < ro.n_pids; i++) {
        CHECK_EQ(pgot[i].token, ro.pids[i]);
        if (i == 0)
            CHECK(isnan(pgot[i].logprob));
        else
            CHECK_NEAR(pgot[i].logprob, ro.plp[i], 1e-4);
    }
    for (int g = 0; g < n_ref; g++) {
        const struct infer_token_lp *t = &got[g];
        const double *row = ro.lsm + (size_t)g * V;
        CHECK_EQ(t->token, ro.gen[g]);
        CHECK_NEAR(t->logprob, row[ro.gen[g]], 1e-4);
        CHECK_EQ(t->n_top, 5);
        CHECK_EQ(t->top[0].token, ro.gen[g]); /* greedy took the top one */
        for (int j = 0; j < t->n_top; j++) {
            CHECK_NEAR(t->top[j].logprob, row[t->top[j].token], 1e-4);
            if (j > 0)
                CHECK(t->top[j].logprob <= t->top[j - 1].logprob);
        }
        /* nothing outside the top 5 is more likely than its last */
        int above = 0;
        for (int v = 0; v < V; v++)
            above += row[v] > t->top[4].logprob + 1e-4;
        CHECK(above <= 4);
    }
    free(ro.lsm);
    infer_stream_free(s);
    for (int i = 0; i < 3; i++) {
        char buf[4096];
        CHECK_EQ(drain(o[i], buf, sizeof(buf), NULL), INFER_EV_DONE);
        infer_stream_free(o[i]);
    }
    /* top_logprobs is bounded; prompt logprobs need logprobs. */
    p.top_logprobs = INFER_MAX_TOP_LOGPROBS + 1;
    CHECK_EQ(infer_engine_submit(e, &p, NULL, &s, &err), INFER_ERR_ARG);
    p.top_logprobs = 0;
    p.logprobs = false;
    CHECK_EQ(infer_engine_submit(e, &p, NULL, &s, &err), INFER_ERR_ARG);
    infer_engine_free(e);
}

/* Scoring a prompt longer than a step's rows (16) and chunk (16): every
 * token's logprob as the reference's, nothing generated. */
TEST(prompt_only_scores)
{
    if (!have_model())
        check_skip("no %s", model_path);
    struct infer_engine *e = open_engine(4, 0);
    CHECK(e != NULL);
    const char *prompt = "Once upon a time, there was a little girl named "
                         "Lily. She loved to play outside in the park with "
                         "her friends and her big red ball.";
    struct infer_params p = {.prompt = prompt,
                             .logprobs = true,
                             .top_logprobs = 2,
                             .prompt_logprobs = true,
                             .prompt_only = true};
    struct infer_stream *s;
    struct infer_err err;
    CHECK_EQ(infer_engine_submit(e, &p, NULL, &s, &err), INFER_OK);
    static struct infer_token_lp got[256];
    size_t n_got = 0, n_text = 0;
    struct infer_event ev;
    int k;
    while ((k = infer_stream_next(s, -1, &ev)) == INFER_EV_TEXT) {
        n_text += ev.len;
        for (size_t i = 0; i < ev.n_tokens && n_got < 256; i++)
            got[n_got++] = ev.tokens[i];
    }
    CHECK_EQ(k, INFER_EV_DONE);
    infer_stream_free(s);
    CHECK_EQ(n_text, 0);
    CHECK_EQ(ev.stats.completion_tokens, 0);
    CHECK_STREQ(ev.stats.finish_reason, "length");
    static struct ref_out ro;
    CHECK(reference_run(prompt, NULL, 0, &ro) >= 0);
    free(ro.lsm);
    CHECK(ro.n_pids > 32);
    CHECK_EQ((int)n_got, ro.n_pids);
    for (int i = 1; i < ro.n_pids && i < (int)n_got; i++) {
        CHECK(got[i].prompt);
        CHECK_EQ(got[i].token, ro.pids[i]);
        CHECK_NEAR(got[i].logprob, ro.plp[i], 1e-4);
        CHECK_EQ(got[i].n_top, 2);
        CHECK(got[i].top[0].logprob >= got[i].logprob - 1e-6);
    }
    struct infer_engine_info in;
    infer_engine_info(e, &in);
    CHECK_EQ(in.kv_free, in.kv_blocks);
    infer_engine_free(e);
}

/* A stop string cuts the tokens too: those wholly after the stop's start
 * never come, the one holding its start does. "." is a token of its own
 * here; "amed Lily" starts inside the token " named". */
TEST(logprobs_with_stop)
{
    if (!have_model())
        check_skip("no %s", model_path);
    struct infer_engine *e = open_engine(4, 0);
    CHECK(e != NULL);
    const char *stops[] = {".", "amed Lily"};
    for (int c = 0; c < 2; c++) {
        struct infer_params p = {.prompt = prompts[0],
                                 .max_tokens = 64,
                                 .stop = &stops[c],
                                 .n_stop = 1,
                                 .logprobs = true};
        struct infer_stream *s;
        struct infer_err err;
        CHECK_EQ(infer_engine_submit(e, &p, NULL, &s, &err), INFER_OK);
        char text[4096], pieces[4096];
        size_t n_text = 0, n_pieces = 0, n_tok = 0;
        struct infer_event ev;
        int k;
        while ((k = infer_stream_next(s, -1, &ev)) == INFER_EV_TEXT) {
            memcpy(text + n_text, ev.text, ev.len);
            n_text += ev.len;
            for (size_t i = 0; i < ev.n_tokens; i++, n_tok++) {
                size_t len;
                const char *pc =
                    infer_engine_token_text(e, ev.tokens[i].token, &len);
                memcpy(pieces + n_pieces, pc, len);
                n_pieces += len;
                CHECK_EQ(ev.tokens[i].n_top, 0);
            }
        }
        CHECK_EQ(k, INFER_EV_DONE);
        text[n_text] = pieces[n_pieces] = '\0';
        infer_stream_free(s);
        CHECK_STREQ(ev.stats.finish_reason, "stop");
        CHECK(strstr(text, stops[c]) == NULL && n_text > 0);
        const char *pc =
            pieces[0] == ' ' && text[0] != ' ' ? pieces + 1 : pieces;
        CHECK(strncmp(pc, text, n_text) == 0);
        if (c == 0) { /* the '.' token made, not given */
            CHECK_STREQ(pc, text);
            CHECK((int)n_tok < ev.stats.completion_tokens);
        } else { /* " named" given, its "amed" past the text's end */
            CHECK(strncmp(pc + n_text, "amed", 4) == 0);
            CHECK_EQ(strlen(pc), n_text + 4);
        }
    }
    infer_engine_free(e);
}

/* A submitter that leaves mid-answer frees its streams, then at once the
 * waiter they were submitted with (as a battle whose visitor goes away):
 * the engine, still finishing the cancelled requests, must not wake the
 * freed waiter (ASan saw it do so). */
TEST(waiter_freed_after_streams)
{
    if (!have_model())
        check_skip("no %s", model_path);
    struct infer_engine *e = open_engine(8, 0);
    CHECK(e != NULL);
    for (int round = 0; round < 20; round++) {
        struct infer_waiter *w = infer_waiter_new();
        CHECK(w != NULL);
        struct infer_params p = {.prompt = prompts[round % N_PROMPTS],
                                 .max_tokens = 200};
        struct infer_stream *s[4];
        struct infer_err err;
        for (int i = 0; i < 4; i++)
            CHECK_EQ(infer_engine_submit(e, &p, w, &s[i], &err), INFER_OK);
        CHECK_EQ(infer_waiter_wait(w, 10000), 1);
        for (int i = 0; i < 4; i++)
            infer_stream_free(s[i]);
        infer_waiter_free(w);
    }
    /* One more request to the end: the engine has let go of the others. */
    char out[4096];
    CHECK_EQ(run_one(e, prompts[0], out, sizeof(out), NULL), INFER_EV_DONE);
    struct infer_engine_info in;
    infer_engine_info(e, &in);
    CHECK_EQ(in.kv_free, in.kv_blocks);
    infer_engine_free(e);
}

static const struct check_test tests[] = {
    TEST_ENTRY(alone_matches_reference),
    TEST_ENTRY(batched_equals_alone),
    TEST_ENTRY(busy_toolong_stop),
    TEST_ENTRY(sessions_reuse_prefix),
    TEST_ENTRY(hub_scan),
    TEST_ENTRY(eos_text_stops),
    TEST_ENTRY(logprobs_match_reference),
    TEST_ENTRY(logprobs_with_stop),
    TEST_ENTRY(prompt_only_scores),
    TEST_ENTRY(waiter_freed_after_streams),
};
CHECK_MAIN(tests)
