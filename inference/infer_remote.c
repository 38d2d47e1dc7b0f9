/*
 * infer_remote.c: remote engines, any OpenAI-compatible endpoint (vLLM,
 * llama.cpp's server, hosted APIs, another Arena's /v1). Each request runs
 * on a thread of its own: one streaming POST with libcurl, whose SSE
 * "data: {...}" lines are parsed as they arrive and their text pushed to
 * the stream.
 *
 * Retries: an attempt that fails (no connection, timeout, HTTP 429 or 5xx)
 * is retried, with a short backoff, only while no visible text has been
 * pushed; after that a failure ends the stream with an error, so a client
 * never sees a token twice. The API key is read from the named environment
 * variable for each attempt, put in the Authorization header and wiped
 * afterwards; it is never logged, stored or copied into errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "infer_internal.h"
#include "infer_sched.h"

#define ERR_BODY_MAX   4096
#define LINE_MAX_BYTES (1 << 20)

struct remote {
    struct infer_engine base;
    char *base_url, *model, *key_env;
    int connect_ms, timeout_ms, retries;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int active; /* request threads running */
    atomic_bool closing;
    long long done;
};

struct rreq {
    struct remote *e;
    struct infer_stream *s;
    CURL *curl;
    char *body; /* the JSON request */
    bool chat;
    /* per attempt */
    char *line; /* (cap) the SSE line being assembled */
    size_t n, cap;
    char *errbody; /* first bytes of a non-2xx answer */
    size_t n_err;
    long http;
    bool finished; /* [DONE] or a finish_reason came */
    bool visible;  /* text was pushed: no retry any more */
    char fail[200];
    /* totals */
    int completion_tokens, prompt_tokens, chunks;
    const char *reason;
    double t_first;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static char *remote_body(const struct remote *e, const struct infer_params *p,
                         const char *text)
{
    json_t *o = json_object();
    json_object_set_new(o, "model", json_string(e->model));
    json_object_set_new(o, "stream", json_true());
    json_object_set_new(o, "stream_options",
                        json_pack("{s:b}", "include_usage", 1));
    if (p->msgs != NULL) {
        json_t *a = json_array();
        for (size_t i = 0; i < p->n_msgs; i++)
            json_array_append_new(a, json_pack("{s:s,s:s}", "role",
                                               p->msgs[i].role, "content",
                                               p->msgs[i].content));
        json_object_set_new(o, "messages", a);
    } else {
        json_object_set_new(o, "prompt", json_string(text));
    }
    if (p->max_tokens > 0)
        json_object_set_new(o, "max_tokens", json_integer(p->max_tokens));
    json_object_set_new(o, "temperature", json_real(p->temperature));
    if (p->top_p > 0 && p->top_p < 1)
        json_object_set_new(o, "top_p", json_real(p->top_p));
    if (p->top_k > 0)
        json_object_set_new(o, "top_k", json_integer(p->top_k));
    if (p->min_p > 0)
        json_object_set_new(o, "min_p", json_real(p->min_p));
    if (p->repeat_penalty > 0 && p->repeat_penalty != 1)
        json_object_set_new(o, "repetition_penalty",
                            json_real(p->repeat_penalty));
    if (p->presence_penalty != 0)
        json_object_set_new(o, "presence_penalty",
                            json_real(p->presence_penalty));
    if (p->frequency_penalty != 0)
        json_object_set_new(o, "frequency_penalty",
                            json_real(p->frequency_penalty));
    if (p->n_logit_bias > 0) {
        json_t *b = json_object();
        for (size_t i = 0; i < p->n_logit_bias; i++) {
            char key[16];
            snprintf(key, sizeof(key), "%d", (int)p->logit_bias[i].token);
            json_object_set_new(b, key, json_real(p->logit_bias[i].bias));
        }
        json_object_set_new(o, "logit_bias", b);
    }
    if (p->seed != 0)
        json_object_set_new(o, "seed",
                            json_integer((json_int_t)(p->seed >> 1)));
    if (p->n_stop > 0) {
        json_t *a = json_array();
        for (size_t i = 0; i < p->n_stop; i++)
            json_array_append_new(a, json_string(p->stop[i]));
        json_object_set_new(o, "stop", a);
    }
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/* ---- SSE parsing
 * ------------------------------------------------------------------------- */

static void on_data(struct rreq *q, const char *data)
{
    if (strcmp(data, "[DONE]") == 0) {
        q->finished = true;
        return;
    }
    json_t *j = json_loads(data, 0, NULL);
    if (j == NULL)
        return; /* not JSON: ignore, as clients do */
    json_t *err = json_object_get(j, "error");
    if (err != NULL) {
        const char *m = json_string_value(json_object_get(err, "message"));
        snprintf(q->fail, sizeof(q->fail), "remote error: %.150s",
                 m != NULL ? m : "unknown");
        q->finished = true;
    }
    json_t *usage = json_object_get(j, "usage");
    if (json_is_object(usage)) {
        q->prompt_tokens =
            (int)json_integer_value(json_object_get(usage, "prompt_tokens"));
        q->completion_tokens = (int)json_integer_value(
            json_object_get(usage, "completion_tokens"));
    }
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    if (c0 != NULL) {
        const char *t = q->chat
                            ? json_string_value(json_object_get(
                                  json_object_get(c0, "delta"), "content"))
                            : json_string_value(json_object_get(c0, "text"));
        size_t len = t != NULL ? strlen(t) : 0;
        if (len > 0) {
            if (q->t_first == 0)
                q->t_first = infer_now();
            q->visible = true;
            q->chunks++;
            infer__stream_text(q->s, t, len);
        }
        const char *fr =
            json_string_value(json_object_get(c0, "finish_reason"));
        if (fr != NULL)
            q->reason = strcmp(fr, "length") == 0 ? "length" : "stop";
    }
    json_decref(j);
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct rreq *q = arg;
    size_t len = size * nmemb;
    if (infer__stream_cancelled(q->s) || atomic_load(&q->e->closing))
        return 0;
    if (q->http == 0)
        curl_easy_getinfo(q->curl, CURLINFO_RESPONSE_CODE, &q->http);
    if (q->http < 200 || q->http >= 300) {
        size_t k =
            ERR_BODY_MAX - q->n_err < len ? ERR_BODY_MAX - q->n_err : len;
        memcpy(q->errbody + q->n_err, ptr, k);
        q->n_err += k;
        return len;
    }
    for (size_t i = 0; i < len; i++) {
        char c = ptr[i];
        if (c == '\n') {
            if (q->n > 0 && q->line[q->n - 1] == '\r')
                q->n--;
            q->line[q->n] = '\0';
            if (strncmp(q->line, "data:", 5) == 0)
                on_data(q, q->line + 5 + (q->line[5] == ' '));
            q->n = 0;
            continue;
        }
        if (q->n + 2 > q->cap) {
            if (q->cap >= LINE_MAX_BYTES)
                return 0; /* a hostile endless line */
            size_t cap = q->cap ? q->cap * 2 : 1024;
            char *l = realloc(q->line, cap);
            if (l == NULL)
                return 0;
            q->line = l;
            q->cap = cap;
        }
        q->line[q->n++] = c;
    }
    return len;
}

static int on_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c,
                       curl_off_t d)
{
    (void)a, (void)b, (void)c, (void)d;
    struct rreq *q = arg;
    return infer__stream_cancelled(q->s) || atomic_load(&q->e->closing);
}

/* One attempt. Returns true when the request is over (success or a failure
 * not worth retrying); q->fail says which failure. */
static bool attempt(struct rreq *q, bool *retryable)
{
    struct remote *e = q->e;
    *retryable = false;
    q->n = q->n_err = 0;
    q->http = 0;
    q->fail[0] = '\0';
    char url[2048];
    snprintf(url, sizeof(url), "%s/%s", e->base_url,
             q->chat ? "chat/completions" : "completions");
    CURL *c = curl_easy_init();
    if (c == NULL) {
        snprintf(q->fail, sizeof(q->fail), "remote: cannot start libcurl");
        return true;
    }
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Accept: text/event-stream");
    char auth[1024] = "";
    const char *key = e->key_env != NULL ? getenv(e->key_env) : NULL;
    if (key != NULL && key[0] != '\0' &&
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key) <
            (int)sizeof(auth))
        h = curl_slist_append(h, auth);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, q->body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, q);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, q);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)e->connect_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)e->timeout_ms);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_USERAGENT, "arena/1");
    q->curl = c; /* the write callback reads the status through it */
    CURLcode rc = curl_easy_perform(c);
    long http = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    explicit_bzero(auth, sizeof(auth));
    if (infer__stream_cancelled(q->s) || atomic_load(&e->closing)) {
        snprintf(q->fail, sizeof(q->fail), "cancelled");
        return true;
    }
    if (q->fail[0] != '\0')
        return true;
    if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && q->finished)) {
        snprintf(q->fail, sizeof(q->fail), "remote %s: %s", e->base_url,
                 curl_easy_strerror(rc));
        *retryable = rc != CURLE_WRITE_ERROR;
        return true;
    }
    if (http < 200 || http >= 300) {
        const char *msg = NULL;
        json_t *j = json_loadb(q->errbody, q->n_err, 0, NULL);
        json_t *eo = json_object_get(j, "error");
        msg = json_is_string(eo)
                  ? json_string_value(eo)
                  : json_string_value(json_object_get(eo, "message"));
        snprintf(q->fail, sizeof(q->fail), "remote %s: HTTP %ld: %.120s",
                 e->base_url, http, msg != NULL ? msg : "no detail");
        json_decref(j);
        *retryable = http == 429 || http >= 500;
        return true;
    }
    if (!q->finished && q->reason == NULL) {
        snprintf(q->fail, sizeof(q->fail), "remote %s: the stream ended early",
                 e->base_url);
        *retryable = true;
    }
    return true;
}

