/* Placeholder until this module's commands land. */
#include <stdio.h>

#include "web.h"

int web_cmd_serve(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "arena %s: not implemented yet\n", argv[0]);
    return 1;
}

int web_cmd_bench_votes(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "arena %s: not implemented yet\n", argv[0]);
    return 1;
}

