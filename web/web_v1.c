/*
 * web_v1.c: the OpenAI-compatible API over the server's hub of engines, so
 * stock clients (curl -N, the openai libraries) and other Arena nodes can
 * use this node's models:
 *
 *   GET  /v1/models            {"object":"list","data":[{"id":...}]}
 *   POST /v1/chat/completions  messages -> chat.completion(.chunk)
 *   POST /v1/completions       prompt   -> text_completion
 *
 * With "stream": true the answer is SSE: one `data: {chunk}` per piece of
 * text, a last chunk with finish_reason, a usage chunk if
 * stream_options.include_usage, then `data: [DONE]`. Errors have OpenAI's
 * shape {"error":{"message","type","param","code"}}: 400 bad fields, 404
 * unknown model, 400 context_length_exceeded, 503 busy (Retry-After).
 * Sampling fields: temperature, top_p, top_k, min_p, repetition_penalty,
 * presence_penalty, frequency_penalty, logit_bias, seed, stop, max_tokens;
 * logprobs (chat: logprobs + top_logprobs; completions: logprobs = the
 * number of alternatives; local models only); completions' echo (the
 * prompt first; with logprobs its tokens scored too, and max_tokens 0
 * only scores it); prompt_cache_key (the engine's sessions: the next turn
 * reuses the KV of the last); n up to 8 choices, each a
 * request of its own with its own seed (the first with the one given),
 * batched together by the engine, their chunks interleaved by "index".
 * Fields it cannot honour (chat's echo, best_of > 1, suffix, tools, a
 * response_format other than text) get a 400 naming the field.
 * Callers need one of --v1-keys as a bearer token; a server without keys
 * answers clients on its own machine only (else 401 invalid_api_key): the
 * API spends the node's compute and its remote models' keys.
 * A client that goes away mid-stream cancels its request (the engine frees
 * its KV blocks); an idle stream is pinged every few seconds to notice.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <jansson.h>

#include "infer.h"
#include "web_internal.h"

#define V1_MAX_MSGS 256
#define V1_MAX_STOP 4
#define V1_MAX_N    8 /* choices per request ("n") */
#define V1_PING_MS  5000
#define V1_POLL_MS  500

static int v1_error(struct web_req *r, int status, const char *type,
                    const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static int v1_error(struct web_req *r, int status, const char *type,
                    const char *param, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *e =
        json_pack("{s:{s:s,s:s,s:o,s:o}}", "error", "message", msg, "type",
                  type, "param", param ? json_string(param) : json_null(),
                  "code", code ? json_string(code) : json_null());
    int rc = web_reply_json(r, status, e);
    json_decref(e);
    return rc;
}

#define BAD(r, param, ...)                                                     \
    v1_error(r, 400, "invalid_request_error", param, NULL, __VA_ARGS__)

/* ---- GET /v1/models
 * ---------------------------------------------------------- */

/* The API's gate (web_auth_v1); false after replying 401. */
static bool v1_allowed(struct web_req *r)
{
    if (web_auth_v1(r))
        return true;
    v1_error(r, 401, "invalid_request_error", NULL, "invalid_api_key", "%s",
             r->cfg->v1_keys[0] != '\0'
                 ? "a valid API key is needed: Authorization: Bearer "
                   "<key> (one of the server's --v1-keys)"
                 : "this server's /v1 API answers only clients on its "
                   "own machine until it is given keys (--v1-keys)");
    return false;
}

static void v1_models(struct web_req *r)
{
    if (!v1_allowed(r))
        return;
    struct infer_hub *h = web_server_hub(r->srv);
    const char *names[256];
    size_t n = infer_hub_names(h, names, 256);
    json_t *data = json_array();
    for (size_t i = 0; i < n && i < 256; i++) {
        struct infer_engine *e = infer_hub_get(h, names[i]);
        struct infer_engine_info in;
        infer_engine_info(e, &in);
        json_t *m = json_pack("{s:s,s:s,s:i,s:s}", "id", names[i], "object",
                              "model", "created", 0, "owned_by", "arena");
        if (!in.remote)
            json_object_set_new(m, "context_length", json_integer(in.ctx_len));
        json_array_append_new(data, m);
    }
    json_t *o = json_pack("{s:s,s:o}", "object", "list", "data", data);
    web_reply_json(r, 200, o);
    json_decref(o);
}

/* ---- request parsing
 * ----------------------------------------------------------- */

/* One of the n choices of a request: its stream and what it has said. */
struct v1_choice {
    struct infer_stream *s;
    char *text; /* (len) whole answers: the text so far */
    size_t len;
    json_t *lp;       /* whole answers: every token's logprobs */
    long long lp_off; /* completions' text_offset of the next token */
    bool lp_begun;    /* an answer's token was seen (lp_off settled) */
    bool plp_text;    /* a prompt token with text was seen */
    bool done;        /* DONE or ERROR came */
    struct infer_stats st;
};

struct v1_req {
    bool chat, stream, usage;
    const char *model;
    struct infer_engine *e;
    struct infer_params p;
    struct infer_chat_msg msgs[V1_MAX_MSGS];
    char *parts[V1_MAX_MSGS]; /* joined content arrays (owned) */
    const char *stop[V1_MAX_STOP];
    struct infer_logit_bias bias[INFER_MAX_LOGIT_BIAS];
    int n; /* choices */
    struct v1_choice ch[V1_MAX_N];
    int next;               /* the choice v1_next() polls first */
    struct infer_waiter *w; /* woken by every choice's stream */
    bool echo;              /* completions: the prompt before the answer */
    bool score_only;        /* max_tokens 0 */
    char id[40];
    long long created;
};

/* A number field in [lo, hi]; false after replying 400. */
static bool get_num(struct web_req *r, json_t *body, const char *key, double lo,
                    double hi, double *out)
{
    json_t *v = json_object_get(body, key);
    if (v == NULL || json_is_null(v))
        return true;
    if (!json_is_number(v) || json_number_value(v) < lo ||
        json_number_value(v) > hi) {
        BAD(r, key, "'%s' must be a number between %g and %g", key, lo, hi);
        return false;
    }
    *out = json_number_value(v);
    return true;
}

static bool get_int(struct web_req *r, json_t *body, const char *key,
                    long long lo, long long hi, long long *out)
{
    json_t *v = json_object_get(body, key);
    if (v == NULL || json_is_null(v))
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < lo ||
        json_integer_value(v) > hi) {
        BAD(r, key, "'%s' must be an integer between %lld and %lld", key, lo,
            hi);
        return false;
    }
    *out = json_integer_value(v);
    return true;
}

