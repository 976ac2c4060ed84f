/* Internal interfaces shared by the files of libfjord. Not installed. */
#ifndef FJORD_INTERNAL_H
#define FJORD_INTERNAL_H

#include "fjord.h"

#include <protobuf-c/protobuf-c.h>

#if defined(__GNUC__)
#define FJORD_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define FJORD_PRINTF(a, b)
#endif

void fjord_set_error(fjord_error *err, int code, const char *fmt, ...) FJORD_PRINTF(3, 4);
void fjord_clear_error(fjord_error *err);

/* A received frame. */
typedef struct fjord_frame {
    struct fjord_frame *next;
    uint32_t stream_id;
    uint16_t method;
    uint8_t flags;
    uint32_t len;
    uint8_t *payload; /* malloc'd (NULL when len == 0) */
} fjord_frame;

void fjord_frame_free(fjord_frame *f);

/* Streams: allocate an id and register it so that frames for it are kept. */
uint32_t fjord_conn_open_stream(fjord_conn *conn);
/* Forget a stream: frames already queued for it are freed, later ones dropped. */
void fjord_conn_close_stream(fjord_conn *conn, uint32_t stream_id);
/* Queue a frame for sending (and try to send without blocking). Blocks (while reading) only if
 * the output buffer is over its limit. */
int fjord_conn_send(fjord_conn *conn, uint32_t stream_id, uint16_t method, uint8_t flags,
                    const uint8_t *payload, size_t len, fjord_error *err);
/* Queue a protobuf message as one frame. */
int fjord_conn_send_msg(fjord_conn *conn, uint32_t stream_id, uint16_t method, uint8_t flags,
                        const ProtobufCMessage *msg, fjord_error *err);
/* Take the first queued frame of stream_id, waiting up to timeout_ms (-1 forever).
 * Returns 1 (*out set), 0 on timeout, -1 on connection failure. */
int fjord_conn_take(fjord_conn *conn, uint32_t stream_id, int timeout_ms, fjord_frame **out,
                    fjord_error *err);
/* Take the first queued frame of any of the given streams. */
int fjord_conn_take_any(fjord_conn *conn, const uint32_t *streams, size_t n, int timeout_ms,
                        fjord_frame **out, fjord_error *err);
/* 1 for the first connection, incremented by every successful fjord_reconnect: a stream opened
 * on an older generation is gone. */
uint64_t fjord_conn_generation(const fjord_conn *conn);
/* The connection's fatal error, if any (code 0 otherwise). */
int fjord_conn_failed(const fjord_conn *conn, fjord_error *err);

/* A frame with the ERROR flag: decode its fjord.v1.Error into err. */
void fjord_error_from_frame(const fjord_frame *f, fjord_error *err);
/* Copy a decoded fjord.v1.Error message (may be NULL: no error) into err. Returns its code. */
struct Fjord__V1__Error;
int fjord_error_from_msg(const struct Fjord__V1__Error *e, fjord_error *err);

/* A unary call: returns the unpacked response (free with protobuf_c_message_free_unpacked). */
ProtobufCMessage *fjord_unary(fjord_conn *conn, uint16_t method, const ProtobufCMessage *req,
                              const ProtobufCMessageDescriptor *resp_desc, int timeout_ms,
                              fjord_error *err);
int fjord_conn_timeout(const fjord_conn *conn);

/* Monotonic milliseconds. */
int64_t fjord_now_ms(void);

/* What fjord_message_set_from_batches checks besides each batch's layout and records. */
typedef struct fjord_batch_checks {
    int check_crc;           /* verify each batch's CRC32C */
    int64_t expected_offset; /* the first batch holds (holding) or starts at (!holding) it; -1: unchecked */
    int holding;
} fjord_batch_checks;

/* Message sets: parse a RecordBatchSet (raw bytes) into a new message set holding the records at
 * or after min_offset. Every batch is checked (checks NULL: CRC32C only), and later batches must
 * start where the previous one ended. Fails with FJORD_ERR_CRC_MISMATCH or FJORD_ERR_CORRUPT;
 * nothing is returned then. */
fjord_message_set *fjord_message_set_from_batches(const char *topic, uint32_t partition,
                                                  const uint8_t *set, size_t len,
                                                  int64_t min_offset, const fjord_batch_checks *checks,
                                                  fjord_error *err);

/* Minimal protobuf wire reader for the hot responses (fetch, subscribe), so that batches are
 * checked against their CRC in the bytes the broker stored. */
typedef struct fjord_pb_reader {
    const uint8_t *p;
    const uint8_t *end;
} fjord_pb_reader;

typedef struct fjord_pb_field {
    uint32_t number;
    uint32_t wire_type;
    uint64_t varint;      /* wire types 0, 1, 5 */
    const uint8_t *data;  /* wire type 2 */
    size_t len;
} fjord_pb_field;

/* Returns 1 with the next field, 0 at the end, -1 if malformed. */
int fjord_pb_next(fjord_pb_reader *r, fjord_pb_field *f);

#endif
