/*
 * arena_import.c: battle files into the database, in one transaction.
 *
 * Reading: JSONL (one record per line: the export's battles format or the
 * public Chatbot Arena files) or CSV (header row; model_a, model_b and
 * winner columns, or the winner_model_a / winner_model_b / winner_tie
 * columns of the arena-human-preference CSVs, whose prompt / response_a /
 * response_b columns, JSON lists of strings, become the conversations).
 * Winners: model_a, model_b, tie, tie (bothbad), both_bad.
 *
 * Writing: every record becomes one line of a COPY into a temporary
 * staging table (streamed in 256 KB chunks, so the client's memory stays
 * flat), then a handful of set-based statements move the rows:
 *   models    created as needed: disabled, backend local with no file
 *   visitors  one per judge, cookie_hash = sha256("import:" || judge)
 *   battles   ids drawn from the sequence; public_id = the question_id when
 *             it is a UUID not yet taken, else a fresh one
 *   messages  conversation_a's system and user messages (side both) and
 *             each side's assistant messages, turn = user messages so far
 *   votes     in file order (ORDER BY the line number), so vote ids keep
 *             the file's order and online Elo sees the same sequence.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "arena.h"
#include "arena_internal.h"
#include "db.h"

#define COPY_CHUNK (256 * 1024)

/* ------------------------------------------------------------------------
 * COPY text output
 * ---------------------------------------------------------------------- */

struct copy {
    PGconn *pg;
    char *buf;
    size_t len, cap;
    int failed;
};

static int copy_room(struct copy *c, size_t extra)
{
    if (c->len + extra <= c->cap)
        return 0;
    size_t nc = c->cap ? c->cap : COPY_CHUNK * 2;
    while (nc < c->len + extra)
        nc *= 2;
    char *nb = realloc(c->buf, nc);
    if (nb == NULL)
        return -1;
    c->buf = nb;
    c->cap = nc;
    return 0;
}

/* One field: escaped text, or \N for NULL; then a tab or newline. */
static int copy_field(struct copy *c, const char *s, int last)
{
    size_t l = s != NULL ? strlen(s) : 0;
    if (copy_room(c, 2 * l + 4) != 0)
        return -1;
    char *p = c->buf + c->len;
    if (s == NULL) {
        *p++ = '\\';
        *p++ = 'N';
    } else {
        for (const char *q = s; *q; q++) {
            switch (*q) {
            case '\\':
                *p++ = '\\';
                *p++ = '\\';
                break;
            case '\t':
                *p++ = '\\';
                *p++ = 't';
                break;
            case '\n':
                *p++ = '\\';
                *p++ = 'n';
                break;
            case '\r':
                *p++ = '\\';
                *p++ = 'r';
                break;
            default:
                *p++ = *q;
            }
        }
    }
    *p++ = last ? '\n' : '\t';
    c->len = (size_t)(p - c->buf);
    return 0;
}

static int copy_flush(struct copy *c, int force)
{
    if (c->len == 0 || (!force && c->len < COPY_CHUNK))
        return 0;
    if (PQputCopyData(c->pg, c->buf, (int)c->len) != 1) {
        c->failed = 1;
        return -1;
    }
    c->len = 0;
    return 0;
}

/* ------------------------------------------------------------------------
 * Records
 * ---------------------------------------------------------------------- */

/* One staged record; strings borrowed. */
struct rec {
    const char *qid, *model_a, *model_b, *winner, *judge, *language;
    const char *excluded_reason;
    char tstamp[40], turns[16], prompt_len[16];
    int has_tstamp, has_turns, has_prompt_len;
    int anony, is_code, counted; /* -1: absent */
    char *tags;                  /* owned JSON text, or NULL */
    char *conv_a, *conv_b;       /* owned JSON text, or NULL */
};

static const char *winner_norm(const char *w)
{
    if (w == NULL)
        return NULL;
    if (strcmp(w, "model_a") == 0 || strcmp(w, "left") == 0)
        return "model_a";
    if (strcmp(w, "model_b") == 0 || strcmp(w, "right") == 0)
        return "model_b";
    if (strcmp(w, "tie") == 0)
        return "tie";
    if (strcmp(w, "tie (bothbad)") == 0 || strcmp(w, "both_bad") == 0 ||
        strcmp(w, "tie(bothbad)") == 0)
        return "tie (bothbad)";
    return NULL;
}

