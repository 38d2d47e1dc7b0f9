/*
 * arena_rating.c: battle sets (interned model names, records in vote order),
 * category tags and filters, per-visitor and per-prompt caps, and the pair
 * counts that Bradley-Terry works on. The fits are in arena_rating_fit.c,
 * the file readers in arena_rating_io.c.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "arena.h"
#include "arena_internal.h"

/* ------------------------------------------------------------------------
 * Status, clock
 * ---------------------------------------------------------------------- */

void arena__err_set(struct arena_err *err, const char *fmt, ...)
{
    if (err == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
}

const char *arena_strerror(int status)
{
    switch (status) {
    case ARENA_OK:
        return "ok";
    case ARENA_ERR_NOMEM:
        return "out of memory";
    case ARENA_ERR_IO:
        return "input/output error";
    case ARENA_ERR_PARSE:
        return "malformed input";
    case ARENA_ERR_INVALID:
        return "invalid argument";
    default:
        return "unknown status";
    }
}

double arena__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------------------
 * Tags and winners
 * ---------------------------------------------------------------------- */

static const struct {
    uint32_t tag;
    const char *name;
} tag_names[] = {
    {ARENA_TAG_CODING, "coding"},
    {ARENA_TAG_MULTI_TURN, "multi_turn"},
    {ARENA_TAG_LONG_PROMPT, "long_prompt"},
    {ARENA_TAG_IDENTITY_LEAK, "identity_leak"},
    {ARENA_TAG_HARD, "hard"},
    {ARENA_TAG_MATH, "math"},
    {ARENA_TAG_CREATIVE, "creative"},
};

uint32_t arena_tag_from_name(const char *name)
{
    for (size_t i = 0; i < sizeof(tag_names) / sizeof(tag_names[0]); i++)
        if (strcmp(name, tag_names[i].name) == 0)
            return tag_names[i].tag;
    return 0;
}

const char *arena_tag_name(uint32_t tag)
{
    for (size_t i = 0; i < sizeof(tag_names) / sizeof(tag_names[0]); i++)
        if (tag == tag_names[i].tag)
            return tag_names[i].name;
    return NULL;
}

int arena__winner_parse(const char *s, size_t len)
{
    /* By length first: this runs once per battle read. */
    switch (len) {
    case 1:
        return s[0] == 'a' ? ARENA_WINNER_A : s[0] == 'b' ? ARENA_WINNER_B : -1;
    case 3:
        return memcmp(s, "tie", 3) == 0 ? ARENA_WINNER_TIE : -1;
    case 4:
        return memcmp(s, "left", 4) == 0 ? ARENA_WINNER_A : -1;
    case 5:
        return memcmp(s, "right", 5) == 0 ? ARENA_WINNER_B : -1;
    case 7:
        if (memcmp(s, "model_", 6) != 0)
            return -1;
        return s[6] == 'a' ? ARENA_WINNER_A : s[6] == 'b' ? ARENA_WINNER_B : -1;
    case 8:
        return memcmp(s, "both_bad", 8) == 0 ? ARENA_WINNER_BOTHBAD : -1;
    case 13:
        return memcmp(s, "tie (bothbad)", 13) == 0 ? ARENA_WINNER_BOTHBAD : -1;
    default:
        return -1;
    }
}

/* ------------------------------------------------------------------------
 * String interning
 * ---------------------------------------------------------------------- */

void arena__strtab_init(struct arena__strtab *t)
{
    memset(t, 0, sizeof(*t));
}

void arena__strtab_cleanup(struct arena__strtab *t)
{
    free(t->pool);
    free(t->off);
    free(t->len);
    free(t->hash);
    free(t->head);
    free(t->slots);
    memset(t, 0, sizeof(*t));
}

/* The first 16 bytes of s, zero-padded, as two words. With limit, reads 16
 * bytes at once and masks (little-endian only, where the first bytes are
 * the low ones); otherwise copies len bytes. Both give the same words. */
static inline void head16(const char *s, size_t len, const char *limit,
                          uint64_t w[2])
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (limit != NULL && len <= 16 && limit - s >= 16) {
        memcpy(w, s, 16);
        if (len < 8) {
            w[0] &= (1ull << (8 * len)) - 1;
            w[1] = 0;
        } else if (len < 16) {
            w[1] &= (1ull << (8 * (len - 8))) - 1; /* len 8: all zero */
        }
        return;
    }
#endif
    (void)limit;
    w[0] = w[1] = 0;
    memcpy(w, s, len < 16 ? len : 16);
}

