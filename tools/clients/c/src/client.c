/* Methods: admin and metadata, produce, fetch, subscribe. */
#include "internal.h"

#include "fjord/v1/errors.pb-c.h"
#include "fjord/v1/log.pb-c.h"
#include "fjord/v1/topics.pb-c.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int fjord_unary_raw(fjord_conn *c, uint16_t method, const ProtobufCMessage *req, int timeout_ms,
                    fjord_frame **out, fjord_error *err);

/* ----- admin and metadata ----------------------------------------------------------------- */

int fjord_create_topic(fjord_conn *c, const char *name, uint32_t partitions, const char *const *configs,
                       fjord_error *err)
{
    size_t n = 0;
    if (configs)
        while (configs[2 * n] != NULL) {
            if (configs[2 * n + 1] == NULL) {
                fjord_set_error(err, FJORD_ERR_INVALID_ARGUMENT, "config %s has no value", configs[2 * n]);
                return -1;
            }
            n++;
        }
    Fjord__V1__CreateTopicRequest__ConfigsEntry *entries = n ? calloc(n, sizeof *entries) : NULL;
    Fjord__V1__CreateTopicRequest__ConfigsEntry **ptrs = n ? calloc(n, sizeof *ptrs) : NULL;
    if (n && (!entries || !ptrs)) {
        free(entries);
        free(ptrs);
        fjord_set_error(err, FJORD_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        fjord__v1__create_topic_request__configs_entry__init(&entries[i]);
        entries[i].key = (char *)(uintptr_t)configs[2 * i];
        entries[i].value = (char *)(uintptr_t)configs[2 * i + 1];
        ptrs[i] = &entries[i];
    }
    Fjord__V1__CreateTopicRequest req = FJORD__V1__CREATE_TOPIC_REQUEST__INIT;
    req.name = (char *)(uintptr_t)name;
    req.partitions = partitions;
    req.n_configs = n;
    req.configs = ptrs;
    ProtobufCMessage *resp = fjord_unary(c, FJORD_METHOD_CREATE_TOPIC, &req.base,
                                         &fjord__v1__create_topic_response__descriptor, fjord_conn_timeout(c), err);
    free(entries);
    free(ptrs);
    if (resp == NULL)
        return -1;
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

int fjord_partition_count(fjord_conn *c, const char *topic, uint32_t *count, fjord_error *err)
{
    fjord_topic_meta m;
    if (fjord_topic_metadata(c, topic, &m, err) < 0)
        return -1;
    *count = m.partitions;
    return 0;
}

int fjord_topic_metadata(fjord_conn *c, const char *topic, fjord_topic_meta *meta, fjord_error *err)
{
    char *topics[1] = {(char *)(uintptr_t)topic};
    Fjord__V1__GetMetadataRequest req = FJORD__V1__GET_METADATA_REQUEST__INIT;
    req.n_topics = 1;
    req.topics = topics;
    Fjord__V1__GetMetadataResponse *resp = (Fjord__V1__GetMetadataResponse *)fjord_unary(
        c, FJORD_METHOD_GET_METADATA, &req.base, &fjord__v1__get_metadata_response__descriptor,
        fjord_conn_timeout(c), err);
    if (resp == NULL)
        return -1;
    int rc = -1;
    const Fjord__V1__TopicMetadata *tm = NULL;
    for (size_t i = 0; i < resp->n_topics; i++) {
        const Fjord__V1__TopicMetadata *t = resp->topics[i];
        if (t && t->topic && t->topic->name && strcmp(t->topic->name, topic) == 0)
            tm = t;
    }
    if (tm == NULL && resp->n_topics == 1)
        tm = resp->topics[0];
    if (tm == NULL) {
        fjord_set_error(err, FJORD_ERROR_UNKNOWN_TOPIC_OR_PARTITION, "topic %s is not in the metadata", topic);
    } else if (fjord_error_from_msg(tm->error, err) != 0) {
        /* err filled */
    } else if (tm->topic == NULL || tm->topic->n_partitions == 0) {
        fjord_set_error(err, FJORD_ERROR_UNKNOWN_TOPIC_OR_PARTITION, "topic %s has no partitions", topic);
    } else {
        meta->partitions = (uint32_t)tm->topic->n_partitions;
        meta->max_message_bytes = fjord_conn_broker(c)->max_batch_bytes;
        for (size_t i = 0; i < tm->topic->n_configs; i++) {
            const Fjord__V1__TopicInfo__ConfigsEntry *e = tm->topic->configs[i];
            if (e && e->key && e->value && strcmp(e->key, "max.message.bytes") == 0) {
                char *end;
                unsigned long long v = strtoull(e->value, &end, 10);
                if (*e->value && *end == '\0' && v > 0 && v <= UINT32_MAX)
                    meta->max_message_bytes = (uint32_t)v;
            }
        }
        rc = 0;
    }
    fjord__v1__get_metadata_response__free_unpacked(resp, NULL);
    return rc;
}

int fjord_list_offset(fjord_conn *c, const char *topic, uint32_t partition, int64_t timestamp, int64_t *offset,
                      fjord_error *err)
{
    Fjord__V1__ListOffsetsPartition p = FJORD__V1__LIST_OFFSETS_PARTITION__INIT;
    p.topic = (char *)(uintptr_t)topic;
    p.partition = partition;
    p.timestamp = timestamp;
    p.leader_epoch = -1;
    Fjord__V1__ListOffsetsPartition *ps[1] = {&p};
    Fjord__V1__ListOffsetsRequest req = FJORD__V1__LIST_OFFSETS_REQUEST__INIT;
    req.n_partitions = 1;
    req.partitions = ps;
    Fjord__V1__ListOffsetsResponse *resp = (Fjord__V1__ListOffsetsResponse *)fjord_unary(
        c, FJORD_METHOD_LIST_OFFSETS, &req.base, &fjord__v1__list_offsets_response__descriptor,
        fjord_conn_timeout(c), err);
    if (resp == NULL)
        return -1;
    int rc = -1;
    if (resp->n_partitions != 1 || resp->partitions[0] == NULL)
        fjord_set_error(err, FJORD_ERR_PROTOCOL, "ListOffsets answered %zu results for 1 partition",
                        resp->n_partitions);
    else if (fjord_error_from_msg(resp->partitions[0]->error, err) == 0) {
        *offset = resp->partitions[0]->offset;
        rc = 0;
    }
    fjord__v1__list_offsets_response__free_unpacked(resp, NULL);
    return rc;
}

/* ----- produce ----------------------------------------------------------------------------
 *
 * Idempotent producers (docs/protocol.md section 6): InitProducerId at creation; every batch is
 * stamped with the producer id, epoch and the partition's next sequence (bytes 62-79 of the
 * batch, inside the CRC, which is computed again) and kept until it is answered; at most 5 per
 * partition are unanswered. A retriable error or a lost connection makes the producer cancel the
 * stream, wait (backoff), reconnect if needed, open a new stream and send every unanswered batch
 * again, unchanged and in order: the broker answers the ones it already has as duplicates. */

#define MAX_IN_FLIGHT_PER_PARTITION 5
#define SEQUENCE_MODULUS 2147483648LL

typedef struct pending_req {
    uint64_t id;     /* request id, the same on every resend */
    size_t bytes;
    size_t part;     /* index into parts (idempotent) */
    uint8_t *batch;  /* the stamped batch, owned (idempotent only) */
    int64_t deadline;
} pending_req;

typedef struct part_state {
    char *topic;
    uint32_t partition;
    int64_t next_seq;
    int inflight;
} part_state;

struct fjord_producer {
    fjord_conn *conn;
    uint32_t sid;
    uint64_t gen; /* the connection generation sid belongs to */
    int acks;
    uint64_t next_id;
    int opened;   /* a frame was sent */
    int finished; /* END_STREAM sent */
    int ended;    /* the broker ended the stream (END_STREAM or ERROR) */
    fjord_error end_error; /* code FJORD_ERR_STREAM_ENDED, or the stream's ERROR */

    pending_req *pend; /* unanswered requests, in order (acks != none) */
    size_t pend_head, pend_len, pend_cap;
    size_t inflight_bytes, inflight_limit;

    fjord_produce_result *results; /* answers read while blocking in send */
    size_t res_head, res_len, res_cap;

    int idempotent;
    int64_t producer_id;
    int32_t producer_epoch;
    int need_bump; /* a batch failed for good: new epoch once nothing is unanswered */
    part_state *parts;
    size_t n_parts, cap_parts;
    int delivery_timeout_ms, backoff_ms, backoff_max_ms;
    int attempt;
    uint64_t retries; /* resends of the unanswered batches (for tests and logs) */
};

void fjord_producer_options_init(fjord_producer_options *o)
{
    memset(o, 0, sizeof *o);
    o->acks = FJORD_ACKS_LEADER;
    o->idempotent = -1;
    o->delivery_timeout_ms = 120000;
    o->retry_backoff_ms = 50;
    o->retry_backoff_max_ms = 1000;
}

static int init_producer_id(fjord_producer *p, int bump, fjord_error *err)
{
    Fjord__V1__InitProducerIdRequest req = FJORD__V1__INIT_PRODUCER_ID_REQUEST__INIT;
    req.producer_id = bump ? p->producer_id : -1;
    req.producer_epoch = bump ? p->producer_epoch : -1;
    Fjord__V1__InitProducerIdResponse *resp = (Fjord__V1__InitProducerIdResponse *)fjord_unary(
        p->conn, FJORD_METHOD_INIT_PRODUCER_ID, &req.base, &fjord__v1__init_producer_id_response__descriptor,
        fjord_conn_timeout(p->conn), err);
    if (resp == NULL)
        return -1;
    p->producer_id = resp->producer_id;
    p->producer_epoch = resp->producer_epoch;
    fjord__v1__init_producer_id_response__free_unpacked(resp, NULL);
    return 0;
}

fjord_producer *fjord_producer_new_opts(fjord_conn *c, const fjord_producer_options *o, fjord_error *err)
{
    fjord_producer_options defaults;
    if (o == NULL) {
        fjord_producer_options_init(&defaults);
        o = &defaults;
    }
    int acks = o->acks ? o->acks : FJORD_ACKS_LEADER;
    if (acks != FJORD_ACKS_NONE && acks != FJORD_ACKS_LEADER && acks != FJORD_ACKS_DURABLE) {
        fjord_set_error(err, FJORD_ERR_INVALID_ARGUMENT, "acks must be none (1), leader (2) or durable (3)");
        return NULL;
    }
    int idempotent = o->idempotent < 0 ? acks != FJORD_ACKS_NONE : o->idempotent != 0;
    if (idempotent && acks == FJORD_ACKS_NONE) {
        fjord_set_error(err, FJORD_ERR_INVALID_ARGUMENT, "an idempotent producer needs acks leader or durable");
        return NULL;
    }
    fjord_producer *p = calloc(1, sizeof *p);
    if (p == NULL) {
        fjord_set_error(err, FJORD_ERR_NO_MEMORY, "out of memory");
        return NULL;
    }
    p->conn = c;
    p->acks = acks;
    p->next_id = 1;
    p->idempotent = idempotent;
    p->producer_id = -1;
    p->producer_epoch = -1;
    p->delivery_timeout_ms = o->delivery_timeout_ms > 0 ? o->delivery_timeout_ms : 120000;
    p->backoff_ms = o->retry_backoff_ms > 0 ? o->retry_backoff_ms : 50;
    p->backoff_max_ms = o->retry_backoff_max_ms > 0 ? o->retry_backoff_max_ms : 1000;
    if (idempotent && init_producer_id(p, 0, err) < 0) {
        free(p);
        return NULL;
    }
    p->sid = fjord_conn_open_stream(c);
    if (p->sid == 0) {
        free(p);
        fjord_set_error(err, FJORD_ERR_NO_MEMORY, "out of memory");
        return NULL;
    }
    p->gen = fjord_conn_generation(c);
    uint64_t limit = fjord_conn_broker(c)->max_in_flight_bytes / 2;
    if (limit == 0 || limit > 32u * 1024 * 1024)
        limit = 32u * 1024 * 1024;
    p->inflight_limit = (size_t)limit;
    return p;
}

fjord_producer *fjord_producer_new(fjord_conn *c, int acks, fjord_error *err)
{
    fjord_producer_options o;
    fjord_producer_options_init(&o);
    o.acks = acks;
    return fjord_producer_new_opts(c, &o, err);
}

size_t fjord_producer_unanswered(const fjord_producer *p)
{
    return p->pend_len;
}

int fjord_producer_is_idempotent(const fjord_producer *p, int64_t *producer_id, int32_t *producer_epoch)
{
    if (producer_id)
        *producer_id = p->producer_id;
    if (producer_epoch)
        *producer_epoch = p->producer_epoch;
    return p->idempotent;
}

uint64_t fjord_producer_retries(const fjord_producer *p)
{
    return p->retries;
}

static int push_result(fjord_producer *p, const fjord_produce_result *r)
{
    if (p->res_head + p->res_len == p->res_cap) {
        if (p->res_head > 0) {
            memmove(p->results, p->results + p->res_head, p->res_len * sizeof *p->results);
            p->res_head = 0;
        } else {
            size_t cap = p->res_cap ? p->res_cap * 2 : 16;
            fjord_produce_result *n = realloc(p->results, cap * sizeof *n);
            if (n == NULL)
                return -1;
            p->results = n;
            p->res_cap = cap;
        }
    }
    p->results[p->res_head + p->res_len++] = *r;
    return 0;
}

static void end_stream(fjord_producer *p, const fjord_error *e)
{
    p->ended = 1;
    p->end_error = *e;
    fjord_conn_close_stream(p->conn, p->sid);
}

static long find_part(fjord_producer *p, const char *topic, uint32_t partition)
{
    for (size_t i = 0; i < p->n_parts; i++)
        if (p->parts[i].partition == partition && strcmp(p->parts[i].topic, topic) == 0)
            return (long)i;
    if (p->n_parts == p->cap_parts) {
        size_t cap = p->cap_parts ? p->cap_parts * 2 : 8;
        part_state *n = realloc(p->parts, cap * sizeof *n);
        if (n == NULL)
            return -1;
        p->parts = n;
        p->cap_parts = cap;
    }
    char *t = strdup(topic);
    if (t == NULL)
        return -1;
    p->parts[p->n_parts] = (part_state){t, partition, 0, 0};
    return (long)p->n_parts++;
}

/* Removes pending entry i (of the live ones), returning it. */
static pending_req take_pending(fjord_producer *p, size_t i)
{
    pending_req *q = &p->pend[p->pend_head + i];
    pending_req out = *q;
    memmove(q, q + 1, (p->pend_len - i - 1) * sizeof *q);
    p->pend_len--;
    p->inflight_bytes -= out.bytes;
    if (p->idempotent && p->parts[out.part].inflight > 0)
        p->parts[out.part].inflight--;
    return out;
}

static int is_retriable_for_produce(const fjord_error *e)
{
    /* UNKNOWN_TOPIC_OR_PARTITION is retriable in the table (a topic being created) but usually
     * means the topic does not exist: reported, not retried. */
    return e->code != FJORD_ERROR_UNKNOWN_TOPIC_OR_PARTITION && fjord_error_code_retriable(e->code);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static int send_request(fjord_producer *p, const char *topic, uint32_t partition, uint64_t id,
                        const uint8_t *batch, size_t len, fjord_error *err)
{
    Fjord__V1__ProduceRequest req = FJORD__V1__PRODUCE_REQUEST__INIT;
    req.topic = (char *)(uintptr_t)topic;
    req.partition = partition;
    req.leader_epoch = -1;
    req.acks = (Fjord__V1__Acks)p->acks;
    req.request_id = id;
    req.batch.data = (uint8_t *)(uintptr_t)batch;
    req.batch.len = len;
    int rc = fjord_conn_send_msg(p->conn, p->sid, FJORD_METHOD_PRODUCE, 0, &req.base, err);
    if (rc == 0)
        p->opened = 1;
    return rc;
}

/* Fails every unanswered batch whose delivery deadline has passed (outcome unknown). */
static int expire_pending(fjord_producer *p)
{
    int64_t now = fjord_now_ms();
    size_t i = 0;
    while (i < p->pend_len) {
        if (p->pend[p->pend_head + i].deadline > now) {
            i++;
            continue;
        }
        pending_req q = take_pending(p, i);
        fjord_produce_result r;
        memset(&r, 0, sizeof r);
        r.request_id = q.id;
        fjord_set_error(&r.error, FJORD_ERR_TIMEOUT,
                        "not acknowledged within the delivery timeout (%d ms); its outcome is unknown",
                        p->delivery_timeout_ms);
        free(q.batch);
        p->need_bump = 1;
        if (push_result(p, &r) < 0)
            return -1;
    }
    return 0;
}

/* The stream or connection failed with a retriable error: new stream (and connection), every
 * unanswered batch again, in order. Returns 0, or -1 when it cannot go on (err). */
static int recover(fjord_producer *p, fjord_error *err)
{
    /* With nothing unanswered, keep trying to reconnect for a delivery timeout, for later sends. */
    int64_t give_up = fjord_now_ms() + p->delivery_timeout_ms;
    for (;;) {
        if (fjord_conn_generation(p->conn) == p->gen && !fjord_conn_is_failed(p->conn)) {
            fjord_error ignored;
            fjord_conn_send(p->conn, p->sid, FJORD_METHOD_PRODUCE, FJORD_FLAG_CANCEL, NULL, 0, &ignored);
        }
        fjord_conn_close_stream(p->conn, p->sid);
        if (expire_pending(p) < 0) {
            fjord_set_error(err, FJORD_ERR_NO_MEMORY, "out of memory");
            return -1;
        }
        int pause = p->backoff_ms;
        for (int i = 0; i < p->attempt && pause < p->backoff_max_ms; i++)
            pause *= 2;
        if (pause > p->backoff_max_ms)
            pause = p->backoff_max_ms;
        p->attempt++;
        sleep_ms(pause);
        if (fjord_conn_is_failed(p->conn) && fjord_reconnect(p->conn, err) < 0) {
            if ((!err || err->retriable || err->code == FJORD_ERR_TLS) && (p->pend_len > 0 || fjord_now_ms() < give_up))
                continue; /* the broker is not back yet (pending batches expire meanwhile) */
            return -1;
        }
        p->sid = fjord_conn_open_stream(p->conn);
        if (p->sid == 0) {
            fjord_set_error(err, FJORD_ERR_NO_MEMORY, "out of memory");
            return -1;
        }
        p->gen = fjord_conn_generation(p->conn);
        p->retries++;
        int ok = 1;
        for (size_t i = 0; i < p->pend_len && ok; i++) {
            pending_req *q = &p->pend[p->pend_head + i];
            ok = send_request(p, p->parts[q->part].topic, p->parts[q->part].partition, q->id, q->batch,
                              q->bytes, err) == 0;
        }
        if (ok && p->finished)
            ok = fjord_conn_send(p->conn, p->sid, FJORD_METHOD_PRODUCE, FJORD_FLAG_END_STREAM, NULL, 0, err) == 0;
        if (ok)
            return 0;
    }
}

/* Handles one frame of the produce stream. Returns 1 if *r was filled, 0 if not, -1 if the
 * frame ended the stream, -2 if the stream must be recovered (idempotent, retriable). */
static int handle_frame(fjord_producer *p, fjord_frame *f, fjord_produce_result *r)
{
    fjord_error e;
    if (f->flags & FJORD_FLAG_ERROR) {
        fjord_error_from_frame(f, &e);
        if (p->idempotent && (is_retriable_for_produce(&e) || e.code == FJORD_ERROR_MALFORMED_MESSAGE))
            return -2; /* the stream is over; its unanswered batches go again on a new one */
        end_stream(p, &e);
        return -1;
    }
    int got = 0;
    if (f->len > 0) {
        Fjord__V1__ProduceResponse *m = fjord__v1__produce_response__unpack(NULL, f->len, f->payload);
        if (m == NULL) {
            fjord_set_error(&e, FJORD_ERR_PROTOCOL, "undecodable ProduceResponse (%u bytes)", f->len);
            end_stream(p, &e);
            return -1;
        }
        memset(r, 0, sizeof *r);
        r->request_id = m->request_id;
        fjord_error_from_msg(m->error, &r->error);
        r->base_offset = m->base_offset;
        r->last_offset = m->last_offset;
        r->log_append_time = m->log_append_time;
        r->log_start_offset = m->log_start_offset;
        r->duplicate = m->duplicate ? 1 : 0;
        fjord__v1__produce_response__free_unpacked(m, NULL);
        /* answers come in request order; drop the matching pending entry */
        for (size_t i = 0; i < p->pend_len; i++) {
            pending_req *q = &p->pend[p->pend_head + i];
            if (q->id != r->request_id)
                continue;
            if (p->idempotent && r->error.code != 0 && is_retriable_for_produce(&r->error) &&
                fjord_now_ms() < q->deadline)
                return -2; /* this one (and those behind it) go again */
            pending_req done = take_pending(p, i);
            free(done.batch);
            if (p->idempotent && r->error.code != 0)
                p->need_bump = 1; /* its sequences are missing in the partition now */
            else
                p->attempt = 0;
            break;
        }
        got = 1;
    }
    if (f->flags & FJORD_FLAG_END_STREAM) {
        fjord_set_error(&e, FJORD_ERR_STREAM_ENDED, "the broker ended the produce stream");
        end_stream(p, &e);
        if (!got)
            return -1;
        /* keep the result; the end is reported on the next poll */
    }
    return got;
}

/* Takes and handles one frame (waiting up to timeout_ms), recovering the stream when needed.
 * Returns 1 with *r, 0 (nothing to return yet), -1 (err). */
static int produce_step(fjord_producer *p, int timeout_ms, fjord_produce_result *r, fjord_error *err)
{
    if (p->idempotent && (fjord_conn_generation(p->conn) != p->gen || fjord_conn_is_failed(p->conn)))
        return recover(p, err) < 0 ? -1 : 0;
    fjord_frame *f;
    int t = fjord_conn_take(p->conn, p->sid, timeout_ms, &f, err);
    if (t < 0) {
        if (p->idempotent && fjord_conn_is_failed(p->conn))
            return recover(p, err) < 0 ? -1 : 0;
        return -1;
    }
    if (t == 0)
        return 0;
    int h = handle_frame(p, f, r);
    fjord_frame_free(f);
    if (h == -2)
        return recover(p, err) < 0 ? -1 : 0;
    if (h < 0) {
        if (err)
            *err = p->end_error;
        return -1;
    }
    return h;
}

/* Reads answers into the results queue until cond(p, arg) is false. */
static int pump_answers(fjord_producer *p, int (*cond)(const fjord_producer *, const void *), const void *arg,
                        fjord_error *err)
{
    while (cond(p, arg)) {
        fjord_produce_result res;
        /* Wait no longer than the oldest batch's delivery deadline: a broker that never answers
         * (but keeps the connection) ends in a resend, then in FJORD_ERR_TIMEOUT for that batch. */
        int wait = -1;
        if (p->pend_len > 0) {
            int64_t left = p->pend[p->pend_head].deadline - fjord_now_ms();
            wait = left < 1 ? 1 : left > INT32_MAX ? INT32_MAX : (int)left;
        }
        int h = produce_step(p, wait, &res, err);
        if (h == 0 && p->pend_len > 0 && fjord_now_ms() >= p->pend[p->pend_head].deadline && p->idempotent &&
            recover(p, err) < 0)
            return -1;
        if (h < 0)
            return -1;
        if (h == 1 && push_result(p, &res) < 0) {
            fjord_set_error(err, FJORD_ERR_NO_MEMORY, "out of memory");
            return -1;
        }
        if (p->ended) {
            if (err)
                *err = p->end_error;
            return -1;
        }
    }
    return 0;
}

static int over_byte_limit(const fjord_producer *p, const void *len)
{
    return p->acks != FJORD_ACKS_NONE && p->pend_len > 0 &&
           p->inflight_bytes + *(const size_t *)len > p->inflight_limit;
}

static int partition_full(const fjord_producer *p, const void *part)
{
    return p->parts[*(const size_t *)part].inflight >= MAX_IN_FLIGHT_PER_PARTITION;
}

static int any_unanswered(const fjord_producer *p, const void *unused)
{
    (void)unused;
    return p->pend_len > 0;
}

static int grow_pending(fjord_producer *p)
{
    if (p->pend_head + p->pend_len < p->pend_cap)
        return 0;
    if (p->pend_head > 0) {
        memmove(p->pend, p->pend + p->pend_head, p->pend_len * sizeof *p->pend);
        p->pend_head = 0;
        return 0;
    }
    size_t cap = p->pend_cap ? p->pend_cap * 2 : 16;
    pending_req *n = realloc(p->pend, cap * sizeof *n);
    if (n == NULL)
        return -1;
    p->pend = n;
    p->pend_cap = cap;
    return 0;
}

/* A batch failed for good: wait until nothing is unanswered, then a new epoch, sequences from 0. */
static int bump_epoch(fjord_producer *p, fjord_error *err)
{
    if (pump_answers(p, any_unanswered, NULL, err) < 0)
        return -1;
    if (init_producer_id(p, 1, err) < 0)
        return -1;
    for (size_t i = 0; i < p->n_parts; i++)
        p->parts[i].next_seq = 0;
    p->need_bump = 0;
    return 0;
}

/* Writes the producer id, epoch and base sequence into a batch and recomputes its CRC32C. */
static void stamp_batch(uint8_t *b, size_t len, int64_t producer_id, int32_t epoch, int32_t seq)
{
    for (int i = 0; i < 8; i++)
        b[62 + i] = (uint8_t)((uint64_t)producer_id >> (8 * i));
    for (int i = 0; i < 4; i++) {
        b[71 + i] = (uint8_t)((uint32_t)epoch >> (8 * i));
        b[76 + i] = (uint8_t)((uint32_t)seq >> (8 * i));
    }
    uint32_t crc = fjord_crc32c(0, b + 28, len - 28);
    for (int i = 0; i < 4; i++)
        b[24 + i] = (uint8_t)(crc >> (8 * i));
}

int fjord_producer_send_batch(fjord_producer *p, const char *topic, uint32_t partition, const uint8_t *batch,
                              size_t len, uint64_t *request_id, fjord_error *err)
{
    if (p->ended) {
        if (err)
            *err = p->end_error;
        if (p->end_error.code == FJORD_ERR_STREAM_ENDED)
            fjord_set_error(err, FJORD_ERR_INVALID_ARGUMENT, "the produce stream is over");
        return -1;
    }
    if (p->finished) {
        fjord_set_error(err, FJORD_ERR_INVALID_ARGUMENT, "send after fjord_producer_finish");
        return -1;
    }
    if (p->idempotent && len < FJORD_BATCH_HEADER_SIZE) {
        fjord_set_error(err, FJORD_ERR_INVALID_ARGUMENT, "a %zu-byte batch is shorter than its header", len);
        return -1;
    }
    if (p->idempotent && p->need_bump && bump_epoch(p, err) < 0)
        return -1;
    /* Keep the unanswered bytes bounded (docs/protocol.md section 7). */
    if (pump_answers(p, over_byte_limit, &len, err) < 0)
        return -1;
    size_t part = 0;
    uint8_t *copy = NULL;
    if (p->idempotent) {
        long found = find_part(p, topic, partition);
        if (found < 0) {
            fjord_set_error(err, FJORD_ERR_NO_MEMORY, "out of memory");
            return -1;
        }
        part = (size_t)found;
        if (pump_answers(p, partition_full, &part, err) < 0)
            return -1;
        copy = malloc(len);
        if (copy == NULL) {
            fjord_set_error(err, FJORD_ERR_NO_MEMORY, "out of memory copying a %zu-byte batch", len);
            return -1;
        }
        memcpy(copy, batch, len);
        uint32_t count = (uint32_t)copy[39] | (uint32_t)copy[40] << 8 | (uint32_t)copy[41] << 16 |
                         (uint32_t)copy[42] << 24;
        part_state *ps = &p->parts[part];
        stamp_batch(copy, len, p->producer_id, p->producer_epoch, (int32_t)ps->next_seq);
        ps->next_seq = (ps->next_seq + count) % SEQUENCE_MODULUS;
        batch = copy;
    }
    if (grow_pending(p) < 0) {
        free(copy);
        fjord_set_error(err, FJORD_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    uint64_t id = p->next_id++;
    if (p->acks != FJORD_ACKS_NONE) {
        p->pend[p->pend_head + p->pend_len++] =
            (pending_req){id, len, part, copy, fjord_now_ms() + p->delivery_timeout_ms};
        p->inflight_bytes += len;
        if (p->idempotent)
            p->parts[part].inflight++;
    }
    if (request_id)
        *request_id = id;
    int stale = p->idempotent && (fjord_conn_generation(p->conn) != p->gen || fjord_conn_is_failed(p->conn));
    if (stale || send_request(p, topic, partition, id, batch, len, err) < 0) {
        /* Idempotent: this batch is pending already; recovery sends everything again. */
        if (p->idempotent && (stale || fjord_conn_is_failed(p->conn)))
            return recover(p, err);
        if (p->acks != FJORD_ACKS_NONE) {
            take_pending(p, p->pend_len - 1);
            free(copy);
        }
        return -1;
    }
    return 0;
}

int fjord_producer_send(fjord_producer *p, const char *topic, uint32_t partition, const fjord_record *records,
                        size_t n, uint64_t *request_id, fjord_error *err)
{
    uint8_t *batch;
    size_t len;
    if (fjord_batch_encode(records, n, &batch, &len, err) < 0)
        return -1;
    int rc = fjord_producer_send_batch(p, topic, partition, batch, len, request_id, err);
    free(batch);
    return rc;
}

int fjord_producer_finish(fjord_producer *p, fjord_error *err)
{
    if (p->finished || p->ended)
        return 0;
    p->finished = 1;
    if (fjord_conn_send(p->conn, p->sid, FJORD_METHOD_PRODUCE, FJORD_FLAG_END_STREAM, NULL, 0, err) < 0) {
        if (p->idempotent && fjord_conn_is_failed(p->conn))
            return 0; /* the next poll recovers the stream and ends it again */
        return -1;
    }
    p->opened = 1;
    return 0;
}

int fjord_producer_poll(fjord_producer *p, int timeout_ms, fjord_produce_result *result, fjord_error *err)
{
    int64_t deadline = timeout_ms < 0 ? -1 : fjord_now_ms() + timeout_ms;
    for (;;) {
        if (p->res_len > 0) {
            *result = p->results[p->res_head++];
            p->res_len--;
            if (p->res_len == 0)
                p->res_head = 0;
            return 1;
        }
        if (p->ended) {
            if (err)
                *err = p->end_error;
            return -1;
        }
        int left = -1;
        if (deadline >= 0) {
            int64_t l = deadline - fjord_now_ms();
            left = l < 0 ? 0 : (int)l;
        }
        int h = produce_step(p, left, result, err);
        if (h != 0)
            return h;
        if (deadline >= 0 && fjord_now_ms() >= deadline && p->res_len == 0)
            return 0;
    }
}

void fjord_producer_free(fjord_producer *p)
{
    if (p == NULL)
        return;
    if (!p->ended && fjord_conn_generation(p->conn) == p->gen) {
        if (p->opened && !fjord_conn_is_failed(p->conn)) {
            fjord_error ignored;
            fjord_conn_send(p->conn, p->sid, FJORD_METHOD_PRODUCE, FJORD_FLAG_CANCEL, NULL, 0, &ignored);
        }
        fjord_conn_close_stream(p->conn, p->sid);
    }
    for (size_t i = 0; i < p->pend_len; i++)
        free(p->pend[p->pend_head + i].batch);
    for (size_t i = 0; i < p->n_parts; i++)
        free(p->parts[i].topic);
    free(p->parts);
    free(p->pend);
    free(p->results);
    free(p);
}

/* ----- fetch ------------------------------------------------------------------------------ */

static int64_t varint_i64(uint64_t v)
{
    return (int64_t)v;
}

void fjord_consumer_options_init(fjord_consumer_options *opts)
{
    memset(opts, 0, sizeof *opts);
}

int fjord_fetch(fjord_conn *c, const char *topic, uint32_t partition, int64_t offset, uint32_t max_wait_ms,
                uint32_t max_bytes, fjord_message_set **out, fjord_error *err)
{
    return fjord_fetch_opts(c, topic, partition, offset, max_wait_ms, max_bytes, NULL, out, err);
}

int fjord_fetch_opts(fjord_conn *c, const char *topic, uint32_t partition, int64_t offset, uint32_t max_wait_ms,
                     uint32_t max_bytes, const fjord_consumer_options *opts, fjord_message_set **out,
                     fjord_error *err)
{
    *out = NULL;
    Fjord__V1__FetchPartition fp = FJORD__V1__FETCH_PARTITION__INIT;
    fp.topic = (char *)(uintptr_t)topic;
    fp.partition = partition;
    fp.offset = offset;
    fp.leader_epoch = -1;
    fp.max_bytes = max_bytes;
    Fjord__V1__FetchPartition *fps[1] = {&fp};
    Fjord__V1__FetchRequest req = FJORD__V1__FETCH_REQUEST__INIT;
    req.n_partitions = 1;
    req.partitions = fps;
    req.max_wait_ms = max_wait_ms;
    req.min_bytes = 1;
    fjord_frame *f;
    if (fjord_unary_raw(c, FJORD_METHOD_FETCH, &req.base, (int)max_wait_ms + fjord_conn_timeout(c), &f, err) < 0)
        return -1;
    /* FetchResponse { repeated FetchPartitionResult partitions = 1; } parsed by hand so that the
     * batches are checked in the bytes the broker stored. */
    int rc = -1, found = 0;
    fjord_pb_reader r = {f->payload, f->payload + f->len};
    fjord_pb_field fld;
    int st;
    while ((st = fjord_pb_next(&r, &fld)) == 1) {
        if (fld.number != 1 || fld.wire_type != 2)
            continue;
        found = 1;
        int64_t hwm = -1, lso = -1;
        uint32_t part = 0;
        const uint8_t *recs = NULL;
        size_t recs_len = 0;
        fjord_pb_reader pr = {fld.data, fld.data + fld.len};
        fjord_pb_field pf;
        int pst;
        int perr = 0;
        while ((pst = fjord_pb_next(&pr, &pf)) == 1) {
            if (pf.number == 2 && pf.wire_type == 0)
                part = (uint32_t)pf.varint;
            else if (pf.number == 3 && pf.wire_type == 2) {
                Fjord__V1__Error *e = fjord__v1__error__unpack(NULL, pf.len, pf.data);
                if (e == NULL) {
                    fjord_set_error(err, FJORD_ERR_PROTOCOL, "undecodable error in FetchPartitionResult");
                    perr = 1;
                } else {
                    if (fjord_error_from_msg(e, err) != 0)
                        perr = 1;
                    fjord__v1__error__free_unpacked(e, NULL);
                }
            } else if (pf.number == 4 && pf.wire_type == 0)
                hwm = varint_i64(pf.varint);
            else if (pf.number == 5 && pf.wire_type == 0)
                lso = varint_i64(pf.varint);
            else if (pf.number == 6 && pf.wire_type == 2) {
                recs = pf.data;
                recs_len = pf.len;
            }
        }
        if (pst < 0) {
            fjord_set_error(err, FJORD_ERR_PROTOCOL, "malformed FetchPartitionResult");
            break;
        }
        if (perr)
            break;
        (void)part;
        /* The first batch is the one holding `offset` (protocol.md, Fetch). */
        fjord_batch_checks checks = {!(opts && opts->skip_crc_check), offset, 1};
        fjord_message_set *s = fjord_message_set_from_batches(topic, partition, recs, recs_len, offset, &checks, err);
        if (s == NULL)
            break;
        s->high_watermark = hwm;
        s->log_start_offset = lso;
        *out = s;
        rc = 0;
        break;
    }
    if (st < 0)
        fjord_set_error(err, FJORD_ERR_PROTOCOL, "malformed FetchResponse (%u bytes)", f->len);
    else if (!found)
        fjord_set_error(err, FJORD_ERR_PROTOCOL, "FetchResponse without the requested partition");
    fjord_frame_free(f);
    return rc;
}

/* ----- subscribe -------------------------------------------------------------------------- */

typedef struct subscription {
    uint32_t sid;
    char *topic;
    uint32_t partition;
    int64_t next_offset;
    int continues; /* a batch has arrived: the next one starts exactly at next_offset */
} subscription;

struct fjord_consumer {
    fjord_conn *conn;
    uint64_t gen; /* the connection generation the subscriptions' streams belong to */
    uint64_t credit;
    int check_crc;
    subscription *subs;
    size_t n_subs, cap_subs;
    uint32_t *sids;
    uint64_t resumes;
};

uint64_t fjord_consumer_resumes(const fjord_consumer *k)
{
    return k->resumes;
}

fjord_consumer *fjord_consumer_new(fjord_conn *c, uint64_t credit_bytes, fjord_error *err)
{
    fjord_consumer_options opts;
    fjord_consumer_options_init(&opts);
    opts.credit_bytes = credit_bytes;
    return fjord_consumer_new_opts(c, &opts, err);
}

fjord_consumer *fjord_consumer_new_opts(fjord_conn *c, const fjord_consumer_options *opts, fjord_error *err)
{
    fjord_consumer *k = calloc(1, sizeof *k);
    if (k == NULL) {
        fjord_set_error(err, FJORD_ERR_NO_MEMORY, "out of memory");
        return NULL;
    }
    k->conn = c;
    k->gen = fjord_conn_generation(c);
    k->credit = opts && opts->credit_bytes ? opts->credit_bytes : 4u * 1024 * 1024;
    k->check_crc = !(opts && opts->skip_crc_check);
    return k;
}

/* Subscribes subs[i] from its next_offset on a new stream. */
static int open_subscription(fjord_consumer *k, size_t i, fjord_error *err)
{
    subscription *s = &k->subs[i];
    uint32_t sid = fjord_conn_open_stream(k->conn);
    if (sid == 0) {
        fjord_set_error(err, FJORD_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    Fjord__V1__SubscribeRequest req = FJORD__V1__SUBSCRIBE_REQUEST__INIT;
    req.topic = s->topic;
    req.partition = s->partition;
    req.offset = s->next_offset;
    req.leader_epoch = -1;
    req.credit_bytes = k->credit;
    req.max_bytes = 0;
    if (fjord_conn_send_msg(k->conn, sid, FJORD_METHOD_SUBSCRIBE, 0, &req.base, err) < 0) {
        fjord_conn_close_stream(k->conn, sid);
        return -1;
    }
    s->sid = sid;
    s->continues = 0; /* the first message starts at the batch holding next_offset */
    k->sids[i] = sid;
    return 0;
}

/* The connection was lost (or reconnected by someone else): reconnect if needed, with backoff,
 * and subscribe every subscription again from the offset after the last one handed out. */
static int resume_all(fjord_consumer *k, int64_t deadline, fjord_error *err)
{
    int pause = 50;
    for (;;) {
        for (size_t i = 0; i < k->n_subs; i++)
            fjord_conn_close_stream(k->conn, k->subs[i].sid);
        int ok = !fjord_conn_is_failed(k->conn) || fjord_reconnect(k->conn, err) == 0;
        if (ok) {
            k->gen = fjord_conn_generation(k->conn);
            for (size_t i = 0; i < k->n_subs && ok; i++)
                ok = open_subscription(k, i, err) == 0;
            if (ok) {
                k->resumes++;
                return 0;
            }
        }
        if (err && !err->retriable && err->code != FJORD_ERR_TLS)
            return -1;
        if (fjord_now_ms() + pause > deadline)
            return -1;
        struct timespec ts = {pause / 1000, (long)(pause % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        if (pause < 1000)
            pause *= 2;
    }
}

int fjord_consumer_subscribe(fjord_consumer *k, const char *topic, uint32_t partition, int64_t offset,
                             fjord_error *err)
{
    if (offset < 0) {
        if (offset != FJORD_OFFSET_EARLIEST && offset != FJORD_OFFSET_LATEST) {
            fjord_set_error(err, FJORD_ERR_INVALID_ARGUMENT, "offset %lld is neither >= 0 nor earliest/latest",
                            (long long)offset);
            return -1;
        }
        if (fjord_list_offset(k->conn, topic, partition, offset, &offset, err) < 0)
            return -1;
    }
    if (k->n_subs == k->cap_subs) {
        size_t cap = k->cap_subs ? k->cap_subs * 2 : 8;
        subscription *s = realloc(k->subs, cap * sizeof *s);
        if (s == NULL) {
            fjord_set_error(err, FJORD_ERR_NO_MEMORY, "out of memory");
            return -1;
        }
        k->subs = s;
        uint32_t *ids = realloc(k->sids, cap * sizeof *ids);
        if (ids == NULL) {
            fjord_set_error(err, FJORD_ERR_NO_MEMORY, "out of memory");
            return -1;
        }
        k->sids = ids;
        k->cap_subs = cap;
    }
    char *t = strdup(topic);
    if (t == NULL) {
        fjord_set_error(err, FJORD_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    k->subs[k->n_subs] = (subscription){0, t, partition, offset, 0};
    if (open_subscription(k, k->n_subs, err) < 0) {
        free(t);
        return -1;
    }
    k->n_subs++;
    return 0;
}

static void remove_sub(fjord_consumer *k, size_t i)
{
    fjord_conn_close_stream(k->conn, k->subs[i].sid);
    free(k->subs[i].topic);
    k->subs[i] = k->subs[k->n_subs - 1];
    k->sids[i] = k->sids[k->n_subs - 1];
    k->n_subs--;
}

int fjord_consumer_poll(fjord_consumer *k, int timeout_ms, fjord_message_set **out, fjord_error *err)
{
    *out = NULL;
    if (k->n_subs == 0) {
        fjord_set_error(err, FJORD_ERR_INVALID_ARGUMENT, "no subscriptions");
        return -1;
    }
    /* A lost connection is resumed for up to the connection's timeout (or the poll's, if longer). */
    int64_t resume_deadline = fjord_now_ms() + (timeout_ms > fjord_conn_timeout(k->conn) ? timeout_ms
                                                                                        : fjord_conn_timeout(k->conn));
    fjord_frame *f;
    int r;
    for (;;) {
        if ((fjord_conn_generation(k->conn) != k->gen || fjord_conn_is_failed(k->conn)) &&
            resume_all(k, resume_deadline, err) < 0)
            return -1;
        r = fjord_conn_take_any(k->conn, k->sids, k->n_subs, timeout_ms, &f, err);
        if (r < 0 && fjord_conn_is_failed(k->conn))
            continue; /* resumed at the top, or given up there */
        if (r <= 0)
            return r;
        break;
    }
    size_t i = 0;
    while (i < k->n_subs && k->subs[i].sid != f->stream_id)
        i++;
    subscription *s = &k->subs[i];
    if (f->flags & (FJORD_FLAG_ERROR | FJORD_FLAG_END_STREAM)) {
        fjord_error e;
        if (f->flags & FJORD_FLAG_ERROR)
            fjord_error_from_frame(f, &e);
        else
            fjord_set_error(&e, FJORD_ERR_STREAM_ENDED, "the broker ended the subscription");
        if ((f->flags & FJORD_FLAG_ERROR) && e.code != FJORD_ERROR_UNKNOWN_TOPIC_OR_PARTITION &&
            fjord_error_code_retriable(e.code)) {
            /* BROKER_SHUTTING_DOWN, NOT_LEADER, ...: subscribe again from the next offset, after a
             * pause (a stopping broker closes the connection meanwhile; then all resume). */
            fjord_frame_free(f);
            fjord_conn_close_stream(k->conn, s->sid);
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
            if (!fjord_conn_is_failed(k->conn) && open_subscription(k, i, err) < 0 &&
                !fjord_conn_is_failed(k->conn))
                return -1;
            k->resumes++;
            return 0;
        }
        fjord_set_error(err, e.code, "%s/%u: %s", s->topic, s->partition, e.message);
        if (err)
            err->retriable = e.retriable;
        remove_sub(k, i);
        fjord_frame_free(f);
        return -1;
    }
    /* SubscribeResponse { RecordBatchSet records = 1; int64 high_watermark = 2; int64 log_start_offset = 3; } */
    const uint8_t *recs = NULL;
    size_t recs_len = 0;
    int64_t hwm = -1, lso = -1;
    fjord_pb_reader rd = {f->payload, f->payload + f->len};
    fjord_pb_field fld;
    int st;
    while ((st = fjord_pb_next(&rd, &fld)) == 1) {
        if (fld.number == 1 && fld.wire_type == 2) {
            recs = fld.data;
            recs_len = fld.len;
        } else if (fld.number == 2 && fld.wire_type == 0)
            hwm = varint_i64(fld.varint);
        else if (fld.number == 3 && fld.wire_type == 0)
            lso = varint_i64(fld.varint);
    }
    if (st < 0) {
        fjord_set_error(err, FJORD_ERR_PROTOCOL, "%s/%u: malformed SubscribeResponse (%u bytes)", s->topic,
                        s->partition, f->len);
        fjord_frame_free(f);
        return -1;
    }
    /* The first message starts at the batch holding the requested offset, later ones exactly where
     * the previous message ended (protocol.md, Subscribe). */
    fjord_batch_checks checks = {k->check_crc, s->next_offset, !s->continues};
    fjord_message_set *set = fjord_message_set_from_batches(s->topic, s->partition, recs, recs_len,
                                                            s->next_offset, &checks, err);
    fjord_frame_free(f);
    if (set == NULL) {
        /* Damaged or unreadable data comes back the same: end this subscription, as an ERROR frame would. */
        fjord_error ignored;
        fjord_conn_send(k->conn, s->sid, FJORD_METHOD_SUBSCRIBE, FJORD_FLAG_CANCEL, NULL, 0, &ignored);
        remove_sub(k, i);
        return -1;
    }
    set->high_watermark = hwm;
    set->log_start_offset = lso;
    if (set->next_offset > s->next_offset) { /* at least one batch */
        s->next_offset = set->next_offset;
        s->continues = 1;
    }
    /* Each message spent its records' size from the credit: grant it again. */
    if (recs_len > 0) {
        Fjord__V1__SubscribeCredit credit = FJORD__V1__SUBSCRIBE_CREDIT__INIT;
        credit.bytes = recs_len;
        if (fjord_conn_send_msg(k->conn, s->sid, FJORD_METHOD_SUBSCRIBE, 0, &credit.base, err) < 0 &&
            !fjord_conn_is_failed(k->conn)) {
            fjord_message_set_free(set);
            return -1;
        }
        /* A lost connection: these records are handed out; the next poll resumes after them. */
        fjord_clear_error(err);
    }
    *out = set;
    return 1;
}

void fjord_consumer_free(fjord_consumer *k)
{
    if (k == NULL)
        return;
    while (k->n_subs > 0) {
        fjord_error ignored;
        fjord_conn_send(k->conn, k->subs[0].sid, FJORD_METHOD_SUBSCRIBE, FJORD_FLAG_CANCEL, NULL, 0, &ignored);
        remove_sub(k, 0);
    }
    free(k->subs);
    free(k->sids);
    free(k);
}
