/*
 * arena_fair.c: fair play primitives: the secret key, signed cookies,
 * keyed hashes of addresses, rate-limit buckets, identity-leak search.
 *
 * Nothing here touches the network or the database. The key is 32 random
 * bytes kept as 64 hex digits in one file (mode 0600, created once). Every
 * MAC is HMAC-SHA256 with a purpose string first, so a MAC made for one
 * purpose (a visitor id) is never valid for another (an admin session).
 *
 * The limiter: ARENA_LIMIT_SHARDS shards, each a mutex and an open-address
 * table of buckets keyed by (kind, 32-byte key). A shard that fills up drops
 * the buckets that have been full for a while (they carry no state worth
 * keeping: a full bucket is what a new one is).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "arena.h"
#include "arena_internal.h"

struct arena_keys {
    uint8_t key[32];
};

/* ---------------------------------------------------------------------- */
/* Status codes                                                           */

const char *arena_status_code(int status)
{
    switch (status) {
    case ARENA_OK:
        return "ok";
    case ARENA_ERR_INVALID:
    case ARENA_ERR_PARSE:
        return "invalid_field";
    case ARENA_ERR_NOT_FOUND:
        return "not_found";
    case ARENA_ERR_NOT_YOURS:
        return "not_your_battle";
    case ARENA_ERR_ALREADY_VOTED:
        return "already_voted";
    case ARENA_ERR_NOT_READY:
        return "not_ready";
    case ARENA_ERR_FAILED:
        return "battle_failed";
    case ARENA_ERR_TURN_LIMIT:
        return "turn_limit";
    case ARENA_ERR_BUSY:
        return "busy";
    case ARENA_ERR_VOTED:
        return "voted";
    case ARENA_ERR_TOO_LARGE:
        return "prompt_too_large";
    case ARENA_ERR_DB:
        return "unavailable";
    case ARENA_ERR_OVERLOADED:
        return "busy";
    case ARENA_ERR_NO_MODELS:
        return "unavailable";
    case ARENA_ERR_CONFLICT:
        return "conflict";
    case ARENA_ERR_NO_VOTE:
        return "bad_request";
    default:
        return "internal";
    }
}

/* ---------------------------------------------------------------------- */
/* The key                                                                */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* mkdir -p of the directory part of path. */
static void make_parent(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir)
        return;
    *slash = '\0';
    for (char *p = dir + 1; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(dir, 0700);
            *p = '/';
        }
    }
    mkdir(dir, 0700);
}

static int key_read(const char *path, struct arena_keys *k,
                    struct arena_err *err)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        arena__err_set(err, "%s: %s", path, strerror(errno));
        return ARENA_ERR_IO;
    }
    char buf[80] = "";
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n > 0 && isspace((unsigned char)buf[n - 1]))
        buf[--n] = '\0';
    if (n != 64) {
        arena__err_set(err, "%s: expected 64 hex digits", path);
        return ARENA_ERR_PARSE;
    }
    for (size_t i = 0; i < 32; i++) {
        int hi = hexval(buf[2 * i]), lo = hexval(buf[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            arena__err_set(err, "%s: expected 64 hex digits", path);
            return ARENA_ERR_PARSE;
        }
        k->key[i] = (uint8_t)(hi << 4 | lo);
    }
    return ARENA_OK;
}

