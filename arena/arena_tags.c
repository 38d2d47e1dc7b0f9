/*
 * arena_tags.c: category tags of a battle's prompts: language, code
 * present, math.
 *
 * Language: first by script (counting code points per Unicode block: Han,
 * kana, Hangul, Cyrillic, Arabic, Hebrew, Greek, Devanagari, Thai), then,
 * for Latin text, by the most frequent function words of a few languages.
 * "" when nothing stands out. It is a heuristic for category leaderboards,
 * not a classifier; its rules are short enough to read below.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "arena.h"

/* Decodes one UTF-8 code point at s (n bytes left); *adv gets its length
 * (1 for an invalid byte, returned as U+FFFD). */
static unsigned utf8_next(const unsigned char *s, size_t n, size_t *adv)
{
    unsigned c = s[0];
    size_t len = c < 0x80    ? 1
                 : c >= 0xF0 ? 4
                 : c >= 0xE0 ? 3
                 : c >= 0xC0 ? 2
                             : 0;
    if (len == 0 || len > n) {
        *adv = 1;
        return 0xFFFD;
    }
    unsigned cp = len == 1 ? c : c & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *adv = 1;
            return 0xFFFD;
        }
        cp = cp << 6 | (s[i] & 0x3F);
    }
    *adv = len;
    return cp;
}

enum script {
    S_LATIN,
    S_HAN,
    S_KANA,
    S_HANGUL,
    S_CYR,
    S_ARAB,
    S_HEB,
    S_GREEK,
    S_DEVA,
    S_THAI,
    S_N
};

static const char *const script_lang[S_N] = {"",   "zh", "ja", "ko", "ru",
                                             "ar", "he", "el", "hi", "th"};

static int script_of(unsigned cp)
{
    if ((cp >= 'A' && cp <= 'Z') || (cp >= 'a' && cp <= 'z') ||
        (cp >= 0xC0 && cp <= 0x24F))
        return S_LATIN;
    if ((cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF))
        return S_HAN;
    if (cp >= 0x3040 && cp <= 0x30FF)
        return S_KANA;
    if (cp >= 0xAC00 && cp <= 0xD7AF)
        return S_HANGUL;
    if (cp >= 0x0400 && cp <= 0x04FF)
        return S_CYR;
    if (cp >= 0x0600 && cp <= 0x06FF)
        return S_ARAB;
    if (cp >= 0x0590 && cp <= 0x05FF)
        return S_HEB;
    if (cp >= 0x0370 && cp <= 0x03FF)
        return S_GREEK;
    if (cp >= 0x0900 && cp <= 0x097F)
        return S_DEVA;
    if (cp >= 0x0E00 && cp <= 0x0E7F)
        return S_THAI;
    return -1;
}

/* Function words, space-separated, per Latin-script language. */
static const struct {
    const char *lang;
    const char *words;
} latin[] = {
    /* "a" is also Portuguese and Spanish-ish; English prompts like "Once
     * upon a time" have little else, so English lists it too and wins ties
     * (it comes first). */
    {"en", " the a an and is are of to in that it you what how for with "
           "this was be can my on do i upon there once his her he she they "
           "write tell me about "},
    {"fr", " le la les et est des un une du que qui pour pas dans je vous "
           "ce sur avec "},
    {"de", " der die das und ist nicht ich sie ein eine zu mit den wie was "
           "auf es "},
    {"es", " el la los las y es de que en un una por para con no como se "
           "lo "},
    {"it", " il lo la gli le e di che un una per non sono come con del "
           "della "},
    {"pt", " o a os as e de que um uma para com não como do da em por "},
    {"nl", " de het een en is van dat ik je niet op te zijn met "},
};
#define N_LATIN (sizeof(latin) / sizeof(latin[0]))

static bool word_in(const char *list, const char *w, size_t len)
{
    for (const char *p = list; (p = strstr(p, " ")) != NULL; p++) {
        if (strncmp(p + 1, w, len) == 0 && p[1 + len] == ' ')
            return true;
    }
    return false;
}