/* Multiply-xorshift mixing of the head words, then of the rest eight bytes
 * at a time; names are short, so this is a few multiplications. */
static inline uint64_t strtab_hash_words(const uint64_t w[2], const char *s,
                                         size_t len)
{
    uint64_t h = (w[0] ^ 0x9e3779b97f4a7c15ull) * 0xbf58476d1ce4e5b9ull;
    h ^= h >> 31;
    h = (h ^ w[1] ^ (len * 0xff51afd7ed558ccdull)) * 0x94d049bb133111ebull;
    for (size_t i = 16; i < len; i += 8) {
        uint64_t x = 0;
        memcpy(&x, s + i, len - i < 8 ? len - i : 8);
        h = (h ^ (h >> 29) ^ x) * 0xbf58476d1ce4e5b9ull;
    }
    return h ^ (h >> 32);
}

uint64_t arena__strtab_hash(const char *s, size_t len)
{
    uint64_t w[2];
    head16(s, len, NULL, w);
    return strtab_hash_words(w, s, len);
}

static inline int strtab_same(const struct arena__strtab *t, uint32_t id,
                              const char *s, size_t len, uint64_t h,
                              const uint64_t w[2])
{
    return t->hash[id] == h && t->len[id] == len && t->head[2 * id] == w[0] &&
           t->head[2 * id + 1] == w[1] &&
           (len <= 16 ||
            memcmp(t->pool + t->off[id] + 16, s + 16, len - 16) == 0);
}

static int32_t strtab_find_w(const struct arena__strtab *t, const char *s,
                             size_t len, uint64_t h, const uint64_t w[2])
{
    if (t->n_slots == 0)
        return -1;
    size_t mask = t->n_slots - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        uint32_t v = t->slots[i];
        if (v == 0)
            return -1;
        if (strtab_same(t, v - 1, s, len, h, w))
            return (int32_t)(v - 1);
    }
}

int32_t arena__strtab_find(const struct arena__strtab *t, const char *s,
                           size_t len, uint64_t h)
{
    uint64_t w[2];
    head16(s, len, NULL, w);
    return strtab_find_w(t, s, len, h, w);
}

int32_t arena__strtab_intern_at(struct arena__strtab *t, const char *s,
                                size_t len, const char *limit)
{
    uint64_t w[2];
    head16(s, len, limit, w);
    uint64_t h = strtab_hash_words(w, s, len);
    int32_t id = strtab_find_w(t, s, len, h, w);
    return id >= 0 ? id : arena__strtab_intern(t, s, len, h);
}

static int strtab_rehash(struct arena__strtab *t, size_t n_slots)
{
    uint32_t *slots = calloc(n_slots, sizeof(*slots));
    if (slots == NULL)
        return -1;
    for (size_t id = 0; id < t->n; id++) {
        size_t i = t->hash[id] & (n_slots - 1);
        while (slots[i] != 0)
            i = (i + 1) & (n_slots - 1);
        slots[i] = (uint32_t)id + 1;
    }
    free(t->slots);
    t->slots = slots;
    t->n_slots = n_slots;
    return 0;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * elem);
    if (q == NULL)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

