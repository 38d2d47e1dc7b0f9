/*
 * infer_hub.c: the named set of engines a server runs. A sorted array of
 * (name, engine) under a mutex; engines are added at start-up and live
 * until the hub is freed, so infer_hub_get hands out borrowed pointers.
 */
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "infer_internal.h"
#include "infer_sched.h"

#define SCAN_DEPTH 3

struct hub_entry {
    char *name;
    struct infer_engine *e;
};

struct infer_hub {
    pthread_mutex_t mu;
    struct infer_engine_opts opts;
    struct hub_entry *v; /* (cap) sorted by name */
    size_t n, cap;
};

struct infer_hub *infer_hub_new(const struct infer_engine_opts *defaults)
{
    struct infer_hub *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    pthread_mutex_init(&h->mu, NULL);
    if (defaults != NULL)
        h->opts = *defaults;
    else
        infer_engine_opts_default(&h->opts);
    return h;
}

void infer_hub_free(struct infer_hub *h)
{
    if (h == NULL)
        return;
    for (size_t i = 0; i < h->n; i++) {
        infer_engine_free(h->v[i].e);
        free(h->v[i].name);
    }
    free(h->v);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

int infer_hub_add(struct infer_hub *h, const char *name, struct infer_engine *e,
                  struct infer_err *err)
{
    if (name == NULL || name[0] == '\0' || e == NULL) {
        infer_engine_free(e);
        return infer_err_set(err, INFER_ERR_ARG, "hub: empty name");
    }
    pthread_mutex_lock(&h->mu);
    size_t at = 0;
    int st = INFER_OK;
    while (at < h->n && strcmp(h->v[at].name, name) < 0)
        at++;
    if (at < h->n && strcmp(h->v[at].name, name) == 0)
        st = infer_err_set(err, INFER_ERR_ARG,
                           "hub: a model named '%.100s' exists", name);
    if (st == INFER_OK && h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 8;
        struct hub_entry *v = realloc(h->v, cap * sizeof(*v));
        if (v == NULL)
            st = infer_err_set(err, INFER_ERR_NOMEM, "out of memory");
        else
            h->v = v, h->cap = cap;
    }
    char *copy = st == INFER_OK ? strdup(name) : NULL;
    if (st == INFER_OK && copy == NULL)
        st = infer_err_set(err, INFER_ERR_NOMEM, "out of memory");
    if (st == INFER_OK) {
        memmove(h->v + at + 1, h->v + at, (h->n - at) * sizeof(*h->v));
        h->v[at] = (struct hub_entry){copy, e};
        h->n++;
    }
    pthread_mutex_unlock(&h->mu);
    if (st != INFER_OK)
        infer_engine_free(e);
    return st;
}

struct infer_engine *infer_hub_get(struct infer_hub *h, const char *name)
{
    if (h == NULL || name == NULL)
        return NULL;
    struct infer_engine *e = NULL;
    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; i < h->n && e == NULL; i++)
        if (strcmp(h->v[i].name, name) == 0)
            e = h->v[i].e;
    pthread_mutex_unlock(&h->mu);
    return e;
}

size_t infer_hub_names(struct infer_hub *h, const char **names, size_t cap)
{
    if (h == NULL)
        return 0;
    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; i < h->n && i < cap; i++)
        names[i] = h->v[i].name;
    size_t n = h->n;
    pthread_mutex_unlock(&h->mu);
    return n;
}

/* ---- scanning a directory
 * ------------------------------------------------------ */

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcasecmp(s + a - b, suffix) == 0;
}

static bool is_tokenizer_bin(const char *name)
{
    return ends_with(name, ".bin") && (strncasecmp(name, "tokenizer", 9) == 0 ||
                                       strncasecmp(name, "tok", 3) == 0);
}

