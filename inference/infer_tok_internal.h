/*
 * infer_tok_internal.h: the tokenizer's private structures, shared by
 * infer_tok.c (vocabulary, encode, decode), infer_tok_pre.c (Unicode classes
 * and the BPE pre-tokenizers), infer_tok_load.c (GGUF, llama2.c tokenizer.bin
 * and Hugging Face tokenizer.json loaders) and the tokenizer tests.
 *
 * A struct infer_tok is built once by a loader, then never written again:
 * any number of threads may encode and decode with it at once. It owns every
 * byte it points to.
 */
#ifndef INFER_TOK_INTERNAL_H
#define INFER_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "infer.h"

/* Token types, numbered as GGUF's tokenizer.ggml.token_type numbers them. */
enum infer_tok_type {
    INFER_TOK_UNDEFINED = 0,
    INFER_TOK_NORMAL = 1,
    INFER_TOK_UNKNOWN = 2,
    INFER_TOK_CONTROL = 3,
    INFER_TOK_USER_DEFINED = 4,
    INFER_TOK_UNUSED = 5,
    INFER_TOK_BYTE = 6,
};

/* How the text is cut into tokens. */
enum infer_tok_algo {
    INFER_TOK_ALGO_SPM, /* SentencePiece BPE: merge the best-scored pair */
    INFER_TOK_ALGO_BPE, /* ranked merges inside pre-tokenized words */
};

/* The pre-tokenizer regex of a byte-level BPE vocabulary, hand-coded. */
enum infer_tok_pre {
    INFER_TOK_PRE_NONE = 0, /* the whole text is one word */
    INFER_TOK_PRE_GPT2,   /* 's|'t|..| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+.. */
    INFER_TOK_PRE_LLAMA3, /* (?i:'s..)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}.. */
    INFER_TOK_PRE_QWEN2,  /* llama3's with \p{N} one digit at a time */
    INFER_TOK_PRE_SMOLLM, /* digits isolated, then GPT-2's */
};

/* One merge rule of a BPE vocabulary: left + right -> result, by rank. */
struct infer_tok_merge {
    int32_t left, right; /* token ids */
    int32_t result;      /* token id of the concatenation */
    int32_t rank;        /* lower merges first */
};

struct infer_tok {
    int n_vocab;
    enum infer_tok_algo algo;
    enum infer_tok_pre pre;

    /* Token i's text as the vocabulary spells it (with U+2581 for spaces, or
     * GPT-2's byte-to-Unicode mapping) is text[text_off[i] ..
     * text_off[i] + text_len[i]]; its decoded bytes are likewise in raw. */
    char *text; /* (text_size,) NUL after each token */
    size_t text_size, text_cap;
    uint32_t *text_off; /* (n_vocab,) */
    uint32_t *text_len; /* (n_vocab,) */
    char *raw;          /* (sum of raw_len) bytes, NUL after each token */
    uint32_t *raw_off;  /* (n_vocab,) */
    uint32_t *raw_len;  /* (n_vocab,) */
    float *score;       /* (n_vocab,) SPM merge priority, higher first */
    uint8_t *type;      /* (n_vocab,) enum infer_tok_type */

    /* Open-addressing hash of token text -> id; size a power of two. */
    int32_t *hash; /* (hash_cap,) id or -1 */
    uint32_t hash_cap;

    /* Merges, hashed by (left, right); BPE only. */
    struct infer_tok_merge *merges; /* (n_merges,) */
    int32_t *merge_hash;            /* (merge_cap,) index or -1 */
    uint32_t n_merges, merges_cap, merge_cap;

    /* Tokens matched literally in the text before the algorithm runs
     * (control and user-defined tokens), longest first. */
    int32_t *specials; /* (n_specials,) */
    int n_specials;
    uint8_t special_first[256]; /* 1: a special starts with the byte, 3: a
                                   user-defined one does */