/* logit_bias: {"token id": bias in [-100, 100], ...}; false after 400. */
static bool parse_logit_bias(struct web_req *r, struct v1_req *q, json_t *body)
{
    json_t *lb = json_object_get(body, "logit_bias");
    if (lb == NULL || json_is_null(lb))
        return true;
    if (!json_is_object(lb) || json_object_size(lb) > INFER_MAX_LOGIT_BIAS) {
        BAD(r, "logit_bias",
            "'logit_bias' must be an object of up to %d token ids",
            INFER_MAX_LOGIT_BIAS);
        return false;
    }
    const char *key;
    json_t *v;
    json_object_foreach(lb, key, v)
    {
        char *end;
        errno = 0;
        long id = strtol(key, &end, 10);
        if (end == key || *end != '\0' || errno != 0 || id < 0 ||
            id > INT32_MAX) {
            BAD(r, "logit_bias", "logit_bias key '%.40s' is not a token id",
                key);
            return false;
        }
        if (!json_is_number(v) || json_number_value(v) < -100 ||
            json_number_value(v) > 100) {
            BAD(r, "logit_bias",
                "logit_bias values must be numbers between -100 and 100");
            return false;
        }
        q->bias[q->p.n_logit_bias++] =
            (struct infer_logit_bias){(int32_t)id, (float)json_number_value(v)};
    }
    q->p.logit_bias = q->bias;
    return true;
}

/* Chat: "logprobs": bool and "top_logprobs": 0-20; completions (legacy):
 * "logprobs": 0-20 alternatives. False after replying 400. */
