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

/* ---- helpers ---------------------------------------------------------------
 */

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

/* ---- llama.cpp's test-tokenizer-0 vectors
 * ------------------------------------ */

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

/* ---- Hugging Face tokenizer.json --------------------------------------------
 */

/* Reference ids from Hugging Face's own tokenizer.json implementation
 * (@huggingface/tokenizers 0.2.0, Tokenizer.encode with add_special_tokens
 * true for TinyStories-656K, whose post-processor adds <|start_story|>, and
 * false for SmolLM2), on texts chosen to cover words, numbers, whitespace
 * runs, contractions, emoji, CJK, combining marks and added tokens. */
static const struct {
    const char *text;
    const char *tinystories; /* ids, space-separated */
    const char *smollm2;
} hf_ref[] = {
    {"Once upon a time, there was a little girl named Lily.",
     "1 80 147 201 282 215 286 598 629 10",
     "6403 1980 253 655 28 665 436 253 1838 8180 3365 14176 30"},
    {" Hello world", "1 80 80 1288 139 410 555", "38699 905"},
    {"Hello   world  ", "1 80 1288 139 80 80 410 180 80", "19556 256 905 256"},
    {"She said: \"I can't, we'll, they're, I've, he'd, I'm!\"",
     "1 80 892 174 1608 5 276 687 7 1689 1140 7 113 94 131 77 7 123 94 "
     "34 7 74 215 109 7 56 94 34 7 65 4 5",
     "8113 1137 42 476 57 416 982 28 392 3060 28 502 2316 28 339 3543 "
     "28 384 6737 28 339 5248 6653"},
    {"The year 2024 had 365 days; pi is 3.14159.",
     "1 80 247 77 57 547 13 11 13 15 80 198 14 17 16 80 165 71 22 80 "
     "430 80 124 14 10 12 15 12 16 20 10",
     "504 713 216 34 32 34 36 761 216 35 38 37 2009 43 16916 314 216 35 "
     "30 33 36 33 37 41 30"},
    {"1234567890 numbers 42x 7th",
     "1 80 12 13 14 15 16 17 18 19 20 11 80 66 359 934 89 15 13 1841 18 83",
     "33 34 35 36 37 38 39 40 41 32 2966 216 36 34 104 216 39 373"},
    {"  leading spaces and trailing tabs\t\t",
     "1 80 80 80 656 56 149 415 53 55 791 925 129 149 292 54 71 0",
     "216 2899 5600 284 35079 29416 1656"},
    {"line one", "1 80 64 1780 719", "1311 582"},
    {"line two", "1 80 64 1780 865 67", "1311 827"},
    {"line four", "1 80 64 1780 58 1601", "1311 1876"},
    {"Mixed CASE 'S 'LL 'Re",
     "1 80 460 76 92 28 26 44 30 80 7 44 80 7 37 37 80 7 43 57",
     "61 13609 340 13108 637 67 637 16421 637 3733"},
    {"emoji 🦙🚀 😶‍🌫️ ✅ and flags 🇫🇷",
     "1 80 57 605 62 2024 0 80 0 80 0 100 58 291 59 89 0",
     "391 33777 15107 116 243 10813 244 218 40303 131 321 231 10813 230 "
     "121 31752 4636 246 223 284 13198 15107 225 121 10813 225 132"},
    {"中文字符测试，还有日本語のテキストと한국어.", "1 80 0 10",
     "28589 29184 36518 40562 116 43222 229 16313 239 12831 18276 242 "
     "30746 23274 115 40993 179 120 248 26453 11100 224 10391 251 10391 "
     "134 11100 226 7365 118 33085 246 181 130 251 183 240 129 30"},
    {"combining: é (e + U+0301), ñ, Å, ǅ",
     "1 80 466 54 96 176 1608 0 80 0 81 0 80 46 0 11 14 11 12 0 94 0 94 "
     "0 94 0",
     "14558 1294 42 26411 365 85 1232 514 27 32 35 32 33 643 5549 126 "
     "28 5549 223 28 216 146 223"},
    {"Ελληνικά и кириллица, עברית, العربية ١٢٣",
     "1 80 0 80 0 80 0 94 0 94 0 80 0",
     "153 239 17162 17162 25723 11517 12001 21118 26112 29972 31338 "
     "7872 46879 12681 35420 32233 6511 28 12960 112 37657 30825 28532 "
     "120 28 27819 34966 20602 31462 23339 43463 16936 111 164 112 164 "
     "113"},
    {"def f(x):\n    return x ** 2  # code",
     "1 80 781 511 58 0 76 0 21 3 80 80 80 80 123 620 754 1841 0 80 13 "
     "80 80 0 80 321 781",
     "1604 275 24 104 727 472 1003 1792 1903 216 34 216 907 2909"},
    {"<|im_start|>user", "1 211 110 52 166 210 823 91", "1 4093"},
    {"hi<|im_end|>", "1 141 61 208 110 52 183 210", "6004 2"},
    {" !!! ??? ... --- ___ *** ### @@@",
     "1 80 80 4 4 271 25 25 1275 10 10 84 9 9 9 80 52 52 52 80 0 80 0 80 0",
     "5728 10095 9148 16693 4563 21749 36670 33117 20749 3394 41407"},
    {"tab\tseparated\tvalues", "1 80 292 54 0 178 335 232 192 0 74 383 73 233",
     "15999 197 19509 483 197 6347"},
    {"x", "1 80 76", "104"},
    {"   ", "1 80 80 80 80", "333"},
    {"a  b   c    d", "1 104 80 1927 80 80 55 80 80 80 80 56",
     "81 216 278 256 265 333 287"},
    {"Tiếng Việt có dấu", "1 80 45 61 0 66 112 47 61 0 86 55 0 80 56 0 73",
     "44862 31604 140 863 10506 25275 225 100 265 7342 287 31604 115 101"},
    {"ⅫⅣ ½ ¼ ² ³ ₁", "1 80 0 80 0 80 0 80 0 80 0 80 0",
     "173 223 121 173 223 113 3351 138 3351 137 3351 127 3351 128 4636 "
     "220 219"},

};

