/*
 * infer_tok.c: the vocabulary (texts, scores, types, hashes), encoding by
 * SentencePiece-style score merges or by ranked BPE merges, and pieces for
 * decoding. The loaders (infer_tok_load.c) fill a struct infer_tok through
 * infer_tok_set()/infer_tok_add_merge() and seal it with infer_tok_finish().
 *
 * Encoding follows llama.cpp's llama_tokenize_impl: the text is first cut at
 * special tokens written in it (user-defined tokens always, control tokens
 * only when parse_special), then each plain fragment is tokenized on its own.
 */
#include <stdlib.h>
#include <string.h>

#include "infer.h"
#include "infer_internal.h"
#include "infer_tok_internal.h"

#define ESC "\xE2\x96\x81" /* U+2581, SentencePiece's visible space */

/* ---- small growable id vector ------------------------------------------ */

struct ids {
    int32_t *v; /* (cap,) */
    size_t n, cap;
    bool oom;
};

static void ids_push(struct ids *a, int32_t id)
{
    if (a->oom)
        return;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *v = realloc(a->v, cap * sizeof(*v));
        if (v == NULL) {
            a->oom = true;
            return;
        }
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = id;
}

/* ---- hashing ----------------------------------------------------------- */

static uint32_t hash_bytes(const char *s, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static uint32_t hash_pair(int32_t a, int32_t b)
{
    uint64_t x = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (uint32_t)x;
}

static uint32_t pow2_at_least(uint64_t n)
{
    uint32_t c = 16;
    while (c < n * 2 && c < (1u << 30))
        c <<= 1;
    return c;
}

static const char *tok_text(const struct infer_tok *t, int32_t id, size_t *len)
{
    *len = t->text_len[id];
    return t->text + t->text_off[id];
}

int32_t infer_tok_find(const struct infer_tok *t, const char *text, size_t len)
{
    if (t->hash == NULL)
        return -1;
    uint32_t mask = t->hash_cap - 1;
    for (uint32_t h = hash_bytes(text, len) & mask;; h = (h + 1) & mask) {
        int32_t id = t->hash[h];
        if (id < 0)
            return -1;
        size_t n;
        const char *s = tok_text(t, id, &n);
        if (n == len && memcmp(s, text, len) == 0)
            return id;
    }
}

/* Builds the text -> id hash. When texts repeat, the last id wins, as in
 * llama.cpp's token_to_id map. */
int infer_tok_index(struct infer_tok *t)
{
    if (t->hash != NULL)
        return INFER_OK;
    t->hash_cap = pow2_at_least((uint64_t)t->n_vocab);
    t->hash = malloc(t->hash_cap * sizeof(*t->hash));
    if (t->hash == NULL)
        return INFER_ERR_NOMEM;
    memset(t->hash, 0xff, t->hash_cap * sizeof(*t->hash));
    uint32_t mask = t->hash_cap - 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        size_t len;
        const char *s = tok_text(t, id, &len);
        uint32_t h = hash_bytes(s, len) & mask;
        for (;; h = (h + 1) & mask) {
            int32_t o = t->hash[h];
            if (o < 0)
                break;
            size_t n;
            const char *os = tok_text(t, o, &n);
            if (n == len && memcmp(os, s, len) == 0)
                break;
        }
        t->hash[h] = id;
    }
    return INFER_OK;
}

static const struct infer_tok_merge *find_merge(const struct infer_tok *t,
                                                int32_t a, int32_t b)
{
    if (t->merge_hash == NULL)
        return NULL;
    uint32_t mask = t->merge_cap - 1;
    for (uint32_t h = hash_pair(a, b) & mask;; h = (h + 1) & mask) {
        int32_t i = t->merge_hash[h];
        if (i < 0)
            return NULL;
        if (t->merges[i].left == a && t->merges[i].right == b)
            return &t->merges[i];
    }
}

/* ---- building ---------------------------------------------------------- */

