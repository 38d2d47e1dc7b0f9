/*
 * arena.h: the domain module's one public header.
 *
 * arena/ owns the model registry, battles and turns, votes, pair sampling,
 * category tags, ratings (Elo, Bradley-Terry, bootstrap), the leaderboard
 * cache, and the export and import formats. It uses db/ and inference/.
 */
#ifndef ARENA_H
#define ARENA_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* ------------------------------------------------------------------------
 * Status and errors (shared by the whole module)
 * ---------------------------------------------------------------------- */

enum arena_status {
    ARENA_OK = 0,
    ARENA_ERR_NOMEM = -1,   /* an allocation failed */
    ARENA_ERR_IO = -2,      /* a file could not be opened, mapped or read */
    ARENA_ERR_PARSE = -3,   /* malformed input (line number in the err) */
    ARENA_ERR_INVALID = -4, /* bad argument (unknown model, option value) */
};

/* Human-readable detail of the last failure, owned by the caller. Filling it
 * never allocates. */
struct arena_err {
    char msg[256];
};

/* A static string naming the status. Cannot fail. */
const char *arena_strerror(int status);

/* ------------------------------------------------------------------------
 * Ratings: battles, pair counts, Elo, Bradley-Terry, bootstrap
 *
 * Pure functions over memory: no database, no HTTP, no logging. A battle
 * set (struct arena_battles) holds interned model names and battle records
 * in vote order; struct arena_pairs holds the counts per ordered model pair
 * and outcome, which is all Bradley-Terry needs (the database can fill it
 * straight from a GROUP BY). arena_ratings_bt() and arena_ratings_elo()
 * return a struct arena_ratings the caller frees. Threads: every object is
 * owned by one thread at a time; arena_ratings_bt() starts its own worker
 * threads for the bootstrap and joins them before it returns.
 * ---------------------------------------------------------------------- */

enum arena_winner {
    ARENA_WINNER_A = 0,       /* "model_a" ("left" in llmfao files) */
    ARENA_WINNER_B = 1,       /* "model_b" ("right") */
    ARENA_WINNER_TIE = 2,     /* "tie" */
    ARENA_WINNER_BOTHBAD = 3, /* "tie (bothbad)" ("both_bad") */
};
#define ARENA_WINNER_COUNT 4

/* Category tags of a battle, as bit flags. */
enum arena_tag {
    ARENA_TAG_CODING = 1u << 0,        /* the prompt asks for code */
    ARENA_TAG_MULTI_TURN = 1u << 1,    /* more than one turn */
    ARENA_TAG_LONG_PROMPT = 1u << 2,   /* prompt over the long threshold */
    ARENA_TAG_IDENTITY_LEAK = 1u << 3, /* a model named itself: flagged */
    ARENA_TAG_HARD = 1u << 4,          /* hard prompt (classifier) */
    ARENA_TAG_MATH = 1u << 5,
    ARENA_TAG_CREATIVE = 1u << 6,
};

/* The flag for a tag name ("coding", "multi_turn", "long_prompt",
 * "identity_leak", "hard", "math", "creative"), or 0 if unknown. */
uint32_t arena_tag_from_name(const char *name);
/* The name of one flag, or NULL. */
const char *arena_tag_name(uint32_t tag);

/* One battle with its vote. 28 bytes; a set of 2 million is 56 MB. */
struct arena_battle {
    uint32_t model_a; /* model id in the battle set */
    uint32_t model_b;
    uint32_t tags;    /* ARENA_TAG_* flags */
    float weight;     /* 1 normally; caps and down-weighting lower it */
    uint32_t visitor; /* visitor id (0: unknown), for per-visitor caps */
    uint32_t prompt;  /* prompt id or hash (0: unknown), for repeats */
    uint16_t lang;    /* language id in the battle set (0: unknown) */
    uint8_t winner;   /* enum arena_winner */
    uint8_t reserved;
};

struct arena_battles; /* opaque */

/* An empty battle set, or NULL when out of memory. Free with
 * arena_battles_free(). */
struct arena_battles *arena_battles_new(void);
void arena_battles_free(struct arena_battles *set);