static int parse_ids(const char *s, int32_t *v, int cap)
{
    int n = 0;
    for (char *e; n < cap; s = e) {
        long x = strtol(s, &e, 10);
        if (e == s)
            break;
        v[n++] = (int32_t)x;
    }
    return n;
}

static void hf_cases(const struct infer_tok *t, bool tiny)
{
    int fails = 0;
    size_t n = sizeof(hf_ref) / sizeof(hf_ref[0]);
    for (size_t i = 0; i < n; i++) {
        int32_t want[512];
        int nw = parse_ids(tiny ? hf_ref[i].tinystories : hf_ref[i].smollm2,
                           want, 512);
        int ng;
        int32_t *got =
            enc(t, hf_ref[i].text, strlen(hf_ref[i].text), tiny, true, &ng);
        if (got == NULL || !ids_eq(got, ng, want, nw)) {
            fails++;
            fprintf(stderr, "case %zu: \"%s\"\n", i, hf_ref[i].text);
            print_ids("want", want, nw);
            if (got != NULL)
                print_ids("got ", got, ng);
        }
        free(got);
    }
    fprintf(stderr, "%s: %zu of %zu cases pass\n",
            tiny ? "tinystories" : "smollm2", n - (size_t)fails, n);
    CHECK_EQ(fails, 0);
}

/* TinyStories-656K's GGUF vocabulary has no merge data, so its tokenizer is
 * the tokenizer.json beside it, checked against the GGUF token by token. */
TEST(hf_tinystories)
{
    char path[1024];
    struct infer_tok *t;
    struct infer_err err = {{0}};
    const char *m = "models/tinystories-656K/TinyStories-656K-F16.gguf";
    if (infer_tok_load_for_model(shared_path(path, sizeof(path), m), &t,
                                 &err) != INFER_OK)
        check_skip("%s", err.msg);
    CHECK_EQ(infer_tok_n_vocab(t), 2048);
    CHECK_EQ(infer_tok_bos(t), 1);
    CHECK_EQ(infer_tok_eos(t), 2);
    CHECK(infer_tok_is_eog(t, 2));
    CHECK(t->hf_bpe); /* not the flat-score GGUF vocabulary */
    hf_cases(t, true);
    infer_tok_free(t);
    /* The Q8_0 file carries the same vocabulary. */
    m = "models/tinystories-656K/TinyStories-656K-Q8_0.gguf";
    CHECK_EQ(
        infer_tok_load_for_model(shared_path(path, sizeof(path), m), &t, &err),
        INFER_OK);
    CHECK(t->hf_bpe);
    infer_tok_free(t);
}