struct infer_tok *infer_tok_alloc(int n_vocab)
{
    if (n_vocab <= 0 || n_vocab > (1 << 24))
        return NULL;
    struct infer_tok *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    size_t n = (size_t)n_vocab;
    t->n_vocab = n_vocab;
    t->text_off = calloc(n, sizeof(*t->text_off));
    t->text_len = calloc(n, sizeof(*t->text_len));
    t->score = calloc(n, sizeof(*t->score));
    t->type = calloc(n, sizeof(*t->type));
    t->eog = calloc(n, sizeof(*t->eog));
    if (!t->text_off || !t->text_len || !t->score || !t->type || !t->eog) {
        infer_tok_free(t);
        return NULL;
    }
    for (int i = 0; i < 256; i++) {
        t->byte_tok[i] = -1;
        t->byte_level_id[i] = -1;
    }
    t->bos = t->eos = t->eot = t->eom = t->unk = -1;
    return t;
}

int infer_tok_set(struct infer_tok *t, int id, const char *text, size_t len,
                  float score, int type)
{
    if (id < 0 || id >= t->n_vocab || len > (1u << 20))
        return INFER_ERR_ARG;
    if (t->text_size + len + 1 > UINT32_MAX)
        return INFER_ERR_FORMAT;
    if (t->text_size + len + 1 > t->text_cap) {
        size_t cap = t->text_cap ? t->text_cap : 4096;
        while (cap < t->text_size + len + 1)
            cap *= 2;
        char *p = realloc(t->text, cap);
        if (p == NULL)
            return INFER_ERR_NOMEM;
        t->text = p;
        t->text_cap = cap;
    }
    if (len > 0)
        memcpy(t->text + t->text_size, text, len);
    t->text[t->text_size + len] = '\0';
    t->text_off[id] = (uint32_t)t->text_size;
    t->text_len[id] = (uint32_t)len;
    t->text_size += len + 1;
    t->score[id] = score;
    t->type[id] =
        (uint8_t)(type >= 0 && type <= INFER_TOK_BYTE ? type
                                                      : INFER_TOK_NORMAL);
    return INFER_OK;
}

int infer_tok_add_merge(struct infer_tok *t, const char *left, size_t llen,
                        const char *right, size_t rlen, int rank)
{
    int rc = infer_tok_index(t);
    if (rc != INFER_OK)
        return rc;
    int32_t a = infer_tok_find(t, left, llen);
    int32_t b = infer_tok_find(t, right, rlen);
    if (a < 0 || b < 0 || llen + rlen > 4096)
        return INFER_OK;
    char buf[4096];
    memcpy(buf, left, llen);
    memcpy(buf + llen, right, rlen);
    int32_t r = infer_tok_find(t, buf, llen + rlen);
    if (r < 0)
        return INFER_OK;
    if (t->n_merges == t->merges_cap) {
        uint32_t cap = t->merges_cap ? t->merges_cap * 2 : 1024;
        struct infer_tok_merge *m = realloc(t->merges, cap * sizeof(*m));
        if (m == NULL)
            return INFER_ERR_NOMEM;
        t->merges = m;
        t->merges_cap = cap;
    }
    t->merges[t->n_merges++] = (struct infer_tok_merge){a, b, r, rank};
    return INFER_OK;
}

static int build_merge_hash(struct infer_tok *t)
{
    if (t->n_merges == 0)
        return INFER_OK;
    t->merge_cap = pow2_at_least(t->n_merges);
    t->merge_hash = malloc(t->merge_cap * sizeof(*t->merge_hash));
    if (t->merge_hash == NULL)
        return INFER_ERR_NOMEM;
    memset(t->merge_hash, 0xff, t->merge_cap * sizeof(*t->merge_hash));
    uint32_t mask = t->merge_cap - 1;
    for (uint32_t i = 0; i < t->n_merges; i++) {
        const struct infer_tok_merge *m = &t->merges[i];
        uint32_t h = hash_pair(m->left, m->right) & mask;
        for (;; h = (h + 1) & mask) {
            int32_t o = t->merge_hash[h];
            if (o < 0)
                break;
            if (t->merges[o].left == m->left && t->merges[o].right == m->right)
                goto next; /* a repeated pair keeps its first (best) rank */
        }
        t->merge_hash[h] = (int32_t)i;
    next:;
    }
    return INFER_OK;
}

