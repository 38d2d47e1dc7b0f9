/*
 * arena_export.c: battle records out of the database, streamed.
 *
 * Formats (docs/api.md, arena/README.md):
 *   battles  JSONL in the public Chatbot Arena schema: question_id,
 *            model_a, model_b, winner, judge, conversation_a,
 *            conversation_b (OpenAI-style message lists), turn, anony,
 *            language, tstamp, plus Arena's tags: is_code, prompt_len,
 *            tags, counted, excluded_reason, mode.
 *   dpo      JSONL {"prompt", "chosen", "rejected"} as message lists (the
 *            first user message; the rest of the winner's and the loser's
 *            conversations); ties and both-bad votes are left out.
 *   csv      question_id,model_a,model_b,winner,judge,turn,anony,language,
 *            tstamp,is_code,prompt_len,tags,counted,excluded_reason
 *            (RFC 4180; tags is the battle's JSON object).
 * The judge is "arena_" + 32 hex digits of HMAC-SHA256(server key,
 * "judge" || the visitor's cookie hash): stable per visitor, not
 * reversible without the key (null without a visitor or a key).
 *
 * Memory stays flat: rows come in pages of o->page votes by keyset
 * pagination on votes.id (no transaction or cursor is held between pages,
 * so a slow reader holds no snapshot), and each record is written out
 * before the next is built. Filters: time range on the vote's time, the
 * model on either side, and a leaderboard category (the same predicates
 * as the board's categories, in SQL). Only fixed SQL fragments are
 * concatenated; every value is a parameter.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "arena.h"
#include "arena_internal.h"
#include "db.h"

static void err_set(struct arena_err *err, const char *what, const char *detail)
{
    snprintf(err->msg, sizeof(err->msg), "%s%s%.200s", what,
             detail[0] ? ": " : "", detail);
}

int arena_export_format_parse(const char *s)
{
    if (s == NULL || s[0] == '\0' || strcmp(s, "battles") == 0 ||
        strcmp(s, "jsonl") == 0)
        return ARENA_EXPORT_BATTLES;
    if (strcmp(s, "dpo") == 0)
        return ARENA_EXPORT_DPO;
    if (strcmp(s, "csv") == 0)
        return ARENA_EXPORT_CSV;
    return -1;
}

/* The identity-leak test, as the board's loader writes it. */
#define LEAK_SQL                                                               \
    "(NOT v.counted OR b.excluded_reason IS NOT NULL "                         \
    "OR b.tags ? 'identity_leak')"

/* Category predicates (arena_board.c's list). $7 is the long-prompt
 * threshold, $8 the language of lang:XX. */
static const struct {
    const char *name;
    const char *sql;
} cat_sql[] = {
    {"overall", "NOT " LEAK_SQL},
    {"coding", "NOT " LEAK_SQL " AND (b.has_code OR b.tags ? 'coding')"},
    {"math", "NOT " LEAK_SQL " AND b.tags ? 'math'"},
    {"hard", "NOT " LEAK_SQL " AND b.tags ? 'hard'"},
    {"creative", "NOT " LEAK_SQL " AND b.tags ? 'creative'"},
    {"multi_turn", "NOT " LEAK_SQL " AND (v.turns > 1 OR b.turns > 1 OR "
                   "b.tags ? 'multi_turn')"},
    {"long_prompt", "NOT " LEAK_SQL " AND (b.prompt_len > $7::int OR "
                    "b.tags ? 'long_prompt')"},
    {"no_ties", "NOT " LEAK_SQL " AND v.winner IN ('model_a', 'model_b')"},
    {"include_flagged", "true"},
    {"lang:", "NOT " LEAK_SQL " AND b.language = $8"},
};

/* The SQL predicate of a category, or NULL if unknown. *lang is set for
 * lang:XX. */
