/*
 * libfjord: a C client for the Fjord commit-log broker.
 *
 * Written from docs/protocol.md, docs/storage-format.md and proto/fjord/v1 alone. It speaks
 * protocol version 1 over TLS (OpenSSL), multiplexes calls as streams on one connection, builds
 * and checks record batches (CRC32C), and offers:
 *
 *   - connections:  fjord_connect / fjord_close (TLS, optional client certificate, handshake)
 *   - admin:        fjord_create_topic, fjord_partition_count (GetMetadata), fjord_list_offset
 *   - produce:      fjord_producer_* (a client stream with acks none / leader / durable)
 *   - consume:      fjord_fetch (unary long-poll) and fjord_consumer_* (subscribe with credit)
 *   - helpers:      CRC32C, Kafka's murmur2 partitioner, base64, batch encode/decode, frame headers
 *
 * Signals: the library never raises SIGPIPE. Its TLS layer sends with send(MSG_NOSIGNAL) (or sets
 * SO_NOSIGPIPE where that exists), so a broker that closed the connection shows up as an error
 * (FJORD_ERR_CLOSED / FJORD_ERR_IO), whatever the program's SIGPIPE disposition.
 *
 * Threading: a connection and everything opened on it must be used from one thread at a time.
 * The helpers (CRC32C, murmur2, base64, batches, frame headers) are pure functions.
 *
 * Memory: objects returned by fjord_*_new / fjord_connect / *_decode / fjord_fetch /
 * fjord_consumer_poll are owned by the caller and freed with the matching *_free / fjord_close.
 * Byte pointers inside a fjord_record point into the object that returned it.
 *
 * Errors: every function that can fail takes a `fjord_error *` (may be NULL) and returns -1 (or
 * NULL). The error holds either a broker error code from errors.proto (> 0) or a local code
 * (< 0, FJORD_ERR_*), its retriable flag and a message.
 */
#ifndef FJORD_H
#define FJORD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library's version (semantic versioning: the SONAME is libfjord.so.MAJOR). */
#define FJORD_VERSION_MAJOR 0
#define FJORD_VERSION_MINOR 2
#define FJORD_VERSION_PATCH 0
#define FJORD_VERSION_STRING "0.2.0"

/* The version of the library actually loaded ("0.2.0"), which may differ from the header's. */
const char *fjord_version(void);

/* ---------------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------------- */

/* Broker error codes (fjord.v1.ErrorCode, docs/protocol.md section 8). */
enum {
    FJORD_ERROR_NONE = 0,
    FJORD_ERROR_UNKNOWN = 1,
    FJORD_ERROR_MALFORMED_FRAME = 2,
    FJORD_ERROR_FRAME_TOO_LARGE = 3,
    FJORD_ERROR_MALFORMED_MESSAGE = 4,
    FJORD_ERROR_HANDSHAKE_REQUIRED = 5,
    FJORD_ERROR_UNSUPPORTED_VERSION = 6,
    FJORD_ERROR_UNKNOWN_METHOD = 7,
    FJORD_ERROR_INVALID_STREAM = 8,
    FJORD_ERROR_INVALID_REQUEST = 9,
    FJORD_ERROR_TOO_MANY_CONNECTIONS = 10,
    FJORD_ERROR_BROKER_SHUTTING_DOWN = 11,
    FJORD_ERROR_REQUEST_TIMED_OUT = 12,
    FJORD_ERROR_UNKNOWN_TOPIC_OR_PARTITION = 20,
    FJORD_ERROR_TOPIC_ALREADY_EXISTS = 21,
    FJORD_ERROR_INVALID_TOPIC = 22,
    FJORD_ERROR_INVALID_PARTITIONS = 23,
    FJORD_ERROR_INVALID_CONFIG = 24,
    FJORD_ERROR_FENCED_LEADER_EPOCH = 30,
    FJORD_ERROR_UNKNOWN_LEADER_EPOCH = 31,
    FJORD_ERROR_NOT_LEADER = 32,
    FJORD_ERROR_CORRUPT_BATCH = 40,
    FJORD_ERROR_BATCH_TOO_LARGE = 41,
    FJORD_ERROR_UNSUPPORTED_COMPRESSION = 42,
    FJORD_ERROR_OUT_OF_ORDER_SEQUENCE = 43,
    FJORD_ERROR_INVALID_PRODUCER_EPOCH = 44,
    FJORD_ERROR_UNKNOWN_PRODUCER_ID = 45,
    FJORD_ERROR_OFFSET_OUT_OF_RANGE = 50,
    FJORD_ERROR_DISK_FULL = 60,
    FJORD_ERROR_STORAGE_ERROR = 61,
    FJORD_ERROR_CORRUPT_LOG = 62, /* the partition's stored data is damaged; not retriable */
    FJORD_ERROR_LOG_TAIL_LOST = 63,
    FJORD_ERROR_TOPIC_AUTHORIZATION_FAILED = 70,
    FJORD_ERROR_GROUP_AUTHORIZATION_FAILED = 71,
    FJORD_ERROR_CLUSTER_AUTHORIZATION_FAILED = 72,
    FJORD_ERROR_AUTHENTICATION_FAILED = 73
};

