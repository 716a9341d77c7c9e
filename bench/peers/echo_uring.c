/*
 * The C io_uring floor: the same servers as echo_floor.c (byte echo, and
 * with `--pong` the Redis inline PING server), on io_uring instead of
 * epoll. One thread, raw system calls (no liburing: Debian 12's 2.3 has no
 * io_uring_setup_buf_ring, and this way the peer builds with `cc` alone,
 * like the epoll floor).
 *
 * - The ring: SINGLE_ISSUER | DEFER_TASKRUN | COOP_TASKRUN, then without
 *   COOP_TASKRUN, then SINGLE_ISSUER alone, then no flag, each next one
 *   tried when the kernel says EINVAL (older kernels).
 * - One multishot accept on the listener; per connection one multishot
 *   recv that picks its buffers from a provided-buffer ring (registered
 *   with IORING_REGISTER_PBUF_RING); a buffer goes back to the ring in the
 *   same loop turn its data is handled in.
 * - One io_uring_enter per loop turn: the sends (and re-armed receives)
 *   queued while handling the completions are submitted by the same call
 *   that waits for the next completions (submit-and-wait).
 * - Output: one send is in flight per connection at a time, and nothing
 *   touches what it sends until it completes (a short send sends the rest
 *   next). An echo with nothing queued is sent straight from the provided
 *   buffer it arrived in (that buffer goes back to the ring when the send
 *   is done); anything else (replies, data arriving while a send is in
 *   flight) is copied to the connection's `next` buffer, which becomes
 *   the `out` buffer being sent when the send before it is done. A connection whose unsent output
 *   passes HIGH_WATER stops receiving (its recv is cancelled) until the
 *   output is under LOW_WATER, so a client that sends without reading
 *   costs bounded memory. Nothing received is dropped: on end of stream
 *   the output is flushed before the socket is closed.
 * - A socket is closed (close(2)) only once no request of the ring refers
 *   to it (no recv armed, no send in flight), so its descriptor number is
 *   never reused while a completion for it may still come.
 *
 * `--pong`: one `+PONG\r\n` per '\n' received (as echo_floor.c: a partial
 * line's '\n' comes with a later receive, so no per-connection state).
 *
 * Usage: echo_uring [--pong] [PORT | --unix PATH]: TCP on 127.0.0.1:PORT
 * (0 or none: any free port), or a Unix stream socket at PATH (which must not
 * exist yet). Prints `listening on 127.0.0.1:PORT` (Unix: `listening on
 * PATH`) once it is ready.
 * `echo_uring --check`: sets up the ring and the buffer ring, says which
 * flags the kernel took, and exits 0; exits 3 with a clear message when
 * io_uring is unavailable (ENOSYS: no io_uring; EPERM: disabled by
 * kernel.io_uring_disabled or forbidden by a seccomp profile such as
 * Docker's default). Needs Linux 6.0 or later (multishot recv).
 *
 * Built by the `bench` runner, not by cargo: cc -O2 -o echo_uring echo_uring.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef IORING_SETUP_DEFER_TASKRUN
#error "echo_uring needs the Linux 6.1+ UAPI headers (Debian: linux-libc-dev from bookworm on)"
#endif

#define SQ_ENTRIES 4096
#define CQ_ENTRIES 16384
/* Provided buffers: a power of two below 65536, each BUF_SIZE bytes
 * (address space only until the kernel first fills them). */
#define NBUFS 8192
#define BUF_SIZE 4096
#define BGID 0
#define HIGH_WATER (4u << 20)
#define LOW_WATER (1u << 20)

/* What a completion is for: user_data = kind << 32 | fd. */
enum { K_ACCEPT = 1, K_RECV, K_SEND, K_CANCEL };

static const char PONG[] = "+PONG\r\n";
#define PONG_LEN (sizeof PONG - 1)

struct obuf {
    char *data;
    size_t len, cap;
};

struct conn {
    struct obuf out;  /* sent from when a send of queued output is in flight */
    struct obuf next; /* queued behind the send in flight */
    /* What the send in flight sends, from `sent` on: out.data, or provided
     * buffer `held - 1` (held 0: none). */
    const char *src;
    size_t src_len, sent;
    unsigned held;
    /* recv_armed: a multishot recv may still complete; cancelled: its
     * cancellation is queued; paused: over HIGH_WATER, not receiving;
     * closing: to be closed once idle; discard: without sending the rest. */
    unsigned recv_armed : 1, sending : 1, paused : 1, closing : 1, cancelled : 1, discard : 1;
};

