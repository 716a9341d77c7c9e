/*
 * The listener of the C floors (echo_floor.c, echo_uring.c, http_floor.c):
 * TCP on 127.0.0.1, or a Unix stream socket (the echo floors' `--unix PATH`).
 * Included by each after its `die`; the bench runner writes it next to them
 * before `cc`.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

/* The listener, bound and listening: TCP on 127.0.0.1:`port` (0: any free
 * port), or with `path` a Unix stream socket there (which must not exist
 * yet). `ready` gets what the ready line names: 127.0.0.1:PORT or the path;
 * `prog` names the program in the error for too long a path. */
static int listen_on(const char *prog, long port, const char *path, int type, char *ready,
                     size_t n) {
    int fd;
    if (path) {
        struct sockaddr_un u = {.sun_family = AF_UNIX};
        if (strlen(path) >= sizeof u.sun_path) {
            fprintf(stderr, "%s: socket path too long: %s\n", prog, path);
            exit(2);
        }
        strcpy(u.sun_path, path);
        fd = socket(AF_UNIX, type, 0);
        if (fd < 0)
            die("socket");
        if (bind(fd, (struct sockaddr *)&u, sizeof u) < 0)
            die("bind");
        snprintf(ready, n, "%s", path);
    } else {
        fd = socket(AF_INET, type, 0);
        if (fd < 0)
            die("socket");
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
            die("bind");
        socklen_t alen = sizeof a;
        if (getsockname(fd, (struct sockaddr *)&a, &alen) < 0)
            die("getsockname");
        snprintf(ready, n, "127.0.0.1:%d", ntohs(a.sin_port));
    }
    if (listen(fd, SOMAXCONN) < 0)
        die("listen");
    return fd;
}
