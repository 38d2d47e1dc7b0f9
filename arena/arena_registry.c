/*
 * arena_registry.c: the models in play.
 *
 * The `models` table is the source of truth. At start:
 *   1. every entry of the config file's "models" array is inserted unless
 *      a model of that name exists (the database wins afterwards, so what
 *      an admin changes survives restarts);
 *   2. with no "models" array, every engine the hub found in --models-dir
 *      that has no row yet is registered as a local model (display name =
 *      name, path = the directory scanned);
 *   3. the table is read into a snapshot; each row gets its engine: local
 *      rows the hub engine of the same name (or, when absent and path is a
 *      file, one opened now and added to the hub), remote rows an engine
 *      opened with infer_engine_open_remote.
 * Every change through the admin API writes the table, then reloads the
 * whole snapshot (models are few; readers holding the old one keep it).
 *
 * Health: arena__model_report() records failures; a model that failed
 * within ARENA_COOLDOWN_S is left out of anonymous sampling.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "arena.h"
#include "arena_internal.h"
#include "db.h"
#include "infer.h"

static char *dup_or_empty(const char *s)
{
    char *d = strdup(s != NULL ? s : "");
    if (d == NULL)
        abort(); /* a few bytes at start or on an admin change */
    return d;
}

/* ---------------------------------------------------------------------- */
/* Snapshots                                                              */

static void model_cleanup(struct arena__model *m)
{
    free(m->name);
    free(m->display_name);
    free(m->organisation);
    free(m->licence);
    free(m->backend);
    free(m->path);
    free(m->base_url);
    free(m->remote_model);
    free(m->api_key_env);
    free(m->system_prompt);
    json_decref(m->generation);
}

void arena__models_put(struct arena__models *m)
{
    if (m == NULL || atomic_fetch_sub(&m->refs, 1) != 1)
        return;
    for (size_t i = 0; i < m->n; i++)
        model_cleanup(&m->items[i]);
    free(m->items);
    free(m);
}

struct arena__models *arena__models_get(struct arena *a)
{
    pthread_mutex_lock(&a->reg_mu);
    struct arena__models *m = a->snap;
    atomic_fetch_add(&m->refs, 1);
    pthread_mutex_unlock(&a->reg_mu);
    return m;
}

const struct arena__model *arena__model_by_id(const struct arena__models *m,
                                              int64_t id)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->items[i].id == id)
            return &m->items[i];
    return NULL;
}

const struct arena__model *arena__model_by_name(const struct arena__models *m,
                                                const char *name)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->items[i].name, name) == 0)
            return &m->items[i];
    return NULL;
}

json_t *arena__model_json(const struct arena__model *m, bool admin)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:s}", "name", m->name, "display_name",
                          m->display_name, "organization", m->organisation,
                          "license", m->licence);
    if (o == NULL || !admin)
        return o;
    bool remote = strcmp(m->backend, "remote") == 0;
    json_object_set_new(o, "kind", json_string(m->backend));
    if (remote) {
        json_object_set_new(o, "endpoint", json_string(m->base_url));
        json_object_set_new(o, "remote_model", json_string(m->remote_model));
        json_object_set_new(o, "api_key_env",
                            m->api_key_env[0] ? json_string(m->api_key_env)
                                              : json_null());
    } else {
        json_object_set_new(o, "path", json_string(m->path));
    }
    json_object_set_new(o, "enabled", json_boolean(m->enabled));
    json_object_set_new(o, "weight", json_real(m->weight));
    json_object_set_new(o, "price_in", json_real(m->price_in));
    json_object_set_new(o, "price_out", json_real(m->price_out));
    json_object_set_new(o, "system_prompt", json_string(m->system_prompt));
    json_object_set_new(o, "generation", json_deep_copy(m->generation));
    json_object_set_new(o, "loaded", json_boolean(m->engine != NULL));
    json_object_set_new(o, "id", json_integer((json_int_t)m->id));
    return o;
}

/* Finds or opens the engine of a row. NULL when it cannot be had (logged
 * through the error, the model then stays out of play). */