/* Local (client-side) error codes; never sent by a broker. */
enum {
    FJORD_ERR_IO = -1,               /* socket or system call failed (errno in the message) */
    FJORD_ERR_TLS = -2,              /* TLS set-up, handshake or certificate verification failed */
    FJORD_ERR_PROTOCOL = -3,         /* the broker sent something this client cannot accept */
    FJORD_ERR_TIMEOUT = -4,          /* no answer within the time allowed */
    FJORD_ERR_CLOSED = -5,           /* the connection is closed (by the peer or after an error) */
    FJORD_ERR_INVALID_ARGUMENT = -6, /* bad argument from the caller */
    FJORD_ERR_CORRUPT = -7,          /* a received batch failed its layout, record or offset checks */
    FJORD_ERR_NO_MEMORY = -8,        /* allocation failed */
    FJORD_ERR_STREAM_ENDED = -9,     /* the stream is over; no more results will come */
    FJORD_ERR_CRC_MISMATCH = -10     /* a received batch's CRC32C differs from the one it carries;
                                      * the message names topic/partition, base offset, expected
                                      * (stored) and actual (computed) CRC; not retriable */
};

typedef struct fjord_error {
    int code;          /* 0 = no error; > 0 broker code; < 0 FJORD_ERR_* */
    int retriable;     /* 1 if the same request may succeed when sent again */
    char message[512]; /* human-readable, names the values involved */
} fjord_error;

/* "UNKNOWN_TOPIC_OR_PARTITION", "IO_ERROR", ...; "CODE_<n>" for a code this client does not know. */
const char *fjord_error_name(int code);
/* The protocol's retriable column for a broker code; local codes: IO, CLOSED, TIMEOUT are
 * retriable (reconnect), the others are not. Unknown broker codes are not retriable. */
int fjord_error_code_retriable(int code);

/* ---------------------------------------------------------------------------------------------
 * Pure helpers
 * ------------------------------------------------------------------------------------------- */

/* CRC32C (Castagnoli, reflected polynomial 0x82F63B78). Start with crc = 0; feed the previous
 * result to continue over more data. fjord_crc32c(0, "123456789", 9) == 0xE3069283. */
uint32_t fjord_crc32c(uint32_t crc, const void *data, size_t len);
/* 1 if fjord_crc32c uses the CPU's CRC instructions (SSE4.2 / ARMv8 CRC, detected at run time),
 * 0 if the slicing-by-8 table. */
int fjord_crc32c_hardware(void);

/* Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2, seed 0x9747b28c), as an unsigned
 * 32-bit value (Java's signed int reinterpreted). */
uint32_t fjord_murmur2(const void *data, size_t len);
/* Kafka's default partitioner for a keyed record: (murmur2(key) & 0x7fffffff) % partitions.
 * partitions must be > 0. */
