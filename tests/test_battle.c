/*
 * test_battle.c: the arena end to end over real HTTP: `arena serve` with
 * the story models from ARENA_SHARED, a fresh database in the test
 * cluster, real streaming. Anonymous, named and direct battles; multi-turn
 * and regenerate; the vote and the reveal; every byte about an anonymous
 * battle searched for model names before its vote; the 4xx answers; the
 * models admin API and sign-in; what is stored (tokens, timings, cost,
 * tags). The server is stopped with SIGTERM at the end and must exit 0
 * (under ASan that includes no leak report).
 */
#include "check.h"
#include "test_battle_http.h"

struct ctx {
    char conninfo[1024], dbname[64];
    struct tb_server srv;
    struct tb_client admin, alice, bob;
    struct tb_bytes transcript; /* everything alice got about battle 1 */
    char names[16][160];        /* every name, display name, organisation */
    int n_names;
    char model[2][128]; /* two model names */
};

static void admin_setup(struct ctx *c)
{
    struct tb_res r;
    /* No credentials: 401. */
    CHECK_EQ(tb_http(&c->alice, "GET", "/api/admin/models", NULL, &r), 401);
    CHECK_STREQ(tb_code(&r), "unauthorized");
    tb_res_free(&r);
    CHECK_EQ(tb_http(&c->admin, "GET", "/api/admin/models", NULL, &r), 200);
    json_t *models = json_object_get(r.json, "models");
    CHECK(json_array_size(models) >= 2);
    size_t i;
    json_t *m;
    json_array_foreach(models, i, m)
    {
        const char *keys[] = {"name", "display_name", "organization"};
        for (int k = 0; k < 3 && c->n_names < 16; k++) {
            const char *s = json_string_value(json_object_get(m, keys[k]));
            if (s != NULL && strlen(s) >= 3)
                snprintf(c->names[c->n_names++], 160, "%s", s);
        }
        const char *name = json_string_value(json_object_get(m, "name"));
        CHECK(name != NULL);
        CHECK_STREQ(json_string_value(json_object_get(m, "kind")), "local");
        if (i < 2)
            snprintf(c->model[i], 128, "%s", name);
        /* Prices, for the cost check. */
        char path[256];
        snprintf(path, sizeof(path), "/api/admin/models/%s", name);
        struct tb_res p;
        CHECK_EQ(tb_http(&c->admin, "PATCH", path,
                         "{\"price_in\": 1.5, \"price_out\": 3}", &p),
                 200);
        CHECK_NEAR(json_real_value(json_object_get(p.json, "price_out")), 3,
                   1e-9);
        tb_res_free(&p);
    }
    tb_res_free(&r);

    /* Sign-in with the password: a cookie that works; a wrong one fails. */
    struct tb_client signer;
    tb_client_init(&signer, c->srv.url);
    CHECK_EQ(tb_http(&signer, "POST", "/api/admin/login",
                     "{\"password\": \"nope\"}", &r),
             401);
    tb_res_free(&r);
    CHECK_EQ(tb_http(&signer, "POST", "/api/admin/login",
                     "{\"password\": \"test-password\"}", &r),
             200);
    char cookie[256];
    CHECK(tb_header(&r, "Set-Cookie", cookie, sizeof(cookie)));
    CHECK(strstr(cookie, "arena_admin=") == cookie);
    CHECK(strstr(cookie, "HttpOnly") != NULL);
    CHECK(strstr(cookie, "Secure") == NULL); /* plain HTTP, no proxy */
    tb_res_free(&r);
    CHECK_EQ(tb_http(&signer, "GET", "/api/admin/models", NULL, &r), 200);
    tb_res_free(&r);
    CHECK_EQ(tb_http(&signer, "POST", "/api/admin/logout", NULL, &r), 200);
    tb_res_free(&r);
    CHECK_EQ(tb_http(&signer, "GET", "/api/admin/models", NULL, &r), 401);
    tb_res_free(&r);
    tb_client_cleanup(&signer);

    /* Add a remote model (disabled), then the same name again: 409. */
    const char *add = "{\"name\": \"remote-x\", \"endpoint\": "
                      "\"http://127.0.0.1:9/v1\", \"remote_model\": \"x\", "
                      "\"organization\": \"Nowhere\", \"license\": "
                      "\"closed\", \"enabled\": false, \"api_key_env\": "
                      "\"X_KEY\"}";
    CHECK_EQ(tb_http(&c->admin, "POST", "/api/admin/models", add, &r), 201);
    CHECK_STREQ(json_string_value(json_object_get(r.json, "kind")), "remote");
    CHECK(json_is_false(json_object_get(r.json, "enabled")));
    tb_res_free(&r);
    CHECK_EQ(tb_http(&c->admin, "POST", "/api/admin/models", add, &r), 409);
    tb_res_free(&r);
    CHECK_EQ(tb_http(&c->admin, "PATCH", "/api/admin/models/nope",
                     "{\"weight\": 2}", &r),
             404);
    tb_res_free(&r);
    char path[256];
    snprintf(path, sizeof(path), "/api/admin/models/%s", c->model[0]);
    CHECK_EQ(tb_http(&c->admin, "PATCH", path, "{\"weight\": -1}", &r), 400);
    CHECK_STREQ(tb_code(&r), "invalid_field");
    tb_res_free(&r);
    CHECK_EQ(tb_http(&c->admin, "PATCH", path, "{\"colour\": 1}", &r), 400);
    tb_res_free(&r);
    /* A disabled model is not offered to visitors. */
    CHECK_EQ(tb_http(&c->alice, "GET", "/api/models", NULL, &r), 200);
    CHECK(strstr(r.body.p, "remote-x") == NULL);
    CHECK(strstr(r.body.p, c->model[0]) != NULL);
    tb_res_free(&r);
}