static struct infer_engine *engine_for(struct arena *a,
                                       const struct arena__model *m)
{
    struct infer_engine *e = infer_hub_get(a->o.hub, m->name);
    if (e != NULL)
        return e;
    struct infer_err ierr = {{0}};
    int rc;
    if (strcmp(m->backend, "remote") == 0) {
        struct infer_remote_opts ro = {
            .base_url = m->base_url,
            .model = m->remote_model[0] ? m->remote_model : m->name,
            .api_key_env = m->api_key_env,
            .retries = 1,
        };
        rc = infer_engine_open_remote(&ro, &e, &ierr);
    } else {
        struct stat st;
        if (stat(m->path, &st) != 0 || !S_ISREG(st.st_mode))
            return NULL;
        rc = infer_engine_open_local(m->path, NULL, &e, &ierr);
    }
    if (rc != INFER_OK || e == NULL)
        return NULL;
    if (infer_hub_add(a->o.hub, m->name, e, &ierr) != INFER_OK)
        return infer_hub_get(a->o.hub, m->name); /* lost a race: theirs */
    return e;
}

static double col_double(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0.0
                                    : strtod(PQgetvalue(r, row, col), NULL);
}

int arena__registry_load(struct arena *a, struct arena_err *err)
{
    struct db_conn *c;
    int rc = arena__db_get(a, &c, err);
    if (rc != ARENA_OK)
        return rc;
    PGresult *res = NULL;
    struct db_err derr = {{0}, {0}};
    rc = db_exec(c,
                 "SELECT id, name, display_name, organisation, licence, "
                 "backend, coalesce(path, ''), coalesce(base_url, ''), "
                 "coalesce(remote_model, ''), coalesce(api_key_env, ''), "
                 "price_input_per_mtok::float8, "
                 "price_output_per_mtok::float8, sampling_weight, enabled, "
                 "system_prompt, generation::text FROM models ORDER BY id",
                 0, NULL, &res, &derr);
    arena__db_put(a, c);
    if (rc != DB_OK) {
        arena__err_set(err, "loading models: %s", derr.msg);
        return ARENA_ERR_DB;
    }
    int n = PQntuples(res);
    struct arena__models *m = calloc(1, sizeof(*m));
    struct arena__model *items = calloc(n > 0 ? (size_t)n : 1, sizeof(*items));
    if (m == NULL || items == NULL) {
        free(m);
        free(items);
        PQclear(res);
        arena__err_set(err, "out of memory");
        return ARENA_ERR_NOMEM;
    }
    for (int i = 0; i < n; i++) {
        struct arena__model *x = &items[i];
        x->id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        x->name = dup_or_empty(PQgetvalue(res, i, 1));
        x->display_name = dup_or_empty(PQgetvalue(res, i, 2));
        x->organisation = dup_or_empty(PQgetvalue(res, i, 3));
        x->licence = dup_or_empty(PQgetvalue(res, i, 4));
        x->backend = dup_or_empty(PQgetvalue(res, i, 5));
        x->path = dup_or_empty(PQgetvalue(res, i, 6));
        x->base_url = dup_or_empty(PQgetvalue(res, i, 7));
        x->remote_model = dup_or_empty(PQgetvalue(res, i, 8));
        x->api_key_env = dup_or_empty(PQgetvalue(res, i, 9));
        x->price_in = col_double(res, i, 10);
        x->price_out = col_double(res, i, 11);
        x->weight = col_double(res, i, 12);
        x->enabled = PQgetvalue(res, i, 13)[0] == 't';
        x->system_prompt = dup_or_empty(PQgetvalue(res, i, 14));
        x->generation = json_loads(PQgetvalue(res, i, 15), 0, NULL);
        if (!json_is_object(x->generation)) {
            json_decref(x->generation);
            x->generation = json_object();
        }
        x->engine = engine_for(a, x);
    }
    PQclear(res);
    m->n = (size_t)n;
    m->items = items;
    atomic_init(&m->refs, 1);
    pthread_mutex_lock(&a->reg_mu);
    struct arena__models *old = a->snap;
    a->snap = m;
    pthread_mutex_unlock(&a->reg_mu);
    arena__models_put(old);
    return ARENA_OK;
}

/* ---------------------------------------------------------------------- */
/* Model fields from JSON (config file, admin API)                        */

