/* fjord-admin: the few admin calls the tests need (topics must exist before producing).
 *
 *   fjord-admin [connection flags] create-topic TOPIC PARTITIONS [KEY=VALUE ...]
 *   fjord-admin [connection flags] partitions TOPIC          prints the partition count
 *   fjord-admin [connection flags] list-offset TOPIC PARTITION earliest|latest|MS
 *   fjord-admin [connection flags] info                      prints the handshake answer
 *
 * Exit status 0 on success, 1 on a broker or connection error, 2 on a usage error.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: fjord-admin [connection flags] COMMAND ...\n"
               "  create-topic TOPIC PARTITIONS [KEY=VALUE ...]\n"
               "  partitions TOPIC\n"
               "  list-offset TOPIC PARTITION earliest|latest|MS\n"
               "  info\n"
               "\n" CLI_CONN_USAGE);
}

int main(int argc, char **argv)
{
    cli_prog = "fjord-admin";
    cli_conn cc = {0};
    char **args = calloc((size_t)argc + 1, sizeof *args);
    int nargs = 0;
    if (args == NULL)
        return 1;
    for (int i = 1; i < argc; i++) {
        int r;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            free(args);
            return 0;
        }
        if ((r = cli_conn_flag(argc, argv, &i, &cc)) != 0) {
            if (r < 0) {
                free(args);
                return 2;
            }
            continue;
        }
        args[nargs++] = argv[i];
    }
    int status = 2;
    fjord_conn *conn = NULL;
    fjord_error err;
    char ctx[400];
    const char **configs = NULL;
    if (nargs == 0) {
        usage(stderr);
        goto out;
    }
    const char *cmd = args[0];
    int64_t a, b;
    if (strcmp(cmd, "create-topic") == 0) {
        if (nargs < 3 || cli_parse_i64(args[2], &a) < 0 || a < 1 || a > UINT32_MAX) {
            cli_error("usage: create-topic TOPIC PARTITIONS [KEY=VALUE ...]");
            goto out;
        }
        configs = calloc((size_t)(nargs - 3) * 2 + 1, sizeof *configs);
        if (configs == NULL)
            goto out;
        for (int i = 3; i < nargs; i++) {
            char *eq = strchr(args[i], '=');
            if (eq == NULL) {
                cli_error("config %s: expected KEY=VALUE", args[i]);
                goto out;
            }
            *eq = '\0';
            configs[2 * (i - 3)] = args[i];
            configs[2 * (i - 3) + 1] = eq + 1;
        }
        status = 1;
        if ((conn = cli_connect(&cc, "fjord-admin (C)")) == NULL)
            goto out;
        if (fjord_create_topic(conn, args[1], (uint32_t)a, configs, &err) < 0) {
            snprintf(ctx, sizeof ctx, "create topic '%s'", args[1]);
            cli_report(ctx, &err);
            goto out;
        }
        printf("created topic %s with %" PRId64 " partitions\n", args[1], a);
        status = 0;
    } else if (strcmp(cmd, "partitions") == 0) {
        if (nargs != 2) {
            cli_error("usage: partitions TOPIC");
            goto out;
        }
        status = 1;
        if ((conn = cli_connect(&cc, "fjord-admin (C)")) == NULL)
            goto out;
        uint32_t n;
        if (fjord_partition_count(conn, args[1], &n, &err) < 0) {
            snprintf(ctx, sizeof ctx, "topic '%s'", args[1]);
            cli_report(ctx, &err);
            goto out;
        }
        printf("%" PRIu32 "\n", n);
        status = 0;
    } else if (strcmp(cmd, "list-offset") == 0) {
        if (nargs != 4 || cli_parse_i64(args[2], &a) < 0 || a < 0 || a > UINT32_MAX) {
            cli_error("usage: list-offset TOPIC PARTITION earliest|latest|MS");
            goto out;
        }
        if (strcmp(args[3], "earliest") == 0)
            b = FJORD_OFFSET_EARLIEST;
        else if (strcmp(args[3], "latest") == 0)
            b = FJORD_OFFSET_LATEST;
        else if (cli_parse_i64(args[3], &b) < 0 || b < 0) {
            cli_error("list-offset: expected earliest, latest or a time in ms, got %s", args[3]);
            goto out;
        }
        status = 1;
        if ((conn = cli_connect(&cc, "fjord-admin (C)")) == NULL)
            goto out;
        int64_t off;
        if (fjord_list_offset(conn, args[1], (uint32_t)a, b, &off, &err) < 0) {
            snprintf(ctx, sizeof ctx, "%s/%" PRId64, args[1], a);
            cli_report(ctx, &err);
            goto out;
        }
        printf("%" PRId64 "\n", off);
        status = 0;
    } else if (strcmp(cmd, "info") == 0) {
        status = 1;
        if ((conn = cli_connect(&cc, "fjord-admin (C)")) == NULL)
            goto out;
        const fjord_broker_info *bi = fjord_conn_broker(conn);
        printf("protocol_version %" PRIu32 "\nnode_id %" PRId32 "\ncluster_id %s\nmax_frame_bytes %" PRIu32
               "\nmax_batch_bytes %" PRIu32 "\nmax_in_flight_bytes %" PRIu64 "\n",
               bi->protocol_version, bi->node_id, bi->cluster_id, bi->max_frame_bytes, bi->max_batch_bytes,
               bi->max_in_flight_bytes);
        status = 0;
    } else {
        cli_error("unknown command %s", cmd);
        usage(stderr);
    }
out:
    fjord_close(conn);
    free(configs);
    free(args);
    return status;
}
