/* CRC32C, murmur2, base64, frame headers and error names: pure helpers of libfjord. */
#include "internal.h"

#include "CFjordCRC32C.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *fjord_version(void)
{
    return FJORD_VERSION_STRING;
}

/* ----- errors ----------------------------------------------------------------------------- */

void fjord_set_error(fjord_error *err, int code, const char *fmt, ...)
{
    if (err == NULL)
        return;
    err->code = code;
    err->retriable = fjord_error_code_retriable(code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

void fjord_clear_error(fjord_error *err)
{
    if (err != NULL) {
        err->code = 0;
        err->retriable = 0;
        err->message[0] = '\0';
    }
}

static const struct {
    int code;
    const char *name;
    int retriable;
} error_table[] = {
    {FJORD_ERROR_NONE, "NONE", 0},
    {FJORD_ERROR_UNKNOWN, "UNKNOWN", 0},
    {FJORD_ERROR_MALFORMED_FRAME, "MALFORMED_FRAME", 0},
    {FJORD_ERROR_FRAME_TOO_LARGE, "FRAME_TOO_LARGE", 0},
    {FJORD_ERROR_MALFORMED_MESSAGE, "MALFORMED_MESSAGE", 0},
    {FJORD_ERROR_HANDSHAKE_REQUIRED, "HANDSHAKE_REQUIRED", 0},
    {FJORD_ERROR_UNSUPPORTED_VERSION, "UNSUPPORTED_VERSION", 0},
    {FJORD_ERROR_UNKNOWN_METHOD, "UNKNOWN_METHOD", 0},
    {FJORD_ERROR_INVALID_STREAM, "INVALID_STREAM", 0},
    {FJORD_ERROR_INVALID_REQUEST, "INVALID_REQUEST", 0},
    {FJORD_ERROR_TOO_MANY_CONNECTIONS, "TOO_MANY_CONNECTIONS", 1},
    {FJORD_ERROR_BROKER_SHUTTING_DOWN, "BROKER_SHUTTING_DOWN", 1},
    {FJORD_ERROR_REQUEST_TIMED_OUT, "REQUEST_TIMED_OUT", 1},
    {FJORD_ERROR_UNKNOWN_TOPIC_OR_PARTITION, "UNKNOWN_TOPIC_OR_PARTITION", 1},
    {FJORD_ERROR_TOPIC_ALREADY_EXISTS, "TOPIC_ALREADY_EXISTS", 0},
    {FJORD_ERROR_INVALID_TOPIC, "INVALID_TOPIC", 0},
    {FJORD_ERROR_INVALID_PARTITIONS, "INVALID_PARTITIONS", 0},
    {FJORD_ERROR_INVALID_CONFIG, "INVALID_CONFIG", 0},
    {FJORD_ERROR_FENCED_LEADER_EPOCH, "FENCED_LEADER_EPOCH", 1},
    {FJORD_ERROR_UNKNOWN_LEADER_EPOCH, "UNKNOWN_LEADER_EPOCH", 1},
    {FJORD_ERROR_NOT_LEADER, "NOT_LEADER", 1},
    {FJORD_ERROR_CORRUPT_BATCH, "CORRUPT_BATCH", 0},
    {FJORD_ERROR_BATCH_TOO_LARGE, "BATCH_TOO_LARGE", 0},
    {FJORD_ERROR_UNSUPPORTED_COMPRESSION, "UNSUPPORTED_COMPRESSION", 0},
    {FJORD_ERROR_OUT_OF_ORDER_SEQUENCE, "OUT_OF_ORDER_SEQUENCE", 0},
    {FJORD_ERROR_INVALID_PRODUCER_EPOCH, "INVALID_PRODUCER_EPOCH", 0},
    {FJORD_ERROR_UNKNOWN_PRODUCER_ID, "UNKNOWN_PRODUCER_ID", 0},
    {FJORD_ERROR_OFFSET_OUT_OF_RANGE, "OFFSET_OUT_OF_RANGE", 0},
    {FJORD_ERROR_DISK_FULL, "DISK_FULL", 1},
    {FJORD_ERROR_STORAGE_ERROR, "STORAGE_ERROR", 1},
    {FJORD_ERROR_CORRUPT_LOG, "CORRUPT_LOG", 0},
    {FJORD_ERROR_LOG_TAIL_LOST, "LOG_TAIL_LOST", 0},
    {FJORD_ERROR_TOPIC_AUTHORIZATION_FAILED, "TOPIC_AUTHORIZATION_FAILED", 0},
    {FJORD_ERROR_GROUP_AUTHORIZATION_FAILED, "GROUP_AUTHORIZATION_FAILED", 0},
    {FJORD_ERROR_CLUSTER_AUTHORIZATION_FAILED, "CLUSTER_AUTHORIZATION_FAILED", 0},
    {FJORD_ERROR_AUTHENTICATION_FAILED, "AUTHENTICATION_FAILED", 0},
    {FJORD_ERR_IO, "IO_ERROR", 1},
    {FJORD_ERR_TLS, "TLS_ERROR", 0},
    {FJORD_ERR_PROTOCOL, "PROTOCOL_ERROR", 0},
    {FJORD_ERR_TIMEOUT, "TIMEOUT", 1},
    {FJORD_ERR_CLOSED, "CONNECTION_CLOSED", 1},
    {FJORD_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", 0},
    {FJORD_ERR_CORRUPT, "CORRUPT_DATA", 0},
    {FJORD_ERR_NO_MEMORY, "NO_MEMORY", 0},
    {FJORD_ERR_STREAM_ENDED, "STREAM_ENDED", 0},
    {FJORD_ERR_CRC_MISMATCH, "CRC_MISMATCH", 0},
};

const char *fjord_error_name(int code)
{
    for (size_t i = 0; i < sizeof error_table / sizeof error_table[0]; i++)
        if (error_table[i].code == code)
            return error_table[i].name;
    static _Thread_local char buf[32];
    snprintf(buf, sizeof buf, "CODE_%d", code);
    return buf;
}

int fjord_error_code_retriable(int code)
{
    for (size_t i = 0; i < sizeof error_table / sizeof error_table[0]; i++)
        if (error_table[i].code == code)
            return error_table[i].retriable;
    return 0;
}

/* ----- CRC32C ----------------------------------------------------------------------------- */

uint32_t fjord_crc32c(uint32_t crc, const void *data, size_t len)
{
    return cfjord_crc32c_update(crc, data, len);
}

int fjord_crc32c_hardware(void)
{
    return cfjord_crc32c_is_hardware_accelerated();
}

/* ----- murmur2 (Kafka) -------------------------------------------------------------------- */

uint32_t fjord_murmur2(const void *data, size_t len)
{
    const uint8_t *d = data;
    const uint32_t seed = 0x9747b28cu, m = 0x5bd1e995u;
    const int r = 24;
    uint32_t h = seed ^ (uint32_t)len;
    size_t n4 = len / 4;
    for (size_t i = 0; i < n4; i++) {
        const uint8_t *q = d + 4 * i;
        uint32_t k = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
        k *= m;
        k ^= k >> r;
        k *= m;
        h *= m;
        h ^= k;
    }
    const uint8_t *tail = d + (len & ~(size_t)3);
    switch (len % 4) {
    case 3:
        h ^= (uint32_t)tail[2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)tail[1] << 8;
        /* fall through */
    case 1:
        h ^= (uint32_t)tail[0];
        h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

uint32_t fjord_partition_for_key(const void *key, size_t len, uint32_t partitions)
{
    if (partitions == 0)
        return 0;
    return (fjord_murmur2(key, len) & 0x7fffffffu) % partitions;
}

/* ----- base64 ----------------------------------------------------------------------------- */

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t fjord_base64_encoded_len(size_t len)
{
    return (len + 2) / 3 * 4;
}

size_t fjord_base64_encode(const uint8_t *data, size_t len, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)data[i] << 16;
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8;
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

long fjord_base64_decode(const char *text, size_t len, uint8_t *out)
{
    if (len % 4 != 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int last = i + 4 == len;
        int v[4];
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            unsigned char c = (unsigned char)text[i + j];
            if (c == '=' && last && j >= 2) {
                v[j] = 0;
                pad++;
                continue;
            }
            if (pad > 0) /* data after padding */
                return -1;
            v[j] = b64_value(c);
            if (v[j] < 0)
                return -1;
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (uint8_t)(w >> 16);
        if (pad < 2)
            out[o++] = (uint8_t)(w >> 8);
        if (pad < 1)
            out[o++] = (uint8_t)w;
    }
    return (long)o;
}

/* ----- frame headers ---------------------------------------------------------------------- */

void fjord_frame_header_encode(const fjord_frame_header *h, uint8_t out[FJORD_FRAME_HEADER_SIZE])
{
    out[0] = (uint8_t)(h->payload_length >> 24);
    out[1] = (uint8_t)(h->payload_length >> 16);
    out[2] = (uint8_t)(h->payload_length >> 8);
    out[3] = (uint8_t)h->payload_length;
    out[4] = (uint8_t)(h->stream_id >> 24);
    out[5] = (uint8_t)(h->stream_id >> 16);
    out[6] = (uint8_t)(h->stream_id >> 8);
    out[7] = (uint8_t)h->stream_id;
    out[8] = (uint8_t)(h->method >> 8);
    out[9] = (uint8_t)h->method;
    out[10] = h->flags;
    out[11] = 0;
}

int fjord_frame_header_decode(const uint8_t in[FJORD_FRAME_HEADER_SIZE], uint32_t max_payload,
                              fjord_frame_header *h, fjord_error *err)
{
    h->payload_length = (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | in[3];
    h->stream_id = (uint32_t)in[4] << 24 | (uint32_t)in[5] << 16 | (uint32_t)in[6] << 8 | in[7];
    h->method = (uint16_t)((unsigned)in[8] << 8 | in[9]);
    h->flags = in[10];
    if (h->flags & ~(FJORD_FLAG_END_STREAM | FJORD_FLAG_ERROR | FJORD_FLAG_CANCEL)) {
        fjord_set_error(err, FJORD_ERR_PROTOCOL, "malformed frame: unknown flag bits 0x%02x", h->flags);
        return -1;
    }
    if (in[11] != 0) {
        fjord_set_error(err, FJORD_ERR_PROTOCOL, "malformed frame: reserved byte 0x%02x", in[11]);
        return -1;
    }
    if (h->payload_length > max_payload) {
        fjord_set_error(err, FJORD_ERR_PROTOCOL, "frame too large: payload %u bytes, limit %u",
                        h->payload_length, max_payload);
        return -1;
    }
    return 0;
}