uint32_t fjord_partition_for_key(const void *key, size_t len, uint32_t partitions);

/* Standard base64 with padding (RFC 4648 section 4). */
size_t fjord_base64_encoded_len(size_t len); /* characters, without a terminating NUL */
/* Writes fjord_base64_encoded_len(len) characters and a NUL to out; returns the characters. */
size_t fjord_base64_encode(const uint8_t *data, size_t len, char *out);
/* Decodes exactly `len` characters (a multiple of 4, '=' padding only at the end, nothing but the
 * alphabet) into out, which needs len / 4 * 3 bytes. Returns the decoded length, or -1. */
long fjord_base64_decode(const char *text, size_t len, uint8_t *out);

/* ---------------------------------------------------------------------------------------------
 * Frames (docs/protocol.md section 2)
 * ------------------------------------------------------------------------------------------- */

#define FJORD_FRAME_HEADER_SIZE 12
#define FJORD_FLAG_END_STREAM 0x01
#define FJORD_FLAG_ERROR 0x02
#define FJORD_FLAG_CANCEL 0x04

/* Method ids (fjord.v1.Method). */
enum {
    FJORD_METHOD_HANDSHAKE = 1,
    FJORD_METHOD_GET_METADATA = 2,
    FJORD_METHOD_CREATE_TOPIC = 10,
    FJORD_METHOD_DELETE_TOPIC = 11,
    FJORD_METHOD_LIST_TOPICS = 12,
    FJORD_METHOD_DESCRIBE_TOPIC = 13,
    FJORD_METHOD_CREATE_PARTITIONS = 14,
    FJORD_METHOD_ALTER_TOPIC_CONFIG = 15,
    FJORD_METHOD_PRODUCE = 20,
    FJORD_METHOD_FETCH = 21,
    FJORD_METHOD_SUBSCRIBE = 22,
    FJORD_METHOD_LIST_OFFSETS = 23,
    FJORD_METHOD_INIT_PRODUCER_ID = 24
};

typedef struct fjord_frame_header {
    uint32_t payload_length;
    uint32_t stream_id;
    uint16_t method;
    uint8_t flags;
} fjord_frame_header;

/* Writes the 12 header bytes (big-endian, reserved byte 0). */
void fjord_frame_header_encode(const fjord_frame_header *h, uint8_t out[FJORD_FRAME_HEADER_SIZE]);
/* Parses 12 header bytes. Fails (FJORD_ERR_PROTOCOL) on unknown flag bits, a non-zero reserved
 * byte, or a payload longer than max_payload. */
int fjord_frame_header_decode(const uint8_t in[FJORD_FRAME_HEADER_SIZE], uint32_t max_payload,
                              fjord_frame_header *h, fjord_error *err);

/* ---------------------------------------------------------------------------------------------
 * Records and batches (docs/storage-format.md)
 * ------------------------------------------------------------------------------------------- */

typedef struct fjord_header {
    const char *key; /* UTF-8, not necessarily NUL-terminated */
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
    int has_value; /* 0: null value */
} fjord_header;

typedef struct fjord_record {
    int64_t offset;    /* decoded records: base_offset + index; ignored when encoding */
    int64_t timestamp; /* ms since the Unix epoch (CreateTime) */
    const uint8_t *key;
    size_t key_len;
    int has_key; /* 0: null key (unkeyed); 1 with key_len 0: empty key */
    const uint8_t *value;
    size_t value_len;
    int has_value; /* 0: null value (tombstone) */
    const fjord_header *headers;
    size_t header_count;
} fjord_record;

/* Size of the fixed batch header (fields 1-12). */
#define FJORD_BATCH_HEADER_SIZE 80

/* Builds one RecordBatch (magic 1, no compression, not idempotent, base offset 0, leader epoch 0,
 * log_append_time -1) holding n >= 1 records, with first/max timestamps from the records and the
 * CRC32C set. *out is malloc'd; free() it. */