/* Runs a turn (prompt NULL: regenerate); checks the stream's shape and
 * returns each side's text (malloc'd) and the final state. */
static long tokens_streamed; /* token events over every turn */

static void turn(struct tb_client *cl, const char *id, const char *prompt,
                 int n_sides, const char *want_state, char **text_a,
                 char **text_b, int *fail)
{
    *fail = 1;
    char path[128], body[4096];
    snprintf(path, sizeof(path), "/api/battles/%s/%s", id,
             prompt != NULL ? "turns" : "regenerate");
    if (prompt != NULL)
        snprintf(body, sizeof(body), "{\"prompt\": \"%s\"}", prompt);
    struct tb_res r;
    CHECK_EQ(tb_http(cl, "POST", path, prompt != NULL ? body : NULL, &r), 200);
    char ctype[128];
    CHECK(tb_header(&r, "Content-Type", ctype, sizeof(ctype)));
    CHECK(strstr(ctype, "text/event-stream") != NULL);
    static struct tb_events ev;
    tb_sse_parse(r.body.p, &ev);
    tb_res_free(&r);
    CHECK(ev.n >= 3);
    CHECK_STREQ(ev.ev[0].name, "turn");
    CHECK_STREQ(ev.ev[ev.n - 1].name, "end");
    CHECK_STREQ(
        json_string_value(json_object_get(ev.ev[ev.n - 1].data, "state")),
        want_state);
    CHECK_EQ(tb_count(&ev, "error", NULL), 0);
    CHECK_EQ(tb_count(&ev, "done", "a"), 1);
    CHECK_EQ(tb_count(&ev, "done", "b"), n_sides == 2 ? 1 : 0);
    /* A story model may end at once (its end marker first): tokens are
     * not guaranteed in every turn, so the flows check that some turn
     * streamed (tokens_streamed), and none may come for a missing side. */
    tokens_streamed += tb_count(&ev, "token", NULL);
    if (n_sides == 1)
        CHECK_EQ(tb_count(&ev, "token", "b"), 0);
    struct tb_bytes t[2] = {{0}, {0}};
    for (int i = 0; i < ev.n; i++) {
        json_t *d = ev.ev[i].data;
        const char *side = json_string_value(json_object_get(d, "side"));
        if (strcmp(ev.ev[i].name, "token") == 0 && side != NULL) {
            const char *s = json_string_value(json_object_get(d, "text"));
            tb_bytes_add(&t[side[0] == 'b'], s, strlen(s));
        }
        if (strcmp(ev.ev[i].name, "done") == 0) {
            CHECK(json_integer_value(json_object_get(d, "tokens")) >= 1);
            CHECK(json_integer_value(json_object_get(d, "ttft_ms")) >= 0);
        }
    }
    tb_events_free(&ev);
    *text_a = t[0].p != NULL ? t[0].p : strdup("");
    *text_b = t[1].p != NULL ? t[1].p : strdup("");
    *fail = 0;
}

