/* Unit tests of libfjord and the tools' JSON reader. Prints one line per failed check and a final
 * "N passed, M failed". */
#include "fjord.h"
#include "internal.h"
#include "json.h"

#include "fjord/v1/connection.pb-c.h"
#include "fjord/v1/log.pb-c.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            passed++;                                                                              \
        } else {                                                                                   \
            failed++;                                                                              \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
        }                                                                                          \
    } while (0)

static size_t unhex(const char *hex, uint8_t *out)
{
    size_t n = 0;
    int hi = -1;
    for (const char *p = hex; *p; p++) {
        int v;
        if (*p >= '0' && *p <= '9')
            v = *p - '0';
        else if (*p >= 'a' && *p <= 'f')
            v = *p - 'a' + 10;
        else if (*p >= 'A' && *p <= 'F')
            v = *p - 'A' + 10;
        else
            continue;
        if (hi < 0)
            hi = v;
        else {
            out[n++] = (uint8_t)(hi << 4 | v);
            hi = -1;
        }
    }
    return n;
}

static void dump_diff(const char *what, const uint8_t *got, size_t glen, const uint8_t *want, size_t wlen)
{
    for (size_t i = 0; i < glen && i < wlen; i++)
        if (got[i] != want[i]) {
            printf("  %s: first difference at byte %zu: got %02x want %02x (lengths %zu/%zu)\n", what, i, got[i],
                   want[i], glen, wlen);
            return;
        }
    if (glen != wlen)
        printf("  %s: lengths differ: got %zu want %zu\n", what, glen, wlen);
}

/* ----- CRC32C ------------------------------------------------------------------------------- */

static void test_crc32c(void)
{
    CHECK(fjord_crc32c(0, "123456789", 9) == 0xE3069283u, "crc32c(123456789) = %08x", fjord_crc32c(0, "123456789", 9));
    CHECK(fjord_crc32c(0, "", 0) == 0, "crc32c(empty)");
    /* RFC 3720 (iSCSI) appendix B.4 */
    uint8_t buf[32];
    memset(buf, 0, sizeof buf);
    CHECK(fjord_crc32c(0, buf, 32) == 0x8A9136AAu, "crc32c(32 x 00) = %08x", fjord_crc32c(0, buf, 32));
    memset(buf, 0xff, sizeof buf);
    CHECK(fjord_crc32c(0, buf, 32) == 0x62A8AB43u, "crc32c(32 x ff) = %08x", fjord_crc32c(0, buf, 32));
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    CHECK(fjord_crc32c(0, buf, 32) == 0x46DD794Eu, "crc32c(00..1f) = %08x", fjord_crc32c(0, buf, 32));
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i);
    CHECK(fjord_crc32c(0, buf, 32) == 0x113FDB5Cu, "crc32c(1f..00) = %08x", fjord_crc32c(0, buf, 32));
    /* incremental */
    uint32_t part = fjord_crc32c(fjord_crc32c(0, "1234", 4), "56789", 5);
    CHECK(part == 0xE3069283u, "incremental crc32c = %08x", part);
}

/* ----- murmur2 ------------------------------------------------------------------------------ */

