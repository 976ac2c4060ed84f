/* Connections: TCP + TLS (OpenSSL), frames, streams, the handshake and unary calls. */
#define _POSIX_C_SOURCE 200809L
#include "internal.h"

#include "fjord/v1/connection.pb-c.h"
#include "fjord/v1/errors.pb-c.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_MAX_RECEIVE (256u * 1024 * 1024)
#define OUT_LIMIT (4u * 1024 * 1024) /* queued output before fjord_conn_send blocks */
#define READ_CHUNK (64u * 1024)

struct fjord_conn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    BIO_METHOD *bio_method; /* the no-SIGPIPE socket BIO's methods (freed after ssl) */

    uint8_t *out;
    size_t out_off, out_len, out_cap;
    short write_wants; /* poll events the last SSL_write asked for (0: none pending) */

    uint8_t *in;
    size_t in_off, in_len, in_cap;
    short read_wants; /* poll events the last SSL_read asked for */

    fjord_frame *q_head, *q_tail;
    uint64_t frames_received;

    uint32_t *streams;
    size_t n_streams, cap_streams;
    uint32_t next_stream;

    uint32_t max_receive;
    int timeout_ms;
    int dead;
    uint64_t generation; /* 1 for the first connection, +1 per fjord_reconnect */
    char *host;          /* what fjord_reconnect connects to again */
    uint16_t port;
    fjord_conn_options opts; /* strings are copies owned by the connection */
    fjord_error fatal;
    fjord_broker_info info;
};

int64_t fjord_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining_ms(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t left = deadline - fjord_now_ms();
    if (left <= 0)
        return 0;
    return left > INT_MAX ? INT_MAX : (int)left;
}

static int64_t deadline_after(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : fjord_now_ms() + timeout_ms;
}

void fjord_frame_free(fjord_frame *f)
{
    if (f) {
        free(f->payload);
        free(f);
    }
}

void fjord_conn_options_init(fjord_conn_options *o)
{
    memset(o, 0, sizeof *o);
    o->timeout_ms = DEFAULT_TIMEOUT_MS;
    o->max_receive_bytes = DEFAULT_MAX_RECEIVE;
}

int fjord_conn_timeout(const fjord_conn *c)
{
    return c->timeout_ms;
}

const fjord_broker_info *fjord_conn_broker(const fjord_conn *c)
{
    return &c->info;
}

int fjord_conn_is_failed(const fjord_conn *c)
{
    return c->dead;
}

int fjord_conn_failed(const fjord_conn *c, fjord_error *err)
{
    if (!c->dead)
        return 0;
    if (err)
        *err = c->fatal;
    return c->fatal.code ? c->fatal.code : FJORD_ERR_CLOSED;
}