/* The id of a model name (len bytes, need not be NUL-terminated), adding it
 * if new; ids are 0, 1, 2, ... in order of first appearance. Returns the id,
 * or -1 when out of memory. */
int32_t arena_battles_intern(struct arena_battles *set, const char *name,
                             size_t len);
/* The id of a known model, or -1. Cannot fail. */
int32_t arena_battles_find(const struct arena_battles *set, const char *name);
/* The same for languages ("en", "zh", ...); ids start at 1, 0 = unknown. */
int32_t arena_battles_intern_lang(struct arena_battles *set, const char *name,
                                  size_t len);
int32_t arena_battles_find_lang(const struct arena_battles *set,
                                const char *name);
size_t arena_battles_n_models(const struct arena_battles *set);
/* Borrowed, NUL-terminated, valid while the set lives. NULL if out of range.
 */
const char *arena_battles_model_name(const struct arena_battles *set,
                                     uint32_t id);

/* Appends a copy of *b (its model ids must exist in the set). Returns
 * ARENA_OK, ARENA_ERR_INVALID for a bad id or winner, ARENA_ERR_NOMEM. */
int arena_battles_add(struct arena_battles *set, const struct arena_battle *b);
size_t arena_battles_count(const struct arena_battles *set);
/* The records in vote order; borrowed until the next add or read. */
const struct arena_battle *arena_battles_items(const struct arena_battles *set);

/* Appends the battles of a CSV file (RFC 4180: header row, quoted fields
 * with commas, newlines and doubled quotes, LF or CRLF). Model columns are
 * model_a,model_b or left,right; winner is model_a, model_b, tie,
 * tie (bothbad), both_bad, left or right. An optional weight column is
 * read. n_threads > 1 parses parts of the file in parallel; the result does
 * not depend on it. Returns ARENA_OK, ARENA_ERR_IO, ARENA_ERR_PARSE (err
 * names the line) or ARENA_ERR_NOMEM. On failure no battle is added
 * (model names already seen may stay interned). */
int arena_battles_read_csv(struct arena_battles *set, const char *path,
                           int n_threads, struct arena_err *err);
/* Appends the battles of a JSONL file, one object per line with at least
 * model_a, model_b and winner; optional weight (number), language (string)
 * and tags (array of tag names) are read. Same returns as read_csv. */
int arena_battles_read_jsonl(struct arena_battles *set, const char *path,
                             struct arena_err *err);

/* Down-weighting: sets each battle's weight to the product of
 * min(1, visitor_cap / votes of its visitor) and
 * min(1, prompt_cap / battles with its prompt), so a visitor counts for at
 * most visitor_cap votes and a prompt for at most prompt_cap battles. A cap
 * of 0 disables it; id 0 (unknown) is never capped. Returns ARENA_OK or
 * ARENA_ERR_NOMEM. */
int arena_battles_apply_caps(struct arena_battles *set, uint32_t visitor_cap,
                             uint32_t prompt_cap);

/* Which battles count. Zero-initialised means all of them. */
struct arena_rating_filter {
    uint32_t require_tags; /* every one of these flags must be set */
    uint32_t exclude_tags; /* none of these may be set */
    int exclude_ties;      /* drop tie and tie (bothbad) */
    uint16_t lang;         /* only this language id; 0 = any */
};
/* Whether a battle passes the filter. Cannot fail. */
int arena_rating_filter_match(const struct arena_rating_filter *f,
                              const struct arena_battle *b);

/* Counts per ordered pair (a, b) and outcome: integer counts and weight
 * sums. */
struct arena_pairs; /* opaque */

/* Empty counts over n_models models, or NULL when out of memory. Dense:
 * 64 bytes per ordered pair (150 models: 1.4 MB; 1000 models: 64 MB). */
struct arena_pairs *arena_pairs_new(size_t n_models);
void arena_pairs_free(struct arena_pairs *pairs);
/* Adds count battles of total weight weight_sum between a and b with the
 * given outcome (a == b is rejected). Returns ARENA_OK or
 * ARENA_ERR_INVALID. */