TEST(hf_smollm2)
{
    char path[1024];
    struct infer_tok *t;
    struct infer_err err = {{0}};
    const char *m = "models/tokenizers/smollm2-tokenizer.json";
    if (infer_tok_from_hf_json(shared_path(path, sizeof(path), m), &t, &err) !=
        INFER_OK)
        check_skip("%s", err.msg);
    CHECK_EQ(infer_tok_n_vocab(t), 49152);
    CHECK(infer_tok_is_eog(t, 0)); /* <|endoftext|> */
    CHECK(infer_tok_is_eog(t, 2)); /* <|im_end|> */
    CHECK(!infer_tok_is_eog(t, 1));
    hf_cases(t, false);
    /* Without parse_special, a control token written in the text is text. */
    int n;
    int32_t *ids = enc(t, "<|im_end|>", 10, false, false, &n);
    CHECK(ids != NULL && n > 1 && ids[0] != 2);
    free(ids);
    infer_tok_free(t);
}

/* ---- one vocabulary in two formats ------------------------------------------
 */

static const char *const samples[] = {
    "Once upon a time, there was a little girl named Lily.",
    "She liked to play outside in the park with her dog Max.",
    " One day, they found a big red ball!\n\"Wow,\" said Tom.",
    "numbers 12 345 and symbols #$%& ~ ^",
    "caf\xc3\xa9 na\xc3\xafve \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\xa6\x99",
    "   spaces   and\ttabs\n\n",
    "",
};

/* stories260K: llama2.c's tok512.bin and the GGUF's vocabulary agree. */
TEST(stories260k_formats)
{
    char path[1024];
    struct infer_tok *a = load_gguf_tok("models/stories260K/stories260K.gguf");
    struct infer_tok *b = NULL;
    struct infer_err err = {{0}};
    if (a == NULL)
        check_skip("stories260K.gguf not loadable");
    int rc = infer_tok_load_for_model(
        shared_path(path, sizeof(path), "models/stories260K/stories260K.bin"),
        &b, &err);
    if (rc != INFER_OK)
        fprintf(stderr, "%s\n", err.msg);
    CHECK_EQ(rc, INFER_OK);
    CHECK_EQ(infer_tok_n_vocab(b), 512);
    for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        int na, nb;
        int32_t *x = enc(a, samples[i], strlen(samples[i]), true, false, &na);
        int32_t *y = enc(b, samples[i], strlen(samples[i]), true, false, &nb);
        bool same = x != NULL && y != NULL && ids_eq(x, na, y, nb);
        if (!same) {
            fprintf(stderr, "sample %zu differs\n", i);
            print_ids("gguf", x, x ? na : 0);
            print_ids("bin ", y, y ? nb : 0);
        }
        free(x);
        free(y);
        CHECK(same);
    }
    /* llama2.c: BOS, then the dummy-prefixed text. */
    int n;
    int32_t *ids = enc(b, "Hello", 5, true, false, &n);
    CHECK(ids != NULL && n >= 2 && ids[0] == 1);
    free(ids);
    infer_tok_free(a);
    infer_tok_free(b);
}

/* ---- round trips -----------------------------------------------------------
 */

struct rt_text {
    const char *s;
    size_t len;
};

#define RT(lit)                                                                \
    {                                                                          \
        lit, sizeof(lit) - 1                                                   \
    }
