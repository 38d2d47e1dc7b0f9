/*
 * arena_vote.c: votes, committed in groups.
 *
 * A handler fills a struct arena__vote on its stack, queues it and sleeps
 * on the vote's own semaphore. Writer threads (opts.vote_writers) each
 * take whatever is queued the moment they are free (up to
 * opts.vote_batch; no waiting for a batch to fill) and write it with ONE
 * prepared statement (one round trip, one commit: a lone statement is its
 * own transaction):
 *
 *   the battles named by the batch become 'voted' where they are ready
 *   and the visitor's (the UPDATE both checks and locks them; a vote for
 *   a battle another transaction is voting on waits for it, then sees
 *   'voted' and is left out); a vote is inserted for each (ON CONFLICT
 *   (battle_id) DO NOTHING, so a stray vote row never fails the
 *   neighbours); the statement returns the batch positions that got in.
 *
 * Only after the commit is each handler woken (sem_post on its own vote:
 * no broadcast that wakes every waiting handler), with its own result. A
 * vote that did not get in is classified afterwards by its own handler
 * (a read: unknown battle 404, someone else's 403, already voted 409, not
 * ready 409, failed 409), so the fast path has no extra round trip. Two
 * votes for the same battle never share a batch (the second waits for the
 * next one), which makes the 409 already_voted exact. If a batch statement
 * fails as a whole (a deadlock, a lost connection), each of its votes is
 * retried alone once, so one bad vote cannot fail the others.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "arena.h"
#include "arena_internal.h"
#include "db.h"

static const char vote_sql[] =
    "WITH v AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[], "
    "$4::bytea[]) WITH ORDINALITY AS v(pid, winner, vhash, iph, ord)), "
    "b AS (UPDATE battles b SET state = 'voted', updated_at = now() "
    "FROM v WHERE b.public_id = v.pid AND b.state = 'ready' "
    "AND b.mode <> 'direct' AND b.visitor_hash = v.vhash "
    "RETURNING b.id, b.model_a, b.model_b, b.mode, b.excluded_reason, "
    "b.visitor_id, b.turns, b.ready_at, v.winner, v.iph, v.ord), "
    "ins AS (INSERT INTO votes (battle_id, model_a, model_b, winner, mode, "
    "counted, visitor_id, ip_hash, turns, ms_to_vote) "
    "SELECT id, model_a, model_b, winner, mode, excluded_reason IS NULL, "
    "visitor_id, iph, turns, greatest(0, least(2000000000, "
    "extract(epoch FROM clock_timestamp() - coalesce(ready_at, "
    "clock_timestamp())) * 1000))::int FROM b "
    "ON CONFLICT (battle_id) DO NOTHING RETURNING battle_id) "
    "SELECT b.ord, b.model_a, b.model_b, coalesce(b.excluded_reason, '') "
    "FROM b JOIN ins ON ins.battle_id = b.id";

/* Appends s to a Postgres array literal, quoted ("..." with \ and "
 * escaped). Returns false when out of room. */
static bool arr_add(char **buf, size_t *len, size_t *cap, const char *s,
                    bool first)
{
    size_t need = *len + 2 * strlen(s) + 8;
    if (need > *cap) {
        size_t ncap = *cap ? *cap * 2 : 1024;
        while (ncap < need)
            ncap *= 2;
        char *nb = realloc(*buf, ncap);
        if (nb == NULL)
            return false;
        *buf = nb;
        *cap = ncap;
    }
    char *p = *buf + *len;
    if (first)
        *p++ = '{';
    else
        *p++ = ',';
    *p++ = '"';
    for (const char *q = s; *q; q++) {
        if (*q == '"' || *q == '\\')
            *p++ = '\\';
        *p++ = *q;
    }
    *p++ = '"';
    *len = (size_t)(p - *buf);
    return true;
}

/* Runs the vote statement, prepared once per connection (planning it
 * costs about as much as running it). Left to itself, PostgreSQL plans a
 * prepared statement with array parameters afresh at every run (its
 * generic plan assumes ten rows per array, so a custom plan always looks
 * cheaper); so the run is "SET LOCAL plan_cache_mode = force_generic_plan;
 * EXECUTE arena_vote(...)" in one simple query: one round trip, one
 * implicit transaction (the setting ends with it), committed before
 * PQexec returns. A connection that does not know the statement yet
 * (new, or reconnected) answers 26000: prepare, then run. */