/* GPT-2's byte-to-Unicode table: printable Latin-1 bytes stand for
 * themselves, the other 68 bytes for U+0100 onwards in byte order. */
static bool byte_is_self(uint32_t b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) ||
           (b >= 0xAE && b <= 0xFF);
}

static uint32_t byte_to_cp(int b)
{
    if (byte_is_self((uint32_t)b))
        return (uint32_t)b;
    uint32_t n = 0;
    for (int i = 0; i < b; i++)
        n += !byte_is_self((uint32_t)i);
    return 0x100u + n;
}

static size_t cp_to_utf8(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* "<0xAB>" -> 0xAB, else -1. */
static int byte_token_value(const char *s, size_t len)
{
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    int hi = hexval(s[3]), lo = hexval(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* Writes token id's decoded bytes to out (room for 3x the text) and returns
 * their count: <0xAB> gives one byte, GPT-2 mapped characters their bytes,
 * U+2581 a space. Control and other special tokens keep their text. */
static size_t decode_text(const struct infer_tok *t, int32_t id, char *out)
{
    size_t len;
    const char *s = tok_text(t, id, &len);
    int type = t->type[id];
    if (type == INFER_TOK_BYTE || (t->byte_fallback && t->byte_tok[0] >= 0)) {
        int v = byte_token_value(s, len);
        if (v >= 0 && (type == INFER_TOK_BYTE || t->byte_tok[v] == id)) {
            out[0] = (char)v;
            return 1;
        }
    }
    if (type == INFER_TOK_CONTROL || type == INFER_TOK_USER_DEFINED ||
        type == INFER_TOK_UNKNOWN) {
        memcpy(out, s, len);
        return len;
    }
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int k = infer_tok_utf8_next(s + i, len - i, &cp);
        if (t->byte_level && k > 1 && cp >= 0x100 && cp < 0x100 + 68) {
            out[n++] = (char)t->cp_to_byte[cp - 0x100 + 256];
        } else if (t->byte_level && byte_is_self(cp)) {
            out[n++] = (char)cp;
        } else if (t->space_escape && cp == 0x2581 && k == 3) {
            out[n++] = ' ';
        } else {
            memcpy(out + n, s + i, (size_t)k);
            n += (size_t)k;
        }
        i += (size_t)k;
    }
    return n;
}

static int build_raw(struct infer_tok *t)
{
    size_t n = (size_t)t->n_vocab;
    t->raw_off = calloc(n, sizeof(*t->raw_off));
    t->raw_len = calloc(n, sizeof(*t->raw_len));
    /* Each piece is at most its text, plus a NUL; ids no loader set (holes
     * in a tokenizer.json vocab) have no text but still take the NUL. */
    t->raw = malloc(t->text_size + n + 1);
    if (!t->raw_off || !t->raw_len || !t->raw)
        return INFER_ERR_NOMEM;
    /* Decoding never lengthens a token: <0xAB> -> 1 byte, a 2- or 3-byte
     * character -> 1 byte, anything else copied. */
    size_t longest = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        longest = t->text_len[id] > longest ? t->text_len[id] : longest;
    char *buf = malloc(longest + 8);
    if (buf == NULL)
        return INFER_ERR_NOMEM;
    size_t pos = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        size_t len = decode_text(t, id, buf);
        memcpy(t->raw + pos, buf, len);
        t->raw[pos + len] = '\0';
        t->raw_off[id] = (uint32_t)pos;
        t->raw_len[id] = (uint32_t)len;
        pos += len + 1;
    }
    free(buf);
    return INFER_OK;
}

static void build_specials(struct infer_tok *t)
{
    int n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        int ty = t->type[id];
        if ((ty == INFER_TOK_CONTROL || ty == INFER_TOK_USER_DEFINED ||
             ty == INFER_TOK_UNKNOWN) &&
            t->text_len[id] > 0)
            t->specials[n++] = id;
    }
    t->n_specials = n;
    for (int i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t->text[t->text_off[t->specials[i]]];
        t->special_first[c] |=
            t->type[t->specials[i]] == INFER_TOK_USER_DEFINED ? 3 : 1;
    }
    /* Longest first, then by id; an insertion sort because qsort's
     * comparator could not see t without a global. */
    for (int i = 1; i < n; i++) {
        int32_t v = t->specials[i];
        int j = i;
        while (j > 0) {
            int32_t u = t->specials[j - 1];
            if (t->text_len[u] > t->text_len[v] ||
                (t->text_len[u] == t->text_len[v] && u < v))
                break;
            t->specials[j] = u;
            j--;
        }
        t->specials[j] = v;
    }
}

