/*
 * infer_chat.c: the chat formats Arena's models use, recognised from a GGUF
 * tokenizer.chat_template and rendered in C rather than by a Jinja engine.
 * Each renderer reproduces the output of its family's reference template
 * (as Hugging Face renders it: trim_blocks, lstrip_blocks), markers and BOS
 * text included; tokenizing the result with parse_special turns the markers
 * into their token ids.
 */
#include <stdlib.h>
#include <string.h>

#include "infer.h"

/* ---- a growable string -----------------------------------------------------
 */

struct sb {
    char *s; /* (cap,) NUL-terminated */
    size_t n, cap;
    bool oom;
};

static void sb_put(struct sb *b, const char *p, size_t len)
{
    if (b->oom)
        return;
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + len + 1)
            cap *= 2;
        char *s = realloc(b->s, cap);
        if (s == NULL) {
            b->oom = true;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->n, p, len);
    b->n += len;
    b->s[b->n] = '\0';
}

static void sb_cat(struct sb *b, const char *p)
{
    sb_put(b, p, strlen(p));
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
           c == '\f';
}

/* Jinja's |trim and Python's str.strip(), for ASCII whitespace. */
static void sb_trimmed(struct sb *b, const char *p)
{
    size_t len = strlen(p);
    while (len > 0 && is_ws(*p)) {
        p++;
        len--;
    }
    while (len > 0 && is_ws(p[len - 1]))
        len--;
    sb_put(b, p, len);
}

/* ---- detection and names
 * ------------------------------------------------------ */

enum infer_chat_format infer_chat_detect(const char *t)
{
    if (t == NULL)
        return INFER_CHAT_NONE;
    if (strstr(t, "<|im_start|>"))
        return INFER_CHAT_CHATML;
    if (strstr(t, "<|start_header_id|>") && strstr(t, "<|end_header_id|>"))
        return INFER_CHAT_LLAMA3;
    if (strstr(t, "<start_of_turn>"))
        return INFER_CHAT_GEMMA;
    if (strstr(t, "<|assistant|>") && strstr(t, "<|end|>"))
        return INFER_CHAT_PHI3;
    if (strstr(t, "<|user|>"))
        return INFER_CHAT_ZEPHYR;
    if (strstr(t, "[INST]"))
        return INFER_CHAT_LLAMA2;
    return INFER_CHAT_NONE;
}

static const char *const names[] = {
    [INFER_CHAT_NONE] = "none",     [INFER_CHAT_CHATML] = "chatml",
    [INFER_CHAT_LLAMA2] = "llama2", [INFER_CHAT_LLAMA3] = "llama3",
    [INFER_CHAT_ZEPHYR] = "zephyr", [INFER_CHAT_GEMMA] = "gemma",
    [INFER_CHAT_PHI3] = "phi3",
};

const char *infer_chat_format_name(enum infer_chat_format f)
{
    if ((int)f < 0 || (size_t)f >= sizeof(names) / sizeof(names[0]))
        return "none";
    return names[f];
}

int infer_chat_format_from_name(const char *name)
{
    for (size_t i = 0; name && i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(name, names[i]) == 0)
            return (int)i;
    }
    return -1;
}

/* The system prompt a ChatML template writes when the conversation has none
 * (Qwen2.5: "You are Qwen, created by Alibaba Cloud. ..."; SmolLM2: "You
 * are a helpful AI assistant named SmolLM, ..."): the first literal
 * "<|im_start|>system\n...<|im_end|>" whose body holds no template code. */
char *infer_chat_default_system(const char *t)
{
    static const char open[] = "<|im_start|>system";
    for (const char *p = t ? strstr(t, open) : NULL; p != NULL;
         p = strstr(p + 1, open)) {
        const char *q = p + sizeof(open) - 1;
        if (strncmp(q, "\\n", 2) == 0)
            q += 2;
        else if (*q == '\n')
            q++;
        else
            continue;
        const char *end = strstr(q, "<|im_end|>");
        if (end == NULL || end == q || strpbrk(q, "'\"{}+") < end)
            continue;
        struct sb b = {0};
        for (const char *c = q; c < end; c++) {
            if (c[0] == '\\' && c + 1 < end && c[1] == 'n') {
                sb_put(&b, "\n", 1);
                c++;
            } else {
                sb_put(&b, c, 1);
            }
        }
        if (b.oom) {
            free(b.s);
            return NULL;
        }
        return b.s;
    }
    return NULL;
}

/* ---- renderers -------------------------------------------------------------
 */

static bool role_ok(const char *r)
{
    return r != NULL && (strcmp(r, "system") == 0 || strcmp(r, "user") == 0 ||
                         strcmp(r, "assistant") == 0);
}

static bool is_role(const struct infer_chat_msg *m, const char *r)
{
    return strcmp(m->role, r) == 0;
}

/* <|im_start|>{role}\n{content}<|im_end|>\n ... <|im_start|>assistant\n */
static void render_chatml(struct sb *b, const struct infer_chat_msg *m,
                          size_t n, bool add_assistant)
{
    for (size_t i = 0; i < n; i++) {
        sb_cat(b, "<|im_start|>");
        sb_cat(b, m[i].role);
        sb_cat(b, "\n");
        sb_cat(b, m[i].content);
        sb_cat(b, "<|im_end|>\n");
    }
    if (add_assistant)
        sb_cat(b, "<|im_start|>assistant\n");
}