/* The text parameters of one model row, NULL = not given. */
struct row {
    const char *name, *display_name, *organisation, *licence, *backend;
    const char *path, *base_url, *remote_model, *api_key_env;
    const char *system_prompt;
    char price_in[32], price_out[32], weight[32], enabled[8];
    bool has_price_in, has_price_out, has_weight, has_enabled;
    char *generation; /* malloc'd JSON text or NULL */
};

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                     (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || strchr("._:/@+-_", c) == NULL))
            return false;
    }
    return true;
}

static bool env_name_ok(const char *s)
{
    if (s[0] == '\0' || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
              (*p >= '0' && *p <= '9') || *p == '_'))
            return false;
    return true;
}

/* A string field: absent is fine (NULL); present must be a string. */
static int get_str(const json_t *o, const char *key, const char *alt,
                   const char **out, struct arena_err *err)
{
    const json_t *v = json_object_get(o, key);
    if (v == NULL && alt != NULL)
        v = json_object_get(o, alt);
    if (v == NULL || json_is_null(v))
        return ARENA_OK;
    if (!json_is_string(v)) {
        arena__err_set(err, "%s: a string is expected", key);
        return ARENA_ERR_INVALID;
    }
    *out = json_string_value(v);
    return ARENA_OK;
}

static int get_num(const json_t *o, const char *key, char *buf, bool *has,
                   struct arena_err *err)
{
    const json_t *v = json_object_get(o, key);
    if (v == NULL || json_is_null(v))
        return ARENA_OK;
    if (!json_is_number(v) || !(json_number_value(v) >= 0) ||
        !isfinite(json_number_value(v)) || json_number_value(v) > 1e9) {
        arena__err_set(err, "%s: a number >= 0 is expected", key);
        return ARENA_ERR_INVALID;
    }
    snprintf(buf, 32, "%.9g", json_number_value(v));
    *has = true;
    return ARENA_OK;
}

static const char *const model_keys[] = {"name",
                                         "display_name",
                                         "organization",
                                         "organisation",
                                         "license",
                                         "licence",
                                         "kind",
                                         "path",
                                         "endpoint",
                                         "base_url",
                                         "remote_model",
                                         "api_key_env",
                                         "price_in",
                                         "price_out",
                                         "weight",
                                         "enabled",
                                         "system_prompt",
                                         "generation",
                                         NULL};

/* Reads the fields of a model object. adding: name is required and the
 * backend follows from path / endpoint. */