static int vote_exec(struct db_conn *c, const char *const *p, PGresult **out)
{
    PGconn *pg = db_conn_pg(c);
    struct db_err derr;
    char *lit[4] = {NULL, NULL, NULL, NULL};
    char *sql = NULL;
    int rc = DB_ERR_NOMEM;
    size_t len = 128;
    for (int k = 0; k < 4; k++) {
        lit[k] = PQescapeLiteral(pg, p[k], strlen(p[k]));
        if (lit[k] == NULL)
            goto done;
        len += strlen(lit[k]) + 2;
    }
    sql = malloc(len);
    if (sql == NULL)
        goto done;
    snprintf(sql, len,
             "SET LOCAL plan_cache_mode = force_generic_plan; "
             "EXECUTE arena_vote(%s, %s, %s, %s)",
             lit[0], lit[1], lit[2], lit[3]);
    rc = DB_ERR;
    for (int attempt = 0; attempt < 2; attempt++) {
        PGresult *r = PQexec(pg, sql);
        if (PQresultStatus(r) == PGRES_TUPLES_OK) {
            *out = r;
            rc = DB_OK;
            break;
        }
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        bool unknown = state != NULL && strcmp(state, "26000") == 0;
        rc = db_err_from_result(c, r, &derr);
        PQclear(r);
        if (rc == DB_OK)
            rc = DB_ERR;
        if (!unknown || attempt > 0)
            break;
        r = PQprepare(pg, "arena_vote", vote_sql, 4, NULL);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        rc = ok ? DB_ERR : db_err_from_result(c, r, &derr);
        PQclear(r);
        if (!ok) {
            if (rc == DB_OK)
                rc = DB_ERR;
            break;
        }
    }
done:
    for (int k = 0; k < 4; k++)
        PQfreemem(lit[k]);
    free(sql);
    return rc;
}

/* Writes batch[0..n): sets each status (ARENA_OK, 1 = not inserted, or
 * ARENA_ERR_DB). */
static void write_batch(struct arena *a, struct arena__vote **batch, size_t n)
{
    char *arr[4] = {NULL, NULL, NULL, NULL};
    size_t len[4] = {0}, cap[4] = {0};
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        const struct arena__vote *v = batch[i];
        ok = arr_add(&arr[0], &len[0], &cap[0], v->uuid, i == 0) &&
             arr_add(&arr[1], &len[1], &cap[1], v->winner, i == 0) &&
             arr_add(&arr[2], &len[2], &cap[2], v->vhash, i == 0) &&
             arr_add(&arr[3], &len[3], &cap[3], v->iphash, i == 0);
    }
    for (int k = 0; k < 4 && ok; k++) {
        char *nb = realloc(arr[k], len[k] + 2);
        if (nb == NULL) {
            ok = false;
            break;
        }
        arr[k] = nb;
        arr[k][len[k]] = '}';
        arr[k][len[k] + 1] = '\0';
    }
    int status = ARENA_ERR_DB;
    PGresult *res = NULL;
    if (ok) {
        struct db_conn *c;
        struct arena_err err;
        if (arena__db_get(a, &c, &err) == ARENA_OK) {
            const char *p[4] = {arr[0], arr[1], arr[2], arr[3]};
            if (vote_exec(c, p, &res) == DB_OK)
                status = ARENA_OK;
            arena__db_put(a, c);
        }
    }
    for (int k = 0; k < 4; k++)
        free(arr[k]);
    for (size_t i = 0; i < n; i++)
        batch[i]->status = status == ARENA_OK ? 1 : ARENA_ERR_DB;
    if (status == ARENA_OK) {
        int rows = PQntuples(res);
        for (int r = 0; r < rows; r++) {
            long ord = strtol(PQgetvalue(res, r, 0), NULL, 10);
            if (ord < 1 || (size_t)ord > n)
                continue;
            struct arena__vote *v = batch[ord - 1];
            v->status = ARENA_OK;
            v->model_a = strtoll(PQgetvalue(res, r, 1), NULL, 10);
            v->model_b = strtoll(PQgetvalue(res, r, 2), NULL, 10);
            const char *reason = PQgetvalue(res, r, 3);
            v->counted = reason[0] == '\0';
            snprintf(v->reason, sizeof(v->reason), "%s", reason);
        }
    }
    PQclear(res);
}

