/*
 * infer_tok_pre.c: Unicode character classes and the pre-tokenizers of
 * byte-level BPE vocabularies, written out by hand because C has no regex
 * engine with \p{..} classes. Each splitter mirrors one regex alternative by
 * alternative, in the regex's order, so the first alternative that matches
 * at a position wins, exactly as a backtracking engine would choose.
 */
#include <stdlib.h>

#include "infer_tok_internal.h"

/* ---- Unicode classes ---------------------------------------------------- */

static bool in_ranges(const uint32_t (*r)[2], size_t n, uint32_t cp)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < r[mid][0])
            hi = mid;
        else if (cp > r[mid][1])
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

bool infer_tok_is_letter(uint32_t cp)
{
    if (cp < 0x80)
        return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
    return in_ranges(infer_tok_uni_letter, infer_tok_uni_letter_n, cp);
}

bool infer_tok_is_number(uint32_t cp)
{
    if (cp < 0x80)
        return cp >= '0' && cp <= '9';
    return in_ranges(infer_tok_uni_number, infer_tok_uni_number_n, cp);
}

bool infer_tok_is_mark(uint32_t cp)
{
    return in_ranges(infer_tok_uni_mark, infer_tok_uni_mark_n, cp);
}

/* The White_Space property, which is what \s matches in the regex engines
 * (Oniguruma, PCRE2 with UCP) the reference tokenizers use. */
