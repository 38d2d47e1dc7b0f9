/*
 * arena_board_stats.c: the admin dashboard's numbers (docs/api.md), and
 * the anomalous-visitor flags.
 *
 * Everything here is SQL over the whole tables (or a recent window), so
 * it is for the admin page, not a hot path: web_stats.c caches the answer
 * for a few seconds. Votes over time come from the board's snapshot.
 *
 * Anomalous visitors (arena_board_flag_visitors), over their votes of the
 * last 7 days; any one signal sets visitors.flagged and flag_reason (a
 * flag is never cleared automatically; an admin decides):
 *   vote rate   more than rate_per_hour votes within one clock hour
 *   same side   at least same_min votes, and one side (model_a or
 *               model_b) chosen in >= 95% of them: not reading
 *   fast votes  at least fast_min votes, and the median time from both
 *               answers done to the vote under fast_ms
 * Flagged visitors' votes still count (weights and caps apply as usual);
 * the flag is for a human to look at.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "arena.h"
#include "arena_board_internal.h"
#include "db.h"

void arena_flag_opts_init(struct arena_flag_opts *o)
{
    o->rate_per_hour = 100;
    o->same_min = 30;
    o->fast_min = 20;
    o->fast_ms = 1500;
}

static const char flag_sql[] =
    "WITH v AS (SELECT visitor_id, winner, ms_to_vote, created_at "
    "FROM votes WHERE created_at > now() - interval '7 days' "
    "AND visitor_id IS NOT NULL), "
    "s AS (SELECT visitor_id, count(*) AS n, "
    "count(*) FILTER (WHERE winner = 'model_a') AS na, "
    "count(*) FILTER (WHERE winner = 'model_b') AS nb, "
    "percentile_cont(0.5) WITHIN GROUP (ORDER BY ms_to_vote) AS med "
    "FROM v GROUP BY 1), "
    "r AS (SELECT visitor_id, max(c) AS peak FROM (SELECT visitor_id, "
    "date_trunc('hour', created_at), count(*) AS c FROM v GROUP BY 1, 2) x "
    "GROUP BY 1), "
    "f AS (SELECT s.visitor_id, concat_ws('; ', "
    "CASE WHEN r.peak > $1::int THEN 'vote rate: ' || r.peak || "
    "' votes in one hour' END, "
    "CASE WHEN s.n >= $2::int AND greatest(s.na, s.nb) >= 0.95 * s.n "
    "THEN 'same side: ' || greatest(s.na, s.nb) || ' of ' || s.n || "
    "' votes for ' || CASE WHEN s.na >= s.nb THEN 'model_a' "
    "ELSE 'model_b' END END, "
    "CASE WHEN s.n >= $3::int AND s.med < $4::int THEN "
    "'fast votes: median ' || round(s.med) || ' ms' END) AS reason "
    "FROM s JOIN r USING (visitor_id)) "
    "UPDATE visitors SET flagged = true, flag_reason = f.reason FROM f "
    "WHERE visitors.id = f.visitor_id AND f.reason <> '' "
    "AND (NOT visitors.flagged OR visitors.flag_reason IS DISTINCT FROM "
    "f.reason) RETURNING visitors.id";

int arena_board_flag_visitors(struct db_conn *c,
                              const struct arena_flag_opts *o, int *flagged,
                              struct arena_err *err)
{
    char a[16], b[16], d[16], e[16];
    snprintf(a, sizeof(a), "%d", o->rate_per_hour);
    snprintf(b, sizeof(b), "%d", o->same_min);
    snprintf(d, sizeof(d), "%d", o->fast_min);
    snprintf(e, sizeof(e), "%d", o->fast_ms);
    const char *p[4] = {a, b, d, e};
    PGresult *res = NULL;
    struct db_err derr = {{0}, {0}};
    if (db_exec(c, flag_sql, 4, p, &res, &derr) != DB_OK) {
        snprintf(err->msg, sizeof(err->msg), "flagging visitors: %.200s",
                 derr.msg);
        return ARENA_ERR_IO;
    }
    *flagged = PQntuples(res);
    PQclear(res);
    return ARENA_OK;
}

/* Common English words left out of the prompt themes. */
static const char stopwords[] =
    "{the,and,for,are,but,not,you,all,any,can,had,her,was,one,our,out,day,"
    "get,has,him,his,how,man,new,now,old,see,two,way,who,boy,did,its,let,"
    "put,say,she,too,use,that,with,have,this,will,your,from,they,know,want,"
    "been,good,much,some,time,very,when,come,here,just,like,long,make,many,"
    "more,only,over,such,take,than,them,well,were,what,write,about,would,"
    "there,their,which,could,other,these,those,into,then,also,does,should,"
    "please,give,tell,explain,between,using,each,where,why,can't,don't,"
    "i'm,it's,something,need,help,could,may,might,must,shall,being,because,"
    "after,before,while,without,within,both,own,same,most,few,every}";

