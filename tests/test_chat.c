/*
 * test_chat.c: chat-format detection and rendering. The expected strings are
 * what each family's reference Jinja template renders (Hugging Face's
 * apply_chat_template: trim_blocks, lstrip_blocks) for the same messages,
 * worked out from the templates quoted below.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "infer.h"
#include "infer_internal.h"

static const struct infer_chat_msg conv[] = {
    {"system", "You are terse."},
    {"user", "Hi there "},
    {"assistant", " Hello! "},
    {"user", "2+2?"},
};
#define N_CONV (sizeof(conv) / sizeof(conv[0]))

static void expect(enum infer_chat_format f, const struct infer_chat_msg *m,
                   size_t n, bool add, const char *want)
{
    char *got = infer_chat_render(f, m, n, add);
    if (got == NULL || strcmp(got, want) != 0)
        fprintf(stderr, "%s: got \"%s\"\n", infer_chat_format_name(f),
                got ? got : "(null)");
    CHECK(got != NULL);
    CHECK_STREQ(got, want);
    free(got);
}

TEST(chatml)
{
    expect(INFER_CHAT_CHATML, conv, N_CONV, true,
           "<|im_start|>system\nYou are terse.<|im_end|>\n"
           "<|im_start|>user\nHi there <|im_end|>\n"
           "<|im_start|>assistant\n Hello! <|im_end|>\n"
           "<|im_start|>user\n2+2?<|im_end|>\n"
           "<|im_start|>assistant\n");
    expect(INFER_CHAT_CHATML, conv + 1, 1, false,
           "<|im_start|>user\nHi there <|im_end|>\n");
}

TEST(llama2)
{
    expect(INFER_CHAT_LLAMA2, conv, N_CONV, true,
           "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi there [/INST]"
           " Hello! </s><s>[INST] 2+2? [/INST]");
    expect(INFER_CHAT_LLAMA2, conv + 1, 1, true, "<s>[INST] Hi there [/INST]");
}

TEST(llama3)
{
    expect(INFER_CHAT_LLAMA3, conv, N_CONV, true,
           "<|begin_of_text|>"
           "<|start_header_id|>system<|end_header_id|>\n\nYou are terse."
           "<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\nHello!"
           "<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(zephyr)
{
    expect(INFER_CHAT_ZEPHYR, conv, N_CONV, true,
           "<|system|>\nYou are terse.</s>\n<|user|>\nHi there </s>\n"
           "<|assistant|>\n Hello! </s>\n<|user|>\n2+2?</s>\n"
           "<|assistant|>\n");
}

TEST(gemma)
{
    expect(INFER_CHAT_GEMMA, conv, N_CONV, true,
           "<bos><start_of_turn>user\nYou are terse.\n\nHi there"
           "<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
           "<start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\n");
}

TEST(phi3)
{
    expect(INFER_CHAT_PHI3, conv + 1, N_CONV - 1, true,
           "<|user|>\nHi there <|end|>\n<|assistant|>\n Hello! <|end|>\n"
           "<|user|>\n2+2?<|end|>\n<|assistant|>\n");
}

TEST(plain)
{
    expect(INFER_CHAT_NONE, conv + 3, 1, true, "2+2?");
    expect(INFER_CHAT_NONE, conv, 2, true, "You are terse.\nHi there ");
    expect(INFER_CHAT_CHATML, NULL, 0, true, "<|im_start|>assistant\n");
}

TEST(bad_arguments)
{
    struct infer_chat_msg bad[] = {{"tool", "x"}};
    CHECK(infer_chat_render(INFER_CHAT_CHATML, bad, 1, true) == NULL);
    struct infer_chat_msg nul[] = {{"user", NULL}};
    CHECK(infer_chat_render(INFER_CHAT_CHATML, nul, 1, true) == NULL);
    CHECK(infer_chat_render(INFER_CHAT_CHATML, NULL, 1, true) == NULL);
    CHECK(infer_chat_render((enum infer_chat_format)99, conv, 1, true) == NULL);
    CHECK_STREQ(infer_chat_format_name((enum infer_chat_format)99), "none");
}

/* Template texts as the models ship them (abridged where long, keeping
 * every marker). */
