/*
 * arena_internal.h: declarations shared by arena/'s own files only.
 *
 * Names private to the module but not to one file take a double underscore
 * (arena__strtab_find). Nothing here is for web/ or main.
 */
#ifndef ARENA_INTERNAL_H
#define ARENA_INTERNAL_H

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
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

/* ------------------------------------------------------------------------
 * The arena (issue 5): registry, battles, votes, sampling
 * ---------------------------------------------------------------------- */

struct db_conn;
struct infer_engine;

/* One model of the registry; immutable once in a snapshot. */
struct arena__model {
    int64_t id;
    char *name, *display_name, *organisation, *licence;
    char *backend;                                      /* "local" | "remote" */
    char *path, *base_url, *remote_model, *api_key_env; /* "" if none */
    char *system_prompt;
    double price_in, price_out; /* per million tokens */
    double weight;
    bool enabled;
    json_t *generation;          /* object: temperature, top_p, ... */
    struct infer_engine *engine; /* borrowed from the hub; NULL: none */
};

/* The registry as of one moment: readers take a reference and read it
 * without locks; a change builds a new snapshot and swaps it in. */
struct arena__models {
    atomic_int refs;
    size_t n;
    struct arena__model *items; /* (n,) by id */
};

/* One vote waiting for the writer. Lives on the handler's stack. */
struct arena__vote {
    /* in */
    char uuid[37];
    char vhash[67]; /* "\x" + 64 hex: bytea text */
    char iphash[67];
    const char *winner;
    /* out, valid once done */
    int status; /* ARENA_OK, ARENA_ERR_DB, or 1 = not inserted */
    int64_t model_a, model_b;
    bool counted;
    char reason[64];
    sem_t done; /* posted by the writer once the result is in */
    struct arena__vote *next;
};

struct arena__pair {
    int64_t a, b;   /* model ids, a < b */
    double n;       /* counted votes between them */
    double score_a; /* a's wins + ties / 2 */
};

struct arena {
    struct arena_opts o;
    json_t *models_cfg, *leak_cfg; /* references to the config sections */
    char **leak_terms;             /* (n_leak,) extra identity terms */
    size_t n_leak;

    pthread_mutex_t reg_mu; /* guards snap (the pointer) */
    struct arena__models *snap;

    pthread_mutex_t health_mu; /* guards the failure record */
    struct {
        int64_t id;
        double last_error; /* arena__now() of the last failure */
        int errors;        /* failures in a row */
    } * health;
    size_t n_health, cap_health;

    pthread_mutex_t pair_mu; /* guards the pair statistics */
    struct arena__pair *pairs;
    size_t n_pairs;
    double pairs_at; /* arena__now() of the last load; 0 = never */

    pthread_mutex_t rng_mu;
    uint64_t rng;

    /* the vote writers */
    pthread_mutex_t vq_mu;
    pthread_cond_t vq_cond; /* writers wait for votes */
    struct arena__vote *vq_head, *vq_tail;
    bool vq_stop;
    pthread_t *writers;
    int n_writers;
};

/* Formats a message into err->msg (err may be NULL). Cannot fail. */
void arena__err_set(struct arena_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A pooled connection, or ARENA_ERR_DB with err filled. */
int arena__db_get(struct arena *a, struct db_conn **c, struct arena_err *err);
void arena__db_put(struct arena *a, struct db_conn *c);
/* "\x" + hex of n bytes into out (2 * n + 3 bytes). */
void arena__bytea(const uint8_t *b, size_t n, char *out);
/* A uniformly random 64-bit value (seeded from getrandom). */
uint64_t arena__rand(struct arena *a);
/* API id "b_" + 32 hex <-> uuid text. parse returns false if malformed. */
bool arena__id_parse(const char *id, char uuid[37]);
void arena__id_format(const char *uuid, char out[35]);

/* Registry (arena_registry.c). */
int arena__registry_load(struct arena *a, struct arena_err *err);
int arena__registry_seed(struct arena *a, struct arena_err *err);
struct arena__models *arena__models_get(struct arena *a);
void arena__models_put(struct arena__models *m);
const struct arena__model *arena__model_by_id(const struct arena__models *m,
                                              int64_t id);
const struct arena__model *arena__model_by_name(const struct arena__models *m,
                                                const char *name);
json_t *arena__model_json(const struct arena__model *m, bool admin);
/* Health: a model that failed within the last ARENA_COOLDOWN_S seconds is
 * left out of sampling. */
#define ARENA_COOLDOWN_S 60.0
bool arena__model_healthy(struct arena *a, int64_t id);
void arena__model_report(struct arena *a, int64_t id, bool failed);

/* Sampling (arena_sample.c): two distinct indices into m for an
 * anonymous battle. ARENA_OK or ARENA_ERR_NO_MODELS. */
int arena__sample_pair(struct arena *a, const struct arena__models *m,
                       size_t *i, size_t *j);
/* Pair weights for the active rule (exposed for tests). w gets, for each
 * candidate pair, weight_i * weight_j * (sqrt(v / (n + 1)) -
 * sqrt(v / (n + 2))) with v = p (1 - p) from the pair's record. */
double arena__active_weight(double n, double score_a, double wa, double wb);

/* Votes (arena_vote.c). */
int arena__votes_start(struct arena *a, struct arena_err *err);
void arena__votes_stop(struct arena *a);
/* Queues v and waits until its transaction is over. */
void arena__vote_wait(struct arena *a, struct arena__vote *v);

#endif
