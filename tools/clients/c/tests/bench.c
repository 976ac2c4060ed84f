/*
 * bench: produce and consume throughput of libfjord over TLS (tests/bench.sh runs it).
 *
 *   bench HOST PORT CA TOPIC RECORDS VALUE_BYTES
 *
 * Produces RECORDS records of VALUE_BYTES bytes to partition 0 of TOPIC (created here) with the
 * default producer (idempotent, acks leader), 2000 records a batch, answers read as they come;
 * then subscribes from offset 0 (CRC32C checked) until every record is back. Prints
 * "produce N records/s" and "consume N records/s".
 */
#include "fjord.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PER_BATCH 2000

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *what, const fjord_error *err)
{
    fprintf(stderr, "bench: %s: %s: %s\n", what, fjord_error_name(err->code), err->message);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: bench HOST PORT CA TOPIC RECORDS VALUE_BYTES\n");
        return 2;
    }
    const char *topic = argv[4];
    long records = atol(argv[5]);
    size_t value_bytes = (size_t)atol(argv[6]);
    fjord_conn_options o;
    fjord_conn_options_init(&o);
    o.ca_file = argv[3];
    fjord_error err;
    fjord_conn *conn = fjord_connect(argv[1], (uint16_t)atoi(argv[2]), &o, &err);
    if (conn == NULL)
        return fail("connect", &err);
    if (fjord_create_topic(conn, topic, 1, NULL, &err) < 0)
        return fail("create topic", &err);

    uint8_t *value = malloc(value_bytes);
    fjord_record *recs = calloc(PER_BATCH, sizeof *recs);
    if (value == NULL || recs == NULL)
        return 1;
    memset(value, 'v', value_bytes);
    for (int i = 0; i < PER_BATCH; i++) {
        recs[i].timestamp = 1764230400000LL;
        recs[i].value = value;
        recs[i].value_len = value_bytes;
        recs[i].has_value = 1;
    }

    double start = now_s();
    fjord_producer *p = fjord_producer_new(conn, FJORD_ACKS_LEADER, &err);
    if (p == NULL)
        return fail("producer", &err);
    long acked = 0;
    fjord_produce_result res;
    for (long sent = 0; sent < records;) {
        size_t n = (size_t)(records - sent < PER_BATCH ? records - sent : PER_BATCH);
        if (fjord_producer_send(p, topic, 0, recs, n, NULL, &err) < 0)
            return fail("send", &err);
        sent += (long)n;
        int r;
        while ((r = fjord_producer_poll(p, 0, &res, &err)) == 1) {
            if (res.error.code)
                return fail("produce", &res.error);
            acked += res.last_offset - res.base_offset + 1;
        }
        if (r < 0)
            return fail("poll", &err);
    }
    fjord_producer_finish(p, &err);
    for (;;) {
        int r = fjord_producer_poll(p, 30000, &res, &err);
        if (r == 1) {
            if (res.error.code)
                return fail("produce", &res.error);
            acked += res.last_offset - res.base_offset + 1;
            continue;
        }
        if (r < 0 && err.code == FJORD_ERR_STREAM_ENDED)
            break;
        return fail("poll", &err);
    }
    double produce_s = now_s() - start;
    fjord_producer_free(p);
    if (acked != records) {
        fprintf(stderr, "bench: %ld of %ld acknowledged\n", acked, records);
        return 1;
    }

    start = now_s();
    fjord_consumer *c = fjord_consumer_new(conn, 8u << 20, &err);
    if (c == NULL || fjord_consumer_subscribe(c, topic, 0, 0, &err) < 0)
        return fail("subscribe", &err);
    long got = 0;
    while (got < records) {
        fjord_message_set *set;
        int r = fjord_consumer_poll(c, 30000, &set, &err);
        if (r <= 0)
            return fail("consume", &err);
        got += (long)set->record_count;
        fjord_message_set_free(set);
    }
    double consume_s = now_s() - start;
    fjord_consumer_free(c);
    fjord_close(conn);
    free(value);
    free(recs);
    printf("produce %.0f records/s\nconsume %.0f records/s\n", records / produce_s, records / consume_s);
    return 0;
}
