/*
 * tern-chat as a program: the command line and its variables, --check, the
 * built binary answering --check and stopping on SIGTERM, and the pieces
 * under the registries (SipHash, names).
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <ctype.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "chat_client.h"

/* ---- the command line ---- */

static const char *const *fake_env;

static const char *fake_getenv(const char *name)
{
        for (const char *const *e = fake_env; e && *e; e += 2)
                if (strcmp(e[0], name) == 0)
                        return e[1];
        return NULL;
}

static int parse(struct chat_config *cfg, const char *const *env, char *err, int argc, ...)
{
        char *argv[16];
        va_list ap;
        va_start(ap, argc);
        argv[0] = "tern-chat";
        for (int i = 1; i < argc; i++)
                argv[i] = va_arg(ap, char *);
        va_end(ap);
        argv[argc] = NULL;
        fake_env = env;
        FILE *out = fopen("/dev/null", "w");
        int r = chat_config_parse(cfg, argc, argv, fake_getenv, out, err, 256);
        fclose(out);
        return r;
}

Test(chat_program, config_defaults)
{
        struct chat_config cfg;
        char err[256];
        cr_assert_eq(parse(&cfg, NULL, err, 1), 0, "%s", err);
        cr_assert_null(cfg.opts.bind);
        cr_assert_eq(cfg.opts.port, 7000);
        cr_assert_eq(cfg.opts.workers, 0);
        cr_assert_eq(cfg.opts.idle_timeout_ms, 300000);
        cr_assert_eq(cfg.opts.max_conns, 0);
        cr_assert_eq(cfg.opts.max_line, 4096);
        cr_assert_eq(cfg.opts.max_outbuf, 1024 * 1024);
        cr_assert_eq(cfg.opts.flood_rate, 10);
        cr_assert_eq(cfg.opts.flood_burst, 20);
        cr_assert_eq(cfg.log_level, TERN_LOG_INFO);
        cr_assert_eq(cfg.log_format, TERN_LOG_TEXT);
        cr_assert_null(cfg.check);
}

Test(chat_program, config_flags_win_over_environment)
{
        static const char *const env[] = {
            "TERN_BIND",
            "::1",
            "TERN_PORT",
            "7100",
            "TERN_WORKERS",
            "3",
            "TERN_IDLE_TIMEOUT",
            "0",
            "TERN_MAX_CONNS",
            "50",
            "TERN_MAX_LINE",
            "1k",
            "TERN_MAX_OUTBUF",
            "2m",
            "TERN_LOG_LEVEL",
            "warn",
            "TERN_LOG_FORMAT",
            "json",
            "TERN_FLOOD_RATE",
            "0",
            "TERN_FLOOD_BURST",
            "50",
            NULL,
        };
        struct chat_config cfg;
        char err[256];
        cr_assert_eq(parse(&cfg, env, err, 1), 0, "%s", err);
        cr_assert_str_eq(cfg.opts.bind, "::1");
        cr_assert_eq(cfg.opts.port, 7100);
        cr_assert_eq(cfg.opts.workers, 3);
        cr_assert_eq(cfg.opts.idle_timeout_ms, 0);
        cr_assert_eq(cfg.opts.max_conns, 50);
        cr_assert_eq(cfg.opts.max_line, 1024);
        cr_assert_eq(cfg.opts.max_outbuf, 2 * 1024 * 1024);
        cr_assert_eq(cfg.log_level, TERN_LOG_WARN);
        cr_assert_eq(cfg.log_format, TERN_LOG_JSON);
        cr_assert_eq(cfg.opts.flood_rate, 0);
        cr_assert_eq(cfg.opts.flood_burst, 50);
        cr_assert_eq(parse(&cfg, env, err, 3, "--flood-rate", "5"), 0, "%s", err);
        cr_assert_eq(cfg.opts.flood_rate, 5);
        cr_assert_eq(cfg.opts.flood_burst, 50);

        cr_assert_eq(parse(&cfg, env, err, 12, "--port", "7200", "-w", "2", "--max-outbuf=65536",
                           "--idle-timeout", "30", "--log-format", "text", "--bind", "127.0.0.1"),
                     0, "%s", err);
        cr_assert_eq(cfg.opts.port, 7200);
        cr_assert_eq(cfg.opts.workers, 2);
        cr_assert_eq(cfg.opts.max_outbuf, 65536);
        cr_assert_eq(cfg.opts.idle_timeout_ms, 30000);
        cr_assert_eq(cfg.log_format, TERN_LOG_TEXT);
        cr_assert_str_eq(cfg.opts.bind, "127.0.0.1");
        cr_assert_eq(cfg.opts.max_conns, 50, "unset flags keep the variable");

        /* A variable set to nothing counts as unset. */
        static const char *const empty[] = {"TERN_PORT", "", NULL};
        cr_assert_eq(parse(&cfg, empty, err, 1), 0, "%s", err);
        cr_assert_eq(cfg.opts.port, 7000);
}

