/* Record batches (docs/storage-format.md): building, checking and decoding, and message sets. */
#include "internal.h"

#include "fjord/v1/records.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The 12 header tags at their fixed positions. */
static const struct {
    size_t pos;
    uint8_t tag;
} header_tags[12] = {
    {0, 0x09}, {9, 0x15}, {14, 0x19}, {23, 0x25}, {28, 0x2D}, {33, 0x35},
    {38, 0x3D}, {43, 0x41}, {52, 0x49}, {61, 0x51}, {70, 0x5D}, {75, 0x65},
};

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

int fjord_batch_encode(const fjord_record *records, size_t n, uint8_t **out, size_t *out_len,
                       fjord_error *err)
{
    *out = NULL;
    *out_len = 0;
    if (n == 0 || records == NULL) {
        fjord_set_error(err, FJORD_ERR_INVALID_ARGUMENT, "a batch needs at least one record");
        return -1;
    }
    if (n > UINT32_MAX) {
        fjord_set_error(err, FJORD_ERR_INVALID_ARGUMENT, "too many records for one batch");
        return -1;
    }
    size_t total_headers = 0;
    for (size_t i = 0; i < n; i++)
        total_headers += records[i].header_count;

    int rc = -1;
    Fjord__V1__Record *recs = calloc(n, sizeof *recs);
    Fjord__V1__Record **rec_ptrs = calloc(n, sizeof *rec_ptrs);
    Fjord__V1__RecordHeader *hdrs = total_headers ? calloc(total_headers, sizeof *hdrs) : NULL;
    Fjord__V1__RecordHeader **hdr_ptrs = total_headers ? calloc(total_headers, sizeof *hdr_ptrs) : NULL;
    char **keys = total_headers ? calloc(total_headers, sizeof *keys) : NULL;
    uint8_t *buf = NULL;
    if (!recs || !rec_ptrs || (total_headers && (!hdrs || !hdr_ptrs || !keys))) {
        fjord_set_error(err, FJORD_ERR_NO_MEMORY, "out of memory building a batch");
        goto done;
    }

    int64_t first = records[0].timestamp, max = records[0].timestamp;
    for (size_t i = 1; i < n; i++)
        if (records[i].timestamp > max)
            max = records[i].timestamp;

    size_t h = 0;
    for (size_t i = 0; i < n; i++) {
        const fjord_record *r = &records[i];
        Fjord__V1__Record *m = &recs[i];
        fjord__v1__record__init(m);
        int64_t delta = (int64_t)((uint64_t)r->timestamp - (uint64_t)first);
        m->has_timestamp_delta = delta != 0; /* as proto3 writes it: zero is not written */
        m->timestamp_delta = delta;
        if (r->has_key) {
            m->has_key = 1;
            m->key.len = r->key_len;
            m->key.data = (uint8_t *)(uintptr_t)r->key;
        }
        if (r->has_value) {
            m->has_value = 1;
            m->value.len = r->value_len;
            m->value.data = (uint8_t *)(uintptr_t)r->value;
        }
        if (r->header_count) {
            m->n_headers = r->header_count;
            m->headers = &hdr_ptrs[h];
            for (size_t j = 0; j < r->header_count; j++, h++) {
                const fjord_header *src = &r->headers[j];
                Fjord__V1__RecordHeader *hm = &hdrs[h];
                fjord__v1__record_header__init(hm);
                hdr_ptrs[h] = hm;
                if (src->key_len > 0) {
                    if (memchr(src->key, '\0', src->key_len) != NULL) {
                        fjord_set_error(err, FJORD_ERR_INVALID_ARGUMENT,
                                        "record %zu: header key contains a NUL character", i);
                        goto done;
                    }
                    keys[h] = malloc(src->key_len + 1);
                    if (keys[h] == NULL) {
                        fjord_set_error(err, FJORD_ERR_NO_MEMORY, "out of memory building a batch");
                        goto done;
                    }
                    memcpy(keys[h], src->key, src->key_len);
                    keys[h][src->key_len] = '\0';
                    hm->key = keys[h]; /* empty keys stay NULL: not written, as in proto3 */
                }
                if (src->has_value) {
                    hm->has_value = 1;
                    hm->value.len = src->value_len;
                    hm->value.data = (uint8_t *)(uintptr_t)src->value;
                }
            }
        }
        rec_ptrs[i] = m;
    }

    Fjord__V1__RecordBatch b = FJORD__V1__RECORD_BATCH__INIT;
    b.has_base_offset = 1;
    b.base_offset = 0;
    b.has_partition_leader_epoch = 1;
    b.partition_leader_epoch = 0;
    b.has_log_append_time = 1;
    b.log_append_time = -1;
    b.has_crc32c = 1;
    b.crc32c = 0;
    b.has_magic = 1;
    b.magic = 1;
    b.has_compression = 1;
    b.compression = 0;
    b.has_record_count = 1;
    b.record_count = (uint32_t)n;
    b.has_first_timestamp = 1;
    b.first_timestamp = first;
    b.has_max_timestamp = 1;
    b.max_timestamp = max;
    b.has_producer_id = 1;
    b.producer_id = -1;
    b.has_producer_epoch = 1;
    b.producer_epoch = -1;
    b.has_base_sequence = 1;
    b.base_sequence = -1;
    b.n_records = n;
    b.records = rec_ptrs;

    size_t len = fjord__v1__record_batch__get_packed_size(&b);
    buf = malloc(len);
    if (buf == NULL) {
        fjord_set_error(err, FJORD_ERR_NO_MEMORY, "out of memory building a batch (%zu bytes)", len);
        goto done;
    }
    size_t packed = fjord__v1__record_batch__pack(&b, buf);
    if (packed != len || len < FJORD_BATCH_HEADER_SIZE) {
        fjord_set_error(err, FJORD_ERR_PROTOCOL, "batch encoding produced %zu of %zu bytes", packed, len);
        goto done;
    }
    for (size_t i = 0; i < 12; i++) {
        if (buf[header_tags[i].pos] != header_tags[i].tag) {
            fjord_set_error(err, FJORD_ERR_PROTOCOL,
                            "batch encoding: tag 0x%02x at byte %zu, expected 0x%02x",
                            buf[header_tags[i].pos], header_tags[i].pos, header_tags[i].tag);
            goto done;
        }
    }
    put_le32(buf + 24, fjord_crc32c(0, buf + 28, len - 28));
    *out = buf;
    *out_len = len;
    buf = NULL;
    rc = 0;
done:
    if (keys)
        for (size_t i = 0; i < total_headers; i++)
            free(keys[i]);
    free(keys);
    free(hdr_ptrs);
    free(hdrs);
    free(rec_ptrs);
    free(recs);
    free(buf);
    return rc;
}

