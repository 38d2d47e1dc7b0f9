/*
 * fuzz_gguf.c: libFuzzer target for the GGUF reader and everything that
 * reads GGUF metadata after it: the tokenizer loader, chat-template
 * detection and an encode with the resulting vocabulary. Any input must be
 * rejected with a status or accepted, never crash or leak.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "infer.h"
#include "infer_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct infer_gguf *g;
    struct infer_err err;
    if (infer_gguf_open_mem(data, size, &g, &err) != INFER_OK)
        return 0;
    /* Walk what the reader promises is in bounds. */
    for (int64_t i = 0; i < infer_gguf_n_keys(g); i++) {
        const char *name = infer_gguf_key_name(g, i);
        if (name == NULL)
            abort();
        if (infer_gguf_key_type(g, i) == INFER_GGUF_ARRAY) {
            uint64_t n = infer_gguf_arr_n(g, i);
            size_t len;
            for (uint64_t k = 0; k < n && k < 64; k++) {
                int64_t v;
                double d;
                (void)infer_gguf_arr_str(g, i, k, &len);
                (void)infer_gguf_arr_i64(g, i, k, &v);
                (void)infer_gguf_arr_f64(g, i, k, &d);
            }
        }
    }
    for (int64_t i = 0; i < infer_gguf_n_tensors(g); i++) {
        const struct infer_gguf_tensor *t = infer_gguf_tensor(g, i);
        if (t == NULL || (t->nbytes > 0 && t->data == NULL))
            abort();
        volatile unsigned char sink = 0;
        if (t->nbytes > 0) /* first and last byte must be readable */
            sink ^= ((const unsigned char *)t->data)[0] ^
                    ((const unsigned char *)t->data)[t->nbytes - 1];
        (void)sink;
    }
    (void)infer_chat_detect(infer_gguf_get_str(g, "tokenizer.chat_template"));
    free(infer_chat_default_system(
        infer_gguf_get_str(g, "tokenizer.chat_template")));
    struct infer_tok *tok;
    if (infer_tok_from_gguf(g, &tok, &err) == INFER_OK) {
        static const char text[] = " Hello <s>wor\xe2\x96\x81ld\n\xff 12";
        int32_t ids[64];
        int n =
            infer_tok_encode(tok, text, sizeof(text) - 1, true, true, ids, 64);
        char out[512];
        if (n > 0)
            (void)infer_tok_decode(tok, ids, n < 64 ? (size_t)n : 64, true, out,
                                   sizeof(out));
        for (int id = -1; id <= infer_tok_n_vocab(tok); id++) {
            size_t len;
            (void)infer_tok_piece(tok, id, true, &len);
            (void)infer_tok_is_eog(tok, id);
        }
        infer_tok_free(tok);
    }
    infer_gguf_free(g);
    return 0;
}