static void *remote_main(void *arg)
{
    struct rreq *q = arg;
    struct remote *e = q->e;
    q->errbody = malloc(ERR_BODY_MAX);
    bool retry = q->errbody != NULL;
    for (int i = 0; retry; i++) {
        attempt(q, &retry);
        retry = retry && q->fail[0] != '\0' && !q->visible && i < e->retries &&
                !infer__stream_cancelled(q->s) && !atomic_load(&e->closing);
        if (retry)
            usleep((useconds_t)(200000u << (i < 4 ? i : 4)));
    }
    double now = infer_now();
    struct infer_stats st = {
        .prompt_tokens = q->prompt_tokens,
        .completion_tokens =
            q->completion_tokens > 0 ? q->completion_tokens : q->chunks,
        .ttft_ms = q->t_first > 0 ? (q->t_first - q->s->t_submit) * 1e3 : 0,
        .gen_ms = q->t_first > 0 ? (now - q->t_first) * 1e3 : 0,
        .finish_reason = q->reason != NULL ? q->reason : "stop"};
    infer__stream_detach(q->s);
    if (q->errbody == NULL)
        infer__stream_fail(q->s, &st, "out of memory");
    else if (q->fail[0] != '\0')
        infer__stream_fail(q->s, &st, "%s", q->fail);
    else
        infer__stream_done(q->s, &st);
    infer__stream_unref(q->s);
    free(q->body);
    free(q->line);
    free(q->errbody);
    free(q);
    pthread_mutex_lock(&e->mu);
    e->active--;
    e->done++;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

static int remote_submit(struct infer_engine *base,
                         const struct infer_params *p, struct infer_stream *s,
                         struct infer_err *err)
{
    struct remote *e = (struct remote *)base;
    if (p->logprobs)
        return infer_err_set(err, INFER_ERR_ARG,
                             "logprobs are not available for remote models");
    if (p->msgs != NULL) {
        if (p->n_msgs == 0)
            return infer_err_set(err, INFER_ERR_ARG, "no messages");
        for (size_t i = 0; i < p->n_msgs; i++)
            if (p->msgs[i].role == NULL || p->msgs[i].content == NULL)
                return infer_err_set(err, INFER_ERR_ARG,
                                     "message %zu has no role or content", i);
    }
    struct rreq *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return infer_err_set(err, INFER_ERR_NOMEM, "out of memory");
    q->e = e;
    q->s = s;
    q->chat = p->msgs != NULL;
    q->body = remote_body(e, p, p->prompt != NULL ? p->prompt : "");
    if (q->body == NULL) {
        free(q);
        return infer_err_set(err, INFER_ERR_NOMEM, "out of memory");
    }
    int st = INFER_OK;
    pthread_mutex_lock(&e->mu);
    if (atomic_load(&e->closing))
        st = infer_err_set(err, INFER_ERR_CANCELLED, "the engine is closing");
    else
        e->active++;
    pthread_mutex_unlock(&e->mu);
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (st == INFER_OK && pthread_create(&t, &a, remote_main, q) != 0) {
        pthread_mutex_lock(&e->mu);
        e->active--;
        pthread_mutex_unlock(&e->mu);
        st = infer_err_set(err, INFER_ERR_BUSY, "cannot start a thread");
    }
    pthread_attr_destroy(&a);
    if (st != INFER_OK) {
        free(q->body);
        free(q);
    }
    return st;
}

static void remote_info(struct infer_engine *base, struct infer_engine_info *o)
{
    struct remote *e = (struct remote *)base;
    pthread_mutex_lock(&e->mu);
    o->remote = true;
    o->running = e->active;
    o->steps = e->done;
    pthread_mutex_unlock(&e->mu);
}

static void remote_destroy(struct infer_engine *base)
{
    struct remote *e = (struct remote *)base;
    pthread_mutex_lock(&e->mu);
    atomic_store(&e->closing, true);
    /* Request threads notice their stream's cancel flag within libcurl's
     * progress interval; the streams themselves are the submitters'. */
    while (e->active > 0)
        pthread_cond_wait(&e->cv, &e->mu);
    pthread_mutex_unlock(&e->mu);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e->base_url);
    free(e->model);
    free(e->key_env);
    free(e->base.name);
    free(e);
}

