/*
 * web_routes.c: the features of the server, in the order their routes are
 * added. A feature file (web_battle.c, web_v1.c, web_leaderboard.c, ...)
 * defines an init (and optionally a cleanup) and gets one line here.
 * The table is explicit on purpose: the web library is static, and a
 * file nothing refers to would not be linked in.
 */
#include <stddef.h>

#include "web_internal.h"

const struct web_feature web_features[] = {
    {"health", web__health_init, NULL},
    {"v1", web__v1_init, NULL},
    {"auth", web__auth_init, web__auth_cleanup},
    {"battle", web__battle_init, web__battle_cleanup},
    {"admin_models", web__admin_models_init, NULL},
    {"bench", web__bench_init, NULL},
    {"leaderboard", web__leaderboard_init, web__leaderboard_cleanup},
    {"export", web__export_init, NULL},
    {"stats", web__stats_init, web__stats_cleanup},
};

const size_t web_features_count =
    sizeof(web_features) / sizeof(web_features[0]);