static bool parse_logprobs(struct web_req *r, struct v1_req *q, json_t *body)
{
    json_t *lp = json_object_get(body, "logprobs");
    json_t *top = json_object_get(body, "top_logprobs");
    if (q->chat) {
        if (lp != NULL && !json_is_null(lp) && !json_is_boolean(lp)) {
            BAD(r, "logprobs", "'logprobs' must be a boolean");
            return false;
        }
        q->p.logprobs = json_is_true(lp);
        if (top == NULL || json_is_null(top))
            return true;
        if (!json_is_integer(top) || json_integer_value(top) < 0 ||
            json_integer_value(top) > INFER_MAX_TOP_LOGPROBS) {
            BAD(r, "top_logprobs",
                "'top_logprobs' must be an integer between 0 and %d",
                INFER_MAX_TOP_LOGPROBS);
            return false;
        }
        if (!q->p.logprobs && json_integer_value(top) > 0) {
            BAD(r, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
            return false;
        }
        q->p.top_logprobs = (int)json_integer_value(top);
        return true;
    }
    if (lp == NULL || json_is_null(lp))
        return true;
    if (!json_is_integer(lp) || json_integer_value(lp) < 0 ||
        json_integer_value(lp) > INFER_MAX_TOP_LOGPROBS) {
        BAD(r, "logprobs", "'logprobs' must be an integer between 0 and %d",
            INFER_MAX_TOP_LOGPROBS);
        return false;
    }
    q->p.logprobs = true;
    q->p.top_logprobs = (int)json_integer_value(lp);
    return true;
}

/* Completions' echo: the prompt comes back before the answer, with its
 * tokens' logprobs when logprobs are asked; max_tokens 0 then only scores
 * the prompt (how evaluation harnesses measure a text's likelihood). */
static bool parse_echo(struct web_req *r, struct v1_req *q, json_t *body)
{
    json_t *echo = json_object_get(body, "echo");
    if (echo != NULL && !json_is_null(echo) && !json_is_boolean(echo)) {
        BAD(r, "echo", "'echo' must be a boolean");
        return false;
    }
    q->echo = json_is_true(echo);
    q->p.prompt_logprobs = q->echo && q->p.logprobs;
    if (q->score_only && !q->p.prompt_logprobs) {
        BAD(r, "max_tokens",
            "'max_tokens' 0 needs 'echo': true and 'logprobs' (it only "
            "scores the prompt)");
        return false;
    }
    q->p.prompt_only = q->score_only;
    return true;
}

/* OpenAI's prompt_cache_key: requests with the same key share a cache of
 * the KV of the last one's conversation, so the next turn computes only
 * what is new (the engine's sessions; a 64-bit FNV-1a of the key). */
static bool parse_cache_key(struct web_req *r, struct v1_req *q, json_t *body)
{
    json_t *k = json_object_get(body, "prompt_cache_key");
    if (k == NULL || json_is_null(k))
        return true;
    if (!json_is_string(k) || json_string_length(k) == 0 ||
        json_string_length(k) > 256) {
        BAD(r, "prompt_cache_key",
            "'prompt_cache_key' must be a string of 1 to 256 bytes");
        return false;
    }
    uint64_t h = 0xcbf29ce484222325ull;
    const unsigned char *s = (const unsigned char *)json_string_value(k);
    for (size_t i = 0; i < json_string_length(k); i++)
        h = (h ^ s[i]) * 0x100000001b3ull;
    q->p.session = h | 1; /* never 0 (no session) */
    return true;
}

/* Fields this server does not implement: a clear 400 rather than an answer
 * that silently lacks what was asked. False after replying. */
static bool refuse_unsupported(struct web_req *r, const struct v1_req *q,
                               json_t *body)
{
    json_t *v;
    if (q->chat && json_is_true(json_object_get(body, "echo"))) {
        BAD(r, "echo", "echo is for /v1/completions");
        return false;
    }
    if ((v = json_object_get(body, "best_of")) != NULL && !json_is_null(v) &&
        !(json_is_integer(v) && json_integer_value(v) == 1)) {
        BAD(r, "best_of", "'best_of' must be 1 here");
        return false;
    }
    const char *suffix = json_string_value(json_object_get(body, "suffix"));
    if (suffix != NULL && suffix[0] != '\0') {
        BAD(r, "suffix", "suffix (insertion) is not supported by this server");
        return false;
    }
    v = json_object_get(body, "tools");
    if (json_is_array(v) && json_array_size(v) > 0) {
        BAD(r, "tools",
            "tools (function calling) are not supported by "
            "this server");
        return false;
    }
    v = json_object_get(body, "response_format");
    const char *rf = json_string_value(json_object_get(v, "type"));
    if (v != NULL && !json_is_null(v) && (rf == NULL || strcmp(rf, "text"))) {
        BAD(r, "response_format",
            "only response_format {\"type\": \"text\"} is supported here");
        return false;
    }
    return true;
}

/* Message content: a string, or an array of {"type":"text","text":...}. */
static const char *msg_content(struct v1_req *q, size_t i, json_t *c)
{
    if (json_is_string(c))
        return json_string_value(c);
    if (!json_is_array(c))
        return NULL;
    size_t len = 0, k;
    json_t *part;
    json_array_foreach(c, k, part)
    {
        const char *t = json_string_value(json_object_get(part, "text"));
        if (t == NULL)
            return NULL;
        len += strlen(t);
    }
    char *s = malloc(len + 1);
    if (s == NULL)
        return NULL;
    s[0] = '\0';
    size_t at = 0;
    json_array_foreach(c, k, part)
    {
        const char *t = json_string_value(json_object_get(part, "text"));
        size_t n = strlen(t);
        memcpy(s + at, t, n);
        at += n;
    }
    s[at] = '\0';
    q->parts[i] = s;
    return s;
}

static bool parse_messages(struct web_req *r, struct v1_req *q, json_t *body)
{
    json_t *msgs = json_object_get(body, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0 ||
        json_array_size(msgs) > V1_MAX_MSGS) {
        BAD(r, "messages", "'messages' must be an array of 1 to %d messages",
            V1_MAX_MSGS);
        return false;
    }
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        const char *role = json_string_value(json_object_get(m, "role"));
        const char *content = msg_content(q, i, json_object_get(m, "content"));
        if (role != NULL && strcmp(role, "developer") == 0)
            role = "system";
        if (role == NULL ||
            (strcmp(role, "system") != 0 && strcmp(role, "user") != 0 &&
             strcmp(role, "assistant") != 0)) {
            BAD(r, "messages",
                "messages[%zu].role must be system, user or assistant", i);
            return false;
        }
        if (content == NULL) {
            BAD(r, "messages",
                "messages[%zu].content must be a string or text parts", i);
            return false;
        }
        q->msgs[i] = (struct infer_chat_msg){role, content};
    }
    q->p.msgs = q->msgs;
    q->p.n_msgs = json_array_size(msgs);
    return true;
}