/* Meta's Llama 2 chat template: the system prompt goes inside the first
 * user turn; each user turn opens with BOS; each answer closes with EOS.
 * The assistant needs no opening (the prompt ends with [/INST]). */
static void render_llama2(struct sb *b, const struct infer_chat_msg *m,
                          size_t n)
{
    const char *sys = NULL;
    size_t first = 0;
    if (n > 0 && is_role(&m[0], "system")) {
        sys = m[0].content;
        first = 1;
    }
    for (size_t i = first; i < n; i++) {
        struct sb c = {0};
        if (i == first && sys != NULL) {
            sb_cat(&c, "<<SYS>>\n");
            sb_cat(&c, sys);
            sb_cat(&c, "\n<</SYS>>\n\n");
        }
        sb_cat(&c, m[i].content);
        if (c.oom) {
            b->oom = true;
        } else if (is_role(&m[i], "user")) {
            sb_cat(b, "<s>[INST] ");
            sb_trimmed(b, c.s ? c.s : "");
            sb_cat(b, " [/INST]");
        } else if (is_role(&m[i], "assistant")) {
            sb_cat(b, " ");
            sb_trimmed(b, c.s ? c.s : "");
            sb_cat(b, " </s>");
        }
        free(c.s);
    }
}

/* <|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\n\n
 * {content|trim}<|eot_id|> ... */
static void render_llama3(struct sb *b, const struct infer_chat_msg *m,
                          size_t n, bool add_assistant)
{
    sb_cat(b, "<|begin_of_text|>");
    for (size_t i = 0; i < n; i++) {
        sb_cat(b, "<|start_header_id|>");
        sb_cat(b, m[i].role);
        sb_cat(b, "<|end_header_id|>\n\n");
        sb_trimmed(b, m[i].content);
        sb_cat(b, "<|eot_id|>");
    }
    if (add_assistant)
        sb_cat(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* Zephyr: <|{role}|>\n{content}</s>\n ... <|assistant|>\n */
static void render_zephyr(struct sb *b, const struct infer_chat_msg *m,
                          size_t n, bool add_assistant)
{
    for (size_t i = 0; i < n; i++) {
        sb_cat(b, "<|");
        sb_cat(b, m[i].role);
        sb_cat(b, "|>\n");
        sb_cat(b, m[i].content);
        sb_cat(b, "</s>\n");
    }
    if (add_assistant)
        sb_cat(b, "<|assistant|>\n");
}

/* Phi-3: <|{role}|>\n{content}<|end|>\n ... <|assistant|>\n (BOS comes
 * from the vocabulary's add_bos). */
static void render_phi3(struct sb *b, const struct infer_chat_msg *m, size_t n,
                        bool add_assistant)
{
    for (size_t i = 0; i < n; i++) {
        sb_cat(b, "<|");
        sb_cat(b, m[i].role);
        sb_cat(b, "|>\n");
        sb_cat(b, m[i].content);
        sb_cat(b, "<|end|>\n");
    }
    if (add_assistant)
        sb_cat(b, "<|assistant|>\n");
}

/* Gemma: <bos><start_of_turn>{user|model}\n{content|trim}<end_of_turn>\n.
 * Gemma's template rejects a system role; like llama.cpp, we put the system
 * prompt at the head of the next user turn instead. */
static void render_gemma(struct sb *b, const struct infer_chat_msg *m, size_t n,
                         bool add_assistant)
{
    sb_cat(b, "<bos>");
    const char *sys = NULL;
    for (size_t i = 0; i < n; i++) {
        if (is_role(&m[i], "system")) {
            sys = m[i].content;
            continue;
        }
        bool user = is_role(&m[i], "user");
        sb_cat(b, "<start_of_turn>");
        sb_cat(b, user ? "user" : "model");
        sb_cat(b, "\n");
        if (user && sys != NULL) {
            sb_trimmed(b, sys);
            sb_cat(b, "\n\n");
            sys = NULL;
        }
        sb_trimmed(b, m[i].content);
        sb_cat(b, "<end_of_turn>\n");
    }
    if (add_assistant)
        sb_cat(b, "<start_of_turn>model\n");
}

/* Completion mode: the contents, one per line. */
static void render_plain(struct sb *b, const struct infer_chat_msg *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            sb_cat(b, "\n");
        sb_cat(b, m[i].content);
    }
}

char *infer_chat_render(enum infer_chat_format f,
                        const struct infer_chat_msg *msgs, size_t n,
                        bool add_assistant)
{
    if (msgs == NULL && n > 0)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (!role_ok(msgs[i].role) || msgs[i].content == NULL)
            return NULL;
    }
    struct sb b = {0};
    sb_put(&b, "", 0); /* an empty conversation renders as "" */
    switch (f) {
    case INFER_CHAT_CHATML:
        render_chatml(&b, msgs, n, add_assistant);
        break;
    case INFER_CHAT_LLAMA2:
        render_llama2(&b, msgs, n);
        break;
    case INFER_CHAT_LLAMA3:
        render_llama3(&b, msgs, n, add_assistant);
        break;
    case INFER_CHAT_ZEPHYR:
        render_zephyr(&b, msgs, n, add_assistant);
        break;
    case INFER_CHAT_GEMMA:
        render_gemma(&b, msgs, n, add_assistant);
        break;
    case INFER_CHAT_PHI3:
        render_phi3(&b, msgs, n, add_assistant);
        break;
    case INFER_CHAT_NONE:
        render_plain(&b, msgs, n);
        break;
    default:
        free(b.s);
        return NULL;
    }
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}