int arena_pairs_add(struct arena_pairs *pairs, uint32_t a, uint32_t b,
                    enum arena_winner winner, uint64_t count,
                    double weight_sum);
/* The counts of the battles of a set that pass a filter (NULL: all). NULL
 * when out of memory. */
struct arena_pairs *
arena_pairs_from_battles(const struct arena_battles *set,
                         const struct arena_rating_filter *f);
size_t arena_pairs_n_models(const struct arena_pairs *pairs);
/* Battles (count) that model m took part in. */
uint64_t arena_pairs_model_battles(const struct arena_pairs *pairs, uint32_t m);

enum arena_rating_method {
    ARENA_RATING_BT = 0,  /* Bradley-Terry maximum likelihood */
    ARENA_RATING_ELO = 1, /* online Elo in vote order */
};

struct arena_rating_opts {
    double elo_k;         /* 4 */
    double elo_scale;     /* 400 */
    double elo_base;      /* 10 */
    double elo_initial;   /* 1000 */
    int bootstrap;        /* rounds for intervals, 0 = none; 1000 */
    uint64_t seed;        /* bootstrap RNG seed; 1 */
    int n_threads;        /* bootstrap threads, <= 0: online CPUs */
    int32_t anchor;       /* model id fixed to anchor_rating; -1 = none */
    double anchor_rating; /* rating of the anchor */
    double tol;           /* BT convergence, max |step| in beta; 1e-10 */
    double prior;         /* virtual ties per model when needed; 1 */
    uint64_t min_battles; /* fewer battles: provisional; 100 */
    double ci_level;      /* interval coverage; 0.95 */
};
/* Fills the defaults above. Cannot fail. */
void arena_rating_opts_init(struct arena_rating_opts *opts);

struct arena_rating {
    double rating; /* Elo scale; NAN for a model without battles */
    double ci_low; /* NAN without bootstrap (and for Elo) */
    double ci_high;
    uint64_t battles; /* battles the model took part in */
    int rank_ub;      /* 1 + models whose ci_low > this ci_high */
    int provisional;  /* battles < min_battles */
};

struct arena_ratings {
    enum arena_rating_method method;
    size_t n_models;             /* as in the pairs or set */
    struct arena_rating *models; /* (n_models,) indexed by model id */
    uint32_t *order;             /* (n_ranked,) ids, best rating first */
    size_t n_ranked;             /* models with battles */
    double *beta;                /* (n_models,) BT natural-log strengths,
                                    sum zero over ranked; NULL for Elo */
    double scale;                /* rating points per natural-log unit:
                                    elo_scale / ln(elo_base) */
    int prior_used;              /* the MLE did not exist: prior applied */
    int iterations;              /* Newton iterations of the main fit */
    int bootstrap;               /* rounds done */
    int rounds_fallback;         /* rounds that needed the slow path */
    double boot_iterations;      /* mean quasi-Newton steps per round */
    double fit_s, bootstrap_s;   /* wall-clock seconds */
};
void arena_ratings_free(struct arena_ratings *r);

/* Bradley-Terry over pair counts (ties half a win each side), ratings
 * 1000 + 400 * beta / ln 10 with mean 1000 over the models with battles, or
 * shifted so opts->anchor has opts->anchor_rating (in every bootstrap round
 * too). With opts->bootstrap > 0, percentile intervals from that many
 * multinomial resamplings of the pair-outcome cells, reproducible from
 * opts->seed whatever the thread count. Returns ARENA_OK,
 * ARENA_ERR_INVALID (bad option, anchor without battles) or
 * ARENA_ERR_NOMEM; *out is set only on success. */
int arena_ratings_bt(const struct arena_pairs *pairs,
                     const struct arena_rating_opts *opts,
                     struct arena_ratings **out, struct arena_err *err);

/* Online Elo over the battles of a set in order (filter NULL: all), each
 * update scaled by the battle's weight; ties score one half. No intervals.
 * Same returns as arena_ratings_bt(). */
int arena_ratings_elo(const struct arena_battles *set,
                      const struct arena_rating_filter *f,
                      const struct arena_rating_opts *opts,
                      struct arena_ratings **out, struct arena_err *err);