/* Collects OpenSSL's error queue into a message. */
static void ssl_error_text(char *buf, size_t cap)
{
    unsigned long e;
    size_t used = 0;
    buf[0] = '\0';
    while ((e = ERR_get_error()) != 0 && used + 2 < cap) {
        char one[256];
        ERR_error_string_n(e, one, sizeof one);
        int n = snprintf(buf + used, cap - used, "%s%s", used ? "; " : "", one);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    if (used == 0)
        snprintf(buf, cap, "no details from OpenSSL");
}

static void conn_fail(fjord_conn *c, int code, const char *fmt, ...) FJORD_PRINTF(3, 4);
static void conn_fail(fjord_conn *c, int code, const char *fmt, ...)
{
    if (c->dead)
        return;
    c->dead = 1;
    c->fatal.code = code;
    c->fatal.retriable = fjord_error_code_retriable(code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->fatal.message, sizeof c->fatal.message, fmt, ap);
    va_end(ap);
}

/* ----- streams ---------------------------------------------------------------------------- */

static int stream_registered(const fjord_conn *c, uint32_t id)
{
    for (size_t i = 0; i < c->n_streams; i++)
        if (c->streams[i] == id)
            return 1;
    return 0;
}

uint32_t fjord_conn_open_stream(fjord_conn *c)
{
    if (c->n_streams == c->cap_streams) {
        size_t cap = c->cap_streams ? c->cap_streams * 2 : 8;
        uint32_t *s = realloc(c->streams, cap * sizeof *s);
        if (s == NULL)
            return 0;
        c->streams = s;
        c->cap_streams = cap;
    }
    uint32_t id = c->next_stream++;
    if (c->next_stream == 0)
        c->next_stream = 1;
    c->streams[c->n_streams++] = id;
    return id;
}

void fjord_conn_close_stream(fjord_conn *c, uint32_t id)
{
    for (size_t i = 0; i < c->n_streams; i++) {
        if (c->streams[i] == id) {
            c->streams[i] = c->streams[--c->n_streams];
            break;
        }
    }
    fjord_frame **pp = &c->q_head;
    c->q_tail = NULL;
    while (*pp) {
        fjord_frame *f = *pp;
        if (f->stream_id == id) {
            *pp = f->next;
            fjord_frame_free(f);
        } else {
            c->q_tail = f;
            pp = &f->next;
        }
    }
}

void fjord_error_from_frame(const fjord_frame *f, fjord_error *err)
{
    static const uint8_t empty[1];
    Fjord__V1__Error *e = fjord__v1__error__unpack(NULL, f->len, f->len ? f->payload : empty);
    if (e == NULL) {
        fjord_set_error(err, FJORD_ERR_PROTOCOL, "undecodable error frame (%u bytes) on stream %u",
                        f->len, f->stream_id);
        return;
    }
    fjord_error_from_msg(e, err);
    if (err && err->code == 0)
        fjord_set_error(err, FJORD_ERROR_UNKNOWN, "error frame without a code on stream %u", f->stream_id);
    fjord__v1__error__free_unpacked(e, NULL);
}

int fjord_error_from_msg(const struct Fjord__V1__Error *e, fjord_error *err)
{
    if (e == NULL || e->code == 0) {
        fjord_clear_error(err);
        return 0;
    }
    if (err) {
        err->code = (int)e->code;
        err->retriable = e->retriable ? 1 : 0;
        snprintf(err->message, sizeof err->message, "%s", e->message ? e->message : "");
    }
    return (int)e->code;
}

/* A complete frame arrived. */
static void dispatch(fjord_conn *c, const fjord_frame_header *h, const uint8_t *payload)
{
    if (h->stream_id == 0) {
        fjord_frame f = {NULL, 0, h->method, h->flags, h->payload_length, (uint8_t *)(uintptr_t)payload};
        fjord_error e;
        if (h->flags & FJORD_FLAG_ERROR)
            fjord_error_from_frame(&f, &e);
        else
            fjord_set_error(&e, FJORD_ERR_PROTOCOL, "unexpected frame on stream 0 (flags 0x%02x)", h->flags);
        conn_fail(c, e.code, "connection error from the broker: %s: %s", fjord_error_name(e.code), e.message);
        c->fatal.retriable = e.retriable;
        return;
    }
    if (!stream_registered(c, h->stream_id))
        return; /* a late answer to a cancelled call */
    fjord_frame *f = calloc(1, sizeof *f);
    if (f == NULL) {
        conn_fail(c, FJORD_ERR_NO_MEMORY, "out of memory receiving a frame");
        return;
    }
    f->stream_id = h->stream_id;
    f->method = h->method;
    f->flags = h->flags;
    f->len = h->payload_length;
    if (f->len) {
        f->payload = malloc(f->len);
        if (f->payload == NULL) {
            free(f);
            conn_fail(c, FJORD_ERR_NO_MEMORY, "out of memory receiving a %u-byte frame", h->payload_length);
            return;
        }
        memcpy(f->payload, payload, f->len);
    }
    if (c->q_tail)
        c->q_tail->next = f;
    else
        c->q_head = f;
    c->q_tail = f;
    c->frames_received++;
}

/* Parses every complete frame in the input buffer. */
static void parse_frames(fjord_conn *c)
{
    while (!c->dead && c->in_len - c->in_off >= FJORD_FRAME_HEADER_SIZE) {
        fjord_frame_header h;
        fjord_error e;
        if (fjord_frame_header_decode(c->in + c->in_off, c->max_receive, &h, &e) < 0) {
            conn_fail(c, FJORD_ERR_PROTOCOL, "%s", e.message);
            return;
        }
        size_t need = FJORD_FRAME_HEADER_SIZE + (size_t)h.payload_length;
        if (c->in_len - c->in_off < need) {
            /* make room for the whole frame */
            if (c->in_off + need > c->in_cap) {
                memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
                c->in_len -= c->in_off;
                c->in_off = 0;
                if (need > c->in_cap) {
                    uint8_t *n = realloc(c->in, need);
                    if (n == NULL) {
                        conn_fail(c, FJORD_ERR_NO_MEMORY, "out of memory for a %zu-byte frame", need);
                        return;
                    }
                    c->in = n;
                    c->in_cap = need;
                }
            }
            return;
        }
        dispatch(c, &h, c->in + c->in_off + FJORD_FRAME_HEADER_SIZE);
        c->in_off += need;
    }
    if (c->in_off == c->in_len)
        c->in_off = c->in_len = 0;
}

/* Reads whatever TLS has now. */
static void conn_read(fjord_conn *c)
{
    c->read_wants = POLLIN;
    while (!c->dead) {
        if (c->in_cap - c->in_len < READ_CHUNK / 4) {
            if (c->in_off > 0) {
                memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
                c->in_len -= c->in_off;
                c->in_off = 0;
            }
            if (c->in_cap - c->in_len < READ_CHUNK / 4) {
                size_t cap = c->in_cap + READ_CHUNK;
                uint8_t *n = realloc(c->in, cap);
                if (n == NULL) {
                    conn_fail(c, FJORD_ERR_NO_MEMORY, "out of memory reading");
                    return;
                }
                c->in = n;
                c->in_cap = cap;
            }
        }
        size_t room = c->in_cap - c->in_len;
        ERR_clear_error();
        int n = SSL_read(c->ssl, c->in + c->in_len, room > INT_MAX ? INT_MAX : (int)room);
        if (n > 0) {
            c->in_len += (size_t)n;
            parse_frames(c);
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ) {
            c->read_wants = POLLIN;
            return;
        }
        if (e == SSL_ERROR_WANT_WRITE) {
            c->read_wants = POLLOUT;
            return;
        }
        if (e == SSL_ERROR_ZERO_RETURN) {
            conn_fail(c, FJORD_ERR_CLOSED, "the broker closed the connection");
            return;
        }
        if (e == SSL_ERROR_SYSCALL) {
            int saved = errno;
            if (ERR_peek_error() == 0) {
                if (n == 0 || saved == 0 || saved == ECONNRESET)
                    conn_fail(c, FJORD_ERR_CLOSED, "the broker closed the connection%s",
                              c->in_len > c->in_off ? " inside a frame" : "");
                else
                    conn_fail(c, FJORD_ERR_IO, "read: %s", strerror(saved));
                return;
            }
        }
        char buf[400];
        ssl_error_text(buf, sizeof buf);
        if (strstr(buf, "unexpected eof") != NULL)
            conn_fail(c, FJORD_ERR_CLOSED, "the broker closed the connection (%s)", buf);
        else
            conn_fail(c, FJORD_ERR_TLS, "TLS read failed: %s", buf);
        return;
    }
}

/* Writes queued output until done or TLS would block. */
static void conn_flush(fjord_conn *c)
{
    while (!c->dead && c->out_off < c->out_len) {
        size_t left = c->out_len - c->out_off;
        int chunk = left > (1u << 20) ? (1 << 20) : (int)left;
        ERR_clear_error();
        int n = SSL_write(c->ssl, c->out + c->out_off, chunk);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_WRITE) {
            c->write_wants = POLLOUT;
            return;
        }
        if (e == SSL_ERROR_WANT_READ) {
            c->write_wants = POLLIN;
            return;
        }
        if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
            int saved = errno;
            if (saved == EPIPE || saved == ECONNRESET || saved == 0)
                conn_fail(c, FJORD_ERR_CLOSED, "the broker closed the connection");
            else
                conn_fail(c, FJORD_ERR_IO, "write: %s", strerror(saved));
            return;
        }
        char buf[400];
        ssl_error_text(buf, sizeof buf);
        conn_fail(c, FJORD_ERR_TLS, "TLS write failed: %s", buf);
        return;
    }
    c->write_wants = 0;
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
    } else if (c->out_off > c->out_cap / 2) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
}

