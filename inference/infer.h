/*
 * infer.h: the inference core's one public header.
 *
 * inference/ owns model files (GGUF, llama2.c), tokenizers, kernels, samplers,
 * the KV-cache pool and the scheduler, and the remote OpenAI-compatible
 * backend. It knows nothing of HTTP, SQL or battles and never prints: hosts
 * install a logger with infer_log_set().
 *
 * Errors: every fallible call returns an enum infer_status (0 or negative)
 * and, where a human needs detail, fills a caller-owned struct infer_err.
 */
#ifndef INFER_H
#define INFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- status and errors -------------------------------------------------- */

enum infer_status {
    INFER_OK = 0,
    INFER_ERR_IO = -1,          /* cannot open/read/map a file */
    INFER_ERR_FORMAT = -2,      /* malformed, truncated or hostile file */
    INFER_ERR_UNSUPPORTED = -3, /* valid but not supported (arch, type) */
    INFER_ERR_NOMEM = -4,
    INFER_ERR_ARG = -5,  /* bad argument from the caller */
    INFER_ERR_BUSY = -6, /* queue or pool full (scheduler) */
    INFER_ERR_CANCELLED = -7,
    INFER_ERR_TOO_LONG = -8, /* prompt does not fit the context */
};

/* A static English description of a status. Cannot fail. */
const char *infer_strerror(int status);

/* Caller-owned detail for a failed call; filling it never allocates. */
struct infer_err {
    char msg[256];
};

/* ---- logging ------------------------------------------------------------ */

enum infer_log_level {
    INFER_LOG_ERROR = 0,
    INFER_LOG_WARN,
    INFER_LOG_INFO,
    INFER_LOG_DEBUG,
};
typedef void (*infer_log_fn)(enum infer_log_level level, const char *msg,
                             void *user);
/* Installs the logger (NULL: silence) and the most verbose level it wants.
 * Call before loading models; not synchronised with running threads. */
void infer_log_set(infer_log_fn fn, void *user, enum infer_log_level max);

/* ---- tokenizers (infer_tok*.c) ---------------------------------------- */

/*
 * A struct infer_tok is immutable once loaded: any number of threads may
 * encode and decode with it at once. Loaders return INFER_ERR_IO,
 * INFER_ERR_FORMAT (err names the problem), INFER_ERR_UNSUPPORTED or
 * INFER_ERR_NOMEM with *out = NULL; the caller frees with infer_tok_free().
 */
struct infer_gguf;
struct infer_tok;

/* From GGUF metadata: tokenizer.ggml.model "llama" (SentencePiece scores,
 * byte fallback) or "gpt2" (byte-level BPE, merges, tokenizer.ggml.pre). */
int infer_tok_from_gguf(const struct infer_gguf *g, struct infer_tok **out,
                        struct infer_err *err);
/* llama2.c tokenizer.bin; vocab_size from the checkpoint (<= 0: every token
 * in the file). Encodes as llama2.c's encode() does. */
int infer_tok_from_llama2c(const char *path, int vocab_size,
                           struct infer_tok **out, struct infer_err *err);
/* Hugging Face tokenizer.json with a BPE model; a config.json beside it, if
 * any, supplies bos_token_id and eos_token_id. */
int infer_tok_from_hf_json(const char *path, struct infer_tok **out,
                           struct infer_err *err);
/* The tokenizer of an opened GGUF model at model_path: its own vocabulary,
 * or, when that has no merge data (all scores equal, as TinyStories-656K's),
 * the tokenizer.json beside it, checked token by token against the GGUF and
 * given the GGUF's BOS/EOS ids and flags. model_path may be NULL. */
int infer_tok_for_gguf(const struct infer_gguf *g, const char *model_path,
                       struct infer_tok **out, struct infer_err *err);
/* The tokenizer of any model file: a GGUF (as infer_tok_for_gguf), a
 * llama2.c checkpoint (tokenizer.bin or tok<vocab>.bin beside it), or a
 * tokenizer.json itself. */
int infer_tok_load_for_model(const char *model_path, struct infer_tok **out,
                             struct infer_err *err);
void infer_tok_free(struct infer_tok *t); /* NULL is a no-op */