static void *writer_main(void *arg)
{
    struct arena *a = arg;
    size_t cap = (size_t)a->o.vote_batch;
    struct arena__vote **batch = calloc(cap, sizeof(*batch));
    if (batch == NULL)
        cap = 1; /* degrade to one at a time on the stack below */
    struct arena__vote *one[1];
    struct arena__vote **b = batch != NULL ? batch : one;
    pthread_mutex_lock(&a->vq_mu);
    for (;;) {
        while (a->vq_head == NULL && !a->vq_stop)
            pthread_cond_wait(&a->vq_cond, &a->vq_mu);
        if (a->vq_head == NULL && a->vq_stop)
            break;
        /* Take up to cap votes, skipping any for a battle already taken. */
        size_t n = 0;
        struct arena__vote **link = &a->vq_head;
        while (*link != NULL && n < cap) {
            struct arena__vote *v = *link;
            bool dup = false;
            for (size_t i = 0; i < n && !dup; i++)
                dup = strcmp(b[i]->uuid, v->uuid) == 0;
            if (dup) {
                link = &v->next;
                continue;
            }
            *link = v->next;
            b[n++] = v;
        }
        /* Fix the tail: it is the last vote left in the queue. */
        a->vq_tail = NULL;
        for (struct arena__vote *v = a->vq_head; v != NULL; v = v->next)
            a->vq_tail = v;
        pthread_mutex_unlock(&a->vq_mu);

        write_batch(a, b, n);
        if (n > 1) {
            for (size_t i = 0; i < n; i++)
                if (b[i]->status == ARENA_ERR_DB)
                    write_batch(a, &b[i], 1);
        }
        /* Committed votes wake the leaderboard now, not at its next poll. */
        for (size_t i = 0; i < n; i++) {
            if (b[i]->status == ARENA_OK) {
                arena_board_touch();
                break;
            }
        }

        /* The handler may return (and its stack vote vanish) as soon
         * as it is posted: read nothing of b[i] after. */
        for (size_t i = 0; i < n; i++)
            sem_post(&b[i]->done);
        pthread_mutex_lock(&a->vq_mu);
    }
    pthread_mutex_unlock(&a->vq_mu);
    free(batch);
    return NULL;
}

int arena__votes_start(struct arena *a, struct arena_err *err)
{
    int n = a->o.vote_writers > 0 ? a->o.vote_writers : 1;
    a->writers = calloc((size_t)n, sizeof(*a->writers));
    if (a->writers == NULL) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return ARENA_ERR_NOMEM;
    }
    for (int i = 0; i < n; i++) {
        if (pthread_create(&a->writers[i], NULL, writer_main, a) != 0) {
            snprintf(err->msg, sizeof(err->msg),
                     "cannot start the vote writers");
            arena__votes_stop(a);
            return ARENA_ERR_NOMEM;
        }
        a->n_writers++;
    }
    return ARENA_OK;
}

void arena__votes_stop(struct arena *a)
{
    pthread_mutex_lock(&a->vq_mu);
    a->vq_stop = true;
    pthread_cond_broadcast(&a->vq_cond);
    pthread_mutex_unlock(&a->vq_mu);
    for (int i = 0; i < a->n_writers; i++)
        pthread_join(a->writers[i], NULL);
    a->n_writers = 0;
    free(a->writers);
    a->writers = NULL;
}

void arena__vote_wait(struct arena *a, struct arena__vote *v)
{
    v->next = NULL;
    if (sem_init(&v->done, 0, 0) != 0) {
        v->status = ARENA_ERR_DB;
        return;
    }
    pthread_mutex_lock(&a->vq_mu);
    if (a->vq_stop) {
        pthread_mutex_unlock(&a->vq_mu);
        sem_destroy(&v->done);
        v->status = ARENA_ERR_DB;
        return;
    }
    if (a->vq_tail != NULL)
        a->vq_tail->next = v;
    else
        a->vq_head = v;
    a->vq_tail = v;
    pthread_cond_signal(&a->vq_cond);
    pthread_mutex_unlock(&a->vq_mu);
    while (sem_wait(&v->done) != 0)
        ; /* EINTR: a signal; the result is not in yet */
    sem_destroy(&v->done);
}