static bool parse_prompt(struct web_req *r, struct v1_req *q, json_t *body)
{
    json_t *pr = json_object_get(body, "prompt");
    if (json_is_array(pr) && json_array_size(pr) == 1)
        pr = json_array_get(pr, 0);
    if (!json_is_string(pr)) {
        BAD(r, "prompt", "'prompt' must be a string");
        return false;
    }
    q->p.prompt = json_string_value(pr);
    return true;
}

/* Fills q from the body; false after replying with the error. */
static bool v1_parse(struct web_req *r, struct v1_req *q, json_t *body)
{
    if (!json_is_object(body)) {
        BAD(r, NULL, "the body must be a JSON object");
        return false;
    }
    q->model = json_string_value(json_object_get(body, "model"));
    if (q->model == NULL) {
        BAD(r, "model", "'model' (a string) is required");
        return false;
    }
    q->e = infer_hub_get(web_server_hub(r->srv), q->model);
    if (q->e == NULL) {
        v1_error(r, 404, "invalid_request_error", "model", "model_not_found",
                 "The model '%.200s' does not exist", q->model);
        return false;
    }
    json_t *stream = json_object_get(body, "stream");
    if (stream != NULL && !json_is_boolean(stream) && !json_is_null(stream)) {
        BAD(r, "stream", "'stream' must be a boolean");
        return false;
    }
    q->stream = json_is_true(stream);
    json_t *so = json_object_get(body, "stream_options");
    q->usage = json_is_true(json_object_get(so, "include_usage"));
    double temp = 1.0, top_p = 1.0, min_p = 0, rep = 1.0, pres = 0, freq = 0;
    long long max_tokens = -1, top_k = 0, seed = 0, n = 1;
    if (!get_num(r, body, "temperature", 0, 2, &temp) ||
        !get_num(r, body, "top_p", 0, 1, &top_p) ||
        !get_num(r, body, "min_p", 0, 1, &min_p) ||
        !get_num(r, body, "repetition_penalty", 0.01, 100, &rep) ||
        !get_num(r, body, "presence_penalty", -2, 2, &pres) ||
        !get_num(r, body, "frequency_penalty", -2, 2, &freq) ||
        !get_int(r, body, "max_tokens", 0, 1 << 24, &max_tokens) ||
        !get_int(r, body, "max_completion_tokens", 0, 1 << 24, &max_tokens) ||
        !get_int(r, body, "top_k", 0, 1 << 24, &top_k) ||
        !get_int(r, body, "seed", INT64_MIN, INT64_MAX, &seed) ||
        !get_int(r, body, "n", 1, V1_MAX_N, &n))
        return false;
    q->p.temperature = (float)temp;
    q->p.top_p = (float)top_p;
    q->p.min_p = (float)min_p;
    q->p.repeat_penalty = (float)rep;
    q->p.presence_penalty = (float)pres;
    q->p.frequency_penalty = (float)freq;
    q->p.max_tokens = max_tokens > 0 ? (int)max_tokens : 0;
    q->score_only = max_tokens == 0; /* checked with echo, below */
    q->p.top_k = (int)top_k;
    q->p.seed = (uint64_t)seed;
    q->n = (int)n;
    json_t *stop = json_object_get(body, "stop");
    if (json_is_string(stop)) {
        q->stop[0] = json_string_value(stop);
        q->p.n_stop = 1;
    } else if (json_is_array(stop) && json_array_size(stop) <= V1_MAX_STOP) {
        size_t i;
        json_t *s;
        json_array_foreach(stop, i, s)
        {
            if (!json_is_string(s) || json_string_length(s) == 0) {
                BAD(r, "stop", "'stop' must hold non-empty strings");
                return false;
            }
            q->stop[q->p.n_stop++] = json_string_value(s);
        }
    } else if (stop != NULL && !json_is_null(stop)) {
        BAD(r, "stop", "'stop' must be a string or up to %d strings",
            V1_MAX_STOP);
        return false;
    }
    q->p.stop = q->stop;
    if (!parse_logit_bias(r, q, body) || !parse_logprobs(r, q, body) ||
        !refuse_unsupported(r, q, body) || !parse_echo(r, q, body) ||
        !parse_cache_key(r, q, body))
        return false;
    uint64_t rnd = 0;
    if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
        rnd = (uint64_t)time(NULL);
    snprintf(q->id, sizeof(q->id), "%s-%016" PRIx64,
             q->chat ? "chatcmpl" : "cmpl", rnd);
    q->created = (long long)time(NULL);
    if (q->p.seed == 0)
        q->p.seed = rnd | 1; /* no seed asked: a fresh one */
    return q->chat ? parse_messages(r, q, body) : parse_prompt(r, q, body);
}