static const struct rt_text rt_texts[] = {
    RT("Hello world"),
    RT("  two leading, two trailing  "),
    RT("\n\nnewlines\n\n\n"),
    RT("tabs\t\there\r\n"),
    RT("emoji \xf0\x9f\xa6\x99\xf0\x9f\x9a\x80 "
       "\xf0\x9f\x98\xb6\xe2\x80\x8d\xf0\x9f\x8c\xab\xef\xb8\x8f \xe2\x9c\x85"),
    RT("CJK \xe4\xb8\xad\xe6\x96\x87\xe5\xad\x97 \xe6\x97\xa5\xe6\x9c\xac "
       "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4"),
    RT("combining e\xcc\x81 a\xcc\x88 \xe0\xa4\x95\xe0\xa5\x8d\xe0\xa4\xb7"),
    RT("invalid \xff\xfe bytes"),
    RT("truncated \xe4\xb8"),
    RT("surrogate \xed\xa0\x80 overlong \xc0\xaf"),
    RT("NUL\0inside"),
    RT("x"),
    RT(" "),
    RT("'s 'LL 're I'M 1234567 3.14 --- ..."),
};

/* decode(encode(x)) == x for a text; lossless unless ascii_only. */
static bool round_trip(const struct infer_tok *t, const char *s, size_t len)
{
    int n;
    int32_t *ids = enc(t, s, len, true, false, &n);
    if (ids == NULL)
        return false;
    char *out = malloc(len * 4 + 64);
    size_t m = infer_tok_decode(t, ids, (size_t)n, false, out, len * 4 + 64);
    bool ok = m == len && memcmp(out, s, len) == 0;
    if (!ok)
        fprintf(stderr, "round trip failed: \"%.*s\" -> \"%.*s\"\n", (int)len,
                s, (int)(m < len * 4 + 64 ? m : 0), out);
    free(out);
    free(ids);
    return ok;
}

/* Random byte strings: ASCII, multi-byte characters and stray bytes. */
static size_t random_text(uint32_t *state, char *buf, size_t cap)
{
    static const char *const pieces[] = {
        "a",    "Z",    " ",    "  ",       "\n",           "\t",
        "7",    "'s",   "!",    "\xc3\xa9", "\xe4\xb8\xad", "\xf0\x9f\xa6\x99",
        "\xff", "\x80", "\xe4", "\xcc\x81", "the",          " of",
    };
    size_t n = 0;
    *state = *state * 1664525u + 1013904223u;
    size_t k = (*state >> 24) % 24;
    for (size_t i = 0; i < k; i++) {
        *state = *state * 1664525u + 1013904223u;
        const char *p =
            pieces[(*state >> 16) % (sizeof(pieces) / sizeof(pieces[0]))];
        size_t l = strlen(p);
        if (n + l > cap)
            break;
        memcpy(buf + n, p, l);
        n += l;
    }
    return n;
}

static bool valid_utf8(const char *s, size_t n);

/* Every text round-trips; where the vocabulary lacks some bytes' tokens
 * (SmolLM2 has none for 0xFE/0xFF, which valid UTF-8 never holds, and Hugging
 * Face drops them too) invalid UTF-8 need only encode without harm. */
static void round_trips(struct infer_tok *t, const char *name, bool all_bytes)
{
    if (t == NULL)
        check_skip("%s not loadable", name);
    int fails = 0, n_texts = 0;
    for (size_t i = 0; i < sizeof(rt_texts) / sizeof(rt_texts[0]); i++) {
        const struct rt_text *r = &rt_texts[i];
        if (!all_bytes && !valid_utf8(r->s, r->len)) {
            fails += infer_tok_encode(t, r->s, r->len, 1, 0, NULL, 0) < 0;
            continue;
        }
        n_texts++;
        fails += !round_trip(t, r->s, r->len);
    }
    uint32_t state = 12345;
    for (int i = 0; i < 300; i++) {
        char buf[128];
        size_t n = random_text(&state, buf, sizeof(buf));
        if (!all_bytes && !valid_utf8(buf, n)) {
            fails += infer_tok_encode(t, buf, n, 1, 0, NULL, 0) < 0;
            continue;
        }
        n_texts++;
        fails += !round_trip(t, buf, n);
    }
    infer_tok_free(t);
    fprintf(stderr, "%s: %d texts round-trip exactly\n", name, n_texts);
    CHECK_EQ(fails, 0);
}

