/*
 * test_vote.c: votes under pressure, over real HTTP against `arena serve`
 * on a fresh database in the test cluster.
 *
 * crash: 8 clients vote as fast as they can (in pairs racing for the same
 *   battles) and the server is killed with SIGKILL mid-way; after a
 *   restart every vote that was answered 200 is in the database, no battle
 *   has two votes, no battle was answered 200 twice, and a battle voted
 *   before the crash answers 409 already_voted. Then `arena bench votes`
 *   runs for a second against the restarted server.
 * limits: the battle, turn and per-IP vote rate limits and the daily
 *   vote cap take effect at the configured numbers, with Retry-After; an
 *   answer naming a configured identity term is flagged, and its vote is
 *   answered counted: false.
 */
#include <pthread.h>

#include "check.h"
#include "test_battle_http.h"

/* ---------------------------------------------------------------------- */
/* Crash                                                                  */

#define N_CLIENTS 8
#define PER_LIST  1500

struct voter {
    pthread_t t;
    const char *url;
    char cookie[128];
    json_t *battles; /* shared by a pair of voters */
    char *ok;        /* (PER_LIST,) 1 where answered 200 */
    int n_ok, n_409, n_other, sent;
    volatile int *stop;
};

static size_t sink(char *d, size_t s, size_t n, void *u)
{
    (void)d, (void)u;
    return s * n;
}

static void *voter_main(void *arg)
{
    struct voter *v = arg;
    CURL *h = curl_easy_init();
    struct curl_slist *hd =
        curl_slist_append(NULL, "Content-Type: application/json");
    char ck[160];
    snprintf(ck, sizeof(ck), "Cookie: %s", v->cookie);
    hd = curl_slist_append(hd, ck);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 20000L);
    size_t n = json_array_size(v->battles);
    for (size_t i = 0; i < n && !*v->stop; i++) {
        char url[256];
        snprintf(url, sizeof(url), "%s/api/battles/%s/vote", v->url,
                 json_string_value(json_array_get(v->battles, i)));
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "{\"winner\":\"model_b\"}");
        v->sent++;
        if (curl_easy_perform(h) != CURLE_OK)
            break; /* the server died */
        long st = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st);
        if (st == 200) {
            v->ok[i] = 1;
            v->n_ok++;
        } else if (st == 409) {
            v->n_409++;
        } else {
            v->n_other++;
        }
    }
    curl_slist_free_all(hd);
    curl_easy_cleanup(h);
    return NULL;
}

/* POST /api/admin/bench/battles: count ready battles of a new visitor. */
static int bench_battles(struct tb_client *admin, int count, char *cookie,
                         size_t n, json_t **ids)
{
    char body[64];
    snprintf(body, sizeof(body), "{\"count\": %d}", count);
    struct tb_res r;
    long st = tb_http(admin, "POST", "/api/admin/bench/battles", body, &r);
    const char *ck = json_string_value(json_object_get(r.json, "cookie"));
    int rc = -1;
    if (st == 200 && ck != NULL) {
        snprintf(cookie, n, "%s", ck);
        *ids = json_incref(json_object_get(r.json, "battles"));
        rc = json_array_size(*ids) == (size_t)count ? 0 : -1;
    }
    tb_res_free(&r);
    return rc;
}

