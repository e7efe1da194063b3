/*
 * Helpers shared by the tests: blocking loopback clients with deadlines.
 */
#ifndef TERN_TESTUTIL_H
#define TERN_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Connects a blocking TCP socket to 127.0.0.1:@port (or ::1 when @v6).
 * Returns the fd or -errno. */
int tu_connect(uint16_t port, bool v6);
/* Writes all @len bytes or returns -errno. */
int tu_write_all(int fd, const void *buf, size_t len);
/* Reads exactly @len bytes within @timeout_ms. Returns 0, -ETIMEDOUT, or
 * -ECONNRESET / -EPIPE (peer closed early as 0 bytes: returns -ENODATA). */
int tu_read_exact(int fd, void *buf, size_t len, int timeout_ms);
/* Waits for end of stream within @timeout_ms. Returns 0 on EOF or reset,
 * -ETIMEDOUT, or -EPROTO if data arrived instead. */
int tu_wait_eof(int fd, int timeout_ms);
/* Polls @pred every millisecond until it returns true or @timeout_ms passes. */
bool tu_wait_until(bool (*pred)(void *), void *arg, int timeout_ms);
/* Sets SO_LINGER {1, 0} so close() sends RST. */
void tu_set_rst_on_close(int fd);
/* Fills @buf with a pattern derived from @seed and offset. */
void tu_pattern(uint8_t *buf, size_t len, uint32_t seed, size_t offset);
/* Number of open file descriptors of this process. */
int tu_open_fds(void);
/* A listening socket on 127.0.0.1:@port (0 = ephemeral), SO_REUSEADDR set,
 * so a test can stop and restart a peer on the same port. Returns the fd or
 * -errno. */
int tu_listen(uint16_t port, int backlog);
/* The local port @fd is bound to, or 0. */
uint16_t tu_local_port(int fd);
/* A port on 127.0.0.1 where nothing listens (bound once, then released):
 * connecting there is refused. */
uint16_t tu_unused_port(void);
/* Monotonic clock in milliseconds. */
int64_t tu_now_ms(void);
/* Path of the program build/bin/@name, found next to this test's own
 * directory (build/tests/..). Returns false if it is not built there. */
bool tu_app_path(const char *name, char *path, size_t cap);

#endif