/* ---- answers
 * ------------------------------------------------------------------ */

static json_t *usage_json(const struct infer_stats *st)
{
    return json_pack(
        "{s:i,s:i,s:i,s:{s:i}}", "prompt_tokens", st->prompt_tokens,
        "completion_tokens", st->completion_tokens, "total_tokens",
        st->prompt_tokens + st->completion_tokens, "prompt_tokens_details",
        "cached_tokens", st->cached_tokens);
}

/* A token's bytes as a JSON string (bytes that are not whole UTF-8
 * characters become U+FFFD) and, with raw, as the array of byte values
 * (chat's "bytes"). */
static json_t *token_json(const struct v1_req *q, int id, json_t **raw,
                          size_t *raw_len)
{
    size_t n = 0;
    const char *p = infer_engine_token_text(q->e, id, &n);
    if (p == NULL)
        p = "";
    if (n > 256)
        n = 256;
    char buf[3 * (256 + 4)];
    struct infer_utf8 u = {{0}, 0};
    size_t k = infer_utf8_push(&u, p, n, buf, sizeof(buf));
    k += infer_utf8_flush(&u, buf + k, sizeof(buf) - k);
    if (raw != NULL) {
        *raw = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(*raw, json_integer((unsigned char)p[i]));
    }
    if (raw_len != NULL)
        *raw_len = n;
    return json_stringn(buf, k);
}

/* The logprobs of the tokens of one event, in the shape of the API:
 * chat {"content": [{token, logprob, bytes, top_logprobs}]}; completions
 * {tokens, token_logprobs, top_logprobs, text_offset}. NULL if none. */