/* Texts of tokens that end a turn in the chat formats we know (llama.cpp
 * marks the same ones as end-of-generation). */
static const char *const eog_texts[] = {
    "<|eot_id|>",    "<|im_end|>",    "<|end|>", "<end_of_turn>",
    "<|endoftext|>", "<EOT>",         "</s>",    "<|end_of_text|>",
    "<|eom_id|>",    "<|end_story|>",
};

static void build_eog(struct infer_tok *t)
{
    int32_t fixed[] = {t->eos, t->eot, t->eom};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        if (fixed[i] >= 0 && fixed[i] < t->n_vocab)
            t->eog[fixed[i]] = 1;
    }
    for (size_t i = 0; i < sizeof(eog_texts) / sizeof(eog_texts[0]); i++) {
        int32_t id = infer_tok_find(t, eog_texts[i], strlen(eog_texts[i]));
        if (id >= 0 && (t->type[id] == INFER_TOK_CONTROL ||
                        t->type[id] == INFER_TOK_USER_DEFINED))
            t->eog[id] = 1;
    }
}

int infer_tok_finish(struct infer_tok *t, struct infer_err *err)
{
    int rc = infer_tok_index(t);
    if (rc == INFER_OK)
        rc = build_merge_hash(t);
    if (rc != INFER_OK)
        return infer_err_set(err, rc, "tokenizer: out of memory");
    for (int b = 0; b < 256; b++) {
        char name[8];
        static const char hex[] = "0123456789ABCDEF";
        memcpy(name, "<0x", 3);
        name[3] = hex[b >> 4];
        name[4] = hex[b & 15];
        name[5] = '>';
        t->byte_tok[b] = infer_tok_find(t, name, 6);
        uint32_t cp = byte_to_cp(b);
        t->cp_to_byte[cp < 0x100 ? cp : cp - 0x100 + 256] = (uint8_t)b;
        size_t n = cp_to_utf8(cp, t->byte_level_str[b]);
        t->byte_level_str[b][3] = (char)n;
        if (t->byte_level)
            t->byte_level_id[b] = infer_tok_find(t, t->byte_level_str[b], n);
    }
    if (build_raw(t) != INFER_OK)
        return infer_err_set(err, INFER_ERR_NOMEM, "tokenizer: out of memory");
    t->specials = malloc((size_t)t->n_vocab * sizeof(*t->specials));
    if (t->specials == NULL)
        return infer_err_set(err, INFER_ERR_NOMEM, "tokenizer: out of memory");
    build_specials(t);
    build_eog(t);
    int32_t *ids[] = {&t->bos, &t->eos, &t->eot, &t->eom, &t->unk};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        if (*ids[i] >= t->n_vocab || *ids[i] < -1)
            *ids[i] = -1;
    }
    return INFER_OK;
}

void infer_tok_free(struct infer_tok *t)
{
    if (t == NULL)
        return;
    free(t->text);
    free(t->text_off);
    free(t->text_len);
    free(t->raw);
    free(t->raw_off);
    free(t->raw_len);
    free(t->score);
    free(t->type);
    free(t->hash);
    free(t->merges);
    free(t->merge_hash);
    free(t->specials);
    free(t->eog);
    free(t);
}

/* ---- accessors --------------------------------------------------------- */

int infer_tok_n_vocab(const struct infer_tok *t)
{
    return t->n_vocab;
}

int infer_tok_bos(const struct infer_tok *t)
{
    return t->bos;
}