static const char *category_sql(const char *cat, const char **lang)
{
    *lang = NULL;
    if (cat == NULL || cat[0] == '\0')
        return "true";
    if (strncmp(cat, "lang:", 5) == 0) {
        if (cat[5] == '\0' || strlen(cat) > 40)
            return NULL;
        *lang = cat + 5;
        return cat_sql[sizeof(cat_sql) / sizeof(cat_sql[0]) - 1].sql;
    }
    for (size_t i = 0; i + 1 < sizeof(cat_sql) / sizeof(cat_sql[0]); i++)
        if (strcmp(cat_sql[i].name, cat) == 0)
            return cat_sql[i].sql;
    return NULL;
}

int arena_export_check(const struct arena_export_opts *o, struct arena_err *err)
{
    const char *lang;
    if (category_sql(o->category, &lang) == NULL) {
        snprintf(err->msg, sizeof(err->msg), "category: unknown value '%.64s'",
                 o->category);
        return ARENA_ERR_INVALID;
    }
    if ((unsigned)o->format > ARENA_EXPORT_CSV) {
        snprintf(err->msg, sizeof(err->msg), "format: unknown");
        return ARENA_ERR_INVALID;
    }
    return ARENA_OK;
}

/* The conversation of one side: user prompts (side 'both') and that
 * side's answers, the last attempt of each, in turn order. */
#define CONV_SQL(side)                                                         \
    "(SELECT coalesce(json_agg(json_build_object('role', x.role, "             \
    "'content', x.content) ORDER BY x.turn, x.ord), '[]') FROM ("              \
    "SELECT DISTINCT ON (m.turn, m.side, m.role) m.turn, m.role, "             \
    "m.content, CASE m.role WHEN 'system' THEN 0 WHEN 'user' THEN 1 "          \
    "ELSE 2 END AS ord FROM messages m WHERE m.battle_id = b.id AND "          \
    "m.side IN ('both', '" side "') "                                          \
    "ORDER BY m.turn, m.side, m.role, m.attempt DESC) x)"

static const char page_sql_head[] =
    "SELECT v.id, replace(b.public_id::text, '-', ''), ma.name, mb.name, "
    "v.winner, vis.cookie_hash, v.turns, v.mode, b.language, "
    "extract(epoch FROM v.created_at)::float8, "
    "(b.has_code OR b.tags ? 'coding'), b.prompt_len, b.tags, "
    "NOT " LEAK_SQL ", coalesce(b.excluded_reason, "
    "CASE WHEN NOT v.counted THEN 'not_counted' END), " CONV_SQL(
        "a") ", " CONV_SQL("b") " "
                                "FROM votes v JOIN battles b ON b.id = "
                                "v.battle_id "
                                "JOIN models ma ON ma.id = v.model_a JOIN "
                                "models mb ON mb.id = v.model_b "
                                "LEFT JOIN visitors vis ON vis.id = "
                                "v.visitor_id "
                                "WHERE v.id > $1::bigint AND ($3::timestamptz "
                                "IS NULL OR "
                                "v.created_at >= $3::timestamptz) AND "
                                "($4::timestamptz IS NULL OR "
                                "v.created_at < $4::timestamptz) AND ($5::text "
                                "IS NULL OR ma.name = $5 "
                                "OR mb.name = $5) AND ($6::bool OR v.winner IN "
                                "('model_a', 'model_b')) "
                                "AND ($7::int IS NOT NULL) AND ($8::text IS "
                                "NULL OR true) AND ";
static const char page_sql_tail[] = " ORDER BY v.id LIMIT $2::int";

enum col {
    C_ID,
    C_QID,
    C_MA,
    C_MB,
    C_WINNER,
    C_VHASH,
    C_TURNS,
    C_MODE,
    C_LANG,
    C_TS,
    C_CODE,
    C_PLEN,
    C_TAGS,
    C_COUNTED,
    C_EXCL,
    C_CONV_A,
    C_CONV_B,
};

static json_t *str_or_null(const PGresult *res, int i, int c)
{
    return PQgetisnull(res, i, c) ? json_null()
                                  : json_string(PQgetvalue(res, i, c));
}

