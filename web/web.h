/*
 * web.h: the web module's one public header.
 *
 * web/ is the only module that speaks HTTP: routing, JSON, SSE, cookies,
 * rate limits, static files and the OpenAI-compatible /v1 API.
 */
#ifndef WEB_H
#define WEB_H

int web_cmd_serve(int argc, char **argv);
int web_cmd_bench_votes(int argc, char **argv);

#endif