int infer_tok_n_vocab(const struct infer_tok *t);
int infer_tok_bos(const struct infer_tok *t); /* -1 if none */
int infer_tok_eos(const struct infer_tok *t); /* -1 if none */
/* End of generation: EOS, EOT, and the turn-end tokens of the chat formats
 * (<|im_end|>, <|eot_id|>, <|end|>, <end_of_turn>, </s>, ...). */
bool infer_tok_is_eog(const struct infer_tok *t, int id);
/* Control or unknown token (not text a model should print). */
bool infer_tok_is_special(const struct infer_tok *t, int id);

/* Encodes text[0..len) (any bytes; invalid UTF-8 is encoded byte-wise, never
 * rejected). add_bos: add BOS (and EOS) where the vocabulary asks for them;
 * a text that starts with the BOS token itself gets it once. parse_special:
 * control tokens written in the text (as a rendered chat template writes
 * them) become their ids; user-defined tokens always do. Writes up to cap
 * ids and returns how many the whole encoding has (call again with more room
 * if that exceeds cap), or INFER_ERR_ARG / INFER_ERR_NOMEM. */
int infer_tok_encode(const struct infer_tok *t, const char *text, size_t len,
                     bool add_bos, bool parse_special, int32_t *ids, int cap);
/* The bytes token id stands for (<0xAB> and GPT-2's byte mapping resolved,
 * U+2581 as a space); control tokens give "" unless render_special. Not
 * NUL-terminated in general (*len says); borrowed, valid while t lives;
 * NULL for an id out of range. */
const char *infer_tok_piece(const struct infer_tok *t, int id,
                            bool render_special, size_t *len);
/* The vocabulary's own spelling of token id (with U+2581 or GPT-2's mapped
 * characters), NUL-terminated and borrowed; NULL if out of range. */
const char *infer_tok_text(const struct infer_tok *t, int id, size_t *len);
/* Concatenates the pieces of ids[0..n) into out (at most cap bytes, no NUL)
 * and returns the full length. Where encode added a SentencePiece space
 * prefix (at the start and after a special token), one leading space is
 * dropped, so decode(encode(x)) == x. */
size_t infer_tok_decode(const struct infer_tok *t, const int32_t *ids, size_t n,
                        bool render_special, char *out, size_t cap);

/* Streaming UTF-8: push token pieces as they come; only whole characters
 * come out (a split character waits for its continuation bytes), and each
 * invalid sequence becomes U+FFFD. Zero-initialise the state. out needs
 * room for 3 * (len + 4) bytes to be sure nothing is cut; with less, output
 * stops at a character boundary within cap. Returns bytes written. */
struct infer_utf8 {
    unsigned char pending[4]; /* a valid prefix of one character */
    int n;                    /* bytes in pending, 0..3 */
};
size_t infer_utf8_push(struct infer_utf8 *s, const char *bytes, size_t len,
                       char *out, size_t cap);
/* Ends the stream: an incomplete character becomes U+FFFD. */
size_t infer_utf8_flush(struct infer_utf8 *s, char *out, size_t cap);

/* ---- chat templates (infer_chat.c) --------------------------------------- */

enum infer_chat_format {
    INFER_CHAT_NONE = 0, /* plain completion (base models) */
    INFER_CHAT_CHATML,   /* <|im_start|>role\n...<|im_end|> (Qwen, SmolLM) */
    INFER_CHAT_LLAMA2,   /* <s>[INST] <<SYS>>...<</SYS>> ... [/INST] */
    INFER_CHAT_LLAMA3,   /* <|start_header_id|>role<|end_header_id|> */
    INFER_CHAT_ZEPHYR,   /* <|user|>\n...</s> */
    INFER_CHAT_GEMMA,    /* <start_of_turn>user\n...<end_of_turn> */
    INFER_CHAT_PHI3,     /* <|user|>\n...<|end|> */
};
/* The family a GGUF tokenizer.chat_template (Jinja) belongs to, by the
 * markers it writes; NULL or unknown -> INFER_CHAT_NONE. Cannot fail. */
