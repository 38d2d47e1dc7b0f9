/*
 * arena.h: the domain module's one public header.
 *
 * arena/ owns the model registry, battles and turns, votes, pair sampling,
 * category tags, ratings (Elo, Bradley-Terry, bootstrap), the leaderboard
 * cache, and the export and import formats. It uses db/ and inference/.
 */
#ifndef ARENA_H
#define ARENA_H

int arena_cmd_ratings(int argc, char **argv);
int arena_cmd_export(int argc, char **argv);
int arena_cmd_import(int argc, char **argv);
int arena_cmd_bench_ratings(int argc, char **argv);

#endif