enum { PUMP_FAILED = -1, PUMP_TIMEOUT = 0, PUMP_FRAMES = 1, PUMP_EXTRA = 2, PUMP_DRAINED = 3 };

/* Runs the connection until frames arrive (stop_on_frames), extra_fd is readable, queued output
 * is at most out_goal bytes (out_goal != SIZE_MAX), or timeout_ms passes. */
static int pump(fjord_conn *c, int extra_fd, int timeout_ms, int stop_on_frames, size_t out_goal)
{
    int64_t deadline = deadline_after(timeout_ms);
    for (;;) {
        if (c->dead)
            return PUMP_FAILED;
        uint64_t before = c->frames_received;
        conn_flush(c);
        conn_read(c);
        if (c->dead)
            return PUMP_FAILED;
        conn_flush(c);
        if (c->dead)
            return PUMP_FAILED;
        if (stop_on_frames && c->frames_received != before)
            return PUMP_FRAMES;
        if (out_goal != SIZE_MAX && c->out_len - c->out_off <= out_goal)
            return PUMP_DRAINED;
        int left = remaining_ms(deadline);
        if (left == 0)
            return PUMP_TIMEOUT;

        struct pollfd pfd[2];
        pfd[0].fd = c->fd;
        pfd[0].events = (short)(c->read_wants | (c->out_len > c->out_off ? c->write_wants : 0));
        if (pfd[0].events == 0)
            pfd[0].events = POLLIN;
        pfd[0].revents = 0;
        nfds_t n = 1;
        if (extra_fd >= 0) {
            pfd[1].fd = extra_fd;
            pfd[1].events = POLLIN;
            pfd[1].revents = 0;
            n = 2;
        }
        int r = poll(pfd, n, left);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            conn_fail(c, FJORD_ERR_IO, "poll: %s", strerror(errno));
            return PUMP_FAILED;
        }
        if (r == 0)
            return PUMP_TIMEOUT;
        if (n == 2 && pfd[1].revents)
            return PUMP_EXTRA;
    }
}