static void test_murmur2(void)
{
    /* Kafka's UtilsTest.testMurmur2 (Java signed ints) */
    static const struct {
        const char *in;
        int32_t want;
    } v[] = {
        {"21", -973932308},
        {"foobar", -790332482},
        {"a-little-bit-long-string", -985981536},
        {"a-little-bit-longer-string", -1486304829},
        {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
        {"abc", 479470107},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint32_t got = fjord_murmur2(v[i].in, strlen(v[i].in));
        CHECK((int32_t)got == v[i].want, "murmur2(%s) = %" PRId32 ", want %" PRId32, v[i].in, (int32_t)got, v[i].want);
        uint32_t p = fjord_partition_for_key(v[i].in, strlen(v[i].in), 1000);
        CHECK(p == ((uint32_t)v[i].want & 0x7fffffffu) % 1000, "partition_for_key(%s, 1000) = %" PRIu32, v[i].in, p);
    }
    /* bytes {12, 42, 56, 24, 109, 111} -> 274204207 (Kafka 1.0.0 Java client, via a Go port's test) */
    const uint8_t bin[] = {12, 42, 56, 24, 109, 111};
    CHECK((int32_t)fjord_murmur2(bin, sizeof bin) == 274204207, "murmur2(binary) = %" PRId32,
          (int32_t)fjord_murmur2(bin, sizeof bin));
    CHECK(fjord_partition_for_key("21", 2, 1) == 0, "one partition");
}

/* ----- base64 ------------------------------------------------------------------------------- */

static void test_base64(void)
{
    static const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        char out[16];
        size_t n = fjord_base64_encode((const uint8_t *)plain[i], strlen(plain[i]), out);
        CHECK(n == strlen(enc[i]) && strcmp(out, enc[i]) == 0, "base64(%s) = %s", plain[i], out);
        CHECK(fjord_base64_encoded_len(strlen(plain[i])) == strlen(enc[i]), "encoded_len(%zu)", strlen(plain[i]));
        uint8_t dec[16];
        long d = fjord_base64_decode(enc[i], strlen(enc[i]), dec);
        CHECK(d == (long)strlen(plain[i]) && memcmp(dec, plain[i], (size_t)d) == 0, "decode(%s)", enc[i]);
    }
    static const char *bad[] = {"Zg=", "Z===", "Zg==Zg==", "Zm9v!A==", "Zm=v", "=Zm9", "Zm9v\n", "Zm 9"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t dec[16];
        CHECK(fjord_base64_decode(bad[i], strlen(bad[i]), dec) < 0, "decode(%s) should fail", bad[i]);
    }
    uint8_t all[256], back[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    char text[400];
    size_t n = fjord_base64_encode(all, 256, text);
    CHECK(fjord_base64_decode(text, n, back) == 256 && memcmp(all, back, 256) == 0, "base64 round trip of 0..255");
}

/* ----- frame header ------------------------------------------------------------------------- */

static void test_frame_header(void)
{
    uint8_t want[12], got[12];
    unhex("00 00 00 05  00 00 00 01  00 07  01  00", want);
    fjord_frame_header h = {5, 1, 7, FJORD_FLAG_END_STREAM};
    fjord_frame_header_encode(&h, got);
    CHECK(memcmp(got, want, 12) == 0, "frame header example of protocol.md section 2");
    fjord_frame_header d;
    fjord_error err;
    CHECK(fjord_frame_header_decode(want, 100, &d, &err) == 0 && d.payload_length == 5 && d.stream_id == 1 &&
              d.method == 7 && d.flags == 1,
          "decode the example header");
    uint8_t big[12];
    fjord_frame_header hb = {0x01020304u, 0xA0B0C0D0u, 0xFFFE, FJORD_FLAG_ERROR | FJORD_FLAG_END_STREAM};
    fjord_frame_header_encode(&hb, big);
    CHECK(fjord_frame_header_decode(big, UINT32_MAX, &d, &err) == 0 && d.payload_length == 0x01020304u &&
              d.stream_id == 0xA0B0C0D0u && d.method == 0xFFFE && d.flags == 3,
          "big-endian round trip");
    CHECK(fjord_frame_header_decode(big, 100, &d, &err) < 0, "payload above the limit is rejected");
    uint8_t bad[12];
    memcpy(bad, want, 12);
    bad[10] = 0x08;
    CHECK(fjord_frame_header_decode(bad, 100, &d, &err) < 0, "unknown flag bit is rejected");
    memcpy(bad, want, 12);
    bad[11] = 1;
    CHECK(fjord_frame_header_decode(bad, 100, &d, &err) < 0, "non-zero reserved byte is rejected");
}

/* ----- batches ------------------------------------------------------------------------------ */

/* docs/protocol.md section 9: the 89-byte batch holding "hello" at 1700000000000. */
static const char *example_batch_hex =
    "09 00 00 00 00 00 00 00 00 15 00 00 00 00 19 ff"
    "ff ff ff ff ff ff ff 25 53 71 39 18 2d 01 00 00"
    "00 35 00 00 00 00 3d 01 00 00 00 41 00 68 e5 cf"
    "8b 01 00 00 49 00 68 e5 cf 8b 01 00 00 51 ff ff"
    "ff ff ff ff ff ff 5d ff ff ff ff 65 ff ff ff ff"
    "7a 07 1a 05 68 65 6c 6c 6f";

static void test_batch_example(void)
{
    uint8_t want[128];
    size_t wlen = unhex(example_batch_hex, want);
    fjord_record r;
    memset(&r, 0, sizeof r);
    r.timestamp = 1700000000000;
    r.value = (const uint8_t *)"hello";
    r.value_len = 5;
    r.has_value = 1;
    uint8_t *b;
    size_t len;
    fjord_error err;
    int rc = fjord_batch_encode(&r, 1, &b, &len, &err);
    CHECK(rc == 0 && len == 89 && wlen == 89 && memcmp(b, want, 89) == 0, "batch matches protocol.md section 9");
    if (rc == 0 && (len != wlen || memcmp(b, want, wlen) != 0))
        dump_diff("batch", b, len, want, wlen);
    if (rc == 0)
        free(b);

    /* The ProduceRequest frame of the worked example (stream 5). */
    uint8_t want_frame[160];
    size_t flen = unhex("00 00 00 72  00 00 00 05  00 14  01  00"
                        "0a 06 65 76 65 6e 74 73"
                        "18 ff ff ff ff ff ff ff ff ff 01"
                        "20 02 28 01 32 59",
                        want_frame);
    memcpy(want_frame + flen, want, wlen);
    flen += wlen;
    Fjord__V1__ProduceRequest req = FJORD__V1__PRODUCE_REQUEST__INIT;
    req.topic = "events";
    req.leader_epoch = -1;
    req.acks = FJORD__V1__ACKS__ACKS_LEADER;
    req.request_id = 1;
    req.batch.data = want;
    req.batch.len = wlen;
    uint8_t frame[200];
    size_t plen = fjord__v1__produce_request__pack(&req, frame + 12);
    fjord_frame_header h = {(uint32_t)plen, 5, FJORD_METHOD_PRODUCE, FJORD_FLAG_END_STREAM};
    fjord_frame_header_encode(&h, frame);
    CHECK(plen + 12 == flen && memcmp(frame, want_frame, flen) == 0, "produce frame matches protocol.md section 9");
    if (plen + 12 != flen || memcmp(frame, want_frame, flen) != 0)
        dump_diff("produce frame", frame, plen + 12, want_frame, flen);

    /* The handshake request of the worked example. */
    uint8_t want_hs[32], hs[64];
    size_t hlen = unhex("00 00 00 08  00 00 00 01  00 01  01  00 08 01 12 04 64 65 6d 6f", want_hs);
    Fjord__V1__HandshakeRequest hreq = FJORD__V1__HANDSHAKE_REQUEST__INIT;
    hreq.protocol_version = 1;
    hreq.client_id = "demo";
    size_t hp = fjord__v1__handshake_request__pack(&hreq, hs + 12);
    fjord_frame_header hh = {(uint32_t)hp, 1, FJORD_METHOD_HANDSHAKE, FJORD_FLAG_END_STREAM};
    fjord_frame_header_encode(&hh, hs);
    CHECK(hp + 12 == hlen && memcmp(hs, want_hs, hlen) == 0, "handshake frame matches protocol.md section 9");

    /* The fetch response's RecordBatchSet (5-byte padded length, stamped batch). */
    uint8_t set[160];
    size_t slen = unhex("0a d9 80 80 80 00"
                        "09 00 00 00 00 00 00 00 00 15 00 00 00 00 19 7b 68 e5 cf 8b 01 00 00 25 53 71 39 18",
                        set);
    memcpy(set + slen, want + 28, wlen - 28);
    slen += wlen - 28;
    fjord_message_set *ms = fjord_message_set_from_batches("events", 0, set, slen, 0, NULL, &err);
    CHECK(ms != NULL && ms->record_count == 1 && ms->records[0].offset == 0 &&
              ms->records[0].timestamp == 1700000000000 && ms->records[0].has_value &&
              ms->records[0].value_len == 5 && memcmp(ms->records[0].value, "hello", 5) == 0 &&
              !ms->records[0].has_key && ms->next_offset == 1,
          "fetch example RecordBatchSet decodes (%s)", ms ? "ok" : err.message);
    fjord_message_set_free(ms);
    ms = fjord_message_set_from_batches("events", 0, set, slen, 1, NULL, &err);
    CHECK(ms != NULL && ms->record_count == 0 && ms->next_offset == 1, "records below the offset are skipped");
    fjord_message_set_free(ms);
    set[40] ^= 1; /* inside the CRC'd bytes */
    ms = fjord_message_set_from_batches("events", 0, set, slen, 0, NULL, &err);
    CHECK(ms == NULL && err.code == FJORD_ERR_CRC_MISMATCH, "a damaged batch in a set is rejected");
    fjord_message_set_free(ms);
}

static void test_batch_round_trip(void)
{
    const uint8_t bin[] = {0, 1, 2, 0xff, 0x80};
    fjord_header h1[] = {{"trace-id", 8, (const uint8_t *)"\x01\x02\x03", 3, 1},
                         {"null-value", 10, NULL, 0, 0},
                         {"", 0, (const uint8_t *)"", 0, 1},
                         {"trace-id", 8, (const uint8_t *)"again", 5, 1}};
    fjord_record r[5];
    memset(r, 0, sizeof r);
    r[0].timestamp = 1764230400000;
    r[0].key = (const uint8_t *)"key-1";
    r[0].key_len = 5;
    r[0].has_key = 1;
    r[0].value = (const uint8_t *)"hello";
    r[0].value_len = 5;
    r[0].has_value = 1;
    r[0].headers = h1;
    r[0].header_count = 4;
    r[1].timestamp = 1764230399000; /* earlier: negative delta */
    r[1].key = (const uint8_t *)"";
    r[1].key_len = 0;
    r[1].has_key = 1; /* empty key, not null */
    r[1].value = bin;
    r[1].value_len = sizeof bin;
    r[1].has_value = 1;
    r[2].timestamp = 1764230500000;
    r[2].has_value = 0; /* tombstone, no key */
    r[3].timestamp = 1764230400000;
    r[3].value = (const uint8_t *)"";
    r[3].value_len = 0;
    r[3].has_value = 1; /* empty value, not null */
    r[4].timestamp = 0;
    r[4].value = (const uint8_t *)"x";
    r[4].value_len = 1;
    r[4].has_value = 1;
    uint8_t *b;
    size_t len;
    fjord_error err;
    CHECK(fjord_batch_encode(r, 5, &b, &len, &err) == 0, "encode 5 records: %s", err.message);
    fjord_batch *d = NULL;
    CHECK(fjord_batch_decode(b, len, &d, &err) == 0, "decode: %s", err.message);
    if (d) {
        CHECK(d->record_count == 5 && d->magic == 1 && d->compression == 0 && d->log_append_time == -1 &&
                  d->producer_id == -1 && d->producer_epoch == -1 && d->base_sequence == -1 &&
                  d->first_timestamp == 1764230400000 && d->max_timestamp == 1764230500000,
              "decoded header fields");
        int same = 1;
        for (size_t i = 0; i < 5; i++) {
            const fjord_record *a = &r[i], *e = &d->records[i];
            if (e->offset != (int64_t)i || e->timestamp != a->timestamp || e->has_key != a->has_key ||
                e->key_len != a->key_len || (a->key_len && memcmp(e->key, a->key, a->key_len)) ||
                e->has_value != a->has_value || e->value_len != a->value_len ||
                (a->value_len && memcmp(e->value, a->value, a->value_len)) || e->header_count != a->header_count) {
                printf("  record %zu differs\n", i);
                same = 0;
                continue;
            }
            for (size_t j = 0; j < a->header_count; j++) {
                const fjord_header *x = &a->headers[j], *y = &e->headers[j];
                if (x->key_len != y->key_len || memcmp(x->key, y->key, x->key_len) || x->has_value != y->has_value ||
                    x->value_len != y->value_len || (x->value_len && memcmp(x->value, y->value, x->value_len))) {
                    printf("  record %zu header %zu differs\n", i, j);
                    same = 0;
                }
            }
        }
        CHECK(same, "records round trip (keys, empty vs null, headers, negative deltas)");
        fjord_batch_free(d);
    }
    /* corruption is detected */
    b[len - 1] ^= 0x20;
    CHECK(fjord_batch_decode(b, len, &d, &err) < 0 && err.code == FJORD_ERR_CRC_MISMATCH &&
              strstr(err.message, "CRC32C") != NULL,
          "flipped bit fails the CRC check");
    b[len - 1] ^= 0x20;
    b[28] = 0x2c; /* covered by the CRC: reported as a CRC mismatch */
    CHECK(fjord_batch_decode(b, len, &d, &err) < 0 && err.code == FJORD_ERR_CRC_MISMATCH, "wrong tag is rejected");
    b[28] = 0x2d;
    CHECK(fjord_batch_decode(b, 79, &d, &err) < 0, "short batch is rejected");
    free(b);
    CHECK(fjord_batch_encode(r, 0, &b, &len, &err) < 0, "empty batch is rejected");
    fjord_header nul = {"a\0b", 3, NULL, 0, 0};
    r[0].headers = &nul;
    r[0].header_count = 1;
    CHECK(fjord_batch_encode(r, 1, &b, &len, &err) < 0, "header key with NUL is rejected");
}

/* ----- misc --------------------------------------------------------------------------------- */

static void test_misc(void)
{
    char host[64];
    uint16_t port;
    CHECK(fjord_parse_broker("127.0.0.1:7420", host, sizeof host, &port) == 0 && strcmp(host, "127.0.0.1") == 0 &&
              port == 7420,
          "parse 127.0.0.1:7420");
    CHECK(fjord_parse_broker("[::1]:9", host, sizeof host, &port) == 0 && strcmp(host, "::1") == 0 && port == 9,
          "parse [::1]:9");
    CHECK(fjord_parse_broker("localhost:65535", host, sizeof host, &port) == 0 && port == 65535, "parse localhost");
    const char *bad[] = {"localhost", "host:", ":80", "h:0", "h:65536", "h:8x", "::1:80", "[::1]80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(fjord_parse_broker(bad[i], host, sizeof host, &port) < 0, "parse %s should fail", bad[i]);
    CHECK(strcmp(fjord_error_name(20), "UNKNOWN_TOPIC_OR_PARTITION") == 0, "error name 20");
    CHECK(fjord_error_code_retriable(20) && fjord_error_code_retriable(61) && !fjord_error_code_retriable(40) &&
              !fjord_error_code_retriable(999),
          "retriable flags");
    CHECK(strcmp(fjord_error_name(999), "CODE_999") == 0, "unknown code name");
    CHECK(strcmp(fjord_error_name(FJORD_ERROR_CORRUPT_LOG), "CORRUPT_LOG") == 0 &&
              !fjord_error_code_retriable(FJORD_ERROR_CORRUPT_LOG),
          "CORRUPT_LOG (62) is known and not retriable");
    CHECK(strcmp(fjord_error_name(FJORD_ERR_CRC_MISMATCH), "CRC_MISMATCH") == 0 &&
              !fjord_error_code_retriable(FJORD_ERR_CRC_MISMATCH),
          "CRC_MISMATCH is named and not retriable");
}

/* ----- integrity of fetched batches ----------------------------------------------------------- */

/* The plain one-table CRC32C, as a reference for the library's (hardware or slicing-by-8). */
static uint32_t crc32c_reference(const uint8_t *p, size_t n)
{
    uint32_t crc = 0xffffffffu;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    return ~crc;
}

static void test_crc32c_against_reference(void)
{
    enum { N = 5000 };
    uint8_t *buf = malloc(N + 16);
    uint32_t x = 12345;
    for (size_t i = 0; i < N + 16; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (uint8_t)(x >> 16);
    }
    int ok = 1;
    /* Lengths across the paths (bytes, words, 3-way interleave at 768, folding from 256) and every
     * alignment. */
    size_t lens[] = {0, 1, 7, 8, 9, 63, 64, 65, 255, 256, 257, 767, 768, 769, 1000, 2304, 4096, N};
    for (size_t a = 0; a < 8; a++)
        for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
            if (fjord_crc32c(0, buf + a, lens[i]) != crc32c_reference(buf + a, lens[i]))
                ok = 0, printf("  crc32c differs: alignment %zu length %zu\n", a, lens[i]);
    CHECK(ok, "crc32c (%s) matches the bitwise reference", fjord_crc32c_hardware() ? "hardware" : "table");
    uint32_t part = fjord_crc32c(fjord_crc32c(0, buf, 1000), buf + 1000, N - 1000);
    CHECK(part == crc32c_reference(buf, N), "incremental crc32c over 5000 bytes");
    free(buf);
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* A RecordBatchSet of batches built by fjord_batch_encode, stamped with base offsets as the broker
 * does (bytes 1-8, outside the CRC), each with the 5-byte padded length prefix. Returns its length;
 * *pos[i] is where batch i starts in out. */
static size_t build_set(const size_t *counts, const int64_t *bases, size_t n, uint8_t *out, size_t *pos)
{
    size_t len = 0;
    for (size_t k = 0; k < n; k++) {
        fjord_record r[8];
        char values[8][32];
        memset(r, 0, sizeof r);
        for (size_t i = 0; i < counts[k]; i++) {
            int vl = snprintf(values[i], sizeof values[i], "batch-%zu-value-%zu", k, i);
            r[i].value = (const uint8_t *)values[i];
            r[i].value_len = (size_t)vl;
            r[i].has_value = 1;
            r[i].key = (const uint8_t *)"key";
            r[i].key_len = 3;
            r[i].has_key = 1;
            r[i].timestamp = 1700000000000 + (int64_t)i;
        }
        uint8_t *b;
        size_t bl;
        fjord_error err;
        if (fjord_batch_encode(r, counts[k], &b, &bl, &err) < 0) {
            printf("  encode: %s\n", err.message);
            return 0;
        }
        put64(b + 1, (uint64_t)bases[k]);
        out[len++] = 0x0a;
        for (int i = 0; i < 4; i++)
            out[len++] = (uint8_t)(((bl >> (7 * i)) & 0x7f) | 0x80);
        out[len++] = (uint8_t)(bl >> 28);
        pos[k] = len;
        memcpy(out + len, b, bl);
        len += bl;
        free(b);
    }
    return len;
}

static void test_fetched_crc_checked(void)
{
    size_t counts[] = {3, 2};
    int64_t bases[] = {40, 43};
    uint8_t set[1024], bad[1024];
    size_t pos[2];
    size_t len = build_set(counts, bases, 2, set, pos);
    fjord_batch_checks checks = {1, 41, 1};
    fjord_error err;
    fjord_message_set *ms = fjord_message_set_from_batches("events", 3, set, len, 41, &checks, &err);
    CHECK(ms && ms->record_count == 4 && ms->records[0].offset == 41 && ms->next_offset == 45,
          "a good set passes: %s", ms ? "ok" : err.message);
    fjord_message_set_free(ms);
    /* Every bit of the second batch's CRC-covered bytes [28, end). */
    int all = 1, named = 1;
    size_t b2 = pos[1], end = len;
    for (size_t i = b2 + 28; i < end; i++)
        for (int bit = 0; bit < 8; bit++) {
            memcpy(bad, set, len);
            bad[i] ^= (uint8_t)(1u << bit);
            ms = fjord_message_set_from_batches("events", 3, bad, len, 41, &checks, &err);
            if (ms != NULL || err.code != FJORD_ERR_CRC_MISMATCH || err.retriable) {
                all = 0;
                printf("  byte %zu bit %d: %s (%d)\n", i - b2, bit, ms ? "accepted" : err.message, err.code);
            }
            fjord_message_set_free(ms);
            char want[160];
            uint32_t expected = (uint32_t)bad[b2 + 24] | (uint32_t)bad[b2 + 25] << 8 | (uint32_t)bad[b2 + 26] << 16 |
                                (uint32_t)bad[b2 + 27] << 24;
            snprintf(want, sizeof want,
                     "events/3: CRC32C mismatch in the batch at offset 43: expected 0x%08x (stored in the batch), "
                     "actual 0x%08x (computed)",
                     expected, crc32c_reference(bad + b2 + 28, end - b2 - 28));
            if (strcmp(err.message, want) != 0) {
                named = 0;
                printf("  message: %s\n  wanted:  %s\n", err.message, want);
            }
        }
    CHECK(all, "every flipped bit of the covered region fails with FJORD_ERR_CRC_MISMATCH, nothing returned");
    CHECK(named, "the message names topic/partition, offset, expected and actual CRC");
    /* skip_crc_check: the damaged value comes through, the offset checks stay. */
    memcpy(bad, set, len);
    uint8_t *v = NULL;
    for (size_t i = b2; i + 15 <= len && v == NULL; i++)
        if (memcmp(bad + i, "batch-1-value-1", 15) == 0)
            v = bad + i;
    if (v)
        v[14] ^= 0x01; /* '1' -> '0' */
    fjord_batch_checks nocrc = {0, 41, 1};
    ms = fjord_message_set_from_batches("events", 3, bad, len, 41, &nocrc, &err);
    CHECK(v && ms && ms->record_count == 4 && memcmp(ms->records[3].value, "batch-1-value-0", 15) == 0,
          "skip_crc_check returns the bytes as received: %s", ms ? "ok" : err.message);
    fjord_message_set_free(ms);
    nocrc.expected_offset = 50;
    ms = fjord_message_set_from_batches("events", 3, set, len, 50, &nocrc, &err);
    CHECK(ms == NULL && err.code == FJORD_ERR_CORRUPT, "offsets are still checked without the CRC");
    fjord_message_set_free(ms);
}

static void test_fetched_offsets_contiguous(void)
{
    size_t counts[] = {4, 2, 3};
    int64_t bases[] = {10, 14, 16};
    uint8_t set[2048], bad[2048];
    size_t pos[3];
    size_t len = build_set(counts, bases, 3, set, pos);
    fjord_error err;
    fjord_batch_checks fetch = {1, 12, 1};
    fjord_message_set *ms = fjord_message_set_from_batches("t", 0, set, len, 12, &fetch, &err);
    CHECK(ms && ms->record_count == 7 && ms->records[0].offset == 12 && ms->records[6].offset == 18 &&
              ms->next_offset == 19,
          "contiguous batches pass: %s", ms ? "ok" : err.message);
    fjord_message_set_free(ms);
    /* Every bit of the second batch's base offset (outside the CRC): the continuity check sees it. */
    int all = 1;
    for (int bit = 0; bit < 64; bit++) {
        memcpy(bad, set, len);
        bad[pos[1] + 1 + bit / 8] ^= (uint8_t)(1u << (bit % 8));
        ms = fjord_message_set_from_batches("t", 0, bad, len, 12, &fetch, &err);
        if (ms != NULL || err.code != FJORD_ERR_CORRUPT || err.retriable || !strstr(err.message, "expected it at 14")) {
            all = 0;
            printf("  bit %d: %s\n", bit, ms ? "accepted" : err.message);
        }
        fjord_message_set_free(ms);
    }
    CHECK(all, "every flipped bit of a later base offset fails the continuity check");
    /* The first batch's base offset: it must hold the requested offset. */
    memcpy(bad, set, len);
    bad[pos[0] + 1 + 5] ^= 0x01; /* bit 40 */
    ms = fjord_message_set_from_batches("t", 0, bad, len, 12, &fetch, &err);
    CHECK(ms == NULL && err.code == FJORD_ERR_CORRUPT && strstr(err.message, "not the requested offset 12"),
          "the first batch must hold the requested offset: %s", ms ? "accepted" : err.message);
    fjord_message_set_free(ms);
    /* A subscription's later message starts exactly at the next offset. */
    fjord_batch_checks next = {1, 14, 0};
    ms = fjord_message_set_from_batches("t", 0, set + pos[1] - 6, len - pos[1] + 6, 14, &next, &err);
    CHECK(ms && ms->record_count == 5, "a continuing message at the next offset passes: %s", ms ? "ok" : err.message);
    fjord_message_set_free(ms);
    next.expected_offset = 13;
    ms = fjord_message_set_from_batches("t", 0, set + pos[1] - 6, len - pos[1] + 6, 13, &next, &err);
    CHECK(ms == NULL && err.code == FJORD_ERR_CORRUPT, "a continuing message must start at the next offset");
    fjord_message_set_free(ms);
}

static void test_json(void)
{
    char err[200];
    const char *ok = "{\"key\": \"a2V5LTE=\", \"value\": \"aGVsbG8=\", \"timestamp\": 1764230400000,\n"
                     " \"headers\": [{\"key\": \"trace-id\", \"value\": \"AQID\"}], \"n\": null, \"f\": -1.5e3,"
                     " \"t\": true, \"x\": false, \"esc\": \"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"}";
    json_value *v = json_parse(ok, strlen(ok), err, sizeof err);
    CHECK(v != NULL, "parse a record line: %s", err);
    if (v) {
        const json_value *ts = json_get(v, "timestamp"), *h = json_get(v, "headers"), *f = json_get(v, "f"),
                         *e = json_get(v, "esc");
        CHECK(ts && ts->is_integer && ts->integer == 1764230400000, "integer timestamp");
        CHECK(h && h->type == JSON_ARRAY && h->count == 1 && json_get(h->items[0], "key") &&
                  strcmp(json_get(h->items[0], "key")->str, "trace-id") == 0,
              "headers array");
        CHECK(f && f->type == JSON_NUMBER && !f->is_integer, "non-integer number");
        CHECK(json_get(v, "t")->boolean == 1 && json_get(v, "x")->boolean == 0, "booleans");
        CHECK(json_get(v, "n")->type == JSON_NULL, "null");
        CHECK(e && e->len == 8 + 2 + 4 && memcmp(e->str, "\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80", e->len) == 0,
              "escapes and surrogate pairs");
        json_free(v);
    }
    const char *bad[] = {"",
                         "{",
                         "{\"a\" 1}",
                         "{\"a\": 1,}",
                         "{\"a\": 1} x",
                         "{\"a\": \"\\ud800\"}",
                         "{\"a\": \"\\udc00\"}",
                         "{\"a\": \"\\x\"}",
                         "{\"a\": \"tab\there\"}",
                         "{\"a\": 01}",
                         "{\"a\": 1.}",
                         "{\"a\": tru}",
                         "{\"a\": 1, \"a\": 2}",
                         "{\"a\": \"\xc3\x28\"}",
                         "[1, 2",
                         "{'a': 1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_value *b = json_parse(bad[i], strlen(bad[i]), err, sizeof err);
        CHECK(b == NULL && err[0] != '\0', "should reject: %s", bad[i]);
        json_free(b);
    }
    v = json_parse("9223372036854775807", 19, err, sizeof err);
    CHECK(v && v->is_integer && v->integer == INT64_MAX, "INT64_MAX");
    json_free(v);
    v = json_parse("-9223372036854775808", 20, err, sizeof err);
    CHECK(v && v->is_integer && v->integer == INT64_MIN, "INT64_MIN");
    json_free(v);
    v = json_parse("9223372036854775808", 19, err, sizeof err);
    CHECK(v && v->type == JSON_NUMBER && !v->is_integer, "overflow is not an integer");
    json_free(v);
    char deep[200];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    v = json_parse(deep, 200, err, sizeof err);
    CHECK(v == NULL, "nesting limit");
    json_free(v);
}

int main(void)
{
    test_crc32c();
    test_murmur2();
    test_base64();
    test_frame_header();
    test_batch_example();
    test_batch_round_trip();
    test_misc();
    test_crc32c_against_reference();
    test_fetched_crc_checked();
    test_fetched_offsets_contiguous();
    test_json();
    printf("unit: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
