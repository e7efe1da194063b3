/*
 * LD_PRELOAD shim for test_programs.py: every listen() returns 30 ms late.
 * A SIGTERM sent as soon as the port accepts then lands while the program
 * is still setting up, which is the window the start-up order must cover
 * (without it the window is microseconds and a test could never fail).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <sys/socket.h>
#include <time.h>

int listen(int fd, int backlog)
{
        static int (*real)(int, int);
        if (!real)
                real = (int (*)(int, int))dlsym(RTLD_NEXT, "listen");
        int r = real(fd, backlog);
        struct timespec ts = {0, 30 * 1000 * 1000};
        nanosleep(&ts, NULL);
        return r;
}