/* The models table's name rule (0002_arena.sql). */
static int name_ok(const char *s)
{
    if (s == NULL || !isalnum((unsigned char)s[0]))
        return 0;
    size_t n = 0;
    for (const char *p = s; *p; p++, n++)
        if (!isalnum((unsigned char)*p) && strchr("._:/@+-_", *p) == NULL)
            return 0;
    return n <= 128;
}

/* A conversation normalised to [{"role", "content"}] with string
 * contents; NULL if v is not an array. Also sums the user contents'
 * bytes into *user_bytes and counts user messages. */
static char *conv_norm(const json_t *v, size_t *user_bytes, int *users)
{
    if (!json_is_array(v))
        return NULL;
    json_t *out = json_array();
    size_t i;
    const json_t *m;
    json_array_foreach(v, i, m)
    {
        const char *role = json_string_value(json_object_get(m, "role"));
        const json_t *content = json_object_get(m, "content");
        if (role == NULL)
            continue;
        char *dumped = NULL;
        const char *text = json_string_value(content);
        if (text == NULL && content != NULL && !json_is_null(content)) {
            dumped = json_dumps(content, JSON_COMPACT | JSON_ENCODE_ANY);
            text = dumped;
        }
        if (strcmp(role, "user") == 0) {
            *user_bytes += (*users > 0 ? 1 : 0) + strlen(text ? text : "");
            (*users)++;
        }
        json_array_append_new(out, json_pack("{s:s,s:s}", "role", role,
                                             "content", text ? text : ""));
        free(dumped);
    }
    char *s = json_dumps(out, JSON_COMPACT);
    json_decref(out);
    return s;
}

/* A conversation from the CSV columns: JSON lists of strings (prompts
 * and one side's responses), interleaved. */
static char *conv_from_lists(const char *prompts, const char *answers,
                             size_t *user_bytes, int *users)
{
    json_t *p = prompts ? json_loads(prompts, 0, NULL) : NULL;
    json_t *a = answers ? json_loads(answers, 0, NULL) : NULL;
    char *s = NULL;
    if (json_is_array(p) && json_is_array(a)) {
        json_t *conv = json_array();
        for (size_t i = 0; i < json_array_size(p); i++) {
            const char *q = json_string_value(json_array_get(p, i));
            const char *r = json_string_value(json_array_get(a, i));
            json_array_append_new(conv, json_pack("{s:s,s:s}", "role", "user",
                                                  "content", q ? q : ""));
            if (i < json_array_size(a))
                json_array_append_new(conv, json_pack("{s:s,s:s}", "role",
                                                      "assistant", "content",
                                                      r ? r : ""));
        }
        *user_bytes = 0;
        *users = 0;
        s = conv_norm(conv, user_bytes, users);
        json_decref(conv);
    }
    json_decref(p);
    json_decref(a);
    return s;
}

static void rec_free(struct rec *r)
{
    free(r->tags);
    free(r->conv_a);
    free(r->conv_b);
}

/* Stages one record (seq = its line). Returns 1 staged, 0 skipped, -1 out
 * of memory. */
static int rec_stage(struct copy *c, long long seq, struct rec *r,
                     size_t user_bytes, int users)
{
    const char *w = winner_norm(r->winner);
    if (w == NULL || !name_ok(r->model_a) || !name_ok(r->model_b) ||
        strcmp(r->model_a, r->model_b) == 0)
        return 0;
    char seq_s[24];
    snprintf(seq_s, sizeof(seq_s), "%lld", seq);
    if (!r->has_turns)
        snprintf(r->turns, sizeof(r->turns), "%d", users > 0 ? users : 1);
    if (!r->has_prompt_len)
        snprintf(r->prompt_len, sizeof(r->prompt_len), "%zu", user_bytes);
    const char *counted = r->counted < 0
                              ? (r->excluded_reason ? "false" : "true")
                          : r->counted ? "true"
                                       : "false";
    const char *f[17] = {seq_s,
                         r->qid,
                         r->model_a,
                         r->model_b,
                         w,
                         r->judge,
                         r->has_tstamp ? r->tstamp : NULL,
                         r->language,
                         r->turns,
                         r->anony == 0 ? "false" : "true",
                         r->is_code == 1 ? "true" : "false",
                         r->prompt_len,
                         r->tags ? r->tags : "{}",
                         r->excluded_reason,
                         counted,
                         r->conv_a,
                         r->conv_b};
    for (int k = 0; k < 17; k++)
        if (copy_field(c, f[k], k == 16) != 0)
            return -1;
    return 1;
}

