#!/usr/bin/env bash
# test_v1.sh: the OpenAI-compatible /v1 API of a real `arena serve` with the
# story models, driven by a stock client (curl -N): models list, chat and
# completions with and without streaming, usage counts, greedy determinism,
# presence and frequency penalties, logit_bias, logprobs, echo and prompt
# scoring, prompt_cache_key, n choices, the fields it refuses, every field
# with every JSON type, and the error cases (unknown model, bad fields,
# malformed JSON, context overflow).
set -u
command -v curl >/dev/null || { echo "skip: no curl"; exit 77; }
command -v jq >/dev/null || { echo "skip: no jq"; exit 77; }
shared=${ARENA_SHARED:-../shared}
m1=$shared/models/stories260K/stories260K.gguf
m2=$shared/models/tinystories-656K/TinyStories-656K-Q8_0.gguf
[ -r "$m1" ] && [ -r "$m2" ] || { echo "skip: no story models"; exit 77; }
[ -n "${ARENA_TEST_PGCONN:-}" ] && command -v psql >/dev/null ||
    { echo "skip: no test database"; exit 77; }
db="v1_$$"
psql "$ARENA_TEST_PGCONN" -qc "CREATE DATABASE $db" || exit 1

dir=$(mktemp -d "${ARENA_TEST_OUT:-/tmp}/v1.XXXXXX" 2>/dev/null || mktemp -d)
mkdir -p "$dir/models" "$dir/data"
ln -s "$m1" "$dir/models/stories260K.gguf"
ln -s "$m2" "$dir/models/TinyStories-656K-Q8_0.gguf"
tok="$shared/models/tinystories-656K/tokenizer.json"
ln -s "$tok" "$dir/models/tokenizer.json"
ln -s "$shared/models/tinystories-656K/config.json" "$dir/models/config.json"

"$ARENA_BIN" serve --port 0 --port-file "$dir/port" --data-dir "$dir/data" \
    --models-dir "$dir/models" --database-url "$ARENA_TEST_PGCONN dbname=$db" \
    --access-log off --log-level warn --trusted-proxies 127.0.0.1 2>"$dir/serve.log" &
pid=$!
cleanup() {
    kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"
    psql "$ARENA_TEST_PGCONN" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
}
trap cleanup EXIT
for _ in $(seq 1 300); do
    [ -s "$dir/port" ] && break
    kill -0 $pid 2>/dev/null || { cat "$dir/serve.log"; echo "serve died"; exit 1; }
    sleep 0.1
done
[ -s "$dir/port" ] || { cat "$dir/serve.log"; echo "no port"; exit 1; }
base="http://127.0.0.1:$(cat "$dir/port")/v1"

fails=0
check() { # check NAME CONDITION-COMMAND...
    local name=$1; shift
    if "$@" >/dev/null; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}
post() { # post PATH JSON -> body in $dir/out, status in $dir/status
    curl -sS -o "$dir/out" -w '%{http_code}' -H 'Content-Type: application/json' \
        -d "$2" "$base$1" >"$dir/status"
}
status_is() { [ "$(cat "$dir/status")" = "$1" ]; }
jq_is() { [ "$(jq -r "$1" <"$dir/out")" = "$2" ]; }

# models
curl -sS "$base/models" >"$dir/out"
check models_list jq -e '.object == "list" and ([.data[].id] | index("stories260k") != null) and ([.data[].id] | index("tinystories-656k-q8_0") != null)' "$dir/out"

# without --v1-keys the API answers clients on this machine only: a visitor
# that nginx (a trusted proxy here) says comes from elsewhere gets a 401
code=$(curl -sS -o "$dir/out" -w '%{http_code}' -H 'X-Real-IP: 203.0.113.9' "$base/models")
check remote_client_refused [ "$code" = 401 ]
check remote_client_refused_shape jq -e '.error.code == "invalid_api_key" and (.error.message | test("v1-keys"))' "$dir/out"
code=$(curl -sS -o "$dir/out" -w '%{http_code}' -H 'X-Real-IP: 203.0.113.9' -H 'Content-Type: application/json' \
            -d '{"model":"stories260k","prompt":"x","max_tokens":2}' "$base/completions")
