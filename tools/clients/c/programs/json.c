/* A small JSON reader and string writer; see json.h. */
#include "json.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

typedef struct parser {
    const char *s;
    size_t len, pos;
    char *err;
    size_t err_cap;
    int failed;
} parser;

static void fail(parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(parser *p, const char *fmt, ...)
{
    if (p->failed)
        return;
    p->failed = 1;
    if (p->err && p->err_cap) {
        int n = snprintf(p->err, p->err_cap, "column %zu: ", p->pos + 1);
        if (n >= 0 && (size_t)n < p->err_cap) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(p->err + n, p->err_cap - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
}

static void skip_ws(parser *p)
{
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
            p->pos++;
        else
            break;
    }
}

void json_free(json_value *v)
{
    if (v == NULL)
        return;
    free(v->str);
    for (size_t i = 0; v->type == JSON_ARRAY && i < v->count; i++)
        json_free(v->items[i]);
    free(v->items);
    for (size_t i = 0; v->type == JSON_OBJECT && i < v->count; i++) {
        free(v->members[i].key);
        json_free(v->members[i].value);
    }
    free(v->members);
    free(v);
}

/* Length of the valid UTF-8 sequence at s (up to n bytes), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t need;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        cp = c & 0x07;
    } else
        return 0;
    if (n < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if ((need == 3 && cp < 0x800) || (need == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return need;
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int hex4(parser *p, uint32_t *out)
{
    if (p->len - p->pos < 4) {
        fail(p, "truncated \\u escape");
        return -1;
    }
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p->s[p->pos++];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else {
            p->pos--;
            fail(p, "bad hex digit in \\u escape");
            return -1;
        }
    }
    *out = v;
    return 0;
}

/* Parses a string literal at p->pos (the opening quote). */
static char *parse_string(parser *p, size_t *out_len)
{
    p->pos++; /* " */
    /* decoded output is never longer than the input */
    size_t start = p->pos;
    size_t end = start;
    while (end < p->len && p->s[end] != '"') {
        if (p->s[end] == '\\')
            end++;
        end++;
    }
    char *o = malloc(end - start + 1);
    if (o == NULL) {
        fail(p, "out of memory");
        return NULL;
    }
    size_t n = 0;
    for (;;) {
        if (p->pos >= p->len) {
            fail(p, "unterminated string");
            free(o);
            return NULL;
        }
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c < 0x20) {
            fail(p, "control character 0x%02x in a string (must be escaped)", c);
            free(o);
            return NULL;
        }
        if (c == '\\') {
            p->pos++;
            if (p->pos >= p->len) {
                fail(p, "unterminated escape");
                free(o);
                return NULL;
            }
            char e = p->s[p->pos++];
            switch (e) {
            case '"': o[n++] = '"'; break;
            case '\\': o[n++] = '\\'; break;
            case '/': o[n++] = '/'; break;
            case 'b': o[n++] = '\b'; break;
            case 'f': o[n++] = '\f'; break;
            case 'n': o[n++] = '\n'; break;
            case 'r': o[n++] = '\r'; break;
            case 't': o[n++] = '\t'; break;
            case 'u': {
                uint32_t cp;
                if (hex4(p, &cp) < 0) {
                    free(o);
                    return NULL;
                }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    uint32_t lo;
                    if (p->len - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
                        fail(p, "high surrogate \\u%04X without a low surrogate", cp);
                        free(o);
                        return NULL;
                    }
                    p->pos += 2;
                    if (hex4(p, &lo) < 0) {
                        free(o);
                        return NULL;
                    }
                    if (lo < 0xDC00 || lo > 0xDFFF) {
                        fail(p, "high surrogate \\u%04X followed by \\u%04X", cp, lo);
                        free(o);
                        return NULL;
                    }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    fail(p, "lone low surrogate \\u%04X", cp);
                    free(o);
                    return NULL;
                }
                /* a \uXXXX escape (6 or 12 input chars) never decodes to more bytes than it took */
                n += put_utf8(o + n, cp);
                break;
            }
            default:
                p->pos--;
                fail(p, "invalid escape \\%c", e);
                free(o);
                return NULL;
            }
            continue;
        }
        size_t k = utf8_seq((const unsigned char *)p->s + p->pos, p->len - p->pos);
        if (k == 0) {
            fail(p, "invalid UTF-8 in a string");
            free(o);
            return NULL;
        }
        memcpy(o + n, p->s + p->pos, k);
        n += k;
        p->pos += k;
    }
    o[n] = '\0';
    *out_len = n;
    return o;
}