Test(chat_program, config_admin_from_flag_or_environment)
{
        struct chat_config cfg;
        char err[256];
        cr_assert_eq(parse(&cfg, NULL, err, 1), 0, "%s", err);
        cr_assert_null(cfg.admin, "the admin endpoint is off by default");
        static const char *const env[] = {"TERN_ADMIN", "127.0.0.1:9100", NULL};
        cr_assert_eq(parse(&cfg, env, err, 1), 0, "%s", err);
        cr_assert_str_eq(cfg.admin, "127.0.0.1:9100");
        cr_assert_eq(parse(&cfg, env, err, 3, "--admin", "[::1]:9200"), 0, "%s", err);
        cr_assert_str_eq(cfg.admin, "[::1]:9200", "the flag wins");
        cr_assert_eq(parse(&cfg, NULL, err, 3, "-A", "9300"), 0, "%s", err);
        cr_assert_str_eq(cfg.admin, "9300");
        cr_assert_eq(parse(&cfg, NULL, err, 3, "--admin", "host:port"), -EINVAL);
        cr_assert(strstr(err, "--admin"), "%s", err);
        static const char *const bad[] = {"TERN_ADMIN", "::1:80", NULL};
        cr_assert_eq(parse(&cfg, bad, err, 1), -EINVAL);
        cr_assert(strstr(err, "TERN_ADMIN"), "%s", err);
}

Test(chat_program, config_rejects_bad_values_by_name)
{
        static const char *const bad_flags[][2] = {
            {"--port", "70000"},      {"--port", "abc"},
            {"--port", "-1"},         {"--port", " 80"},
            {"--workers", "0"},       {"--workers", "256"},
            {"--idle-timeout", "-5"}, {"--idle-timeout", "1.5"},
            {"--max-conns", "many"},  {"--max-line", "10"},
            {"--max-line", "2m"},     {"--max-outbuf", "12"},
            {"--max-outbuf", "5x"},   {"--max-outbuf", "1kk"},
            {"--log-level", "loud"},  {"--log-format", "xml"},
            {"--bind", ""},           {"--check", ""},
            {"--flood-rate", "-1"},   {"--flood-burst", "fast"},
        };
        struct chat_config cfg;
        char err[256];
        for (size_t i = 0; i < sizeof(bad_flags) / sizeof(bad_flags[0]); i++) {
                int r = parse(&cfg, NULL, err, 3, bad_flags[i][0], bad_flags[i][1]);
                cr_assert_eq(r, -EINVAL, "%s %s accepted", bad_flags[i][0], bad_flags[i][1]);
                cr_assert(strstr(err, bad_flags[i][0]), "message does not name %s: %s",
                          bad_flags[i][0], err);
        }
        static const char *const bad_env[] = {"TERN_WORKERS", "lots", NULL};
        cr_assert_eq(parse(&cfg, bad_env, err, 1), -EINVAL);
        cr_assert(strstr(err, "TERN_WORKERS"), "%s", err);
        /* The flag is read after the variable, but a bad variable is still an error. */
        cr_assert_eq(parse(&cfg, bad_env, err, 3, "--workers", "2"), -EINVAL);

        cr_assert_eq(parse(&cfg, NULL, err, 2, "--frobnicate"), -EINVAL);
        cr_assert(strstr(err, "--frobnicate"), "%s", err);
        cr_assert_eq(parse(&cfg, NULL, err, 2, "--port"), -EINVAL);
        cr_assert(strstr(err, "--port"), "%s", err);
        cr_assert_eq(parse(&cfg, NULL, err, 2, "stray"), -EINVAL);
        cr_assert(strstr(err, "stray"), "%s", err);
}