/* ------------------------------------------------------------------------
 * JSONL
 * ---------------------------------------------------------------------- */

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static int jbool(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    return json_is_boolean(v) ? json_is_true(v) : -1;
}

static int read_jsonl(FILE *f, struct copy *c, uint64_t *rows,
                      uint64_t *skipped, struct arena_err *err)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long long lineno = 0;
    int rc = ARENA_OK;
    while ((n = getline(&line, &cap, f)) > 0) {
        lineno++;
        size_t len = (size_t)n;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (len == 0)
            continue;
        json_error_t jerr;
        json_t *o = json_loadb(line, len, 0, &jerr);
        if (!json_is_object(o)) {
            json_decref(o);
            snprintf(err->msg, sizeof(err->msg), "line %lld: %.200s", lineno,
                     json_is_object(o) ? "not an object" : jerr.text);
            rc = ARENA_ERR_PARSE;
            break;
        }
        struct rec r;
        memset(&r, 0, sizeof(r));
        r.qid = jstr(o, "question_id");
        r.model_a = jstr(o, "model_a");
        r.model_b = jstr(o, "model_b");
        r.winner = jstr(o, "winner");
        r.judge = jstr(o, "judge");
        r.language = jstr(o, "language");
        r.excluded_reason = jstr(o, "excluded_reason");
        json_t *ts = json_object_get(o, "tstamp");
        if (json_is_number(ts)) {
            snprintf(r.tstamp, sizeof(r.tstamp), "%.17g",
                     json_number_value(ts));
            r.has_tstamp = 1;
        }
        json_t *turn = json_object_get(o, "turn");
        if (json_is_integer(turn)) {
            snprintf(r.turns, sizeof(r.turns), "%lld",
                     (long long)json_integer_value(turn));
            r.has_turns = json_integer_value(turn) >= 0 &&
                          json_integer_value(turn) < 1000000;
        }
        json_t *pl = json_object_get(o, "prompt_len");
        if (json_is_integer(pl) && json_integer_value(pl) >= 0 &&
            json_integer_value(pl) < 2000000000) {
            snprintf(r.prompt_len, sizeof(r.prompt_len), "%lld",
                     (long long)json_integer_value(pl));
            r.has_prompt_len = 1;
        }
        r.anony = jbool(o, "anony");
        r.is_code = jbool(o, "is_code");
        r.counted = jbool(o, "counted");
        json_t *tags = json_object_get(o, "tags");
        if (json_is_object(tags))
            r.tags = json_dumps(tags, JSON_COMPACT);
        size_t ub = 0, ub_b = 0;
        int users = 0, users_b = 0;
        r.conv_a = conv_norm(json_object_get(o, "conversation_a"), &ub, &users);
        r.conv_b =
            conv_norm(json_object_get(o, "conversation_b"), &ub_b, &users_b);
        int s = rec_stage(c, lineno, &r, ub, users);
        rec_free(&r);
        json_decref(o);
        if (s < 0 || copy_flush(c, 0) != 0) {
            snprintf(err->msg, sizeof(err->msg), "%s",
                     s < 0 ? "out of memory" : "COPY failed");
            rc = s < 0 ? ARENA_ERR_NOMEM : ARENA_ERR_IO;
            break;
        }
        if (s == 1)
            (*rows)++;
        else
            (*skipped)++;
    }
    free(line);
    return rc;
}

/* ------------------------------------------------------------------------
 * CSV (RFC 4180)
 * ---------------------------------------------------------------------- */

#define CSV_MAX_FIELDS 64

