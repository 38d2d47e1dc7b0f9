/*
 * test_tok.c: tokenizers against llama.cpp's test vectors (the .inp/.out
 * pairs in shared/models/tokenizers), across formats of one vocabulary,
 * round trips, the pre-tokenizer splits, Unicode classes and streaming
 * UTF-8.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "infer.h"
#include "infer_internal.h"
#include "infer_tok_internal.h"

/* ---- helpers --------------------------------------------------------------- */

static char *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf != NULL) {
        buf[n] = '\0';
        *size = (size_t)n;
    }
    return buf;
}

static const char *shared_path(char *buf, size_t cap, const char *rel)
{
    snprintf(buf, cap, "%s/%s", check_env("ARENA_SHARED", "../shared"), rel);
    return buf;
}

static struct infer_tok *load_gguf_tok(const char *rel)
{
    char path[1024];
    struct infer_gguf *g;
    struct infer_tok *t = NULL;
    struct infer_err err = {{0}};
    if (infer_gguf_open(shared_path(path, sizeof(path), rel), &g, &err))
        return NULL;
    if (infer_tok_from_gguf(g, &t, &err) != INFER_OK)
        fprintf(stderr, "%s: %s\n", rel, err.msg);
    infer_gguf_free(g);
    return t;
}

/* Encodes text (whole), into a malloc'd array; *n its length. */
static int32_t *enc(const struct infer_tok *t, const char *text, size_t len,
                    bool bos, bool special, int *n)
{
    *n = infer_tok_encode(t, text, len, bos, special, NULL, 0);
    if (*n < 0)
        return NULL;
    int32_t *ids = malloc(((size_t)*n + 1) * sizeof(*ids));
    int m = infer_tok_encode(t, text, len, bos, special, ids, *n);
    if (m != *n) {
        free(ids);
        return NULL;
    }
    return ids;
}

static bool ids_eq(const int32_t *a, int na, const int32_t *b, int nb)
{
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na * 4) == 0);
}

static void print_ids(const char *what, const int32_t *v, int n)
{
    fprintf(stderr, "  %s:", what);
    for (int i = 0; i < n; i++)
        fprintf(stderr, " %d", v[i]);
    fputc('\n', stderr);
}

/* ---- llama.cpp's test-tokenizer-0 vectors ------------------------------------ */

/* Runs every case of <vocab>.inp against <vocab>.out the way llama.cpp's
 * test-tokenizer-0 does: cases are separated by "\n__ggml_vocab_test__\n",
 * each encoded with no BOS and no special-token parsing; the .out file has
 * one line of ids per case. Returns the number of failures (-1: no files). */
static int run_vocab_cases(const struct infer_tok *t, const char *vocab,
                           int *n_cases)
{
    char p1[1024], p2[1024], rel[256];
    size_t ni, no;
    snprintf(rel, sizeof(rel), "models/tokenizers/%s.inp", vocab);
    char *inp = slurp(shared_path(p1, sizeof(p1), rel), &ni);
    snprintf(rel, sizeof(rel), "models/tokenizers/%s.out", vocab);
    char *out = slurp(shared_path(p2, sizeof(p2), rel), &no);
    if (inp == NULL || out == NULL) {
        free(inp);
        free(out);
        return -1;
    }
    static const char sep[] = "\n__ggml_vocab_test__\n";
    int fails = 0, cases = 0;
    char *ip = inp, *op = out;
    while (*ip != '\0' && *op != '\0') {
        char *end = strstr(ip, sep);
        size_t len = end ? (size_t)(end - ip) : strlen(ip);
        char *eol = strchr(op, '\n');
        if (eol != NULL)
            *eol = '\0';
        int32_t want[4096];
        int nw = 0;
        for (char *q = op, *e; nw < 4096; q = e) {
            long v = strtol(q, &e, 10);
            if (e == q)
                break;
            want[nw++] = (int32_t)v;
        }
        int ng;
        int32_t *got = enc(t, ip, len, false, false, &ng);
        cases++;
        if (got == NULL || !ids_eq(got, ng, want, nw)) {
            fails++;
            fprintf(stderr, "%s case %d: \"%.*s\"\n", vocab, cases,
                    (int)(len > 60 ? 60 : len), ip);
            print_ids("want", want, nw);
            if (got != NULL)
                print_ids("got ", got, ng);
        }
        free(got);
        if (end == NULL || eol == NULL)
            break;
        ip = end + sizeof(sep) - 1;
        op = eol + 1;
    }
    free(inp);
    free(out);
    *n_cases = cases;
    return fails;
}

static void vocab_cases(const char *vocab)
{
    char rel[256];
    snprintf(rel, sizeof(rel), "models/tokenizers/%s", vocab);
    struct infer_tok *t = load_gguf_tok(rel);
    if (t == NULL)
        check_skip("%s not loadable", rel);
    int n = 0;
    int fails = run_vocab_cases(t, vocab, &n);
    infer_tok_free(t);
    fprintf(stderr, "%s: %d of %d cases pass\n", vocab, n - fails, n);
    CHECK(fails >= 0);
    CHECK_EQ(n, 46);
    CHECK_EQ(fails, 0);
}

TEST(inp_llama_spm)
{
    vocab_cases("ggml-vocab-llama-spm.gguf");
}

TEST(inp_gpt2)
{
    vocab_cases("ggml-vocab-gpt-2.gguf");
}

TEST(inp_phi3)
{
    vocab_cases("ggml-vocab-phi-3.gguf");
}

/* The Llama 2 tokenizer in llama2.c's format must give the same ids as the
 * GGUF llama-spm vocabulary on llama.cpp's cases. */
TEST(inp_llama2c_bin)
{
    char path[1024];
    struct infer_tok *t;
    struct infer_err err = {{0}};
    int rc = infer_tok_from_llama2c(
        shared_path(path, sizeof(path),
                    "models/tokenizers/llama2-tokenizer.bin"),
        32000, &t, &err);
    if (rc != INFER_OK)
        check_skip("%s", err.msg);
    int n = 0;
    int fails = run_vocab_cases(t, "ggml-vocab-llama-spm.gguf", &n);
    infer_tok_free(t);
    fprintf(stderr, "llama2-tokenizer.bin: %d of %d cases pass\n", n - fails,
            n);
    CHECK_EQ(n, 46);
    CHECK_EQ(fails, 0);
}

CHECK_MAIN(((const struct check_test[]){
    TEST_ENTRY(inp_llama_spm),
    TEST_ENTRY(inp_gpt2),
    TEST_ENTRY(inp_phi3),
    TEST_ENTRY(inp_llama2c_bin),
}))