static json_t *logprobs_json(const struct v1_req *q, struct v1_choice *c,
                             const struct infer_event *ev)
{
    if (!q->p.logprobs || ev->n_tokens == 0)
        return NULL;
    json_t *content = json_array(), *toks = json_array(), *lps = json_array(),
           *tops = json_array(), *offs = json_array();
    for (size_t i = 0; i < ev->n_tokens; i++) {
        const struct infer_token_lp *t = &ev->tokens[i];
        json_t *bytes = NULL;
        size_t n = 0;
        json_t *s = token_json(q, t->token, q->chat ? &bytes : NULL, &n);
        /* text_offset: the prompt's tokens count from 0, the answer's from
         * the end of the echoed prompt; a tokenizer's leading space that
         * the text lacks (SentencePiece's first word; the answer's first
         * space, dropped) moves the count back by one. */
        size_t pn = 0;
        const char *pc = infer_engine_token_text(q->e, t->token, &pn);
        bool spaced = pc != NULL && pn > 0 && pc[0] == ' ';
        if (t->prompt && !c->plp_text && pn > 0) {
            c->plp_text = true;
            if (spaced && q->p.prompt != NULL && q->p.prompt[0] != ' ')
                c->lp_off = -1;
        } else if (!t->prompt && !c->lp_begun) {
            c->lp_begun = true;
            c->lp_off = (q->echo ? (long long)strlen(q->p.prompt) : 0) -
                        (spaced && (ev->len == 0 || ev->text[0] != ' '));
        }
        if (q->chat) {
            json_t *top = json_array();
            for (int j = 0; j < t->n_top; j++) {
                json_t *tb = NULL;
                json_t *ts = token_json(q, t->top[j].token, &tb, NULL);
                json_array_append_new(
                    top, json_pack("{s:o,s:f,s:o}", "token", ts, "logprob",
                                   (double)t->top[j].logprob, "bytes", tb));
            }
            json_array_append_new(
                content, json_pack("{s:o,s:f,s:o,s:o}", "token", s, "logprob",
                                   (double)t->logprob, "bytes", bytes,
                                   "top_logprobs", top));
        } else {
            /* The prompt's first token has nothing before it: null. */
            json_t *top = isnan(t->logprob) ? json_null() : json_object();
            for (int j = 0; j < t->n_top && !isnan(t->logprob); j++) {
                json_t *ts = token_json(q, t->top[j].token, NULL, NULL);
                json_object_set_new(top, json_string_value(ts),
                                    json_real(t->top[j].logprob));
                json_decref(ts);
            }
            json_array_append_new(toks, s);
            json_array_append_new(
                lps, isnan(t->logprob) ? json_null() : json_real(t->logprob));
            json_array_append_new(tops, top);
            json_array_append_new(offs,
                                  json_integer(c->lp_off > 0 ? c->lp_off : 0));
            c->lp_off += (long long)n;
        }
    }
    if (q->chat) {
        json_decref(toks);
        json_decref(lps);
        json_decref(tops);
        json_decref(offs);
        return json_pack("{s:o,s:n}", "content", content, "refusal");
    }
    json_decref(content);
    return json_pack("{s:o,s:o,s:o,s:o}", "tokens", toks, "token_logprobs", lps,
                     "top_logprobs", tops, "text_offset", offs);
}

/* Appends the arrays of more (a logprobs_json) to those of acc. */
static void logprobs_extend(json_t *acc, json_t *more)
{
    const char *key;
    json_t *v;
    json_object_foreach(more, key, v)
    {
        if (json_is_array(v))
            json_array_extend(json_object_get(acc, key), v);
    }
}

/* A chunk with text (or the role, or a finish reason). */
static json_t *chunk_json(const struct v1_req *q, int index, const char *text,
                          size_t len, const char *finish, bool role, json_t *lp)
{
    json_t *choice = json_object();
    json_object_set_new(choice, "index", json_integer(index));
    if (q->chat) {
        json_t *d = json_object();
        if (role)
            json_object_set_new(d, "role", json_string("assistant"));
        if (text != NULL)
            json_object_set_new(d, "content", json_stringn(text, len));
        json_object_set_new(choice, "delta", d);
    } else {
        json_object_set_new(choice, "text",
                            json_stringn(text != NULL ? text : "", len));
    }
    json_object_set_new(choice, "logprobs", lp != NULL ? lp : json_null());
    json_object_set_new(choice, "finish_reason",
                        finish ? json_string(finish) : json_null());
    json_t *o = json_pack("{s:s,s:s,s:I,s:s}", "id", q->id, "object",
                          q->chat ? "chat.completion.chunk" : "text_completion",
                          "created", (json_int_t)q->created, "model", q->model);
    json_t *choices = json_array();
    json_array_append_new(choices, choice);
    json_object_set_new(o, "choices", choices);
    return o;
}

static int send_chunk(struct web_req *r, json_t *o)
{
    int rc = web_sse_json(r, NULL, o);
    json_decref(o);
    return rc;
}

/* Usage of all choices: the prompt once, the completions summed. */
static json_t *usage_all(const struct v1_req *q)
{
    struct infer_stats u = q->ch[0].st;
    for (int i = 1; i < q->n; i++)
        u.completion_tokens += q->ch[i].st.completion_tokens;
    return usage_json(&u);
}

/* The next event of any unfinished choice (polled in turn, so that none
 * waits behind another): its index with *ev filled, or -1 when none came
 * within timeout_ms. A DONE or ERROR marks the choice done. */
static int v1_next(struct v1_req *q, int timeout_ms, struct infer_event *ev)
{
    for (;;) {
        for (int k = 0; k < q->n; k++) {
            int i = (q->next + k) % q->n;
            struct v1_choice *c = &q->ch[i];
            if (c->done)
                continue;
            int kind = infer_stream_next(c->s, 0, ev);
            if (kind == INFER_EV_NONE)
                continue;
            if (kind == INFER_EV_DONE || kind == INFER_EV_ERROR) {
                c->done = true;
                c->st = ev->stats;
            }
            q->next = i + 1;
            return i;
        }
        if (infer_waiter_wait(q->w, timeout_ms) == 0)
            return -1;
    }
}