int fjord_batch_encode(const fjord_record *records, size_t n, uint8_t **out, size_t *out_len,
                       fjord_error *err);

typedef struct fjord_batch {
    int64_t base_offset;
    int32_t partition_leader_epoch;
    int64_t log_append_time;
    uint32_t crc32c;
    uint32_t magic;
    uint32_t compression;
    int64_t first_timestamp;
    int64_t max_timestamp;
    int64_t producer_id;
    int32_t producer_epoch;
    int32_t base_sequence;
    size_t record_count;
    fjord_record *records; /* offsets and absolute timestamps filled in */
    void *internal_;
} fjord_batch;

/* Checks a serialized batch (length, CRC32C, the 12 header tags, magic 1, compression 0, record
 * count) and decodes it. Fails with FJORD_ERR_CRC_MISMATCH (any damaged bit of bytes [28, end))
 * or FJORD_ERR_CORRUPT. Free with fjord_batch_free. */
int fjord_batch_decode(const uint8_t *data, size_t len, fjord_batch **out, fjord_error *err);
void fjord_batch_free(fjord_batch *batch);

/* ---------------------------------------------------------------------------------------------
 * Connections
 * ------------------------------------------------------------------------------------------- */

typedef struct fjord_conn fjord_conn;

typedef struct fjord_conn_options {
    const char *ca_file;   /* PEM CAs to trust; NULL: the system's default trust store */
    const char *cert_file; /* PEM client certificate (chain), for mutual TLS; NULL: none */
    const char *key_file;  /* PEM private key of cert_file; NULL: taken from cert_file */
    const char *client_id; /* shown in broker logs; NULL: "libfjord" */
    int timeout_ms;        /* connect + TLS + handshake, and each unary call; default 30000 */
    uint32_t max_receive_bytes; /* largest frame payload accepted from the broker; default 256 MiB */
} fjord_conn_options;

void fjord_conn_options_init(fjord_conn_options *opts);

/* Splits "HOST:PORT" or "[IPv6]:PORT" (port 1-65535). Returns 0, or -1 if malformed. */
int fjord_parse_broker(const char *text, char *host, size_t host_cap, uint16_t *port);

/* Connects over TCP, runs TLS (1.2 minimum; verifies the certificate chain against ca_file and the
 * certificate's host name or IP address against `host`) and the protocol handshake. */
fjord_conn *fjord_connect(const char *host, uint16_t port, const fjord_conn_options *opts,
                          fjord_error *err);
/* Sends nothing more, shuts TLS down politely and frees everything (open producers/consumers
 * must be freed first). NULL is ignored. */
void fjord_close(fjord_conn *conn);

typedef struct fjord_broker_info {
    uint32_t protocol_version;
    int32_t node_id;
    char cluster_id[64];
    uint32_t max_frame_bytes;     /* largest payload the broker accepts */
    uint32_t max_batch_bytes;     /* the broker's default max.message.bytes */
    uint64_t max_in_flight_bytes; /* produce bytes the broker holds before it stops reading */
} fjord_broker_info;

const fjord_broker_info *fjord_conn_broker(const fjord_conn *conn);

/* Connects again to the same broker with the same options (TCP, TLS, handshake), after the
 * connection failed (or at any time: the old one is closed first). Every stream of the old
 * connection is gone: producers and consumers made with fjord_producer_new / fjord_consumer_new
 * notice and open theirs again (producers resend what was unanswered, consumers resume from the
 * next offset); fjord_fetch and the admin calls simply work again. Returns 0, or -1 (err; the
 * connection stays failed, and may be reconnected again later). Producers and consumers call it
 * themselves, with backoff, when they find the connection lost. */
int fjord_reconnect(fjord_conn *conn, fjord_error *err);
/* 1 if the connection has failed (closed by the broker, network error): fjord_reconnect it. */
int fjord_conn_is_failed(const fjord_conn *conn);