/* The matrices a reader needs, each (n, n) row-major over model ids, row
 * beats column: battles between the two (weighted), observed win rate
 * (wins + ties / 2) / battles (NAN without battles), and the rate the
 * ratings predict, 1 / (1 + exp((r_col - r_row) / scale)). Any output may be
 * NULL. n must equal the pairs' and the ratings' n_models. */
void arena_ratings_matrices(const struct arena_pairs *pairs,
                            const struct arena_ratings *r, double *battles,
                            double *win_rate, double *predicted);

/* ------------------------------------------------------------------------
 * The arena (issue 5): models registry, battles, votes, pair sampling,
 * fair play. Owner: arena_registry*.c, arena_battle*.c, arena_vote*.c,
 * arena_sample*.c, arena_fair*.c, arena_tags*.c.
 *
 * One struct arena per server: it holds the registry (an immutable,
 * reference-counted snapshot of the models, swapped on every change), the
 * pair statistics for sampling, and the vote writer threads. Every call is
 * thread-safe; a turn runs on the caller's thread (the web handler) and
 * reports through callbacks. Answers that web/ sends as JSON are built here
 * as jansson objects the caller owns.
 * ---------------------------------------------------------------------- */

/* Further statuses of the arena calls (each maps to one HTTP answer). */
enum arena_battle_status {
    ARENA_ERR_NOT_FOUND = -20,     /* no such battle or model */
    ARENA_ERR_NOT_YOURS = -21,     /* battle of another visitor */
    ARENA_ERR_ALREADY_VOTED = -22, /* the battle has its vote */
    ARENA_ERR_NOT_READY = -23,     /* vote before both sides answered */
    ARENA_ERR_FAILED = -24,        /* a side failed: no vote, no turn */
    ARENA_ERR_TURN_LIMIT = -25,    /* max turns, or context full */
    ARENA_ERR_BUSY = -26,          /* a turn is streaming */
    ARENA_ERR_VOTED = -27,         /* no turns after the vote */
    ARENA_ERR_TOO_LARGE = -28,     /* prompt over the limit */
    ARENA_ERR_DB = -29,            /* database unreachable or failing */
    ARENA_ERR_OVERLOADED = -30,    /* inference queue full: retry */
    ARENA_ERR_NO_MODELS = -31,     /* fewer than two models available */
    ARENA_ERR_CONFLICT = -32,      /* model name taken */
    ARENA_ERR_NO_VOTE = -33,       /* direct chats take no vote */
};
/* The API code of a status ("already_voted", ...); "internal" if unknown. */
const char *arena_status_code(int status);

/* Secrets: one 32-byte key for every keyed hash and signature. */
struct arena_keys;
/* Reads the hex key in path, or creates the file (mode 0600, created
 * once with O_EXCL, its directory made if missing) with a fresh random
 * key. Returns ARENA_OK, ARENA_ERR_IO or ARENA_ERR_PARSE. */
int arena_keys_open(const char *path, struct arena_keys **out,
                    struct arena_err *err);
void arena_keys_free(struct arena_keys *k);
/* HMAC-SHA256(key, purpose || 0 || data). Cannot fail. */
void arena_keys_mac(const struct arena_keys *k, const char *purpose,
                    const void *data, size_t len, uint8_t out[32]);

/* A visitor as the arena sees one: keyed hashes only. */
struct arena_visitor {
    uint8_t hash[32];    /* of the cookie's random id */
    uint8_t ip_hash[32]; /* of the client's address */
};
/* Writes a new cookie value "<id>.<mac>" (base64url, 45 chars) and fills
 * v->hash. n >= 46. Returns ARENA_OK or ARENA_ERR_IO (no randomness). */
int arena_visitor_cookie_new(const struct arena_keys *k, char *out, size_t n,
                             struct arena_visitor *v);
/* Checks a cookie value in constant time; fills v->hash when valid.
 * Returns 1 valid, 0 not. */
int arena_visitor_cookie_check(const struct arena_keys *k, const char *value,
                               struct arena_visitor *v);
