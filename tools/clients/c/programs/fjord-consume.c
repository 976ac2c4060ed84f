/* fjord-consume TOPIC --format json [--from-beginning | --offset N | --from-time MS]
 *               [--partition P] [--max-records N] [--timeout-ms T] [--no-check-crcs] [connection flags]
 *
 * Subscribes to the topic's partitions (or one) on one connection and prints one JSON object per
 * record (tools/clients/README.md), each partition in offset order. Without a start flag it
 * starts at the end of each partition (only records produced from now on), as Kafka's console
 * consumer does. Exits 0 after --max-records records, or once no record arrived for
 * --timeout-ms (default 10000); 1 on an error (unknown topic, a failed subscription, a lost
 * connection); 2 on a usage error.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "json.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *b64_buf;
static size_t b64_cap;

static void write_b64(const uint8_t *data, size_t len, int present)
{
    if (!present) {
        fputs("null", stdout);
        return;
    }
    size_t need = fjord_base64_encoded_len(len) + 1;
    if (need > b64_cap) {
        char *n = realloc(b64_buf, need);
        if (n == NULL) {
            cli_error("out of memory");
            exit(1);
        }
        b64_buf = n;
        b64_cap = need;
    }
    size_t n = fjord_base64_encode(data, len, b64_buf);
    putchar('"');
    fwrite(b64_buf, 1, n, stdout);
    putchar('"');
}

static void print_record(const char *topic, uint32_t partition, const fjord_record *r)
{
    fputs("{\"topic\": ", stdout);
    json_write_string(stdout, topic, strlen(topic));
    printf(", \"partition\": %" PRIu32 ", \"offset\": %" PRId64 ", \"timestamp\": %" PRId64 ", \"key\": ", partition,
           r->offset, r->timestamp);
    write_b64(r->key, r->key_len, r->has_key);
    fputs(", \"value\": ", stdout);
    write_b64(r->value, r->value_len, r->has_value);
    fputs(", \"headers\": [", stdout);
    for (size_t i = 0; i < r->header_count; i++) {
        const fjord_header *h = &r->headers[i];
        fputs(i ? ", {\"key\": " : "{\"key\": ", stdout);
        json_write_string(stdout, h->key, h->key_len);
        fputs(", \"value\": ", stdout);
        write_b64(h->value, h->value_len, h->has_value);
        putchar('}');
    }
    fputs("]}\n", stdout);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: fjord-consume TOPIC [--format json] [--from-beginning | --offset N | --from-time MS]\n"
               "                     [--partition P] [--max-records N] [--timeout-ms T] [--no-check-crcs]\n"
               "                     [connection flags]\n"
               "\n"
               "Prints one JSON object per record:\n"
               "  {\"topic\": T, \"partition\": P, \"offset\": O, \"timestamp\": MS, \"key\": B64|null,\n"
               "   \"value\": B64|null, \"headers\": [{\"key\": S, \"value\": B64|null}]}\n"
               "Without a start flag it starts at the end of the log. Exits 0 after --max-records\n"
               "records or once no record arrived for --timeout-ms (default 10000). Every batch's CRC32C\n"
               "is verified unless --no-check-crcs is given; a damaged batch fails the run.\n"
               "\n" CLI_CONN_USAGE);
}

int main(int argc, char **argv)
{
    cli_prog = "fjord-consume";
    cli_conn cc = {0};
    const char *topic = NULL, *format = "json";
    const char *offset_s = NULL, *time_s = NULL, *partition_s = NULL, *max_s = NULL, *timeout_s = NULL;
    int from_beginning = 0, skip_crc_check = 0;
    for (int i = 1; i < argc; i++) {
        int r;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--from-beginning") == 0) {
            from_beginning = 1;
            continue;
        }
        if (strcmp(argv[i], "--no-check-crcs") == 0) {
            skip_crc_check = 1;
            continue;
        }
        if ((r = cli_conn_flag(argc, argv, &i, &cc)) != 0 || (r = cli_value(argc, argv, &i, "format", &format)) != 0 ||
            (r = cli_value(argc, argv, &i, "offset", &offset_s)) != 0 ||
            (r = cli_value(argc, argv, &i, "from-time", &time_s)) != 0 ||
            (r = cli_value(argc, argv, &i, "partition", &partition_s)) != 0 ||
            (r = cli_value(argc, argv, &i, "max-records", &max_s)) != 0 ||
            (r = cli_value(argc, argv, &i, "timeout-ms", &timeout_s)) != 0) {
            if (r < 0)
                return 2;
            continue;
        }
        if (argv[i][0] == '-' && argv[i][1] != '\0') {
            cli_error("unknown option %s", argv[i]);
            usage(stderr);
            return 2;
        }
        if (topic) {
            cli_error("unexpected argument %s (the topic is %s)", argv[i], topic);
            return 2;
        }
        topic = argv[i];
    }
    if (topic == NULL) {
        cli_error("a topic is required");
        usage(stderr);
        return 2;
    }
    if (strcmp(format, "json") != 0) {
        cli_error("--format %s: only json is supported", format);
        return 2;
    }
    if (from_beginning + (offset_s != NULL) + (time_s != NULL) > 1) {
        cli_error("use only one of --from-beginning, --offset and --from-time");
        return 2;
    }
    int64_t start = FJORD_OFFSET_LATEST, from_time = -1, partition = -1, max_records = -1, timeout_ms = 10000;
    if (from_beginning)
        start = FJORD_OFFSET_EARLIEST;
    if (offset_s && (cli_parse_i64(offset_s, &start) < 0 || start < 0)) {
        cli_error("--offset %s: expected an integer >= 0", offset_s);
        return 2;
    }
    if (time_s && (cli_parse_i64(time_s, &from_time) < 0 || from_time < 0)) {
        cli_error("--from-time %s: expected milliseconds since the epoch (>= 0)", time_s);
        return 2;
    }
    if (partition_s && (cli_parse_i64(partition_s, &partition) < 0 || partition < 0 || partition > UINT32_MAX)) {
        cli_error("--partition %s: expected an integer >= 0", partition_s);
        return 2;
    }
    if (max_s && (cli_parse_i64(max_s, &max_records) < 0 || max_records < 0)) {
        cli_error("--max-records %s: expected an integer >= 0", max_s);
        return 2;
    }
    if (timeout_s && (cli_parse_i64(timeout_s, &timeout_ms) < 0 || timeout_ms < 0 || timeout_ms > INT32_MAX)) {
        cli_error("--timeout-ms %s: expected an integer >= 0", timeout_s);
        return 2;
    }
    if (max_records == 0)
        return 0;

    fjord_conn *conn = cli_connect(&cc, "fjord-consume (C)");
    if (conn == NULL)
        return 1;
    int status = 1;
    fjord_error err;
    fjord_consumer *consumer = NULL;
    uint32_t count;
    char ctx[400];
    if (fjord_partition_count(conn, topic, &count, &err) < 0) {
        if (err.code == FJORD_ERROR_UNKNOWN_TOPIC_OR_PARTITION)
            cli_error("topic '%s' does not exist (%s: %s)", topic, fjord_error_name(err.code), err.message);
        else {
            snprintf(ctx, sizeof ctx, "metadata of topic '%s'", topic);
            cli_report(ctx, &err);
        }
        goto out;
    }
    if (partition >= (int64_t)count) {
        cli_error("--partition %" PRId64 ": topic '%s' has %" PRIu32 " partitions", partition, topic, count);
        goto out;
    }
    fjord_consumer_options copts;
    fjord_consumer_options_init(&copts);
    copts.skip_crc_check = skip_crc_check;
    consumer = fjord_consumer_new_opts(conn, &copts, &err);
    if (consumer == NULL) {
        cli_report("consume", &err);
        goto out;
    }
    uint32_t first = partition >= 0 ? (uint32_t)partition : 0, last = partition >= 0 ? (uint32_t)partition : count - 1;
    for (uint32_t p = first; p <= last; p++) {
        int64_t off = start;
        if (time_s) {
            if (fjord_list_offset(conn, topic, p, from_time, &off, &err) < 0) {
                snprintf(ctx, sizeof ctx, "%s/%" PRIu32 ": offset for time %" PRId64, topic, p, from_time);
                cli_report(ctx, &err);
                goto out;
            }
            if (off < 0) /* no record at or after the time yet: wait at the end */
                off = FJORD_OFFSET_LATEST;
        }
        if (fjord_consumer_subscribe(consumer, topic, p, off, &err) < 0) {
            snprintf(ctx, sizeof ctx, "subscribing to %s/%" PRIu32, topic, p);
            cli_report(ctx, &err);
            goto out;
        }
    }

    int64_t printed = 0;
    int64_t last_record = cli_mono_ms();
    for (;;) {
        int64_t left = last_record + timeout_ms - cli_mono_ms();
        if (left <= 0) {
            status = 0;
            break;
        }
        fjord_message_set *set;
        int r = fjord_consumer_poll(consumer, (int)left, &set, &err);
        if (r < 0) {
            cli_report("subscription failed", &err);
            break;
        }
        if (r == 0)
            continue;
        size_t n = set->record_count;
        if (max_records >= 0 && (int64_t)n > max_records - printed)
            n = (size_t)(max_records - printed);
        for (size_t i = 0; i < n; i++)
            print_record(set->topic, set->partition, &set->records[i]);
        printed += (int64_t)n;
        if (n > 0)
            last_record = cli_mono_ms();
        fjord_message_set_free(set);
        if (fflush(stdout) != 0) {
            cli_error("writing stdout: %s", strerror(errno));
            break;
        }
        if (max_records >= 0 && printed >= max_records) {
            status = 0;
            break;
        }
    }
out:
    fjord_consumer_free(consumer);
    fjord_close(conn);
    free(b64_buf);
    if (fflush(stdout) != 0 && status == 0)
        status = 1;
    return status;
}