int fjord_conn_wait(fjord_conn *c, int extra_fd, int timeout_ms, fjord_error *err)
{
    int r = pump(c, extra_fd, timeout_ms, 1, SIZE_MAX);
    if (r == PUMP_FAILED) {
        fjord_conn_failed(c, err);
        return -1;
    }
    return r == PUMP_EXTRA ? 1 : 0;
}

int fjord_conn_send(fjord_conn *c, uint32_t stream_id, uint16_t method, uint8_t flags,
                    const uint8_t *payload, size_t len, fjord_error *err)
{
    if (c->dead) {
        fjord_conn_failed(c, err);
        return -1;
    }
    if (len > UINT32_MAX || (c->info.max_frame_bytes && len > c->info.max_frame_bytes)) {
        fjord_set_error(err, FJORD_ERR_INVALID_ARGUMENT,
                        "a %zu-byte request exceeds the broker's max frame size of %u bytes", len,
                        c->info.max_frame_bytes);
        return -1;
    }
    size_t need = FJORD_FRAME_HEADER_SIZE + len;
    if (c->out_cap - c->out_len < need) {
        if (c->out_off > 0) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        if (c->out_cap - c->out_len < need) {
            size_t cap = c->out_cap ? c->out_cap : 64 * 1024;
            while (cap - c->out_len < need)
                cap *= 2;
            uint8_t *n = realloc(c->out, cap);
            if (n == NULL) {
                fjord_set_error(err, FJORD_ERR_NO_MEMORY, "out of memory queueing a %zu-byte frame", len);
                return -1;
            }
            c->out = n;
            c->out_cap = cap;
        }
    }
    fjord_frame_header h = {(uint32_t)len, stream_id, method, flags};
    fjord_frame_header_encode(&h, c->out + c->out_len);
    if (len)
        memcpy(c->out + c->out_len + FJORD_FRAME_HEADER_SIZE, payload, len);
    c->out_len += need;
    conn_flush(c);
    if (!c->dead && c->out_len - c->out_off > OUT_LIMIT)
        pump(c, -1, -1, 0, OUT_LIMIT / 2);
    if (c->dead) {
        fjord_conn_failed(c, err);
        return -1;
    }
    return 0;
}

int fjord_conn_send_msg(fjord_conn *c, uint32_t stream_id, uint16_t method, uint8_t flags,
                        const ProtobufCMessage *msg, fjord_error *err)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t small[256];
    uint8_t *buf = len <= sizeof small ? small : malloc(len);
    if (buf == NULL) {
        fjord_set_error(err, FJORD_ERR_NO_MEMORY, "out of memory encoding a %zu-byte request", len);
        return -1;
    }
    protobuf_c_message_pack(msg, buf);
    int rc = fjord_conn_send(c, stream_id, method, flags, buf, len, err);
    if (buf != small)
        free(buf);
    return rc;
}

static fjord_frame *unlink_first(fjord_conn *c, const uint32_t *streams, size_t n)
{
    fjord_frame *prev = NULL;
    for (fjord_frame *f = c->q_head; f; prev = f, f = f->next) {
        for (size_t i = 0; i < n; i++) {
            if (f->stream_id == streams[i]) {
                if (prev)
                    prev->next = f->next;
                else
                    c->q_head = f->next;
                if (c->q_tail == f)
                    c->q_tail = prev;
                f->next = NULL;
                return f;
            }
        }
    }
    return NULL;
}

int fjord_conn_take_any(fjord_conn *c, const uint32_t *streams, size_t n, int timeout_ms,
                        fjord_frame **out, fjord_error *err)
{
    int64_t deadline = deadline_after(timeout_ms);
    *out = NULL;
    for (;;) {
        fjord_frame *f = unlink_first(c, streams, n);
        if (f) {
            *out = f;
            return 1;
        }
        if (c->dead) {
            fjord_conn_failed(c, err);
            return -1;
        }
        int left = remaining_ms(deadline);
        int r = pump(c, -1, left, 1, SIZE_MAX);
        if (r == PUMP_TIMEOUT) {
            f = unlink_first(c, streams, n);
            if (f) {
                *out = f;
                return 1;
            }
            return 0;
        }
    }
}

