/*
 * infer_sample.c: token samplers and stop strings.
 *
 * Order (as llama.cpp's common chain): logit_bias and the penalties
 * (repetition over a window of recent tokens; presence and frequency,
 * OpenAI's, over the generated tokens), then greedy if temperature <= 0,
 * else temperature, top-k, softmax, top-p, min-p, and a
 * draw from a seeded xoshiro256** stream. All scratch is allocated in
 * infer_sampler_new(), none per token. The generated tokens' counts are a
 * (n_vocab) array and the list of tokens with a count, so a step costs
 * the number of distinct tokens generated, not n_vocab.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "infer_model.h"

struct cand {
    float logit;
    float p;
    int id;
};

struct infer_sampler {
    struct infer_sampler_params p;
    int n_vocab;
    uint64_t rng[4];
    int32_t *window; /* (repeat_last_n) ring of recent tokens */
    int n_window, head;
    int32_t *count; /* (n_vocab) generated tokens' counts, or NULL */
    int32_t *seen;  /* (n_vocab) the tokens whose count is not 0 */
    int n_seen;
    struct infer_logit_bias *bias; /* (p.n_logit_bias) */
    struct cand *c;                /* (n_vocab) */
};

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t xoshiro_next(uint64_t *s)
{
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* Uniform in [0, 1). */
static double rng_uniform(uint64_t *s)
{
    return (double)(xoshiro_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

int infer_sampler_new(const struct infer_sampler_params *p, int n_vocab,
                      struct infer_sampler **out)
{
    *out = NULL;
    if (p == NULL || n_vocab < 1 || p->repeat_last_n < 0 ||
        p->n_logit_bias < 0 || (p->n_logit_bias > 0 && p->logit_bias == NULL))
        return INFER_ERR_ARG;
    for (int i = 0; i < p->n_logit_bias; i++)
        if (p->logit_bias[i].token < 0 || p->logit_bias[i].token >= n_vocab)
            return INFER_ERR_ARG;
    struct infer_sampler *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return INFER_ERR_NOMEM;
    s->p = *p;
    s->n_vocab = n_vocab;
    s->c = malloc((size_t)n_vocab * sizeof(*s->c));
    s->window = malloc(((size_t)p->repeat_last_n + 1) * sizeof(int32_t));
    bool counted = p->presence_penalty != 0 || p->frequency_penalty != 0;
    if (counted) {
        s->count = calloc((size_t)n_vocab, sizeof(int32_t));
        s->seen = malloc((size_t)n_vocab * sizeof(int32_t));
    }
    if (p->n_logit_bias > 0) {
        s->bias = malloc((size_t)p->n_logit_bias * sizeof(*s->bias));
        if (s->bias != NULL)
            memcpy(s->bias, p->logit_bias,
                   (size_t)p->n_logit_bias * sizeof(*s->bias));
    }
    s->p.logit_bias = s->bias;
    if (s->c == NULL || s->window == NULL ||
        (counted && (s->count == NULL || s->seen == NULL)) ||
        (p->n_logit_bias > 0 && s->bias == NULL)) {
        infer_sampler_free(s);
        return INFER_ERR_NOMEM;
    }
    infer_sampler_reset(s);
    *out = s;
    return INFER_OK;
}

void infer_sampler_free(struct infer_sampler *s)
{
    if (s == NULL)
        return;
    free(s->c);
    free(s->window);
    free(s->count);
    free(s->seen);
    free(s->bias);
    free(s);
}

void infer_sampler_reset(struct infer_sampler *s)
{
    uint64_t x = s->p.seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
    s->n_window = 0;
    s->head = 0;
    for (int i = 0; i < s->n_seen; i++)
        s->count[s->seen[i]] = 0;
    s->n_seen = 0;
}

void infer_sampler_accept(struct infer_sampler *s, int token, bool generated)
{
    if (generated && s->count != NULL && token >= 0 && token < s->n_vocab) {
        if (s->count[token] == 0)
            s->seen[s->n_seen++] = token;
        if (s->count[token] < INT32_MAX)
            s->count[token]++;
    }
    int cap = s->p.repeat_last_n;
    if (cap == 0)
        return;
    s->window[s->head] = token;
    s->head = (s->head + 1) % cap;
    if (s->n_window < cap)
        s->n_window++;
}

static int cmp_cand(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->logit != y->logit)
        return x->logit > y->logit ? -1 : 1;
    return x->id - y->id; /* ties: lower id first, for determinism */
}

/* Moves the k largest candidates to c[0..k) (unordered): quickselect. */
static void select_top(struct cand *c, int n, int k)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        struct cand piv = c[(lo + hi) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (cmp_cand(&c[i], &piv) < 0)
                i++;
            while (cmp_cand(&c[j], &piv) > 0)
                j--;
            if (i <= j) {
                struct cand t = c[i];
                c[i++] = c[j];
                c[j--] = t;
            }
        }
        if (k - 1 <= j)
            hi = j;
        else if (k - 1 >= i)
            lo = i;
        else
            break;
    }
}