static struct conn *conns; /* indexed by fd */
static size_t max_fds;
static int pong, lfd;

/* The ring. */
static int ring_fd;
static unsigned *sq_head, *sq_tail, *sq_mask;
static unsigned *cq_head, *cq_tail, *cq_mask;
static struct io_uring_sqe *sqes;
static struct io_uring_cqe *cqes;
static unsigned sq_local_tail, to_submit;
static unsigned setup_flags;

/* The provided-buffer ring. */
static struct io_uring_buf_ring *br;
static char *bufs;
static unsigned short br_tail;

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void die_errno(const char *what, int err) {
    errno = err;
    die(what);
}

static int enter(unsigned submit, unsigned wait, unsigned flags) {
    return (int)syscall(__NR_io_uring_enter, ring_fd, submit, wait, flags, NULL, 0);
}

/* io_uring is there but may not be used, or is not there: exit 3 saying so. */
static void unavailable(int err) {
    fprintf(stderr,
            "echo_uring: io_uring_setup: %s: io_uring is unavailable here (%s)\n",
            strerror(err),
            err == ENOSYS   ? "the kernel has no io_uring, or a seccomp profile such as "
                              "Docker's default makes it look so"
            : err == EPERM  ? "disabled by sysctl kernel.io_uring_disabled, or forbidden by "
                              "a seccomp profile such as Docker's default"
                            : "unexpected error");
    exit(3);
}

