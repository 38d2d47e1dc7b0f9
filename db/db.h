/*
 * db.h: the database module's one public header.
 *
 * db/ owns the libpq connection pool, the migrations, the managed PostgreSQL
 * cluster of the embedded default, and the queries. It knows nothing of HTTP
 * or models.
 */
#ifndef DB_H
#define DB_H

int db_cmd_migrate(int argc, char **argv);

#endif
