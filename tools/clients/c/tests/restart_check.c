/*
 * restart-check: the C half of the kill/restart test (tests/restart.sh). Uses only the public
 * API of fjord.h, so it builds against an installed libfjord as well.
 *
 *   restart-check HOST PORT CA CERT KEY TOPIC PARTITIONS RECORDS
 *
 * Produces RECORDS records ("value-%07d", 100 bytes each, 50 per batch, partitions in turn) with
 * an idempotent producer and acks=durable, printing "acked N" after every answer (the harness
 * kills and restarts the broker meanwhile), then reads every partition back and checks that each
 * record is there exactly once and every acknowledged batch sits at the offsets it was told.
 * Exit status 0 when all holds; the last line says what was found.
 */
#include "fjord.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PER_BATCH 50
#define VALUE_SIZE 100

typedef struct sent_batch {
    uint32_t partition;
    long first; /* index of the batch's first record */
    int count;
    int64_t base_offset; /* -1 until acknowledged */
} sent_batch;

static void value_of(long i, uint8_t *out)
{
    memset(out, '.', VALUE_SIZE);
    char head[32];
    int n = snprintf(head, sizeof head, "value-%07ld", i);
    memcpy(out, head, (size_t)n);
}

static long index_of(const uint8_t *v, size_t len)
{
    if (len != VALUE_SIZE || memcmp(v, "value-", 6) != 0)
        return -1;
    long i = 0;
    for (int k = 6; k < 13; k++) {
        if (v[k] < '0' || v[k] > '9')
            return -1;
        i = i * 10 + (v[k] - '0');
    }
    return i;
}

static long duplicates; /* answers with duplicate = true: batches the broker had before a resend */

