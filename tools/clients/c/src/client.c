/* Methods: admin and metadata, produce, fetch, subscribe. */
#include "internal.h"

#include "fjord/v1/errors.pb-c.h"
#include "fjord/v1/log.pb-c.h"
#include "fjord/v1/topics.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* ----- produce ---------------------------------------------------------------------------- */

typedef struct pending_req {
    uint64_t id;
    size_t bytes;
} pending_req;

struct fjord_producer {
    fjord_conn *conn;
    uint32_t sid;
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
};

fjord_producer *fjord_producer_new(fjord_conn *c, int acks, fjord_error *err)
{
    if (acks != FJORD_ACKS_NONE && acks != FJORD_ACKS_LEADER && acks != FJORD_ACKS_DURABLE) {
        fjord_set_error(err, FJORD_ERR_INVALID_ARGUMENT, "acks must be none (1), leader (2) or durable (3)");
        return NULL;
    }
    fjord_producer *p = calloc(1, sizeof *p);
    if (p == NULL) {
        fjord_set_error(err, FJORD_ERR_NO_MEMORY, "out of memory");
        return NULL;
    }
    p->sid = fjord_conn_open_stream(c);
    if (p->sid == 0) {
        free(p);
        fjord_set_error(err, FJORD_ERR_NO_MEMORY, "out of memory");
        return NULL;
    }
    p->conn = c;
    p->acks = acks;
    p->next_id = 1;
    uint64_t limit = fjord_conn_broker(c)->max_in_flight_bytes / 2;
    if (limit == 0 || limit > 32u * 1024 * 1024)
        limit = 32u * 1024 * 1024;
    p->inflight_limit = (size_t)limit;
    return p;
}

size_t fjord_producer_unanswered(const fjord_producer *p)
{
    return p->pend_len;
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

/* Handles one frame of the produce stream. Returns 1 if *r was filled, 0 if not, -1 if the
 * frame ended the stream. */
static int handle_frame(fjord_producer *p, fjord_frame *f, fjord_produce_result *r)
{
    fjord_error e;
    if (f->flags & FJORD_FLAG_ERROR) {
        fjord_error_from_frame(f, &e);
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
        fjord__v1__produce_response__free_unpacked(m, NULL);
        /* answers come in request order; drop the matching pending entry */
        for (size_t i = 0; i < p->pend_len; i++) {
            pending_req *q = &p->pend[p->pend_head + i];
            if (q->id == r->request_id) {
                p->inflight_bytes -= q->bytes;
                memmove(q, q + 1, (p->pend_len - i - 1) * sizeof *q);
                p->pend_len--;
                break;
            }
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
    /* Keep the unanswered bytes bounded (docs/protocol.md section 7). */
    while (p->acks != FJORD_ACKS_NONE && p->pend_len > 0 && p->inflight_bytes + len > p->inflight_limit) {
        fjord_frame *f;
        int r = fjord_conn_take(p->conn, p->sid, -1, &f, err);
        if (r < 0)
            return -1;
        fjord_produce_result res;
        int h = handle_frame(p, f, &res);
        fjord_frame_free(f);
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
    if (p->pend_head + p->pend_len == p->pend_cap) {
        if (p->pend_head > 0) {
            memmove(p->pend, p->pend + p->pend_head, p->pend_len * sizeof *p->pend);
            p->pend_head = 0;
        } else {
            size_t cap = p->pend_cap ? p->pend_cap * 2 : 16;
            pending_req *n = realloc(p->pend, cap * sizeof *n);
            if (n == NULL) {
                fjord_set_error(err, FJORD_ERR_NO_MEMORY, "out of memory");
                return -1;
            }
            p->pend = n;
            p->pend_cap = cap;
        }
    }
    Fjord__V1__ProduceRequest req = FJORD__V1__PRODUCE_REQUEST__INIT;
    req.topic = (char *)(uintptr_t)topic;
    req.partition = partition;
    req.leader_epoch = -1;
    req.acks = (Fjord__V1__Acks)p->acks;
    req.request_id = p->next_id;
    req.batch.data = (uint8_t *)(uintptr_t)batch;
    req.batch.len = len;
    if (fjord_conn_send_msg(p->conn, p->sid, FJORD_METHOD_PRODUCE, 0, &req.base, err) < 0)
        return -1;
    p->opened = 1;
    if (request_id)
        *request_id = p->next_id;
    if (p->acks != FJORD_ACKS_NONE) {
        p->pend[p->pend_head + p->pend_len++] = (pending_req){p->next_id, len};
        p->inflight_bytes += len;
    }
    p->next_id++;
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
    if (fjord_conn_send(p->conn, p->sid, FJORD_METHOD_PRODUCE, FJORD_FLAG_END_STREAM, NULL, 0, err) < 0)
        return -1;
    p->opened = 1;
    p->finished = 1;
    return 0;
}

int fjord_producer_poll(fjord_producer *p, int timeout_ms, fjord_produce_result *result, fjord_error *err)
{
    if (p->res_len > 0) {
        *result = p->results[p->res_head++];
        p->res_len--;
        if (p->res_len == 0)
            p->res_head = 0;
        return 1;
    }
    int64_t deadline = timeout_ms < 0 ? -1 : fjord_now_ms() + timeout_ms;
    for (;;) {
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
        fjord_frame *f;
        int r = fjord_conn_take(p->conn, p->sid, left, &f, err);
        if (r <= 0)
            return r;
        int h = handle_frame(p, f, result);
        fjord_frame_free(f);
        if (h == 1)
            return 1;
        if (h < 0) {
            if (err)
                *err = p->end_error;
            return -1;
        }
    }
}

void fjord_producer_free(fjord_producer *p)
{
    if (p == NULL)
        return;
    if (!p->ended) {
        if (p->opened) {
            fjord_error ignored;
            fjord_conn_send(p->conn, p->sid, FJORD_METHOD_PRODUCE, FJORD_FLAG_CANCEL, NULL, 0, &ignored);
        }
        fjord_conn_close_stream(p->conn, p->sid);
    }
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
    uint64_t credit;
    int check_crc;
    subscription *subs;
    size_t n_subs, cap_subs;
    uint32_t *sids;
};

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
    k->credit = opts && opts->credit_bytes ? opts->credit_bytes : 4u * 1024 * 1024;
    k->check_crc = !(opts && opts->skip_crc_check);
    return k;
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
    uint32_t sid = t ? fjord_conn_open_stream(k->conn) : 0;
    if (sid == 0) {
        free(t);
        fjord_set_error(err, FJORD_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    Fjord__V1__SubscribeRequest req = FJORD__V1__SUBSCRIBE_REQUEST__INIT;
    req.topic = t;
    req.partition = partition;
    req.offset = offset;
    req.leader_epoch = -1;
    req.credit_bytes = k->credit;
    req.max_bytes = 0;
    if (fjord_conn_send_msg(k->conn, sid, FJORD_METHOD_SUBSCRIBE, 0, &req.base, err) < 0) {
        fjord_conn_close_stream(k->conn, sid);
        free(t);
        return -1;
    }
    k->subs[k->n_subs] = (subscription){sid, t, partition, offset, 0};
    k->sids[k->n_subs] = sid;
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
    fjord_frame *f;
    int r = fjord_conn_take_any(k->conn, k->sids, k->n_subs, timeout_ms, &f, err);
    if (r <= 0)
        return r;
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
        if (fjord_conn_send_msg(k->conn, s->sid, FJORD_METHOD_SUBSCRIBE, 0, &credit.base, err) < 0) {
            fjord_message_set_free(set);
            return -1;
        }
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