TEST(round_trip_llama_spm)
{
    round_trips(load_gguf_tok("models/tokenizers/ggml-vocab-llama-spm.gguf"),
                "llama-spm", true);
}

TEST(round_trip_gpt2)
{
    round_trips(load_gguf_tok("models/tokenizers/ggml-vocab-gpt-2.gguf"),
                "gpt-2", true);
}

TEST(round_trip_phi3)
{
    round_trips(load_gguf_tok("models/tokenizers/ggml-vocab-phi-3.gguf"),
                "phi-3", true);
}

TEST(round_trip_llama2c)
{
    char path[1024];
    struct infer_tok *t = NULL;
    struct infer_err err = {{0}};
    infer_tok_from_llama2c(
        shared_path(path, sizeof(path),
                    "models/tokenizers/llama2-tokenizer.bin"),
        32000, &t, &err);
    round_trips(t, "llama2-tokenizer.bin", true);
}

TEST(round_trip_tok512)
{
    char path[1024];
    struct infer_tok *t = NULL;
    struct infer_err err = {{0}};
    infer_tok_from_llama2c(
        shared_path(path, sizeof(path), "models/stories260K/tok512.bin"), 512,
        &t, &err);
    round_trips(t, "tok512.bin", true);
}

TEST(round_trip_smollm2)
{
    char path[1024];
    struct infer_tok *t = NULL;
    struct infer_err err = {{0}};
    infer_tok_from_hf_json(
        shared_path(path, sizeof(path),
                    "models/tokenizers/smollm2-tokenizer.json"),
        &t, &err);
    round_trips(t, "smollm2-tokenizer.json", false);
}

/* TinyStories' vocabulary has no byte tokens: unknown characters become
 * <unk>, so only its own alphabet round-trips. */
