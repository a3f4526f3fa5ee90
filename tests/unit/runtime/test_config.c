/*
 * test_config.c: runtime/config.c: defaults, the config file, flags that
 * override it, and errors that name the option (and the file and line).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime.h"

static struct rt_config cfg;
static char err[1024];
static char path[64];

/* A temporary config file holding `text`; its path is in `path`. */
static void config_file(const char *text)
{
    strcpy(path, "/tmp/dobj-test-config-XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    size_t len = strlen(text);
    cr_assert_eq(write(fd, text, len), (ssize_t)len);
    cr_assert_eq(close(fd), 0);
}

static void setup(void)
{
    path[0] = '\0';
    err[0] = '\0';
}

static void teardown(void)
{
    if (path[0] != '\0')
        unlink(path);
    rt_config_close(&cfg);
}

TestSuite(config, .init = setup, .fini = teardown);

/* Loads the flags given (a NULL-terminated list); "@" stands for `path`. */
static int load_args(const char *const *args)
{
    char *argv[32];
    int argc = 0;
    for (; args[argc] != NULL; argc++) {
        cr_assert_lt(argc, 31);
        argv[argc] = strdup(strcmp(args[argc], "@") == 0 ? path : args[argc]);
    }
    argv[argc] = NULL;
    memset(&cfg, 0x5a, sizeof(cfg));
    int rv = rt_config_load(&cfg, argc, argv, err, sizeof(err));
    for (int i = 0; i < argc; i++)
        free(argv[i]);
    /* The file is read during the load: remove it now, whatever the result. */
    if (path[0] != '\0') {
        unlink(path);
        path[0] = '\0';
    }
    return rv;
}

#define LOAD(...) load_args((const char *const[]){__VA_ARGS__, NULL})

/* The load failed with `needle` in the error. */
static void expect_error(int rv, const char *needle)
{
    cr_assert_eq(rv, DOBJ_ECONFIG, "accepted; error '%s'", err);
    cr_assert_not_null(strstr(err, needle), "error '%s' lacks '%s'", err, needle);
}

Test(config, defaults)
{
    cr_assert_eq(load_args((const char *const[]){NULL}), 0, "%s", err);
    cr_assert_str_eq(cfg.listen_host, "127.0.0.1");
    cr_assert_eq(cfg.listen_port, 8080);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    cr_assert_eq(cfg.shards, ncpu > 0 ? (unsigned)ncpu : 1u);
    cr_assert_str_eq(cfg.data_dir, "./data");
    cr_assert_eq(cfg.nclasses, 0);
    cr_assert_eq(cfg.max_body, 1u << 20);
    cr_assert_eq(cfg.idle_timeout_ms, 30000);
    cr_assert_eq(cfg.max_open, 10000);
    cr_assert_eq(cfg.ws_msg_max, 1u << 20);
    cr_assert_eq(cfg.max_inflight, 65536);
    cr_assert_eq(cfg.log_level, RT_LOG_INFO);
}

Test(config, every_flag)
{
    int rv = LOAD("--listen", "0.0.0.0:9000", "--data", "/srv/d", "--shards", "3", "--class", "a.so",
                  "--max-body", "100", "--idle-timeout-ms", "5", "--max-open", "7", "--ws-msg-max", "64",
                  "--max-inflight", "11", "--log-level", "debug");
    cr_assert_eq(rv, 0, "%s", err);
    cr_assert_str_eq(cfg.listen_host, "0.0.0.0");
    cr_assert_eq(cfg.listen_port, 9000);
    cr_assert_str_eq(cfg.data_dir, "/srv/d");
    cr_assert_eq(cfg.shards, 3);
    cr_assert_eq(cfg.nclasses, 1);
    cr_assert_str_eq(cfg.classes[0], "a.so");
    cr_assert_eq(cfg.max_body, 100);
    cr_assert_eq(cfg.idle_timeout_ms, 5);
    cr_assert_eq(cfg.max_open, 7);
    cr_assert_eq(cfg.ws_msg_max, 64);
    cr_assert_eq(cfg.max_inflight, 11);
    cr_assert_eq(cfg.log_level, RT_LOG_DEBUG);
}

Test(config, file_sets_options)
{
    config_file("# a comment\n"
                "\n"
                "listen = 10.0.0.1:81\n"
                "  shards=2  \r\n"
                "max_body = 2M\n"
                "ws_msg_max = 64K\n"
                "idle_timeout_ms = 1000\n"
                "log_level = warn\n"
                "data = /var/lib/dobj\n"
                "class = one.so\n"
                "class = two.so\n");
    cr_assert_eq(LOAD("--config", "@"), 0, "%s", err);
    cr_assert_str_eq(cfg.listen_host, "10.0.0.1");
    cr_assert_eq(cfg.listen_port, 81);
    cr_assert_eq(cfg.shards, 2);
    cr_assert_eq(cfg.max_body, 2u << 20);
    cr_assert_eq(cfg.ws_msg_max, 64u << 10);
    cr_assert_eq(cfg.idle_timeout_ms, 1000);
    cr_assert_eq(cfg.log_level, RT_LOG_WARN);
    cr_assert_str_eq(cfg.data_dir, "/var/lib/dobj");
    cr_assert_eq(cfg.nclasses, 2);
    cr_assert_str_eq(cfg.classes[0], "one.so");
    cr_assert_str_eq(cfg.classes[1], "two.so");
}

Test(config, flags_override_the_file_before_it)
{
    config_file("listen = 0.0.0.0:7000\nshards = 3\n");
    cr_assert_eq(LOAD("--listen", "127.0.0.1:9", "--config", "@"), 0, "%s", err);
    cr_assert_str_eq(cfg.listen_host, "127.0.0.1");
    cr_assert_eq(cfg.listen_port, 9);
    cr_assert_eq(cfg.shards, 3, "the file's other options still apply");
}

Test(config, flags_override_the_file_after_it)
{
    config_file("listen = 0.0.0.0:7000\nshards = 3\n");
    cr_assert_eq(LOAD("--config", "@", "--listen", "127.0.0.1:9"), 0, "%s", err);
    cr_assert_str_eq(cfg.listen_host, "127.0.0.1");
    cr_assert_eq(cfg.listen_port, 9);
    cr_assert_eq(cfg.shards, 3);
}

Test(config, equals_form)
{
    config_file("shards = 3\ndata = /from/file\n");
    char config_flag[128];
    snprintf(config_flag, sizeof(config_flag), "--config=%s", path);
    cr_assert_eq(LOAD("--max-body=2M", "--listen=0.0.0.0:81", config_flag, "--shards=5", "--data=a=b"), 0, "%s",
                 err);
    cr_assert_eq(cfg.max_body, 2u << 20);
    cr_assert_str_eq(cfg.listen_host, "0.0.0.0");
    cr_assert_eq(cfg.listen_port, 81);
    cr_assert_eq(cfg.shards, 5);
    cr_assert_str_eq(cfg.data_dir, "a=b");
}

Test(config, listen_ipv6)
{
    /* The port follows the last colon; the front strips the brackets. */
    cr_assert_eq(LOAD("--listen", "[::1]:8081"), 0, "%s", err);
    cr_assert_eq(cfg.listen_port, 8081);
    cr_assert_not_null(strstr(cfg.listen_host, "::1"), "host '%s'", cfg.listen_host);
}

Test(config, repeated_class)
{
    cr_assert_eq(LOAD("--class", "a.so", "--class=b.so", "--class", "c.so"), 0, "%s", err);
    cr_assert_eq(cfg.nclasses, 3);
    cr_assert_str_eq(cfg.classes[0], "a.so");
    cr_assert_str_eq(cfg.classes[1], "b.so");
    cr_assert_str_eq(cfg.classes[2], "c.so");
}

Test(config, too_many_classes)
{
    const char *args[2 * (RT_CLASSES_MAX + 1) + 1];
    for (int i = 0; i <= RT_CLASSES_MAX; i++) {
        args[2 * i] = "--class";
        args[2 * i + 1] = "x.so";
    }
    args[2 * (RT_CLASSES_MAX + 1)] = NULL;
    /* load_args holds 31 arguments: go through rt_config_load directly. */
    char *argv[2 * (RT_CLASSES_MAX + 1)];
    memcpy(argv, args, sizeof(argv));
    int rv = rt_config_load(&cfg, 2 * (RT_CLASSES_MAX + 1), argv, err, sizeof(err));
    expect_error(rv, "class");
    cr_assert_eq(rt_config_load(&cfg, 2 * RT_CLASSES_MAX, argv, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(cfg.nclasses, RT_CLASSES_MAX);
}

Test(config, size_suffixes)
{
    cr_assert_eq(LOAD("--max-body", "2M"), 0, "%s", err);
    cr_assert_eq(cfg.max_body, 2097152);
    rt_config_close(&cfg);
    cr_assert_eq(LOAD("--max-body", "3k"), 0, "%s", err);
    cr_assert_eq(cfg.max_body, 3072);
    rt_config_close(&cfg);
    cr_assert_eq(LOAD("--max-body", "1G"), 0, "%s", err);
    cr_assert_eq(cfg.max_body, 1u << 30);
    rt_config_close(&cfg);
    cr_assert_eq(LOAD("--max-body", "0"), 0, "%s", err);
    cr_assert_eq(cfg.max_body, 0);
    rt_config_close(&cfg);
    expect_error(LOAD("--max-body", "2G"), "max_body");
    expect_error(LOAD("--max-body", "2MB"), "max_body");
    expect_error(LOAD("--max-body", "2T"), "max_body");
    expect_error(LOAD("--max-body", "M"), "max_body");
    /* Sizes only: a count takes no suffix. */
    expect_error(LOAD("--shards", "2K"), "shards");
}

Test(config, unknown_flag)
{
    expect_error(LOAD("--nope", "1"), "nope");
    expect_error(LOAD("--shards", "2", "--bogus=1"), "bogus");
    /* Flags spell '_' as '-'. */
    expect_error(LOAD("--max_body", "1"), "max_body");
    expect_error(LOAD("serve"), "serve");
    expect_error(LOAD("-shards", "2"), "-shards");
}

Test(config, missing_value)
{
    expect_error(LOAD("--shards"), "shards");
    cr_assert_not_null(strstr(err, "value"), "error '%s'", err);
    expect_error(LOAD("--listen", "127.0.0.1:1", "--config"), "config");
}

Test(config, bad_values)
{
    expect_error(LOAD("--shards", "abc"), "shards");
    cr_assert_not_null(strstr(err, "abc"), "error '%s' does not quote the value", err);
    expect_error(LOAD("--shards", ""), "shards");
    expect_error(LOAD("--shards", "-1"), "shards");
    expect_error(LOAD("--shards", "3x"), "shards");
    expect_error(LOAD("--shards", "99999999999999999999999"), "shards");
    expect_error(LOAD("--listen", "8080"), "listen");
    expect_error(LOAD("--listen", ":8080"), "listen");
    expect_error(LOAD("--listen", "h:65536"), "listen");
    expect_error(LOAD("--listen", "h:"), "listen");
    expect_error(LOAD("--log-level", "loud"), "log_level");
    expect_error(LOAD("--data", ""), "data");
}

Test(config, out_of_range)
{
    expect_error(LOAD("--shards", "0"), "shards");
    expect_error(LOAD("--shards", "257"), "shards");
    cr_assert_eq(LOAD("--shards", "256"), 0, "%s", err);
    cr_assert_eq(cfg.shards, 256);
    rt_config_close(&cfg);
    cr_assert_eq(LOAD("--shards", "1"), 0, "%s", err);
    cr_assert_eq(cfg.shards, 1);
    rt_config_close(&cfg);
    expect_error(LOAD("--ws-msg-max", "0"), "ws_msg_max");
    expect_error(LOAD("--max-open", "0"), "max_open");
    expect_error(LOAD("--max-inflight", "10000001"), "max_inflight");
    expect_error(LOAD("--idle-timeout-ms", "0"), "idle_timeout_ms");
}

Test(config, file_unknown_option_names_file_and_line)
{
    config_file("# dobj\nshards = 2\nbogus_opt = 1\nmax_body = 1\n");
    char want[128];
    snprintf(want, sizeof(want), "%s:3:", path);
    expect_error(LOAD("--config", "@"), want);
    cr_assert_not_null(strstr(err, "bogus_opt"), "error '%s'", err);
}

Test(config, file_line_without_equals)
{
    config_file("shards = 2\n\njust some words\n");
    char want[128];
    snprintf(want, sizeof(want), "%s:3:", path);
    expect_error(LOAD("--config", "@"), want);
    cr_assert_not_null(strstr(err, "just some words"), "error '%s'", err);
}

Test(config, file_bad_value_names_file_and_line)
{
    config_file("shards = 0\n");
    char want[128];
    snprintf(want, sizeof(want), "%s:1:", path);
    expect_error(LOAD("--config", "@"), want);
    cr_assert_not_null(strstr(err, "shards"), "error '%s'", err);
}

Test(config, file_keys_use_underscores)
{
    config_file("max-body = 1\n");
    char want[128];
    snprintf(want, sizeof(want), "%s:1:", path);
    expect_error(LOAD("--config", "@"), want);
    cr_assert_not_null(strstr(err, "max-body"), "error '%s'", err);
}

Test(config, missing_file)
{
    expect_error(LOAD("--config", "/nonexistent/dobj.conf"), "/nonexistent/dobj.conf");
}

Test(config, flag_error_wins_over_a_good_file)
{
    config_file("shards = 2\n");
    expect_error(LOAD("--config", "@", "--shards", "0"), "shards");
}

Test(config, failure_leaves_nothing_to_free)
{
    /* A failed load has already released what it allocated (under ASan a
     * leak would be reported) and a close after it is harmless. */
    expect_error(LOAD("--data", "/x", "--class", "a.so", "--listen", "h:1", "--shards", "0"), "shards");
    rt_config_close(&cfg);
    cr_assert_null(cfg.listen_host);
    cr_assert_eq(cfg.nclasses, 0);
}