Test(chat_program, config_help_lists_every_flag_and_variable)
{
        char *text = NULL;
        size_t size = 0;
        FILE *out = open_memstream(&text, &size);
        char *argv[] = {"tern-chat", "--help", NULL};
        struct chat_config cfg;
        char err[256];
        fake_env = NULL;
        cr_assert_eq(chat_config_parse(&cfg, 2, argv, fake_getenv, out, err, sizeof(err)), 1);
        fclose(out);
        static const char *const names[] = {
            "--bind",           "--port",
            "--workers",        "--idle-timeout",
            "--max-conns",      "--max-line",
            "--max-outbuf",     "--log-level",
            "--log-format",     "--check",
            "TERN_BIND",        "TERN_PORT",
            "TERN_WORKERS",     "TERN_IDLE_TIMEOUT",
            "TERN_MAX_CONNS",   "TERN_MAX_LINE",
            "TERN_MAX_OUTBUF",  "TERN_LOG_LEVEL",
            "TERN_LOG_FORMAT",  "--flood-rate",
            "--flood-burst",    "TERN_FLOOD_RATE",
            "TERN_FLOOD_BURST",
        };
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                cr_assert(strstr(text, names[i]), "--help does not mention %s", names[i]);
        free(text);
}

Test(chat_program, sizes_take_binary_suffixes)
{
        uint64_t v;
        cr_assert(app_parse_size("4096", 1, 1u << 30, &v) && v == 4096);
        cr_assert(app_parse_size("64k", 1, 1u << 30, &v) && v == 65536);
        cr_assert(app_parse_size("1M", 1, 1u << 30, &v) && v == 1048576);
        cr_assert(app_parse_size("1g", 1, 1u << 30, &v) && v == 1u << 30);
        cr_assert_not(app_parse_size("2g", 1, 1u << 30, &v));
        cr_assert_not(app_parse_size("k", 1, 1u << 30, &v));
        cr_assert_not(app_parse_size("-1", 0, UINT64_MAX, &v));
        cr_assert_not(app_parse_size(" 5", 0, UINT64_MAX, &v));
        cr_assert_not(app_parse_size("5kb", 0, UINT64_MAX, &v));
        cr_assert_not(app_parse_size("99999999999999999999", 1, UINT64_MAX, &v));
        cr_assert_not(app_parse_size("17179869184g", 1, UINT64_MAX, &v));
}

/* apps/common: --accept for tern-echo, tern-kv and tern-proxy */
Test(chat_program, accept_modes_parse)
{
        enum tern_accept_mode m = TERN_ACCEPT_THREAD;
        cr_assert(app_parse_accept("auto", &m) && m == TERN_ACCEPT_AUTO);
        cr_assert(app_parse_accept("thread", &m) && m == TERN_ACCEPT_THREAD);
        cr_assert(app_parse_accept("worker", &m) && m == TERN_ACCEPT_WORKER);
        cr_assert_not(app_parse_accept("Worker", &m));
        cr_assert_not(app_parse_accept("", &m));
        cr_assert_not(app_parse_accept("threads", &m));
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        bool have_port = false;
        uint32_t max_conns = 0;
        char err[256];
        cr_assert_eq(app_server_flag('a', "worker", "--accept", &o, &have_port, &max_conns, err,
                                     sizeof(err)),
                     1);
        cr_assert_eq(o.accept, TERN_ACCEPT_WORKER);
        cr_assert_eq(app_server_flag('a', "sideways", "TERN_ACCEPT", &o, &have_port, &max_conns,
                                     err, sizeof(err)),
                     -EINVAL);
        cr_assert(strstr(err, "TERN_ACCEPT"), "%s", err);

        /* tern-chat takes it too, from its variable or its flag. */
        struct chat_config cfg;
        static const char *const env[] = {"TERN_ACCEPT", "thread", NULL};
        cr_assert_eq(parse(&cfg, env, err, 1), 0, "%s", err);
        cr_assert_eq(cfg.opts.accept, TERN_ACCEPT_THREAD);
        cr_assert_eq(parse(&cfg, env, err, 3, "--accept", "worker"), 0, "%s", err);
        cr_assert_eq(cfg.opts.accept, TERN_ACCEPT_WORKER);
        cr_assert_eq(parse(&cfg, env, err, 3, "-a", "both"), -EINVAL);
        cr_assert(strstr(err, "-a") || strstr(err, "--accept"), "%s", err);
}