void arena_visitor_ip(const struct arena_keys *k, const char *ip,
                      struct arena_visitor *v);
/* Admin session cookie "<expires unix>.<mac>": new and check (1 valid and
 * not expired at now). */
void arena_admin_cookie_new(const struct arena_keys *k, long long expires,
                            char *out, size_t n);
int arena_admin_cookie_check(const struct arena_keys *k, const char *value,
                             long long now);
/* Constant-time equality of two strings (compares their MACs). */
int arena_secret_equal(const struct arena_keys *k, const char *a,
                       const char *b);

/* Rate limits: token buckets in memory, sharded by key. A bucket holds up
 * to per_min tokens and refills per_min per minute. */
enum arena_limit_kind {
    ARENA_LIMIT_BATTLE,
    ARENA_LIMIT_TURN,
    ARENA_LIMIT_VOTE,
    ARENA_LIMIT_IP_BATTLE,
    ARENA_LIMIT_IP_TURN,
    ARENA_LIMIT_IP_VOTE,
    ARENA_LIMIT_DAILY_VOTES, /* a counter per UTC day, not a bucket */
};
struct arena_limiter;
struct arena_limiter *arena_limiter_new(void); /* NULL: out of memory */
void arena_limiter_free(struct arena_limiter *l);
/* Takes one token (kind, key). per_min <= 0: unlimited. Returns 0 when
 * allowed, else the seconds to wait before one is there (>= 1). now in
 * seconds (any clock, increasing). */
int arena_limiter_take(struct arena_limiter *l, enum arena_limit_kind kind,
                       const uint8_t key[32], int per_min, double now);
/* The daily cap: counts one for key on UTC day of now_unix unless cap is
 * reached. Returns 0, or the seconds until the next UTC midnight. cap <= 0:
 * unlimited. arena_limiter_daily_undo() gives a count back (the vote did
 * not happen). */
int arena_limiter_daily_take(struct arena_limiter *l, const uint8_t key[32],
                             int cap, long long now_unix);
void arena_limiter_daily_undo(struct arena_limiter *l, const uint8_t key[32],
                              long long now_unix);

/* Identity leaks: whether text names any of terms (case-insensitive,
 * whole words; empty terms ignored). Returns the index of the first term
 * found, or -1. */
int arena_leak_find(const char *text, size_t len, const char *const *terms,
                    size_t n_terms);

/* Category tags of a prompt: ISO 639-1 code guessed from the script and
 * common words ("en", "fr", "zh", ...; "" when unsure), code present, and
 * the ARENA_TAG_* flags that follow from the text. Cannot fail. */
struct arena_text_tags {
    char language[8];
    int has_code;
    uint32_t flags; /* ARENA_TAG_CODING, ARENA_TAG_MATH */
};
void arena_tags_detect(const char *text, size_t len,
                       struct arena_text_tags *out);

struct db_pool;
struct infer_hub;

enum arena_sampling { ARENA_SAMPLE_WEIGHTED = 0, ARENA_SAMPLE_ACTIVE = 1 };

struct arena_opts {
    struct db_pool *db;       /* required; outlives the arena */
    struct infer_hub *hub;    /* required; outlives the arena */
    const json_t *models;     /* array from the config file, or
                                 NULL (see arena_registry.c) */
    const json_t *leak_terms; /* array of extra terms, or NULL */
    const char *models_dir;   /* the directory the hub scanned, or "" */
    int max_turns;            /* per battle (8) */
    int max_prompt_bytes;     /* per turn (16384) */
    int max_tokens;           /* per answer, upper bound (256) */
    enum arena_sampling sampling;
    int vote_writers; /* writer threads (2) */
    int vote_batch;   /* votes per transaction at most (64) */
    int db_wait_ms;   /* for a pooled connection (5000) */
};

struct arena;
/* Loads the registry (config models added if absent; with no config models
 * every hub engine missing from the table is registered as a local model),
 * opens remote engines, starts the vote writers. Returns ARENA_OK, or
 * ARENA_ERR_DB / ARENA_ERR_INVALID / ARENA_ERR_NOMEM with err filled. */
