/*
 * main.c: the dobj command. One binary, one subcommand per job.
 */
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "runtime.h"

static int cmd_serve(int argc, char **argv)
{
    struct rt_config c;
    char err[1024];
    if (argc > 0 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
        rt_config_usage();
        return 0;
    }
    if (rt_config_load(&c, argc, argv, err, sizeof(err)) != 0) {
        fprintf(stderr, "dobj: %s\n", err);
        return 2;
    }
    rt_log_level = c.log_level;
    if (rt_classes_load(&c, err, sizeof(err)) != 0) {
        fprintf(stderr, "dobj: %s\n", err);
        rt_config_close(&c);
        return 2;
    }
    if (c.nclasses == 0)
        RT_WARN("msg=\"no classes loaded: every object request will get 404\" hint=\"--class PATH\"");
    int rv = rt_host_run(&c);
    rt_classes_close();
    rt_config_close(&c);
    return rv;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: dobj COMMAND [OPTIONS]\n\n"
                 "commands:\n"
                 "  serve      serve objects over HTTP and WebSocket (dobj serve --help)\n"
                 "  restore    an object's database as of a moment, from object storage\n"
                 "             (--store URL --object CLASS/NAME (--at RFC3339 | --lsn N) --out FILE)\n"
                 "  ls         the objects in object storage (--store URL)\n"
                 "  gc         delete what no restore point of the retention window needs\n"
                 "             (--store URL [--older-than 30d] [--apply]; a dry run by default)\n"
                 "  status     a running server's cluster: hosts, links, objects led and replicated,\n"
                 "             replication and upload lag (--server http://HOST:PORT)\n"
                 "  version    print the version\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 2, argv + 2);
    if (strcmp(cmd, "restore") == 0)
        return rt_cmd_restore(argc - 2, argv + 2);
    if (strcmp(cmd, "ls") == 0)
        return rt_cmd_ls(argc - 2, argv + 2);
    if (strcmp(cmd, "gc") == 0)
        return rt_cmd_gc(argc - 2, argv + 2);
    if (strcmp(cmd, "status") == 0)
        return rt_cmd_status(argc - 2, argv + 2);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("dobj %s (sqlite %s, abi %d)\n", DOBJ_VERSION, sqlite3_libversion(), DOBJ_ABI_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "dobj: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