int fjord_conn_take(fjord_conn *c, uint32_t stream_id, int timeout_ms, fjord_frame **out,
                    fjord_error *err)
{
    return fjord_conn_take_any(c, &stream_id, 1, timeout_ms, out, err);
}

/* ----- unary calls ------------------------------------------------------------------------ */

static int unary_raw(fjord_conn *c, uint16_t method, const ProtobufCMessage *req, int timeout_ms,
                     fjord_frame **out, fjord_error *err)
{
    *out = NULL;
    if (c->dead) {
        fjord_conn_failed(c, err);
        return -1;
    }
    uint32_t sid = fjord_conn_open_stream(c);
    if (sid == 0) {
        fjord_set_error(err, FJORD_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    if (fjord_conn_send_msg(c, sid, method, FJORD_FLAG_END_STREAM, req, err) < 0) {
        fjord_conn_close_stream(c, sid);
        return -1;
    }
    fjord_frame *f;
    int r = fjord_conn_take(c, sid, timeout_ms, &f, err);
    if (r <= 0) {
        if (r == 0) {
            fjord_set_error(err, FJORD_ERR_TIMEOUT, "no answer to method %u within %d ms", method, timeout_ms);
            fjord_error ignored;
            fjord_conn_send(c, sid, method, FJORD_FLAG_CANCEL, NULL, 0, &ignored);
        }
        fjord_conn_close_stream(c, sid);
        return -1;
    }
    fjord_conn_close_stream(c, sid);
    if (f->flags & FJORD_FLAG_ERROR) {
        fjord_error_from_frame(f, err);
        fjord_frame_free(f);
        return -1;
    }
    *out = f;
    return 0;
}

ProtobufCMessage *fjord_unary(fjord_conn *c, uint16_t method, const ProtobufCMessage *req,
                              const ProtobufCMessageDescriptor *resp_desc, int timeout_ms,
                              fjord_error *err)
{
    fjord_frame *f;
    if (unary_raw(c, method, req, timeout_ms, &f, err) < 0)
        return NULL;
    static const uint8_t empty[1];
    ProtobufCMessage *m = protobuf_c_message_unpack(resp_desc, NULL, f->len, f->len ? f->payload : empty);
    if (m == NULL)
        fjord_set_error(err, FJORD_ERR_PROTOCOL, "undecodable %s (%u bytes) from the broker",
                        resp_desc->name, f->len);
    fjord_frame_free(f);
    return m;
}

/* Exposed for fetch, whose response is parsed by hand. */
int fjord_unary_raw(fjord_conn *c, uint16_t method, const ProtobufCMessage *req, int timeout_ms,
                    fjord_frame **out, fjord_error *err);
int fjord_unary_raw(fjord_conn *c, uint16_t method, const ProtobufCMessage *req, int timeout_ms,
                    fjord_frame **out, fjord_error *err)
{
    return unary_raw(c, method, req, timeout_ms, out, err);
}

/* ----- connecting ------------------------------------------------------------------------- */

int fjord_parse_broker(const char *text, char *host, size_t cap, uint16_t *port)
{
    const char *colon;
    const char *h;
    size_t hlen;
    if (text == NULL || cap == 0)
        return -1;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        h = text + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL || memchr(text, ':', (size_t)(colon - text)) != NULL)
            return -1;
        h = text;
        hlen = (size_t)(colon - text);
    }
    if (hlen == 0 || hlen >= cap)
        return -1;
    const char *p = colon + 1;
    if (*p == '\0')
        return -1;
    long v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
        if (v > 65535)
            return -1;
    }
    if (v == 0)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)v;
    return 0;
}

