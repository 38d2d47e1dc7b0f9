/*
 * fuzz_tok_encode.c: libFuzzer target for encoding and decoding with the
 * real vocabularies in shared/ (ARENA_SHARED): the first byte picks the
 * tokenizer and the flags, the rest is the text. Checks that the count
 * contract holds, that every id is in range, that lossless tokenizers give
 * the text back exactly, and that streaming UTF-8 emits valid UTF-8.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer.h"
#include "infer_internal.h"
#include "infer_tok_internal.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { N_TOK = 6 };
static struct infer_tok *toks[N_TOK];
static bool lossless[N_TOK]; /* every byte string round-trips */

static struct infer_tok *load(const char *rel)
{
    const char *shared = getenv("ARENA_SHARED");
    char path[4096];
    struct infer_tok *t = NULL;
    struct infer_err err;
    snprintf(path, sizeof(path), "%s/%s", shared ? shared : "../shared", rel);
    if (infer_tok_load_for_model(path, &t, &err) != INFER_OK) {
        fprintf(stderr, "fuzz_tok_encode: %s\n", err.msg);
        abort(); /* a missing vocabulary is a setup error, not a finding */
    }
    return t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    toks[0] = load("models/tokenizers/ggml-vocab-llama-spm.gguf");
    toks[1] = load("models/tokenizers/ggml-vocab-gpt-2.gguf");
    toks[2] = load("models/tokenizers/ggml-vocab-phi-3.gguf");
    toks[3] = load("models/stories260K/stories260K.bin");
    toks[4] = load("models/tokenizers/smollm2-tokenizer.json");
    toks[5] = load("models/tinystories-656K/TinyStories-656K-F16.gguf");
    lossless[0] = lossless[1] = lossless[2] = lossless[3] = true;
    return 0;
}

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096)
        return 0;
    uint8_t sel = data[0];
    const struct infer_tok *t = toks[(sel & 7) % N_TOK];
    bool bos = sel & 8, special = sel & 16;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    int n = infer_tok_encode(t, text, len, bos, special, NULL, 0);
    if (n < 0)
        abort();
    int32_t *ids = malloc(((size_t)n + 1) * sizeof(*ids));
    if (ids == NULL)
        return 0;
    if (infer_tok_encode(t, text, len, bos, special, ids, n) != n)
        abort();
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= infer_tok_n_vocab(t))
            abort();
    }
    size_t cap = len * 4 + 64;
    char *out = malloc(cap);
    size_t m = infer_tok_decode(t, ids, (size_t)n, false, out, cap);
    /* U+2581 is how SentencePiece spells a space, so it decodes as one. */
    bool esc = memmem(text, len, "\xe2\x96\x81", 3) != NULL;
    if (lossless[(sel & 7) % N_TOK] && !special && !esc &&
        (m != len || memcmp(out, text, len) != 0))
        abort();
    /* Stream the pieces: whatever comes out is valid UTF-8. */
    struct infer_utf8 st = {{0}, 0};
    char buf[64];
    for (int i = 0; i < n; i++) {
        size_t plen;
        const char *p = infer_tok_piece(t, ids[i], true, &plen);
        for (size_t off = 0; p != NULL && off < plen; off += 16) {
            size_t k = plen - off < 16 ? plen - off : 16;
            size_t w = infer_utf8_push(&st, p + off, k, buf, sizeof(buf));
            if (!valid_utf8(buf, w))
                abort();
        }
    }
    size_t w = infer_utf8_flush(&st, buf, sizeof(buf));
    if (!valid_utf8(buf, w))
        abort();
    /* And as a chat message. */
    char *msg = malloc(len + 1);
    memcpy(msg, text, len);
    msg[len] = '\0';
    struct infer_chat_msg conv[] = {{"system", msg}, {"user", msg}};
    char *r =
        infer_chat_render((enum infer_chat_format)(sel % 7), conv, 2, true);
    if (r == NULL)
        abort();
    free(r);
    free(msg);
    free(out);
    free(ids);
    return 0;
}