int32_t arena__strtab_intern(struct arena__strtab *t, const char *s, size_t len,
                             uint64_t h)
{
    int32_t id = arena__strtab_find(t, s, len, h);
    if (id >= 0)
        return id;
    if (t->n >= INT32_MAX - 1 || len >= UINT32_MAX / 2 ||
        t->pool_len + len + 1 > UINT32_MAX)
        return -1;
    if ((t->n + 1) * 2 > t->n_slots &&
        strtab_rehash(t, t->n_slots ? t->n_slots * 2 : 64) != 0)
        return -1;
    size_t cap = t->cap;
    if (t->n + 1 > cap) {
        size_t c = cap;
        if (grow((void **)&t->off, &c, t->n + 1, sizeof(*t->off)) != 0)
            return -1;
        c = cap;
        if (grow((void **)&t->len, &c, t->n + 1, sizeof(*t->len)) != 0)
            return -1;
        c = cap;
        if (grow((void **)&t->hash, &c, t->n + 1, sizeof(*t->hash)) != 0)
            return -1;
        c = cap;
        if (grow((void **)&t->head, &c, t->n + 1, 2 * sizeof(*t->head)) != 0)
            return -1;
        t->cap = c;
    }
    if (grow((void **)&t->pool, &t->pool_cap, t->pool_len + len + 1, 1) != 0)
        return -1;
    memcpy(t->pool + t->pool_len, s, len);
    t->pool[t->pool_len + len] = '\0';
    id = (int32_t)t->n;
    t->off[id] = (uint32_t)t->pool_len;
    t->len[id] = (uint32_t)len;
    t->hash[id] = h;
    head16(s, len, NULL, t->head + 2 * id);
    t->pool_len += len + 1;
    t->n++;
    size_t mask = t->n_slots - 1;
    size_t i = h & mask;
    while (t->slots[i] != 0)
        i = (i + 1) & mask;
    t->slots[i] = (uint32_t)id + 1;
    return id;
}

/* ------------------------------------------------------------------------
 * Battle sets
 * ---------------------------------------------------------------------- */

struct arena_battles *arena_battles_new(void)
{
    struct arena_battles *set = calloc(1, sizeof(*set));
    if (set == NULL)
        return NULL;
    arena__strtab_init(&set->models);
    arena__strtab_init(&set->langs);
    if (arena__strtab_intern(&set->langs, "", 0, arena__strtab_hash("", 0)) !=
        0) {
        arena_battles_free(set);
        return NULL;
    }
    return set;
}

void arena_battles_free(struct arena_battles *set)
{
    if (set == NULL)
        return;
    arena__strtab_cleanup(&set->models);
    arena__strtab_cleanup(&set->langs);
    if (set->items != NULL)
        munmap(set->items, set->cap * sizeof(*set->items));
    free(set);
}

int32_t arena_battles_intern(struct arena_battles *set, const char *name,
                             size_t len)
{
    return arena__strtab_intern(&set->models, name, len,
                                arena__strtab_hash(name, len));
}

int32_t arena_battles_find(const struct arena_battles *set, const char *name)
{
    size_t len = strlen(name);
    return arena__strtab_find(&set->models, name, len,
                              arena__strtab_hash(name, len));
}

int32_t arena_battles_intern_lang(struct arena_battles *set, const char *name,
                                  size_t len)
{
    int32_t id = arena__strtab_intern(&set->langs, name, len,
                                      arena__strtab_hash(name, len));
    return id > UINT16_MAX ? -1 : id;
}

int32_t arena_battles_find_lang(const struct arena_battles *set,
                                const char *name)
{
    size_t len = strlen(name);
    return arena__strtab_find(&set->langs, name, len,
                              arena__strtab_hash(name, len));
}

size_t arena_battles_n_models(const struct arena_battles *set)
{
    return set->models.n;
}

const char *arena_battles_model_name(const struct arena_battles *set,
                                     uint32_t id)
{
    return id < set->models.n ? arena__strtab_name(&set->models, id) : NULL;
}