int infer_tok_eos(const struct infer_tok *t)
{
    return t->eos;
}

bool infer_tok_is_eog(const struct infer_tok *t, int id)
{
    return id >= 0 && id < t->n_vocab && t->eog[id];
}

bool infer_tok_is_special(const struct infer_tok *t, int id)
{
    if (id < 0 || id >= t->n_vocab)
        return false;
    int ty = t->type[id];
    return ty == INFER_TOK_CONTROL || ty == INFER_TOK_UNKNOWN;
}

const char *infer_tok_text(const struct infer_tok *t, int id, size_t *len)
{
    if (id < 0 || id >= t->n_vocab) {
        *len = 0;
        return NULL;
    }
    return tok_text(t, id, len);
}

const char *infer_tok_piece(const struct infer_tok *t, int id,
                            bool render_special, size_t *len)
{
    if (id < 0 || id >= t->n_vocab) {
        *len = 0;
        return NULL;
    }
    if (!render_special && infer_tok_is_special(t, id)) {
        *len = 0;
        return t->raw + t->raw_off[id] + t->raw_len[id]; /* "" */
    }
    *len = t->raw_len[id];
    return t->raw + t->raw_off[id];
}

size_t infer_tok_decode(const struct infer_tok *t, const int32_t *ids, size_t n,
                        bool render_special, char *out, size_t cap)
{
    size_t total = 0;
    bool at_start = true; /* where encode put the SPM space prefix */
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *p = infer_tok_piece(t, ids[i], render_special, &len);
        if (p == NULL)
            continue;
        if (infer_tok_is_special(t, ids[i]) ||
            (ids[i] >= 0 && t->type[ids[i]] == INFER_TOK_USER_DEFINED)) {
            at_start = true;
        } else if (len > 0) {
            if (at_start && t->add_space_prefix && p[0] == ' ') {
                p++;
                len--;
            }
            at_start = false;
        }
        for (size_t k = 0; k < len; k++, total++) {
            if (total < cap)
                out[total] = p[k];
        }
    }
    return total;
}

/* ---- SentencePiece-style encoding --------------------------------------- */

struct sym {
    int32_t prev, next;
    uint32_t start, n; /* bytes of the fragment; n == 0 once merged away */
};

struct bigram {
    int32_t left, right;
    float score;
    uint32_t size;
};

struct heap {
    struct bigram *v; /* (cap,) */
    size_t n, cap;
};

/* SPM: the best score first; equal scores, the leftmost first. */
static bool spm_before(const struct bigram *a, const struct bigram *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

/* BPE: the lowest rank (stored negated in score) first, as spm_before. The
 * same comparison serves both, since rank -> -rank is order-reversing. */
static bool heap_push(struct heap *h, struct bigram b)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        struct bigram *v = realloc(h->v, cap * sizeof(*v));
        if (v == NULL)
            return false;
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!spm_before(&b, &h->v[p]))
            break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = b;
    return true;
}

static struct bigram heap_pop(struct heap *h)
{
    struct bigram top = h->v[0];
    struct bigram last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && spm_before(&h->v[c + 1], &h->v[c]))
            c++;
        if (!spm_before(&h->v[c], &last))
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n > 0)
        h->v[i] = last;
    return top;
}

static bool mergeable(int type)
{
    return type != INFER_TOK_CONTROL && type != INFER_TOK_UNKNOWN &&
           type != INFER_TOK_BYTE;
}

struct spm {
    const struct infer_tok *t;
    const char *text;
    struct sym *sym; /* (n_sym,) */
    struct heap heap;
    bool oom;
};

static void spm_try(struct spm *s, int32_t l, int32_t r)
{
    if (l < 0 || r < 0)
        return;
    uint32_t size = s->sym[l].n + s->sym[r].n;
    int32_t id = infer_tok_find(s->t, s->text + s->sym[l].start, size);
    if (id < 0 || !mergeable(s->t->type[id]))
        return;
    struct bigram b = {l, r, s->t->score[id], size};
    if (!heap_push(&s->heap, b))
        s->oom = true;
}

