/*
 * test_v1_remote.c: the remote engine (libcurl, streaming SSE) against a
 * second real process: `arena serve` serving the story model on /v1 over
 * HTTP on 127.0.0.1. Greedy text through the remote engine equals the local
 * engine's on the same file (completions and chat, with stop strings);
 * errors are clear (unknown model -> HTTP 404, connection refused after the
 * retries) and never contain the API key; cancelling a remote stream ends
 * it; concurrent remote requests all complete.
 */
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "infer.h"

extern char **environ;

#define KEY_ENV "ARENA_TEST_REMOTE_KEY"
#define KEY     "sk-test-do-not-print-3141592653"

static char model[2048], dir[1024], url[256], conn[1024], db[64];
static pid_t server;

static int sh(const char *fmt, const char *a, const char *b)
{
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), fmt, a, b);
    return system(cmd);
}

/* Starts arena serve with the story model; false (skip) if it cannot. */
static bool server_start(void)
{
    const char *bin = getenv("ARENA_BIN"), *pg = getenv("ARENA_TEST_PGCONN");
    snprintf(model, sizeof(model), "%s/models/stories260K/stories260K.gguf",
             check_env("ARENA_SHARED", "../shared"));
    if (bin == NULL || pg == NULL || access(model, R_OK) != 0 ||
        system("command -v psql >/dev/null") != 0)
        return false;
    snprintf(db, sizeof(db), "v1remote_%d", (int)getpid());
    snprintf(dir, sizeof(dir), "%s/v1remote.%d",
             check_env("ARENA_TEST_OUT", "/tmp"), (int)getpid());
    snprintf(conn, sizeof(conn), "%s dbname=%s", pg, db);
    if (sh("psql '%s' -qc 'CREATE DATABASE %s'", pg, db) != 0 ||
        sh("mkdir -p '%s/models' '%s/data'", dir, dir) != 0 ||
        sh("ln -sf '%s' '%s/models/stories260K.gguf'", model, dir) != 0)
        return false;
    char models[4200], data[4200], port_file[4200];
    snprintf(models, sizeof(models), "%s/models", dir);
    snprintf(data, sizeof(data), "%s/data", dir);
    snprintf(port_file, sizeof(port_file), "%s/port", dir);
    char *argv[] = {(char *)bin,
                    "serve",
                    "--port",
                    "0",
                    "--port-file",
                    port_file,
                    "--data-dir",
                    data,
                    "--models-dir",
                    models,
                    "--database-url",
                    conn,
                    "--access-log",
                    "off",
                    "--log-level",
                    "warn",
                    "--v1-keys", /* the remote engine must send one */
                    "sk-another-key, " KEY,
                    NULL};
    if (posix_spawn(&server, bin, NULL, NULL, argv, environ) != 0)
        return false;
    for (int i = 0; i < 600; i++) {
        FILE *f = fopen(port_file, "r");
        int port = 0;
        if (f != NULL) {
            if (fscanf(f, "%d", &port) != 1)
                port = 0;
            fclose(f);
        }
        if (port > 0) {
            snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1", port);
            return true;
        }
        if (waitpid(server, NULL, WNOHANG) == server) {
            server = 0;
            return false;
        }
        usleep(50000);
    }
    return false;
}

static void server_stop(void)
{
    if (server > 0) {
        kill(server, SIGTERM);
        waitpid(server, NULL, 0);
        server = 0;
    }
    if (db[0] != '\0')
        sh("psql '%s' -qc 'DROP DATABASE IF EXISTS %s WITH (FORCE)' "
           ">/dev/null",
           getenv("ARENA_TEST_PGCONN"), db);
    if (dir[0] != '\0')
        sh("rm -rf '%s'%s", dir, "");
}

static struct infer_engine *remote(const char *base, const char *name,
                                   int retries)
{
    struct infer_remote_opts o = {.base_url = base,
                                  .model = name,
                                  .api_key_env = KEY_ENV,
                                  .connect_timeout_ms = 2000,
                                  .timeout_ms = 60000,
                                  .retries = retries};
    struct infer_engine *e = NULL;
    struct infer_err err;
    if (infer_engine_open_remote(&o, &e, &err) != INFER_OK)
        fprintf(stderr, "remote: %s\n", err.msg);
    return e;
}