static void penalise(struct infer_sampler *s, float *logits)
{
    for (int i = 0; i < s->p.n_logit_bias; i++)
        logits[s->bias[i].token] += s->bias[i].bias;
    for (int i = 0; i < s->n_seen; i++) {
        int t = s->seen[i];
        logits[t] -=
            (float)s->count[t] * s->p.frequency_penalty + s->p.presence_penalty;
    }
    float pen = s->p.repeat_penalty;
    if (pen == 1.0f || pen <= 0 || s->n_window == 0)
        return;
    /* A token repeated in the window is penalised once (as llama.cpp). */
    for (int i = 0; i < s->n_window; i++) {
        int t = s->window[i];
        bool seen = false;
        for (int j = 0; j < i && !seen; j++)
            seen = s->window[j] == t;
        if (seen || t < 0 || t >= s->n_vocab)
            continue;
        logits[t] = logits[t] > 0 ? logits[t] / pen : logits[t] * pen;
    }
}

int infer_sampler_sample(struct infer_sampler *s, float *logits)
{
    penalise(s, logits);
    int n = s->n_vocab;
    if (s->p.temperature <= 0) {
        int best = 0;
        for (int i = 1; i < n; i++)
            if (logits[i] > logits[best])
                best = i;
        return best;
    }
    struct cand *c = s->c;
    for (int i = 0; i < n; i++) {
        c[i].logit = logits[i] / s->p.temperature;
        c[i].id = i;
    }
    if (s->p.top_k > 0 && s->p.top_k < n) {
        select_top(c, n, s->p.top_k);
        n = s->p.top_k;
    }
    qsort(c, (size_t)n, sizeof(*c), cmp_cand);
    double sum = 0;
    for (int i = 0; i < n; i++) {
        c[i].p = expf(c[i].logit - c[0].logit);
        sum += c[i].p;
    }
    /* top-p: the smallest prefix whose mass reaches top_p. */
    if (s->p.top_p > 0 && s->p.top_p < 1) {
        double acc = 0;
        for (int i = 0; i < n; i++) {
            acc += c[i].p / sum;
            if (acc >= s->p.top_p) {
                n = i + 1;
                break;
            }
        }
    }
    /* min-p: drop tokens below min_p times the top probability. */
    if (s->p.min_p > 0) {
        int keep = 1;
        while (keep < n && c[keep].p >= s->p.min_p * c[0].p)
            keep++;
        n = keep;
    }
    sum = 0;
    for (int i = 0; i < n; i++)
        sum += c[i].p;
    double r = rng_uniform(s->rng) * sum, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += c[i].p;
        if (r < acc)
            return c[i].id;
    }
    return c[n - 1].id;
}

long infer_stop_find(const char *text, size_t len, const char *const *stops,
                     int n_stops, size_t *hold)
{
    long first = -1;
    size_t keep = 0;
    for (int i = 0; i < n_stops; i++) {
        size_t sl = strlen(stops[i]);
        if (sl == 0)
            continue;
        const char *hit = memmem(text, len, stops[i], sl);
        if (hit != NULL && (first < 0 || hit - text < first))
            first = hit - text;
        /* Longest proper prefix of the stop string ending the text. */
        size_t max = sl - 1 < len ? sl - 1 : len;
        for (size_t k = max; k > keep; k--) {
            if (memcmp(text + len - k, stops[i], k) == 0) {
                keep = k;
                break;
            }
        }
    }
    if (hold != NULL)
        *hold = first >= 0 ? 0 : keep;
    return first;
}
