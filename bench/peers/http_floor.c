/*
 * The `http` workload's C floor: the least an HTTP/1.1 keep-alive "hello
 * world" server can do per request, on edge-triggered epoll, one thread,
 * non-blocking sockets, TCP_NODELAY on accepted connections.
 *
 * Not an HTTP server: it parses nothing. Per readiness event on a
 * connection: one read() into a static 64 KiB buffer; every "\r\n\r\n" in
 * the stream ends a request (one byte of state per connection says how much
 * of that terminator the previous read ended with, so a split terminator
 * still counts once); one write() of as many canned `200 OK` responses
 * (`Content-Type: text/plain`, `Content-Length: 13`, `Hello, World!`: the
 * bytes `http_asyncnet` sends) as requests ended. So a request with a body,
 * or one asking to close, is answered wrongly: fine for wrk's GETs, which
 * is all this peer is for. A read shorter than the buffer means the socket
 * was drained; a connection gets a buffer only if a write comes up short
 * (then reading pauses and EPOLLOUT is watched until it is flushed).
 *
 * Usage: http_floor [PORT] (0 = any free port), TCP on 127.0.0.1 only.
 * Prints `listening on 127.0.0.1:PORT` once it is ready.
 *
 * Built by the `echo_bench` runner, not by cargo: cc -O2 -o http_floor http_floor.c
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
#define MAX_EVENTS 1024

static const char RESPONSE[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                               "Content-Length: 13\r\n\r\nHello, World!";
#define RESPONSE_LEN (sizeof RESPONSE - 1)
static const char END[] = "\r\n\r\n";

/* Unflushed responses of a connection whose write came up short. */
struct conn {
    char *data;
    size_t len, off;
    /* How many bytes of "\r\n\r\n" the stream read so far ends with. */
    unsigned char matched;
};

static char buf[BUF_SIZE];
/* The responses to one read: at most one request ends per 4 bytes read. */
static char out[BUF_SIZE / 4 * RESPONSE_LEN];
static struct conn *conns; /* indexed by fd */
static size_t max_fds;
static int ep;

static void die(const char *what) {
    perror(what);
    exit(1);
}

/* The listener (it uses `die`, above). */
#include "listen.h"

static void drop(int fd) {
    free(conns[fd].data);
    memset(&conns[fd], 0, sizeof conns[fd]);
    close(fd); /* also removes it from the epoll set */
}

static int watch(int fd, int op, unsigned events) {
    struct epoll_event ev = {.events = events | EPOLLET, .data.fd = fd};
    return epoll_ctl(ep, op, fd, &ev);
}

/* Writes what is pending on fd. 1: all written, 0: would block, -1: error. */
static int flush_pending(int fd) {
    struct conn *c = &conns[fd];
    while (c->off < c->len) {
        ssize_t n = write(fd, c->data + c->off, c->len - c->off);
        if (n > 0) {
            c->off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            return 0;
        } else {
            return -1;
        }
    }
    c->len = c->off = 0;
    return 1;
}

/* Counts the requests that end in buf[0..n), carrying the match state. */
static size_t count_ends(struct conn *c, const char *p, size_t n) {
    size_t ends = 0;
    unsigned m = c->matched;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == END[m]) {
            if (++m == 4) {
                ends++;
                m = 0;
            }
        } else {
            m = p[i] == '\r' ? 1 : 0;
        }
    }
    c->matched = (unsigned char)m;
    return ends;
}

/* Answers the requests readable on fd. */
static void on_conn(int fd, unsigned events) {
    struct conn *c = &conns[fd];
    if (c->len) {
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
    for (;;) {
        ssize_t n = read(fd, buf, BUF_SIZE);
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
        size_t ends = count_ends(c, buf, (size_t)n);
        ssize_t len = (ssize_t)(ends * RESPONSE_LEN);
        for (size_t i = 0; i < ends; i++)
            memcpy(out + i * RESPONSE_LEN, RESPONSE, RESPONSE_LEN);
        ssize_t w = len ? write(fd, out, (size_t)len) : 0;
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            drop(fd);
            return;
        }
        if (w < 0)
            w = 0;
        if (w < len) {
            c->data = realloc(c->data, (size_t)(len - w));
            if (!c->data)
                die("realloc");
            memcpy(c->data, out + w, (size_t)(len - w));
            c->len = (size_t)(len - w);
            c->off = 0;
            if (watch(fd, EPOLL_CTL_MOD, EPOLLOUT) < 0)
                die("epoll_ctl");
            return;
        }
        if (n < BUF_SIZE)
            return; /* drained */
    }
}

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
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (watch(fd, EPOLL_CTL_ADD, EPOLLIN) < 0)
            die("epoll_ctl");
    }
}

int main(int argc, char **argv) {
    long port = 0;
    /* A peer that resets must cost its connection (EPIPE), not the server (SIGPIPE). */
    signal(SIGPIPE, SIG_IGN);
    if (argc > 2 || (argc == 2 && strncmp(argv[1], "--", 2) == 0)) {
        fprintf(stderr, "usage: http_floor [PORT] (TCP on 127.0.0.1 only)\n");
        return 2;
    }
    if (argc == 2) {
        char *end;
        port = strtol(argv[1], &end, 10);
        if (*end || port < 0 || port > 65535) {
            fprintf(stderr, "http_floor: invalid port %s\n", argv[1]);
            return 2;
        }
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("getrlimit");
    max_fds = rl.rlim_cur == RLIM_INFINITY ? 1 << 20 : (size_t)rl.rlim_cur;
    conns = calloc(max_fds, sizeof *conns);
    if (!conns)
        die("calloc");

    char ready[160];
    int lfd = listen_on("http_floor", port, NULL, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
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