/* Runs sql and returns its result, or NULL with err set. */
static PGresult *query(struct db_conn *c, const char *sql, int n,
                       const char *const *p, struct arena_err *err)
{
    PGresult *res = NULL;
    struct db_err derr = {{0}, {0}};
    if (db_exec(c, sql, n, p, &res, &derr) != DB_OK) {
        snprintf(err->msg, sizeof(err->msg), "dashboard: %.200s", derr.msg);
        return NULL;
    }
    return res;
}

static json_t *num_or_null(const PGresult *res, int i, int col)
{
    return PQgetisnull(res, i, col)
               ? json_null()
               : json_real(strtod(PQgetvalue(res, i, col), NULL));
}

static json_t *name_counts(const PGresult *res, const char *k1, const char *k2)
{
    json_t *a = json_array();
    for (int i = 0; i < PQntuples(res); i++)
        json_array_append_new(
            a, json_pack("{s:s,s:I}", k1, PQgetvalue(res, i, 0), k2,
                         (json_int_t)strtoll(PQgetvalue(res, i, 1), NULL, 10)));
    return a;
}

int arena_board_dashboard(struct db_conn *c,
                          const struct arena_board_snap *snap,
                          int long_prompt_bytes, json_t **out,
                          struct arena_err *err)
{
    json_t *root = json_object();
    PGresult *res;
    int rc = ARENA_ERR_IO;
    char lp[16];
    snprintf(lp, sizeof(lp), "%d", long_prompt_bytes);

    /* Totals and cost per battle (battles that got at least one turn). */
    res = query(c,
                "SELECT (SELECT count(*) FROM votes), "
                "(SELECT count(*) FROM battles), "
                "(SELECT count(*) FROM visitors), "
                "(SELECT coalesce(sum(cost), 0)::float8 FROM messages), "
                "(SELECT count(*) FROM battles WHERE turns > 0)",
                0, NULL, err);
    if (res == NULL)
        goto out;
    double cost = strtod(PQgetvalue(res, 0, 3), NULL);
    double answered = strtod(PQgetvalue(res, 0, 4), NULL);
    json_object_set_new(
        root, "totals",
        json_pack(
            "{s:I,s:I,s:I,s:f}", "votes",
            (json_int_t)strtoll(PQgetvalue(res, 0, 0), NULL, 10), "battles",
            (json_int_t)strtoll(PQgetvalue(res, 0, 1), NULL, 10), "visitors",
            (json_int_t)strtoll(PQgetvalue(res, 0, 2), NULL, 10), "cost_usd",
            cost));
    json_object_set_new(root, "cost_per_battle_usd",
                        json_real(answered > 0 ? cost / answered : 0.0));
    PQclear(res);

    /* Votes over time: the board's day series. */
    size_t len = 0;
    const char *series = snap ? arena_board_votes(snap, "day", &len) : NULL;
    json_t *vot = series ? json_loadb(series, len, 0, NULL) : NULL;
    json_object_set_new(
        root, "votes_over_time",
        vot ? vot : json_pack("{s:s,s:[]}", "bucket", "day", "series"));

    /* Per model: answers, time to first token, tokens per second,
     * failures, cost. */
    res = query(c,
                "SELECT mo.name, mo.display_name, count(*), "
                "avg(m.ttft_ms)::float8, (sum(m.tokens_out) FILTER (WHERE "
                "m.gen_ms > 0) * 1000.0 / nullif(sum(m.gen_ms) FILTER "
                "(WHERE m.gen_ms > 0), 0))::float8, count(*) FILTER (WHERE "
                "m.error IS NOT NULL), coalesce(sum(m.cost), 0)::float8 "
                "FROM messages m JOIN models mo ON mo.id = m.model_id "
                "WHERE m.role = 'assistant' GROUP BY mo.id ORDER BY mo.name",
                0, NULL, err);
    if (res == NULL)
        goto out;
    json_t *models = json_array();
    for (int i = 0; i < PQntuples(res); i++) {
        json_t *o = json_object();
        json_object_set_new(o, "model", json_string(PQgetvalue(res, i, 0)));
        json_object_set_new(o, "display_name",
                            json_string(PQgetvalue(res, i, 1)));
        json_object_set_new(
            o, "answers",
            json_integer(strtoll(PQgetvalue(res, i, 2), NULL, 10)));
        json_object_set_new(o, "ttft_ms", num_or_null(res, i, 3));
        json_object_set_new(o, "tokens_per_s", num_or_null(res, i, 4));
        json_object_set_new(
            o, "failures",
            json_integer(strtoll(PQgetvalue(res, i, 5), NULL, 10)));
        json_object_set_new(o, "cost_usd", num_or_null(res, i, 6));
        json_array_append_new(models, o);
    }
    json_object_set_new(root, "models", models);
    PQclear(res);