/* Waits up to timeout_ms (-1: forever) for the connection to receive something, while sending
 * queued output. If extra_fd >= 0 it also returns as soon as extra_fd is readable. Returns 1 if
 * extra_fd is readable, 0 otherwise, -1 if the connection failed. Used to drive a producer from
 * an input file descriptor without blocking on either side. */
int fjord_conn_wait(fjord_conn *conn, int extra_fd, int timeout_ms, fjord_error *err);

/* ---------------------------------------------------------------------------------------------
 * Admin and metadata
 * ------------------------------------------------------------------------------------------- */

/* CreateTopic (method 10). configs: NULL or alternating key, value strings ending with NULL. */
int fjord_create_topic(fjord_conn *conn, const char *name, uint32_t partitions,
                       const char *const *configs, fjord_error *err);
typedef struct fjord_topic_meta {
    uint32_t partitions;
    uint32_t max_message_bytes; /* the topic's max.message.bytes override, else the broker default */
} fjord_topic_meta;

/* GetMetadata (method 2) for one topic. A topic that does not exist fails with
 * FJORD_ERROR_UNKNOWN_TOPIC_OR_PARTITION. */
int fjord_topic_metadata(fjord_conn *conn, const char *topic, fjord_topic_meta *meta, fjord_error *err);
/* The same, partition count only. */
int fjord_partition_count(fjord_conn *conn, const char *topic, uint32_t *count, fjord_error *err);

#define FJORD_OFFSET_EARLIEST (-2)
#define FJORD_OFFSET_LATEST (-1)
/* ListOffsets (method 23) for one partition: timestamp FJORD_OFFSET_EARLIEST (log start),
 * FJORD_OFFSET_LATEST (log end) or a time in ms (first offset at or after it; *offset = -1 if
 * none). */
int fjord_list_offset(fjord_conn *conn, const char *topic, uint32_t partition, int64_t timestamp,
                      int64_t *offset, fjord_error *err);

/* ---------------------------------------------------------------------------------------------
 * Produce (method 20)
 * ------------------------------------------------------------------------------------------- */

enum { FJORD_ACKS_NONE = 1, FJORD_ACKS_LEADER = 2, FJORD_ACKS_DURABLE = 3 };

typedef struct fjord_producer fjord_producer;

typedef struct fjord_produce_result {
    uint64_t request_id;
    fjord_error error; /* error.code == 0: appended */
    int64_t base_offset;
    int64_t last_offset;
    int64_t log_append_time;
    int64_t log_start_offset;
    int duplicate; /* idempotent retry: the broker had the batch already (offsets are the original's) */
} fjord_produce_result;

/* Producer configuration (fjord_producer_options_init sets the defaults).
 *
 * Idempotence (docs/protocol.md section 6; the default with acks leader or durable): the
 * producer gets an id with InitProducerId, stamps each batch with its partition's next sequence
 * and keeps it until answered (at most 5 unanswered per partition: a send waits for answers).
 * When the connection is lost or the broker answers with a retriable error (NOT_LEADER,
 * BROKER_SHUTTING_DOWN, REQUEST_TIMED_OUT, ...; not UNKNOWN_TOPIC_OR_PARTITION), the producer
 * cancels the stream, waits (retry_backoff_ms, doubling up to retry_backoff_max_ms), reconnects
 * (fjord_reconnect) if needed and sends every unanswered batch again, unchanged and in order; the
 * broker answers those it already appended as duplicates, so nothing is written twice. This
 * happens inside fjord_producer_send / _poll, which may therefore block while the broker is away;
 * a batch still unanswered delivery_timeout_ms after it was sent is reported with
 * FJORD_ERR_TIMEOUT (its outcome is unknown). A batch that fails for good (for example
 * BATCH_TOO_LARGE) makes the batches of that partition already sent behind it fail with
 * OUT_OF_ORDER_SEQUENCE; the producer then starts a new epoch (sequences from 0) before the next
 * send. Without idempotence nothing is retried: errors and a lost connection are reported. */