TEST(crash)
{
    char conninfo[1024], dbname[64];
    if (tb_fresh_db(conninfo, sizeof(conninfo), dbname, sizeof(dbname)) != 0)
        check_skip("no test PostgreSQL (ARENA_TEST_PGCONN)");
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *extra[] = {"--limit-votes",
                           "0",
                           "--limit-ip-votes",
                           "0",
                           "--daily-votes",
                           "0",
                           NULL};
    struct tb_server srv;
    CHECK_EQ(tb_server_start(&srv, conninfo, "vote-crash", extra), 0);
    struct tb_client admin;
    tb_client_init(&admin, srv.url);
    snprintf(admin.auth, sizeof(admin.auth), "Authorization: Bearer %s",
             "test-token");
    /* Without the token the factory is closed. */
    struct tb_client anon;
    tb_client_init(&anon, srv.url);
    struct tb_res r;
    CHECK_EQ(tb_http(&anon, "POST", "/api/admin/bench/battles",
                     "{\"count\": 1}", &r),
             401);
    tb_res_free(&r);
    tb_client_cleanup(&anon);

    static struct voter v[N_CLIENTS];
    volatile int stop = 0;
    json_t *lists[N_CLIENTS / 2];
    for (int i = 0; i < N_CLIENTS / 2; i++) {
        char cookie[128];
        CHECK_EQ(
            bench_battles(&admin, PER_LIST, cookie, sizeof(cookie), &lists[i]),
            0);
        for (int k = 0; k < 2; k++) {
            struct voter *x = &v[2 * i + k];
            memset(x, 0, sizeof(*x));
            x->url = srv.url;
            snprintf(x->cookie, sizeof(x->cookie), "%s", cookie);
            x->battles = lists[i];
            x->ok = calloc(PER_LIST, 1);
            x->stop = &stop;
        }
    }
    for (int i = 0; i < N_CLIENTS; i++)
        pthread_create(&v[i].t, NULL, voter_main, &v[i]);
    /* Let them vote, then pull the plug. */
    double t0 = tb_now();
    while (tb_now() - t0 < 1.5)
        usleep(10000);
    CHECK_EQ(tb_server_stop(&srv, true), 0);
    stop = 1;
    int ok = 0, conflicts = 0, other = 0, sent = 0;
    for (int i = 0; i < N_CLIENTS; i++) {
        pthread_join(v[i].t, NULL);
        ok += v[i].n_ok;
        conflicts += v[i].n_409;
        other += v[i].n_other;
        sent += v[i].sent;
    }
    fprintf(stderr, "crash: %d sent, %d answered 200, %d 409, %d other\n", sent,
            ok, conflicts, other);
    CHECK(ok > 20);       /* it did vote before the kill */
    CHECK(conflicts > 0); /* the pairs did race */
    CHECK_EQ(other, 0);

    /* Restart on the same database and data directory (same key). */
    CHECK_EQ(tb_server_start(&srv, conninfo, "vote-crash", extra), 0);
    PGconn *pg = PQconnectdb(conninfo);
    CHECK(PQstatus(pg) == CONNECTION_OK);
    PGresult *res = PQexec(pg, "SELECT replace(b.public_id::text, '-', '') "
                               "FROM votes v JOIN battles b ON b.id = "
                               "v.battle_id");
    CHECK(PQresultStatus(res) == PGRES_TUPLES_OK);
    int in_db = PQntuples(res);
    /* Every battle answered 200 is there, and was answered 200 once. */
    int missing = 0, twice = 0;
    for (int i = 0; i < N_CLIENTS / 2; i++) {
        for (int j = 0; j < PER_LIST; j++) {
            int n200 = v[2 * i].ok[j] + v[2 * i + 1].ok[j];
            if (n200 > 1)
                twice++;
            if (n200 == 0)
                continue;
            const char *id = json_string_value(json_array_get(lists[i], j));
            bool found = false;
            for (int k = 0; k < in_db && !found; k++)
                found = strcmp(PQgetvalue(res, k, 0), id + 2) == 0;
            missing += !found;
        }
    }
    PQclear(res);
    PQfinish(pg);
    fprintf(stderr, "crash: %d votes in the database\n", in_db);
    CHECK_EQ(missing, 0);
    CHECK_EQ(twice, 0);
    CHECK(in_db >= ok);
    CHECK_EQ(tb_sql_ll(conninfo, "SELECT count(*) FROM (SELECT battle_id "
                                 "FROM votes GROUP BY 1 HAVING count(*) > "
                                 "1) x"),
             0);
    /* Votes and battle states agree (one statement wrote both). */
    CHECK_EQ(tb_sql_ll(conninfo,
                       "SELECT count(*) FROM battles WHERE state = 'voted'"),
             in_db);
    /* Bench battles never count. */
    CHECK_EQ(tb_sql_ll(conninfo, "SELECT count(*) FROM votes WHERE counted"),
             0);

    /* A battle voted before the crash: 409 now. */
    for (int j = 0; j < PER_LIST; j++) {
        if (!v[0].ok[j] && !v[1].ok[j])
            continue;
        struct tb_client cl;
        tb_client_init(&cl, srv.url);
        char hdr[160];
        snprintf(hdr, sizeof(hdr), "Cookie: %s", v[0].cookie);
        snprintf(cl.auth, sizeof(cl.auth), "%s", hdr);
        char path[128];
        snprintf(path, sizeof(path), "/api/battles/%s/vote",
                 json_string_value(json_array_get(lists[0], j)));
        CHECK_EQ(tb_http(&cl, "POST", path, "{\"winner\": \"tie\"}", &r), 409);
        CHECK_STREQ(tb_code(&r), "already_voted");
        tb_res_free(&r);
        tb_client_cleanup(&cl);
        break;
    }

    /* The load test command, briefly. */
    char cmd[1024], out[600];
    snprintf(out, sizeof(out), "%s/bench.out", srv.dir);
    snprintf(cmd, sizeof(cmd),
             "'%s' bench votes --url %s --clients 2 --seconds 1 --battles "
             "300 --token test-token > '%s' 2>&1",
             getenv("ARENA_BIN"), srv.url, out);
    int brc = system(cmd);
    snprintf(cmd, sizeof(cmd), "cat '%s' >&2", out);
    CHECK_EQ(system(cmd), 0);
    CHECK_EQ(brc, 0);
    snprintf(cmd, sizeof(cmd), "grep -q 'votes/s' '%s'", out);
    CHECK_EQ(system(cmd), 0);

    for (int i = 0; i < N_CLIENTS; i++)
        free(v[i].ok);
    for (int i = 0; i < N_CLIENTS / 2; i++)
        json_decref(lists[i]);
    tb_client_cleanup(&admin);
    CHECK_EQ(tb_server_stop(&srv, false), 0);
    tb_drop_db(dbname);
    curl_global_cleanup();
}