struct csv_row {
    char *buf;
    size_t len, cap;
    size_t off[CSV_MAX_FIELDS];
    int n;
};

/* Reads one record (quoted fields may hold newlines). Returns 1, 0 at
 * the end, -1 on a malformed or too wide row. */
static int csv_next(FILE *f, struct csv_row *r, long long *lineno)
{
    r->len = 0;
    r->n = 0;
    int c = fgetc(f);
    if (c == EOF)
        return 0;
    (*lineno)++;
    int quoted = 0, start = 1;
    r->off[r->n++] = 0;
    for (;; c = fgetc(f)) {
        if (r->len + 2 > r->cap) {
            size_t nc = r->cap ? r->cap * 2 : 4096;
            char *nb = realloc(r->buf, nc);
            if (nb == NULL)
                return -1;
            r->buf = nb;
            r->cap = nc;
        }
        if (c == EOF) {
            if (quoted)
                return -1;
            break;
        }
        if (quoted) {
            if (c == '"') {
                int d = fgetc(f);
                if (d == '"') {
                    r->buf[r->len++] = '"';
                    continue;
                }
                quoted = 0;
                if (d == EOF)
                    break;
                c = d;
            } else {
                if (c == '\n')
                    (*lineno)++;
                r->buf[r->len++] = (char)c;
                continue;
            }
        }
        if (c == '"' && start) {
            quoted = 1;
            start = 0;
            continue;
        }
        start = 0;
        if (c == ',') {
            r->buf[r->len++] = '\0';
            if (r->n >= CSV_MAX_FIELDS)
                return -1;
            r->off[r->n++] = r->len;
            start = 1;
            continue;
        }
        if (c == '\r')
            continue;
        if (c == '\n')
            break;
        r->buf[r->len++] = (char)c;
    }
    r->buf[r->len] = '\0';
    return 1;
}

/* A whole number in [0, max) written back into buf: 1; else (absent,
 * empty, not a number) 0. */
static int csv_count(const char *s, long max, char *buf, size_t n)
{
    char *end;
    if (s == NULL || s[0] == '\0')
        return 0;
    long v = strtol(s, &end, 10);
    if (*end != '\0' || v < 0 || v >= max)
        return 0;
    snprintf(buf, n, "%ld", v);
    return 1;
}

static const char *csv_get(const struct csv_row *r, int col)
{
    return col >= 0 && col < r->n ? r->buf + r->off[col] : NULL;
}

static int csv_bool(const char *s)
{
    if (s == NULL || s[0] == '\0')
        return -1;
    return strcmp(s, "true") == 0 || strcmp(s, "True") == 0 ||
           strcmp(s, "1") == 0 || strcmp(s, "t") == 0;
}

enum {
    K_QID,
    K_ID,
    K_MA,
    K_MB,
    K_WINNER,
    K_JUDGE,
    K_TSTAMP,
    K_LANG,
    K_TURN,
    K_ANONY,
    K_CODE,
    K_COUNTED,
    K_EXCL,
    K_PLEN,
    K_TAGS,
    K_WA,
    K_WB,
    K_WTIE,
    K_PROMPT,
    K_RA,
    K_RB,
    N_K
};
static const char *const csv_names[N_K] = {"question_id",
                                           "id",
                                           "model_a",
                                           "model_b",
                                           "winner",
                                           "judge",
                                           "tstamp",
                                           "language",
                                           "turn",
                                           "anony",
                                           "is_code",
                                           "counted",
                                           "excluded_reason",
                                           "prompt_len",
                                           "tags",
                                           "winner_model_a",
                                           "winner_model_b",
                                           "winner_tie",
                                           "prompt",
                                           "response_a",
                                           "response_b"};