    /* What people ask: category and language shares of battles with a
     * turn. */
    const char *p1[1] = {lp};
    res = query(c,
                "SELECT x.name, x.n FROM (SELECT "
                "count(*) FILTER (WHERE has_code OR tags ? 'coding') AS "
                "coding, count(*) FILTER (WHERE tags ? 'math') AS math, "
                "count(*) FILTER (WHERE tags ? 'hard') AS hard, "
                "count(*) FILTER (WHERE tags ? 'creative') AS creative, "
                "count(*) FILTER (WHERE turns > 1) AS multi_turn, "
                "count(*) FILTER (WHERE prompt_len > $1::int OR tags ? "
                "'long_prompt') AS long_prompt, count(*) FILTER (WHERE "
                "excluded_reason IS NOT NULL) AS flagged, count(*) AS all_ "
                "FROM battles WHERE turns > 0) c, LATERAL (VALUES "
                "('coding', c.coding), ('math', c.math), ('hard', c.hard), "
                "('creative', c.creative), ('multi_turn', c.multi_turn), "
                "('long_prompt', c.long_prompt), ('identity_leak', "
                "c.flagged), ('all', c.all_)) x(name, n)",
                1, p1, err);
    if (res == NULL)
        goto out;
    json_object_set_new(root, "categories",
                        name_counts(res, "name", "battles"));
    PQclear(res);
    res = query(c,
                "SELECT coalesce(nullif(language, ''), 'unknown'), count(*) "
                "FROM battles WHERE turns > 0 GROUP BY 1 ORDER BY 2 DESC, 1 "
                "LIMIT 20",
                0, NULL, err);
    if (res == NULL)
        goto out;
    json_object_set_new(root, "languages", name_counts(res, "name", "battles"));
    PQclear(res);

    /* Prompt themes: the commonest words (3+ letters, not stopwords) and
     * word pairs of the latest 20000 prompts. */
    const char *p2[1] = {stopwords};
    res = query(c,
                "WITH p AS (SELECT id, content FROM messages WHERE role = "
                "'user' ORDER BY id DESC LIMIT 20000), "
                "w AS (SELECT p.id, t.ord, t.w FROM p, LATERAL "
                "regexp_split_to_table(lower(p.content), '[^[:alnum:]_+#]+') "
                "WITH ORDINALITY t(w, ord)), "
                "k AS (SELECT id, ord, w FROM w WHERE length(w) >= 3 AND "
                "w !~ '^[0-9]+$' AND w <> ALL($1::text[])), "
                "bi AS (SELECT w || ' ' || lead(w) OVER (PARTITION BY id "
                "ORDER BY ord) AS t, lead(ord) OVER (PARTITION BY id ORDER "
                "BY ord) - ord AS gap FROM k) "
                "(SELECT w, count(DISTINCT id) FROM k GROUP BY w "
                "ORDER BY 2 DESC, 1 LIMIT 15) UNION ALL "
                "(SELECT t, count(*) FROM bi WHERE gap = 1 GROUP BY t "
                "HAVING count(*) > 1 ORDER BY 2 DESC, 1 LIMIT 10)",
                1, p2, err);
    if (res == NULL)
        goto out;
    json_object_set_new(root, "themes", name_counts(res, "theme", "count"));
    PQclear(res);

    /* Flagged visitors: a short prefix of the keyed hash, never more. */
    res = query(c,
                "SELECT encode(substr(v.cookie_hash, 1, 6), 'hex'), "
                "(SELECT count(*) FROM votes x WHERE x.visitor_id = v.id), "
                "coalesce(v.flag_reason, ''), to_char(v.last_seen AT TIME "
                "ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
                "FROM visitors v WHERE v.flagged ORDER BY v.last_seen DESC "
                "LIMIT 100",
                0, NULL, err);
    if (res == NULL)
        goto out;
    json_t *fl = json_array();
    for (int i = 0; i < PQntuples(res); i++)
        json_array_append_new(
            fl, json_pack("{s:s,s:I,s:s,s:s}", "visitor", PQgetvalue(res, i, 0),
                          "votes",
                          (json_int_t)strtoll(PQgetvalue(res, i, 1), NULL, 10),
                          "reason", PQgetvalue(res, i, 2), "last_seen",
                          PQgetvalue(res, i, 3)));
    json_object_set_new(root, "flagged_visitors", fl);
    PQclear(res);
    rc = ARENA_OK;
out:
    if (rc != ARENA_OK) {
        json_decref(root);
        return rc;
    }
    *out = root;
    return ARENA_OK;
}
