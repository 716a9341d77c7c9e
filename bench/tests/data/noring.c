/*
 * noring ERRNO PROGRAM ARGS...: runs PROGRAM with io_uring_setup(2) failing
 * with ERRNO (1 EPERM, 38 ENOSYS), as under Docker's default seccomp profile;
 * every process it starts inherits the filter. For the suite's test that the
 * C io_uring floor is skipped, not fatal, where io_uring may not be used.
 */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv) {
    unsigned err = argc > 1 ? (unsigned)atoi(argv[1]) : 1;
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | err),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = 4, .filter = f};
    if (argc < 3) {
        fprintf(stderr, "usage: noring ERRNO PROGRAM ARGS...\n");
        return 2;
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) {
        perror("seccomp");
        return 1;
    }
    execvp(argv[2], argv + 2);
    perror("exec");
    return 1;
}
