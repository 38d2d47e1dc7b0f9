/*
 * web_internal.h: declarations shared by the files of web/, not for other
 * modules. Each feature's init and cleanup (listed in web_routes.c) are
 * declared here.
 */
#ifndef WEB_INTERNAL_H
#define WEB_INTERNAL_H

#include "web.h"

/* web_health.c: GET /healthz, GET /readyz. */
int web__health_init(struct web_server *s, void **state, struct web_err *err);

/* web_v1.c: the OpenAI-compatible /v1 API over web_server_hub(). */
int web__v1_init(struct web_server *s, void **state, struct web_err *err);

#endif