check remote_client_refused_completions [ "$code" = 401 ]

# chat, not streamed, greedy
req='{"model":"stories260k","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":16,"temperature":0}'
post /chat/completions "$req"
check chat_status status_is 200
check chat_shape jq -e '.object == "chat.completion" and .choices[0].message.role == "assistant" and (.choices[0].message.content | length) > 0 and (.choices[0].finish_reason == "length" or .choices[0].finish_reason == "stop")' "$dir/out"
check chat_usage jq -e '.usage.prompt_tokens > 0 and .usage.completion_tokens > 0 and .usage.completion_tokens <= 16 and .usage.total_tokens == .usage.prompt_tokens + .usage.completion_tokens' "$dir/out"
first=$(jq -r '.choices[0].message.content' <"$dir/out")
post /chat/completions "$req"
check chat_greedy_repeatable jq_is '.choices[0].message.content' "$first"

# presence and frequency penalties steer greedy decoding (OpenAI's fields,
# once accepted and ignored): same prompt, another text, still repeatable
pen='"model":"stories260k","prompt":"Once upon a time","max_tokens":60,"temperature":0'
post /completions "{$pen}"
plain=$(jq -r '.choices[0].text' <"$dir/out")
post /completions "{$pen,\"frequency_penalty\":1}"
freq=$(jq -r '.choices[0].text' <"$dir/out")
check frequency_penalty_used [ -n "$freq" ] && [ "$freq" != "$plain" ]
post /completions "{$pen,\"frequency_penalty\":1}"
check frequency_penalty_repeatable jq_is '.choices[0].text' "$freq"
post /completions "{$pen,\"presence_penalty\":2}"
check presence_penalty_used jq -e --arg p "$plain" '(.choices[0].text | length) > 0 and .choices[0].text != $p' "$dir/out"
post /completions "{$pen,\"presence_penalty\":2.5}"
check bad_presence_penalty jq -e '.error.param == "presence_penalty"' "$dir/out"