/* ---------------------------------------------------------------------- */
/* Limits and the identity leak                                           */

static int retry_after(const struct tb_res *r)
{
    char buf[32];
    return tb_header(r, "Retry-After", buf, sizeof(buf)) ? atoi(buf) : -1;
}

TEST(limits)
{
    char conninfo[1024], dbname[64];
    if (tb_fresh_db(conninfo, sizeof(conninfo), dbname, sizeof(dbname)) != 0)
        check_skip("no test PostgreSQL (ARENA_TEST_PGCONN)");
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char cfg[600];
    snprintf(cfg, sizeof(cfg), "%s/limits-%d.json",
             check_env("ARENA_TEST_OUT", "/tmp"), (int)getpid());
    FILE *f = fopen(cfg, "w");
    CHECK(f != NULL);
    fputs("{\"leak_terms\": [\"the\", \"a\", \"and\", \"was\", \"he\", "
          "\"she\", \"to\", \"of\", \"in\", \"it\", \"there\", \"once\", "
          "\"little\", \"day\", \"they\", \"said\"]}\n",
          f);
    fclose(f);
    const char *extra[] = {"--config",
                           cfg,
                           "--limit-battles",
                           "3",
                           "--limit-turns",
                           "2",
                           "--limit-votes",
                           "0",
                           "--limit-ip-votes",
                           "8",
                           "--daily-votes",
                           "5",
                           "--limit-ip-battles",
                           "0",
                           "--limit-ip-turns",
                           "0",
                           "--answer-max-tokens",
                           "12",
                           NULL};
    struct tb_server srv;
    CHECK_EQ(tb_server_start(&srv, conninfo, "vote-limits", extra), 0);
    struct tb_client admin, carol;
    tb_client_init(&admin, srv.url);
    snprintf(admin.auth, sizeof(admin.auth), "Authorization: Bearer %s",
             "test-token");
    tb_client_init(&carol, srv.url);
    struct tb_res r;
    /* Greedy decoding: the answers are reproducible. */
    CHECK_EQ(tb_http(&admin, "GET", "/api/admin/models", NULL, &r), 200);
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(r.json, "models"), i, m)
    {
        char path[256];
        snprintf(path, sizeof(path), "/api/admin/models/%s",
                 json_string_value(json_object_get(m, "name")));
        struct tb_res p;
        CHECK_EQ(tb_http(&admin, "PATCH", path,
                         "{\"generation\": {\"temperature\": 0}}", &p),
                 200);
        tb_res_free(&p);
    }
    tb_res_free(&r);

    /* Identity leak: flagged, the vote does not count. */
    CHECK_EQ(tb_http(&carol, "POST", "/api/battles",
                     "{\"mode\": \"anonymous\"}", &r),
             201);
    char id[64], path[128];
    snprintf(id, sizeof(id), "%s",
             json_string_value(json_object_get(r.json, "id")));
    tb_res_free(&r);
    snprintf(path, sizeof(path), "/api/battles/%s/turns", id);
    CHECK_EQ(
        tb_http(&carol, "POST", path, "{\"prompt\": \"Once upon a time\"}", &r),
        200);
    static struct tb_events ev;
    tb_sse_parse(r.body.p, &ev);
    tb_res_free(&r);
    CHECK_EQ(tb_count(&ev, "flagged", NULL), 1);
    for (int k = 0; k < ev.n; k++)
        if (strcmp(ev.ev[k].name, "flagged") == 0)
            CHECK_STREQ(
                json_string_value(json_object_get(ev.ev[k].data, "reason")),
                "identity_leak");
    CHECK_STREQ(ev.ev[ev.n - 1].name, "end");
    tb_events_free(&ev);
    /* Turns: 2 per minute; the second is fine, the third is refused. */
    CHECK_EQ(tb_http(&carol, "POST", path, "{\"prompt\": \"And?\"}", &r), 200);
    tb_res_free(&r);
    CHECK_EQ(tb_http(&carol, "POST", path, "{\"prompt\": \"And?\"}", &r), 429);
    CHECK_STREQ(tb_code(&r), "rate_limited");
    CHECK(retry_after(&r) >= 1 && retry_after(&r) <= 30);
    tb_res_free(&r);
    snprintf(path, sizeof(path), "/api/battles/%s/vote", id);
    CHECK_EQ(tb_http(&carol, "POST", path, "{\"winner\": \"model_b\"}", &r),
             200);
    CHECK(json_is_false(json_object_get(r.json, "counted")));
    CHECK_STREQ(json_string_value(json_object_get(r.json, "reason")),
                "identity_leak");
    tb_res_free(&r);
    CHECK_EQ(tb_sql_ll(conninfo, "SELECT count(*) FROM votes WHERE NOT "
                                 "counted AND battle_id IN (SELECT id FROM "
                                 "battles WHERE excluded_reason = "
                                 "'identity_leak')"),
             1);

    /* Battles: 3 per minute (carol made 1). */
    for (int k = 0; k < 2; k++) {
        CHECK_EQ(tb_http(&carol, "POST", "/api/battles",
                         "{\"mode\": \"anonymous\"}", &r),
                 201);
        tb_res_free(&r);
    }
    CHECK_EQ(tb_http(&carol, "POST", "/api/battles",
                     "{\"mode\": \"anonymous\"}", &r),
             429);
    CHECK_STREQ(tb_code(&r), "rate_limited");
    CHECK(retry_after(&r) >= 1 && retry_after(&r) <= 20);
    tb_res_free(&r);

    /* Daily cap 5 per visitor: 5 votes, then 429 with the seconds to
     * midnight UTC. */
    char cookie[128];
    json_t *ids;
    /* The factory makes a new visitor (dave) with ready battles. */
    struct tb_client dave;
    tb_client_init(&dave, srv.url);
    CHECK_EQ(bench_battles(&admin, 12, cookie, sizeof(cookie), &ids), 0);
    snprintf(dave.auth, sizeof(dave.auth), "Cookie: %s", cookie);
    for (int k = 0; k < 6; k++) {
        snprintf(path, sizeof(path), "/api/battles/%s/vote",
                 json_string_value(json_array_get(ids, (size_t)k)));
        long st = tb_http(&dave, "POST", path, "{\"winner\": \"tie\"}", &r);
        if (k < 5) {
            CHECK_EQ(st, 200);
        } else {
            CHECK_EQ(st, 429);
            CHECK_STREQ(tb_code(&r), "daily_cap");
            int ra = retry_after(&r);
            long long left = 86400 - (long long)time(NULL) % 86400;
            CHECK(ra >= left - 5 && ra <= left + 5);
        }
        tb_res_free(&r);
    }
    /* Per-IP votes: 8 per minute, and this address has cast 1 + 5. A new
     * visitor gets 2 more, then 429. */
    json_t *ids2;
    CHECK_EQ(bench_battles(&admin, 4, cookie, sizeof(cookie), &ids2), 0);
    struct tb_client eve;
    tb_client_init(&eve, srv.url);
    snprintf(eve.auth, sizeof(eve.auth), "Cookie: %s", cookie);
    /* dave's 6th vote took an IP token too (the cap is checked after). */
    int allowed = 0, limited = 0;
    for (int k = 0; k < 4; k++) {
        snprintf(path, sizeof(path), "/api/battles/%s/vote",
                 json_string_value(json_array_get(ids2, (size_t)k)));
        long st = tb_http(&eve, "POST", path, "{\"winner\": \"tie\"}", &r);
        if (st == 200)
            allowed++;
        if (st == 429) {
            limited++;
            CHECK_STREQ(tb_code(&r), "rate_limited");
            CHECK(retry_after(&r) >= 1 && retry_after(&r) <= 8);
        }
        tb_res_free(&r);
    }
    CHECK_EQ(allowed, 1);
    CHECK_EQ(limited, 3);
    json_decref(ids);
    json_decref(ids2);
    tb_client_cleanup(&admin);
    tb_client_cleanup(&carol);
    tb_client_cleanup(&dave);
    tb_client_cleanup(&eve);
    CHECK_EQ(tb_server_stop(&srv, false), 0);
    tb_drop_db(dbname);
    unlink(cfg);
    curl_global_cleanup();
}

static const struct check_test tests[] = {TEST_ENTRY(crash),
                                          TEST_ENTRY(limits)};
CHECK_MAIN(tests)