int arena_new(const struct arena_opts *o, struct arena **out,
              struct arena_err *err);
/* Stops the writers (queued votes are written first) and frees. */
void arena_free(struct arena *a);

/* Models. Every json_t answer is a new reference for the caller. */
json_t *arena_models_public(struct arena *a); /* {"models": [...]} */
json_t *arena_models_admin(struct arena *a);  /* every field */
/* Adds a model from a JSON object (see docs/api.md); *out is the model as
 * arena_models_admin shows it. ARENA_ERR_INVALID (err names the field),
 * ARENA_ERR_CONFLICT, ARENA_ERR_DB. */
int arena_model_add(struct arena *a, const json_t *body, json_t **out,
                    struct arena_err *err);
/* Updates the fields present in body. ARENA_ERR_NOT_FOUND, _INVALID, _DB. */
int arena_model_update(struct arena *a, const char *name, const json_t *body,
                       json_t **out, struct arena_err *err);

/* Battles. ids are "b_" + 32 hex digits. */
/* Creates a battle from {"mode": ..., "models": [...]}; *out is the 201
 * answer. ARENA_ERR_INVALID, _NOT_FOUND (model), _NO_MODELS, _DB. */
int arena_battle_create(struct arena *a, const struct arena_visitor *v,
                        const json_t *body, json_t **out,
                        struct arena_err *err);

/* How a turn reports: start() once, before the first event (the caller
 * starts its event stream then); event(name, data) for every event, data a
 * (borrowed) or NULL for a keep-alive. Either returns nonzero when
 * the client went away: both generations are cancelled and the turn is
 * dropped (the battle goes back to its state before). */
struct arena_turn_io {
    int (*start)(void *user);
    int (*event)(void *user, const char *name, const json_t *data);
    void *user;
};
/* Runs one turn (prompt != NULL) or regenerates the last one (prompt
 * NULL). Before start(): ARENA_ERR_NOT_FOUND, _NOT_YOURS, _VOTED, _FAILED,
 * _BUSY, _TURN_LIMIT, _TOO_LARGE, _INVALID, _OVERLOADED, _DB. Once start()
 * was called it returns ARENA_OK: failures are events. */
int arena_battle_turn(struct arena *a, const struct arena_visitor *v,
                      const char *id, const char *prompt,
                      const struct arena_turn_io *io, struct arena_err *err);
/* Votes; answered only after the vote's transaction committed. *out: the
 * 200 answer with the names. ARENA_ERR_INVALID (winner), _NOT_FOUND,
 * _NOT_YOURS, _ALREADY_VOTED, _NOT_READY, _FAILED, _NO_VOTE, _DB. */
int arena_battle_vote(struct arena *a, const struct arena_visitor *v,
                      const char *id, const char *winner, json_t **out,
                      struct arena_err *err);
/* The battle as its visitor sees it. _NOT_FOUND, _NOT_YOURS, _DB. */
int arena_battle_get(struct arena *a, const struct arena_visitor *v,
                     const char *id, json_t **out, struct arena_err *err);
/* For load tests (admin only): count anonymous battles already in state
 * ready, owned by v, between two drawn models, without generating. *out:
 * a json_t array of ids. */
int arena_battle_bench_create(struct arena *a, const struct arena_visitor *v,
                              int count, json_t **out, struct arena_err *err);

/* ------------------------------------------------------------------------
 * Leaderboard cache (issue 6). Owner: arena_board*.c.
 *
 * One struct arena_board per server: a background thread keeps a copy of
 * the votes (loaded incrementally, 28 bytes each), recomputes every
 * category's ratings when votes arrive (debounced), and swaps in an
 * immutable snapshot whose answers are prebuilt JSON text. Readers take a
 * reference to the current snapshot (a pointer copy under a mutex that the
 * recompute never holds while it works) and never wait for a recompute.
 * The thread notices new votes three ways: arena_board_touch() (the vote
 * path calls it after its commit), a poll of max(votes.id) every poll_ms
 * (votes written by another process), and a count check every
 * reconcile_s (late commits, deletions: the copy is then rebuilt).
 * ---------------------------------------------------------------------- */