static int tcp_connect(const char *host, uint16_t port, int64_t deadline, fjord_error *err)
{
    char service[8];
    snprintf(service, sizeof service, "%u", port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(host, service, &hints, &res);
    if (gai != 0) {
        fjord_set_error(err, FJORD_ERR_IO, "cannot resolve %s: %s", host, gai_strerror(gai));
        return -1;
    }
    int fd = -1;
    char last[256] = "no addresses";
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            snprintf(last, sizeof last, "socket: %s", strerror(errno));
            continue;
        }
        int r = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (r < 0 && errno == EINPROGRESS) {
            struct pollfd p = {fd, POLLOUT, 0};
            int left;
            do {
                left = remaining_ms(deadline);
                r = poll(&p, 1, left);
            } while (r < 0 && errno == EINTR);
            if (r == 0) {
                snprintf(last, sizeof last, "connect timed out");
                close(fd);
                fd = -1;
                continue;
            }
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
                soerr = errno;
            if (soerr != 0) {
                snprintf(last, sizeof last, "connect: %s", strerror(soerr));
                close(fd);
                fd = -1;
                continue;
            }
            r = 0;
        }
        if (r < 0) {
            snprintf(last, sizeof last, "connect: %s", strerror(errno));
            close(fd);
            fd = -1;
            continue;
        }
        break;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fjord_set_error(err, FJORD_ERR_IO, "cannot connect to %s:%u: %s", host, port, last);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* ---- a socket BIO that never raises SIGPIPE ----------------------------------------------------
 * OpenSSL's own socket BIO writes with write(2), which raises SIGPIPE when the broker has closed
 * the connection and kills a program that did not ignore the signal. This BIO sends with
 * send(MSG_NOSIGNAL) (SO_NOSIGPIPE is set on the socket where it exists instead), so a closed
 * connection is only ever an EPIPE error: FJORD_ERR_CLOSED / FJORD_ERR_IO to the caller. */
#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

static int nosig_write(BIO *b, const char *buf, int len)
{
    int fd = (int)(intptr_t)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n;
    do {
        n = send(fd, buf, (size_t)len, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        BIO_set_retry_write(b);
    return (int)n;
}

static int nosig_read(BIO *b, char *buf, int len)
{
    int fd = (int)(intptr_t)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n;
    do {
        n = recv(fd, buf, (size_t)len, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        BIO_set_retry_read(b);
    return (int)n;
}

static int nosig_puts(BIO *b, const char *str)
{
    return nosig_write(b, str, (int)strlen(str));
}

static long nosig_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    default:
        return 0;
    }
}

static int nosig_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *nosig_method(void)
{
    /* Built once per connection and freed with it: no global state, no locking. */
    BIO_METHOD *m = BIO_meth_new(BIO_TYPE_SOURCE_SINK | BIO_get_new_index(), "fjord socket");
    if (m == NULL)
        return NULL;
    if (BIO_meth_set_write(m, nosig_write) != 1 || BIO_meth_set_read(m, nosig_read) != 1 ||
        BIO_meth_set_puts(m, nosig_puts) != 1 || BIO_meth_set_ctrl(m, nosig_ctrl) != 1 ||
        BIO_meth_set_create(m, nosig_create) != 1) {
        BIO_meth_free(m);
        return NULL;
    }
    return m;
}

static int tls_setup(fjord_conn *c, const char *host, const fjord_conn_options *o, fjord_error *err)
{
    char buf[400];
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL) {
        ssl_error_text(buf, sizeof buf);
        fjord_set_error(err, FJORD_ERR_TLS, "SSL_CTX_new: %s", buf);
        return -1;
    }
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    if (o->ca_file) {
        if (SSL_CTX_load_verify_locations(c->ctx, o->ca_file, NULL) != 1) {
            ssl_error_text(buf, sizeof buf);
            fjord_set_error(err, FJORD_ERR_TLS, "cannot load CA file %s: %s", o->ca_file, buf);
            return -1;
        }
    } else if (SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
        ssl_error_text(buf, sizeof buf);
        fjord_set_error(err, FJORD_ERR_TLS, "cannot load the system trust store: %s", buf);
        return -1;
    }
    if (o->cert_file) {
        if (SSL_CTX_use_certificate_chain_file(c->ctx, o->cert_file) != 1) {
            ssl_error_text(buf, sizeof buf);
            fjord_set_error(err, FJORD_ERR_TLS, "cannot load client certificate %s: %s", o->cert_file, buf);
            return -1;
        }
        const char *key = o->key_file ? o->key_file : o->cert_file;
        if (SSL_CTX_use_PrivateKey_file(c->ctx, key, SSL_FILETYPE_PEM) != 1) {
            ssl_error_text(buf, sizeof buf);
            fjord_set_error(err, FJORD_ERR_TLS, "cannot load client key %s: %s", key, buf);
            return -1;
        }
        if (SSL_CTX_check_private_key(c->ctx) != 1) {
            ssl_error_text(buf, sizeof buf);
            fjord_set_error(err, FJORD_ERR_TLS, "client key %s does not match certificate %s: %s", key,
                            o->cert_file, buf);
            return -1;
        }
    } else if (o->key_file) {
        fjord_set_error(err, FJORD_ERR_INVALID_ARGUMENT, "a client key needs a client certificate (--cert)");
        return -1;
    }
    c->ssl = SSL_new(c->ctx);
    if (c->ssl == NULL) {
        ssl_error_text(buf, sizeof buf);
        fjord_set_error(err, FJORD_ERR_TLS, "SSL_new: %s", buf);
        return -1;
    }
    SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    unsigned char addr[16];
    int is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
    if (is_ip) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host) != 1) {
            fjord_set_error(err, FJORD_ERR_TLS, "cannot set the expected IP address %s", host);
            return -1;
        }
    } else {
        if (SSL_set1_host(c->ssl, host) != 1 || SSL_set_tlsext_host_name(c->ssl, host) != 1) {
            fjord_set_error(err, FJORD_ERR_TLS, "cannot set the expected host name %s", host);
            return -1;
        }
    }