static void emit_bytes(const struct infer_tok *t, const char *p, size_t n,
                       struct ids *out)
{
    for (size_t k = 0; k < n; k++) {
        int32_t b = t->byte_tok[(unsigned char)p[k]];
        if (b >= 0)
            ids_push(out, b);
        else if (t->unk >= 0 && (k == 0 || !t->fuse_unk))
            ids_push(out, t->unk);
    }
}

static int spm_encode(const struct infer_tok *t, const char *text, size_t len,
                      struct ids *out)
{
    if (len == 0)
        return INFER_OK;
    struct spm s = {.t = t, .text = text};
    s.sym = malloc(len * sizeof(*s.sym));
    if (s.sym == NULL)
        return INFER_ERR_NOMEM;
    int32_t n = 0;
    for (size_t off = 0; off < len; n++) {
        /* llama.cpp takes the length from the lead byte alone, so a stray
         * byte swallows what follows (half of an escaped space, say); a
         * strict decode keeps every invalid byte a symbol of its own. */
        uint32_t cp;
        size_t k = (size_t)infer_tok_utf8_next(text + off, len - off, &cp);
        s.sym[n] = (struct sym){n - 1, n + 1, (uint32_t)off, (uint32_t)k};
        off += k;
    }
    s.sym[n - 1].next = -1;
    for (int32_t i = 1; i < n; i++)
        spm_try(&s, i - 1, i);
    while (s.heap.n > 0 && !s.oom) {
        struct bigram b = heap_pop(&s.heap);
        struct sym *l = &s.sym[b.left], *r = &s.sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
            continue; /* stale: one side merged since it was queued */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            s.sym[r->next].prev = b.left;
        spm_try(&s, l->prev, b.left);
        spm_try(&s, b.left, l->next);
    }
    for (int32_t i = 0; i >= 0 && !s.oom; i = s.sym[i].next) {
        const char *p = text + s.sym[i].start;
        int32_t id = infer_tok_find(t, p, s.sym[i].n);
        if (id >= 0)
            ids_push(out, id);
        else
            emit_bytes(t, p, s.sym[i].n, out);
    }
    free(s.sym);
    free(s.heap.v);
    return s.oom ? INFER_ERR_NOMEM : INFER_OK;
}

/* ---- BPE encoding -------------------------------------------------------- */

struct bsym {
    int32_t prev, next;
    int32_t id; /* token id; -1 unknown, -2 merged away */
};

struct bpe {
    const struct infer_tok *t;
    struct bsym *sym; /* (cap_sym,) */
    size_t n_sym, cap_sym;
    struct heap heap;
    struct ids *out;
    char *scratch; /* (cap_scratch,) */
    size_t cap_scratch;
    bool oom;
};

static void bpe_try(struct bpe *s, int32_t l, int32_t r)
{
    if (l < 0 || r < 0 || s->sym[l].id < 0 || s->sym[r].id < 0)
        return;
    const struct infer_tok_merge *m =
        find_merge(s->t, s->sym[l].id, s->sym[r].id);
    if (m == NULL)
        return;
    /* size carries the right id, so a queued pair goes stale when either
     * side changes: the left id is checked through the merge. */
    struct bigram b = {l, r, -(float)m->rank, (uint32_t)m->right};
    if (!heap_push(&s->heap, b))
        s->oom = true;
}

static void bpe_add(struct bpe *s, int32_t id)
{
    if (s->n_sym == s->cap_sym) {
        size_t cap = s->cap_sym ? s->cap_sym * 2 : 64;
        struct bsym *v = realloc(s->sym, cap * sizeof(*v));
        if (v == NULL) {
            s->oom = true;
            return;
        }
        s->sym = v;
        s->cap_sym = cap;
    }
    int32_t i = (int32_t)s->n_sym++;
    s->sym[i] = (struct bsym){i - 1, -1, id};
    if (i > 0)
        s->sym[i - 1].next = i;
}

/* The initial symbols of a word: mapped bytes for byte-level vocabularies,
 * else characters, with byte fallback or <unk> for unknown ones. */