struct arena_board_opts {
    struct db_pool *db;    /* required; outlives the board */
    uint32_t visitor_cap;  /* a visitor weighs at most this many votes
                              (weights cap/n); 0 = off; 1000 */
    uint32_t prompt_cap;   /* a prompt text weighs at most this many
                              battles; 0 = off; 50 */
    int bootstrap;         /* BT bootstrap rounds per category; 200 */
    uint64_t seed;         /* bootstrap seed; 1 */
    int threads;           /* bootstrap threads; 1 */
    uint64_t min_battles;  /* fewer battles: provisional; 50 */
    int long_prompt_bytes; /* prompts longer are "long_prompt"; 1024 */
    int debounce_ms;       /* wait after a change for more; 500 */
    int poll_ms;           /* max(votes.id) poll interval; 1000 */
    int reconcile_s;       /* count check interval; 30 */
    int stats_s;           /* whole recount of battles over time at
                              most this often (recent hours: every
                              refresh); 600 */
    int db_wait_ms;        /* wait for a pooled connection; 5000 */
};
/* Fills the defaults above (db NULL). Cannot fail. */
void arena_board_opts_init(struct arena_board_opts *o);

struct arena_board;
struct arena_board_snap;

/* Starts the board's thread; the first snapshot (empty, computed_at 0) is
 * there at once, the first full one after the initial load. Returns
 * ARENA_OK, ARENA_ERR_INVALID (no db) or ARENA_ERR_NOMEM. */
int arena_board_new(const struct arena_board_opts *o, struct arena_board **out,
                    struct arena_err *err);
/* Stops the thread (an ongoing recompute finishes first) and frees. Held
 * snapshots stay valid until released. NULL is a no-op. */
void arena_board_free(struct arena_board *b);

/* Tells every board of the process that votes were committed. Lock-free
 * counter bump plus a condition signal; cheap enough for the vote path.
 * Cannot fail. */
void arena_board_touch(void);

/* One synchronous load and build, without a thread (`arena ratings`,
 * tests): reads every vote through conn. Returns ARENA_OK and *out (release
 * with arena_board_release), or ARENA_ERR_IO (database) / _NOMEM. */
struct db_conn;
int arena_board_build_once(struct db_conn *conn,
                           const struct arena_board_opts *o,
                           struct arena_board_snap **out,
                           struct arena_err *err);

/* The current snapshot, with a reference for the caller. Never NULL. */
struct arena_board_snap *arena_board_acquire(struct arena_board *b);
void arena_board_release(struct arena_board_snap *s);

/* Prebuilt answers of a snapshot (docs/api.md), borrowed while the
 * reference is held; NULL for an unknown category, method or bucket.
 * method: "bt" or "elo"; bucket: "hour" or "day". */
const char *arena_board_leaderboard(const struct arena_board_snap *s,
                                    const char *category, const char *method,
                                    size_t *len);
const char *arena_board_matrices(const struct arena_board_snap *s,
                                 const char *category, size_t *len);
const char *arena_board_categories(const struct arena_board_snap *s,
                                   size_t *len);
const char *arena_board_votes(const struct arena_board_snap *s,
                              const char *bucket, size_t *len);
/* Votes the snapshot was computed from, and when (unix s; 0: never). */
uint64_t arena_board_snap_votes(const struct arena_board_snap *s);
double arena_board_snap_time(const struct arena_board_snap *s);
/* Seconds the build (caps, every category, JSON) took, loading excluded. */
double arena_board_snap_compute_s(const struct arena_board_snap *s);

/* Appends the votes of a database to set (which must be empty), for
 * `arena ratings` without --input: models, tags, languages, visitors and
 * prompt ids as the board sees them (weights 1: apply caps with
 * arena_battles_apply_caps). ARENA_OK, ARENA_ERR_IO, ARENA_ERR_NOMEM. */
int arena_board_load_battles(struct db_conn *conn, int long_prompt_bytes,
                             struct arena_battles *set, struct arena_err *err);