#ifdef SO_NOSIGPIPE
    int one = 1;
    setsockopt(c->fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
    c->bio_method = nosig_method();
    BIO *bio = c->bio_method ? BIO_new(c->bio_method) : NULL;
    if (bio == NULL) {
        ssl_error_text(buf, sizeof buf);
        fjord_set_error(err, FJORD_ERR_NO_MEMORY, "cannot create the socket BIO: %s", buf);
        return -1;
    }
    BIO_set_data(bio, (void *)(intptr_t)c->fd);
    SSL_set_bio(c->ssl, bio, bio); /* the SSL owns the BIO from here */
    return 0;
}

static int tls_handshake(fjord_conn *c, const char *host, uint16_t port, int64_t deadline, fjord_error *err)
{
    for (;;) {
        ERR_clear_error();
        int r = SSL_connect(c->ssl);
        if (r == 1)
            return 0;
        int e = SSL_get_error(c->ssl, r);
        short events;
        if (e == SSL_ERROR_WANT_READ)
            events = POLLIN;
        else if (e == SSL_ERROR_WANT_WRITE)
            events = POLLOUT;
        else {
            char buf[400];
            long vr = SSL_get_verify_result(c->ssl);
            if (vr != X509_V_OK) {
                ERR_clear_error();
                fjord_set_error(err, FJORD_ERR_TLS, "TLS handshake with %s:%u failed: certificate verification: %s",
                                host, port, X509_verify_cert_error_string(vr));
            } else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
                fjord_set_error(err, FJORD_ERR_TLS, "TLS handshake with %s:%u failed: connection closed (%s)",
                                host, port, errno ? strerror(errno) : "EOF");
            } else {
                ssl_error_text(buf, sizeof buf);
                fjord_set_error(err, FJORD_ERR_TLS, "TLS handshake with %s:%u failed: %s", host, port, buf);
            }
            return -1;
        }
        struct pollfd p = {c->fd, events, 0};
        int pr;
        do {
            pr = poll(&p, 1, remaining_ms(deadline));
        } while (pr < 0 && errno == EINTR);
        if (pr == 0) {
            fjord_set_error(err, FJORD_ERR_TIMEOUT, "TLS handshake with %s:%u timed out", host, port);
            return -1;
        }
        if (pr < 0) {
            fjord_set_error(err, FJORD_ERR_IO, "poll: %s", strerror(errno));
            return -1;
        }
    }
}

static int protocol_handshake(fjord_conn *c, const char *client_id, int64_t deadline, fjord_error *err)
{
    Fjord__V1__HandshakeRequest req = FJORD__V1__HANDSHAKE_REQUEST__INIT;
    req.protocol_version = 1;
    req.client_id = (char *)(uintptr_t)client_id;
    req.max_frame_bytes = 0; /* the broker's maximum; we accept up to max_receive anyway */
    int left = remaining_ms(deadline);
    Fjord__V1__HandshakeResponse *resp = (Fjord__V1__HandshakeResponse *)fjord_unary(
        c, FJORD_METHOD_HANDSHAKE, &req.base, &fjord__v1__handshake_response__descriptor, left ? left : 1, err);
    if (resp == NULL) {
        if (err && err->code == FJORD_ERR_TIMEOUT)
            fjord_set_error(err, FJORD_ERR_TIMEOUT, "no handshake answer from the broker");
        return -1;
    }
    if (resp->protocol_version != 1) {
        fjord_set_error(err, FJORD_ERR_PROTOCOL, "the broker chose protocol version %u; this client speaks 1",
                        resp->protocol_version);
        fjord__v1__handshake_response__free_unpacked(resp, NULL);
        return -1;
    }
    c->info.protocol_version = resp->protocol_version;
    c->info.node_id = resp->node_id;
    snprintf(c->info.cluster_id, sizeof c->info.cluster_id, "%s", resp->cluster_id ? resp->cluster_id : "");
    c->info.max_frame_bytes = resp->max_frame_bytes;
    c->info.max_batch_bytes = resp->max_batch_bytes;
    c->info.max_in_flight_bytes = resp->max_in_flight_bytes;
    fjord__v1__handshake_response__free_unpacked(resp, NULL);
    return 0;
}

static char *dup_or_null(const char *text, int *failed)
{
    if (text == NULL)
        return NULL;
    char *d = strdup(text);
    if (d == NULL)
        *failed = 1;
    return d;
}

