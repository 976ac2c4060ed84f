/* CRC32C, murmur2, base64, frame headers and error names: pure helpers of libfjord. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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
    {FJORD_ERR_IO, "IO_ERROR", 1},
    {FJORD_ERR_TLS, "TLS_ERROR", 0},
    {FJORD_ERR_PROTOCOL, "PROTOCOL_ERROR", 0},
    {FJORD_ERR_TIMEOUT, "TIMEOUT", 1},
    {FJORD_ERR_CLOSED, "CONNECTION_CLOSED", 1},
    {FJORD_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", 0},
    {FJORD_ERR_CORRUPT, "CORRUPT_DATA", 0},
    {FJORD_ERR_NO_MEMORY, "NO_MEMORY", 0},
    {FJORD_ERR_STREAM_ENDED, "STREAM_ENDED", 0},
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

/* crc32c_table[i] = CRC of byte i, reflected Castagnoli polynomial 0x82F63B78. */
static const uint32_t crc32c_table[256] = {
    0x00000000u, 0xf26b8303u, 0xe13b70f7u, 0x1350f3f4u, 0xc79a971fu, 0x35f1141cu,
    0x26a1e7e8u, 0xd4ca64ebu, 0x8ad958cfu, 0x78b2dbccu, 0x6be22838u, 0x9989ab3bu,
    0x4d43cfd0u, 0xbf284cd3u, 0xac78bf27u, 0x5e133c24u, 0x105ec76fu, 0xe235446cu,
    0xf165b798u, 0x030e349bu, 0xd7c45070u, 0x25afd373u, 0x36ff2087u, 0xc494a384u,
    0x9a879fa0u, 0x68ec1ca3u, 0x7bbcef57u, 0x89d76c54u, 0x5d1d08bfu, 0xaf768bbcu,
    0xbc267848u, 0x4e4dfb4bu, 0x20bd8edeu, 0xd2d60dddu, 0xc186fe29u, 0x33ed7d2au,
    0xe72719c1u, 0x154c9ac2u, 0x061c6936u, 0xf477ea35u, 0xaa64d611u, 0x580f5512u,
    0x4b5fa6e6u, 0xb93425e5u, 0x6dfe410eu, 0x9f95c20du, 0x8cc531f9u, 0x7eaeb2fau,
    0x30e349b1u, 0xc288cab2u, 0xd1d83946u, 0x23b3ba45u, 0xf779deaeu, 0x05125dadu,
    0x1642ae59u, 0xe4292d5au, 0xba3a117eu, 0x4851927du, 0x5b016189u, 0xa96ae28au,
    0x7da08661u, 0x8fcb0562u, 0x9c9bf696u, 0x6ef07595u, 0x417b1dbcu, 0xb3109ebfu,
    0xa0406d4bu, 0x522bee48u, 0x86e18aa3u, 0x748a09a0u, 0x67dafa54u, 0x95b17957u,
    0xcba24573u, 0x39c9c670u, 0x2a993584u, 0xd8f2b687u, 0x0c38d26cu, 0xfe53516fu,
    0xed03a29bu, 0x1f682198u, 0x5125dad3u, 0xa34e59d0u, 0xb01eaa24u, 0x42752927u,
    0x96bf4dccu, 0x64d4cecfu, 0x77843d3bu, 0x85efbe38u, 0xdbfc821cu, 0x2997011fu,
    0x3ac7f2ebu, 0xc8ac71e8u, 0x1c661503u, 0xee0d9600u, 0xfd5d65f4u, 0x0f36e6f7u,
    0x61c69362u, 0x93ad1061u, 0x80fde395u, 0x72966096u, 0xa65c047du, 0x5437877eu,
    0x4767748au, 0xb50cf789u, 0xeb1fcbadu, 0x197448aeu, 0x0a24bb5au, 0xf84f3859u,
    0x2c855cb2u, 0xdeeedfb1u, 0xcdbe2c45u, 0x3fd5af46u, 0x7198540du, 0x83f3d70eu,
    0x90a324fau, 0x62c8a7f9u, 0xb602c312u, 0x44694011u, 0x5739b3e5u, 0xa55230e6u,
    0xfb410cc2u, 0x092a8fc1u, 0x1a7a7c35u, 0xe811ff36u, 0x3cdb9bddu, 0xceb018deu,
    0xdde0eb2au, 0x2f8b6829u, 0x82f63b78u, 0x709db87bu, 0x63cd4b8fu, 0x91a6c88cu,
    0x456cac67u, 0xb7072f64u, 0xa457dc90u, 0x563c5f93u, 0x082f63b7u, 0xfa44e0b4u,
    0xe9141340u, 0x1b7f9043u, 0xcfb5f4a8u, 0x3dde77abu, 0x2e8e845fu, 0xdce5075cu,
    0x92a8fc17u, 0x60c37f14u, 0x73938ce0u, 0x81f80fe3u, 0x55326b08u, 0xa759e80bu,
    0xb4091bffu, 0x466298fcu, 0x1871a4d8u, 0xea1a27dbu, 0xf94ad42fu, 0x0b21572cu,
    0xdfeb33c7u, 0x2d80b0c4u, 0x3ed04330u, 0xccbbc033u, 0xa24bb5a6u, 0x502036a5u,
    0x4370c551u, 0xb11b4652u, 0x65d122b9u, 0x97baa1bau, 0x84ea524eu, 0x7681d14du,
    0x2892ed69u, 0xdaf96e6au, 0xc9a99d9eu, 0x3bc21e9du, 0xef087a76u, 0x1d63f975u,
    0x0e330a81u, 0xfc588982u, 0xb21572c9u, 0x407ef1cau, 0x532e023eu, 0xa145813du,
    0x758fe5d6u, 0x87e466d5u, 0x94b49521u, 0x66df1622u, 0x38cc2a06u, 0xcaa7a905u,
    0xd9f75af1u, 0x2b9cd9f2u, 0xff56bd19u, 0x0d3d3e1au, 0x1e6dcdeeu, 0xec064eedu,
    0xc38d26c4u, 0x31e6a5c7u, 0x22b65633u, 0xd0ddd530u, 0x0417b1dbu, 0xf67c32d8u,
    0xe52cc12cu, 0x1747422fu, 0x49547e0bu, 0xbb3ffd08u, 0xa86f0efcu, 0x5a048dffu,
    0x8ecee914u, 0x7ca56a17u, 0x6ff599e3u, 0x9d9e1ae0u, 0xd3d3e1abu, 0x21b862a8u,
    0x32e8915cu, 0xc083125fu, 0x144976b4u, 0xe622f5b7u, 0xf5720643u, 0x07198540u,
    0x590ab964u, 0xab613a67u, 0xb831c993u, 0x4a5a4a90u, 0x9e902e7bu, 0x6cfbad78u,
    0x7fab5e8cu, 0x8dc0dd8fu, 0xe330a81au, 0x115b2b19u, 0x020bd8edu, 0xf0605beeu,
    0x24aa3f05u, 0xd6c1bc06u, 0xc5914ff2u, 0x37faccf1u, 0x69e9f0d5u, 0x9b8273d6u,
    0x88d28022u, 0x7ab90321u, 0xae7367cau, 0x5c18e4c9u, 0x4f48173du, 0xbd23943eu,
    0xf36e6f75u, 0x0105ec76u, 0x12551f82u, 0xe03e9c81u, 0x34f4f86au, 0xc69f7b69u,
    0xd5cf889du, 0x27a40b9eu, 0x79b737bau, 0x8bdcb4b9u, 0x988c474du, 0x6ae7c44eu,
    0xbe2da0a5u, 0x4c4623a6u, 0x5f16d052u, 0xad7d5351u,
};

uint32_t fjord_crc32c(uint32_t crc, const void *data, size_t len)
{
    const uint8_t *p = data;
    crc = ~crc;
    while (len--)
        crc = crc32c_table[(crc ^ *p++) & 0xffu] ^ (crc >> 8);
    return ~crc;
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