static const struct infer_engine_vt remote_vt = {
    remote_submit, NULL, remote_info, remote_destroy, NULL /* no vocabulary */};

int infer__remote_open(const struct infer_remote_opts *o,
                       struct infer_engine **out, struct infer_err *err)
{
    pthread_once(&curl_once, curl_init);
    struct remote *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return infer_err_set(err, INFER_ERR_NOMEM, "out of memory");
    e->base.vt = &remote_vt;
    e->base.fmt = INFER_CHAT_NONE;
    size_t n = strlen(o->base_url);
    while (n > 0 && o->base_url[n - 1] == '/')
        n--;
    e->base_url = strndup(o->base_url, n);
    e->model = strdup(o->model);
    e->base.name = strdup(o->model);
    e->key_env = o->api_key_env != NULL && o->api_key_env[0] != '\0'
                     ? strdup(o->api_key_env)
                     : NULL;
    e->connect_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 10000;
    e->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 300000;
    e->retries = o->retries > 0 ? o->retries : 0;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    if (e->base_url == NULL || e->model == NULL || e->base.name == NULL ||
        (o->api_key_env != NULL && o->api_key_env[0] != '\0' &&
         e->key_env == NULL)) {
        remote_destroy(&e->base);
        return infer_err_set(err, INFER_ERR_NOMEM, "out of memory");
    }
    if (strncmp(e->base_url, "http://", 7) != 0 &&
        strncmp(e->base_url, "https://", 8) != 0) {
        remote_destroy(&e->base);
        return infer_err_set(err, INFER_ERR_ARG,
                             "remote base_url must start with http:// or "
                             "https://");
    }
    *out = &e->base;
    return INFER_OK;
}
