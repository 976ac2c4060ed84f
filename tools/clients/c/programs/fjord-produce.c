/* fjord-produce TOPIC --format json [--acks none|leader|durable] [connection flags]
 *
 * Reads one JSON object per stdin line (tools/clients/README.md), sends the records in batches
 * (one batch per partition for each run of input that is available at once), and prints
 * {"partition": P, "offset": O} for each record in input order once it is acknowledged
 * ({"partition": P, "offset": -1} with --acks none). Exit status 0 only if every record was
 * acknowledged; 1 on any failure (unknown topic, malformed line, failed batch, lost connection);
 * 2 on a usage error.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "json.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ACK_WAIT_MS 120000 /* give up if the broker answers nothing for this long at the end */

typedef struct rec {
    uint64_t seq;  /* record number (output order) */
    uint64_t line; /* input line number */
    uint32_t partition;
    fjord_record r;
    uint8_t *key;
    uint8_t *value;
    fjord_header *headers;
    size_t bytes; /* estimated encoded size */
} rec;

typedef struct acc {
    rec **recs;
    size_t n, cap, bytes;
} acc;

enum { ST_WAITING = 0, ST_DONE = 1, ST_FAILED = 2 };

typedef struct out_state {
    uint32_t partition;
    int64_t offset;
    uint8_t state;
} out_state;

typedef struct request {
    uint64_t id;
    uint32_t partition;
    size_t n;
    uint64_t first_line, last_line;
    uint64_t *seqs; /* NULL with --acks none */
} request;

static struct {
    const char *topic;
    int acks;
    fjord_conn *conn;
    fjord_producer *producer;
    uint32_t partitions;
    size_t batch_limit;
    uint32_t sticky;

    acc *accs;

    out_state *out; /* out[seq - out_base] */
    uint64_t out_base, next_seq;
    size_t out_cap;

    request *reqs; /* acks != none: FIFO from reqs_head; acks none: every request, by id */
    size_t reqs_head, reqs_len, reqs_cap;

    int failures;
} g;

static void free_rec(rec *r)
{
    if (r == NULL)
        return;
    free(r->key);
    free(r->value);
    for (size_t i = 0; i < r->r.header_count; i++) {
        free((char *)(uintptr_t)r->headers[i].key);
        free((uint8_t *)(uintptr_t)r->headers[i].value);
    }
    free(r->headers);
    free(r);
}

static void oom(void)
{
    cli_error("out of memory");
    exit(1);
}

/* ----- output in input order ---------------------------------------------------------------- */

static out_state *state_of(uint64_t seq)
{
    return &g.out[seq - g.out_base];
}

static void new_state(uint32_t partition)
{
    size_t used = (size_t)(g.next_seq - g.out_base);
    if (used == g.out_cap) {
        size_t cap = g.out_cap ? g.out_cap * 2 : 1024;
        out_state *n = realloc(g.out, cap * sizeof *n);
        if (n == NULL)
            oom();
        g.out = n;
        g.out_cap = cap;
    }
    g.out[used] = (out_state){partition, -1, ST_WAITING};
    g.next_seq++;
}

static void print_ready(void)
{
    size_t done = 0, used = (size_t)(g.next_seq - g.out_base);
    int printed = 0;
    while (done < used && g.out[done].state != ST_WAITING) {
        if (g.out[done].state == ST_DONE) {
            printf("{\"partition\": %" PRIu32 ", \"offset\": %" PRId64 "}\n", g.out[done].partition,
                   g.out[done].offset);
            printed = 1;
        }
        done++;
    }
    if (done) {
        memmove(g.out, g.out + done, (used - done) * sizeof *g.out);
        g.out_base += done;
    }
    if (printed && fflush(stdout) != 0) {
        cli_error("writing stdout: %s", strerror(errno));
        exit(1);
    }
}

/* ----- requests ----------------------------------------------------------------------------- */

