/*
 * infer.h: the inference core's one public header.
 *
 * inference/ owns model files (GGUF, llama2.c), tokenizers, kernels, samplers,
 * the KV-cache pool and the scheduler, and the remote OpenAI-compatible
 * backend. It knows nothing of HTTP, SQL or battles and never prints: hosts
 * install a logger with infer_log_set().
 */
#ifndef INFER_H
#define INFER_H

/* Subcommands of the arena binary (argv[0] is the command's name). */
int infer_cmd_generate(int argc, char **argv);
int infer_cmd_tokenize(int argc, char **argv);
int infer_cmd_model_info(int argc, char **argv);
int infer_cmd_mkmodel(int argc, char **argv);
int infer_cmd_bench(int argc, char **argv);

#endif