TEST(round_trip_tinystories)
{
    char path[1024];
    struct infer_tok *t = NULL;
    struct infer_err err = {{0}};
    infer_tok_from_hf_json(
        shared_path(path, sizeof(path),
                    "models/tinystories-656K/tokenizer.json"),
        &t, &err);
    if (t == NULL)
        check_skip("%s", err.msg);
    static const char *const texts[] = {
        "Once upon a time, there was a little girl named Lily.",
        "  Two spaces, then \"quotes\" and 'single' ones!\nNew line?",
        "Tom had 3 apples; Sue had 12.",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        CHECK(round_trip(t, texts[i], strlen(texts[i])));
    int n;
    int32_t *ids = enc(t, "\xe4\xb8\xad", 3, false, false, &n);
    CHECK(ids != NULL);
    bool has_unk = false;
    for (int i = 0; i < n; i++)
        has_unk |= ids[i] == 0;
    CHECK(has_unk);
    free(ids);
    infer_tok_free(t);
}

/* ---- encode's contract -----------------------------------------------------
 */

TEST(encode_api)
{
    struct infer_tok *t =
        load_gguf_tok("models/tokenizers/ggml-vocab-llama-spm.gguf");
    if (t == NULL)
        check_skip("llama-spm not loadable");
    int32_t ids[8] = {-7, -7, -7, -7, -7, -7, -7, -7};
    /* BOS where the vocabulary wants it; " Hello world" needs 3 more. */
    CHECK_EQ(infer_tok_encode(t, " Hello world", 12, true, false, ids, 2), 4);
    CHECK_EQ(ids[0], 1);
    CHECK_EQ(ids[1], 29871);
    CHECK_EQ(ids[2], -7); /* nothing past cap */
    CHECK_EQ(infer_tok_encode(t, NULL, 0, false, false, NULL, 0), 0);
    CHECK_EQ(infer_tok_encode(t, NULL, 0, true, false, ids, 8), 1);
    CHECK_EQ(infer_tok_encode(t, "x", 1, false, false, ids, -1), INFER_ERR_ARG);
    /* A rendered template's own BOS is not doubled, and is parsed only when
     * asked to. */
    CHECK_EQ(infer_tok_encode(t, "<s>Hello", 8, true, true, ids, 8), 2);
    CHECK_EQ(ids[0], 1);
    CHECK_EQ(ids[1], 15043);
    int n = infer_tok_encode(t, "<s>Hello", 8, true, false, ids, 8);
    CHECK(n > 2);
    CHECK_EQ(ids[0], 1);
    CHECK(ids[1] != 1);
    /* Pieces: byte tokens resolve to their byte, control tokens hide. */
    size_t len;
    const char *p = infer_tok_piece(t, 13, false, &len); /* <0x0A> */
    CHECK(p != NULL && len == 1 && p[0] == '\n');
    p = infer_tok_piece(t, 15043, false, &len); /* ▁Hello */
    CHECK(p != NULL && len == 6 && memcmp(p, " Hello", 6) == 0);
    p = infer_tok_piece(t, 1, false, &len);
    CHECK(p != NULL && len == 0);
    p = infer_tok_piece(t, 1, true, &len);
    CHECK(p != NULL && len == 3 && memcmp(p, "<s>", 3) == 0);
    CHECK(infer_tok_piece(t, 32000, false, &len) == NULL);
    CHECK(infer_tok_piece(t, -1, false, &len) == NULL);
    CHECK(infer_tok_is_eog(t, 2));
    CHECK(!infer_tok_is_eog(t, 1));
    CHECK(!infer_tok_is_eog(t, 99999));
    infer_tok_free(t);

    t = load_gguf_tok("models/tokenizers/ggml-vocab-phi-3.gguf");
    CHECK(t != NULL);
    CHECK(infer_tok_is_eog(t, 32000));  /* <|endoftext|> */
    CHECK(infer_tok_is_eog(t, 32007));  /* <|end|> */
    CHECK(!infer_tok_is_eog(t, 32010)); /* <|user|> */
    n = infer_tok_encode(t, "<|user|>\nHi<|end|>\n<|assistant|>\n", 34, true,
                         true, ids, 8);
    CHECK(n >= 6);
    CHECK_EQ(ids[0], 1);
    CHECK_EQ(ids[1], 32010);
    infer_tok_free(t);
}

static void bad_files(void)
{
    struct infer_tok *t = (struct infer_tok *)1;
    struct infer_err err = {{0}};
    CHECK_EQ(infer_tok_from_llama2c("/nonexistent/tokenizer.bin", 10, &t, &err),
             INFER_ERR_IO);
    CHECK(t == NULL);
    CHECK(strstr(err.msg, "nonexistent") != NULL);
    unsigned char short_bin[] = {16, 0, 0, 0, 0, 0, 0, 0, 50, 0, 0, 0, 'a'};
    CHECK_EQ(
        infer_tok_from_llama2c_mem(short_bin, sizeof(short_bin), 4, &t, &err),
        INFER_ERR_FORMAT);
    CHECK(strstr(err.msg, "token 0") != NULL);
    const char *js = "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}";
    CHECK_EQ(infer_tok_from_hf_json_mem(js, strlen(js), &t, &err),
             INFER_ERR_UNSUPPORTED);
    js = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}}}";
    CHECK_EQ(infer_tok_from_hf_json_mem(js, strlen(js), &t, &err),
             INFER_ERR_FORMAT);
    js = "{\"model\": {\"type\": \"BPE\"";
    CHECK_EQ(infer_tok_from_hf_json_mem(js, strlen(js), &t, &err),
             INFER_ERR_FORMAT);
    /* Ids no entry names (holes) load as empty unused tokens: the fuzzer
     * once found the pieces' buffer one byte short per hole. */
    js = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, "
         "\"b\": 40}}}";
    CHECK_EQ(infer_tok_from_hf_json_mem(js, strlen(js), &t, &err), INFER_OK);
    CHECK_EQ(infer_tok_n_vocab(t), 41);
    int32_t two[2];
    CHECK_EQ(infer_tok_encode(t, "ab", 2, false, false, two, 2), 2);
    CHECK_EQ(two[1], 40);
    infer_tok_free(t);
    /* A small valid one: merges in both spellings. */
    js = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, "
         "\"ab\": 2, \"abb\": 3}, \"merges\": [\"a b\", [\"ab\", \"b\"]]}}";
    CHECK_EQ(infer_tok_from_hf_json_mem(js, strlen(js), &t, &err), INFER_OK);
    int32_t ids[4];
    CHECK_EQ(infer_tok_encode(t, "abbab", 5, false, false, ids, 4), 2);
    CHECK_EQ(ids[0], 3);
    CHECK_EQ(ids[1], 2);
    infer_tok_free(t);
}