static void cancel_all(struct v1_req *q)
{
    for (int i = 0; i < q->n; i++)
        infer_stream_cancel(q->ch[i].s);
}

static void v1_stream(struct web_req *r, struct v1_req *q)
{
    if (web_sse_start(r) != WEB_OK)
        return;
    int rc = WEB_OK, idle = 0, left = q->n;
    for (int i = 0; q->chat && rc == WEB_OK && i < q->n; i++)
        rc = send_chunk(r, chunk_json(q, i, "", 0, NULL, true, NULL));
    for (int i = 0; q->echo && rc == WEB_OK && i < q->n; i++)
        rc = send_chunk(r, chunk_json(q, i, q->p.prompt, strlen(q->p.prompt),
                                      NULL, false, NULL));
    struct infer_event ev;
    while (rc == WEB_OK && left > 0) {
        int i = v1_next(q, V1_POLL_MS, &ev);
        if (i < 0) {
            idle += V1_POLL_MS;
            if (web_server_stopping(r->srv))
                break;
            if (idle >= V1_PING_MS) {
                idle = 0;
                rc = web_sse_ping(r);
            }
            continue;
        }
        idle = 0;
        if (ev.kind == INFER_EV_TEXT) {
            json_t *lp = logprobs_json(q, &q->ch[i], &ev);
            rc = send_chunk(r,
                            chunk_json(q, i, ev.text, ev.len, NULL, false, lp));
        } else if (ev.kind == INFER_EV_ERROR) {
            json_t *e =
                json_pack("{s:{s:s,s:s,s:n,s:n}}", "error", "message", ev.error,
                          "type", "server_error", "param", "code");
            send_chunk(r, e);
            web_sse_send(r, NULL, "[DONE]");
            cancel_all(q);
            return;
        } else {
            left--;
            rc = send_chunk(r, chunk_json(q, i, NULL, 0, ev.stats.finish_reason,
                                          false, NULL));
        }
    }
    if (rc == WEB_OK && left == 0) {
        if (q->usage) {
            json_t *u =
                json_pack("{s:s,s:s,s:I,s:s,s:[],s:o}", "id", q->id, "object",
                          q->chat ? "chat.completion.chunk" : "text_completion",
                          "created", (json_int_t)q->created, "model", q->model,
                          "choices", "usage", usage_all(q));
            rc = send_chunk(r, u);
        }
        if (rc == WEB_OK)
            web_sse_send(r, NULL, "[DONE]");
        return;
    }
    cancel_all(q); /* the client went away (or we stop) */
}

static void v1_whole(struct web_req *r, struct v1_req *q)
{
    struct infer_event ev;
    const char *error = NULL;
    char errbuf[sizeof(ev.error)];
    /* Completions' echo: the prompt, then the answer. */
    for (int i = 0; q->echo && i < q->n; i++) {
        q->ch[i].text = strdup(q->p.prompt);
        q->ch[i].len = q->ch[i].text != NULL ? strlen(q->p.prompt) : 0;
        if (q->ch[i].text == NULL) {
            cancel_all(q);
            error = "out of memory";
        }
    }
    for (int left = q->n; left > 0;) {
        int i = v1_next(q, V1_POLL_MS, &ev);
        if (i < 0) {
            if (web_server_stopping(r->srv))
                cancel_all(q);
            continue;
        }
        struct v1_choice *c = &q->ch[i];
        if (ev.kind == INFER_EV_DONE || ev.kind == INFER_EV_ERROR) {
            left--;
            if (ev.kind == INFER_EV_ERROR && error == NULL) {
                memcpy(errbuf, ev.error, sizeof(errbuf));
                error = errbuf;
                cancel_all(q);
            }
            continue;
        }
        json_t *lp = logprobs_json(q, c, &ev);
        if (lp != NULL && c->lp == NULL) {
            c->lp = lp;
        } else if (lp != NULL) {
            logprobs_extend(c->lp, lp);
            json_decref(lp);
        }
        char *t = realloc(c->text, c->len + ev.len + 1);
        if (t == NULL) {
            cancel_all(q);
            error = error != NULL ? error : "out of memory";
            continue;
        }
        c->text = t;
        memcpy(c->text + c->len, ev.text, ev.len);
        c->len += ev.len;
    }
    if (error != NULL) {
        v1_error(r, 500, "server_error", NULL, NULL, "%s", error);
        return;
    }
    json_t *choices = json_array();
    for (int i = 0; i < q->n; i++) {
        struct v1_choice *c = &q->ch[i];
        if (q->p.logprobs && c->lp == NULL) /* no tokens at all */
            c->lp = q->chat ? json_pack("{s:[],s:n}", "content", "refusal")
                            : json_pack("{s:[],s:[],s:[],s:[]}", "tokens",
                                        "token_logprobs", "top_logprobs",
                                        "text_offset");
        json_t *choice = json_pack(
            "{s:i,s:s}", "index", i, "finish_reason",
            c->st.finish_reason != NULL ? c->st.finish_reason : "stop");
        json_t *content = json_stringn(c->text != NULL ? c->text : "", c->len);
        if (q->chat)
            json_object_set_new(choice, "message",
                                json_pack("{s:s,s:o}", "role", "assistant",
                                          "content", content));
        else
            json_object_set_new(choice, "text", content);
        json_object_set_new(choice, "logprobs",
                            c->lp != NULL ? c->lp : json_null());
        c->lp = NULL;
        json_array_append_new(choices, choice);
    }
    json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:o,s:o}", "id", q->id, "object",
                          q->chat ? "chat.completion" : "text_completion",
                          "created", (json_int_t)q->created, "model", q->model,
                          "choices", choices, "usage", usage_all(q));
    web_reply_json(r, 200, o);
    json_decref(o);
}