/* ---- --check ---- */

Test(chat_program, check_sees_a_live_server_and_only_that)
{
        struct chat_server *cs = start(2);
        char target[64], err[256];
        snprintf(target, sizeof(target), "127.0.0.1:%u", chat_server_port(cs));
        cr_assert_eq(chat_check(target, 2000, err, sizeof(err)), 0, "%s", err);
        snprintf(target, sizeof(target), "%u", chat_server_port(cs));
        cr_assert_eq(chat_check(target, 2000, err, sizeof(err)), 0, "%s", err);

        /* A port that accepts but never speaks is not healthy. */
        int l = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t alen = sizeof(a);
        cr_assert_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
        cr_assert_eq(listen(l, 4), 0);
        getsockname(l, (struct sockaddr *)&a, &alen);
        snprintf(target, sizeof(target), "127.0.0.1:%u", ntohs(a.sin_port));
        cr_assert_eq(chat_check(target, 300, err, sizeof(err)), -ETIMEDOUT, "%s", err);
        close(l);
        /* Nobody listening now. */
        cr_assert_eq(chat_check(target, 2000, err, sizeof(err)), -ECONNREFUSED, "%s", err);

        static const char *const bad[] = {"", "host:", "a:b:c", "[::1]", "[::1]:x", "7000x"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                cr_assert_eq(chat_check(bad[i], 100, err, sizeof(err)), -EINVAL, "'%s'", bad[i]);
        stop(cs);
}

/* ---- the program itself ---- */

static bool chat_binary(char *path, size_t cap)
{
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n <= 0)
                return false;
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (!slash)
                return false;
        *slash = '\0';
        snprintf(path, cap, "%s/../bin/tern-chat", self);
        return access(path, X_OK) == 0;
}