/* "arena_" + 32 hex digits, or "" when there is no visitor or key. */
static void judge_of(const struct arena_keys *keys, const PGresult *res, int i,
                     char out[40])
{
    out[0] = '\0';
    if (keys == NULL || PQgetisnull(res, i, C_VHASH))
        return;
    size_t n = 0;
    unsigned char *raw =
        PQunescapeBytea((const unsigned char *)PQgetvalue(res, i, C_VHASH), &n);
    if (raw == NULL)
        return;
    uint8_t mac[32];
    arena_keys_mac(keys, "judge", raw, n, mac);
    PQfreemem(raw);
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "arena_", 6);
    for (int k = 0; k < 16; k++) {
        out[6 + 2 * k] = hex[mac[k] >> 4];
        out[7 + 2 * k] = hex[mac[k] & 15];
    }
    out[38] = '\0';
}

static json_t *battle_record(const PGresult *res, int i, const char *judge)
{
    json_t *o = json_object();
    json_object_set_new(o, "question_id", str_or_null(res, i, C_QID));
    json_object_set_new(o, "model_a", str_or_null(res, i, C_MA));
    json_object_set_new(o, "model_b", str_or_null(res, i, C_MB));
    json_object_set_new(o, "winner", str_or_null(res, i, C_WINNER));
    json_object_set_new(o, "judge",
                        judge[0] ? json_string(judge) : json_null());
    json_t *ca = json_loads(PQgetvalue(res, i, C_CONV_A), 0, NULL);
    json_t *cb = json_loads(PQgetvalue(res, i, C_CONV_B), 0, NULL);
    json_object_set_new(o, "conversation_a", ca ? ca : json_array());
    json_object_set_new(o, "conversation_b", cb ? cb : json_array());
    json_object_set_new(o, "turn",
                        json_integer(atoi(PQgetvalue(res, i, C_TURNS))));
    json_object_set_new(
        o, "anony",
        json_boolean(strcmp(PQgetvalue(res, i, C_MODE), "anonymous") == 0));
    json_object_set_new(o, "language", str_or_null(res, i, C_LANG));
    json_object_set_new(o, "tstamp",
                        json_real(strtod(PQgetvalue(res, i, C_TS), NULL)));
    json_object_set_new(o, "is_code",
                        json_boolean(PQgetvalue(res, i, C_CODE)[0] == 't'));
    json_object_set_new(o, "prompt_len",
                        json_integer(atoi(PQgetvalue(res, i, C_PLEN))));
    json_t *tags = json_loads(PQgetvalue(res, i, C_TAGS), 0, NULL);
    json_object_set_new(o, "tags", tags ? tags : json_object());
    json_object_set_new(o, "counted",
                        json_boolean(PQgetvalue(res, i, C_COUNTED)[0] == 't'));
    json_object_set_new(o, "excluded_reason", str_or_null(res, i, C_EXCL));
    json_object_set_new(o, "mode", str_or_null(res, i, C_MODE));
    return o;
}