static int row_from_json(const json_t *o, bool adding, struct row *r,
                         struct arena_err *err)
{
    memset(r, 0, sizeof(*r));
    if (!json_is_object(o)) {
        arena__err_set(err, "model: an object is expected");
        return ARENA_ERR_INVALID;
    }
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)o, key, val)
    {
        bool known = false;
        for (int i = 0; model_keys[i] != NULL && !known; i++)
            known = strcmp(model_keys[i], key) == 0;
        if (!known) {
            arena__err_set(err, "%s: unknown field", key);
            return ARENA_ERR_INVALID;
        }
    }
    int rc = ARENA_OK;
    const char *kind = NULL;
    if (rc == ARENA_OK)
        rc = get_str(o, "name", NULL, &r->name, err);
    if (rc == ARENA_OK)
        rc = get_str(o, "display_name", NULL, &r->display_name, err);
    if (rc == ARENA_OK)
        rc = get_str(o, "organization", "organisation", &r->organisation, err);
    if (rc == ARENA_OK)
        rc = get_str(o, "license", "licence", &r->licence, err);
    if (rc == ARENA_OK)
        rc = get_str(o, "kind", NULL, &kind, err);
    if (rc == ARENA_OK)
        rc = get_str(o, "path", NULL, &r->path, err);
    if (rc == ARENA_OK)
        rc = get_str(o, "endpoint", "base_url", &r->base_url, err);
    if (rc == ARENA_OK)
        rc = get_str(o, "remote_model", NULL, &r->remote_model, err);
    if (rc == ARENA_OK)
        rc = get_str(o, "api_key_env", NULL, &r->api_key_env, err);
    if (rc == ARENA_OK)
        rc = get_str(o, "system_prompt", NULL, &r->system_prompt, err);
    if (rc == ARENA_OK)
        rc = get_num(o, "price_in", r->price_in, &r->has_price_in, err);
    if (rc == ARENA_OK)
        rc = get_num(o, "price_out", r->price_out, &r->has_price_out, err);
    if (rc == ARENA_OK)
        rc = get_num(o, "weight", r->weight, &r->has_weight, err);
    if (rc != ARENA_OK)
        return rc;
    const json_t *en = json_object_get(o, "enabled");
    if (en != NULL && !json_is_null(en)) {
        if (!json_is_boolean(en)) {
            arena__err_set(err, "enabled: true or false is expected");
            return ARENA_ERR_INVALID;
        }
        snprintf(r->enabled, sizeof(r->enabled), "%s",
                 json_is_true(en) ? "true" : "false");
        r->has_enabled = true;
    }
    const json_t *gen = json_object_get(o, "generation");
    if (gen != NULL && !json_is_null(gen)) {
        if (!json_is_object(gen)) {
            arena__err_set(err, "generation: an object is expected");
            return ARENA_ERR_INVALID;
        }
        r->generation = json_dumps(gen, JSON_COMPACT);
    }
    if (r->licence != NULL && strcmp(r->licence, "open") != 0 &&
        strcmp(r->licence, "closed") != 0) {
        arena__err_set(err, "license: \"open\" or \"closed\" is expected");
        return ARENA_ERR_INVALID;
    }
    if (r->api_key_env != NULL && r->api_key_env[0] != '\0' &&
        !env_name_ok(r->api_key_env)) {
        arena__err_set(err, "api_key_env: the name of an environment variable "
                            "is expected");
        return ARENA_ERR_INVALID;
    }
    if (r->api_key_env != NULL && r->api_key_env[0] == '\0')
        r->api_key_env = NULL;
    if (!adding) {
        if (r->name != NULL || kind != NULL || r->path != NULL ||
            r->base_url != NULL || r->remote_model != NULL) {
            arena__err_set(err,
                           "%s: cannot be changed; add a new model instead",
                           r->name       ? "name"
                           : kind        ? "kind"
                           : r->path     ? "path"
                           : r->base_url ? "endpoint"
                                         : "remote_model");
            return ARENA_ERR_INVALID;
        }
        return ARENA_OK;
    }
    if (r->name == NULL || !name_ok(r->name)) {
        arena__err_set(err, "name: 1 to 128 of A-Z a-z 0-9 . _ : / @ + -, "
                            "starting with a letter or digit");
        return ARENA_ERR_INVALID;
    }
    if (kind != NULL && strcmp(kind, "local") != 0 &&
        strcmp(kind, "remote") != 0) {
        arena__err_set(err, "kind: \"local\" or \"remote\" is expected");
        return ARENA_ERR_INVALID;
    }
    bool remote =
        kind != NULL ? strcmp(kind, "remote") == 0 : r->base_url != NULL;
    r->backend = remote ? "remote" : "local";
    if (remote && (r->base_url == NULL || r->base_url[0] == '\0')) {
        arena__err_set(err, "endpoint: required for a remote model");
        return ARENA_ERR_INVALID;
    }
    if (!remote && (r->path == NULL || r->path[0] == '\0')) {
        arena__err_set(err, "path: required for a local model");
        return ARENA_ERR_INVALID;
    }
    if (r->display_name == NULL)
        r->display_name = r->name;
    return ARENA_OK;
}

/* INSERT (ON CONFLICT DO NOTHING when if_absent). Returns ARENA_OK,
 * ARENA_ERR_CONFLICT (name taken, if not if_absent), ARENA_ERR_DB. */