static int read_csv(FILE *f, struct copy *c, uint64_t *rows, uint64_t *skipped,
                    struct arena_err *err)
{
    struct csv_row row = {0};
    long long lineno = 0;
    int col[N_K];
    int rc = ARENA_OK;
    if (csv_next(f, &row, &lineno) != 1) {
        snprintf(err->msg, sizeof(err->msg), "no header row");
        free(row.buf);
        return ARENA_ERR_PARSE;
    }
    for (int k = 0; k < N_K; k++) {
        col[k] = -1;
        for (int i = 0; i < row.n; i++) {
            const char *h = csv_get(&row, i);
            if (i == 0 && (unsigned char)h[0] == 0xef) /* UTF-8 BOM */
                h += 3;
            if (strcmp(h, csv_names[k]) == 0)
                col[k] = i;
        }
    }
    if (col[K_MA] < 0 || col[K_MB] < 0 ||
        (col[K_WINNER] < 0 && col[K_WA] < 0)) {
        snprintf(err->msg, sizeof(err->msg),
                 "line 1: model_a, model_b and winner (or winner_model_a, "
                 "winner_model_b, winner_tie) columns are needed");
        free(row.buf);
        return ARENA_ERR_PARSE;
    }
    int got;
    while ((got = csv_next(f, &row, &lineno)) == 1) {
        if (row.n == 1 && csv_get(&row, 0)[0] == '\0')
            continue; /* blank line */
        struct rec r;
        memset(&r, 0, sizeof(r));
        r.qid = csv_get(&row, col[K_QID] >= 0 ? col[K_QID] : col[K_ID]);
        r.model_a = csv_get(&row, col[K_MA]);
        r.model_b = csv_get(&row, col[K_MB]);
        r.winner = csv_get(&row, col[K_WINNER]);
        if (col[K_WINNER] < 0)
            r.winner = csv_bool(csv_get(&row, col[K_WA])) == 1     ? "model_a"
                       : csv_bool(csv_get(&row, col[K_WB])) == 1   ? "model_b"
                       : csv_bool(csv_get(&row, col[K_WTIE])) == 1 ? "tie"
                                                                   : NULL;
        r.judge = csv_get(&row, col[K_JUDGE]);
        if (r.judge != NULL && r.judge[0] == '\0')
            r.judge = NULL;
        r.language = csv_get(&row, col[K_LANG]);
        if (r.language != NULL && r.language[0] == '\0')
            r.language = NULL;
        r.excluded_reason = csv_get(&row, col[K_EXCL]);
        if (r.excluded_reason != NULL && r.excluded_reason[0] == '\0')
            r.excluded_reason = NULL;
        const char *ts = csv_get(&row, col[K_TSTAMP]);
        char *end;
        if (ts != NULL && ts[0] != '\0') {
            double d = strtod(ts, &end);
            if (*end == '\0') {
                snprintf(r.tstamp, sizeof(r.tstamp), "%.17g", d);
                r.has_tstamp = 1;
            }
        }
        r.has_turns = csv_count(csv_get(&row, col[K_TURN]), 1000000, r.turns,
                                sizeof(r.turns));
        r.has_prompt_len = csv_count(csv_get(&row, col[K_PLEN]), 2000000000,
                                     r.prompt_len, sizeof(r.prompt_len));
        const char *tags = csv_get(&row, col[K_TAGS]);
        if (tags != NULL && tags[0] != '\0') {
            json_t *t = json_loads(tags, 0, NULL);
            if (json_is_object(t))
                r.tags = json_dumps(t, JSON_COMPACT);
            json_decref(t);
        }
        r.anony = csv_bool(csv_get(&row, col[K_ANONY]));
        r.is_code = csv_bool(csv_get(&row, col[K_CODE]));
        r.counted = csv_bool(csv_get(&row, col[K_COUNTED]));
        size_t ub = 0, ub_b = 0;
        int users = 0, users_b = 0;
        const char *prompts = csv_get(&row, col[K_PROMPT]);
        r.conv_a =
            conv_from_lists(prompts, csv_get(&row, col[K_RA]), &ub, &users);
        r.conv_b =
            conv_from_lists(prompts, csv_get(&row, col[K_RB]), &ub_b, &users_b);
        int s = rec_stage(c, lineno, &r, ub, users);
        rec_free(&r);
        if (s < 0 || copy_flush(c, 0) != 0) {
            snprintf(err->msg, sizeof(err->msg), "%s",
                     s < 0 ? "out of memory" : "COPY failed");
            rc = s < 0 ? ARENA_ERR_NOMEM : ARENA_ERR_IO;
            break;
        }
        if (s == 1)
            (*rows)++;
        else
            (*skipped)++;
    }
    if (got < 0 && rc == ARENA_OK) {
        snprintf(err->msg, sizeof(err->msg),
                 "line %lld: malformed CSV (unclosed quote or over %d "
                 "columns)",
                 lineno, CSV_MAX_FIELDS);
        rc = ARENA_ERR_PARSE;
    }
    free(row.buf);
    return rc;
}

