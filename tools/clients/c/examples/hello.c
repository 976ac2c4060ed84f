/* hello.c: produce three records and read them back with an installed libfjord.
 *
 *   cc hello.c $(pkg-config --cflags --libs fjord) -o hello
 *   ./hello 127.0.0.1:7420 ca.pem [client.pem client-key.pem]
 *   ./hello --version
 */
#include <fjord.h>

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    printf("libfjord %s (header %s)\n", fjord_version(), FJORD_VERSION_STRING);
    if (argc < 3)
        return argc == 2 && strcmp(argv[1], "--version") == 0 ? 0 : 2;

    char host[256];
    uint16_t port;
    if (fjord_parse_broker(argv[1], host, sizeof host, &port) < 0) {
        fprintf(stderr, "bad broker address %s (want HOST:PORT)\n", argv[1]);
        return 2;
    }
    fjord_conn_options opts;
    fjord_conn_options_init(&opts);
    opts.ca_file = argv[2];                          /* the broker's CA */
    opts.cert_file = argc > 3 ? argv[3] : NULL;      /* mutual TLS, if the broker asks */
    opts.key_file = argc > 4 ? argv[4] : NULL;

    fjord_error err;
    fjord_conn *conn = fjord_connect(host, port, &opts, &err);
    if (conn == NULL) {
        fprintf(stderr, "connect: %s: %s\n", fjord_error_name(err.code), err.message);
        return 1;
    }
    if (fjord_create_topic(conn, "hello", 1, NULL, &err) < 0 && err.code != FJORD_ERROR_TOPIC_ALREADY_EXISTS) {
        fprintf(stderr, "create topic: %s\n", err.message);
        return 1;
    }

    /* An idempotent producer (the default): retries after a lost connection never duplicate. */
    fjord_producer_options po;
    fjord_producer_options_init(&po);
    po.acks = FJORD_ACKS_DURABLE;
    fjord_producer *p = fjord_producer_new_opts(conn, &po, &err);
    const char *words[] = {"hello", "fjord", "world"};
    fjord_record recs[3];
    memset(recs, 0, sizeof recs);
    for (int i = 0; i < 3; i++) {
        recs[i].value = (const uint8_t *)words[i];
        recs[i].value_len = strlen(words[i]);
        recs[i].has_value = 1;
    }
    fjord_produce_result res;
    if (p == NULL || fjord_producer_send(p, "hello", 0, recs, 3, NULL, &err) < 0 ||
        fjord_producer_poll(p, 30000, &res, &err) != 1 || res.error.code != 0) {
        fprintf(stderr, "produce: %s\n", p && res.error.code ? res.error.message : err.message);
        return 1;
    }
    printf("produced 3 records at offsets %lld..%lld\n", (long long)res.base_offset, (long long)res.last_offset);
    fjord_producer_free(p);

    fjord_message_set *set;
    if (fjord_fetch(conn, "hello", 0, res.base_offset, 1000, 0, &set, &err) < 0) {
        fprintf(stderr, "fetch: %s\n", err.message);
        return 1;
    }
    for (size_t i = 0; i < set->record_count && i < 3; i++)
        printf("offset %lld: %.*s\n", (long long)set->records[i].offset, (int)set->records[i].value_len,
               (const char *)set->records[i].value);
    fjord_message_set_free(set);
    fjord_close(conn);
    return 0;
}