/* Runs p on e; the text into out, returns the last event kind. */
static int run(struct infer_engine *e, const struct infer_params *p, char *out,
               size_t cap, struct infer_event *last)
{
    struct infer_stream *s;
    struct infer_err err;
    if (infer_engine_submit(e, p, NULL, &s, &err) != INFER_OK) {
        fprintf(stderr, "submit: %s\n", err.msg);
        return -1;
    }
    size_t n = 0;
    int k;
    while ((k = infer_stream_next(s, -1, last)) == INFER_EV_TEXT) {
        size_t c = last->len < cap - 1 - n ? last->len : cap - 1 - n;
        memcpy(out + n, last->text, c);
        n += c;
    }
    out[n] = '\0';
    infer_stream_free(s);
    return k;
}

TEST(remote_equals_local)
{
    if (!server_start())
        check_skip("cannot start arena serve (ARENA_BIN, database, model)");
    setenv(KEY_ENV, KEY, 1);
    struct infer_engine *r = remote(url, "stories260k", 1), *l = NULL;
    struct infer_engine_opts o;
    infer_engine_opts_default(&o);
    o.max_batch = 8;
    o.threads = 1;
    struct infer_err err;
    CHECK(r != NULL);
    CHECK_EQ(infer_engine_open_local(model, &o, &l, &err), INFER_OK);
    char a[4096], b[4096];
    struct infer_event ea, eb;
    struct infer_params p = {.prompt = "Once upon a time", .max_tokens = 24};
    CHECK_EQ(run(l, &p, a, sizeof(a), &ea), INFER_EV_DONE);
    CHECK_EQ(run(r, &p, b, sizeof(b), &eb), INFER_EV_DONE);
    CHECK_STREQ(a, b);
    CHECK(strlen(a) > 10);
    CHECK_EQ(eb.stats.completion_tokens, ea.stats.completion_tokens);
    CHECK_EQ(eb.stats.prompt_tokens, ea.stats.prompt_tokens);
    CHECK_STREQ(eb.stats.finish_reason, ea.stats.finish_reason);
    char want[4096];
    memcpy(want, a, sizeof(want));
    CHECK(eb.stats.ttft_ms > 0);
    /* chat, with a stop string */
    struct infer_chat_msg m[] = {{"user", "Tell me about a cat."}};
    const char *stop[] = {"."};
    struct infer_params pc = {
        .msgs = m, .n_msgs = 1, .max_tokens = 20, .stop = stop, .n_stop = 1};
    CHECK_EQ(run(l, &pc, a, sizeof(a), &ea), INFER_EV_DONE);
    CHECK_EQ(run(r, &pc, b, sizeof(b), &eb), INFER_EV_DONE);
    CHECK_STREQ(a, b);
    /* the penalties reach the remote model: the same other text */
    struct infer_params pp = {.prompt = "Once upon a time",
                              .max_tokens = 48,
                              .presence_penalty = 0.5f,
                              .frequency_penalty = 1};
    CHECK_EQ(run(l, &pp, a, sizeof(a), &ea), INFER_EV_DONE);
    CHECK_EQ(run(r, &pp, b, sizeof(b), &eb), INFER_EV_DONE);
    CHECK_STREQ(a, b);
    pp.presence_penalty = pp.frequency_penalty = 0;
    CHECK_EQ(run(l, &pp, b, sizeof(b), &eb), INFER_EV_DONE);
    CHECK(strcmp(a, b) != 0); /* the penalties changed the text */
    /* and logit_bias: tokens 300 to 399 banned, one forced at times */
    struct infer_logit_bias lb[100];
    for (int i = 0; i < 100; i++)
        lb[i] = (struct infer_logit_bias){300 + i, i == 17 ? 4.0f : -100};
    pp.logit_bias = lb;
    pp.n_logit_bias = 100;
    CHECK_EQ(run(l, &pp, a, sizeof(a), &ea), INFER_EV_DONE);
    CHECK_EQ(run(r, &pp, b, sizeof(b), &eb), INFER_EV_DONE);
    CHECK_STREQ(a, b);
    CHECK(strcmp(a, want) != 0 && strlen(a) > 0);
    lb[0].token = 1 << 20; /* not in the vocabulary: the remote says 400 */
    struct infer_stream *bad = NULL;
    pp.logprobs = true; /* not forwarded: refused at once */
    CHECK_EQ(infer_engine_submit(r, &pp, NULL, &bad, &err), INFER_ERR_ARG);
    CHECK(strstr(err.msg, "logprobs") != NULL);
    pp.logprobs = false;
    CHECK_EQ(infer_engine_submit(r, &pp, NULL, &bad, &err), INFER_OK);
    struct infer_event ev;
    int rk;
    while ((rk = infer_stream_next(bad, -1, &ev)) == INFER_EV_TEXT)
        ;
    CHECK_EQ(rk, INFER_EV_ERROR);
    CHECK(strstr(ev.error, "vocabulary") != NULL);
    infer_stream_free(bad);
    /* concurrent remote requests */
    struct infer_stream *s[8];
    for (int i = 0; i < 8; i++)
        CHECK_EQ(infer_engine_submit(r, &p, NULL, &s[i], &err), INFER_OK);
    for (int i = 0; i < 8; i++) {
        struct infer_event ev;
        int k;
        char t[4096];
        size_t n = 0;
        while ((k = infer_stream_next(s[i], -1, &ev)) == INFER_EV_TEXT) {
            memcpy(t + n, ev.text, ev.len);
            n += ev.len;
        }
        t[n] = '\0';
        CHECK_EQ(k, INFER_EV_DONE);
        CHECK_STREQ(t, want); /* greedy: the same as local */
        infer_stream_free(s[i]);
    }
    infer_engine_free(l);
    infer_engine_free(r);
}