static void setup_ring(void) {
    static const unsigned tries[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN,
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_SINGLE_ISSUER,
        0,
    };
    struct io_uring_params p;
    int fd = -1;
    for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
        memset(&p, 0, sizeof p);
        p.flags = tries[i] | IORING_SETUP_CQSIZE;
        p.cq_entries = CQ_ENTRIES;
        fd = (int)syscall(__NR_io_uring_setup, SQ_ENTRIES, &p);
        if (fd >= 0) {
            setup_flags = tries[i];
            break;
        }
        if (errno != EINVAL)
            unavailable(errno);
    }
    if (fd < 0)
        unavailable(errno);
    ring_fd = fd;
    if (!(p.features & IORING_FEAT_SINGLE_MMAP) || !(p.features & IORING_FEAT_NODROP)) {
        fprintf(stderr, "echo_uring: the kernel's io_uring is too old (needs Linux 6.0+)\n");
        exit(3);
    }
    size_t sq_size = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_size = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    size_t size = sq_size > cq_size ? sq_size : cq_size;
    char *q = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                   IORING_OFF_SQ_RING);
    if (q == MAP_FAILED)
        die("mmap rings");
    sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
    if (sqes == MAP_FAILED)
        die("mmap sqes");
    sq_head = (unsigned *)(q + p.sq_off.head);
    sq_tail = (unsigned *)(q + p.sq_off.tail);
    sq_mask = (unsigned *)(q + p.sq_off.ring_mask);
    cq_head = (unsigned *)(q + p.cq_off.head);
    cq_tail = (unsigned *)(q + p.cq_off.tail);
    cq_mask = (unsigned *)(q + p.cq_off.ring_mask);
    cqes = (struct io_uring_cqe *)(q + p.cq_off.cqes);
    /* Entry i of the submission queue is always sqes[i]. */
    unsigned *array = (unsigned *)(q + p.sq_off.array);
    for (unsigned i = 0; i < p.sq_entries; i++)
        array[i] = i;
    sq_local_tail = *sq_tail;

    /* The provided-buffer ring: page-aligned, registered as group BGID. */
    size_t ring_size = NBUFS * sizeof(struct io_uring_buf);
    br = mmap(NULL, ring_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    bufs = mmap(NULL, (size_t)NBUFS * BUF_SIZE, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (br == MAP_FAILED || bufs == MAP_FAILED)
        die("mmap buffers");
    struct io_uring_buf_reg reg = {.ring_addr = (uint64_t)(uintptr_t)br,
                                   .ring_entries = NBUFS,
                                   .bgid = BGID};
    if (syscall(__NR_io_uring_register, ring_fd, IORING_REGISTER_PBUF_RING, &reg, 1) < 0) {
        if (errno == EINVAL) {
            fprintf(stderr, "echo_uring: IORING_REGISTER_PBUF_RING: %s (needs Linux 5.19+)\n",
                    strerror(errno));
            exit(3);
        }
        die("io_uring_register(PBUF_RING)");
    }
    for (unsigned short bid = 0; bid < NBUFS; bid++) {
        struct io_uring_buf *b = &br->bufs[bid];
        b->addr = (uint64_t)(uintptr_t)(bufs + (size_t)bid * BUF_SIZE);
        b->len = BUF_SIZE;
        b->bid = bid;
    }
    br_tail = NBUFS;
    __atomic_store_n(&br->tail, br_tail, __ATOMIC_RELEASE);
}

/* Gives buffer `bid` back to the kernel (published at the end of the turn). */
static void buf_return(unsigned short bid) {
    struct io_uring_buf *b = &br->bufs[br_tail & (NBUFS - 1)];
    b->addr = (uint64_t)(uintptr_t)(bufs + (size_t)bid * BUF_SIZE);
    b->len = BUF_SIZE;
    b->bid = bid;
    br_tail++;
}

/* A free submission entry, zeroed; submits what is queued first if the
 * queue is full (rare: only a turn with over SQ_ENTRIES requests). */
static struct io_uring_sqe *sqe_get(void) {
    unsigned head = __atomic_load_n(sq_head, __ATOMIC_ACQUIRE);
    if (sq_local_tail - head >= SQ_ENTRIES) {
        int r = enter(to_submit, 0, 0);
        if (r < 0 && errno != EINTR && errno != EAGAIN && errno != EBUSY)
            die("io_uring_enter");
        if (r > 0)
            to_submit -= (unsigned)r;
        head = __atomic_load_n(sq_head, __ATOMIC_ACQUIRE);
        if (sq_local_tail - head >= SQ_ENTRIES) {
            fprintf(stderr, "echo_uring: submission queue stays full\n");
            exit(1);
        }
    }
    struct io_uring_sqe *s = &sqes[sq_local_tail & *sq_mask];
    memset(s, 0, sizeof *s);
    sq_local_tail++;
    to_submit++;
    __atomic_store_n(sq_tail, sq_local_tail, __ATOMIC_RELEASE);
    return s;
}

static uint64_t tag(unsigned kind, int fd) {
    return (uint64_t)kind << 32 | (uint32_t)fd;
}

static void arm_accept(void) {
    struct io_uring_sqe *s = sqe_get();
    s->opcode = IORING_OP_ACCEPT;
    s->fd = lfd;
    s->ioprio = IORING_ACCEPT_MULTISHOT;
    s->accept_flags = SOCK_CLOEXEC;
    s->user_data = tag(K_ACCEPT, lfd);
}

static void arm_recv(int fd) {
    struct io_uring_sqe *s = sqe_get();
    s->opcode = IORING_OP_RECV;
    s->fd = fd;
    s->ioprio = IORING_RECV_MULTISHOT;
    s->flags = IOSQE_BUFFER_SELECT;
    s->buf_group = BGID;
    s->user_data = tag(K_RECV, fd);
    conns[fd].recv_armed = 1;
    conns[fd].cancelled = 0;
}

/* Cancels fd's multishot recv (its last completion says -ECANCELED). */
static void cancel_recv(int fd) {
    struct conn *c = &conns[fd];
    if (!c->recv_armed || c->cancelled)
        return;
    struct io_uring_sqe *s = sqe_get();
    s->opcode = IORING_OP_ASYNC_CANCEL;
    s->fd = -1;
    s->addr = tag(K_RECV, fd);
    s->flags = IOSQE_CQE_SKIP_SUCCESS;
    s->user_data = tag(K_CANCEL, fd);
    c->cancelled = 1;
}

static void send_out(int fd) {
    struct conn *c = &conns[fd];
    struct io_uring_sqe *s = sqe_get();
    s->opcode = IORING_OP_SEND;
    s->fd = fd;
    s->addr = (uint64_t)(uintptr_t)(c->src + c->sent);
    s->len = (unsigned)(c->src_len - c->sent);
    s->msg_flags = MSG_NOSIGNAL;
    s->user_data = tag(K_SEND, fd);
    c->sending = 1;
}

/* Starts sending what is queued, if nothing is in flight. */
static void flush(int fd) {
    struct conn *c = &conns[fd];
    if (c->sending || !c->next.len)
        return;
    struct obuf t = c->out;
    c->out = c->next;
    c->next = t;
    c->next.len = 0;
    c->src = c->out.data;
    c->src_len = c->out.len;
    c->sent = 0;
    send_out(fd);
}

static void append(struct obuf *b, const char *src, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        b->data = realloc(b->data, cap);
        if (!b->data)
            die("realloc");
        b->cap = cap;
    }
    memcpy(b->data + b->len, src, n);
    b->len += n;
}