static void detect_language(const char *text, size_t len, char out[8])
{
    size_t counts[S_N] = {0}, total = 0;
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        size_t adv;
        unsigned cp = utf8_next(s + i, len - i, &adv);
        i += adv;
        int sc = script_of(cp);
        if (sc >= 0) {
            counts[sc]++;
            total++;
        }
    }
    out[0] = '\0';
    if (total == 0)
        return;
    /* Japanese mixes Han and kana: any kana makes it Japanese. */
    if (counts[S_KANA] * 10 >= total && counts[S_KANA] > 0) {
        snprintf(out, 8, "ja");
        return;
    }
    int best = S_LATIN;
    for (int sc = 1; sc < S_N; sc++)
        if (counts[sc] > counts[best])
            best = sc;
    if (best != S_LATIN && counts[best] * 2 >= total) {
        snprintf(out, 8, "%s", script_lang[best]);
        return;
    }
    /* Latin: count function words (lower-cased, ASCII-folded words). */
    size_t hits[N_LATIN] = {0};
    char w[24];
    for (size_t i = 0; i < len;) {
        size_t j = i, wl = 0;
        while (j < len && (isalpha((unsigned char)text[j]) ||
                           (unsigned char)text[j] >= 0x80)) {
            if (wl + 1 < sizeof(w))
                w[wl++] = (char)tolower((unsigned char)text[j]);
            j++;
        }
        if (wl > 0) {
            w[wl] = '\0';
            for (size_t l = 0; l < N_LATIN; l++)
                if (word_in(latin[l].words, w, wl))
                    hits[l]++;
        }
        i = j > i ? j : i + 1;
    }
    size_t bl = 0;
    for (size_t l = 1; l < N_LATIN; l++)
        if (hits[l] > hits[bl])
            bl = l;
    if (hits[bl] > 0)
        snprintf(out, 8, "%s", latin[bl].lang);
}

static bool has_code(const char *t, size_t len)
{
    static const char *const marks[] = {
        "```",     "#include", "def ",        "function ",     "=> ",
        "return ", "printf(",  "console.log", "public static", "import ",
        "SELECT ", "</",       "();",         "fn ",           "int main",
        "{\n",     "};",       "lambda ",     "var ",          "const ",
    };
    for (size_t m = 0; m < sizeof(marks) / sizeof(marks[0]); m++) {
        size_t ml = strlen(marks[m]);
        for (size_t i = 0; i + ml <= len; i++)
            if (memcmp(t + i, marks[m], ml) == 0)
                return true;
    }
    return false;
}

static bool has_math(const char *t, size_t len)
{
    static const char *const words[] = {"equation", "integral",  "derivative",
                                        "solve",    "calculate", "theorem",
                                        "prove"};
    for (size_t w = 0; w < sizeof(words) / sizeof(words[0]); w++) {
        size_t wl = strlen(words[w]);
        for (size_t i = 0; i + wl <= len; i++)
            if (strncasecmp(t + i, words[w], wl) == 0)
                return true;
    }
    /* digit, optional spaces, an operator, optional spaces, digit */
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)t[i]))
            continue;
        size_t j = i + 1;
        while (j < len && t[j] == ' ')
            j++;
        if (j < len && strchr("+-*/^=", t[j]) != NULL) {
            j++;
            while (j < len && t[j] == ' ')
                j++;
            if (j < len && isdigit((unsigned char)t[j]))
                return true;
        }
    }
    return false;
}

void arena_tags_detect(const char *text, size_t len,
                       struct arena_text_tags *out)
{
    memset(out, 0, sizeof(*out));
    detect_language(text, len, out->language);
    out->has_code = has_code(text, len);
    if (out->has_code)
        out->flags |= ARENA_TAG_CODING;
    if (has_math(text, len))
        out->flags |= ARENA_TAG_MATH;
}