/* TCP, TLS and the protocol handshake, on a connection whose transport is torn down. */
static int conn_establish(fjord_conn *c, fjord_error *err)
{
    int64_t deadline = deadline_after(c->timeout_ms);
    c->fd = tcp_connect(c->host, c->port, deadline, err);
    if (c->fd < 0)
        return -1;
    if (tls_setup(c, c->host, &c->opts, err) < 0)
        return -1;
    if (tls_handshake(c, c->host, c->port, deadline, err) < 0)
        return -1;
    const char *client_id = c->opts.client_id ? c->opts.client_id : "libfjord";
    if (protocol_handshake(c, client_id, deadline, err) < 0)
        return -1;
    c->generation++;
    return 0;
}

/* Frees the socket, TLS state, queued frames and streams; keeps the configuration. */
static void conn_teardown(fjord_conn *c, int polite)
{
    if (c->ssl && polite && !c->dead && SSL_is_init_finished(c->ssl)) {
        /* Send what is queued (cancels, END_STREAMs), briefly. */
        if (c->out_len > c->out_off)
            pump(c, -1, 1000, 0, 0);
        ERR_clear_error();
        SSL_shutdown(c->ssl); /* close_notify; do not wait for the broker's */
    }
    ERR_clear_error();
    if (c->ssl)
        SSL_free(c->ssl);
    if (c->ctx)
        SSL_CTX_free(c->ctx);
    if (c->bio_method)
        BIO_meth_free(c->bio_method);
    if (c->fd >= 0)
        close(c->fd);
    c->ssl = NULL;
    c->ctx = NULL;
    c->bio_method = NULL;
    c->fd = -1;
    fjord_frame *f = c->q_head;
    while (f) {
        fjord_frame *next = f->next;
        fjord_frame_free(f);
        f = next;
    }
    c->q_head = c->q_tail = NULL;
    c->n_streams = 0;
    c->out_off = c->out_len = 0;
    c->in_off = c->in_len = 0;
    c->write_wants = 0;
    c->read_wants = POLLIN;
}

fjord_conn *fjord_connect(const char *host, uint16_t port, const fjord_conn_options *opts, fjord_error *err)
{
    fjord_conn_options defaults;
    if (opts == NULL) {
        fjord_conn_options_init(&defaults);
        opts = &defaults;
    }
    fjord_clear_error(err);
    if (host == NULL || port == 0) {
        fjord_set_error(err, FJORD_ERR_INVALID_ARGUMENT, "a broker host and port are required");
        return NULL;
    }
    fjord_conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        fjord_set_error(err, FJORD_ERR_NO_MEMORY, "out of memory");
        return NULL;
    }
    c->fd = -1;
    c->next_stream = 1;
    c->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    c->max_receive = opts->max_receive_bytes ? opts->max_receive_bytes : DEFAULT_MAX_RECEIVE;
    c->read_wants = POLLIN;
    c->port = port;
    int failed = 0;
    c->host = dup_or_null(host, &failed);
    c->opts = *opts;
    c->opts.ca_file = dup_or_null(opts->ca_file, &failed);
    c->opts.cert_file = dup_or_null(opts->cert_file, &failed);
    c->opts.key_file = dup_or_null(opts->key_file, &failed);
    c->opts.client_id = dup_or_null(opts->client_id, &failed);
    if (failed) {
        fjord_set_error(err, FJORD_ERR_NO_MEMORY, "out of memory");
        fjord_close(c);
        return NULL;
    }
    if (conn_establish(c, err) < 0) {
        fjord_close(c);
        return NULL;
    }
    return c;
}

int fjord_reconnect(fjord_conn *c, fjord_error *err)
{
    fjord_clear_error(err);
    conn_teardown(c, 1);
    c->dead = 0;
    fjord_clear_error(&c->fatal);
    if (conn_establish(c, err) < 0) {
        conn_teardown(c, 0);
        conn_fail(c, err ? err->code : FJORD_ERR_IO, "reconnecting failed: %s", err ? err->message : "");
        return -1;
    }
    return 0;
}

uint64_t fjord_conn_generation(const fjord_conn *c)
{
    return c->generation;
}

void fjord_close(fjord_conn *c)
{
    if (c == NULL)
        return;
    conn_teardown(c, 1);
    free(c->streams);
    free(c->out);
    free(c->in);
    free(c->host);
    free((char *)(uintptr_t)c->opts.ca_file);
    free((char *)(uintptr_t)c->opts.cert_file);
    free((char *)(uintptr_t)c->opts.key_file);
    free((char *)(uintptr_t)c->opts.client_id);
    free(c);
}