static void check_no_names(struct ctx *c)
{
    for (int i = 0; i < c->n_names; i++) {
        if (c->transcript.p != NULL &&
            strcasestr(c->transcript.p, c->names[i]) != NULL)
            CHECK_FAIL_("model name \"%s\" sent before the vote", c->names[i]);
    }
}

static void anonymous_flow(struct ctx *c)
{
    struct tb_res r;
    c->alice.transcript = &c->transcript;
    CHECK_EQ(tb_http(&c->alice, "POST", "/api/battles",
                     "{\"mode\": \"anonymous\"}", &r),
             201);
    CHECK(json_is_null(json_object_get(r.json, "models")));
    CHECK_STREQ(json_string_value(json_object_get(r.json, "state")), "open");
    CHECK_EQ(json_integer_value(json_object_get(r.json, "max_turns")), 3);
    char id[64];
    snprintf(id, sizeof(id), "%s",
             json_string_value(json_object_get(r.json, "id")));
    tb_res_free(&r);
    char path[128];
    snprintf(path, sizeof(path), "/api/battles/%s/vote", id);
    CHECK_EQ(tb_http(&c->alice, "POST", path, "{\"winner\": \"tie\"}", &r),
             409);
    CHECK_STREQ(tb_code(&r), "not_ready");
    tb_res_free(&r);

    char *a1, *b1, *a2, *b2, *a3, *b3;
    int fail;
    turn(&c->alice, id, "Once upon a time, a cat and a dog", 2, "ready", &a1,
         &b1, &fail);
    CHECK(!fail);
    turn(&c->alice, id, "What happened next?", 2, "ready", &a2, &b2, &fail);
    CHECK(!fail);
    turn(&c->alice, id, NULL, 2, "ready", &a3, &b3, &fail);
    CHECK(!fail);

    /* Read back: two turns, the regenerated answers live. */
    snprintf(path, sizeof(path), "/api/battles/%s", id);
    CHECK_EQ(tb_http(&c->alice, "GET", path, NULL, &r), 200);
    json_t *turns = json_object_get(r.json, "turns");
    CHECK_EQ(json_array_size(turns), 2);
    json_t *t0 = json_array_get(turns, 0), *t1 = json_array_get(turns, 1);
    CHECK_STREQ(json_string_value(json_object_get(t0, "prompt")),
                "Once upon a time, a cat and a dog");
    CHECK_STREQ(json_string_value(json_object_get(t0, "a")), a1);
    CHECK_STREQ(json_string_value(json_object_get(t0, "b")), b1);
    CHECK_STREQ(json_string_value(json_object_get(t1, "prompt")),
                "What happened next?");
    CHECK_STREQ(json_string_value(json_object_get(t1, "a")), a3);
    CHECK_STREQ(json_string_value(json_object_get(t1, "b")), b3);
    CHECK(json_is_null(json_object_get(r.json, "models")));
    CHECK(json_is_null(json_object_get(r.json, "vote")));
    tb_res_free(&r);
    free(a1), free(b1), free(a2), free(b2), free(a3), free(b3);

    /* Turn limit (3): one more is fine, the next is refused. */
    turn(&c->alice, id, "The end.", 2, "ready", &a1, &b1, &fail);
    CHECK(!fail);
    free(a1), free(b1);
    snprintf(path, sizeof(path), "/api/battles/%s/turns", id);
    CHECK_EQ(tb_http(&c->alice, "POST", path, "{\"prompt\": \"more\"}", &r),
             409);
    CHECK_STREQ(tb_code(&r), "turn_limit");
    tb_res_free(&r);

    /* Someone else: 403 on read, turn and vote. */
    snprintf(path, sizeof(path), "/api/battles/%s", id);
    CHECK_EQ(tb_http(&c->bob, "GET", path, NULL, &r), 403);
    CHECK_STREQ(tb_code(&r), "not_your_battle");
    tb_res_free(&r);
    snprintf(path, sizeof(path), "/api/battles/%s/vote", id);
    CHECK_EQ(tb_http(&c->bob, "POST", path, "{\"winner\": \"model_a\"}", &r),
             403);
    tb_res_free(&r);

    /* Not one model name in any byte so far. */
    check_no_names(c);
    if (check_failed)
        return;
    c->alice.transcript = NULL;

    /* The vote reveals the names. */
    CHECK_EQ(tb_http(&c->alice, "POST", path, "{\"winner\": \"bad\"}", &r),
             400);
    CHECK_STREQ(tb_code(&r), "invalid_field");
    tb_res_free(&r);
    CHECK_EQ(tb_http(&c->alice, "POST", path, "{\"winner\": \"model_a\"}", &r),
             200);
    CHECK_STREQ(json_string_value(json_object_get(r.json, "winner")),
                "model_a");
    CHECK(json_is_true(json_object_get(r.json, "counted")));
    CHECK(json_is_null(json_object_get(r.json, "reason")));
    json_t *ms = json_object_get(r.json, "models");
    const char *na =
        json_string_value(json_object_get(json_object_get(ms, "a"), "name"));
    const char *nb =
        json_string_value(json_object_get(json_object_get(ms, "b"), "name"));
    CHECK(na != NULL && nb != NULL && strcmp(na, nb) != 0);
    tb_res_free(&r);
    CHECK_EQ(tb_http(&c->alice, "POST", path, "{\"winner\": \"model_b\"}", &r),
             409);
    CHECK_STREQ(tb_code(&r), "already_voted");
    tb_res_free(&r);
    snprintf(path, sizeof(path), "/api/battles/%s/turns", id);
    CHECK_EQ(tb_http(&c->alice, "POST", path, "{\"prompt\": \"hi\"}", &r), 409);
    CHECK_STREQ(tb_code(&r), "voted");
    tb_res_free(&r);
    snprintf(path, sizeof(path), "/api/battles/%s", id);
    CHECK_EQ(tb_http(&c->alice, "GET", path, NULL, &r), 200);
    CHECK_STREQ(json_string_value(json_object_get(r.json, "vote")), "model_a");
    CHECK(json_is_object(json_object_get(r.json, "models")));
    CHECK_STREQ(json_string_value(json_object_get(r.json, "state")), "voted");
    tb_res_free(&r);

    /* What is stored. */
    char sql[512], uuid[40];
    snprintf(uuid, sizeof(uuid), "%.8s-%.4s-%.4s-%.4s-%.12s", id + 2, id + 10,
             id + 14, id + 18, id + 22);
#define Q(...)                                                                 \
    (snprintf(sql, sizeof(sql), __VA_ARGS__), tb_sql_ll(c->conninfo, sql))
    CHECK_EQ(Q("SELECT count(*) FROM votes v JOIN battles b ON b.id = "
               "v.battle_id WHERE b.public_id = '%s' AND v.visitor_id IS NOT "
               "NULL AND v.ip_hash IS NOT NULL AND v.ms_to_vote >= 0 AND "
               "v.counted AND v.mode = 'anonymous'",
               uuid),
             1);
    CHECK_EQ(Q("SELECT count(*) FROM messages m JOIN battles b ON b.id = "
               "m.battle_id WHERE b.public_id = '%s' AND role = 'user'",
               uuid),
             3);
    /* 3 turns x 2 sides + 2 regenerated answers */
    CHECK_EQ(Q("SELECT count(*) FROM messages m JOIN battles b ON b.id = "
               "m.battle_id WHERE b.public_id = '%s' AND role = 'assistant' "
               "AND tokens_out > 0 AND tokens_in > 0 AND ttft_ms >= 0 AND "
               "gen_ms >= 0 AND cost > 0 AND model_id IS NOT NULL",
               uuid),
             8);
    CHECK_EQ(Q("SELECT count(*) FROM messages m JOIN battles b ON b.id = "
               "m.battle_id WHERE b.public_id = '%s' AND attempt = 1",
               uuid),
             2);
    CHECK_EQ(Q("SELECT count(*) FROM battles WHERE public_id = '%s' AND "
               "language = 'en' AND turns = 3 AND state = 'voted' AND "
               "prompt_len > 40 AND tags ? 'multi_turn' AND visitor_id IS "
               "NOT NULL AND ip_hash IS NOT NULL AND ready_at IS NOT NULL",
               uuid),
             1);
    /* The cost is the prices times the tokens. */
    CHECK_EQ(Q("SELECT count(*) FROM messages WHERE role = 'assistant' AND "
               "abs(cost - (tokens_in * 1.5 + tokens_out * 3) / 1e6) > 1e-9"),
             0);
#undef Q
}

