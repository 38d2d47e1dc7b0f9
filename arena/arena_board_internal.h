/*
 * arena_board_internal.h: what the files of the leaderboard cache
 * (arena_board*.c) share; not for other modules.
 */
#ifndef ARENA_BOARD_INTERNAL_H
#define ARENA_BOARD_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "arena_internal.h"

struct db_conn;

/* The touch counter of arena_board_touch(), and the mutex and condition
 * that the board threads sleep on (also guarding each board's stop flag).
 * The condition uses the realtime clock (static initialiser). */
extern atomic_uint_fast64_t arena__board_touches;
extern pthread_mutex_t arena__board_mu;
extern pthread_cond_t arena__board_cv;

/* The votes as the leaderboard holds them (arena_board_load.c). Owned by
 * one thread at a time. */
struct arena__store {
    struct arena_battles *set; /* every vote, in load (= vote id) order */
    int64_t *vote_id;          /* (n,) the vote's database id */
    int64_t *vote_ts;          /* (n,) its time, unix seconds */
    size_t n, cap;
    int64_t max_id;     /* highest vote id held */
    int32_t *model_map; /* (model_map_n,) db model id -> set id */
    size_t model_map_n;
    int models_loaded;
    uint64_t *prompt_key; /* (prompt_slots,) prompt text hash */
    uint32_t *prompt_val; /* (prompt_slots,) its id, 0 = empty */
    size_t prompt_slots, n_prompts;
    uint64_t skipped; /* rows that named no known model */
};

int arena__store_init(struct arena__store *st);
void arena__store_free(struct arena__store *st);
/* Interns every model of the table (name order). */
int arena__store_models(struct arena__store *st, struct db_conn *c,
                        struct arena_err *err);
/* The low end of the re-read window (ids above it are fetched again by
 * every load, to catch late commits) and how many ids above it are held. */
int64_t arena__store_window(const struct arena__store *st, uint64_t *held);
/* Fetches the votes not yet held; *added gets how many. */
int arena__store_load(struct arena__store *st, struct db_conn *c,
                      int long_prompt_bytes, int *added, struct arena_err *err);

/* What the answers show beside a rating, per set model id. */
struct arena__model_meta {
    char *display_name, *organisation, *licence;
    double price_in, price_out;   /* per million tokens */
    double ttft_ms, tokens_per_s; /* NAN when unknown */
};

/* One category of the snapshot. */
struct arena__board_cat {
    char name[48];
    struct arena_rating_filter filter;
    uint64_t battles;
    char *json[2]; /* leaderboard answer per method (BT, Elo) */
    size_t len[2];
    char *matrices; /* matrices answer */
    size_t matrices_len;
};

/* An immutable answer set; readers hold a reference. */
struct arena_board_snap {
    atomic_int refs;
    uint64_t votes;     /* every vote held, counted or not */
    double computed_at; /* unix seconds, 0 = never */
    double compute_s;   /* how long the build took */
    size_t n_cats;
    struct arena__board_cat *cats;
    char *categories; /* the categories answer */
    size_t categories_len;
    char *series[2]; /* vote volume answer per bucket (hour, day) */
    size_t series_len[2];
};

/* Battle counts per time bucket, from SQL (arena_board.c). */
struct arena__bucket_counts {
    int64_t *t;      /* (n,) bucket start, unix seconds, ascending */
    uint64_t *count; /* (n,) */
    size_t n;
};

/* Builds a snapshot from the store (caps applied to its weights) and the
 * model metadata (n_meta entries, by set model id; may be fewer than the
 * set's models). battles[2] (hour, day) may hold empty counts. */
int arena__board_build(struct arena__store *st,
                       const struct arena__model_meta *meta, size_t n_meta,
                       const struct arena__bucket_counts battles[2],
                       const struct arena_board_opts *o,
                       struct arena_board_snap **out, struct arena_err *err);

void arena__board_snap_free(struct arena_board_snap *s);

/* A database for a command (arena_board_cmd.c): url (NULL: DATABASE_URL),
 * else the embedded cluster of data_dir (NULL: ./var). Returns 0, or 1
 * after printing one line to stderr. */
struct db_cluster;
struct db_pool;
struct arena__cmd_db {
    struct db_cluster *cluster;
    struct db_pool *pool;
    struct db_conn *conn;
};
int arena__cmd_db_open(const char *cmd, const char *url, const char *data_dir,
                       struct arena__cmd_db *d);
void arena__cmd_db_close(struct arena__cmd_db *d);

#endif