static size_t unsent(const struct conn *c) {
    return c->src_len - c->sent + c->next.len;
}

/* Closes fd once no request refers to it (else when the last one ends). */
static void maybe_close(int fd) {
    struct conn *c = &conns[fd];
    if (!c->closing)
        return;
    cancel_recv(fd);
    if (c->recv_armed || c->sending || (!c->discard && unsent(c)))
        return;
    free(c->out.data);
    free(c->next.data);
    memset(c, 0, sizeof *c);
    close(fd);
}

/* Closes fd after its output is sent (end of stream), or at once (error). */
static void close_conn(int fd, int flush_first) {
    struct conn *c = &conns[fd];
    c->closing = 1;
    if (!flush_first) {
        c->discard = 1;
        c->next.len = 0;
    }
    maybe_close(fd);
}

/* Receives again once a paused connection's output is under LOW_WATER. */
static void resume_if_drained(int fd) {
    struct conn *c = &conns[fd];
    if (c->paused && !c->closing && !c->recv_armed && unsent(c) < LOW_WATER) {
        c->paused = 0;
        arm_recv(fd);
    }
}

/* The listener, TCP or Unix (it uses `die`, above). */
#include "listen.h"

/* A Unix stream listener rather than TCP (`--unix PATH`): no TCP_NODELAY. */
static int is_unix;

static void on_accept(const struct io_uring_cqe *e) {
    if (!(e->flags & IORING_CQE_F_MORE))
        arm_accept();
    int fd = e->res;
    if (fd < 0) {
        if (fd == -ECONNABORTED || fd == -EINTR || fd == -EAGAIN)
            return;
        die_errno("accept", -fd);
    }
    if ((size_t)fd >= max_fds) {
        close(fd);
        return;
    }
    int one = 1;
    if (!is_unix)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    arm_recv(fd);
}

static void on_recv(const struct io_uring_cqe *e, int fd) {
    struct conn *c = &conns[fd];
    if (!(e->flags & IORING_CQE_F_MORE))
        c->recv_armed = 0;
    if (e->flags & IORING_CQE_F_BUFFER) {
        unsigned short bid = (unsigned short)(e->flags >> IORING_CQE_BUFFER_SHIFT);
        const char *data = bufs + (size_t)bid * BUF_SIZE;
        if (e->res > 0 && !c->closing && !pong && !c->sending && !c->next.len) {
            /* Echo straight from the buffer; it goes back once sent. */
            c->held = bid + 1u;
            c->src = data;
            c->src_len = (size_t)e->res;
            c->sent = 0;
            send_out(fd);
        } else if (e->res > 0 && !c->closing) {
            if (!pong) {
                append(&c->next, data, (size_t)e->res);
            } else {
                for (const char *q = data, *end = data + e->res;
                     (q = memchr(q, '\n', (size_t)(end - q))); q++)
                    append(&c->next, PONG, PONG_LEN);
            }
            flush(fd);
        }
        if (c->held != bid + 1u)
            buf_return(bid);
    }
    if (c->closing) {
        maybe_close(fd);
        return;
    }
    if (e->res == 0) {
        close_conn(fd, 1); /* end of stream: flush, then close */
        return;
    }
    if (e->res < 0 && e->res != -ENOBUFS && e->res != -ECANCELED) {
        if (e->res == -EINVAL) {
            fprintf(stderr, "echo_uring: multishot recv: %s (needs Linux 6.0+)\n",
                    strerror(-e->res));
            exit(3);
        }
        close_conn(fd, 0);
        return;
    }
    if (unsent(c) > HIGH_WATER) {
        c->paused = 1;
        cancel_recv(fd);
    } else if (!c->recv_armed && !c->paused) {
        /* Out of buffers (ENOBUFS, given back by now) or a stop: again. */
        arm_recv(fd);
    }
    resume_if_drained(fd);
}

