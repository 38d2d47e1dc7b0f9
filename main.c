/*
 * main.c: the arena binary. It only dispatches: each subcommand lives in the
 * module that owns it and takes (argc, argv) with argv[0] being the command's
 * own name. Exit codes: 0 success, 1 failure at run time, 2 bad usage.
 */
#include <stdio.h>
#include <string.h>

#include "arena.h"
#include "db.h"
#include "infer.h"
#include "web.h"

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"serve", web_cmd_serve, "run the web arena (HTTP, JSON API, pages)"},
    {"migrate", db_cmd_migrate, "apply database migrations and exit"},
    {"generate", infer_cmd_generate, "generate text with a model file"},
    {"tokenize", infer_cmd_tokenize, "print the token ids of a text"},
    {"model-info", infer_cmd_model_info, "describe a model file"},
    {"mkmodel", infer_cmd_mkmodel,
     "write a random-weight model of a real shape"},
    {"ratings", arena_cmd_ratings, "compute a leaderboard from battles"},
    {"export", arena_cmd_export, "export battles or preference pairs"},
    {"import", arena_cmd_import, "import public battle files"},
    {"bench", NULL,
     "benchmarks: bench infer | bench ratings | bench votes | "
     "bench leaderboard"},
};

static const struct command benches[] = {
    {"infer", infer_cmd_bench, "inference throughput by batch size"},
    {"ratings", arena_cmd_bench_ratings, "rating fit and bootstrap speed"},
    {"votes", web_cmd_bench_votes, "vote load test over HTTP"},
    {"leaderboard", web_cmd_bench_leaderboard,
     "leaderboard GET latency over HTTP"},
};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static void usage(FILE *f)
{
    fprintf(f, "usage: arena <command> [options]\n\n"
               "Crowdsourced side-by-side evaluation of language models.\n\n"
               "commands:\n");
    for (size_t i = 0; i < N_OF(commands); i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nRun 'arena <command> --help' for a command's options.\n");
}

static int dispatch(const struct command *table, size_t n, const char *what,
                    int argc, char **argv)
{
    for (size_t i = 0; i < n; i++)
        if (table[i].run != NULL && strcmp(argv[0], table[i].name) == 0)
            return table[i].run(argc, argv);
    fprintf(stderr, "arena: unknown %s '%s'; see 'arena --help'\n", what,
            argv[0]);
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "bench") == 0) {
        if (argc < 3 || argv[2][0] == '-') {
            fprintf(argc < 3 ? stderr : stdout, "usage: arena bench ");
            for (size_t i = 0; i < N_OF(benches); i++)
                fprintf(argc < 3 ? stderr : stdout, "%s%s", i ? "|" : "",
                        benches[i].name);
            fprintf(argc < 3 ? stderr : stdout, " [options]\n");
            return argc < 3 ? 2 : 0;
        }
        return dispatch(benches, N_OF(benches), "benchmark", argc - 2,
                        argv + 2);
    }
    return dispatch(commands, N_OF(commands), "command", argc - 1, argv + 1);
}