enum infer_chat_format infer_chat_detect(const char *jinja_template);
/* "chatml", "llama2", ...; "none" for INFER_CHAT_NONE. Cannot fail. */
const char *infer_chat_format_name(enum infer_chat_format f);
/* By name, as infer_chat_format_name spells it; -1 if unknown. */
int infer_chat_format_from_name(const char *name);

/* The system prompt a ChatML template writes when a conversation has none
 * (Qwen2.5's and SmolLM2's do), as a malloc'd string the caller frees; NULL
 * if the template has no such literal. Callers that want the template's
 * behaviour prepend it as a system message. */
char *infer_chat_default_system(const char *jinja_template);

struct infer_chat_msg {
    const char *role; /* "system", "user" or "assistant" */
    const char *content;
};
/* Renders msgs[0..n) as the family's template does, BOS text included where
 * the template writes it (encode with parse_special to turn the markers
 * into ids), then the assistant's opening if add_assistant. NONE joins the
 * contents with "\n" (completion mode). Returns a malloc'd string the caller
 * frees, or NULL on bad arguments (unknown role, NULL content). */
char *infer_chat_render(enum infer_chat_format f,
                        const struct infer_chat_msg *msgs, size_t n,
                        bool add_assistant);

/* ---- engines, streams, waiters and the hub (infer_engine*.c, ---------------
 * ---- infer_sched*.c, infer_remote*.c, infer_hub*.c) -------------------------
 */

/*
 * An engine is one loaded local model with its own scheduler thread
 * (continuous batching: requests join and leave the running batch at every
 * step, prompts are computed in chunks within a per-step token budget, KV
 * cache in fixed-size blocks from one pool per engine), or one remote
 * OpenAI-compatible endpoint. Every engine call is thread-safe; submit from
 * any thread. Requests come back as streams of events.
 */
struct infer_engine;

struct infer_engine_opts {
    int threads;           /* compute threads for kernels, 0 = cores; local
                              engines with the same value share one pool */
    int max_batch;         /* sequences decoded per step (default 64) */
    int max_queue;         /* waiting requests before INFER_ERR_BUSY (256) */
    int kv_blocks;         /* KV pool size in blocks of 16 positions, 0 =
                              enough for max_batch sequences of ctx_len,
                              at most 1 GiB (K and V in half precision;
                              the pool is committed when the engine
                              starts) */
    int ctx_len;           /* max tokens per sequence, 0 = model's */
    int step_token_budget; /* prompt tokens per step (chunked prefill, 128) */
    int max_sessions;      /* cached conversations kept for prefix reuse,
                              0 = max_batch (LRU, evicted when the pool
                              needs their blocks) */
};
/* Fills o with the defaults (all fields documented above). Cannot fail. */
void infer_engine_opts_default(struct infer_engine_opts *o);

/* Loads model_path (GGUF or llama2.c) and starts its scheduler thread. o may
 * be NULL (defaults); fields <= 0 take their defaults. Load errors as
 * infer_model_load; *out = NULL on failure. */
int infer_engine_open_local(const char *model_path,
                            const struct infer_engine_opts *o,
                            struct infer_engine **out, struct infer_err *err);

struct infer_remote_opts {
    const char *base_url;    /* e.g. "http://127.0.0.1:8080/v1" (the part
                                before /chat/completions) */
    const char *model;       /* the endpoint's model name */
    const char *api_key_env; /* NULL/"" = no key; else the environment
                                variable read at each request (the key is
                                never stored, logged or put in errors) */
    int connect_timeout_ms;  /* 0 = 10000 */
    int timeout_ms;          /* whole request, 0 = 300000 */
    int retries;             /* extra attempts before the first visible
                                token (never after one); < 0 = 0 */
};
/* A remote engine: each request is one streaming POST to
 * base_url/chat/completions (msgs) or base_url/completions (prompt), on a
 * thread of its own. Copies every string it needs. Does not connect yet. */
int infer_engine_open_remote(const struct infer_remote_opts *o,
                             struct infer_engine **out, struct infer_err *err);

/* Cancels every queued and running request (their streams get an error
 * event and stay valid until freed), joins the threads, frees everything.
 * NULL is a no-op. */
void infer_engine_free(struct infer_engine *e);
/* The model's name (general.name or the file name; the remote model's
 * name). Borrowed, valid while e lives. */