/* Why a vote did not get in: one read. */
static int classify(struct arena *a, const struct arena__vote *v,
                    struct arena_err *err)
{
    struct db_conn *c;
    int rc = arena__db_get(a, &c, err);
    if (rc != ARENA_OK)
        return rc;
    const char *p[2] = {v->uuid, v->vhash};
    PGresult *res = NULL;
    struct db_err derr;
    rc = db_exec(c,
                 "SELECT b.state, b.visitor_hash = $2::bytea, b.mode, "
                 "EXISTS (SELECT 1 FROM votes WHERE battle_id = b.id) "
                 "FROM battles b WHERE b.public_id = $1::uuid",
                 2, p, &res, &derr);
    arena__db_put(a, c);
    if (rc != DB_OK) {
        snprintf(err->msg, sizeof(err->msg), "%s", derr.msg);
        return ARENA_ERR_DB;
    }
    if (PQntuples(res) == 0) {
        PQclear(res);
        snprintf(err->msg, sizeof(err->msg), "no such battle");
        return ARENA_ERR_NOT_FOUND;
    }
    const char *state = PQgetvalue(res, 0, 0);
    bool mine = PQgetvalue(res, 0, 1)[0] == 't';
    bool direct = strcmp(PQgetvalue(res, 0, 2), "direct") == 0;
    bool voted = PQgetvalue(res, 0, 3)[0] == 't';
    if (!mine)
        rc = ARENA_ERR_NOT_YOURS;
    else if (voted || strcmp(state, "voted") == 0)
        rc = ARENA_ERR_ALREADY_VOTED;
    else if (direct)
        rc = ARENA_ERR_NO_VOTE;
    else if (strcmp(state, "failed") == 0)
        rc = ARENA_ERR_FAILED;
    else
        rc = ARENA_ERR_NOT_READY;
    snprintf(err->msg, sizeof(err->msg), "%s",
             rc == ARENA_ERR_NOT_YOURS ? "this battle belongs to another "
                                         "visitor"
             : rc == ARENA_ERR_ALREADY_VOTED
                 ? "this battle already has its vote"
             : rc == ARENA_ERR_NO_VOTE ? "direct chats take no vote"
             : rc == ARENA_ERR_FAILED
                 ? "a model failed in this battle; it cannot be voted on"
                 : "vote once both sides have answered");
    PQclear(res);
    return rc;
}

static const char *const winners[] = {"model_a", "model_b", "tie",
                                      "tie (bothbad)"};

int arena_battle_vote(struct arena *a, const struct arena_visitor *vis,
                      const char *id, const char *winner, json_t **out,
                      struct arena_err *err)
{
    *out = NULL;
    struct arena__vote v;
    memset(&v, 0, sizeof(v));
    for (int i = 0; i < 4 && v.winner == NULL; i++)
        if (winner != NULL && strcmp(winner, winners[i]) == 0)
            v.winner = winners[i];
    if (v.winner == NULL) {
        snprintf(err->msg, sizeof(err->msg),
                 "winner: one of \"model_a\", \"model_b\", \"tie\", "
                 "\"tie (bothbad)\"");
        return ARENA_ERR_INVALID;
    }
    if (!arena__id_parse(id, v.uuid)) {
        snprintf(err->msg, sizeof(err->msg), "no such battle");
        return ARENA_ERR_NOT_FOUND;
    }
    arena__bytea(vis->hash, 32, v.vhash);
    arena__bytea(vis->ip_hash, 32, v.iphash);
    arena__vote_wait(a, &v);
    if (v.status == ARENA_ERR_DB) {
        snprintf(err->msg, sizeof(err->msg), "the database is unavailable");
        return ARENA_ERR_DB;
    }
    if (v.status != ARENA_OK)
        return classify(a, &v, err);
    struct arena__models *m = arena__models_get(a);
    const struct arena__model *ma = arena__model_by_id(m, v.model_a);
    const struct arena__model *mb = arena__model_by_id(m, v.model_b);
    json_t *models = json_object();
    if (ma != NULL)
        json_object_set_new(models, "a", arena__model_json(ma, false));
    if (mb != NULL)
        json_object_set_new(models, "b", arena__model_json(mb, false));
    arena__models_put(m);
    *out = json_pack("{s:s,s:b,s:s?,s:o}", "winner", v.winner, "counted",
                     v.counted, "reason", v.counted ? NULL : v.reason, "models",
                     models);
    if (*out == NULL) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return ARENA_ERR_NOMEM;
    }
    return ARENA_OK;
}