/* DPO: the first user message as prompt; the rest of each side. */
static json_t *dpo_record(const PGresult *res, int i)
{
    const char *w = PQgetvalue(res, i, C_WINNER);
    int a_won = strcmp(w, "model_a") == 0;
    json_t *ca = json_loads(PQgetvalue(res, i, C_CONV_A), 0, NULL);
    json_t *cb = json_loads(PQgetvalue(res, i, C_CONV_B), 0, NULL);
    json_t *o = NULL;
    if (!json_is_array(ca) || !json_is_array(cb) || json_array_size(ca) < 2 ||
        json_array_size(cb) < 2)
        goto out;
    /* The prompt: everything up to and including the first user message
     * (a system message may come first). */
    size_t k = 0;
    while (k < json_array_size(ca)) {
        const char *role =
            json_string_value(json_object_get(json_array_get(ca, k), "role"));
        if (role != NULL && strcmp(role, "user") == 0)
            break;
        k++;
    }
    if (k >= json_array_size(ca))
        goto out;
    json_t *prompt = json_array();
    for (size_t j = 0; j <= k; j++)
        json_array_append(prompt, json_array_get(ca, j));
    json_t *win = a_won ? ca : cb, *lose = a_won ? cb : ca;
    json_t *chosen = json_array(), *rejected = json_array();
    for (size_t j = k + 1; j < json_array_size(win); j++)
        json_array_append(chosen, json_array_get(win, j));
    for (size_t j = k + 1; j < json_array_size(lose); j++)
        json_array_append(rejected, json_array_get(lose, j));
    o = json_object();
    json_object_set_new(o, "question_id", str_or_null(res, i, C_QID));
    json_object_set_new(o, "prompt", prompt);
    json_object_set_new(o, "chosen", chosen);
    json_object_set_new(o, "rejected", rejected);
    json_object_set_new(o, "model_chosen",
                        str_or_null(res, i, a_won ? C_MA : C_MB));
    json_object_set_new(o, "model_rejected",
                        str_or_null(res, i, a_won ? C_MB : C_MA));
    json_object_set_new(o, "language", str_or_null(res, i, C_LANG));
out:
    json_decref(ca);
    json_decref(cb);
    return o;
}

/* Appends s as one CSV field (quoted when it needs to be). */
static int csv_field(char **buf, size_t *len, size_t *cap, const char *s,
                     int last)
{
    size_t l = strlen(s);
    if (*len + 2 * l + 4 > *cap) {
        size_t nc = *cap ? *cap : 1024;
        while (nc < *len + 2 * l + 4)
            nc *= 2;
        char *nb = realloc(*buf, nc);
        if (nb == NULL)
            return -1;
        *buf = nb;
        *cap = nc;
    }
    char *p = *buf + *len;
    if (strpbrk(s, ",\"\r\n") != NULL) {
        *p++ = '"';
        for (const char *q = s; *q; q++) {
            if (*q == '"')
                *p++ = '"';
            *p++ = *q;
        }
        *p++ = '"';
    } else {
        memcpy(p, s, l);
        p += l;
    }
    *p++ = last ? '\n' : ',';
    *len = (size_t)(p - *buf);
    return 0;
}

static const char csv_header[] =
    "question_id,model_a,model_b,winner,judge,turn,anony,language,tstamp,"
    "is_code,prompt_len,tags,counted,excluded_reason\n";

static int csv_record(const PGresult *res, int i, const char *judge, char **buf,
                      size_t *len, size_t *cap)
{
    const char *anony =
        strcmp(PQgetvalue(res, i, C_MODE), "anonymous") == 0 ? "true" : "false";
    const char *f[14] = {
        PQgetvalue(res, i, C_QID),
        PQgetvalue(res, i, C_MA),
        PQgetvalue(res, i, C_MB),
        PQgetvalue(res, i, C_WINNER),
        judge,
        PQgetvalue(res, i, C_TURNS),
        anony,
        PQgetvalue(res, i, C_LANG),
        PQgetvalue(res, i, C_TS),
        PQgetvalue(res, i, C_CODE)[0] == 't' ? "true" : "false",
        PQgetvalue(res, i, C_PLEN),
        PQgetvalue(res, i, C_TAGS),
        PQgetvalue(res, i, C_COUNTED)[0] == 't' ? "true" : "false",
        PQgetvalue(res, i, C_EXCL)};
    for (int k = 0; k < 14; k++)
        if (csv_field(buf, len, cap, f[k], k == 13) != 0)
            return -1;
    return 0;
}

