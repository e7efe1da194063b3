/*
 * example-ticker: sends "tick <n>\n" to every connected client every
 * <interval> ms; what clients send is ignored.
 * One timer, on worker 0, broadcasts; clients live on every worker, so it
 * reaches them through handles (a conn pointer is only for its own worker).
 * Usage: example-ticker [port [interval_ms]]   (defaults 7003 and 1000)
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <tern/tern.h>

enum { MAX_CLIENTS = 256 };

static tern_server *server;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER; /* guards clients */
static tern_handle clients[MAX_CLIENTS];                 /* 0 = free slot */
static struct tern_timer ticker;
static unsigned long ticks;

static void on_open(tern_conn *c) /* on the connection's worker */
{
        pthread_mutex_lock(&lock);
        size_t i = 0;
        while (i < MAX_CLIENTS && clients[i] != TERN_HANDLE_NONE)
                i++;
        if (i < MAX_CLIENTS)
                clients[i] = tern_conn_handle(c);
        pthread_mutex_unlock(&lock);
        tern_conn_set_data(c, (void *)(uintptr_t)i); /* for on_close */
        if (i == MAX_CLIENTS)
                tern_conn_close(c);
}

static void on_close(tern_conn *c, enum tern_close_reason reason, int err)
{
        (void)reason;
        (void)err;
        uintptr_t i = (uintptr_t)tern_conn_data(c);
        pthread_mutex_lock(&lock);
        if (i < MAX_CLIENTS)
                clients[i] = TERN_HANDLE_NONE;
        pthread_mutex_unlock(&lock);
}

static void on_tick(struct tern_timer *t, void *arg) /* on worker 0 */
{
        (void)t;
        (void)arg;
        char msg[32];
        int len = snprintf(msg, sizeof(msg), "tick %lu\n", ++ticks);
        pthread_mutex_lock(&lock);
        for (size_t i = 0; i < MAX_CLIENTS; i++)
                if (clients[i] != TERN_HANDLE_NONE) /* copied; a stale one is a no-op */
                        tern_handle_send(server, clients[i], msg, (size_t)len);
        pthread_mutex_unlock(&lock);
}

static void worker_start(tern_loop *loop, void *user)
{
        uint64_t *interval_ms = user;
        if (tern_loop_index(loop) == 0)
                tern_loop_timer_start(loop, &ticker, *interval_ms, *interval_ms);
}

static void worker_stop(tern_loop *loop, void *user)
{
        (void)user;
        if (tern_loop_index(loop) == 0)
                tern_loop_timer_stop(loop, &ticker);
}

static void on_signal(int sig)
{
        (void)sig;
        tern_server_stop(server); /* async-signal-safe */
}

int main(int argc, char **argv)
{
        static const struct tern_conn_ops ops = {.on_open = on_open, .on_close = on_close};
        uint64_t interval_ms = argc > 2 ? strtoull(argv[2], NULL, 10) : 1000;
        tern_timer_init(&ticker, on_tick, NULL);
        struct tern_server_opts o;
        tern_server_opts_init(&o);
        o.port = (uint16_t)(argc > 1 ? strtol(argv[1], NULL, 10) : 7003);
        o.bind = "127.0.0.1";
        o.ops = &ops;
        o.user = &interval_ms;
        o.on_worker_start = worker_start;
        o.on_worker_stop = worker_stop;
        if (interval_ms == 0 || !(server = tern_server_new(&o))) {
                fprintf(stderr, "example-ticker: bad interval or cannot listen\n");
                return 1;
        }
        struct sigaction sa = {.sa_handler = on_signal}; /* empty sa_mask */
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        printf("example-ticker listening on 127.0.0.1 port %u\n", tern_server_port(server));
        fflush(stdout);
        int r = tern_server_run(server);
        tern_server_free(server);
        return r ? 1 : 0;
}
