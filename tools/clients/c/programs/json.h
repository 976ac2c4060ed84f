/* A small JSON reader (one value per call, as in JSON lines) and string writer for the
 * command-line tools. Objects, arrays, strings (all escapes, UTF-8 checked), numbers (integers
 * kept exactly as int64), true/false/null. */
#ifndef FJORD_TOOLS_JSON_H
#define FJORD_TOOLS_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_type;

typedef struct json_value json_value;

typedef struct json_member {
    char *key; /* NUL-terminated; may contain NULs from \u0000 (key_len is exact) */
    size_t key_len;
    json_value *value;
} json_member;

struct json_value {
    json_type type;
    int boolean;
    int is_integer;  /* number without fraction or exponent that fits int64 */
    int64_t integer;
    char *str;       /* JSON_STRING: decoded UTF-8, NUL-terminated */
    size_t len;
    json_value **items; /* JSON_ARRAY */
    json_member *members; /* JSON_OBJECT */
    size_t count;        /* items or members */
};

/* Parses exactly one JSON value filling text[0, len) (surrounding whitespace allowed).
 * Returns NULL with a message in err (e.g. "column 12: expected ':'"). */
json_value *json_parse(const char *text, size_t len, char *err, size_t err_cap);
void json_free(json_value *v);
/* Member of an object by key, or NULL. */
const json_value *json_get(const json_value *obj, const char *key);
const char *json_type_name(json_type t);

/* Writes s as a JSON string literal (quotes included). Invalid UTF-8 bytes become U+FFFD. */
void json_write_string(FILE *out, const char *s, size_t len);

#endif