typedef struct fjord_producer_options {
    int acks;                 /* FJORD_ACKS_*; default FJORD_ACKS_LEADER */
    int idempotent;           /* -1 (default): on unless acks is none; 0: off; 1: on */
    int delivery_timeout_ms;  /* default 120000 */
    int retry_backoff_ms;     /* default 50 */
    int retry_backoff_max_ms; /* default 1000 */
} fjord_producer_options;

void fjord_producer_options_init(fjord_producer_options *opts);

/* Opens one produce stream on conn (with InitProducerId first when idempotent). */
fjord_producer *fjord_producer_new_opts(fjord_conn *conn, const fjord_producer_options *opts,
                                        fjord_error *err);
/* The same with the default options and the given acks (FJORD_ACKS_*): idempotent unless acks
 * is none. */
fjord_producer *fjord_producer_new(fjord_conn *conn, int acks, fjord_error *err);
/* 1 if idempotent (and the id and epoch in use), 0 if not. */
int fjord_producer_is_idempotent(const fjord_producer *p, int64_t *producer_id, int32_t *producer_epoch);
/* How many times the producer sent its unanswered batches again (after a lost connection or a
 * retriable error). */
uint64_t fjord_producer_retries(const fjord_producer *p);
/* Encodes records into one batch and sends it to topic/partition (leader epoch -1: unchecked).
 * *request_id receives the id the answer will carry (ids count from 1). May block while the
 * connection's output is backed up or more than max_in_flight_bytes / 2 of batches are
 * unanswered, reading answers meanwhile (they are kept for fjord_producer_poll). */
int fjord_producer_send(fjord_producer *p, const char *topic, uint32_t partition,
                        const fjord_record *records, size_t n, uint64_t *request_id,
                        fjord_error *err);
/* Same, with an already encoded batch (fjord_batch_encode). */
int fjord_producer_send_batch(fjord_producer *p, const char *topic, uint32_t partition,
                              const uint8_t *batch, size_t len, uint64_t *request_id,
                              fjord_error *err);
/* Ends the client's side of the stream (END_STREAM); no more sends. */
int fjord_producer_finish(fjord_producer *p, fjord_error *err);
/* Next answer, in request order. Returns 1 (*result filled; check result->error.code), 0 if none
 * arrived within timeout_ms (-1: wait forever), or -1: the stream failed (err) or, with
 * err->code == FJORD_ERR_STREAM_ENDED, the broker ended it after fjord_producer_finish and every
 * answer was returned. With FJORD_ACKS_NONE only failed requests are answered. */
int fjord_producer_poll(fjord_producer *p, int timeout_ms, fjord_produce_result *result,
                        fjord_error *err);
/* Requests sent whose answers have not been returned by fjord_producer_poll (always 0 for
 * FJORD_ACKS_NONE). */
size_t fjord_producer_unanswered(const fjord_producer *p);
/* Cancels the stream if it is still open, and frees p. */
void fjord_producer_free(fjord_producer *p);

/* ---------------------------------------------------------------------------------------------
 * Consume: fetch (method 21) and subscribe (method 22)
 * ------------------------------------------------------------------------------------------- */

/* Records of one partition, in offset order, from one fetch or one pushed message. */
typedef struct fjord_message_set {
    const char *topic;
    uint32_t partition;
    int64_t high_watermark;
    int64_t log_start_offset;
    int64_t next_offset; /* where the next read continues (last batch's base + count) */
    size_t record_count;
    fjord_record *records; /* only records at or after the requested offset */
    void *internal_;
} fjord_message_set;

void fjord_message_set_free(fjord_message_set *set);

/* Consumer configuration, for fjord_fetch_opts and fjord_consumer_new_opts. Zeroed (or
 * fjord_consumer_options_init) means the defaults.
 *
 * Every received batch is checked before any of its records is returned: its CRC32C (bytes
 * [28, end), storage-format.md), and its offsets: the first batch of a fetch holds the requested
 * offset, each batch starts where the previous one ended (also across a subscription's
 * messages). A CRC32C mismatch fails the call with FJORD_ERR_CRC_MISMATCH, an offset gap with
 * FJORD_ERR_CORRUPT; neither is retriable, and nothing of that response is returned. */