const char *infer_engine_model_name(const struct infer_engine *e);
/* The chat template family used for msgs (INFER_CHAT_NONE: plain
 * completion; remote engines: NONE, the endpoint renders its own). */
enum infer_chat_format infer_engine_chat_format(const struct infer_engine *e);
/* The bytes of a token of a local engine's vocabulary (not necessarily
 * whole UTF-8 characters), for naming the tokens of logprobs; NULL for a
 * remote engine or a token out of range. Borrowed, valid while e lives. */
const char *infer_engine_token_text(const struct infer_engine *e, int token,
                                    size_t *len);

/* A snapshot of an engine's state (tests, /v1/models, the bench). */
struct infer_engine_info {
    bool remote;
    int ctx_len;            /* max tokens per sequence (0 if remote) */
    int kv_blocks, kv_free; /* pool size and free blocks now, blocks
                               held by cached sessions count as used */
    int cached_sessions;
    int running, queued; /* requests */
    long long steps;     /* forward passes run so far */
};
void infer_engine_info(struct infer_engine *e, struct infer_engine_info *out);

/* OpenAI's logit_bias: added to a token's logit before sampling (greedy
 * too); -100 bans the token, 100 all but forces it. */
struct infer_logit_bias {
    int32_t token;
    float bias; /* [-100, 100] */
};
#define INFER_MAX_LOGIT_BIAS 1024

/* One generated token with its log-probability under the model (the
 * softmax of the raw logits: before penalties, logit_bias and
 * temperature, as vLLM reports them) and the most likely tokens there. */
#define INFER_MAX_TOP_LOGPROBS 20
struct infer_token_lp {
    int32_t token;
    float logprob; /* NaN for the prompt's first token (nothing before it) */
    bool prompt;   /* a token of the prompt (params.prompt_logprobs) */
    int n_top;     /* params.top_logprobs */
    struct {
        int32_t token;
        float logprob;
    } top[INFER_MAX_TOP_LOGPROBS]; /* most likely first */
};

struct infer_params {                  /* zero-initialised = greedy, defaults */
    const struct infer_chat_msg *msgs; /* chat: rendered with the model's */
    size_t n_msgs;                     /* template (ChatML gets its default
                                          system prompt if none is given) */
    const char *prompt;   /* or a raw completion prompt (msgs NULL) */
    int max_tokens;       /* <= 0: up to the context length */
    float temperature;    /* <= 0: greedy */
    float top_p;          /* 0 or >= 1: off */
    float min_p;          /* <= 0: off */
    float repeat_penalty; /* 0 or 1: off */
    int top_k;            /* <= 0: off */
    /* OpenAI's penalties, over the generated tokens: [-2, 2], 0: off. */
    float presence_penalty, frequency_penalty;
    /* Copied at submit; tokens of this model's vocabulary, at most
     * INFER_MAX_LOGIT_BIAS entries. */
    const struct infer_logit_bias *logit_bias;
    size_t n_logit_bias;
    /* Local engines only: each generated token's infer_token_lp, with
     * top_logprobs (0 to INFER_MAX_TOP_LOGPROBS) alternatives. */
    bool logprobs;
    int top_logprobs;
    /* Local engines, with logprobs: also the prompt's tokens, before the
     * generated ones (each as likely as the model found it after the ones
     * before it; no session reuse then). prompt_only: generate nothing,
     * only score the prompt (finish_reason "length"). */
    bool prompt_logprobs, prompt_only;
    uint64_t seed;
    const char *const *stop; /* stop strings (copied at submit) */
    size_t n_stop;
    uint64_t session; /* != 0: keep this conversation's KV after it
                         ends and reuse its longest common token
                         prefix in the next request with the same
                         session (stats.cached_tokens) */
};

/* Lets one thread wait on several streams (both sides of a battle): a
 * stream submitted with a waiter signals it on every new event. Free the
 * waiter after infer_stream_free of every stream submitted with it (the
 * engine may still hold a stream, but no longer wakes the waiter). */
struct infer_waiter;
struct infer_waiter *infer_waiter_new(void); /* NULL if out of memory */
void infer_waiter_free(struct infer_waiter *w);
/* Waits until a stream signalled since the last wait (returns 1) or
 * timeout_ms passes (0; -1 = forever). */