/* ------------------------------------------------------------------------
 * The transaction
 * ---------------------------------------------------------------------- */

static const char stage_sql[] =
    "CREATE TEMP TABLE arena_import (seq bigint, qid text, model_a text, "
    "model_b text, winner text, judge text, tstamp float8, language text, "
    "turns int, anony bool, is_code bool, prompt_len int, tags jsonb, "
    "excluded_reason text, counted bool, conv_a jsonb, conv_b jsonb) "
    "ON COMMIT DROP";

static const char *const move_sql[] = {
    "INSERT INTO models (name, display_name, backend, path, enabled) "
    "SELECT n, n, 'local', '', false FROM (SELECT model_a AS n FROM "
    "arena_import UNION SELECT model_b FROM arena_import) x "
    "ORDER BY n ON CONFLICT (name) DO NOTHING",

    "INSERT INTO visitors (cookie_hash, first_seen, last_seen) "
    "SELECT sha256(convert_to('import:' || judge, 'UTF8')), "
    "coalesce(to_timestamp(min(tstamp)), now()), "
    "coalesce(to_timestamp(max(tstamp)), now()) FROM arena_import "
    "WHERE judge IS NOT NULL GROUP BY judge "
    "ON CONFLICT (cookie_hash) DO NOTHING",

    "CREATE TEMP TABLE arena_import_b ON COMMIT DROP AS "
    "SELECT i.*, nextval(pg_get_serial_sequence('battles', 'id')) AS bid, "
    "ma.id AS ma_id, mb.id AS mb_id, vis.id AS vis_id, "
    "CASE WHEN i.qid ~ '^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
    "[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$' THEN i.qid::uuid END AS pid0, "
    "coalesce(to_timestamp(i.tstamp), now()) AS ts "
    "FROM arena_import i JOIN models ma ON ma.name = i.model_a "
    "JOIN models mb ON mb.name = i.model_b "
    "LEFT JOIN visitors vis ON i.judge IS NOT NULL AND vis.cookie_hash = "
    "sha256(convert_to('import:' || i.judge, 'UTF8'))",

    "INSERT INTO battles (id, public_id, mode, model_a, model_b, visitor_id, "
    "state, excluded_reason, language, has_code, turns, prompt_len, tags, "
    "created_at, updated_at, ready_at) OVERRIDING SYSTEM VALUE "
    "SELECT bid, CASE WHEN pid0 IS NOT NULL AND row_number() OVER "
    "(PARTITION BY pid0 ORDER BY seq) = 1 AND NOT EXISTS (SELECT 1 FROM "
    "battles x WHERE x.public_id = pid0) THEN pid0 ELSE gen_random_uuid() "
    "END, CASE WHEN anony THEN 'anonymous' ELSE 'named' END, ma_id, mb_id, "
    "vis_id, 'voted', excluded_reason, language, is_code, "
    "greatest(turns, 1), prompt_len, tags, ts, ts, ts FROM arena_import_b",

    "INSERT INTO messages (battle_id, turn, attempt, side, role, model_id, "
    "content, created_at) "
    "SELECT bid, turn, 0, CASE WHEN role = 'assistant' THEN sd ELSE 'both' "
    "END, role, CASE WHEN role = 'assistant' THEN mid END, content, ts "
    "FROM (SELECT b.bid, b.ts, s.sd, CASE s.sd WHEN 'a' THEN b.ma_id ELSE "
    "b.mb_id END AS mid, e.ord, e.val->>'role' AS role, "
    "coalesce(e.val->>'content', '') AS content, "
    "sum(CASE WHEN e.val->>'role' = 'user' THEN 1 ELSE 0 END) OVER "
    "(PARTITION BY b.bid, s.sd ORDER BY e.ord) AS turn "
    "FROM arena_import_b b CROSS JOIN (VALUES ('a'), ('b')) s(sd) "
    "CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(CASE "
    "s.sd WHEN 'a' THEN b.conv_a ELSE b.conv_b END) = 'array' THEN CASE "
    "s.sd WHEN 'a' THEN b.conv_a ELSE b.conv_b END ELSE '[]'::jsonb END) "
    "WITH ORDINALITY e(val, ord)) x "
    "WHERE role IN ('system', 'user', 'assistant') AND (role = 'assistant' "
    "OR sd = 'a') ON CONFLICT DO NOTHING",

    "INSERT INTO votes (battle_id, model_a, model_b, winner, mode, counted, "
    "visitor_id, turns, created_at) "
    "SELECT bid, ma_id, mb_id, winner, CASE WHEN anony THEN 'anonymous' "
    "ELSE 'named' END, counted, vis_id, greatest(turns, 1), ts "
    "FROM arena_import_b ORDER BY seq",
};

