/*
 * arena_internal.h: declarations shared by arena/'s own files only.
 *
 * Names private to the module but not to one file take a double underscore
 * (arena__strtab_find). Nothing here is for web/ or main.
 */
#ifndef ARENA_INTERNAL_H
#define ARENA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"

/* ------------------------------------------------------------------------
 * Ratings
 * ---------------------------------------------------------------------- */

/* An interning table of short strings: ids 0, 1, 2, ... in insertion order.
 * Open addressing over a power-of-two slot array; names live in one growing
 * byte pool (offsets, not pointers, so the pool may move). */
struct arena__strtab {
    char *pool; /* (pool_len,) names, each followed by a NUL */
    size_t pool_len, pool_cap;
    uint32_t *off;   /* (n,) offset of each name in pool */
    uint32_t *len;   /* (n,) length without the NUL */
    uint64_t *hash;  /* (n,) hash of each name */
    uint64_t *head;  /* (n, 2) first 16 bytes of each name, zero-padded */
    size_t n, cap;   /* names used, allocated */
    uint32_t *slots; /* (n_slots,) id + 1, 0 = empty */
    size_t n_slots;  /* power of two, kept >= 2 * n */
};

void arena__strtab_init(struct arena__strtab *t);
void arena__strtab_cleanup(struct arena__strtab *t);
uint64_t arena__strtab_hash(const char *s, size_t len);
/* The id of s, or -1. Cannot fail. */
int32_t arena__strtab_find(const struct arena__strtab *t, const char *s,
                           size_t len, uint64_t h);
/* The id of s, added if new; -1 when out of memory. */
int32_t arena__strtab_intern(struct arena__strtab *t, const char *s, size_t len,
                             uint64_t h);
/* The same, for a name inside a buffer that is readable up to limit: when
 * 16 bytes from s are, the name is read as two words and compared without
 * memcmp (the CSV reader's hot path). */
int32_t arena__strtab_intern_at(struct arena__strtab *t, const char *s,
                                size_t len, const char *limit);
static inline const char *arena__strtab_name(const struct arena__strtab *t,
                                             uint32_t id)
{
    return t->pool + t->off[id];
}

struct arena_battles {
    struct arena__strtab models;
    struct arena__strtab langs; /* id 0 is "" (unknown) */
    struct arena_battle *items; /* (n,) in vote order */
    size_t n, cap;
};

/* Makes room for at least extra more items. ARENA_OK or ARENA_ERR_NOMEM. */
int arena__battles_reserve(struct arena_battles *set, size_t extra);

/* Counts per ordered pair: entry ((a * n) + b) * ARENA_WINNER_COUNT + w. */
struct arena_pairs {
    size_t n;
    uint64_t *count; /* (n, n, ARENA_WINNER_COUNT) battles */
    double *weight;  /* (n, n, ARENA_WINNER_COUNT) weight sums */
};

/* Parses a winner label (model_a, model_b, tie, tie (bothbad), both_bad,
 * left, right, a, b). Returns the enum arena_winner or -1. */
int arena__winner_parse(const char *s, size_t len);

/* Monotonic wall clock in seconds. */
double arena__now(void);

#endif
