-- 0001_init: the first schema: models, visitors, battles, messages, votes.
--
-- Conventions: bigint identity keys; timestamptz everywhere; closed sets of
-- values as text with CHECK (easier to extend in a later migration than an
-- enum type); keyed hashes (bytea) for IP addresses and cookie ids, never
-- the raw values; secrets never stored (a remote model names the environment
-- variable that holds its key). Sized for millions of votes: votes carry the
-- pair of models (copied from the battle) so that the leaderboard aggregates
-- one table with an index-only scan.

-- The models in play: local model files and remote OpenAI-compatible
-- endpoints.
CREATE TABLE models (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL UNIQUE
                    CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$'),
    display_name    text NOT NULL,
    organisation    text NOT NULL DEFAULT '',
    licence         text NOT NULL DEFAULT 'open'
                    CHECK (licence IN ('open', 'closed')),
    backend         text NOT NULL CHECK (backend IN ('local', 'remote')),
    path            text,           -- local: the model file
    base_url        text,           -- remote: e.g. https://host/v1
    remote_model    text,           -- remote: the model name it expects
    api_key_env     text            -- remote: NAME of the env var with the key
                    CHECK (api_key_env ~ '^[A-Za-z_][A-Za-z0-9_]*$'),
    price_input_per_mtok  numeric(14, 6) NOT NULL DEFAULT 0
                    CHECK (price_input_per_mtok >= 0),
    price_output_per_mtok numeric(14, 6) NOT NULL DEFAULT 0
                    CHECK (price_output_per_mtok >= 0),
    sampling_weight double precision NOT NULL DEFAULT 1
                    CHECK (sampling_weight >= 0),
    enabled         boolean NOT NULL DEFAULT true,
    system_prompt   text NOT NULL DEFAULT '',
    generation      jsonb NOT NULL DEFAULT '{}'   -- temperature, top_p, ...
                    CHECK (jsonb_typeof(generation) = 'object'),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (backend <> 'local' OR path IS NOT NULL),
    CHECK (backend <> 'remote' OR base_url IS NOT NULL)
);

-- Visitors, identified by a signed cookie; only a keyed hash of the
-- cookie's id is stored.
CREATE TABLE visitors (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cookie_hash bytea NOT NULL UNIQUE,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    flagged     boolean NOT NULL DEFAULT false,
    flag_reason text
);

-- One battle: two models (one for direct chat) answering the same turns.
-- model_a is the side shown as "Model A" (the order is drawn at random in
-- anonymous mode, so the position is part of the record).
CREATE TABLE battles (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id       uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    mode            text NOT NULL
                    CHECK (mode IN ('anonymous', 'named', 'direct')),
    model_a         bigint NOT NULL REFERENCES models (id),
    model_b         bigint REFERENCES models (id),
    visitor_id      bigint REFERENCES visitors (id),
    ip_hash         bytea,
    state           text NOT NULL DEFAULT 'open'
                    CHECK (state IN ('open', 'answering', 'ready', 'voted',
                                     'failed')),
    excluded_reason text,      -- not NULL: does not count (identity leak...)
    -- Category tags, set as turns arrive.
    language        text,      -- e.g. 'en', detected from the prompts
    has_code        boolean NOT NULL DEFAULT false,
    turns           integer NOT NULL DEFAULT 0 CHECK (turns >= 0),
    prompt_len      integer NOT NULL DEFAULT 0 CHECK (prompt_len >= 0),
    tags            jsonb NOT NULL DEFAULT '{}'  -- further tags
                    CHECK (jsonb_typeof(tags) = 'object'),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((mode = 'direct') = (model_b IS NULL)),
    CHECK (model_b IS NULL OR model_a <> model_b)
);
CREATE INDEX battles_created_at ON battles (created_at);
CREATE INDEX battles_visitor ON battles (visitor_id, created_at);
CREATE INDEX battles_ip ON battles (ip_hash, created_at);
CREATE INDEX battles_pair ON battles (model_a, model_b);
CREATE INDEX battles_model_b ON battles (model_b);

-- The conversation of a battle. A user prompt is shared by both sides
-- (side 'both'); each answer belongs to side 'a' or 'b'. Regenerating a
-- turn adds rows with the next attempt number; the highest attempt is the
-- live one.
CREATE TABLE messages (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    battle_id     bigint NOT NULL REFERENCES battles (id) ON DELETE CASCADE,
    turn          integer NOT NULL CHECK (turn >= 0),
    attempt       integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    side          text NOT NULL CHECK (side IN ('a', 'b', 'both')),
    role          text NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    model_id      bigint REFERENCES models (id),   -- assistant rows
    content       text NOT NULL,
    tokens_in     integer CHECK (tokens_in >= 0),
    tokens_out    integer CHECK (tokens_out >= 0),
    ttft_ms       integer CHECK (ttft_ms >= 0),    -- time to first token
    gen_ms        integer CHECK (gen_ms >= 0),     -- whole generation
    cost          numeric(18, 9) CHECK (cost >= 0), -- from the model's prices
    finish_reason text,                            -- stop, length, error...
    error         text,                            -- NULL unless it failed
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (battle_id, turn, attempt, side, role)
);
CREATE INDEX messages_model ON messages (model_id, created_at);

-- One vote per battle, enforced here by the UNIQUE key. The pair is copied
-- from the battle so that leaderboards aggregate this table alone.
CREATE TABLE votes (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    battle_id    bigint NOT NULL UNIQUE REFERENCES battles (id),
    model_a      bigint NOT NULL REFERENCES models (id),
    model_b      bigint NOT NULL REFERENCES models (id),
    winner       text NOT NULL
                 CHECK (winner IN ('model_a', 'model_b', 'tie',
                                   'tie (bothbad)')),
    mode         text NOT NULL CHECK (mode IN ('anonymous', 'named')),
    counted      boolean NOT NULL DEFAULT true,  -- false: battle excluded
    visitor_id   bigint REFERENCES visitors (id),
    ip_hash      bytea,
    turns        integer NOT NULL DEFAULT 1 CHECK (turns >= 0),
    ms_to_vote   integer CHECK (ms_to_vote >= 0), -- from both answers done
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (model_a <> model_b)
);
CREATE INDEX votes_created_at ON votes (created_at);
CREATE INDEX votes_pair ON votes (model_a, model_b, winner) WHERE counted;
CREATE INDEX votes_model_b ON votes (model_b);
CREATE INDEX votes_visitor ON votes (visitor_id, created_at);
CREATE INDEX votes_ip ON votes (ip_hash, created_at);