static void named_and_direct(struct ctx *c)
{
    struct tb_res r;
    char body[512];
    snprintf(body, sizeof(body),
             "{\"mode\": \"named\", \"models\": [\"%s\", \"%s\"]}", c->model[0],
             c->model[1]);
    CHECK_EQ(tb_http(&c->alice, "POST", "/api/battles", body, &r), 201);
    json_t *ms = json_object_get(r.json, "models");
    CHECK_STREQ(
        json_string_value(json_object_get(json_object_get(ms, "a"), "name")),
        c->model[0]);
    CHECK_STREQ(
        json_string_value(json_object_get(json_object_get(ms, "b"), "name")),
        c->model[1]);
    char id[64];
    snprintf(id, sizeof(id), "%s",
             json_string_value(json_object_get(r.json, "id")));
    tb_res_free(&r);
    char *a, *b;
    int fail;
    turn(&c->alice, id, "Once upon a time", 2, "ready", &a, &b, &fail);
    CHECK(!fail);
    free(a), free(b);
    char path[128];
    snprintf(path, sizeof(path), "/api/battles/%s/vote", id);
    CHECK_EQ(
        tb_http(&c->alice, "POST", path, "{\"winner\": \"tie (bothbad)\"}", &r),
        200);
    CHECK_STREQ(json_string_value(json_object_get(r.json, "winner")),
                "tie (bothbad)");
    tb_res_free(&r);

    /* Direct chat: one side, back to open, no vote. */
    snprintf(body, sizeof(body), "{\"mode\": \"direct\", \"models\": [\"%s\"]}",
             c->model[1]);
    CHECK_EQ(tb_http(&c->alice, "POST", "/api/battles", body, &r), 201);
    CHECK_EQ(json_array_size(json_object_get(r.json, "sides")), 1);
    snprintf(id, sizeof(id), "%s",
             json_string_value(json_object_get(r.json, "id")));
    tb_res_free(&r);
    turn(&c->alice, id, "Once upon a time", 1, "open", &a, &b, &fail);
    CHECK(!fail);
    free(a), free(b);
    turn(&c->alice, id, "Go on", 1, "open", &a, &b, &fail);
    CHECK(!fail);
    free(a), free(b);
    snprintf(path, sizeof(path), "/api/battles/%s/vote", id);
    CHECK_EQ(tb_http(&c->alice, "POST", path, "{\"winner\": \"model_a\"}", &r),
             400);
    tb_res_free(&r);
    snprintf(path, sizeof(path), "/api/battles/%s", id);
    CHECK_EQ(tb_http(&c->alice, "GET", path, NULL, &r), 200);
    CHECK_EQ(json_array_size(json_object_get(r.json, "turns")), 2);
    CHECK_STREQ(json_string_value(json_object_get(r.json, "state")), "open");
    tb_res_free(&r);

    /* A turn left 'answering' by a server that died: busy while it could
     * still be running, taken over once it is stale. */
    char sql[512], uuid[40];
    snprintf(uuid, sizeof(uuid), "%.8s-%.4s-%.4s-%.4s-%.12s", id + 2, id + 10,
             id + 14, id + 18, id + 22);
    snprintf(sql, sizeof(sql),
             "UPDATE battles SET state = 'answering', updated_at = now() - "
             "interval '1 minute' WHERE public_id = '%s' RETURNING 1",
             uuid);
    CHECK_EQ(tb_sql_ll(c->conninfo, sql), 1);
    snprintf(path, sizeof(path), "/api/battles/%s/turns", id);
    CHECK_EQ(tb_http(&c->alice, "POST", path, "{\"prompt\": \"Hi\"}", &r), 409);
    CHECK_STREQ(tb_code(&r), "busy");
    tb_res_free(&r);
    snprintf(sql, sizeof(sql),
             "UPDATE battles SET updated_at = now() - interval '11 minutes' "
             "WHERE public_id = '%s' RETURNING 1",
             uuid);
    CHECK_EQ(tb_sql_ll(c->conninfo, sql), 1);
    turn(&c->alice, id, "Go on", 1, "open", &a, &b, &fail);
    CHECK(!fail);
    free(a), free(b);
}

