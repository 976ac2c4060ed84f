/* Shared command-line handling; see cli.h. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *cli_prog = "fjord";

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", cli_prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_value(int argc, char **argv, int *i, const char *name, const char **value)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, "--", 2) != 0 || strncmp(a + 2, name, n) != 0)
        return 0;
    if (a[2 + n] == '=') {
        *value = a + 3 + n;
        return 1;
    }
    if (a[2 + n] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        cli_error("--%s needs a value", name);
        return -1;
    }
    *value = argv[++*i];
    return 1;
}

int cli_conn_flag(int argc, char **argv, int *i, cli_conn *c)
{
    int r;
    if ((r = cli_value(argc, argv, i, "broker", &c->broker)) != 0)
        return r;
    if ((r = cli_value(argc, argv, i, "ca", &c->ca)) != 0)
        return r;
    if ((r = cli_value(argc, argv, i, "cert", &c->cert)) != 0)
        return r;
    return cli_value(argc, argv, i, "key", &c->key);
}

int cli_parse_i64(const char *s, int64_t *out)
{
    if (s == NULL || *s == '\0')
        return -1;
    const char *p = s;
    if (*p == '-' || *p == '+')
        p++;
    if (*p < '0' || *p > '9')
        return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

void cli_report(const char *context, const fjord_error *err)
{
    if (context && *context)
        fprintf(stderr, "%s: %s: %s: %s\n", cli_prog, context, fjord_error_name(err->code), err->message);
    else
        fprintf(stderr, "%s: %s: %s\n", cli_prog, fjord_error_name(err->code), err->message);
}

fjord_conn *cli_connect(const cli_conn *cc, const char *client_id)
{
    const char *broker = cc->broker ? cc->broker : "127.0.0.1:7420";
    char host[256];
    uint16_t port;
    if (fjord_parse_broker(broker, host, sizeof host, &port) < 0) {
        cli_error("--broker %s: expected HOST:PORT", broker);
        return NULL;
    }
    if (cc->key && !cc->cert) {
        cli_error("--key needs --cert");
        return NULL;
    }
    fjord_conn_options o;
    fjord_conn_options_init(&o);
    o.ca_file = cc->ca;
    o.cert_file = cc->cert;
    o.key_file = cc->key;
    o.client_id = client_id;
    fjord_error err;
    fjord_conn *c = fjord_connect(host, port, &o, &err);
    if (c == NULL) {
        char ctx[300];
        snprintf(ctx, sizeof ctx, "cannot connect to %s", broker);
        cli_report(ctx, &err);
    }
    return c;
}

int64_t cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t cli_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
