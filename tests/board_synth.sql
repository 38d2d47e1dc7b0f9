-- board_synth.sql: synthetic votes for the leaderboard tests and bench.
-- psql -v n=1000000 -v models=50 -f tests/board_synth.sql (as a superuser,
-- on a migrated database). Adds `models` models named synth-001... with
-- known strengths (rating 1000 + 10 * index), n battles between random
-- pairs with their votes drawn from the Bradley-Terry model of those
-- strengths, visitors (one per 50 votes), languages, tags and 1% flagged
-- battles. Foreign-key triggers are skipped (session_replication_role),
-- which is why it needs a superuser: every key it writes is valid by
-- construction.
\set ON_ERROR_STOP on
SET session_replication_role = replica;
SET synchronous_commit = off;
BEGIN;
CREATE TEMP TABLE synth_m ON COMMIT DROP AS
SELECT g AS k, (SELECT coalesce(max(id), 0) FROM models) + g AS id
FROM generate_series(1, :models) g;
INSERT INTO models (id, name, display_name, organisation, licence, backend,
                    path, price_input_per_mtok, price_output_per_mtok)
OVERRIDING SYSTEM VALUE
SELECT id, 'synth-' || lpad(id::text, 3, '0'), 'Synth ' || id,
       'org' || (k % 5), CASE WHEN k % 2 = 0 THEN 'open' ELSE 'closed' END,
       'local', '/dev/null', k * 0.1, k * 0.3
FROM synth_m;
SELECT setval(pg_get_serial_sequence('models', 'id'),
              (SELECT max(id) FROM models));
CREATE TEMP TABLE synth_v ON COMMIT DROP AS
SELECT (SELECT coalesce(max(id), 0) FROM visitors) + g AS id
FROM generate_series(1, greatest(1, :n / 50)) g;
INSERT INTO visitors (id, cookie_hash) OVERRIDING SYSTEM VALUE
SELECT id, decode(md5('synth' || id), 'hex') FROM synth_v;
SELECT setval(pg_get_serial_sequence('visitors', 'id'),
              (SELECT max(id) FROM visitors));
CREATE TEMP TABLE synth_b ON COMMIT DROP AS
SELECT (SELECT coalesce(max(id), 0) FROM battles) + g AS id, g,
       1 + floor(random() * :models)::int AS ka,
       1 + floor(random() * (:models - 1))::int AS d,
       random() AS u, random() AS t
FROM generate_series(1, :n) g;
INSERT INTO battles (id, mode, model_a, model_b, visitor_id, state,
                     excluded_reason, language, has_code, turns, prompt_len,
                     tags, created_at)
OVERRIDING SYSTEM VALUE
SELECT b.id, 'anonymous', ma.id, mb.id,
       (SELECT min(id) FROM synth_v) + (b.g % greatest(1, :n / 50)),
       'voted', CASE WHEN b.g % 100 = 0 THEN 'identity_leak' END,
       (ARRAY['en', 'en', 'en', 'zh', 'fr', 'de'])[1 + b.g % 6],
       b.g % 5 = 0, 1 + (b.g % 4 = 0)::int, (b.g * 37) % 3000,
       CASE WHEN b.g % 100 = 0 THEN '{"identity_leak": true}'::jsonb
            ELSE '{}'::jsonb END,
       now() - (b.g % 240) * interval '1 hour'
FROM synth_b b
JOIN synth_m ma ON ma.k = b.ka
JOIN synth_m mb ON mb.k = 1 + (b.ka - 1 + b.d) % :models;
SELECT setval(pg_get_serial_sequence('battles', 'id'),
              (SELECT max(id) FROM battles));
-- Outcome: 10% ties, 3% both bad, else model_a wins with the BT
-- probability of ratings 1000 + 10 k.
INSERT INTO votes (battle_id, model_a, model_b, winner, mode, counted,
                   visitor_id, turns, ms_to_vote, created_at)
SELECT b.id, b.model_a, b.model_b,
       CASE WHEN s.t < 0.10 THEN 'tie'
            WHEN s.t < 0.13 THEN 'tie (bothbad)'
            WHEN s.u < 1 / (1 + power(10, (mb.k - ma.k) * 10.0 / 400.0))
            THEN 'model_a' ELSE 'model_b' END,
       'anonymous', b.excluded_reason IS NULL, b.visitor_id, b.turns,
       1000 + (s.g % 5000), b.created_at + interval '1 minute'
FROM synth_b s
JOIN battles b ON b.id = s.id
JOIN synth_m ma ON ma.id = b.model_a
JOIN synth_m mb ON mb.id = b.model_b
ORDER BY b.id;
COMMIT;
ANALYZE models;
ANALYZE battles;
ANALYZE votes;