# logit_bias: +100 forces a token (ids from `arena tokenize`), -100 bans the
# first token greedy would pick
lily=$("$ARENA_BIN" tokenize --model "$m1" --text "Lily" --no-bos | awk '{print $NF}')
first_id=$("$ARENA_BIN" generate --model "$m1" --prompt "Once upon a time" --max-tokens 1 --ids 2>/dev/null | awk '{print $1}')
post /completions "{\"model\":\"stories260k\",\"prompt\":\"Once upon a time\",\"max_tokens\":5,\"temperature\":0,\"logit_bias\":{\"$lily\":100}}"
check logit_bias_forces jq -e '.usage.completion_tokens == 5 and (.choices[0].text | test("Lily")) and (.choices[0].text | length % 5 == 0) and (.choices[0].text as $t | ($t | length / 5) as $n | $t == ($t[0:$n] * 5))' "$dir/out"
post /completions "{$pen,\"logit_bias\":{\"$first_id\":-100}}"
check logit_bias_bans jq -e --arg p "$plain" '(.choices[0].text | length) > 0 and .choices[0].text != $p' "$dir/out"
post /completions "{$pen,\"logit_bias\":{\"100000\":1}}"
check logit_bias_out_of_vocab jq -e '.error.param == "logit_bias" and (.error.message | test("vocabulary"))' "$dir/out"
post /completions "{$pen,\"logit_bias\":{\"cat\":1}}"
check logit_bias_bad_key jq -e '.error.param == "logit_bias"' "$dir/out"
post /completions "{$pen,\"logit_bias\":{\"5\":101}}"
check logit_bias_bad_value jq -e '.error.param == "logit_bias"' "$dir/out"
# fields this server cannot honour are refused by name, not ignored
for f in '"best_of":2' '"suffix":"x"' '"tools":[{"type":"function"}]' '"response_format":{"type":"json_object"}'; do
    post /completions "{$pen,$f}"
    name=${f#\"}; name=${name%%\"*}
    check "refuse_$name" jq -e --arg n "$name" '.error.param == $n and .error.type == "invalid_request_error"' "$dir/out"
done
post /completions "{$pen,\"logprobs\":null,\"echo\":false,\"best_of\":1,\"response_format\":{\"type\":\"text\"}}"
check accepts_defaults jq_is '.choices[0].text' "$plain"

# logprobs: chat (logprobs + top_logprobs, with bytes) and completions
# (legacy shape), whole and streamed; greedy takes the top alternative
lpreq='{"model":"stories260k","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":16,"temperature":0,"logprobs":true,"top_logprobs":3}'
post /chat/completions "$lpreq"
check chat_logprobs_count jq -e '(.choices[0].logprobs.content | length) == .usage.completion_tokens and .usage.completion_tokens > 0' "$dir/out"
check chat_logprobs_values jq -e 'all(.choices[0].logprobs.content[]; .logprob <= 0 and (.top_logprobs | length) == 3 and .top_logprobs[0].token == .token and .top_logprobs[0].logprob == .logprob and .top_logprobs[0].logprob >= .top_logprobs[1].logprob and .top_logprobs[1].logprob >= .top_logprobs[2].logprob and (.bytes | implode) == .token)' "$dir/out"
check chat_logprobs_text jq -e '([.choices[0].logprobs.content[].token] | join("") | ltrimstr(" ")) == (.choices[0].message.content | ltrimstr(" "))' "$dir/out"
jq -c '[.choices[0].logprobs.content[] | [.token, .logprob]]' "$dir/out" >"$dir/lp_whole"
curl -sS -N -H 'Content-Type: application/json' -d "${lpreq%\}},\"stream\":true}" "$base/chat/completions" | sed -n 's/^data: \({.*\)/\1/p' >"$dir/lp_chunks"
check chat_logprobs_streamed [ "$(jq -s -c '[.[].choices[0].logprobs.content // [] | .[] | [.token, .logprob]]' "$dir/lp_chunks")" = "$(cat "$dir/lp_whole")" ]
post /completions '{"model":"stories260k","prompt":"Once upon a time","max_tokens":12,"temperature":0,"logprobs":2}'
check completions_logprobs jq -e '.choices[0].logprobs as $l | ($l.tokens | length) == .usage.completion_tokens and ($l.token_logprobs | length) == ($l.tokens | length) and all($l.top_logprobs[]; length >= 1 and length <= 2) and ($l.text_offset | .[0] == 0 and . == sort) and ($l.tokens | join("") | ltrimstr(" ")) == (.choices[0].text | ltrimstr(" "))' "$dir/out"
post /completions '{"model":"stories260k","prompt":"Once upon a time","max_tokens":12}'
check no_logprobs_by_default jq -e '.choices[0].logprobs == null' "$dir/out"
post /chat/completions '{"model":"stories260k","messages":[{"role":"user","content":"x"}],"logprobs":2}'
check bad_chat_logprobs jq -e '.error.param == "logprobs"' "$dir/out"
post /chat/completions '{"model":"stories260k","messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":21}'
check bad_top_logprobs jq -e '.error.param == "top_logprobs"' "$dir/out"
post /chat/completions '{"model":"stories260k","messages":[{"role":"user","content":"x"}],"top_logprobs":2}'
check top_logprobs_needs_logprobs jq -e '.error.param == "top_logprobs"' "$dir/out"

# echo: the prompt comes back first; with logprobs its tokens are scored
# (the first has none), and max_tokens 0 only scores it
echoreq='{"model":"stories260k","prompt":"Once upon a time, there was a little girl named Lily.","temperature":0'
post /completions "$echoreq,\"max_tokens\":0,\"echo\":true,\"logprobs\":1}"
check echo_score_only jq -e '.choices[0].text == "Once upon a time, there was a little girl named Lily." and .usage.completion_tokens == 0 and .choices[0].finish_reason == "length" and (.choices[0].logprobs.tokens | length) == .usage.prompt_tokens and .usage.prompt_tokens > 10' "$dir/out"
check echo_score_values jq -e '.choices[0].logprobs as $l | $l.token_logprobs[0] == null and $l.top_logprobs[0] == null and all($l.token_logprobs[1:][]; . <= 0) and all($l.top_logprobs[1:][]; length == 1) and ($l.text_offset | . == sort and .[-1] < 54) and ($l.tokens | join("") | ltrimstr(" ")) == .choices[0].text' "$dir/out"
jq -c '.choices[0].logprobs.token_logprobs' "$dir/out" >"$dir/echo_lp"
post /completions "$echoreq,\"max_tokens\":8}"
plain8=$(jq -r '.choices[0].text' <"$dir/out")
post /completions "$echoreq,\"max_tokens\":8,\"echo\":true,\"logprobs\":0}"
check echo_then_answer jq -e --arg p "$plain8" '.choices[0].text == "Once upon a time, there was a little girl named Lily." + $p and (.choices[0].logprobs.tokens | length) == .usage.prompt_tokens + .usage.completion_tokens' "$dir/out"
check echo_same_prompt_scores [ "$(jq -c --argjson n "$(jq '.usage.prompt_tokens' "$dir/out")" '.choices[0].logprobs.token_logprobs[0:$n]' "$dir/out")" = "$(cat "$dir/echo_lp")" ]
curl -sS -N -H 'Content-Type: application/json' -d "$echoreq,\"max_tokens\":8,\"echo\":true,\"logprobs\":0,\"stream\":true}" "$base/completions" | sed -n 's/^data: \({.*\)/\1/p' >"$dir/echo_chunks"
check echo_streamed jq -s -e --arg p "$plain8" '([.[] | .choices[0].text // ""] | join("")) == "Once upon a time, there was a little girl named Lily." + $p and ([.[] | .choices[0].logprobs.tokens // [] | .[]] | length) > 10' "$dir/echo_chunks"
post /completions "$echoreq,\"max_tokens\":0}"
check bad_max_tokens_0 jq -e '.error.param == "max_tokens"' "$dir/out"
post /chat/completions '{"model":"stories260k","messages":[{"role":"user","content":"x"}],"echo":true}'
check chat_echo_refused jq -e '.error.param == "echo"' "$dir/out"

# prompt_cache_key: the next turn of a conversation reuses the KV of the
# last one (cached_tokens), and answers as it would from scratch
turn1='{"model":"tinystories-656k-q8_0","messages":[{"role":"user","content":"Tell me a story about a cat and a dog who play in the garden."}],"max_tokens":24,"temperature":0'
post /chat/completions "$turn1,\"prompt_cache_key\":\"conv-1\"}"
check cache_first_turn jq -e '.usage.prompt_tokens_details.cached_tokens == 0' "$dir/out"
ans1=$(jq -c '.choices[0].message.content' "$dir/out")
turn2='{"model":"tinystories-656k-q8_0","messages":[{"role":"user","content":"Tell me a story about a cat and a dog who play in the garden."},{"role":"assistant","content":'"$ans1"'},{"role":"user","content":"What happened next?"}],"max_tokens":24,"temperature":0'
post /chat/completions "$turn2}"
fresh=$(jq -c '.choices[0].message.content' "$dir/out")
post /chat/completions "$turn2,\"prompt_cache_key\":\"conv-1\"}"
check cache_next_turn_reused jq -e '.usage.prompt_tokens_details.cached_tokens > 10' "$dir/out"
check cache_same_answer [ "$(jq -c '.choices[0].message.content' "$dir/out")" = "$fresh" ]
post /chat/completions "$turn2,\"prompt_cache_key\":7}"
check bad_cache_key jq -e '.error.param == "prompt_cache_key"' "$dir/out"

# n choices: sampled with a seed each, repeatable, the same streamed
nreq='{"model":"stories260k","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":24,"temperature":1,"seed":7,"n":3'
post /chat/completions "$nreq}"
check n_choices jq -e '[.choices[].index] == [0,1,2] and all(.choices[]; (.message.content | length) > 0 and .finish_reason != null) and ([.choices[].message.content] | unique | length) >= 2 and .usage.completion_tokens >= 3' "$dir/out"
jq -c '[.choices[].message.content]' "$dir/out" >"$dir/n_whole"
post /chat/completions "$nreq}"
check n_repeatable [ "$(jq -c '[.choices[].message.content]' "$dir/out")" = "$(cat "$dir/n_whole")" ]
curl -sS -N -H 'Content-Type: application/json' -d "$nreq,\"stream\":true,\"stream_options\":{\"include_usage\":true}}" "$base/chat/completions" | sed -n 's/^data: \({.*\)/\1/p' >"$dir/n_chunks"
check n_streamed [ "$(jq -s -c '[range(3) as $i | [.[] | .choices[] | select(.index == $i) | .delta.content // ""] | join("")]' "$dir/n_chunks")" = "$(cat "$dir/n_whole")" ]
check n_streamed_finish jq -s -e '[.[] | .choices[] | select(.finish_reason != null) | .index] | sort == [0,1,2]' "$dir/n_chunks"
post /chat/completions '{"model":"stories260k","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":24,"temperature":1,"seed":7}'
check n_first_is_single jq -e --argjson w "$(cat "$dir/n_whole")" '.choices[0].message.content == $w[0]' "$dir/out"

# completions, streamed with curl -N, usage chunk, [DONE] last
curl -sS -N -H 'Content-Type: application/json' -d '{"model":"tinystories-656k-q8_0","prompt":"Once upon a time","max_tokens":12,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}' "$base/completions" >"$dir/sse"
check sse_done_last [ "$(grep -v '^$' "$dir/sse" | tail -1)" = "data: [DONE]" ]
grep '^data: {' "$dir/sse" | sed 's/^data: //' >"$dir/chunks"
check sse_chunks jq -s -e 'length >= 3 and all(.[]; .object == "text_completion")' "$dir/chunks"
check sse_finish jq -s -e '[.[] | select(.choices | length > 0) | .choices[0].finish_reason | select(. != null)] == ["length"]' "$dir/chunks"
check sse_usage jq -s -e '.[-1].choices == [] and .[-1].usage.completion_tokens == 12' "$dir/chunks"
streamed=$(jq -s -j '[.[] | select(.choices | length > 0) | .choices[0].text] | join("")' "$dir/chunks")
post /completions '{"model":"tinystories-656k-q8_0","prompt":"Once upon a time","max_tokens":12,"temperature":0}'
check stream_equals_whole jq_is '.choices[0].text' "$streamed"

# chat streamed: role first, then content deltas
curl -sS -N -H 'Content-Type: application/json' -d '{"model":"stories260k","messages":[{"role":"user","content":"Hi"}],"max_tokens":8,"stream":true,"stop":["\n\n"],"seed":5}' "$base/chat/completions" | grep '^data: {' | sed 's/^data: //' >"$dir/chunks"
check chat_stream_role jq -s -e '.[0].choices[0].delta.role == "assistant" and .[0].object == "chat.completion.chunk" and (.[-1].choices[0].finish_reason != null)' "$dir/chunks"

# errors
post /chat/completions '{"model":"no-such-model","messages":[{"role":"user","content":"x"}]}'
check unknown_model status_is 404
check unknown_model_shape jq -e '.error.code == "model_not_found" and .error.type == "invalid_request_error" and (.error.message | length) > 0' "$dir/out"
post /chat/completions '{"model":"stories260k","messages":[{"role":"user","content":"x"}],"temperature":"hot"}'
check bad_temperature status_is 400
check bad_temperature_param jq_is '.error.param' temperature
post /chat/completions '{"model":"stories260k","messages":[{"role":"robot","content":"x"}]}'
check bad_role status_is 400
post /chat/completions '{"model":"stories260k","messages":"hello"}'
check bad_messages status_is 400
post /completions '{"model":"stories260k","prompt":"x","max_tokens":0}'
check bad_max_tokens status_is 400
post /completions '{"model":"stories260k","prompt":"x","n":9}'
check bad_n status_is 400
post /completions '{"model":"stories260k","prompt":"x",'
check malformed_json status_is 400
check malformed_json_shape jq -e '.error.type == "invalid_request_error"' "$dir/out"
long=$(head -c 20000 /dev/zero | tr '\0' 'a' | sed 's/aaaa/ab c /g')
post /completions "{\"model\":\"stories260k\",\"prompt\":\"$long\"}"
check context_overflow status_is 400
check context_overflow_code jq_is '.error.code' context_length_exceeded
post /completions '{"prompt":"x"}'
check missing_model status_is 400

# every field with every JSON type: a 200 or a 400 naming a cause, never a
# 5xx or a dropped connection (the ASan build runs this too). One curl
# process sends them all over keep-alive (a process per request took a
# minute here).
fields='model prompt messages temperature top_p top_k min_p max_tokens max_completion_tokens n seed stop
        logit_bias logprobs top_logprobs echo stream stream_options presence_penalty frequency_penalty
        repetition_penalty response_format tools suffix best_of prompt_cache_key'
values='[null, true, false, -1, 0, 2, 1e308, -1e308, "x", "", [], {}, [1, "a", null], {"1": 1e9},
         [{"role": "user"}], {"type": "text"}, "\u0000"]'