static void bpe_symbols(struct bpe *s, const char *w, size_t len)
{
    const struct infer_tok *t = s->t;
    if (t->byte_level) {
        for (size_t i = 0; i < len; i++)
            bpe_add(s, t->byte_level_id[(unsigned char)w[i]]);
        return;
    }
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = (size_t)infer_tok_utf8_next(w + i, len - i, &cp);
        int32_t id = infer_tok_find(t, w + i, k);
        bool bytes_ok = t->byte_fallback;
        for (size_t j = 0; id < 0 && bytes_ok && j < k; j++)
            bytes_ok = t->byte_tok[(unsigned char)w[i + j]] >= 0;
        if (id >= 0) {
            bpe_add(s, id);
        } else if (bytes_ok) {
            for (size_t j = 0; j < k; j++)
                bpe_add(s, t->byte_tok[(unsigned char)w[i + j]]);
        } else if (t->unk >= 0) {
            bool fuse = t->fuse_unk && s->n_sym > 0 &&
                        s->sym[s->n_sym - 1].id == t->unk;
            if (!fuse)
                bpe_add(s, t->unk);
        }
        i += k;
    }
}

/* ignore_merges (Llama 3): a word that is a token is that token. */
static int32_t bpe_whole(struct bpe *s, const char *w, size_t len)
{
    const struct infer_tok *t = s->t;
    if (!t->byte_level)
        return infer_tok_find(t, w, len);
    if (s->cap_scratch < len * 2) {
        char *p = realloc(s->scratch, len * 2);
        if (p == NULL) {
            s->oom = true;
            return -1;
        }
        s->scratch = p;
        s->cap_scratch = len * 2;
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        const char *m = t->byte_level_str[(unsigned char)w[i]];
        memcpy(s->scratch + n, m, (size_t)m[3]);
        n += (size_t)m[3];
    }
    return infer_tok_find(t, s->scratch, n);
}

struct bpe_ctx {
    struct bpe *s;
    const char *text;
};

static int bpe_word_ctx(void *user, size_t off, size_t len)
{
    struct bpe_ctx *c = user;
    struct bpe *s = c->s;
    const char *w = c->text + off;
    if (s->t->ignore_merges) {
        int32_t id = bpe_whole(s, w, len);
        if (id >= 0) {
            ids_push(s->out, id);
            return 0;
        }
    }
    s->n_sym = 0;
    s->heap.n = 0;
    bpe_symbols(s, w, len);
    for (size_t i = 1; i < s->n_sym && !s->oom; i++)
        bpe_try(s, (int32_t)i - 1, (int32_t)i);
    while (s->heap.n > 0 && !s->oom) {
        struct bigram b = heap_pop(&s->heap);
        struct bsym *l = &s->sym[b.left], *r = &s->sym[b.right];
        if (l->id < 0 || r->id != (int32_t)b.size || l->next != b.right)
            continue;
        const struct infer_tok_merge *m = find_merge(s->t, l->id, r->id);
        if (m == NULL || -(float)m->rank != b.score)
            continue; /* the left side changed since it was queued */
        l->id = m->result;
        r->id = -2;
        l->next = r->next;
        if (r->next >= 0)
            s->sym[r->next].prev = b.left;
        bpe_try(s, l->prev, b.left);
        bpe_try(s, b.left, l->next);
    }
    for (size_t i = 0; i < s->n_sym; i++) {
        if (s->sym[i].id >= 0)
            ids_push(s->out, s->sym[i].id);
    }
    return s->oom ? INFER_ERR_NOMEM : 0;
}

static int bpe_encode(const struct infer_tok *t, const char *text, size_t len,
                      struct ids *out)
{
    struct bpe s = {.t = t, .out = out};
    struct bpe_ctx c = {&s, text};
    int rc = infer_tok_pre_split(t->pre, text, len, bpe_word_ctx, &c);
    free(s.sym);
    free(s.heap.v);
    free(s.scratch);
    if (rc == 0 && s.oom)
        rc = INFER_ERR_NOMEM;
    return rc < 0 ? rc : INFER_OK;
}

/* ---- encode: special tokens, then fragments ---------------------------- */