TEST(remote_errors)
{
    if (server == 0 && !server_start())
        check_skip("cannot start arena serve");
    setenv(KEY_ENV, KEY, 1);
    char out[4096];
    struct infer_event ev;
    struct infer_params p = {.prompt = "Once", .max_tokens = 4};
    /* unknown model: the server's 404 comes back as a clear error */
    struct infer_engine *r = remote(url, "no-such-model", 2);
    CHECK(r != NULL);
    CHECK_EQ(run(r, &p, out, sizeof(out), &ev), INFER_EV_ERROR);
    fprintf(stderr, "error: %s\n", ev.error);
    CHECK(strstr(ev.error, "404") != NULL);
    CHECK(strstr(ev.error, KEY) == NULL);
    infer_engine_free(r);
    /* a key the server does not know: its 401 comes back, no text */
    setenv(KEY_ENV, "sk-wrong-key-2718281828", 1);
    r = remote(url, "stories260k", 1);
    CHECK_EQ(run(r, &p, out, sizeof(out), &ev), INFER_EV_ERROR);
    fprintf(stderr, "error: %s\n", ev.error);
    CHECK(strstr(ev.error, "401") != NULL);
    CHECK(strstr(ev.error, "2718281828") == NULL);
    CHECK_STREQ(out, "");
    infer_engine_free(r);
    unsetenv(KEY_ENV); /* no key at all: 401 too */
    r = remote(url, "stories260k", 0);
    CHECK_EQ(run(r, &p, out, sizeof(out), &ev), INFER_EV_ERROR);
    CHECK(strstr(ev.error, "401") != NULL);
    infer_engine_free(r);
    setenv(KEY_ENV, KEY, 1);
    /* nothing listening: retried, then an error naming the URL */
    r = remote("http://127.0.0.1:1/v1", "x", 2);
    CHECK_EQ(run(r, &p, out, sizeof(out), &ev), INFER_EV_ERROR);
    fprintf(stderr, "error: %s\n", ev.error);
    CHECK(strstr(ev.error, "127.0.0.1:1") != NULL);
    CHECK(strstr(ev.error, KEY) == NULL);
    infer_engine_free(r);
    /* a bad base URL is refused at open */
    struct infer_remote_opts bad = {.base_url = "ftp://x", .model = "m"};
    struct infer_err err;
    CHECK_EQ(infer_engine_open_remote(&bad, &r, &err), INFER_ERR_ARG);
    /* cancel a long remote stream after its first text */
    r = remote(url, "stories260k", 0);
    struct infer_params pl = {.prompt = "Once upon a time", .max_tokens = 400};
    struct infer_stream *s;
    CHECK_EQ(infer_engine_submit(r, &pl, NULL, &s, &err), INFER_OK);
    CHECK_EQ(infer_stream_next(s, -1, &ev), INFER_EV_TEXT);
    infer_stream_cancel(s);
    int k;
    while ((k = infer_stream_next(s, 5000, &ev)) == INFER_EV_TEXT)
        ;
    CHECK_EQ(k, INFER_EV_ERROR); /* "cancelled" */
    infer_stream_free(s);
    infer_engine_free(r); /* returns: the request thread is gone */
}

static const struct check_test tests[] = {
    TEST_ENTRY(remote_equals_local),
    TEST_ENTRY(remote_errors),
};

int main(int argc, char **argv)
{
    int rc = check_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
    server_stop();
    return rc;
}