int arena_keys_open(const char *path, struct arena_keys **out,
                    struct arena_err *err)
{
    *out = NULL;
    struct arena_keys *k = calloc(1, sizeof(*k));
    if (k == NULL) {
        arena__err_set(err, "out of memory");
        return ARENA_ERR_NOMEM;
    }
    make_parent(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        if (getrandom(k->key, sizeof(k->key), 0) != sizeof(k->key)) {
            close(fd);
            unlink(path);
            free(k);
            arena__err_set(err, "no randomness for the secret key");
            return ARENA_ERR_IO;
        }
        char hex[66];
        for (int i = 0; i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", k->key[i]);
        hex[64] = '\n';
        bool ok = write(fd, hex, 65) == 65 && fsync(fd) == 0;
        close(fd);
        if (!ok) {
            unlink(path);
            free(k);
            arena__err_set(err, "%s: cannot write the key", path);
            return ARENA_ERR_IO;
        }
        *out = k;
        return ARENA_OK;
    }
    if (errno != EEXIST) {
        arena__err_set(err, "%s: %s", path, strerror(errno));
        free(k);
        return ARENA_ERR_IO;
    }
    int rc = key_read(path, k, err);
    if (rc != ARENA_OK) {
        free(k);
        return rc;
    }
    *out = k;
    return ARENA_OK;
}

void arena_keys_free(struct arena_keys *k)
{
    if (k != NULL)
        OPENSSL_cleanse(k->key, sizeof(k->key));
    free(k);
}

void arena_keys_mac(const struct arena_keys *k, const char *purpose,
                    const void *data, size_t len, uint8_t out[32])
{
    /* purpose || 0 || data, without a copy: HMAC over two updates. */
    uint8_t buf[512];
    size_t plen = strlen(purpose) + 1;
    unsigned int olen = 32;
    if (plen + len <= sizeof(buf)) {
        memcpy(buf, purpose, plen);
        memcpy(buf + plen, data, len);
        HMAC(EVP_sha256(), k->key, sizeof(k->key), buf, plen + len, out, &olen);
        return;
    }
    /* Long data: MAC the MAC of the data (still keyed end to end). */
    uint8_t inner[32];
    HMAC(EVP_sha256(), k->key, sizeof(k->key), data, len, inner, &olen);
    memcpy(buf, purpose, plen < 400 ? plen : 400);
    size_t p2 = plen < 400 ? plen : 400;
    memcpy(buf + p2, inner, 32);
    HMAC(EVP_sha256(), k->key, sizeof(k->key), buf, p2 + 32, out, &olen);
}

/* ---------------------------------------------------------------------- */
/* Cookies                                                                */

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* 16 bytes -> 22 chars + NUL. */
static void b64_16(const uint8_t in[16], char out[23])
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (int i = 0; i < 16; i++) {
        acc = acc << 8 | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = b64url[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        out[o++] = b64url[(acc << (6 - bits)) & 63];
    out[o] = '\0';
}

int arena_visitor_cookie_new(const struct arena_keys *k, char *out, size_t n,
                             struct arena_visitor *v)
{
    uint8_t id[16], mac[32];
    if (n < 46 || getrandom(id, sizeof(id), 0) != sizeof(id))
        return ARENA_ERR_IO;
    char ids[23], macs[23];
    b64_16(id, ids);
    arena_keys_mac(k, "vid", ids, 22, mac);
    b64_16(mac, macs);
    snprintf(out, n, "%s.%s", ids, macs);
    arena_keys_mac(k, "visitor", ids, 22, v->hash);
    return ARENA_OK;
}

int arena_visitor_cookie_check(const struct arena_keys *k, const char *value,
                               struct arena_visitor *v)
{
    if (value == NULL || strlen(value) != 45 || value[22] != '.')
        return 0;
    uint8_t mac[32];
    char macs[23];
    arena_keys_mac(k, "vid", value, 22, mac);
    b64_16(mac, macs);
    if (CRYPTO_memcmp(macs, value + 23, 22) != 0)
        return 0;
    arena_keys_mac(k, "visitor", value, 22, v->hash);
    return 1;
}

void arena_visitor_ip(const struct arena_keys *k, const char *ip,
                      struct arena_visitor *v)
{
    arena_keys_mac(k, "ip", ip, strlen(ip), v->ip_hash);
}

void arena_admin_cookie_new(const struct arena_keys *k, long long expires,
                            char *out, size_t n)
{
    char exp[24];
    int len = snprintf(exp, sizeof(exp), "%lld", expires);
    uint8_t mac[32];
    arena_keys_mac(k, "admin", exp, (size_t)len, mac);
    char macs[23];
    b64_16(mac, macs);
    snprintf(out, n, "%s.%s", exp, macs);
}

int arena_admin_cookie_check(const struct arena_keys *k, const char *value,
                             long long now)
{
    if (value == NULL)
        return 0;
    const char *dot = strchr(value, '.');
    if (dot == NULL || dot == value || dot - value > 20 ||
        strlen(dot + 1) != 22)
        return 0;
    for (const char *p = value; p < dot; p++)
        if (!isdigit((unsigned char)*p))
            return 0;
    uint8_t mac[32];
    char macs[23];
    arena_keys_mac(k, "admin", value, (size_t)(dot - value), mac);
    b64_16(mac, macs);
    if (CRYPTO_memcmp(macs, dot + 1, 22) != 0)
        return 0;
    return strtoll(value, NULL, 10) > now;
}

int arena_secret_equal(const struct arena_keys *k, const char *a, const char *b)
{
    uint8_t ma[32], mb[32];
    arena_keys_mac(k, "cmp", a, strlen(a), ma);
    arena_keys_mac(k, "cmp", b, strlen(b), mb);
    return CRYPTO_memcmp(ma, mb, 32) == 0;
}

/* ---------------------------------------------------------------------- */
/* Rate limits                                                            */

#define ARENA_LIMIT_SHARDS 64
#define SHARD_MAX          65536 /* buckets per shard before stale ones are dropped */

struct bucket {
    uint8_t used;
    uint8_t kind;
    uint8_t key[32];
    double tokens; /* buckets: tokens left; daily: count */
    double t;      /* buckets: last refill; daily: the UTC day */
};

struct shard {
    pthread_mutex_t mu;
    struct bucket *slots; /* (cap,) open addressing */
    size_t n, cap;
};

struct arena_limiter {
    struct shard shards[ARENA_LIMIT_SHARDS];
};

struct arena_limiter *arena_limiter_new(void)
{
    struct arena_limiter *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    for (int i = 0; i < ARENA_LIMIT_SHARDS; i++)
        pthread_mutex_init(&l->shards[i].mu, NULL);
    return l;
}

void arena_limiter_free(struct arena_limiter *l)
{
    if (l == NULL)
        return;
    for (int i = 0; i < ARENA_LIMIT_SHARDS; i++) {
        pthread_mutex_destroy(&l->shards[i].mu);
        free(l->shards[i].slots);
    }
    free(l);
}

static uint64_t key_hash(int kind, const uint8_t key[32])
{
    uint64_t h;
    memcpy(&h, key, 8); /* the keys are MACs: already uniform */
    return h ^ ((uint64_t)kind * 0x9E3779B97F4A7C15ULL);
}

static bool shard_grow(struct shard *s, size_t cap);

/* Finds or adds the bucket; NULL when out of memory. Caller holds s->mu. */
static struct bucket *shard_get(struct shard *s, int kind,
                                const uint8_t key[32], bool *fresh)
{
    if ((s->n + 1) * 2 > s->cap &&
        !shard_grow(s, s->cap == 0 ? 64 : s->cap * 2))
        return NULL;
    uint64_t h = key_hash(kind, key);
    size_t mask = s->cap - 1;
    for (size_t i = (size_t)(h >> 6) & mask;; i = (i + 1) & mask) {
        struct bucket *b = &s->slots[i];
        if (!b->used) {
            b->used = 1;
            b->kind = (uint8_t)kind;
            memcpy(b->key, key, 32);
            s->n++;
            *fresh = true;
            return b;
        }
        if (b->kind == kind && memcmp(b->key, key, 32) == 0) {
            *fresh = false;
            return b;
        }
    }
}

static bool shard_grow(struct shard *s, size_t cap)
{
    if (cap > SHARD_MAX * 2) {
        /* Full: start over. Buckets forgotten are full ones or old days
         * for most visitors; a burst of new keys resets the rest, which
         * errs on the side of letting people in. */
        memset(s->slots, 0, s->cap * sizeof(*s->slots));
        s->n = 0;
        return true;
    }
    struct bucket *old = s->slots;
    size_t old_cap = s->cap;
    struct bucket *nw = calloc(cap, sizeof(*nw));
    if (nw == NULL)
        return false;
    s->slots = nw;
    s->cap = cap;
    s->n = 0;
    for (size_t i = 0; i < old_cap; i++) {
        if (!old[i].used)
            continue;
        bool f;
        struct bucket *b = shard_get(s, old[i].kind, old[i].key, &f);
        *b = old[i];
    }
    free(old);
    return true;
}

int arena_limiter_take(struct arena_limiter *l, enum arena_limit_kind kind,
                       const uint8_t key[32], int per_min, double now)
{
    if (per_min <= 0)
        return 0;
    struct shard *s = &l->shards[key_hash((int)kind, key) % ARENA_LIMIT_SHARDS];
    pthread_mutex_lock(&s->mu);
    bool fresh;
    struct bucket *b = shard_get(s, (int)kind, key, &fresh);
    if (b == NULL) {
        pthread_mutex_unlock(&s->mu);
        return 0; /* out of memory: let it through */
    }
    double rate = per_min / 60.0;
    if (fresh) {
        b->tokens = per_min;
        b->t = now;
    }
    b->tokens += (now - b->t) * rate;
    if (b->tokens > per_min)
        b->tokens = per_min;
    b->t = now;
    int wait = 0;
    if (b->tokens >= 1.0 - 1e-9) /* (rounding of the refill) */
        b->tokens = b->tokens > 1.0 ? b->tokens - 1.0 : 0.0;
    else
        wait = (int)ceil((1.0 - b->tokens) / rate - 1e-6);
    pthread_mutex_unlock(&s->mu);
    return wait > 0 ? wait : 0;
}

int arena_limiter_daily_take(struct arena_limiter *l, const uint8_t key[32],
                             int cap, long long now_unix)
{
    if (cap <= 0)
        return 0;
    int kind = ARENA_LIMIT_DAILY_VOTES;
    long long day = now_unix / 86400;
    struct shard *s = &l->shards[key_hash(kind, key) % ARENA_LIMIT_SHARDS];
    pthread_mutex_lock(&s->mu);
    bool fresh;
    struct bucket *b = shard_get(s, kind, key, &fresh);
    int wait = 0;
    if (b != NULL) {
        if (fresh || b->t != (double)day) {
            b->t = (double)day;
            b->tokens = 0;
        }
        if (b->tokens >= cap)
            wait = (int)((day + 1) * 86400 - now_unix);
        else
            b->tokens += 1;
    }
    pthread_mutex_unlock(&s->mu);
    return wait > 0 ? wait : 0;
}

void arena_limiter_daily_undo(struct arena_limiter *l, const uint8_t key[32],
                              long long now_unix)
{
    int kind = ARENA_LIMIT_DAILY_VOTES;
    struct shard *s = &l->shards[key_hash(kind, key) % ARENA_LIMIT_SHARDS];
    pthread_mutex_lock(&s->mu);
    bool fresh;
    struct bucket *b = shard_get(s, kind, key, &fresh);
    if (b != NULL && !fresh && b->t == (double)(now_unix / 86400) &&
        b->tokens >= 1)
        b->tokens -= 1;
    pthread_mutex_unlock(&s->mu);
}

/* ---------------------------------------------------------------------- */
/* Identity leaks                                                         */

static bool is_word_byte(unsigned char c)
{
    return isalnum(c) || c >= 0x80;
}

int arena_leak_find(const char *text, size_t len, const char *const *terms,
                    size_t n_terms)
{
    for (size_t t = 0; t < n_terms; t++) {
        const char *term = terms[t];
        size_t tl = term != NULL ? strlen(term) : 0;
        if (tl == 0 || tl > len)
            continue;
        for (size_t i = 0; i + tl <= len; i++) {
            if (strncasecmp(text + i, term, tl) != 0)
                continue;
            bool left = i == 0 || !is_word_byte((unsigned char)text[i - 1]) ||
                        !is_word_byte((unsigned char)term[0]);
            bool right = i + tl == len ||
                         !is_word_byte((unsigned char)text[i + tl]) ||
                         !is_word_byte((unsigned char)term[tl - 1]);
            if (left && right)
                return (int)t;
        }
    }
    return -1;
}