static void errors(struct ctx *c)
{
    struct tb_res r;
    CHECK_EQ(tb_http(&c->alice, "POST", "/api/battles", "{\"mode\": ", &r),
             400);
    CHECK_STREQ(tb_code(&r), "bad_json");
    tb_res_free(&r);
    CHECK_EQ(
        tb_http(&c->alice, "POST", "/api/battles", "{\"mode\": \"duel\"}", &r),
        400);
    CHECK_STREQ(tb_code(&r), "invalid_field");
    tb_res_free(&r);
    CHECK_EQ(tb_http(&c->alice, "POST", "/api/battles",
                     "{\"mode\": \"named\", \"models\": [\"nope\", \"x\"]}",
                     &r),
             404);
    tb_res_free(&r);
    char body[512];
    snprintf(body, sizeof(body),
             "{\"mode\": \"named\", \"models\": [\"%s\", \"%s\"]}", c->model[0],
             c->model[0]);
    CHECK_EQ(tb_http(&c->alice, "POST", "/api/battles", body, &r), 400);
    tb_res_free(&r);
    CHECK_EQ(tb_http(&c->alice, "GET",
                     "/api/battles/b_0123456789abcdef0123456789abcdef", NULL,
                     &r),
             404);
    CHECK_STREQ(tb_code(&r), "not_found");
    tb_res_free(&r);
    CHECK_EQ(tb_http(&c->alice, "POST", "/api/battles/nonsense/vote",
                     "{\"winner\": \"tie\"}", &r),
             404);
    tb_res_free(&r);
    CHECK_EQ(tb_http(&c->alice, "DELETE", "/api/battles", NULL, &r), 405);
    tb_res_free(&r);
    /* A prompt over --prompt-max-bytes 2000. */
    CHECK_EQ(tb_http(&c->alice, "POST", "/api/battles",
                     "{\"mode\": \"anonymous\"}", &r),
             201);
    char path[128];
    snprintf(path, sizeof(path), "/api/battles/%s/turns",
             json_string_value(json_object_get(r.json, "id")));
    tb_res_free(&r);
    char *big = malloc(4000);
    CHECK(big != NULL);
    memset(big, 'x', 3000);
    memcpy(big, "{\"prompt\": \"", 12);
    snprintf(big + 2990, 10, "\"}");
    CHECK_EQ(tb_http(&c->alice, "POST", path, big, &r), 413);
    CHECK_STREQ(tb_code(&r), "prompt_too_large");
    tb_res_free(&r);
    free(big);
    CHECK_EQ(tb_http(&c->alice, "POST", path, "{\"prompt\": 3}", &r), 400);
    tb_res_free(&r);
    /* Regenerate before any turn. */
    snprintf(path + strlen(path) - strlen("turns"), 16, "regenerate");
    CHECK_EQ(tb_http(&c->alice, "POST", path, NULL, &r), 400);
    tb_res_free(&r);
}