static json_value *new_value(parser *p, json_type t)
{
    json_value *v = calloc(1, sizeof *v);
    if (v == NULL)
        fail(p, "out of memory");
    else
        v->type = t;
    return v;
}

static json_value *parse_value(parser *p, int depth);

static json_value *parse_number(parser *p)
{
    size_t start = p->pos;
    int integral = 1;
    if (p->s[p->pos] == '-')
        p->pos++;
    if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9') {
        fail(p, "invalid number");
        return NULL;
    }
    if (p->s[p->pos] == '0')
        p->pos++;
    else
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
            p->pos++;
    if (p->pos < p->len && p->s[p->pos] == '.') {
        integral = 0;
        p->pos++;
        if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9') {
            fail(p, "invalid number: digits expected after '.'");
            return NULL;
        }
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
            p->pos++;
    }
    if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        integral = 0;
        p->pos++;
        if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-'))
            p->pos++;
        if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9') {
            fail(p, "invalid number: digits expected in the exponent");
            return NULL;
        }
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
            p->pos++;
    }
    json_value *v = new_value(p, JSON_NUMBER);
    if (v == NULL)
        return NULL;
    if (integral) {
        /* exact int64 conversion with overflow check */
        size_t i = start;
        int neg = p->s[i] == '-';
        if (neg)
            i++;
        uint64_t mag = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        int ok = 1;
        for (; i < p->pos; i++) {
            unsigned d = (unsigned)(p->s[i] - '0');
            if (mag > (limit - d) / 10) {
                ok = 0;
                break;
            }
            mag = mag * 10 + d;
        }
        if (ok) {
            v->is_integer = 1;
            v->integer = neg ? (int64_t)(0 - mag) : (int64_t)mag;
        }
    }
    return v;
}

static int literal(parser *p, const char *word)
{
    size_t n = strlen(word);
    if (p->len - p->pos >= n && memcmp(p->s + p->pos, word, n) == 0) {
        p->pos += n;
        return 1;
    }
    return 0;
}

static json_value *parse_array(parser *p, int depth)
{
    p->pos++; /* [ */
    json_value *v = new_value(p, JSON_ARRAY);
    if (v == NULL)
        return NULL;
    size_t cap = 0;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ']') {
        p->pos++;
        return v;
    }
    for (;;) {
        json_value *item = parse_value(p, depth + 1);
        if (item == NULL) {
            json_free(v);
            return NULL;
        }
        if (v->count == cap) {
            cap = cap ? cap * 2 : 4;
            json_value **n = realloc(v->items, cap * sizeof *n);
            if (n == NULL) {
                json_free(item);
                json_free(v);
                fail(p, "out of memory");
                return NULL;
            }
            v->items = n;
        }
        v->items[v->count++] = item;
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == ']') {
            p->pos++;
            return v;
        }
        fail(p, "expected ',' or ']' in an array");
        json_free(v);
        return NULL;
    }
}

static json_value *parse_object(parser *p, int depth)
{
    p->pos++; /* { */
    json_value *v = new_value(p, JSON_OBJECT);
    if (v == NULL)
        return NULL;
    size_t cap = 0;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == '}') {
        p->pos++;
        return v;
    }
    for (;;) {
        skip_ws(p);
        if (p->pos >= p->len || p->s[p->pos] != '"') {
            fail(p, "expected a string key in an object");
            json_free(v);
            return NULL;
        }
        size_t key_pos = p->pos;
        size_t klen;
        char *key = parse_string(p, &klen);
        if (key == NULL) {
            json_free(v);
            return NULL;
        }
        for (size_t i = 0; i < v->count; i++) {
            if (v->members[i].key_len == klen && memcmp(v->members[i].key, key, klen) == 0) {
                p->pos = key_pos;
                fail(p, "duplicate key \"%s\"", key);
                free(key);
                json_free(v);
                return NULL;
            }
        }
        skip_ws(p);
        if (p->pos >= p->len || p->s[p->pos] != ':') {
            fail(p, "expected ':' after a key");
            free(key);
            json_free(v);
            return NULL;
        }
        p->pos++;
        json_value *val = parse_value(p, depth + 1);
        if (val == NULL) {
            free(key);
            json_free(v);
            return NULL;
        }
        if (v->count == cap) {
            cap = cap ? cap * 2 : 8;
            json_member *n = realloc(v->members, cap * sizeof *n);
            if (n == NULL) {
                free(key);
                json_free(val);
                json_free(v);
                fail(p, "out of memory");
                return NULL;
            }
            v->members = n;
        }
        v->members[v->count].key = key;
        v->members[v->count].key_len = klen;
        v->members[v->count].value = val;
        v->count++;
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == '}') {
            p->pos++;
            return v;
        }
        fail(p, "expected ',' or '}' in an object");
        json_free(v);
        return NULL;
    }
}