TEST(detect)
{
    static const struct {
        const char *tmpl;
        enum infer_chat_format f;
    } cases[] = {
        {"{% for message in messages %}{{'<|im_start|>' + message['role'] + "
         "'\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
         "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
         "{% endif %}",
         INFER_CHAT_CHATML},
        {"{{ bos_token }}{% for message in messages %}{% if message['role'] "
         "== 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
         "{% endif %}{% endfor %}",
         INFER_CHAT_LLAMA2},
        {"{% set content = '<|start_header_id|>' + message['role'] + "
         "'<|end_header_id|>\\n\\n'+ message['content'] | trim + "
         "'<|eot_id|>' %}",
         INFER_CHAT_LLAMA3},
        {"{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + "
         "message['content'] + eos_token }}\n{% endif %}",
         INFER_CHAT_ZEPHYR},
        {"{{ bos_token }}{{ '<start_of_turn>' + role + '\\n' + "
         "message['content'] | trim + '<end_of_turn>\\n' }}",
         INFER_CHAT_GEMMA},
        {"{{ bos_token }}{{'<|user|>' + '\\n' + message['content'] + "
         "'<|end|>' + '\\n' + '<|assistant|>' + '\\n'}}",
         INFER_CHAT_PHI3},
        {"{{ messages }}", INFER_CHAT_NONE},
        {NULL, INFER_CHAT_NONE},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        CHECK_EQ(infer_chat_detect(cases[i].tmpl), cases[i].f);
    for (int f = 0; f <= INFER_CHAT_PHI3; f++)
        CHECK_EQ(infer_chat_format_from_name(
                     infer_chat_format_name((enum infer_chat_format)f)),
                 f);
    CHECK_EQ(infer_chat_format_from_name("jinja"), -1);
}

TEST(default_system)
{
    const char *qwen =
        "{%- else %}\n        {{- '<|im_start|>system\\nYou are Qwen, "
        "created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' "
        "}}\n{%- endif %}";
    char *s = infer_chat_default_system(qwen);
    CHECK_STREQ(s, "You are Qwen, created by Alibaba Cloud. You are a "
                   "helpful assistant.");
    free(s);
    const char *plain = "{{'<|im_start|>' + message['role'] + '\\n' + "
                        "message['content'] + '<|im_end|>'}}";
    CHECK(infer_chat_default_system(plain) == NULL);
    CHECK(infer_chat_default_system(
              "{{ '<|im_start|>system\\n' + messages[0]['content'] + "
              "'<|im_end|>' }}") == NULL);
    CHECK(infer_chat_default_system(NULL) == NULL);
}

/* The template in the phi-3 vocabulary file is recognised, and its
 * rendering tokenizes to the marker ids with parse_special. */
TEST(phi3_vocab_end_to_end)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/models/tokenizers/ggml-vocab-phi-3.gguf",
             check_env("ARENA_SHARED", "../shared"));
    struct infer_gguf *g;
    struct infer_tok *t;
    struct infer_err err = {{0}};
    if (infer_gguf_open(path, &g, &err) != INFER_OK)
        check_skip("%s", err.msg);
    const char *tmpl = infer_gguf_get_str(g, "tokenizer.chat_template");
    CHECK(tmpl != NULL);
    enum infer_chat_format f = infer_chat_detect(tmpl);
    CHECK_EQ(f, INFER_CHAT_PHI3);
    CHECK_EQ(infer_tok_from_gguf(g, &t, &err), INFER_OK);
    infer_gguf_free(g);
    struct infer_chat_msg m[] = {{"user", "Hello"}};
    char *text = infer_chat_render(f, m, 1, true);
    CHECK(text != NULL);
    int32_t ids[32];
    int n = infer_tok_encode(t, text, strlen(text), true, true, ids, 32);
    free(text);
    /* <s> <|user|> \n Hello <|end|> \n <|assistant|> \n, where each \n after
     * a marker is "▁\n" (llama.cpp's space prefix after a special token). */
    CHECK(n >= 8);
    CHECK_EQ(ids[0], 1);
    CHECK_EQ(ids[1], 32010);
    int end = -1, asst = -1;
    for (int i = 0; i < n && i < 32; i++) {
        if (ids[i] == 32007)
            end = i;
        if (ids[i] == 32001)
            asst = i;
    }
    CHECK(end > 1 && asst > end);
    CHECK(infer_tok_is_eog(t, 32007));
    infer_tok_free(t);
}

static const struct check_test tests[] = {
    TEST_ENTRY(chatml),
    TEST_ENTRY(llama2),
    TEST_ENTRY(llama3),
    TEST_ENTRY(zephyr),
    TEST_ENTRY(gemma),
    TEST_ENTRY(phi3),
    TEST_ENTRY(plain),
    TEST_ENTRY(bad_arguments),
    TEST_ENTRY(detect),
    TEST_ENTRY(default_system),
    TEST_ENTRY(phi3_vocab_end_to_end),
};
CHECK_MAIN(tests)