TEST(battle_flow)
{
    static struct ctx c;
    memset(&c, 0, sizeof(c));
    if (tb_fresh_db(c.conninfo, sizeof(c.conninfo), c.dbname,
                    sizeof(c.dbname)) != 0)
        check_skip("no test PostgreSQL (ARENA_TEST_PGCONN)");
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *extra[] = {"--answer-max-tokens",
                           "10",
                           "--battle-max-turns",
                           "3",
                           "--prompt-max-bytes",
                           "2000",
                           NULL};
    if (tb_server_start(&c.srv, c.conninfo, "battle", extra) != 0) {
        tb_drop_db(c.dbname);
        CHECK_FAIL_("arena serve did not start");
    }
    tb_client_init(&c.admin, c.srv.url);
    snprintf(c.admin.auth, sizeof(c.admin.auth),
             "Authorization: Bearer test-token");
    tb_client_init(&c.alice, c.srv.url);
    tb_client_init(&c.bob, c.srv.url);

    admin_setup(&c);
    if (!check_failed)
        anonymous_flow(&c);
    if (!check_failed)
        named_and_direct(&c);
    if (!check_failed)
        errors(&c);

    tb_client_cleanup(&c.admin);
    tb_client_cleanup(&c.alice);
    tb_client_cleanup(&c.bob);
    free(c.transcript.p);
    int st = tb_server_stop(&c.srv, false);
    tb_drop_db(c.dbname);
    curl_global_cleanup();
    CHECK_EQ(st, 0);
    CHECK(tokens_streamed >= 5);
}

static const struct check_test tests[] = {TEST_ENTRY(battle_flow)};
CHECK_MAIN(tests)
