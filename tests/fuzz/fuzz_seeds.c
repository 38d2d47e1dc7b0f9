/*
 * fuzz_seeds.c: writes the seed corpora the fuzz targets start from, into
 * OUT/{gguf,load,encode}: two small valid GGUF files (a SentencePiece and a
 * byte-level BPE vocabulary with a chat template and a tensor), the head of
 * a real one, llama2.c's tok512.bin, two small tokenizer.json files, and
 * llama.cpp's tokenizer test texts for each vocabulary.
 *   usage: fuzz_seeds OUT SHARED
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct buf {
    unsigned char *p;
    size_t n, cap;
};

static void put(struct buf *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 256;
        b->p = realloc(b->p, b->cap);
        if (b->p == NULL)
            exit(1);
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void u32(struct buf *b, uint32_t v)
{
    put(b, &v, 4);
}

static void u64(struct buf *b, uint64_t v)
{
    put(b, &v, 8);
}

static void str(struct buf *b, const char *s)
{
    u64(b, strlen(s));
    put(b, s, strlen(s));
}

static void kv_str(struct buf *b, const char *k, const char *v)
{
    str(b, k);
    u32(b, 8);
    str(b, v);
}

static void kv_u32(struct buf *b, const char *k, uint32_t v)
{
    str(b, k);
    u32(b, 4);
    u32(b, v);
}

static void kv_strs(struct buf *b, const char *k, const char *const *v,
                    size_t n)
{
    str(b, k);
    u32(b, 9);
    u32(b, 8);
    u64(b, n);
    for (size_t i = 0; i < n; i++)
        str(b, v[i]);
}

static void kv_arr32(struct buf *b, const char *k, uint32_t type, const void *v,
                     size_t n)
{
    str(b, k);
    u32(b, 9);
    u32(b, type);
    u64(b, n);
    put(b, v, n * 4);
}

static void write_file(const char *dir, const char *name, const void *p,
                       size_t n)
{
    char path[4096 + 64]; /* dir is at most 4095, names are short */
    snprintf(path, sizeof(path), "%s/%.60s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(p, 1, n, f) != n) {
        perror(path);
        exit(1);
    }
    fclose(f);
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc(*n + 1);
    if (p == NULL || fread(p, 1, *n, f) != *n)
        exit(1);
    fclose(f);
    return p;
}

/* A GGUF v3 file: header, the kv pairs in kvs, one F32 tensor of 4. */
static void gguf(const char *dir, const char *name, struct buf *kvs,
                 uint64_t n_kv)
{
    struct buf b = {0};
    put(&b, "GGUF", 4);
    u32(&b, 3);
    u64(&b, 1);
    u64(&b, n_kv);
    put(&b, kvs->p, kvs->n);
    str(&b, "output_norm.weight");
    u32(&b, 1);
    u64(&b, 4);
    u32(&b, 0);
    u64(&b, 0);
    while (b.n % 32)
        put(&b, "", 1);
    float w[4] = {1, 2, 3, 4};
    put(&b, w, sizeof(w));
    write_file(dir, name, b.p, b.n);
    free(b.p);
    free(kvs->p);
}

static void gguf_seeds(const char *dir)
{
    static const char *const spm[] = {
        "<unk>",          "<s>",      "</s>",   "<0x0A>",        "<0x41>",
        "\xe2\x96\x81",   "a",        "b",      "\342\226\201a", "ab",
        "\342\226\201ab", "<|user|>", "<|end|>"};
    float scores[13];
    int32_t types[13];
    for (int i = 0; i < 13; i++) {
        scores[i] = -(float)i;
        types[i] = i == 0 ? 2 : i < 3 ? 3 : i < 5 ? 6 : i > 10 ? 4 : 1;
    }
    struct buf kv = {0};
    kv_str(&kv, "general.architecture", "llama");
    kv_str(&kv, "tokenizer.ggml.model", "llama");
    kv_strs(&kv, "tokenizer.ggml.tokens", spm, 13);
    kv_arr32(&kv, "tokenizer.ggml.scores", 6, scores, 13);
    kv_arr32(&kv, "tokenizer.ggml.token_type", 5, types, 13);
    kv_u32(&kv, "tokenizer.ggml.bos_token_id", 1);
    kv_u32(&kv, "tokenizer.ggml.eos_token_id", 2);
    kv_str(&kv, "tokenizer.chat_template",
           "{{'<|user|>\\n' + message['content'] + '<|end|>'}}");
    gguf(dir, "spm.gguf", &kv, 8);

    static const char *const bpe[] = {"a",         "b", "ab",        "\xc4\xa0",
                                      "\304\240a", "1", "<|im_end|>"};
    static const char *const merges[] = {"a b", "\xc4\xa0 a"};
    int32_t btypes[7] = {1, 1, 1, 1, 1, 1, 3};
    kv = (struct buf){0};
    kv_str(&kv, "general.architecture", "qwen2");
    kv_str(&kv, "tokenizer.ggml.model", "gpt2");
    kv_str(&kv, "tokenizer.ggml.pre", "qwen2");
    kv_strs(&kv, "tokenizer.ggml.tokens", bpe, 7);
    kv_arr32(&kv, "tokenizer.ggml.token_type", 5, btypes, 7);
    kv_strs(&kv, "tokenizer.ggml.merges", merges, 2);
    kv_u32(&kv, "tokenizer.ggml.eos_token_id", 6);
    kv_str(&kv, "tokenizer.chat_template",
           "{{'<|im_start|>system\\nYou are a bot.<|im_end|>\\n'}}");
    gguf(dir, "bpe.gguf", &kv, 8);
}

