/* Helper of tests/e2e.sh: generates producer input and checks what fjord-produce and
 * fjord-consume printed.
 *
 *   e2e-check gen N PARTITIONS BASE_TS [--big BYTES]  > input.jsonl
 *   e2e-check produced INPUT PRODUCED PARTITIONS [--acks-none] [--fresh]
 *   e2e-check consumed INPUT PRODUCED CONSUMED TOPIC [--partition P] [--min-offset O]
 *                      [--max N] [--from-time T] [--now-min MS]
 *
 * "produced" checks one {"partition", "offset"} line per input record, the partition each record
 * must go to (explicit, or Kafka's murmur2 for keyed records), and offsets contiguous per
 * partition (from 0 with --fresh). "consumed" checks that the consumer printed exactly the
 * records expected under the filters, byte for byte, each partition in offset order.
 * Exit 0 if the check holds; otherwise prints why and exits 1.
 */
#define _POSIX_C_SOURCE 200809L
#include "fjord.h"
#include "json.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define FAILF(...)                                                                                 \
    do {                                                                                           \
        printf("  check failed: ");                                                                \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        failures++;                                                                                \
    } while (0)

typedef struct lines {
    json_value **v;
    size_t n;
} lines;

static void read_lines(const char *path, lines *out)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        printf("cannot open %s\n", path);
        exit(1);
    }
    out->v = NULL;
    out->n = 0;
    size_t cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    size_t lineno = 0;
    while ((len = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (len == 0)
            continue;
        char err[200];
        json_value *v = json_parse(line, (size_t)len, err, sizeof err);
        if (v == NULL || v->type != JSON_OBJECT) {
            printf("%s:%zu: not a JSON object: %s\n", path, lineno, v ? "" : err);
            exit(1);
        }
        if (out->n == cap) {
            cap = cap ? cap * 2 : 256;
            out->v = realloc(out->v, cap * sizeof *out->v);
            if (out->v == NULL)
                exit(1);
        }
        out->v[out->n++] = v;
    }
    free(line);
    fclose(f);
}

static void free_lines(lines *l)
{
    for (size_t i = 0; i < l->n; i++)
        json_free(l->v[i]);
    free(l->v);
}

static int64_t get_int(const json_value *o, const char *key, int64_t dflt)
{
    const json_value *v = json_get(o, key);
    return v && v->type == JSON_NUMBER && v->is_integer ? v->integer : dflt;
}

/* ----- gen ---------------------------------------------------------------------------------- */

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static void print_b64(const uint8_t *d, size_t n)
{
    char *t = malloc(fjord_base64_encoded_len(n) + 1);
    fjord_base64_encode(d, n, t);
    printf("\"%s\"", t);
    free(t);
}

static int cmd_gen(int argc, char **argv)
{
    if (argc < 5)
        return 2;
    long n = atol(argv[2]), parts = atol(argv[3]);
    long long base = atoll(argv[4]);
    long big = 0;
    if (argc >= 7 && strcmp(argv[5], "--big") == 0)
        big = atol(argv[6]);
    uint8_t *buf = malloc(big > 4096 ? (size_t)big : 4096);
    for (long i = 0; i < n; i++) {
        printf("{");
        /* key */
        if (i % 5 == 0)
            printf("\"key\": null, ");
        else if (i % 5 == 1)
            ; /* absent */
        else if (i % 17 == 2)
            printf("\"key\": \"\", "); /* empty key: hashed like any key */
        else if (i % 5 == 2) {
            char k[32];
            int kl = snprintf(k, sizeof k, "key-%ld", i % 13);
            printf("\"key\": ");
            print_b64((const uint8_t *)k, (size_t)kl);
            printf(", ");
        } else {
            size_t kl = 1 + next_rand() % 24;
            for (size_t j = 0; j < kl; j++)
                buf[j] = (uint8_t)next_rand();
            printf("\"key\": ");
            print_b64(buf, kl);
            printf(", ");
        }
        /* value */
        size_t vl = big && i == n / 2 ? (size_t)big : (i % 9 == 4 ? 0 : next_rand() % 300);
        for (size_t j = 0; j < vl; j++)
            buf[j] = (uint8_t)next_rand();
        printf("\"value\": ");
        if (i % 50 == 3)
            printf("null"); /* a tombstone (fjord-produce accepts null as a null value) */
        else
            print_b64(buf, vl);
        /* timestamp: increasing; every 11th absent (now) */
        if (i % 11 != 3)
            printf(", \"timestamp\": %lld", base + i * 10);
        /* headers */
        if (i % 4 == 0) {
            printf(", \"headers\": [{\"key\": \"trace-id\", \"value\": ");
            uint8_t t[4] = {(uint8_t)i, 1, 2, 3};
            print_b64(t, sizeof t);
            printf("}, {\"key\": \"\\u043a\\u043b\\u044e\\u0447-\\u00e9 \\\"q\\\"\", \"value\": null}");
            printf(", {\"key\": \"trace-id\", \"value\": \"\"}]");
        } else if (i % 4 == 1) {
            printf(", \"headers\": []");
        }
        /* explicit partition */
        if (i % 7 == 6)
            printf(", \"partition\": %ld", (i / 7) % parts);
        if (i % 13 == 12)
            printf(", \"extra\": {\"ignored\": [1, 2.5, true]}");
        printf("}\n");
    }
    free(buf);
    return 0;
}