/* The records live in an anonymous mapping that grows with mremap (no
 * copy) and asks for transparent huge pages: a file of millions of battles
 * would otherwise take one page fault per 4 KiB, which costs more than
 * parsing it. MAP_NORESERVE because readers reserve an upper bound of
 * which they touch only what they fill. */
int arena__battles_reserve(struct arena_battles *set, size_t extra)
{
    size_t elem = sizeof(*set->items);
    if (extra > SIZE_MAX / elem / 2 - set->n)
        return ARENA_ERR_NOMEM;
    size_t need = set->n + extra;
    if (need <= set->cap)
        return ARENA_OK;
    size_t cap = set->cap ? set->cap : 1024;
    while (cap < need)
        cap *= 2;
    void *p;
    if (set->items == NULL)
        p = mmap(NULL, cap * elem, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    else
        p = mremap(set->items, set->cap * elem, cap * elem, MREMAP_MAYMOVE);
    if (p == MAP_FAILED)
        return ARENA_ERR_NOMEM;
    madvise(p, cap * elem, MADV_HUGEPAGE);
    set->items = p;
    set->cap = cap;
    return ARENA_OK;
}

int arena_battles_add(struct arena_battles *set, const struct arena_battle *b)
{
    if (b->model_a >= set->models.n || b->model_b >= set->models.n ||
        b->model_a == b->model_b || b->winner >= ARENA_WINNER_COUNT ||
        b->lang >= set->langs.n || !(b->weight >= 0.0f))
        return ARENA_ERR_INVALID;
    if (arena__battles_reserve(set, 1) != ARENA_OK)
        return ARENA_ERR_NOMEM;
    set->items[set->n++] = *b;
    return ARENA_OK;
}

size_t arena_battles_count(const struct arena_battles *set)
{
    return set->n;
}

const struct arena_battle *arena_battles_items(const struct arena_battles *set)
{
    return set->items;
}

/* ------------------------------------------------------------------------
 * Caps and filters
 * ---------------------------------------------------------------------- */

/* Counts per id through a small open-addressing map (ids are sparse 32-bit
 * values: visitor ids, prompt hashes). */
struct id_counts {
    uint32_t *key; /* (n_slots,) 0 = empty */
    uint32_t *cnt; /* (n_slots,) */
    size_t n_slots;
};

static int id_counts_build(struct id_counts *m, const struct arena_battles *s,
                           int prompt)
{
    size_t n_slots = 64;
    while (n_slots < s->n * 2)
        n_slots *= 2;
    m->key = calloc(n_slots, sizeof(*m->key));
    m->cnt = calloc(n_slots, sizeof(*m->cnt));
    m->n_slots = n_slots;
    if (m->key == NULL || m->cnt == NULL)
        return -1;
    for (size_t i = 0; i < s->n; i++) {
        uint32_t k = prompt ? s->items[i].prompt : s->items[i].visitor;
        if (k == 0)
            continue;
        size_t j = (k * 0x9e3779b1u) & (n_slots - 1);
        while (m->key[j] != 0 && m->key[j] != k)
            j = (j + 1) & (n_slots - 1);
        m->key[j] = k;
        m->cnt[j]++;
    }
    return 0;
}

static uint32_t id_counts_get(const struct id_counts *m, uint32_t k)
{
    size_t j = (k * 0x9e3779b1u) & (m->n_slots - 1);
    while (m->key[j] != 0 && m->key[j] != k)
        j = (j + 1) & (m->n_slots - 1);
    return m->key[j] == k ? m->cnt[j] : 0;
}

int arena_battles_apply_caps(struct arena_battles *set, uint32_t visitor_cap,
                             uint32_t prompt_cap)
{
    struct id_counts v = {0}, p = {0};
    int rc = ARENA_ERR_NOMEM;
    if ((visitor_cap > 0 && id_counts_build(&v, set, 0) != 0) ||
        (prompt_cap > 0 && id_counts_build(&p, set, 1) != 0))
        goto out;
    for (size_t i = 0; i < set->n; i++) {
        struct arena_battle *b = &set->items[i];
        double w = 1.0;
        if (visitor_cap > 0 && b->visitor != 0) {
            uint32_t c = id_counts_get(&v, b->visitor);
            if (c > visitor_cap)
                w *= (double)visitor_cap / c;
        }
        if (prompt_cap > 0 && b->prompt != 0) {
            uint32_t c = id_counts_get(&p, b->prompt);
            if (c > prompt_cap)
                w *= (double)prompt_cap / c;
        }
        b->weight = (float)w;
    }
    rc = ARENA_OK;
out:
    free(v.key);
    free(v.cnt);
    free(p.key);
    free(p.cnt);
    return rc;
}

int arena_rating_filter_match(const struct arena_rating_filter *f,
                              const struct arena_battle *b)
{
    if (f == NULL)
        return 1;
    if ((b->tags & f->require_tags) != f->require_tags)
        return 0;
    if ((b->tags & f->exclude_tags) != 0)
        return 0;
    if (f->exclude_ties && b->winner >= ARENA_WINNER_TIE)
        return 0;
    if (f->lang != 0 && b->lang != f->lang)
        return 0;
    return 1;
}

/* ------------------------------------------------------------------------
 * Pair counts
 * ---------------------------------------------------------------------- */

struct arena_pairs *arena_pairs_new(size_t n_models)
{
    struct arena_pairs *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->n = n_models;
    size_t cells = n_models * n_models * ARENA_WINNER_COUNT;
    if (n_models > 0 && cells / n_models / n_models != ARENA_WINNER_COUNT) {
        free(p);
        return NULL;
    }
    p->count = calloc(cells ? cells : 1, sizeof(*p->count));
    p->weight = calloc(cells ? cells : 1, sizeof(*p->weight));
    if (p->count == NULL || p->weight == NULL) {
        arena_pairs_free(p);
        return NULL;
    }
    return p;
}

void arena_pairs_free(struct arena_pairs *pairs)
{
    if (pairs == NULL)
        return;
    free(pairs->count);
    free(pairs->weight);
    free(pairs);
}

int arena_pairs_add(struct arena_pairs *pairs, uint32_t a, uint32_t b,
                    enum arena_winner winner, uint64_t count, double weight_sum)
{
    if (a >= pairs->n || b >= pairs->n || a == b ||
        (unsigned)winner >= ARENA_WINNER_COUNT || !(weight_sum >= 0.0))
        return ARENA_ERR_INVALID;
    size_t i = ((size_t)a * pairs->n + b) * ARENA_WINNER_COUNT + winner;
    pairs->count[i] += count;
    pairs->weight[i] += weight_sum;
    return ARENA_OK;
}

struct arena_pairs *
arena_pairs_from_battles(const struct arena_battles *set,
                         const struct arena_rating_filter *f)
{
    struct arena_pairs *p = arena_pairs_new(set->models.n);
    if (p == NULL)
        return NULL;
    size_t n = p->n;
    for (size_t i = 0; i < set->n; i++) {
        const struct arena_battle *b = &set->items[i];
        if (f != NULL && !arena_rating_filter_match(f, b))
            continue;
        size_t c = ((size_t)b->model_a * n + b->model_b) * ARENA_WINNER_COUNT +
                   b->winner;
        p->count[c]++;
        p->weight[c] += b->weight;
    }
    return p;
}

size_t arena_pairs_n_models(const struct arena_pairs *pairs)
{
    return pairs->n;
}

uint64_t arena_pairs_model_battles(const struct arena_pairs *pairs, uint32_t m)
{
    if (m >= pairs->n)
        return 0;
    uint64_t total = 0;
    size_t n = pairs->n;
    for (size_t j = 0; j < n; j++)
        for (int w = 0; w < ARENA_WINNER_COUNT; w++)
            total += pairs->count[(m * n + j) * ARENA_WINNER_COUNT + w] +
                     pairs->count[(j * n + m) * ARENA_WINNER_COUNT + w];
    return total;
}