/* The admin dashboard (docs/api.md) as a new JSON object: totals, cost
 * per battle, votes over time (from snap, may be NULL), per-model speed and
 * cost, category and language shares, prompt themes, flagged visitors.
 * Whole-table SQL: cache it. ARENA_OK or ARENA_ERR_IO. */
int arena_board_dashboard(struct db_conn *c,
                          const struct arena_board_snap *snap,
                          int long_prompt_bytes, json_t **out,
                          struct arena_err *err);

/* Anomalous voters (arena_board_stats.c explains the signals). */
struct arena_flag_opts {
    int rate_per_hour; /* votes in one clock hour above this; 100 */
    int same_min;      /* votes needed for the same-side signal; 30 */
    int fast_min;      /* votes needed for the fast-vote signal; 20 */
    int fast_ms;       /* median ms_to_vote below this; 1500 */
};
void arena_flag_opts_init(struct arena_flag_opts *o);
/* Sets visitors.flagged and flag_reason where a signal fires over the
 * last 7 days of votes; *flagged gets how many rows changed. */
int arena_board_flag_visitors(struct db_conn *c,
                              const struct arena_flag_opts *o, int *flagged,
                              struct arena_err *err);

/* ------------------------------------------------------------------------
 * Export and import (issue 6). Owner: arena_export*.c, arena_import*.c.
 * ---------------------------------------------------------------------- */

enum arena_export_format {
    ARENA_EXPORT_BATTLES = 0, /* JSONL, the public Chatbot Arena schema */
    ARENA_EXPORT_DPO = 1,     /* JSONL prompt / chosen / rejected */
    ARENA_EXPORT_CSV = 2,     /* model_a,model_b,winner,... */
};
/* "battles" (or "jsonl", or empty), "dpo", "csv" -> the format; -1. */
int arena_export_format_parse(const char *s);

struct arena_export_opts {
    enum arena_export_format format;
    const char *from, *to;         /* vote time range [from, to): anything
                                      timestamptz reads; NULL or "" = open */
    const char *category;          /* a leaderboard category; NULL = every vote,
                                      flagged ones included */
    const char *model;             /* either side; NULL = any */
    const struct arena_keys *keys; /* for the judge hash; NULL: null judge */
    int long_prompt_bytes;         /* as the board's (1024) */
    int page;                      /* votes per query (1000) */
};
/* Receives the output; returns nonzero to stop (reader gone). */
typedef int (*arena_export_write_fn)(void *user, const char *buf, size_t len);
/* Checks the options without the database (unknown category...).
 * ARENA_OK or ARENA_ERR_INVALID with err naming the field. */
int arena_export_check(const struct arena_export_opts *o,
                       struct arena_err *err);
/* Streams the records in vote order to write(); *rows gets how many.
 * Memory stays flat (keyset pages). Returns ARENA_OK, ARENA_ERR_INVALID
 * (bad option or time), ARENA_ERR_IO (database, or write() stopped),
 * ARENA_ERR_NOMEM. */
int arena_export_run(struct db_conn *c, const struct arena_export_opts *o,
                     arena_export_write_fn write, void *user, uint64_t *rows,
                     struct arena_err *err);

/* Imports a battle file (the export's JSONL or CSV, or public
 * arena-human-preference files: winner model_a, model_b, tie,
 * tie (bothbad) or both_bad) in one transaction: models created as needed
 * (disabled, no file), visitors from judges, battles, messages from the
 * conversations, votes in file order. format: "jsonl", "csv" or NULL (by
 * the file name). *rows gets the votes added, *skipped the records left out
 * (bad model name, same model twice, unknown winner). Returns ARENA_OK,
 * ARENA_ERR_IO (file, database), ARENA_ERR_PARSE (line in err),
 * ARENA_ERR_NOMEM. */
int arena_import_file(struct db_conn *c, const char *path, const char *format,
                      uint64_t *rows, uint64_t *skipped, struct arena_err *err);

/* Commands (argv[0] is the command's own name). */
int arena_cmd_ratings(int argc, char **argv);
int arena_cmd_export(int argc, char **argv);
int arena_cmd_import(int argc, char **argv);
int arena_cmd_bench_ratings(int argc, char **argv);

#endif