int arena_import_file(struct db_conn *conn, const char *path,
                      const char *format, uint64_t *rows, uint64_t *skipped,
                      struct arena_err *err)
{
    *rows = *skipped = 0;
    if (format == NULL) {
        const char *dot = strrchr(path, '.');
        format = dot != NULL && strcmp(dot, ".csv") == 0 ? "csv" : "jsonl";
    }
    if (strcmp(format, "csv") != 0 && strcmp(format, "jsonl") != 0) {
        snprintf(err->msg, sizeof(err->msg), "format: csv or jsonl");
        return ARENA_ERR_INVALID;
    }
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (f == NULL) {
        snprintf(err->msg, sizeof(err->msg), "%.200s: cannot open", path);
        return ARENA_ERR_IO;
    }
    struct db_err derr = {{0}, {0}};
    struct copy c = {.pg = db_conn_pg(conn)};
    int rc = ARENA_ERR_IO;
    if (db_begin(conn, &derr) != DB_OK ||
        db_exec(conn, stage_sql, 0, NULL, NULL, &derr) != DB_OK) {
        snprintf(err->msg, sizeof(err->msg), "%.250s", derr.msg);
        goto out;
    }
    PGresult *res = PQexec(c.pg, "COPY arena_import FROM STDIN");
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        db_err_from_result(conn, res, &derr);
        PQclear(res);
        snprintf(err->msg, sizeof(err->msg), "%.250s", derr.msg);
        goto out;
    }
    PQclear(res);
    rc = strcmp(format, "csv") == 0 ? read_csv(f, &c, rows, skipped, err)
                                    : read_jsonl(f, &c, rows, skipped, err);
    if (rc == ARENA_OK && copy_flush(&c, 1) != 0) {
        snprintf(err->msg, sizeof(err->msg), "COPY failed");
        rc = ARENA_ERR_IO;
    }
    PQputCopyEnd(c.pg, rc == ARENA_OK ? NULL : "import failed");
    while ((res = PQgetResult(c.pg)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK && rc == ARENA_OK) {
            db_err_from_result(conn, res, &derr);
            snprintf(err->msg, sizeof(err->msg), "COPY: %.240s", derr.msg);
            rc = ARENA_ERR_IO;
        }
        PQclear(res);
    }
    for (size_t i = 0;
         rc == ARENA_OK && i < sizeof(move_sql) / sizeof(move_sql[0]); i++) {
        if (db_exec(conn, move_sql[i], 0, NULL, NULL, &derr) != DB_OK) {
            snprintf(err->msg, sizeof(err->msg), "step %zu: %.240s", i + 1,
                     derr.msg);
            rc = ARENA_ERR_IO;
        }
    }
    if (rc == ARENA_OK && db_commit(conn, &derr) != DB_OK) {
        snprintf(err->msg, sizeof(err->msg), "commit: %.240s", derr.msg);
        rc = ARENA_ERR_IO;
    }
out:
    if (rc != ARENA_OK) {
        db_rollback(conn, &derr);
        *rows = 0;
    }
    free(c.buf);
    if (f != stdin)
        fclose(f);
    return rc;
}