bool infer_tok_is_space(uint32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 ||
           cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

int infer_tok_utf8_next(const char *s, size_t len, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned char c = u[0];
    int need;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
        need = 1, v = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2, v = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3, v = c & 0x07, min = 0x10000;
    } else {
        *cp = 0xFFFD;
        return 1;
    }
    if ((size_t)need >= len) {
        *cp = 0xFFFD;
        return 1;
    }
    for (int i = 1; i <= need; i++) {
        if ((u[i] & 0xC0) != 0x80) {
            *cp = 0xFFFD;
            return 1;
        }
        v = (v << 6) | (u[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        *cp = 0xFFFD;
        return 1;
    }
    *cp = v;
    return need + 1;
}

/* ---- the splitters ------------------------------------------------------ */

/* A text decoded to code points; off[i] is the byte offset of cp[i], and
 * off[n] == the byte length. */
struct cps {
    const uint32_t *cp; /* (n,) */
    const size_t *off;  /* (n + 1,) */
    size_t n;
};

static bool is_lnum(uint32_t c)
{
    return infer_tok_is_letter(c) || infer_tok_is_number(c);
}

static bool is_other(uint32_t c) /* [^\s\p{L}\p{N}] */
{
    return !infer_tok_is_space(c) && !is_lnum(c);
}

static bool is_nl(uint32_t c)
{
    return c == '\r' || c == '\n';
}

static uint32_t ascii_lower(uint32_t c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* 's|'t|'re|'ve|'m|'ll|'d at i: the match length in code points, or 0. */
static size_t contraction(const struct cps *s, size_t i, size_t end, bool ci)
{
    if (s->cp[i] != '\'' || i + 1 >= end)
        return 0;
    uint32_t a = ci ? ascii_lower(s->cp[i + 1]) : s->cp[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return 2;
    if (i + 2 >= end)
        return 0;
    uint32_t b = ci ? ascii_lower(s->cp[i + 2]) : s->cp[i + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') ||
        (a == 'l' && b == 'l'))
        return 3;
    return 0;
}

/* \s+(?!\S)|\s+ at i (cp[i] is a space): a run followed by a non-space gives
 * its last space to the next word, unless it is one space long. */
static size_t space_run(const struct cps *s, size_t i, size_t end)
{
    size_t j = i;
    while (j < end && infer_tok_is_space(s->cp[j]))
        j++;
    if (j < end && j - i > 1)
        j--;
    return j - i;
}

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|
 * \s+(?!\S)|\s+ ; one match at i, in code points (>= 1). */
static size_t match_gpt2(const struct cps *s, size_t i, size_t end)
{
    size_t k = contraction(s, i, end, false);
    if (k > 0)
        return k;
    size_t o = s->cp[i] == ' ' ? 1 : 0;
    if (i + o < end) {
        uint32_t c = s->cp[i + o];
        size_t j = i + o;
        if (infer_tok_is_letter(c)) {
            while (j < end && infer_tok_is_letter(s->cp[j]))
                j++;
            return j - i;
        }
        if (infer_tok_is_number(c)) {
            while (j < end && infer_tok_is_number(s->cp[j]))
                j++;
            return j - i;
        }
        if (is_other(c)) {
            while (j < end && is_other(s->cp[j]))
                j++;
            return j - i;
        }
    }
    if (infer_tok_is_space(s->cp[i]))
        return space_run(s, i, end);
    return 1; /* unreachable: every code point is in one class above */
}

/* Llama 3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 * ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ ; Qwen2 has \p{N} for
 * \p{N}{1,3} (max_digits 1). */
static size_t match_llama3(const struct cps *s, size_t i, size_t end,
                           size_t max_digits)
{
    size_t k = contraction(s, i, end, true);
    if (k > 0)
        return k;
    uint32_t c = s->cp[i];
    size_t j = i;
    if (infer_tok_is_letter(c) || (!is_nl(c) && !is_lnum(c) && i + 1 < end &&
                                   infer_tok_is_letter(s->cp[i + 1]))) {
        j++;
        while (j < end && infer_tok_is_letter(s->cp[j]))
            j++;
        return j - i;
    }
    if (infer_tok_is_number(c)) {
        while (j < end && j - i < max_digits && infer_tok_is_number(s->cp[j]))
            j++;
        return j - i;
    }
    size_t o = c == ' ' ? 1 : 0;
    if (i + o < end && is_other(s->cp[i + o])) {
        j = i + o;
        while (j < end && is_other(s->cp[j]))
            j++;
        while (j < end && is_nl(s->cp[j]))
            j++;
        return j - i;
    }
    size_t last_nl = 0;
    bool nl = false;
    for (j = i; j < end && infer_tok_is_space(s->cp[j]); j++) {
        if (is_nl(s->cp[j])) {
            last_nl = j;
            nl = true;
        }
    }
    if (nl)
        return last_nl + 1 - i;
    if (infer_tok_is_space(c))
        return space_run(s, i, end);
    return 1;
}

static int split_range(enum infer_tok_pre pre, const struct cps *s,
                       size_t start, size_t end, infer_tok_word_fn emit,
                       void *user)
{
    size_t i = start;
    while (i < end) {
        size_t k;
        switch (pre) {
        case INFER_TOK_PRE_LLAMA3:
            k = match_llama3(s, i, end, 3);
            break;
        case INFER_TOK_PRE_QWEN2:
            k = match_llama3(s, i, end, 1);
            break;
        case INFER_TOK_PRE_NONE:
            k = end - i;
            break;
        default:
            k = match_gpt2(s, i, end);
            break;
        }
        int rc = emit(user, s->off[i], s->off[i + k] - s->off[i]);
        if (rc != 0)
            return rc;
        i += k;
    }
    return 0;
}

/* SmolLM/StarCoder: every ASCII digit is a word of its own (HF's Digits
 * pre-tokenizer with individual_digits tests char::is_ascii_digit, so "½"
 * or "١" stay with their neighbours), and the text between goes through
 * GPT-2's. */
static int split_smollm(const struct cps *s, infer_tok_word_fn emit, void *user)
{
    size_t seg = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (s->cp[i] < '0' || s->cp[i] > '9')
            continue;
        int rc = split_range(INFER_TOK_PRE_GPT2, s, seg, i, emit, user);
        if (rc == 0)
            rc = emit(user, s->off[i], s->off[i + 1] - s->off[i]);
        if (rc != 0)
            return rc;
        seg = i + 1;
    }
    return split_range(INFER_TOK_PRE_GPT2, s, seg, s->n, emit, user);
}

int infer_tok_pre_split(enum infer_tok_pre pre, const char *text, size_t len,
                        infer_tok_word_fn emit, void *user)
{
    if (len == 0)
        return 0;
    if (pre == INFER_TOK_PRE_NONE)
        return emit(user, 0, len);
    uint32_t *cp = malloc(len * sizeof(*cp));
    size_t *off = malloc((len + 1) * sizeof(*off));
    if (cp == NULL || off == NULL) {
        free(cp);
        free(off);
        return INFER_ERR_NOMEM;
    }
    size_t n = 0;
    for (size_t b = 0; b < len; n++) {
        off[n] = b;
        b += (size_t)infer_tok_utf8_next(text + b, len - b, &cp[n]);
    }
    off[n] = len;
    struct cps s = {cp, off, n};
    int rc = pre == INFER_TOK_PRE_SMOLLM
                 ? split_smollm(&s, emit, user)
                 : split_range(pre, &s, 0, n, emit, user);
    free(cp);
    free(off);
    return rc;
}
