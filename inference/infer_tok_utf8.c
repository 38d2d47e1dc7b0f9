/*
 * infer_tok_utf8.c: streaming UTF-8 validation for decoded token pieces.
 * A character split across tokens waits in the state until its last byte
 * arrives; a sequence that cannot become a valid character is replaced by
 * U+FFFD, one per maximal invalid subpart (the Unicode recommendation), so
 * the output is always valid UTF-8.
 */
#include <string.h>

#include "infer.h"

static const char fffd[3] = {'\xEF', '\xBF', '\xBD'};

/* Bytes a character led by c has in total; 0 if c cannot lead one. */
static int seq_len(unsigned char c)
{
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return 2;
    if (c >= 0xE0 && c <= 0xEF)
        return 3;
    if (c >= 0xF0 && c <= 0xF4)
        return 4;
    return 0;
}

/* Whether c may follow the prefix p[0..n) (n >= 1): the second byte's range
 * depends on the lead (no overlongs, surrogates or code points past
 * U+10FFFF), later ones are any continuation byte. */
static bool continues(const unsigned char *p, int n, unsigned char c)
{
    if (n == 1) {
        switch (p[0]) {
        case 0xE0:
            return c >= 0xA0 && c <= 0xBF;
        case 0xED:
            return c >= 0x80 && c <= 0x9F;
        case 0xF0:
            return c >= 0x90 && c <= 0xBF;
        case 0xF4:
            return c >= 0x80 && c <= 0x8F;
        }
    }
    return c >= 0x80 && c <= 0xBF;
}

struct sink {
    char *out;
    size_t n, cap;
    bool full;
};

static void put(struct sink *k, const void *p, size_t len)
{
    if (k->full || k->cap - k->n < len) {
        k->full = true;
        return;
    }
    memcpy(k->out + k->n, p, len);
    k->n += len;
}

size_t infer_utf8_push(struct infer_utf8 *s, const char *bytes, size_t len,
                       char *out, size_t cap)
{
    struct sink k = {out, 0, cap, false};
    if (s->n < 0 || s->n > 3)
        s->n = 0; /* a corrupted state starts over */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)bytes[i];
        if (s->n > 0) {
            if (continues(s->pending, s->n, c)) {
                s->pending[s->n++] = c;
                if (s->n == seq_len(s->pending[0])) {
                    put(&k, s->pending, (size_t)s->n);
                    s->n = 0;
                }
                continue;
            }
            put(&k, fffd, 3); /* the prefix ends here; c starts afresh */
            s->n = 0;
        }
        int need = seq_len(c);
        if (need == 1)
            put(&k, &c, 1);
        else if (need == 0)
            put(&k, fffd, 3);
        else
            s->pending[s->n++] = c;
    }
    return k.n;
}

size_t infer_utf8_flush(struct infer_utf8 *s, char *out, size_t cap)
{
    size_t n = 0;
    if (s->n > 0 && cap >= 3) {
        memcpy(out, fffd, 3);
        n = 3;
    }
    s->n = 0;
    return n;
}