/* Submits the n choices, each with its own seed (the first with the one
 * asked for); on failure cancels those already submitted. */
static int v1_submit(struct v1_req *q, struct infer_err *err)
{
    q->w = infer_waiter_new();
    if (q->w == NULL) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return INFER_ERR_NOMEM;
    }
    int st = INFER_OK;
    for (int i = 0; st == INFER_OK && i < q->n; i++) {
        struct infer_params p = q->p;
        p.seed += (uint64_t)i * 0x9e3779b97f4a7c15ull;
        st = infer_engine_submit(q->e, &p, q->w, &q->ch[i].s, err);
    }
    if (st != INFER_OK)
        cancel_all(q);
    return st;
}

static void v1_complete(struct web_req *r, bool chat)
{
    if (!v1_allowed(r))
        return;
    size_t blen;
    const char *btext = web_req_body(r, &blen);
    if (btext == NULL)
        return;
    json_error_t jerr;
    json_t *body = json_loadb(btext, blen, 0, &jerr);
    if (body == NULL) {
        BAD(r, NULL, "malformed JSON at line %d, column %d: %s", jerr.line,
            jerr.column, jerr.text);
        return;
    }
    struct v1_req *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        json_decref(body);
        v1_error(r, 500, "server_error", NULL, NULL, "out of memory");
        return;
    }
    q->chat = chat;
    if (v1_parse(r, q, body)) {
        struct infer_err err = {{0}};
        int st = v1_submit(q, &err);
        if (st == INFER_ERR_TOO_LONG) {
            v1_error(r, 400, "invalid_request_error",
                     chat ? "messages" : "prompt", "context_length_exceeded",
                     "%s", err.msg);
        } else if (st == INFER_ERR_BUSY) {
            web_header_add(r, "Retry-After", "1");
            v1_error(r, 503, "server_error", NULL, "overloaded", "%s", err.msg);
        } else if (st == INFER_ERR_ARG) {
            BAD(r, strncmp(err.msg, "logit_bias", 10) ? NULL : "logit_bias",
                "%s", err.msg);
        } else if (st != INFER_OK) {
            v1_error(r, 500, "server_error", NULL, NULL, "%s", err.msg);
        } else if (q->stream) {
            v1_stream(r, q);
        } else {
            v1_whole(r, q);
        }
    }
    for (int i = 0; i < q->n; i++) {
        infer_stream_free(q->ch[i].s);
        free(q->ch[i].text);
        json_decref(q->ch[i].lp);
    }
    infer_waiter_free(q->w); /* after its streams */
    for (size_t i = 0; i < V1_MAX_MSGS; i++)
        free(q->parts[i]);
    free(q);
    json_decref(body);
}

static void v1_chat(struct web_req *r)
{
    v1_complete(r, true);
}

static void v1_completions(struct web_req *r)
{
    v1_complete(r, false);
}

int web__v1_init(struct web_server *s, void **state, struct web_err *err)
{
    *state = NULL;
    if (web_route(s, "GET", "/v1/models", v1_models, NULL) != WEB_OK ||
        web_route(s, "POST", "/v1/chat/completions", v1_chat, NULL) != WEB_OK ||
        web_route(s, "POST", "/v1/completions", v1_completions, NULL) !=
            WEB_OK) {
        snprintf(err->msg, sizeof(err->msg), "v1: cannot add routes");
        return WEB_ERR;
    }
    return WEB_OK;
}