typedef struct batch_internal {
    Fjord__V1__RecordBatch *msg;
    fjord_header *headers;
} batch_internal;

/* Checks and decodes one batch. `topic` (NULL: none) and `partition` only name it in errors. The
 * CRC32C comes first, so that any damaged bit of bytes [28, end) is reported as a CRC mismatch. */
static int batch_decode(const uint8_t *data, size_t len, int check_crc, const char *topic, uint32_t partition,
                        fjord_batch **out, fjord_error *err)
{
    *out = NULL;
    char where[300];
    if (topic)
        snprintf(where, sizeof where, "%s/%u: ", topic, partition);
    else
        where[0] = '\0';
    if (len < FJORD_BATCH_HEADER_SIZE) {
        fjord_set_error(err, FJORD_ERR_CORRUPT, "%sbatch of %zu bytes is shorter than its %d-byte header", where,
                        len, FJORD_BATCH_HEADER_SIZE);
        return -1;
    }
    long long base = (long long)le64(data + 1);
    if (check_crc) {
        uint32_t expected = le32(data + 24);
        uint32_t actual = fjord_crc32c(0, data + 28, len - 28);
        if (expected != actual) {
            fjord_set_error(err, FJORD_ERR_CRC_MISMATCH,
                            "%sCRC32C mismatch in the batch at offset %lld: expected 0x%08x (stored in the batch), "
                            "actual 0x%08x (computed)", where, base, expected, actual);
            return -1;
        }
    }
    for (size_t i = 0; i < 12; i++) {
        if (data[header_tags[i].pos] != header_tags[i].tag) {
            fjord_set_error(err, FJORD_ERR_CORRUPT, "%sbatch at offset %lld: tag 0x%02x at byte %zu, expected 0x%02x",
                            where, base, data[header_tags[i].pos], header_tags[i].pos, header_tags[i].tag);
            return -1;
        }
    }
    uint32_t magic = le32(data + 29);
    if (magic != 1) {
        fjord_set_error(err, FJORD_ERR_CORRUPT, "%sbatch at offset %lld: magic %u, expected 1", where, base, magic);
        return -1;
    }
    uint32_t compression = le32(data + 34);
    if (compression != 0) {
        fjord_set_error(err, FJORD_ERR_CORRUPT, "%sbatch at offset %lld: compression %u is not supported", where,
                        base, compression);
        return -1;
    }
    Fjord__V1__RecordBatch *m = fjord__v1__record_batch__unpack(NULL, len, data);
    if (m == NULL) {
        fjord_set_error(err, FJORD_ERR_CORRUPT, "%sbatch at offset %lld does not decode as fjord.v1.RecordBatch",
                        where, base);
        return -1;
    }
    if (m->record_count != m->n_records || m->n_records == 0) {
        fjord_set_error(err, FJORD_ERR_CORRUPT, "%sbatch at offset %lld declares %u records but holds %zu", where,
                        base, m->record_count, m->n_records);
        fjord__v1__record_batch__free_unpacked(m, NULL);
        return -1;
    }
    fjord_batch *b = calloc(1, sizeof *b);
    batch_internal *in = calloc(1, sizeof *in);
    size_t total_headers = 0;
    for (size_t i = 0; i < m->n_records; i++)
        total_headers += m->records[i]->n_headers;
    fjord_record *recs = calloc(m->n_records, sizeof *recs);
    fjord_header *hdrs = total_headers ? calloc(total_headers, sizeof *hdrs) : NULL;
    if (!b || !in || !recs || (total_headers && !hdrs)) {
        free(b);
        free(in);
        free(recs);
        free(hdrs);
        fjord__v1__record_batch__free_unpacked(m, NULL);
        fjord_set_error(err, FJORD_ERR_NO_MEMORY, "out of memory decoding a batch");
        return -1;
    }
    in->msg = m;
    in->headers = hdrs;
    b->internal_ = in;
    b->base_offset = (int64_t)m->base_offset;
    b->partition_leader_epoch = m->partition_leader_epoch;
    b->log_append_time = m->log_append_time;
    b->crc32c = m->crc32c;
    b->magic = m->magic;
    b->compression = m->compression;
    b->first_timestamp = m->first_timestamp;
    b->max_timestamp = m->max_timestamp;
    b->producer_id = m->producer_id;
    b->producer_epoch = m->producer_epoch;
    b->base_sequence = m->base_sequence;
    b->record_count = m->n_records;
    b->records = recs;
    size_t h = 0;
    for (size_t i = 0; i < m->n_records; i++) {
        const Fjord__V1__Record *r = m->records[i];
        fjord_record *d = &recs[i];
        d->offset = b->base_offset + (int64_t)i;
        d->timestamp = (int64_t)((uint64_t)m->first_timestamp + (uint64_t)r->timestamp_delta);
        d->has_key = r->has_key;
        d->key = r->has_key ? r->key.data : NULL;
        d->key_len = r->has_key ? r->key.len : 0;
        d->has_value = r->has_value;
        d->value = r->has_value ? r->value.data : NULL;
        d->value_len = r->has_value ? r->value.len : 0;
        d->header_count = r->n_headers;
        d->headers = r->n_headers ? &hdrs[h] : NULL;
        for (size_t j = 0; j < r->n_headers; j++, h++) {
            const Fjord__V1__RecordHeader *rh = r->headers[j];
            hdrs[h].key = rh->key ? rh->key : "";
            hdrs[h].key_len = rh->key ? strlen(rh->key) : 0;
            hdrs[h].has_value = rh->has_value;
            hdrs[h].value = rh->has_value ? rh->value.data : NULL;
            hdrs[h].value_len = rh->has_value ? rh->value.len : 0;
        }
    }
    *out = b;
    return 0;
}

