/*
 * The C floor: a minimal byte-echo server on edge-triggered epoll, one
 * thread, non-blocking sockets, TCP_NODELAY on accepted connections.
 *
 * Per readiness event on a connection: one read() into a static 64 KiB
 * buffer and one write() of what it got. A read shorter than the buffer
 * means the socket was drained (any later data brings a new edge), so no
 * second read to see EAGAIN. Nothing is allocated per message; a
 * connection gets a buffer only if a write comes up short (then reading
 * pauses and EPOLLOUT is watched until it is flushed).
 *
 * `--pong` (the `ping` workload): a Redis inline PING server instead. Per
 * event one read(), every '\n' in it ends a complete command line (a
 * partial line's '\n' comes with a later read, so no per-connection parse
 * state), and one write() of `+PONG\r\n` per complete line: one write per
 * batch of pipelined commands.
 *
 * `--own-buffers`: each connection reads into a 4 KiB buffer of its own,
 * allocated when it is accepted, instead of the static one (peer
 * `c-floor-buffers`): the memory a server holds when each connection's task
 * keeps a buffer, as our, tokio's and Nim's byte echoes do. What that costs
 * at thousands of connections belongs to the application, not the runtime.
 *
 * Usage: echo_floor [--pong] [--own-buffers] [PORT | --unix PATH]: TCP on 127.0.0.1:PORT
 * (0 or none: any free port), or a Unix stream socket at PATH (which must not
 * exist yet). Prints `listening on 127.0.0.1:PORT` (Unix: `listening on PATH`)
 * once it is ready.
 *
 * Built by the `echo_bench` runner, not by cargo: cc -O2 -o echo_floor echo_floor.c
 */
#define _GNU_SOURCE
#include <signal.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE 65536
/* --own-buffers: each connection's buffer, as the Rust and Nim echo servers hold. */
#define OWN_SIZE 4096
#define MAX_EVENTS 1024

/* Unflushed echo of a connection whose write came up short. */
struct pending {
    char *data;
    size_t len, off;
};

static char buf[BUF_SIZE];
/* --pong: the replies to one read (at most one per byte read). */
static const char PONG[] = "+PONG\r\n";
#define PONG_LEN (sizeof PONG - 1)
static char out[BUF_SIZE * PONG_LEN];
static int pong;
static struct pending *pend; /* indexed by fd */
static char **own;           /* --own-buffers: indexed by fd, else NULL */
static size_t max_fds;
static int ep;

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void drop(int fd) {
    free(pend[fd].data);
    memset(&pend[fd], 0, sizeof pend[fd]);
    if (own) {
        free(own[fd]);
        own[fd] = NULL;
    }
    close(fd); /* also removes it from the epoll set */
}

static int watch(int fd, int op, unsigned events) {
    /* EPOLLRDHUP: the peer's end may come in the same edge as its last bytes. */
    struct epoll_event ev = {.events = events | EPOLLET | EPOLLRDHUP, .data.fd = fd};
    return epoll_ctl(ep, op, fd, &ev);
}

/* Writes what is pending on fd. 1: all written, 0: would block, -1: error. */
static int flush_pending(int fd) {
    struct pending *p = &pend[fd];
    while (p->off < p->len) {
        ssize_t n = write(fd, p->data + p->off, p->len - p->off);
        if (n > 0) {
            p->off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            return 0;
        } else {
            return -1;
        }
    }
    p->len = p->off = 0;
    return 1;
}

