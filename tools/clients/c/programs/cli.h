/* Shared command-line handling of fjord-produce, fjord-consume and fjord-admin. */
#ifndef FJORD_TOOLS_CLI_H
#define FJORD_TOOLS_CLI_H

#include "fjord.h"

#include <stdint.h>

/* The connection flags of tools/clients/README.md. */
typedef struct cli_conn {
    const char *broker; /* HOST:PORT, default 127.0.0.1:7420 */
    const char *ca;
    const char *cert;
    const char *key;
} cli_conn;

extern const char *cli_prog; /* program name for messages */

/* Prints "PROG: message" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* If argv[*i] is --NAME VALUE or --NAME=VALUE, stores VALUE, advances *i past it and returns 1;
 * returns 0 if it is another argument, -1 (after a message) if the value is missing. */
int cli_value(int argc, char **argv, int *i, const char *name, const char **value);
/* Handles --broker/--ca/--cert/--key. Same return values as cli_value. */
int cli_conn_flag(int argc, char **argv, int *i, cli_conn *conn);
/* Strict decimal integers. */
int cli_parse_i64(const char *s, int64_t *out);

/* Connects with the flags; prints the error and returns NULL on failure. */
fjord_conn *cli_connect(const cli_conn *conn, const char *client_id);
/* Prints "PROG: context: NAME: message" for err. */
void cli_report(const char *context, const fjord_error *err);

/* Wall-clock ms since the Unix epoch. */
int64_t cli_now_ms(void);
/* Monotonic ms (for timeouts). */
int64_t cli_mono_ms(void);

#define CLI_CONN_USAGE                                                                         \
    "connection:\n"                                                                            \
    "  --broker HOST:PORT   broker address (default 127.0.0.1:7420)\n"                        \
    "  --ca FILE            PEM CA certificates to trust (default: the system store)\n"        \
    "  --cert FILE          PEM client certificate, for mutual TLS\n"                          \
    "  --key FILE           PEM key of --cert (default: read from --cert)\n"

#endif