int fjord_batch_decode(const uint8_t *data, size_t len, fjord_batch **out, fjord_error *err)
{
    return batch_decode(data, len, 1, NULL, 0, out, err);
}

void fjord_batch_free(fjord_batch *b)
{
    if (b == NULL)
        return;
    batch_internal *in = b->internal_;
    if (in) {
        fjord__v1__record_batch__free_unpacked(in->msg, NULL);
        free(in->headers);
        free(in);
    }
    free(b->records);
    free(b);
}

/* ----- protobuf wire reader --------------------------------------------------------------- */

static int read_varint(fjord_pb_reader *r, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->p >= r->end)
            return -1;
        uint8_t b = *r->p++;
        if (shift == 63 && (b & 0x7e))
            return -1;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

int fjord_pb_next(fjord_pb_reader *r, fjord_pb_field *f)
{
    if (r->p >= r->end)
        return 0;
    uint64_t key;
    if (read_varint(r, &key) < 0)
        return -1;
    f->number = (uint32_t)(key >> 3);
    f->wire_type = (uint32_t)(key & 7);
    f->data = NULL;
    f->len = 0;
    f->varint = 0;
    if (f->number == 0 || key >> 32)
        return -1;
    switch (f->wire_type) {
    case 0:
        return read_varint(r, &f->varint) < 0 ? -1 : 1;
    case 1:
        if (r->end - r->p < 8)
            return -1;
        for (int i = 7; i >= 0; i--)
            f->varint = f->varint << 8 | r->p[i];
        r->p += 8;
        return 1;
    case 5:
        if (r->end - r->p < 4)
            return -1;
        f->varint = le32(r->p);
        r->p += 4;
        return 1;
    case 2: {
        uint64_t len;
        if (read_varint(r, &len) < 0 || len > (uint64_t)(r->end - r->p))
            return -1;
        f->data = r->p;
        f->len = (size_t)len;
        r->p += len;
        return 1;
    }
    default:
        return -1;
    }
}