/* ----- produced ----------------------------------------------------------------------------- */

static int64_t expected_partition(const json_value *in, uint32_t parts)
{
    int64_t p = get_int(in, "partition", -1);
    if (p >= 0)
        return p;
    const json_value *k = json_get(in, "key");
    if (k && k->type == JSON_STRING) {
        uint8_t *d = malloc(k->len / 4 * 3 + 1);
        long n = fjord_base64_decode(k->str, k->len, d);
        uint32_t r = fjord_partition_for_key(d, (size_t)n, parts);
        free(d);
        return r;
    }
    return -1; /* any */
}

static int cmd_produced(int argc, char **argv)
{
    if (argc < 5)
        return 2;
    int acks_none = 0, fresh = 0;
    for (int i = 5; i < argc; i++) {
        if (strcmp(argv[i], "--acks-none") == 0)
            acks_none = 1;
        else if (strcmp(argv[i], "--fresh") == 0)
            fresh = 1;
    }
    uint32_t parts = (uint32_t)atol(argv[4]);
    lines in, out;
    read_lines(argv[2], &in);
    read_lines(argv[3], &out);
    if (in.n != out.n)
        FAILF("%zu input records but %zu output lines", in.n, out.n);
    int64_t *next = calloc(parts, sizeof *next);
    for (uint32_t p = 0; p < parts; p++)
        next[p] = -1;
    size_t n = in.n < out.n ? in.n : out.n;
    for (size_t i = 0; i < n && failures < 10; i++) {
        int64_t p = get_int(out.v[i], "partition", -2), o = get_int(out.v[i], "offset", -2);
        if (out.v[i]->count != 2 || p < 0 || p >= (int64_t)parts) {
            FAILF("output line %zu: expected {\"partition\": 0..%u, \"offset\": O}", i + 1, parts - 1);
            continue;
        }
        int64_t want = expected_partition(in.v[i], parts);
        if (want >= 0 && want != p)
            FAILF("record %zu went to partition %" PRId64 ", expected %" PRId64, i + 1, p, want);
        if (acks_none) {
            if (o != -1)
                FAILF("record %zu: offset %" PRId64 " with --acks none, expected -1", i + 1, o);
            continue;
        }
        if (next[p] < 0) {
            if (fresh && o != 0)
                FAILF("record %zu: first offset of partition %" PRId64 " is %" PRId64 ", expected 0", i + 1, p, o);
        } else if (o != next[p]) {
            FAILF("record %zu: partition %" PRId64 " offset %" PRId64 ", expected %" PRId64, i + 1, p, o, next[p]);
        }
        next[p] = o + 1;
    }
    free(next);
    free_lines(&in);
    free_lines(&out);
    return failures ? 1 : 0;
}

/* ----- consumed ----------------------------------------------------------------------------- */

static int same_b64_field(const json_value *a, const json_value *b, int absent_is_null)
{
    int an = a == NULL || a->type == JSON_NULL, bn = b == NULL || b->type == JSON_NULL;
    (void)absent_is_null;
    if (an || bn)
        return an && bn;
    return a->type == JSON_STRING && b->type == JSON_STRING && a->len == b->len && memcmp(a->str, b->str, a->len) == 0;
}

static int same_headers(const json_value *in, const json_value *out)
{
    size_t ni = in && in->type == JSON_ARRAY ? in->count : 0;
    if (out == NULL || out->type != JSON_ARRAY || out->count != ni)
        return 0;
    for (size_t i = 0; i < ni; i++) {
        const json_value *ki = json_get(in->items[i], "key"), *ko = json_get(out->items[i], "key");
        if (!ki || !ko || ko->type != JSON_STRING || ki->len != ko->len || memcmp(ki->str, ko->str, ki->len) != 0)
            return 0;
        if (!same_b64_field(json_get(in->items[i], "value"), json_get(out->items[i], "value"), 1))
            return 0;
    }
    return 1;
}

typedef struct expect {
    size_t input;
    int64_t partition, offset;
    int seen;
} expect;