    int32_t byte_tok[256]; /* id of <0xXX> (SPM, HF byte fallback) or -1 */
    /* GPT-2 byte level: byte b is spelled byte_level_str[b] (UTF-8, length
     * in [3]), the token byte_level_id[b]; cp_to_byte inverts the mapping
     * for the 68 bytes spelled U+0100.. (index cp - 0x100 + 256). */
    int32_t byte_level_id[256];
    char byte_level_str[256][4];
    uint8_t cp_to_byte[256 + 68];
    bool byte_level;       /* GPT-2 byte-to-Unicode mapping of the text */
    bool ignore_merges;    /* a pre-tokenized word that is a token is kept */
    bool byte_fallback;    /* unknown characters become <0xXX> tokens */
    bool space_escape;     /* ' ' is spelled U+2581 in the vocabulary */
    bool add_space_prefix; /* SPM: a space before the text (and after a
                              special token), as llama.cpp and HF do */
    bool fuse_unk;         /* HF: consecutive unknowns become one <unk> */
    bool hf_bpe;           /* HF BPE: characters, then byte fallback/unk */
    bool add_bos, add_eos;
    int32_t bos, eos, eot, eom, unk; /* -1 if none */
    uint8_t *eog;                    /* (n_vocab,) 1 if it ends generation */
};

/* ---- infer_tok.c ------------------------------------------------------- */

/* Allocates an empty tokenizer for n tokens, all arrays zeroed and ids -1. */
struct infer_tok *infer_tok_alloc(int n_vocab);
/* Sets token id's text (vocabulary spelling), score and type; copies. Call
 * once per id, then infer_tok_finish(). */
int infer_tok_set(struct infer_tok *t, int id, const char *text, size_t len,
                  float score, int type);
/* Adds a merge "left right" given as the two texts; ignored (returns 0)
 * when a side or the concatenation is not a token. Before finish(). */
int infer_tok_add_merge(struct infer_tok *t, const char *left, size_t llen,
                        const char *right, size_t rlen, int rank);
/* Builds the text -> id hash now (finish() and add_merge() do it too);
 * every infer_tok_set() must come before. INFER_ERR_NOMEM. */
int infer_tok_index(struct infer_tok *t);
/* Builds the hashes, raw pieces, byte tables, specials and end-of-generation
 * set. INFER_ERR_FORMAT (with err) on duplicate or invalid data. */
int infer_tok_finish(struct infer_tok *t, struct infer_err *err);
/* Id of a token text, or -1. */
int32_t infer_tok_find(const struct infer_tok *t, const char *text, size_t len);

/* ---- infer_tok_pre.c --------------------------------------------------- */

/* Unicode classes over the tables in infer_tok_unitab.c. */
bool infer_tok_is_letter(uint32_t cp);
bool infer_tok_is_number(uint32_t cp);
bool infer_tok_is_mark(uint32_t cp);
bool infer_tok_is_space(uint32_t cp); /* White_Space, as regex \s */

/* Decodes one UTF-8 character at s[0..len) (len >= 1): returns its byte
 * length and sets *cp. An invalid or truncated sequence counts one byte and
 * decodes as U+FFFD. Cannot fail. */
int infer_tok_utf8_next(const char *s, size_t len, uint32_t *cp);

/* Splits text[0..len) into words by the pre-tokenizer: calls emit(user,
 * offset, length) for each word in order; the words cover the text exactly.
 * Returns the first non-zero value emit returns, else 0. */
typedef int (*infer_tok_word_fn)(void *user, size_t off, size_t len);
int infer_tok_pre_split(enum infer_tok_pre pre, const char *text, size_t len,
                        infer_tok_word_fn emit, void *user);

extern const uint32_t infer_tok_uni_letter[][2];
extern const size_t infer_tok_uni_letter_n;
extern const uint32_t infer_tok_uni_number[][2];
extern const size_t infer_tok_uni_number_n;
extern const uint32_t infer_tok_uni_mark[][2];
extern const size_t infer_tok_uni_mark_n;

/* ---- infer_tok_load.c -------------------------------------------------- */

/* The loaders over bytes in memory (the fuzz targets use these). */
int infer_tok_from_llama2c_mem(const void *data, size_t size, int vocab_size,
                               struct infer_tok **out, struct infer_err *err);
int infer_tok_from_hf_json_mem(const char *json, size_t size,
                               struct infer_tok **out, struct infer_err *err);

#endif