TEST(loader_errors)
{
    bad_files();
}

/* ---- pre-tokenizers and Unicode classes
 * -------------------------------------- */

struct words {
    const char *text;
    char out[512]; /* words joined by '|' */
    size_t n;
};

static int add_word(void *user, size_t off, size_t len)
{
    struct words *w = user;
    if (w->n > 0 && w->n < sizeof(w->out) - 1)
        w->out[w->n++] = '|';
    for (size_t i = 0; i < len && w->n < sizeof(w->out) - 1; i++)
        w->out[w->n++] = w->text[off + i];
    w->out[w->n] = '\0';
    return 0;
}

static const char *split(enum infer_tok_pre pre, const char *text,
                         struct words *w)
{
    w->text = text;
    w->n = 0;
    w->out[0] = '\0';
    infer_tok_pre_split(pre, text, strlen(text), add_word, w);
    return w->out;
}

TEST(pre_tokenizers)
{
    struct words w;
    const char *s = "Hello world  foo's 123abc\n\n";
    CHECK_STREQ(split(INFER_TOK_PRE_GPT2, s, &w),
                "Hello| world| | foo|'s| 123|abc|\n\n");
    CHECK_STREQ(split(INFER_TOK_PRE_LLAMA3, s, &w),
                "Hello| world| | foo|'s| |123|abc|\n\n");
    CHECK_STREQ(split(INFER_TOK_PRE_LLAMA3, "1234567", &w), "123|456|7");
    CHECK_STREQ(split(INFER_TOK_PRE_QWEN2, "1234", &w), "1|2|3|4");
    CHECK_STREQ(split(INFER_TOK_PRE_LLAMA3, "Hello,\n\n  world!!!\n", &w),
                "Hello|,\n\n| | world|!!!\n");
    CHECK_STREQ(split(INFER_TOK_PRE_LLAMA3, "I'M (fine)", &w),
                "I|'M| (|fine|)");
    CHECK_STREQ(split(INFER_TOK_PRE_GPT2, "I'M", &w), "I|'|M");
    CHECK_STREQ(split(INFER_TOK_PRE_SMOLLM, "abc123 4", &w), "abc|1|2|3| |4");
    CHECK_STREQ(split(INFER_TOK_PRE_GPT2, "\xd0\xb6\xd0\xb8 \xe4\xb8\xad", &w),
                "\xd0\xb6\xd0\xb8| \xe4\xb8\xad");
    CHECK_STREQ(split(INFER_TOK_PRE_NONE, "a b", &w), "a b");
}

TEST(unicode_classes)
{
    static const uint32_t letters[] = {'a',    'Z',    0xE9,   0x436,
                                       0x4E2D, 0x1780, 0x1C5,  0x2B0,
                                       0x5D0,  0x627,  0xAC00, 0x20000};
    static const uint32_t not_letters[] = {'1',     ' ',    '!',   0x301,
                                           0x1F999, 0xFFFD, 0x660, 0xBD};
    static const uint32_t numbers[] = {'0', 0x661, 0xBD, 0x216B, 0xB2, 0x2081};
    for (size_t i = 0; i < sizeof(letters) / sizeof(letters[0]); i++)
        CHECK(infer_tok_is_letter(letters[i]));
    for (size_t i = 0; i < sizeof(not_letters) / sizeof(not_letters[0]); i++)
        CHECK(!infer_tok_is_letter(not_letters[i]));
    for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++)
        CHECK(infer_tok_is_number(numbers[i]));
    CHECK(!infer_tok_is_number('a'));
    CHECK(infer_tok_is_mark(0x301));
    CHECK(infer_tok_is_mark(0x94D));
    CHECK(!infer_tok_is_mark('a'));
    CHECK(infer_tok_is_space(' ') && infer_tok_is_space('\n'));
    CHECK(infer_tok_is_space(0xA0) && infer_tok_is_space(0x3000));
    CHECK(!infer_tok_is_space(0x1C) && !infer_tok_is_space(0x200B));
    /* The tables are sorted and disjoint, so the binary search is valid. */
    for (size_t i = 1; i < infer_tok_uni_letter_n; i++)
        CHECK(infer_tok_uni_letter[i][0] > infer_tok_uni_letter[i - 1][1]);
    for (size_t i = 1; i < infer_tok_uni_number_n; i++)
        CHECK(infer_tok_uni_number[i][0] > infer_tok_uni_number[i - 1][1]);
}