/* A tokenizer*.bin or tok*.bin in dir. */
static bool has_tokenizer_bin(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return false;
    struct dirent *de;
    bool found = false;
    while (!found && (de = readdir(d)) != NULL)
        found = is_tokenizer_bin(de->d_name);
    closedir(d);
    return found;
}

/* A GGUF with no tensors (a tokenizer's vocabulary only). */
static bool gguf_vocab_only(const char *path)
{
    struct infer_gguf *g;
    struct infer_err err;
    if (infer_gguf_open(path, &g, &err) != INFER_OK)
        return false; /* let the engine report it */
    bool vo = infer_gguf_n_tensors(g) == 0;
    infer_gguf_free(g);
    return vo;
}

/* True when path (a .bin) has a .gguf beside it with the same stem: the
 * same weights in two formats would otherwise enter the arena twice and
 * be drawn against themselves. */
static bool has_gguf_twin(const char *path)
{
    char twin[4096];
    size_t n = strlen(path) - 4; /* without ".bin" */
    if (snprintf(twin, sizeof(twin), "%.*s.gguf", (int)n, path) >=
        (int)sizeof(twin))
        return false;
    return access(twin, R_OK) == 0;
}

static int scan_file(struct infer_hub *h, const char *dir, const char *file)
{
    char path[4096], name[256];
    if (snprintf(path, sizeof(path), "%s/%s", dir, file) >= (int)sizeof(path))
        return 0;
    bool gguf = ends_with(file, ".gguf");
    if (!gguf && !(ends_with(file, ".bin") && !is_tokenizer_bin(file) &&
                   has_tokenizer_bin(dir)))
        return 0;
    if (!gguf && has_gguf_twin(path)) {
        infer_log(INFER_LOG_INFO, "hub: %s has a .gguf twin; serving that",
                  path);
        return 0;
    }
    if (gguf && gguf_vocab_only(path)) {
        infer_log(INFER_LOG_DEBUG, "hub: %s is a vocabulary only; skipped",
                  path);
        return 0;
    }
    size_t n = strlen(file) - (gguf ? 5 : 4), k = 0;
    for (size_t i = 0; i < n && k + 1 < sizeof(name); i++)
        name[k++] = (char)tolower((unsigned char)file[i]);
    name[k] = '\0';
    struct infer_engine *e;
    struct infer_err err = {{0}};
    if (infer_engine_open_local(path, &h->opts, &e, &err) != INFER_OK) {
        infer_log(INFER_LOG_WARN, "hub: skipping %s: %s", path, err.msg);
        return 0;
    }
    if (infer_hub_add(h, name, e, &err) != INFER_OK) {
        infer_log(INFER_LOG_WARN, "hub: skipping %s: %s", path, err.msg);
        return 0;
    }
    infer_log(INFER_LOG_INFO, "hub: serving %s as '%s'", path, name);
    return 1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int scan(struct infer_hub *h, const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **v = realloc(names, cap * sizeof(*v));
            if (v == NULL)
                break;
            names = v;
        }
        if ((names[n] = strdup(de->d_name)) != NULL)
            n++;
    }
    closedir(d);
    qsort(names, n, sizeof(*names), cmp_str); /* stable naming order */
    int added = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        if (snprintf(path, sizeof(path), "%s/%s", dir, names[i]) <
                (int)sizeof(path) &&
            stat(path, &st) == 0) {
            if (S_ISDIR(st.st_mode) && depth < SCAN_DEPTH) {
                int k = scan(h, path, depth + 1);
                added += k > 0 ? k : 0;
            } else if (S_ISREG(st.st_mode)) {
                added += scan_file(h, dir, names[i]);
            }
        }
        free(names[i]);
    }
    free(names);
    return added;
}

int infer_hub_scan_dir(struct infer_hub *h, const char *dir,
                       struct infer_err *err)
{
    int n = scan(h, dir, 0);
    if (n < 0)
        return infer_err_set(err, INFER_ERR_IO, "hub: cannot read %.200s", dir);
    return n;
}
