/* Placeholder until this module's commands land. */
#include <stdio.h>

#include "arena.h"

int arena_cmd_export(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "arena %s: not implemented yet\n", argv[0]);
    return 1;
}

int arena_cmd_import(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "arena %s: not implemented yet\n", argv[0]);
    return 1;
}