static int row_insert(struct arena *a, const struct row *r, bool if_absent,
                      struct arena_err *err)
{
    struct db_conn *c;
    int rc = arena__db_get(a, &c, err);
    if (rc != ARENA_OK)
        return rc;
    const char *p[15] = {
        r->name,
        r->display_name,
        r->organisation != NULL ? r->organisation : "",
        r->licence != NULL ? r->licence : "open",
        r->backend,
        r->path,
        r->base_url,
        r->remote_model,
        r->api_key_env,
        r->has_price_in ? r->price_in : "0",
        r->has_price_out ? r->price_out : "0",
        r->has_weight ? r->weight : "1",
        r->has_enabled ? r->enabled : "true",
        r->system_prompt != NULL ? r->system_prompt : "",
        r->generation != NULL ? r->generation : "{}",
    };
    char sql[1024];
    snprintf(sql, sizeof(sql),
             "INSERT INTO models (name, display_name, organisation, licence, "
             "backend, path, base_url, remote_model, api_key_env, "
             "price_input_per_mtok, price_output_per_mtok, sampling_weight, "
             "enabled, system_prompt, generation) VALUES ($1, $2, $3, $4, "
             "$5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15::jsonb)%s",
             if_absent ? " ON CONFLICT (name) DO NOTHING" : "");
    struct db_err derr = {{0}, {0}};
    rc = db_exec(c, sql, 15, p, NULL, &derr);
    arena__db_put(a, c);
    if (rc == DB_ERR_CONFLICT) {
        arena__err_set(err, "name: a model named %s exists", r->name);
        return ARENA_ERR_CONFLICT;
    }
    if (rc == DB_ERR_QUERY && strncmp(derr.sqlstate, "23", 2) == 0) {
        arena__err_set(err, "model: %s", derr.msg);
        return ARENA_ERR_INVALID;
    }
    if (rc != DB_OK) {
        arena__err_set(err, "adding model %s: %s", r->name, derr.msg);
        return ARENA_ERR_DB;
    }
    return ARENA_OK;
}

int arena__registry_seed(struct arena *a, struct arena_err *err)
{
    const json_t *cfg = a->models_cfg;
    if (cfg != NULL && !json_is_array(cfg)) {
        arena__err_set(err, "config file: \"models\" must be an array");
        return ARENA_ERR_INVALID;
    }
    if (cfg != NULL) {
        size_t i;
        const json_t *m;
        json_array_foreach(cfg, i, m)
        {
            struct row r;
            struct arena_err e2 = {{0}};
            int rc = row_from_json(m, true, &r, &e2);
            if (rc == ARENA_OK)
                rc = row_insert(a, &r, true, &e2);
            free(r.generation);
            if (rc != ARENA_OK) {
                arena__err_set(err, "config file: models[%zu]: %s", i, e2.msg);
                return rc;
            }
        }
        return ARENA_OK;
    }
    /* No configuration: the hub's engines. */
    const char *names[256];
    size_t n = infer_hub_names(a->o.hub, names, 256);
    if (n > 256)
        n = 256;
    for (size_t i = 0; i < n; i++) {
        if (!name_ok(names[i]))
            continue;
        struct row r = {0};
        r.name = names[i];
        r.display_name = names[i];
        r.backend = "local";
        r.path = a->o.models_dir != NULL && a->o.models_dir[0] != '\0'
                     ? a->o.models_dir
                     : "(scanned)";
        int rc = row_insert(a, &r, true, err);
        if (rc != ARENA_OK)
            return rc;
    }
    return ARENA_OK;
}

/* ---------------------------------------------------------------------- */
/* Public: listing and admin changes                                      */

json_t *arena_models_public(struct arena *a)
{
    struct arena__models *m = arena__models_get(a);
    json_t *list = json_array();
    for (size_t i = 0; list != NULL && i < m->n; i++) {
        const struct arena__model *x = &m->items[i];
        if (x->enabled && x->engine != NULL)
            json_array_append_new(list, arena__model_json(x, false));
    }
    arena__models_put(m);
    return json_pack("{s:o*}", "models", list);
}

json_t *arena_models_admin(struct arena *a)
{
    struct arena__models *m = arena__models_get(a);
    json_t *list = json_array();
    for (size_t i = 0; list != NULL && i < m->n; i++) {
        json_t *o = arena__model_json(&m->items[i], true);
        if (o != NULL)
            json_object_set_new(
                o, "healthy",
                json_boolean(arena__model_healthy(a, m->items[i].id)));
        json_array_append_new(list, o);
    }
    arena__models_put(m);
    return json_pack("{s:o*}", "models", list);
}

static int answer_model(struct arena *a, const char *name, json_t **out,
                        struct arena_err *err)
{
    struct arena__models *m = arena__models_get(a);
    const struct arena__model *x = arena__model_by_name(m, name);
    *out = x != NULL ? arena__model_json(x, true) : NULL;
    arena__models_put(m);
    if (*out == NULL) {
        arena__err_set(err, "model %s vanished", name);
        return ARENA_ERR_NOT_FOUND;
    }
    return ARENA_OK;
}