static void add_request(const request *r)
{
    if (g.reqs_head + g.reqs_len == g.reqs_cap) {
        if (g.reqs_head > 0) {
            memmove(g.reqs, g.reqs + g.reqs_head, g.reqs_len * sizeof *g.reqs);
            g.reqs_head = 0;
        } else {
            size_t cap = g.reqs_cap ? g.reqs_cap * 2 : 64;
            request *n = realloc(g.reqs, cap * sizeof *n);
            if (n == NULL)
                oom();
            g.reqs = n;
            g.reqs_cap = cap;
        }
    }
    g.reqs[g.reqs_head + g.reqs_len++] = *r;
}

static request *find_request(uint64_t id)
{
    /* ids increase, so binary search works for both layouts */
    size_t lo = g.reqs_head, hi = g.reqs_head + g.reqs_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (g.reqs[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < g.reqs_head + g.reqs_len && g.reqs[lo].id == id ? &g.reqs[lo] : NULL;
}

static void describe_lines(char *buf, size_t cap, const request *q)
{
    if (q->first_line == q->last_line)
        snprintf(buf, cap, "line %" PRIu64, q->first_line);
    else
        snprintf(buf, cap, "lines %" PRIu64 "-%" PRIu64 " (%zu records)", q->first_line, q->last_line, q->n);
}

static void handle_result(const fjord_produce_result *res)
{
    request *q = find_request(res->request_id);
    if (q == NULL) {
        cli_error("the broker answered unknown request %" PRIu64, res->request_id);
        g.failures++;
        return;
    }
    char where[96];
    describe_lines(where, sizeof where, q);
    if (res->error.code != 0) {
        fprintf(stderr, "%s: %s: topic '%s' partition %" PRIu32 ": %s: %s\n", cli_prog, where, g.topic,
                q->partition, fjord_error_name(res->error.code), res->error.message);
        g.failures++;
        for (size_t i = 0; q->seqs && i < q->n; i++)
            state_of(q->seqs[i])->state = ST_FAILED;
    } else if (q->seqs) {
        if (res->last_offset - res->base_offset + 1 != (int64_t)q->n) {
            cli_error("%s: the broker acknowledged offsets %" PRId64 "-%" PRId64 " for %zu records", where,
                      res->base_offset, res->last_offset, q->n);
            g.failures++;
            for (size_t i = 0; i < q->n; i++)
                state_of(q->seqs[i])->state = ST_FAILED;
        } else {
            for (size_t i = 0; i < q->n; i++) {
                out_state *s = state_of(q->seqs[i]);
                s->offset = res->base_offset + (int64_t)i;
                s->state = ST_DONE;
            }
        }
    }
    if (q->seqs) { /* answered: leave the FIFO (answers come in request order) */
        free(q->seqs);
        q->seqs = NULL;
        while (g.reqs_len > 0 && g.reqs[g.reqs_head].seqs == NULL) {
            g.reqs_head++;
            g.reqs_len--;
        }
        if (g.reqs_len == 0)
            g.reqs_head = 0;
    }
}

enum { DRAIN_FAILED = -1, DRAIN_NOTHING = 0, DRAIN_SOME = 1, DRAIN_ENDED = 2 };

/* Handles the answers received, waiting up to timeout_ms for the first one. Returns DRAIN_*:
 * nothing arrived in time, some answers were handled, the broker ended the stream (after
 * fjord_producer_finish), or the stream or connection failed. */
static int drain_results(int timeout_ms)
{
    int handled = 0;
    for (;;) {
        fjord_produce_result res;
        fjord_error err;
        int r = fjord_producer_poll(g.producer, handled ? 0 : timeout_ms, &res, &err);
        if (r == 0)
            return handled ? DRAIN_SOME : DRAIN_NOTHING;
        if (r < 0) {
            if (err.code == FJORD_ERR_STREAM_ENDED)
                return DRAIN_ENDED;
            cli_report("produce stream failed", &err);
            return DRAIN_FAILED;
        }
        handle_result(&res);
        handled = 1;
    }
}

/* ----- batching ----------------------------------------------------------------------------- */

static int flush_partition(uint32_t p)
{
    acc *a = &g.accs[p];
    if (a->n == 0)
        return 0;
    fjord_record *records = malloc(a->n * sizeof *records);
    request q = {0, p, a->n, a->recs[0]->line, a->recs[a->n - 1]->line, NULL};
    if (records == NULL)
        oom();
    if (g.acks != FJORD_ACKS_NONE) {
        q.seqs = malloc(a->n * sizeof *q.seqs);
        if (q.seqs == NULL)
            oom();
    }
    for (size_t i = 0; i < a->n; i++) {
        records[i] = a->recs[i]->r;
        if (q.seqs)
            q.seqs[i] = a->recs[i]->seq;
    }
    fjord_error err;
    int rc = fjord_producer_send(g.producer, g.topic, p, records, a->n, &q.id, &err);
    free(records);
    if (rc < 0) {
        char where[96];
        describe_lines(where, sizeof where, &q);
        cli_report(where, &err);
        free(q.seqs);
        g.failures++;
        for (size_t i = 0; i < a->n; i++)
            state_of(a->recs[i]->seq)->state = ST_FAILED;
    } else {
        if (g.acks == FJORD_ACKS_NONE)
            for (size_t i = 0; i < a->n; i++)
                state_of(a->recs[i]->seq)->state = ST_DONE; /* offset -1 */
        add_request(&q);
    }
    for (size_t i = 0; i < a->n; i++)
        free_rec(a->recs[i]);
    a->n = 0;
    a->bytes = 0;
    return rc;
}

static int flush_all(void)
{
    int rc = 0;
    for (uint32_t p = 0; p < g.partitions; p++)
        if (flush_partition(p) < 0)
            rc = -1;
    g.sticky = (g.sticky + 1) % g.partitions; /* unkeyed records move on, as Kafka's sticky partitioner */
    return rc;
}

static int add_record(rec *r)
{
    acc *a = &g.accs[r->partition];
    if (a->n > 0 && a->bytes + r->bytes > g.batch_limit)
        if (flush_partition(r->partition) < 0) {
            free_rec(r);
            return -1;
        }
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        rec **n = realloc(a->recs, cap * sizeof *n);
        if (n == NULL)
            oom();
        a->recs = n;
        a->cap = cap;
    }
    a->recs[a->n++] = r;
    a->bytes += r->bytes;
    return 0;
}

/* ----- input lines -------------------------------------------------------------------------- */

static int decode_b64(const json_value *v, const char *what, uint64_t line, uint8_t **out, size_t *len)
{
    *out = malloc(v->len / 4 * 3 + 1);
    if (*out == NULL)
        oom();
    long n = fjord_base64_decode(v->str, v->len, *out);
    if (n < 0) {
        cli_error("line %" PRIu64 ": %s is not valid base64 (standard alphabet, with padding)", line, what);
        free(*out);
        *out = NULL;
        return -1;
    }
    *len = (size_t)n;
    return 0;
}

/* Parses one input line into a record. Returns 1 (record added), 0 (blank line), -1 (error). */
static int handle_line(const char *text, size_t len, uint64_t line)
{
    size_t i = 0;
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r'))
        i++;
    if (i == len)
        return 0;
    char perr[200];
    json_value *v = json_parse(text, len, perr, sizeof perr);
    if (v == NULL) {
        cli_error("line %" PRIu64 ": malformed JSON: %s", line, perr);
        return -1;
    }
    rec *r = calloc(1, sizeof *r);
    if (r == NULL)
        oom();
    r->line = line;
    r->bytes = 32;
    const json_value *f;
    if (v->type != JSON_OBJECT) {
        cli_error("line %" PRIu64 ": expected a JSON object, got %s", line, json_type_name(v->type));
        goto bad;
    }
    /* key */
    f = json_get(v, "key");
    if (f && f->type == JSON_STRING) {
        if (decode_b64(f, "key", line, &r->key, &r->r.key_len) < 0)
            goto bad;
        r->r.key = r->key;
        r->r.has_key = 1;
        r->bytes += r->r.key_len;
    } else if (f && f->type != JSON_NULL) {
        cli_error("line %" PRIu64 ": key must be a base64 string or null, got %s", line, json_type_name(f->type));
        goto bad;
    }
    /* value */
    f = json_get(v, "value");
    if (f == NULL) {
        cli_error("line %" PRIu64 ": value is required", line);
        goto bad;
    } else if (f->type == JSON_STRING) {
        if (decode_b64(f, "value", line, &r->value, &r->r.value_len) < 0)
            goto bad;
        r->r.value = r->value;
        r->r.has_value = 1;
        r->bytes += r->r.value_len;
    } else if (f->type != JSON_NULL) { /* null: a tombstone */
        cli_error("line %" PRIu64 ": value must be a base64 string, got %s", line, json_type_name(f->type));
        goto bad;
    }
    /* timestamp */
    f = json_get(v, "timestamp");
    if (f == NULL || f->type == JSON_NULL) {
        r->r.timestamp = cli_now_ms();
    } else if (f->type == JSON_NUMBER && f->is_integer) {
        r->r.timestamp = f->integer;
    } else {
        cli_error("line %" PRIu64 ": timestamp must be an integer (ms since the epoch), got %s", line,
                  f->type == JSON_NUMBER ? "a non-integer number" : json_type_name(f->type));
        goto bad;
    }
    /* headers */
    f = json_get(v, "headers");
    if (f && f->type == JSON_ARRAY) {
        if (f->count) {
            r->headers = calloc(f->count, sizeof *r->headers);
            if (r->headers == NULL)
                oom();
        }
        for (size_t k = 0; k < f->count; k++) {
            const json_value *h = f->items[k];
            if (h->type != JSON_OBJECT) {
                cli_error("line %" PRIu64 ": headers[%zu] must be an object, got %s", line, k, json_type_name(h->type));
                goto bad;
            }
            const json_value *hk = json_get(h, "key"), *hv = json_get(h, "value");
            if (hk == NULL || hk->type != JSON_STRING) {
                cli_error("line %" PRIu64 ": headers[%zu].key must be a string", line, k);
                goto bad;
            }
            if (memchr(hk->str, '\0', hk->len) != NULL) {
                cli_error("line %" PRIu64 ": headers[%zu].key contains U+0000", line, k);
                goto bad;
            }
            fjord_header *dst = &r->headers[r->r.header_count++];
            char *key = malloc(hk->len + 1);
            if (key == NULL)
                oom();
            memcpy(key, hk->str, hk->len + 1);
            dst->key = key;
            dst->key_len = hk->len;
            if (hv && hv->type == JSON_STRING) {
                uint8_t *val;
                char what[48];
                snprintf(what, sizeof what, "headers[%zu].value", k);
                if (decode_b64(hv, what, line, &val, &dst->value_len) < 0)
                    goto bad;
                dst->value = val;
                dst->has_value = 1;
            } else if (hv && hv->type != JSON_NULL) {
                cli_error("line %" PRIu64 ": headers[%zu].value must be a base64 string or null", line, k);
                goto bad;
            }
            r->bytes += dst->key_len + dst->value_len + 20;
        }
        r->r.headers = r->headers;
    } else if (f && f->type != JSON_NULL) {
        cli_error("line %" PRIu64 ": headers must be an array, got %s", line, json_type_name(f->type));
        goto bad;
    }
    /* partition */
    f = json_get(v, "partition");
    if (f && f->type != JSON_NULL) {
        if (f->type != JSON_NUMBER || !f->is_integer || f->integer < 0 || f->integer >= (int64_t)g.partitions) {
            cli_error("line %" PRIu64 ": partition must be an integer from 0 to %" PRIu32 " (topic '%s' has %" PRIu32
                      " partitions)",
                      line, g.partitions - 1, g.topic, g.partitions);
            goto bad;
        }
        r->partition = (uint32_t)f->integer;
    } else if (r->r.has_key) {
        r->partition = fjord_partition_for_key(r->r.key, r->r.key_len, g.partitions);
    } else {
        r->partition = g.sticky;
    }
    json_free(v);
    r->seq = g.next_seq;
    new_state(r->partition);
    return add_record(r) < 0 ? -1 : 1;
bad:
    json_free(v);
    free_rec(r);
    return -1;
}

static int stdin_ready(void)
{
    struct pollfd p = {STDIN_FILENO, POLLIN, 0};
    return poll(&p, 1, 0) > 0;
}

/* ----- main --------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: fjord-produce TOPIC [--format json] [--acks none|leader|durable] [connection flags]\n"
            "\n"
            "Reads one JSON object per line from stdin:\n"
            "  {\"key\": B64|null, \"value\": B64, \"timestamp\": MS, \"headers\": [{\"key\": S, \"value\": B64}],\n"
            "   \"partition\": P}\n"
            "and prints {\"partition\": P, \"offset\": O} per record, in input order, once acknowledged.\n"
            "\n" CLI_CONN_USAGE);
}

int main(int argc, char **argv)
{
    cli_prog = "fjord-produce";
    cli_conn cc = {0};
    const char *acks = "leader", *format = "json";
    for (int i = 1; i < argc; i++) {
        int r;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if ((r = cli_conn_flag(argc, argv, &i, &cc)) != 0 || (r = cli_value(argc, argv, &i, "acks", &acks)) != 0 ||
            (r = cli_value(argc, argv, &i, "format", &format)) != 0) {
            if (r < 0)
                return 2;
            continue;
        }
        if (argv[i][0] == '-' && argv[i][1] != '\0') {
            cli_error("unknown option %s", argv[i]);
            usage(stderr);
            return 2;
        }
        if (g.topic) {
            cli_error("unexpected argument %s (the topic is %s)", argv[i], g.topic);
            return 2;
        }
        g.topic = argv[i];
    }
    if (g.topic == NULL) {
        cli_error("a topic is required");
        usage(stderr);
        return 2;
    }
    if (strcmp(format, "json") != 0) {
        cli_error("--format %s: only json is supported", format);
        return 2;
    }
    if (strcmp(acks, "none") == 0)
        g.acks = FJORD_ACKS_NONE;
    else if (strcmp(acks, "leader") == 0)
        g.acks = FJORD_ACKS_LEADER;
    else if (strcmp(acks, "durable") == 0)
        g.acks = FJORD_ACKS_DURABLE;
    else {
        cli_error("--acks %s: expected none, leader or durable", acks);
        return 2;
    }

    g.conn = cli_connect(&cc, "fjord-produce (C)");
    if (g.conn == NULL)
        return 1;
    int status = 1;
    fjord_error err;
    fjord_topic_meta meta;
    char *buf = NULL;
    if (fjord_topic_metadata(g.conn, g.topic, &meta, &err) < 0) {
        if (err.code == FJORD_ERROR_UNKNOWN_TOPIC_OR_PARTITION)
            cli_error("topic '%s' does not exist (%s: %s)", g.topic, fjord_error_name(err.code), err.message);
        else {
            char ctx[320];
            snprintf(ctx, sizeof ctx, "metadata of topic '%s'", g.topic);
            cli_report(ctx, &err);
        }
        goto out;
    }
    g.partitions = meta.partitions;
    g.batch_limit = 1024 * 1024;
    if (meta.max_message_bytes && meta.max_message_bytes < g.batch_limit)
        g.batch_limit = meta.max_message_bytes;
    uint32_t frame_max = fjord_conn_broker(g.conn)->max_frame_bytes;
    if (frame_max > 2048 && frame_max - 1024 - strlen(g.topic) < g.batch_limit)
        g.batch_limit = frame_max - 1024 - strlen(g.topic);
    g.sticky = (uint32_t)((uint64_t)cli_now_ms() % g.partitions);
    g.accs = calloc(g.partitions, sizeof *g.accs);
    if (g.accs == NULL)
        oom();
    g.producer = fjord_producer_new(g.conn, g.acks, &err);
    if (g.producer == NULL) {
        cli_report("produce", &err);
        goto out;
    }

    size_t cap = 1 << 16, len = 0, start = 0;
    buf = malloc(cap);
    if (buf == NULL)
        oom();
    uint64_t line = 0;
    int eof = 0, input_failed = 0, stream_failed = 0;
    while (!eof && !input_failed) {
        int w = fjord_conn_wait(g.conn, STDIN_FILENO, -1, &err);
        if (w < 0 && fjord_producer_is_idempotent(g.producer, NULL, NULL))
            w = 0; /* the connection was lost: polling the producer reconnects and resends */
        if (w < 0 || drain_results(0) == DRAIN_FAILED) {
            if (w < 0)
                cli_report("connection failed", &err);
            stream_failed = 1;
            break;
        }
        print_ready();
        if (w == 0)
            continue;
        if (cap - len < 4096) {
            if (start > 0) {
                memmove(buf, buf + start, len - start);
                len -= start;
                start = 0;
            }
            if (cap - len < 4096) {
                cap *= 2;
                char *n = realloc(buf, cap);
                if (n == NULL)
                    oom();
                buf = n;
            }
        }
        ssize_t n = read(STDIN_FILENO, buf + len, cap - len);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            cli_error("reading stdin: %s", strerror(errno));
            input_failed = 1;
            break;
        }
        if (n == 0)
            eof = 1;
        len += (size_t)n;
        for (;;) {
            char *nl = memchr(buf + start, '\n', len - start);
            if (nl == NULL)
                break;
            line++;
            if (handle_line(buf + start, (size_t)(nl - (buf + start)), line) < 0) {
                input_failed = 1;
                break;
            }
            start = (size_t)(nl - buf) + 1;
        }
        if (eof && !input_failed && start < len) { /* a last line without a newline */
            line++;
            if (handle_line(buf + start, len - start, line) < 0)
                input_failed = 1;
            start = len;
        }
        if (start == len)
            start = len = 0;
        if (eof || input_failed || !stdin_ready())
            flush_all();
    }
    free(buf);
    buf = NULL;
    if (!stream_failed) {
        flush_all();
        if (fjord_producer_finish(g.producer, &err) < 0) {
            cli_report("finishing the produce stream", &err);
            stream_failed = 1;
        }
    }
    while (!stream_failed) {
        int r = drain_results(ACK_WAIT_MS);
        print_ready();
        if (r == DRAIN_FAILED)
            stream_failed = 1;
        else if (r == DRAIN_ENDED)
            break;
        else if (r == DRAIN_NOTHING) {
            cli_error("no answer from the broker for %d s; giving up", ACK_WAIT_MS / 1000);
            stream_failed = 1;
        }
    }
    print_ready();
    uint64_t unacked = 0;
    for (uint64_t s = g.out_base; s < g.next_seq; s++)
        if (state_of(s)->state == ST_WAITING)
            unacked++;
    if (unacked)
        cli_error("%" PRIu64 " record(s) were not acknowledged", unacked);
    status = (input_failed || stream_failed || g.failures || unacked) ? 1 : 0;
out:
    free(buf);
    fjord_producer_free(g.producer);
    fjord_close(g.conn);
    if (g.accs) {
        for (uint32_t p = 0; p < g.partitions; p++) {
            for (size_t i = 0; i < g.accs[p].n; i++)
                free_rec(g.accs[p].recs[i]);
            free(g.accs[p].recs);
        }
        free(g.accs);
    }
    for (size_t i = 0; i < g.reqs_head + g.reqs_len; i++)
        free(g.reqs[i].seqs);
    free(g.reqs);
    free(g.out);
    if (fflush(stdout) != 0 && status == 0)
        status = 1;
    return status;
}