int arena_export_run(struct db_conn *c, const struct arena_export_opts *o,
                     arena_export_write_fn write, void *user, uint64_t *rows,
                     struct arena_err *err)
{
    *rows = 0;
    if (arena_export_check(o, err) != ARENA_OK)
        return ARENA_ERR_INVALID;
    const char *lang = NULL;
    const char *pred = category_sql(o->category, &lang);
    size_t sql_len =
        sizeof(page_sql_head) + strlen(pred) + sizeof(page_sql_tail);
    char *sql = malloc(sql_len);
    if (sql == NULL) {
        err_set(err, "out of memory", "");
        return ARENA_ERR_NOMEM;
    }
    snprintf(sql, sql_len, "%s%s%s", page_sql_head, pred, page_sql_tail);
    char last_s[24], page_s[16], long_s[16];
    snprintf(page_s, sizeof(page_s), "%d", o->page > 0 ? o->page : 1000);
    snprintf(long_s, sizeof(long_s), "%d",
             o->long_prompt_bytes > 0 ? o->long_prompt_bytes : 1024);
    int64_t last = 0;
    int rc = ARENA_OK;
    char *buf = NULL;
    size_t cap = 0;
    /* Nothing is written before the first query succeeded, so a caller
     * can still answer an error (a bad time value) instead. */
    int first = 1;
    for (;;) {
        snprintf(last_s, sizeof(last_s), "%" PRId64, last);
        const char *p[8] = {last_s,
                            page_s,
                            o->from && o->from[0] ? o->from : NULL,
                            o->to && o->to[0] ? o->to : NULL,
                            o->model && o->model[0] ? o->model : NULL,
                            o->format == ARENA_EXPORT_DPO ? "false" : "true",
                            long_s,
                            lang};
        PGresult *res = NULL;
        struct db_err derr = {{0}, {0}};
        int drc = db_exec(c, sql, 8, p, &res, &derr);
        if (drc != DB_OK) {
            /* 22007/22008: a bad time value in from or to. */
            int bad = strncmp(derr.sqlstate, "22", 2) == 0;
            err_set(err, bad ? "from/to: not a time" : "export query",
                    bad ? "" : derr.msg);
            rc = bad ? ARENA_ERR_INVALID : ARENA_ERR_IO;
            break;
        }
        int n = PQntuples(res);
        if (first && o->format == ARENA_EXPORT_CSV &&
            write(user, csv_header, sizeof(csv_header) - 1) != 0) {
            err_set(err, "the reader went away", "");
            rc = ARENA_ERR_IO;
        }
        first = 0;
        for (int i = 0; i < n && rc == ARENA_OK; i++) {
            char judge[40];
            judge_of(o->keys, res, i, judge);
            size_t len = 0;
            if (o->format == ARENA_EXPORT_CSV) {
                if (csv_record(res, i, judge, &buf, &len, &cap) != 0)
                    rc = ARENA_ERR_NOMEM;
            } else {
                json_t *rec = o->format == ARENA_EXPORT_DPO
                                  ? dpo_record(res, i)
                                  : battle_record(res, i, judge);
                if (rec == NULL)
                    continue; /* a DPO pair without both answers */
                char *text =
                    json_dumps(rec, JSON_COMPACT | JSON_REAL_PRECISION(17));
                json_decref(rec);
                if (text == NULL) {
                    rc = ARENA_ERR_NOMEM;
                    break;
                }
                len = strlen(text);
                if (len + 2 > cap) {
                    char *nb = realloc(buf, len + 2);
                    if (nb == NULL) {
                        free(text);
                        rc = ARENA_ERR_NOMEM;
                        break;
                    }
                    buf = nb;
                    cap = len + 2;
                }
                memcpy(buf, text, len);
                buf[len++] = '\n';
                free(text);
            }
            if (rc == ARENA_OK && write(user, buf, len) != 0) {
                err_set(err, "the reader went away", "");
                rc = ARENA_ERR_IO;
            }
            if (rc == ARENA_OK)
                (*rows)++;
        }
        if (n > 0)
            last = strtoll(PQgetvalue(res, n - 1, C_ID), NULL, 10);
        int page = atoi(page_s);
        PQclear(res);
        if (rc != ARENA_OK || n < page)
            break;
    }
    if (rc == ARENA_ERR_NOMEM)
        err_set(err, "out of memory", "");
    free(buf);
    free(sql);
    return rc;
}