typedef struct fjord_consumer_options {
    uint64_t credit_bytes; /* subscriptions: the credit each keeps granted; 0: 4 MiB */
    int skip_crc_check;    /* 0 (default): verify CRC32C (Kafka's check.crcs=true); 1: skip it.
                            * The offset checks stay on. */
} fjord_consumer_options;

void fjord_consumer_options_init(fjord_consumer_options *opts);

/* One unary long-poll fetch of one partition from `offset`: waits up to max_wait_ms for at least
 * one record. *out gets the records (possibly none); per-partition errors (for example
 * OFFSET_OUT_OF_RANGE) fail the call. max_bytes 0: the broker default (1 MiB). Default options. */
int fjord_fetch(fjord_conn *conn, const char *topic, uint32_t partition, int64_t offset,
                uint32_t max_wait_ms, uint32_t max_bytes, fjord_message_set **out,
                fjord_error *err);
/* The same with options (NULL: the defaults; credit_bytes is not used). */
int fjord_fetch_opts(fjord_conn *conn, const char *topic, uint32_t partition, int64_t offset,
                     uint32_t max_wait_ms, uint32_t max_bytes, const fjord_consumer_options *opts,
                     fjord_message_set **out, fjord_error *err);

typedef struct fjord_consumer fjord_consumer;

/* A set of subscriptions on one connection. credit_bytes: the credit each subscription keeps
 * granted (0: 4 MiB); the consumer tops it up as fjord_consumer_poll hands out records.
 * Default options otherwise (CRC32C checked). */
fjord_consumer *fjord_consumer_new(fjord_conn *conn, uint64_t credit_bytes, fjord_error *err);
/* The same with options (NULL: the defaults). */
fjord_consumer *fjord_consumer_new_opts(fjord_conn *conn, const fjord_consumer_options *opts,
                                        fjord_error *err);
/* Subscribes to topic/partition from `offset` (>= 0, or FJORD_OFFSET_EARLIEST / _LATEST, resolved
 * with ListOffsets). Returns 0; the broker's checks (unknown partition, offset out of range)
 * surface from fjord_consumer_poll. */
int fjord_consumer_subscribe(fjord_consumer *c, const char *topic, uint32_t partition,
                             int64_t offset, fjord_error *err);
/* Next message from any subscription. Returns 1 (*out set; free it; it may hold 0 records if
 * every record was below the requested offset), 0 on timeout (timeout_ms; -1: forever), -1 on
 * error (a subscription ended with an ERROR frame, or the connection failed; or a batch failed
 * its checks: FJORD_ERR_CRC_MISMATCH / FJORD_ERR_CORRUPT, and that subscription is cancelled). */
int fjord_consumer_poll(fjord_consumer *c, int timeout_ms, fjord_message_set **out,
                        fjord_error *err);
/* Cancels every subscription and frees c. */
void fjord_consumer_free(fjord_consumer *c);
/* How many times the consumer subscribed again after a lost connection or a retriable error.
 *
 * Resuming: when the connection is lost (the broker restarts, the network drops),
 * fjord_consumer_poll reconnects (fjord_reconnect, with backoff, for up to the connection's
 * timeout or the poll's, whichever is longer) and subscribes every subscription again from the
 * offset after the last record it handed out; a subscription the broker ends with a retriable
 * error (BROKER_SHUTTING_DOWN, NOT_LEADER, ...; not UNKNOWN_TOPIC_OR_PARTITION) is subscribed
 * again the same way (that poll returns 0). No record is skipped or handed out twice. */
uint64_t fjord_consumer_resumes(const fjord_consumer *c);

#ifdef __cplusplus
}
#endif
#endif /* FJORD_H */