static int cmp_expect(const void *a, const void *b)
{
    const expect *x = a, *y = b;
    if (x->partition != y->partition)
        return x->partition < y->partition ? -1 : 1;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int cmd_consumed(int argc, char **argv)
{
    if (argc < 6)
        return 2;
    const char *topic = argv[5];
    int64_t only_partition = -1, min_offset = -1, max = -1, from_time = -1, now_min = 0;
    for (int i = 6; i + 1 < argc; i += 2) {
        int64_t v = atoll(argv[i + 1]);
        if (strcmp(argv[i], "--partition") == 0)
            only_partition = v;
        else if (strcmp(argv[i], "--min-offset") == 0)
            min_offset = v;
        else if (strcmp(argv[i], "--max") == 0)
            max = v;
        else if (strcmp(argv[i], "--from-time") == 0)
            from_time = v;
        else if (strcmp(argv[i], "--now-min") == 0)
            now_min = v;
    }
    lines in, prod, cons;
    read_lines(argv[2], &in);
    read_lines(argv[3], &prod);
    read_lines(argv[4], &cons);
    if (in.n != prod.n) {
        printf("input and producer output differ in length\n");
        return 1;
    }
    /* --from-time: per partition, the first offset whose timestamp is >= T */
    int64_t start_of[64];
    for (int p = 0; p < 64; p++)
        start_of[p] = INT64_MAX;
    if (from_time >= 0) {
        for (size_t i = 0; i < in.n; i++) {
            int64_t p = get_int(prod.v[i], "partition", 0), o = get_int(prod.v[i], "offset", 0);
            int64_t ts = get_int(in.v[i], "timestamp", INT64_MAX); /* absent = now: after T */
            if (p < 64 && ts >= from_time && o < start_of[p])
                start_of[p] = o;
        }
    }
    expect *ex = calloc(in.n + 1, sizeof *ex);
    size_t ne = 0;
    for (size_t i = 0; i < in.n; i++) {
        int64_t p = get_int(prod.v[i], "partition", -1), o = get_int(prod.v[i], "offset", -1);
        if (only_partition >= 0 && p != only_partition)
            continue;
        if (min_offset >= 0 && o < min_offset)
            continue;
        if (from_time >= 0 && (p >= 64 || o < start_of[p]))
            continue;
        ex[ne++] = (expect){i, p, o, 0};
    }
    if (max >= 0) {
        /* only with --partition: the first `max` offsets */
        size_t keep = 0;
        for (size_t i = 0; i < ne; i++)
            if (ex[i].offset < (ex[0].offset + max))
                ex[keep++] = ex[i];
        ne = keep;
    }
    qsort(ex, ne, sizeof *ex, cmp_expect);
    if (cons.n != ne)
        FAILF("consumer printed %zu records, expected %zu", cons.n, ne);
    int64_t last[64];
    for (int p = 0; p < 64; p++)
        last[p] = -1;
    for (size_t j = 0; j < cons.n && failures < 10; j++) {
        const json_value *c = cons.v[j];
        int64_t p = get_int(c, "partition", -1), o = get_int(c, "offset", -1);
        const json_value *t = json_get(c, "topic");
        if (!t || t->type != JSON_STRING || strcmp(t->str, topic) != 0)
            FAILF("consumed line %zu: topic is not %s", j + 1, topic);
        if (p < 0 || p >= 64) {
            FAILF("consumed line %zu: bad partition", j + 1);
            continue;
        }
        if (o <= last[p])
            FAILF("consumed line %zu: partition %" PRId64 " offset %" PRId64 " after %" PRId64, j + 1, p, o, last[p]);
        last[p] = o;
        expect *e = NULL;
        size_t lo = 0, hi = ne; /* ex is sorted by (partition, offset) */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (ex[mid].partition < p || (ex[mid].partition == p && ex[mid].offset < o))
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < ne && ex[lo].partition == p && ex[lo].offset == o)
            e = &ex[lo];
        if (e == NULL) {
            FAILF("consumed line %zu: partition %" PRId64 " offset %" PRId64 " was not expected", j + 1, p, o);
            continue;
        }
        if (e->seen++)
            FAILF("consumed line %zu: partition %" PRId64 " offset %" PRId64 " printed twice", j + 1, p, o);
        const json_value *r = in.v[e->input];
        if (!same_b64_field(json_get(r, "key"), json_get(c, "key"), 1))
            FAILF("record %zu (p%" PRId64 " o%" PRId64 "): key differs", e->input + 1, p, o);
        if (!same_b64_field(json_get(r, "value"), json_get(c, "value"), 0))
            FAILF("record %zu: value differs", e->input + 1);
        if (!same_headers(json_get(r, "headers"), json_get(c, "headers")))
            FAILF("record %zu: headers differ", e->input + 1);
        int64_t want_ts = get_int(r, "timestamp", -1), got_ts = get_int(c, "timestamp", -2);
        if (want_ts >= 0 ? got_ts != want_ts : (got_ts < now_min || got_ts > now_min + 600000))
            FAILF("record %zu: timestamp %" PRId64 ", expected %" PRId64 " (or now >= %" PRId64 ")", e->input + 1,
                  got_ts, want_ts, now_min);
    }
    free(ex);
    free_lines(&in);
    free_lines(&prod);
    free_lines(&cons);
    return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    int rc = 2;
    if (argc >= 2 && strcmp(argv[1], "gen") == 0)
        rc = cmd_gen(argc, argv);
    else if (argc >= 2 && strcmp(argv[1], "produced") == 0)
        rc = cmd_produced(argc, argv);
    else if (argc >= 2 && strcmp(argv[1], "consumed") == 0)
        rc = cmd_consumed(argc, argv);
    if (rc == 2)
        fprintf(stderr, "usage: see the comment at the top of tests/e2e_check.c\n");
    return rc;
}
