/* Non-Python syscall storm: open/close of one file and connects refused by a closed loopback
 * port. usage: storm <file> <opens> <connects>
 *
 * The refusing port is a socket bound to 127.0.0.1 that never listens: the port is certainly
 * closed, and no other program's port is ever touched. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s <file> <opens> <connects>\n", argv[0]);
        return 2;
    }
    const char *path = argv[1];
    long opens = atol(argv[2]), connects = atol(argv[3]);

    int closed = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (closed < 0 || bind(closed, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        getsockname(closed, (struct sockaddr *)&addr, &len) != 0) {
        perror("storm: reserving a closed loopback port");
        return 1;
    }

    for (long i = 0; i < opens; i++) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            perror("storm: open");
            return 1;
        }
        close(fd);
    }
    for (long i = 0; i < connects; i++) {
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0) {
            perror("storm: socket");
            return 1;
        }
        if (connect(s, (struct sockaddr *)&addr, sizeof addr) == 0 || errno != ECONNREFUSED) {
            perror("storm: connect was not refused");
            return 1;
        }
        close(s);
    }
    close(closed);
    return 0;
}