static json_value *parse_value(parser *p, int depth)
{
    if (depth > MAX_DEPTH) {
        fail(p, "nested deeper than %d levels", MAX_DEPTH);
        return NULL;
    }
    skip_ws(p);
    if (p->pos >= p->len) {
        fail(p, "unexpected end of input");
        return NULL;
    }
    char c = p->s[p->pos];
    if (c == '{')
        return parse_object(p, depth);
    if (c == '[')
        return parse_array(p, depth);
    if (c == '"') {
        size_t n;
        char *s = parse_string(p, &n);
        if (s == NULL)
            return NULL;
        json_value *v = new_value(p, JSON_STRING);
        if (v == NULL) {
            free(s);
            return NULL;
        }
        v->str = s;
        v->len = n;
        return v;
    }
    if (c == '-' || (c >= '0' && c <= '9'))
        return parse_number(p);
    if (literal(p, "true") || literal(p, "false")) {
        json_value *v = new_value(p, JSON_BOOL);
        if (v)
            v->boolean = p->s[p->pos - 1] == 'e' && p->s[p->pos - 2] == 'u';
        return v;
    }
    if (literal(p, "null"))
        return new_value(p, JSON_NULL);
    fail(p, "unexpected character '%c'", c);
    return NULL;
}

json_value *json_parse(const char *text, size_t len, char *err, size_t err_cap)
{
    parser p = {text, len, 0, err, err_cap, 0};
    if (err && err_cap)
        err[0] = '\0';
    json_value *v = parse_value(&p, 0);
    if (v == NULL)
        return NULL;
    skip_ws(&p);
    if (p.pos != p.len) {
        fail(&p, "unexpected data after the JSON value");
        json_free(v);
        return NULL;
    }
    return v;
}

const json_value *json_get(const json_value *obj, const char *key)
{
    if (obj == NULL || obj->type != JSON_OBJECT)
        return NULL;
    size_t n = strlen(key);
    for (size_t i = 0; i < obj->count; i++)
        if (obj->members[i].key_len == n && memcmp(obj->members[i].key, key, n) == 0)
            return obj->members[i].value;
    return NULL;
}

const char *json_type_name(json_type t)
{
    switch (t) {
    case JSON_NULL: return "null";
    case JSON_BOOL: return "a boolean";
    case JSON_NUMBER: return "a number";
    case JSON_STRING: return "a string";
    case JSON_ARRAY: return "an array";
    case JSON_OBJECT: return "an object";
    }
    return "?";
}

void json_write_string(FILE *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    putc('"', out);
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            putc('\\', out);
            putc(c, out);
            i++;
        } else if (c < 0x20) {
            switch (c) {
            case '\n': fputs("\\n", out); break;
            case '\r': fputs("\\r", out); break;
            case '\t': fputs("\\t", out); break;
            case '\b': fputs("\\b", out); break;
            case '\f': fputs("\\f", out); break;
            default:
                fputs("\\u00", out);
                putc(hex[c >> 4], out);
                putc(hex[c & 15], out);
            }
            i++;
        } else if (c < 0x80) {
            putc(c, out);
            i++;
        } else {
            size_t k = utf8_seq((const unsigned char *)s + i, len - i);
            if (k == 0) {
                fputs("\\ufffd", out);
                i++;
            } else {
                fwrite(s + i, 1, k, out);
                i += k;
            }
        }
    }
    putc('"', out);
}
