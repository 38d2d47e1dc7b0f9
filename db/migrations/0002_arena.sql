-- 0002_arena: what the battle flow (issue 5) needs beyond the first schema.
--
-- - Model names may hold '_' (hub names come from file names, such as
--   tinystories-656k-q8_0).
-- - battles.ready_at: when the last turn's answers were both complete (the
--   vote's ms_to_vote counts from there); failed_reason: why a side failed.
-- - messages.tokens_in etc. exist already; nothing to add there.
-- - votes_visitor_day: the daily cap counts a visitor's votes since
--   midnight UTC (votes_visitor already covers (visitor_id, created_at)).
ALTER TABLE models DROP CONSTRAINT IF EXISTS models_name_check;
ALTER TABLE models ADD CONSTRAINT models_name_check
    CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._:/@+_-]{0,127}$');

ALTER TABLE battles ADD COLUMN ready_at timestamptz;
ALTER TABLE battles ADD COLUMN failed_reason text;
-- Who may act on a battle: the keyed hash of the visitor's cookie id,
-- copied here so that the vote's one statement checks it without a join.
ALTER TABLE battles ADD COLUMN visitor_hash bytea;