/* ----- message sets ----------------------------------------------------------------------- */

typedef struct set_internal {
    char *topic;
    fjord_batch **batches;
    size_t n_batches;
} set_internal;

void fjord_message_set_free(fjord_message_set *s)
{
    if (s == NULL)
        return;
    set_internal *in = s->internal_;
    if (in) {
        for (size_t i = 0; i < in->n_batches; i++)
            fjord_batch_free(in->batches[i]);
        free(in->batches);
        free(in->topic);
        free(in);
    }
    free(s->records);
    free(s);
}

fjord_message_set *fjord_message_set_from_batches(const char *topic, uint32_t partition,
                                                  const uint8_t *set, size_t len,
                                                  int64_t min_offset, const fjord_batch_checks *checks,
                                                  fjord_error *err)
{
    fjord_message_set *s = calloc(1, sizeof *s);
    set_internal *in = calloc(1, sizeof *in);
    if (!s || !in) {
        free(s);
        free(in);
        fjord_set_error(err, FJORD_ERR_NO_MEMORY, "out of memory");
        return NULL;
    }
    s->internal_ = in;
    in->topic = strdup(topic ? topic : "");
    if (in->topic == NULL)
        goto oom;
    s->topic = in->topic;
    s->partition = partition;
    s->high_watermark = -1;
    s->log_start_offset = -1;
    s->next_offset = min_offset;

    /* Pass 1: count batches. */
    size_t n = 0;
    fjord_pb_reader r = {set, set + len};
    fjord_pb_field f;
    int st;
    while ((st = fjord_pb_next(&r, &f)) == 1)
        if (f.number == 1 && f.wire_type == 2)
            n++;
    if (st < 0) {
        fjord_set_error(err, FJORD_ERR_PROTOCOL, "malformed RecordBatchSet (%zu bytes)", len);
        fjord_message_set_free(s);
        return NULL;
    }
    if (n) {
        in->batches = calloc(n, sizeof *in->batches);
        if (!in->batches)
            goto oom;
    }
    size_t total = 0;
    int check_crc = checks ? checks->check_crc : 1;
    int64_t expected = checks ? checks->expected_offset : -1;
    int holding = checks ? checks->holding : 0;
    r.p = set;
    while (fjord_pb_next(&r, &f) == 1) {
        if (f.number != 1 || f.wire_type != 2)
            continue;
        fjord_batch *b;
        if (batch_decode(f.data, f.len, check_crc, s->topic, partition, &b, err) < 0) {
            fjord_message_set_free(s);
            return NULL;
        }
        in->batches[in->n_batches++] = b;
        /* Offsets are contiguous: the first batch holds (fetch) or starts at (a subscription's later
         * message) the expected offset; each later batch starts where the previous one ended. */
        int64_t end = b->base_offset + (int64_t)b->record_count;
        if (expected >= 0) {
            int ok = holding ? b->base_offset <= expected && expected < end : b->base_offset == expected;
            if (!ok) {
                if (holding)
                    fjord_set_error(err, FJORD_ERR_CORRUPT,
                                    "%s/%u: the first batch holds offsets %lld..%lld, not the requested offset %lld",
                                    s->topic, partition, (long long)b->base_offset, (long long)end - 1,
                                    (long long)expected);
                else
                    fjord_set_error(err, FJORD_ERR_CORRUPT,
                                    "%s/%u: batch at offset %lld, expected it at %lld (offsets must be contiguous)",
                                    s->topic, partition, (long long)b->base_offset, (long long)expected);
                fjord_message_set_free(s);
                return NULL;
            }
        }
        expected = end;
        holding = 0;
        for (size_t i = 0; i < b->record_count; i++)
            if (b->records[i].offset >= min_offset)
                total++;
        int64_t next = b->base_offset + (int64_t)b->record_count;
        if (next > s->next_offset)
            s->next_offset = next;
    }
    if (total) {
        s->records = calloc(total, sizeof *s->records);
        if (!s->records)
            goto oom;
    }
    for (size_t k = 0; k < in->n_batches; k++) {
        fjord_batch *b = in->batches[k];
        for (size_t i = 0; i < b->record_count; i++)
            if (b->records[i].offset >= min_offset)
                s->records[s->record_count++] = b->records[i];
    }
    return s;
oom:
    fjord_message_set_free(s);
    fjord_set_error(err, FJORD_ERR_NO_MEMORY, "out of memory");
    return NULL;
}
