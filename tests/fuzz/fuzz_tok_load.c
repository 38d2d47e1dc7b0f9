/*
 * fuzz_tok_load.c: libFuzzer target for the tokenizer files read from
 * bytes: llama2.c tokenizer.bin and Hugging Face tokenizer.json. The first
 * byte picks the format (and for tokenizer.bin the vocabulary size the
 * checkpoint would claim); a tokenizer that loads then encodes the rest of
 * the input and a fixed text.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "infer.h"
#include "infer_tok_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void exercise(const struct infer_tok *t, const uint8_t *text, size_t len)
{
    int32_t ids[256];
    char out[2048];
    static const char fixed[] = "Once upon a time 123 \xe4\xb8\xad <|im_end|>";
    for (int special = 0; special < 2; special++) {
        int n = infer_tok_encode(t, fixed, sizeof(fixed) - 1, true, special,
                                 ids, 256);
        if (n > 0)
            (void)infer_tok_decode(t, ids, n < 256 ? (size_t)n : 256, true, out,
                                   sizeof(out));
        n = infer_tok_encode(t, (const char *)text, len, special, special, ids,
                             256);
        if (n > 0)
            (void)infer_tok_decode(t, ids, n < 256 ? (size_t)n : 256, false,
                                   out, sizeof(out));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    data++;
    size--;
    struct infer_tok *t = NULL;
    struct infer_err err;
    int rc;
    if (sel & 1) {
        /* vocab sizes: count the file, or small claims around its size */
        int vocab = (sel >> 1) == 0 ? 0 : (sel >> 1) * 5;
        rc = infer_tok_from_llama2c_mem(data, size, vocab, &t, &err);
    } else {
        rc = infer_tok_from_hf_json_mem((const char *)data, size, &t, &err);
    }
    if (rc == INFER_OK) {
        exercise(t, data, size < 512 ? size : 512);
        infer_tok_free(t);
    } else if (t != NULL || err.msg[0] == '\0') {
        abort(); /* a failure names its problem and returns nothing */
    }
    return 0;
}