int infer_waiter_wait(struct infer_waiter *w, int timeout_ms);

/* One request; owned by the submitter, who must free it. */
struct infer_stream;

/* Queues a request. Validates and tokenizes on the caller's thread:
 * INFER_ERR_ARG (bad params, unknown role), INFER_ERR_TOO_LONG (prompt plus
 * one token exceeds the context; err says both numbers), INFER_ERR_BUSY
 * (queue full), INFER_ERR_CANCELLED (engine closing); *out = NULL then. */
int infer_engine_submit(struct infer_engine *e, const struct infer_params *p,
                        struct infer_waiter *w /* may be NULL */,
                        struct infer_stream **out, struct infer_err *err);

enum infer_event_kind {
    INFER_EV_NONE = 0, /* nothing yet */
    INFER_EV_TEXT,
    INFER_EV_DONE,
    INFER_EV_ERROR,
};
struct infer_stats {
    int prompt_tokens, completion_tokens, cached_tokens;
    double ttft_ms;            /* submit to the first generated token */
    double gen_ms;             /* first generated token to the end */
    const char *finish_reason; /* "stop" | "length" (static) */
};
struct infer_event {
    enum infer_event_kind kind;
    const char *text; /* INFER_EV_TEXT: whole UTF-8 characters, all that */
    size_t len;       /* came since the last call; valid until next call */
    /* INFER_EV_TEXT with params.logprobs: the tokens that came since the
     * last call, in order (len may be 0 then). A token comes once its text
     * has come (or was dropped at the start of an answer); tokens wholly
     * after a stop string never come. Valid until the next call. */
    const struct infer_token_lp *tokens;
    size_t n_tokens;
    struct infer_stats stats; /* INFER_EV_DONE (and partial on ERROR) */
    char error[256];          /* INFER_EV_ERROR */
};
/* The next event: waits up to timeout_ms (0 = poll, -1 = forever) and
 * returns ev->kind. Once DONE or ERROR came, every later call returns the
 * same. One thread at a time per stream. */
int infer_stream_next(struct infer_stream *s, int timeout_ms,
                      struct infer_event *ev);
/* The client went away: the engine drops the request and frees its KV
 * blocks at its next step (within one step's time). Idempotent. */
void infer_stream_cancel(struct infer_stream *s);
/* Cancels if still running and frees. NULL is a no-op. */
void infer_stream_free(struct infer_stream *s);

/* The hub: the named set of engines a server runs. Thread-safe; engines are
 * added at start-up and live until infer_hub_free. */
struct infer_hub;
/* defaults: options for engines infer_hub_scan_dir opens (NULL: default). */
struct infer_hub *infer_hub_new(const struct infer_engine_opts *defaults);
void infer_hub_free(struct infer_hub *h); /* frees every engine; NULL ok */
/* Adds e under a unique name; the hub owns e from then on (also on
 * failure: INFER_ERR_ARG if the name is taken or empty, e is freed). */
int infer_hub_add(struct infer_hub *h, const char *name, struct infer_engine *e,
                  struct infer_err *err);
/* Borrowed; NULL if none. */
struct infer_engine *infer_hub_get(struct infer_hub *h, const char *name);
/* Writes up to cap borrowed names (sorted) and returns how many there are. */
size_t infer_hub_names(struct infer_hub *h, const char **names, size_t cap);
/* Finds model files under dir (GGUF files; llama2.c .bin checkpoints with a
 * tokenizer*.bin or tok*.bin beside them), opens an engine for each (name:
 * file name without extension, lower-cased), logs and skips files that fail
 * to load and vocab-only GGUF files. Returns how many it added, or
 * INFER_ERR_IO if dir cannot be read. */
int infer_hub_scan_dir(struct infer_hub *h, const char *dir,
                       struct infer_err *err);

/* ---- subcommands of the arena binary (argv[0] is the command's name) ---- */
int infer_cmd_generate(int argc, char **argv);
int infer_cmd_tokenize(int argc, char **argv);
int infer_cmd_model_info(int argc, char **argv);
int infer_cmd_mkmodel(int argc, char **argv);
int infer_cmd_bench(int argc, char **argv);

#endif
