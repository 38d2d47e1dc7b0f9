/* Placeholder until this module's commands land. */
#include <stdio.h>

#include "infer.h"

int infer_cmd_generate(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "arena %s: not implemented yet\n", argv[0]);
    return 1;
}

int infer_cmd_tokenize(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "arena %s: not implemented yet\n", argv[0]);
    return 1;
}

int infer_cmd_model_info(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "arena %s: not implemented yet\n", argv[0]);
    return 1;
}

int infer_cmd_mkmodel(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "arena %s: not implemented yet\n", argv[0]);
    return 1;
}

int infer_cmd_bench(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "arena %s: not implemented yet\n", argv[0]);
    return 1;
}