/* The special token written at text[0..len), longest first, or -1. */
static int32_t match_special(const struct infer_tok *t, const char *text,
                             size_t len, bool parse_special)
{
    /* bit 0: some special starts with this byte; bit 1: a user-defined */
    if (!(t->special_first[(unsigned char)text[0]] & (parse_special ? 1 : 2)))
        return -1;
    for (int i = 0; i < t->n_specials; i++) {
        int32_t id = t->specials[i];
        int ty = t->type[id];
        if (!parse_special && ty != INFER_TOK_USER_DEFINED)
            continue;
        size_t n = t->text_len[id];
        if (n <= len && memcmp(text, t->text + t->text_off[id], n) == 0)
            return id;
    }
    return -1;
}

/* One plain fragment: the space prefix and U+2581 escape where the
 * vocabulary wants them, then the algorithm. */
static int encode_fragment(const struct infer_tok *t, const char *p, size_t len,
                           bool prefix, struct ids *out)
{
    if (len == 0)
        return INFER_OK;
    size_t spaces = prefix ? 1 : 0;
    for (size_t i = 0; t->space_escape && i < len; i++)
        spaces += p[i] == ' ';
    char *buf = NULL;
    const char *q = p;
    size_t n = len;
    if (spaces > 0 || prefix) {
        buf = malloc(len + 1 + spaces * 3);
        if (buf == NULL)
            return INFER_ERR_NOMEM;
        n = 0;
        if (prefix) {
            memcpy(buf, t->space_escape ? ESC : " ", t->space_escape ? 3 : 1);
            n = t->space_escape ? 3 : 1;
        }
        for (size_t i = 0; i < len; i++) {
            if (t->space_escape && p[i] == ' ') {
                memcpy(buf + n, ESC, 3);
                n += 3;
            } else {
                buf[n++] = p[i];
            }
        }
        q = buf;
    }
    int rc = t->algo == INFER_TOK_ALGO_SPM ? spm_encode(t, q, n, out)
                                           : bpe_encode(t, q, n, out);
    free(buf);
    return rc;
}

int infer_tok_encode(const struct infer_tok *t, const char *text, size_t len,
                     bool add_bos, bool parse_special, int32_t *ids, int cap)
{
    if (t == NULL || (text == NULL && len > 0) || cap < 0 ||
        (ids == NULL && cap > 0) || len > (size_t)INT32_MAX / 4)
        return INFER_ERR_ARG;
    struct ids out = {0};
    if (add_bos && t->add_bos && t->bos >= 0)
        ids_push(&out, t->bos);
    bool prev_special = true; /* the space prefix goes first */
    size_t start = 0, i = 0;
    int rc = INFER_OK;
    while (i < len && rc == INFER_OK) {
        int32_t id = t->n_specials > 0
                         ? match_special(t, text + i, len - i, parse_special)
                         : -1;
        if (id < 0) {
            i++;
            continue;
        }
        rc = encode_fragment(t, text + start, i - start,
                             t->add_space_prefix && prev_special && i > start,
                             &out);
        if (i > start)
            prev_special = false;
        /* A rendered template that writes BOS itself gets it once. */
        if (!(id == t->bos && out.n == 1 && out.v[0] == t->bos && start == 0))
            ids_push(&out, id);
        prev_special = true;
        i += t->text_len[id];
        start = i;
    }
    if (rc == INFER_OK && start < len)
        rc = encode_fragment(t, text + start, len - start,
                             t->add_space_prefix && prev_special, &out);
    if (rc == INFER_OK && add_bos && t->add_eos && t->eos >= 0)
        ids_push(&out, t->eos);
    if (rc == INFER_OK && out.oom)
        rc = INFER_ERR_NOMEM;
    if (rc == INFER_OK && out.n > (size_t)INT32_MAX)
        rc = INFER_ERR_ARG;
    if (rc == INFER_OK) {
        size_t k = out.n < (size_t)cap ? out.n : (size_t)cap;
        if (k > 0)
            memcpy(ids, out.v, k * sizeof(*ids));
        rc = (int)out.n;
    }
    free(out.v);
    return rc;
}