static void on_send(const struct io_uring_cqe *e, int fd) {
    struct conn *c = &conns[fd];
    c->sending = 0;
    if (e->res < 0 || c->discard)
        c->sent = c->src_len;
    else
        c->sent += (size_t)e->res;
    if (c->sent == c->src_len && c->held) {
        buf_return((unsigned short)(c->held - 1));
        c->held = 0;
    }
    if (e->res < 0) {
        close_conn(fd, 0);
        return;
    }
    if (!c->discard) {
        if (c->sent < c->src_len)
            send_out(fd); /* short send: the rest */
        else
            flush(fd);
    }
    resume_if_drained(fd);
    maybe_close(fd);
}

int main(int argc, char **argv) {
    long port = 0;
    int check = 0;
    if (argc >= 2 && strcmp(argv[1], "--check") == 0) {
        check = 1;
        argv++;
        argc--;
    }
    if (argc >= 2 && strcmp(argv[1], "--pong") == 0) {
        pong = 1;
        argv++;
        argc--;
    }
    const char *path = NULL;
    if (argc == 3 && !check && strcmp(argv[1], "--unix") == 0) {
        path = argv[2];
        is_unix = 1;
        argc = 1;
    }
    if (argc > 2 || (argc == 2 && (check || strncmp(argv[1], "--", 2) == 0))) {
        fprintf(stderr, "usage: echo_uring [--pong] [PORT | --unix PATH] | echo_uring --check\n");
        return 2;
    }
    if (argc == 2) {
        char *end;
        port = strtol(argv[1], &end, 10);
        if (*end || port < 0 || port > 65535) {
            fprintf(stderr, "echo_uring: invalid port %s\n", argv[1]);
            return 2;
        }
    }
    setup_ring();
    if (check) {
        printf("io_uring: ok, ring flags%s%s%s%s, provided-buffer ring registered\n",
               setup_flags & IORING_SETUP_SINGLE_ISSUER ? " SINGLE_ISSUER" : "",
               setup_flags & IORING_SETUP_DEFER_TASKRUN ? " DEFER_TASKRUN" : "",
               setup_flags & IORING_SETUP_COOP_TASKRUN ? " COOP_TASKRUN" : "",
               setup_flags ? "" : " none");
        return 0;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("getrlimit");
    max_fds = rl.rlim_cur == RLIM_INFINITY ? 1 << 20 : (size_t)rl.rlim_cur;
    conns = calloc(max_fds, sizeof *conns);
    if (!conns)
        die("calloc");

    char ready[160];
    lfd = listen_on("echo_uring", port, path, SOCK_STREAM | SOCK_CLOEXEC, ready, sizeof ready);
    arm_accept();
    printf("listening on %s\n", ready);
    fflush(stdout);

    for (;;) {
        /* The one kernel entry of the turn: submit what the last turn
         * queued, run the completions' task work, wait for at least one. */
        __atomic_store_n(&br->tail, br_tail, __ATOMIC_RELEASE);
        int r = enter(to_submit, 1, IORING_ENTER_GETEVENTS);
        if (r < 0) {
            /* EBUSY, EAGAIN: completions to reap first (overflowed CQ). */
            if (errno != EINTR && errno != EAGAIN && errno != EBUSY)
                die("io_uring_enter");
            r = 0;
        }
        to_submit -= (unsigned)r < to_submit ? (unsigned)r : to_submit; /* the rest: next turn */
        unsigned head = *cq_head;
        unsigned tail = __atomic_load_n(cq_tail, __ATOMIC_ACQUIRE);
        for (; head != tail; head++) {
            const struct io_uring_cqe *e = &cqes[head & *cq_mask];
            unsigned kind = (unsigned)(e->user_data >> 32);
            int fd = (int)(uint32_t)e->user_data;
            switch (kind) {
            case K_ACCEPT:
                on_accept(e);
                break;
            case K_RECV:
                on_recv(e, fd);
                break;
            case K_SEND:
                on_send(e, fd);
                break;
            default: /* K_CANCEL: failed (the recv had ended already) */
                break;
            }
        }
        __atomic_store_n(cq_head, head, __ATOMIC_RELEASE);
    }
}