: >"$dir/fz.cfg"
for path in /completions /chat/completions; do
    if [ $path = /completions ]; then base_body='{"model":"stories260k","prompt":"Hi","max_tokens":3}'
    else base_body='{"model":"stories260k","messages":[{"role":"user","content":"Hi"}],"max_tokens":3}'; fi
    jq -r -n --argjson b "$base_body" --argjson vs "$values" --arg fs "$fields" --arg url "$base$path" \
          --arg dir "$dir" --arg tag "${path//\//_}" '
        [$fs | splits("\\s+") | select(length > 0)] as $f | range($f | length) as $i | range($vs | length) as $j |
        "next", "url = \($url | @json)", "header = \"Content-Type: application/json\"",
        "data = \($b | .[$f[$i]] = $vs[$j] | tojson | @json)",
        "output = \("\($dir)/fz\($tag)_\($i)_\($j)" | @json)",
        "write-out = \("%{http_code} \($tag):\($f[$i])=\($vs[$j] | tojson)\\n" | @json)"' >>"$dir/fz.cfg"
done
sed -i '1d' "$dir/fz.cfg" # no "next" before the first
curl -sS --max-time 60 -K "$dir/fz.cfg" >"$dir/fz.codes" 2>"$dir/fz.err"
n_sent=$(wc -l <"$dir/fz.codes")
bad=$(grep -Ev '^(200|400|404) ' "$dir/fz.codes")
[ -z "$bad" ] || echo "unexpected answers: $bad"
n_400=$(grep -c '^400 ' "$dir/fz.codes")
check hostile_fields_answers [ "$n_sent" = 884 ] && [ -z "$bad" ] && [ "$n_400" -gt 300 ]
check hostile_fields_errors_named jq -e -n '[inputs | (.error.message | length) > 0] | all' \
    $(grep -l '"error"' "$dir"/fz_* 2>/dev/null || echo /dev/null)

# the server still answers after all that
post /completions '{"model":"stories260k","prompt":"The cat","max_tokens":4}'
check still_serving status_is 200

[ $fails -eq 0 ] || { tail -20 "$dir/serve.log"; exit 1; }
echo "all /v1 checks passed"