/* Echoes what is readable on fd. */
static void on_conn(int fd, unsigned events) {
    if (pend[fd].len) {
        int r = flush_pending(fd);
        if (r < 0) {
            drop(fd);
            return;
        }
        if (r == 0)
            return;
        if (watch(fd, EPOLL_CTL_MOD, EPOLLIN) < 0)
            die("epoll_ctl");
        /* Reading paused while data was pending: there may be more. */
        events |= EPOLLIN;
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    char *in = own ? own[fd] : buf;
    ssize_t size = own ? OWN_SIZE : BUF_SIZE;
    for (;;) {
        ssize_t n = read(fd, in, (size_t)size);
        if (n == 0) {
            drop(fd);
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                drop(fd);
            return;
        }
        const char *src = in;
        ssize_t len = n;
        if (pong) {
            len = 0;
            for (const char *q = in; (q = memchr(q, '\n', (size_t)(in + n - q))); q++) {
                memcpy(out + len, PONG, PONG_LEN);
                len += (ssize_t)PONG_LEN;
            }
            src = out;
        }
        ssize_t w = len ? write(fd, src, (size_t)len) : 0;
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            drop(fd);
            return;
        }
        if (w < 0)
            w = 0;
        if (w < len) {
            struct pending *p = &pend[fd];
            p->data = realloc(p->data, (size_t)(len - w));
            if (!p->data)
                die("realloc");
            memcpy(p->data, src + w, (size_t)(len - w));
            p->len = (size_t)(len - w);
            p->off = 0;
            if (watch(fd, EPOLL_CTL_MOD, EPOLLOUT) < 0)
                die("epoll_ctl");
            return;
        }
        /* Drained, unless the peer's end came with the last bytes: no new edge
         * would announce it, so read on to it. */
        if (n < size && !(events & (EPOLLRDHUP | EPOLLHUP)))
            return;
    }
}

/* The listener, TCP or Unix (it uses `die`, above). */
#include "listen.h"

/* A Unix stream listener rather than TCP (`--unix PATH`): no TCP_NODELAY. */
static int is_unix;

static void on_listener(int lfd) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN)
                return;
            die("accept4");
        }
        if ((size_t)fd >= max_fds) {
            close(fd);
            continue;
        }
        if (own && !(own[fd] = malloc(OWN_SIZE))) {
            close(fd);
            continue;
        }
        int one = 1;
        if (!is_unix)
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (watch(fd, EPOLL_CTL_ADD, EPOLLIN) < 0)
            die("epoll_ctl");
    }
}

int main(int argc, char **argv) {
    long port = 0;
    /* A peer that resets must cost its connection (EPIPE), not the server (SIGPIPE). */
    signal(SIGPIPE, SIG_IGN);
    int own_buffers = 0;
    for (; argc >= 2; argv++, argc--) {
        if (strcmp(argv[1], "--pong") == 0)
            pong = 1;
        else if (strcmp(argv[1], "--own-buffers") == 0)
            own_buffers = 1;
        else
            break;
    }
    const char *path = NULL;
    if (argc == 3 && strcmp(argv[1], "--unix") == 0) {
        path = argv[2];
        is_unix = 1;
        argc = 1;
    }
    if (argc > 2 || (argc == 2 && strncmp(argv[1], "--", 2) == 0)) {
        fprintf(stderr, "usage: echo_floor [--pong] [--own-buffers] [PORT | --unix PATH]\n");
        return 2;
    }
    if (argc == 2) {
        char *end;
        port = strtol(argv[1], &end, 10);
        if (*end || port < 0 || port > 65535) {
            fprintf(stderr, "echo_floor: invalid port %s\n", argv[1]);
            return 2;
        }
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("getrlimit");
    max_fds = rl.rlim_cur == RLIM_INFINITY ? 1 << 20 : (size_t)rl.rlim_cur;
    pend = calloc(max_fds, sizeof *pend);
    if (!pend)
        die("calloc");
    if (own_buffers && !(own = calloc(max_fds, sizeof *own)))
        die("calloc");

    char ready[160];
    int lfd = listen_on("echo_floor", port, path, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        ready, sizeof ready);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    if (watch(lfd, EPOLL_CTL_ADD, EPOLLIN) < 0)
        die("epoll_ctl");
    printf("listening on %s\n", ready);
    fflush(stdout);

    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == lfd)
                on_listener(lfd);
            else
                on_conn(fd, events[i].events);
        }
    }
}
