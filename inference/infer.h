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
    INFER_ERR_ARG = -5,       /* bad argument from the caller */
    INFER_ERR_BUSY = -6,      /* queue or pool full (scheduler) */
    INFER_ERR_CANCELLED = -7,
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

/* ---- subcommands of the arena binary (argv[0] is the command's name) ---- */
int infer_cmd_generate(int argc, char **argv);
int infer_cmd_tokenize(int argc, char **argv);
int infer_cmd_model_info(int argc, char **argv);
int infer_cmd_mkmodel(int argc, char **argv);
int infer_cmd_bench(int argc, char **argv);

#endif