int arena_model_add(struct arena *a, const json_t *body, json_t **out,
                    struct arena_err *err)
{
    *out = NULL;
    struct row r;
    int rc = row_from_json(body, true, &r, err);
    if (rc == ARENA_OK)
        rc = row_insert(a, &r, false, err);
    free(r.generation);
    if (rc == ARENA_OK)
        rc = arena__registry_load(a, err);
    if (rc == ARENA_OK)
        rc = answer_model(a, r.name, out, err);
    return rc;
}

int arena_model_update(struct arena *a, const char *name, const json_t *body,
                       json_t **out, struct arena_err *err)
{
    *out = NULL;
    struct row r;
    int rc = row_from_json(body, false, &r, err);
    if (rc != ARENA_OK) {
        free(r.generation);
        return rc;
    }
    struct db_conn *c;
    rc = arena__db_get(a, &c, err);
    if (rc != ARENA_OK) {
        free(r.generation);
        return rc;
    }
    const char *p[11] = {
        name,
        r.display_name,
        r.organisation,
        r.licence,
        r.has_price_in ? r.price_in : NULL,
        r.has_price_out ? r.price_out : NULL,
        r.has_weight ? r.weight : NULL,
        r.has_enabled ? r.enabled : NULL,
        r.system_prompt,
        r.generation,
        r.api_key_env,
    };
    PGresult *res = NULL;
    struct db_err derr = {{0}, {0}};
    rc = db_exec(c,
                 "UPDATE models SET display_name = coalesce($2, "
                 "display_name), organisation = coalesce($3, organisation), "
                 "licence = coalesce($4, licence), price_input_per_mtok = "
                 "coalesce($5::numeric, price_input_per_mtok), "
                 "price_output_per_mtok = coalesce($6::numeric, "
                 "price_output_per_mtok), sampling_weight = "
                 "coalesce($7::float8, sampling_weight), enabled = "
                 "coalesce($8::bool, enabled), system_prompt = coalesce($9, "
                 "system_prompt), generation = coalesce($10::jsonb, "
                 "generation), api_key_env = coalesce($11, api_key_env), "
                 "updated_at = now() WHERE name = $1 RETURNING id",
                 11, p, &res, &derr);
    arena__db_put(a, c);
    free(r.generation);
    if (rc == DB_ERR_QUERY && strncmp(derr.sqlstate, "23", 2) == 0) {
        arena__err_set(err, "model: %s", derr.msg);
        return ARENA_ERR_INVALID;
    }
    if (rc != DB_OK) {
        arena__err_set(err, "updating model %s: %s", name, derr.msg);
        return ARENA_ERR_DB;
    }
    int found = PQntuples(res);
    PQclear(res);
    if (found == 0) {
        arena__err_set(err, "no model named %s", name);
        return ARENA_ERR_NOT_FOUND;
    }
    rc = arena__registry_load(a, err);
    if (rc == ARENA_OK)
        rc = answer_model(a, name, out, err);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Health                                                                 */

bool arena__model_healthy(struct arena *a, int64_t id)
{
    bool ok = true;
    double now = arena__now();
    pthread_mutex_lock(&a->health_mu);
    for (size_t i = 0; i < a->n_health; i++)
        if (a->health[i].id == id && a->health[i].errors > 0 &&
            now - a->health[i].last_error < ARENA_COOLDOWN_S)
            ok = false;
    pthread_mutex_unlock(&a->health_mu);
    return ok;
}

void arena__model_report(struct arena *a, int64_t id, bool failed)
{
    pthread_mutex_lock(&a->health_mu);
    size_t i = 0;
    while (i < a->n_health && a->health[i].id != id)
        i++;
    if (i == a->n_health && failed) {
        if (a->n_health == a->cap_health) {
            size_t cap = a->cap_health ? a->cap_health * 2 : 16;
            void *p = realloc(a->health, cap * sizeof(*a->health));
            if (p == NULL) {
                pthread_mutex_unlock(&a->health_mu);
                return;
            }
            a->health = p;
            a->cap_health = cap;
        }
        a->health[i].id = id;
        a->health[i].errors = 0;
        a->n_health++;
    }
    if (i < a->n_health) {
        if (failed) {
            a->health[i].errors++;
            a->health[i].last_error = arena__now();
        } else {
            a->health[i].errors = 0;
        }
    }
    pthread_mutex_unlock(&a->health_mu);
}