/* Runs @path with @argv and @env; returns its exit status. */
static int run(char *const argv[], char *const env[])
{
        pid_t pid = fork();
        if (pid == 0) {
                int devnull = open("/dev/null", O_WRONLY);
                dup2(devnull, 1);
                dup2(devnull, 2);
                execve(argv[0], argv, env);
                _exit(127);
        }
        int status;
        waitpid(pid, &status, 0);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Test(chat_program, the_program_runs_checks_and_stops_on_sigterm)
{
        char path[4200];
        if (!chat_binary(path, sizeof(path)))
                cr_skip_test("build/bin/tern-chat is not built next to this test");

        char *bad_port[] = {path, "--port", "nope", NULL};
        char *no_env[] = {NULL};
        cr_assert_eq(run(bad_port, no_env), 2);
        char *bad_env[] = {"TERN_WORKERS=0", NULL};
        char *plain[] = {path, NULL};
        cr_assert_eq(run(plain, bad_env), 2);
        char *help[] = {path, "--help", NULL};
        cr_assert_eq(run(help, no_env), 0);

        int err_pipe[2];
        cr_assert_eq(pipe(err_pipe), 0);
        pid_t pid = fork();
        if (pid == 0) {
                dup2(err_pipe[1], 2);
                close(err_pipe[0]);
                char *argv[] = {path, "--port", "0", "--bind", "127.0.0.1", NULL};
                char *env[] = {"TERN_WORKERS=2", "TERN_LOG_LEVEL=info", NULL};
                execve(path, argv, env);
                _exit(127);
        }
        close(err_pipe[1]);
        /* The start-up line names the port. */
        char log[4096];
        size_t len = 0;
        unsigned port = 0;
        while (!port && len < sizeof(log) - 1) {
                ssize_t n = read(err_pipe[0], log + len, sizeof(log) - 1 - len);
                cr_assert_gt(n, 0, "tern-chat exited before listening");
                len += (size_t)n;
                log[len] = '\0';
                const char *p = strstr(log, "listening on 127.0.0.1 port ");
                if (p && strchr(p, '\n'))
                        sscanf(p + strlen("listening on 127.0.0.1 port "), "%u", &port);
        }
        cr_assert(strstr(log, "2 worker(s)"), "%s", log);

        char target[32];
        snprintf(target, sizeof(target), "127.0.0.1:%u", port);
        char *check[] = {path, "--check", target, NULL};
        cr_assert_eq(run(check, no_env), 0);

        struct cc c;
        cr_assert_eq(cc_open(&c, (uint16_t)port), 0);
        kill(pid, SIGTERM);
        cc_expect(&c, "* server shutting down");
        expect_eof(&c);
        cc_close(&c);
        int status;
        waitpid(pid, &status, 0);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
        close(err_pipe[0]);
        /* Down now: the check says so. */
        cr_assert_eq(run(check, no_env), 1);
}

/* ---- pieces ---- */

Test(chat_program, siphash_matches_the_reference_vectors)
{
        /* Key 00..0f; messages 00..(n-1): vectors of the SipHash paper. */
        uint8_t msg[16];
        for (int i = 0; i < 16; i++)
                msg[i] = (uint8_t)i;
        const uint64_t k0 = 0x0706050403020100ull, k1 = 0x0f0e0d0c0b0a0908ull;
        cr_assert_eq(chat_siphash(k0, k1, msg, 0), 0x726fdb47dd0e0e31ull);
        cr_assert_eq(chat_siphash(k0, k1, msg, 1), 0x74f839c593dc67fdull);
        cr_assert_eq(chat_siphash(k0, k1, msg, 15), 0xa129ca6149be45e5ull);
}

Test(chat_program, names_are_1_to_32_safe_characters)
{
        cr_assert(chat_name_valid("a", 1));
        cr_assert(chat_name_valid("Az09_-", 6));
        cr_assert(chat_name_valid("12345678901234567890123456789012", 32));
        cr_assert_not(chat_name_valid("", 0));
        cr_assert_not(chat_name_valid("123456789012345678901234567890123", 33));
        cr_assert_not(chat_name_valid("a b", 3));
        cr_assert_not(chat_name_valid("a#", 2));
        cr_assert_not(chat_name_valid("\xc3\xa9", 2));
}

/* --cluster redis://HOST[:PORT] (cluster.c parses it, config.c checks it) */
Test(chat_program, cluster_url_is_checked)
{
        char host[256];
        uint16_t port = 0;
        cr_assert_eq(chat_cluster_url("redis://127.0.0.1:6380", host, sizeof(host), &port), 0);
        cr_assert_str_eq(host, "127.0.0.1");
        cr_assert_eq(port, 6380);
        cr_assert_eq(chat_cluster_url("REDIS://cache.local/", host, sizeof(host), &port), 0);
        cr_assert_str_eq(host, "cache.local");
        cr_assert_eq(port, 6379, "the default port");
        static const char *const bad[] = {
            "http://h:1",      "redis://",        "redis://h:",    "redis://h:0", "redis://h:x1",
            "redis://h:70000", "redis://u:p@h:1", "redis://h:1/2", "h:6379",      "",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                cr_assert_eq(chat_cluster_url(bad[i], NULL, 0, NULL), -EINVAL, "%s accepted",
                             bad[i]);
        cr_assert_eq(chat_cluster_url("redis://averyveryverylonghostname:1", host, 8, NULL),
                     -EINVAL, "a host longer than its buffer");

        struct chat_config cfg;
        char err[256];
        cr_assert_eq(parse(&cfg, NULL, err, 1), 0);
        cr_assert_null(cfg.opts.cluster, "off by default");
        cr_assert_eq(parse(&cfg, NULL, err, 3, "--cluster", "redis:/h:1"), -EINVAL);
        cr_assert(strstr(err, "--cluster"), "%s", err);
        static const char *const env[] = {"TERN_CLUSTER", "redis://a:1", NULL};
        cr_assert_eq(parse(&cfg, env, err, 1), 0);
        cr_assert_str_eq(cfg.opts.cluster, "redis://a:1");
        cr_assert_eq(parse(&cfg, env, err, 3, "--cluster", "redis://b:2"), 0);
        cr_assert_str_eq(cfg.opts.cluster, "redis://b:2", "the flag wins");
        static const char *const bad_env[] = {"TERN_CLUSTER", "nope", NULL};
        cr_assert_eq(parse(&cfg, bad_env, err, 1), -EINVAL);
        cr_assert(strstr(err, "TERN_CLUSTER"), "%s", err);
}