static int take_answer(fjord_producer *p, int timeout_ms, sent_batch *batches, long *acked, fjord_error *err)
{
    fjord_produce_result r;
    int got = fjord_producer_poll(p, timeout_ms, &r, err);
    if (got <= 0)
        return got;
    sent_batch *b = &batches[r.request_id - 1];
    if (r.error.code != 0) {
        fprintf(stderr, "restart-check: batch %llu (records %ld..%ld) failed: %s: %s\n",
                (unsigned long long)r.request_id, b->first, b->first + b->count - 1,
                fjord_error_name(r.error.code), r.error.message);
        return -2;
    }
    b->base_offset = r.base_offset;
    duplicates += r.duplicate;
    *acked += b->count;
    printf("acked %ld\n", *acked);
    fflush(stdout);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 9) {
        fprintf(stderr, "usage: restart-check HOST PORT CA CERT KEY TOPIC PARTITIONS RECORDS\n");
        return 2;
    }
    const char *host = argv[1], *topic = argv[6];
    uint16_t port = (uint16_t)atoi(argv[2]);
    uint32_t partitions = (uint32_t)atoi(argv[7]);
    long records = atol(argv[8]);
    long nbatches = (records + PER_BATCH - 1) / PER_BATCH;

    fjord_conn_options o;
    fjord_conn_options_init(&o);
    o.ca_file = argv[3];
    o.cert_file = argv[4];
    o.key_file = argv[5];
    o.client_id = "restart-check";
    fjord_error err;
    fjord_conn *conn = fjord_connect(host, port, &o, &err);
    if (conn == NULL) {
        fprintf(stderr, "restart-check: connect: %s\n", err.message);
        return 1;
    }
    if (fjord_create_topic(conn, topic, partitions, NULL, &err) < 0 &&
        err.code != FJORD_ERROR_TOPIC_ALREADY_EXISTS) {
        fprintf(stderr, "restart-check: create topic: %s\n", err.message);
        return 1;
    }
    fjord_producer_options po;
    fjord_producer_options_init(&po);
    po.acks = FJORD_ACKS_DURABLE;
    po.retry_backoff_max_ms = 500;
    fjord_producer *p = fjord_producer_new_opts(conn, &po, &err);
    if (p == NULL) {
        fprintf(stderr, "restart-check: producer: %s\n", err.message);
        return 1;
    }
    sent_batch *batches = calloc((size_t)nbatches, sizeof *batches);
    uint8_t(*values)[VALUE_SIZE] = malloc(PER_BATCH * sizeof *values);
    fjord_record *recs = calloc(PER_BATCH, sizeof *recs);
    if (batches == NULL || values == NULL || recs == NULL) {
        fprintf(stderr, "restart-check: out of memory\n");
        return 1;
    }
    long acked = 0;
    int failed = 0;
    for (long b = 0; b < nbatches && !failed; b++) {
        long first = b * PER_BATCH;
        int n = (int)(records - first < PER_BATCH ? records - first : PER_BATCH);
        for (int k = 0; k < n; k++) {
            value_of(first + k, values[k]);
            recs[k] = (fjord_record){0};
            recs[k].timestamp = 1764230400000LL + first + k;
            recs[k].value = values[k];
            recs[k].value_len = VALUE_SIZE;
            recs[k].has_value = 1;
        }
        batches[b] = (sent_batch){(uint32_t)(b % partitions), first, n, -1};
        uint64_t rid;
        if (fjord_producer_send(p, topic, batches[b].partition, recs, (size_t)n, &rid, &err) < 0) {
            fprintf(stderr, "restart-check: send: %s: %s\n", fjord_error_name(err.code), err.message);
            failed = 1;
            break;
        }
        if (rid != (uint64_t)b + 1) {
            fprintf(stderr, "restart-check: request id %llu for batch %ld\n", (unsigned long long)rid, b);
            failed = 1;
        }
        int r;
        while ((r = take_answer(p, 0, batches, &acked, &err)) == 1) {
        }
        if (r < 0)
            failed = 1;
        struct timespec pace = {0, 1000000}; /* 1 ms a batch: a steady run the harness can interrupt */
        nanosleep(&pace, NULL);
    }
    if (!failed && fjord_producer_finish(p, &err) < 0)
        failed = 1;
    while (!failed) {
        int r = take_answer(p, 60000, batches, &acked, &err);
        if (r == 1)
            continue;
        if (r == -1 && err.code == FJORD_ERR_STREAM_ENDED)
            break;
        fprintf(stderr, "restart-check: waiting for answers: %s\n", r == 0 ? "timeout" : err.message);
        failed = 1;
    }
    unsigned long long retries = (unsigned long long)fjord_producer_retries(p);
    fjord_producer_free(p);
    if (failed || acked != records) {
        printf("restart-check: FAILED: %ld of %ld records acknowledged\n", acked, records);
        return 1;
    }
    printf("produced\n"); /* the harness stops killing the broker */
    fflush(stdout);

    /* Read everything back with subscriptions (the harness kills the broker once more while
     * this runs: the consumer must resume from the next offset, handing out nothing twice). */
    unsigned char *seen = calloc((size_t)records, 1);
    long stored = 0, dupes = 0, strangers = 0, misplaced = 0;
    fjord_consumer *cons = fjord_consumer_new(conn, 64 * 1024, &err);
    for (uint32_t part = 0; cons && part < partitions; part++)
        if (fjord_consumer_subscribe(cons, topic, part, 0, &err) < 0) {
            fprintf(stderr, "restart-check: subscribe: %s\n", err.message);
            return 1;
        }
    if (cons == NULL) {
        fprintf(stderr, "restart-check: consumer: %s\n", err.message);
        return 1;
    }
    int64_t idle_since = -1;
    while (stored < records) {
        fjord_message_set *set;
        int r = fjord_consumer_poll(cons, 1000, &set, &err);
        if (r < 0) {
            fprintf(stderr, "restart-check: consume: %s: %s\n", fjord_error_name(err.code), err.message);
            return 1;
        }
        if (r == 0) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            if (idle_since < 0)
                idle_since = ts.tv_sec;
            if (ts.tv_sec - idle_since > 60)
                break; /* nothing for a minute: report what is missing */
            continue;
        }
        idle_since = -1;
        for (size_t k = 0; k < set->record_count; k++) {
            long i = index_of(set->records[k].value, set->records[k].value_len);
            stored++;
            if (i < 0 || i >= records) {
                strangers++;
                continue;
            }
            if (seen[i]++)
                dupes++;
            const sent_batch *b = &batches[i / PER_BATCH];
            if (b->partition != set->partition || b->base_offset + (i - b->first) != set->records[k].offset)
                misplaced++;
        }
        fjord_message_set_free(set);
        printf("consumed %ld\n", stored);
        fflush(stdout);
        struct timespec pace = {0, 2000000}; /* a steady read the harness can interrupt */
        nanosleep(&pace, NULL);
    }
    unsigned long long resumes = (unsigned long long)fjord_consumer_resumes(cons);
    fjord_consumer_free(cons);
    long missing = 0;
    for (long i = 0; i < records; i++)
        missing += seen[i] == 0;
    free(seen);
    free(batches);
    free(values);
    free(recs);
    fjord_close(conn);
    int ok = stored == records && dupes == 0 && strangers == 0 && misplaced == 0 && missing == 0;
    printf("restart-check: %s: %ld records acknowledged, %ld stored, %ld duplicates, %ld missing, %ld misplaced, "
           "%ld unknown; %llu resends, %ld batches answered as duplicates; consumer resumed %llu times\n",
           ok ? "ok" : "FAILED", acked, stored, dupes, missing, misplaced, strangers, retries, duplicates,
           resumes);
    return ok ? 0 : 1;
}