static void prefixed(const char *dir, const char *name, unsigned char sel,
                     const unsigned char *p, size_t n)
{
    unsigned char *q = malloc(n + 1);
    q[0] = sel;
    memcpy(q + 1, p, n);
    write_file(dir, name, q, n + 1);
    free(q);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: fuzz_seeds OUT SHARED\n");
        return 2;
    }
    char dir[4096], path[4096];
    size_t n;
    snprintf(dir, sizeof(dir), "%s/gguf", argv[1]);
    gguf_seeds(dir);
    snprintf(path, sizeof(path), "%s/models/stories260K/stories260K.gguf",
             argv[2]);
    unsigned char *p = slurp(path, &n);
    write_file(dir, "stories260K-head.gguf", p, n < 16384 ? n : 16384);
    free(p);

    snprintf(dir, sizeof(dir), "%s/load", argv[1]);
    snprintf(path, sizeof(path), "%s/models/stories260K/tok512.bin", argv[2]);
    p = slurp(path, &n);
    prefixed(dir, "tok512.bin", 1, p, n);
    free(p);
    /* Small tokenizer.json files with the shapes the loader knows (the
     * real ones, 86 KB and 2 MB, would slow every mutation down). */
    static const char spm_json[] =
        "{\"added_tokens\": [{\"id\": 0, \"content\": \"<unk>\", "
        "\"special\": true}, {\"id\": 1, \"content\": \"<|start|>\", "
        "\"special\": true}], \"normalizer\": {\"type\": \"Sequence\", "
        "\"normalizers\": [{\"type\": \"Prepend\", \"prepend\": "
        "\"\\u2581\"}, {\"type\": \"Replace\", \"pattern\": {\"String\": "
        "\" \"}, \"content\": \"\\u2581\"}]}, \"pre_tokenizer\": null, "
        "\"post_processor\": {\"type\": \"TemplateProcessing\", "
        "\"single\": [{\"SpecialToken\": {\"id\": \"<|start|>\"}}, "
        "{\"Sequence\": {\"id\": \"A\"}}]}, \"model\": {\"type\": \"BPE\", "
        "\"unk_token\": \"<unk>\", \"fuse_unk\": true, \"byte_fallback\": "
        "true, \"vocab\": {\"<unk>\": 0, \"<|start|>\": 1, \"a\": 2, "
        "\"\\u2581\": 3, \"\\u2581a\": 4, \"<0x41>\": 5}, \"merges\": "
        "[\"\\u2581 a\"]}}";
    prefixed(dir, "spm.json", 0, (const unsigned char *)spm_json,
             sizeof(spm_json) - 1);
    static const char bpe_json[] =
        "{\"added_tokens\": [{\"id\": 4, \"content\": \"<s>\", "
        "\"special\": true}], \"pre_tokenizer\": {\"type\": \"Sequence\", "
        "\"pretokenizers\": [{\"type\": \"Digits\", \"individual_digits\": "
        "true}, {\"type\": \"ByteLevel\", \"use_regex\": true}]}, "
        "\"decoder\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": "
        "\"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"abb\": 3}, "
        "\"merges\": [\"a b\", [\"ab\", \"b\"]]}}";
    prefixed(dir, "bpe.json", 0, (const unsigned char *)bpe_json,
             sizeof(bpe_json) - 1);

    /* llama.cpp's test texts, one seed per text and tokenizer. */
    snprintf(dir, sizeof(dir), "%s/encode", argv[1]);
    snprintf(path, sizeof(path),
             "%s/models/tokenizers/ggml-vocab-gpt-2.gguf.inp", argv[2]);
    p = slurp(path, &n);
    p[n] = '\0';
    static const char sep[] = "\n__ggml_vocab_test__\n";
    int k = 0;
    for (char *s = (char *)p, *e; *s != '\0'; s = e + sizeof(sep) - 1, k++) {
        e = strstr(s, sep);
        if (e == NULL)
            break;
        char name[32];
        snprintf(name, sizeof(name), "inp%02d", k);
        prefixed(dir, name, (unsigned char)(k * 5), (unsigned char *)s,
                 (size_t)(e - s));
    }
    free(p);
    return 0;
}
