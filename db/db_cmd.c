/* Placeholder until this module's commands land. */
#include <stdio.h>

#include "db.h"

int db_cmd_migrate(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "arena %s: not implemented yet\n", argv[0]);
    return 1;
}