/* ---- streaming UTF-8
 * ---------------------------------------------------------- */

/* Valid UTF-8 by the strict rules (what the stream must emit). */
static bool valid_utf8(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = infer_tok_utf8_next(s + i, n - i, &cp);
        if (cp == 0xFFFD && k == 1)
            return false;
        i += (size_t)k;
    }
    return true;
}

TEST(utf8_stream)
{
    const char text[] =
        "h\xc3\xa9llo \xf0\x9f\xa6\x99 \xe4\xb8\x96\xe7\x95\x8c";
    size_t len = sizeof(text) - 1;
    /* Byte by byte: every output is whole characters, and all of it is the
     * input. */
    struct infer_utf8 st = {{0}, 0};
    char out[256];
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        size_t k = infer_utf8_push(&st, text + i, 1, out + n, 16);
        CHECK(valid_utf8(out + n, k));
        n += k;
    }
    n += infer_utf8_flush(&st, out + n, 16);
    CHECK_EQ(n, len);
    CHECK(memcmp(out, text, len) == 0);
    /* Split at every point into two pushes. */
    for (size_t cut = 0; cut <= len; cut++) {
        struct infer_utf8 s2 = {{0}, 0};
        size_t m = infer_utf8_push(&s2, text, cut, out, sizeof(out));
        CHECK(valid_utf8(out, m));
        m += infer_utf8_push(&s2, text + cut, len - cut, out + m, 64);
        m += infer_utf8_flush(&s2, out + m, 8);
        CHECK_EQ(m, len);
        CHECK(memcmp(out, text, len) == 0);
    }
    static const struct {
        const char *in, *want;
    } bad[] = {
        {"\xff", "\xef\xbf\xbd"},
        {"a\xe4\xb8z", "a\xef\xbf\xbdz"},
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xf0\x9f\xa6", "\xef\xbf\xbd"}, /* cut short: flush */
        {"\x80z", "\xef\xbf\xbdz"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct infer_utf8 s3 = {{0}, 0};
        size_t m = infer_utf8_push(&s3, bad[i].in, strlen(bad[i].in), out,
                                   sizeof(out));
        m += infer_utf8_flush(&s3, out + m, sizeof(out) - m);
        CHECK_EQ(m, strlen(bad[i].want));
        CHECK(memcmp(out, bad[i].want, m) == 0);
    }
    /* Too little room: stops at a character boundary. */
    struct infer_utf8 s4 = {{0}, 0};
    size_t m = infer_utf8_push(&s4, "ab\xc3\xa9", 4, out, 3);
    CHECK_EQ(m, 2);
}

static const struct check_test tests[] = {
    TEST_ENTRY(inp_llama_spm),
    TEST_ENTRY(inp_gpt2),
    TEST_ENTRY(inp_phi3),
    TEST_ENTRY(inp_llama2c_bin),
    TEST_ENTRY(hf_tinystories),
    TEST_ENTRY(hf_smollm2),
    TEST_ENTRY(stories260k_formats),
    TEST_ENTRY(round_trip_llama_spm),
    TEST_ENTRY(round_trip_gpt2),
    TEST_ENTRY(round_trip_phi3),
    TEST_ENTRY(round_trip_llama2c),
    TEST_ENTRY(round_trip_tok512),
    TEST_ENTRY(round_trip_smollm2),
    TEST_ENTRY(round_trip_tinystories),
    TEST_ENTRY(encode_api),
    TEST_ENTRY(loader_errors),
    TEST_ENTRY(pre_tokenizers),
    TEST_ENTRY(unicode_classes),
    TEST_ENTRY(utf8_stream),
};
CHECK_MAIN(tests)
