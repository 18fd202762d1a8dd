/* uffd_handler.c - an example page-fault handler for Ember's (and Firecracker's) Uffd
 * snapshot memory backend.
 *
 *   uffd_handler SOCKET MEMFILE
 *
 * Listens on the Unix socket SOCKET. A VMM loading a snapshot with
 * mem_backend {"backend_type": "Uffd", "backend_path": SOCKET} connects and
 * sends, in one message, a JSON array with one object per guest memory region
 * ({"base_host_virt_addr", "size", "offset", "page_size"...}) and the
 * userfaultfd its guest RAM is registered with (SCM_RIGHTS). From then on every
 * first touch of a guest page (by the guest, KVM or the VMM) arrives here as a
 * fault; the handler copies that page from MEMFILE (the snapshot's memory file,
 * mapped read-only) with UFFDIO_COPY. It ends when the VMM closes the socket,
 * and prints how many pages it served.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_REGIONS 8

struct region {
    uint64_t base, size, offset;
};

static int die(const char *what)
{
    fprintf(stderr, "uffd_handler: %s: %s\n", what, strerror(errno));
    return 1;
}

/* The number after "key": in obj (the layout is machine-written; this is no general parser). */
static int field(const char *obj, const char *key, uint64_t *out)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(obj, pat);
    if (!p)
        return -1;
    char *end;
    *out = strtoull(p + strlen(pat), &end, 10);
    return end == p + strlen(pat) ? -1 : 0;
}

static int parse_layout(char *json, struct region *r, int max)
{
    int n = 0;
    for (char *obj = strchr(json, '{'); obj && n < max; obj = strchr(obj + 1, '{')) {
        char *close = strchr(obj, '}');
        if (!close)
            return -1;
        *close = '\0';
        if (field(obj, "base_host_virt_addr", &r[n].base) || field(obj, "size", &r[n].size) ||
            field(obj, "offset", &r[n].offset))
            return -1;
        *close = '}';
        n++;
    }
    return n;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: uffd_handler SOCKET MEMFILE\n");
        return 2;
    }
    int mfd = open(argv[2], O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (mfd < 0 || fstat(mfd, &st) < 0)
        return die(argv[2]);
    uint8_t *mem = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, mfd, 0);
    if (mem == MAP_FAILED)
        return die("mmap of the memory file");

    int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", argv[1]);
    unlink(argv[1]);
    if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 1) < 0)
        return die(argv[1]);
    printf("uffd_handler: listening on %s\n", argv[1]);
    fflush(stdout);
    int cs = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
    if (cs < 0)
        return die("accept");

    char json[4096];
    char ctl[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {json, sizeof(json) - 1};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
    ssize_t n = recvmsg(cs, &msg, 0);
    struct cmsghdr *cm = n > 0 ? CMSG_FIRSTHDR(&msg) : NULL;
    if (!cm || cm->cmsg_type != SCM_RIGHTS)
        return die("recvmsg: no layout and userfaultfd");
    json[n] = '\0';
    int uffd;
    memcpy(&uffd, CMSG_DATA(cm), sizeof(int));
    struct region r[MAX_REGIONS];
    int nr = parse_layout(json, r, MAX_REGIONS);
    if (nr <= 0) {
        fprintf(stderr, "uffd_handler: bad layout: %s\n", json);
        return 1;
    }
    for (int i = 0; i < nr; i++)
        if (r[i].offset + r[i].size > (uint64_t)st.st_size) {
            fprintf(stderr, "uffd_handler: region %d runs past %s\n", i, argv[2]);
            return 1;
        }
    printf("uffd_handler: serving %d region(s)\n", nr);
    fflush(stdout);

    unsigned long served = 0;
    struct pollfd pf[2] = {{.fd = uffd, .events = POLLIN}, {.fd = cs, .events = POLLIN}};
    for (;;) {
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return die("poll");
        }
        if (pf[1].revents) {
            char b;
            if (recv(cs, &b, 1, MSG_DONTWAIT) <= 0 && errno != EAGAIN)
                break; /* the VMM is gone */
        }
        if (!(pf[0].revents & POLLIN))
            continue;
        struct uffd_msg m;
        if (read(uffd, &m, sizeof(m)) != sizeof(m)) {
            if (errno == EAGAIN)
                continue;
            return die("read from the userfaultfd");
        }
        if (m.event != UFFD_EVENT_PAGEFAULT)
            continue;
        uint64_t addr = m.arg.pagefault.address & ~4095ull;
        int i = 0;
        while (i < nr && !(addr >= r[i].base && addr < r[i].base + r[i].size))
            i++;
        if (i == nr) {
            fprintf(stderr, "uffd_handler: fault at 0x%llx outside guest memory\n",
                    (unsigned long long)addr);
            return 1;
        }
        struct uffdio_copy copy = {
            .dst = addr,
            .src = (uint64_t)(uintptr_t)(mem + r[i].offset + (addr - r[i].base)),
            .len = 4096,
        };
        if (ioctl(uffd, UFFDIO_COPY, &copy) < 0 && errno != EEXIST)
            return die("UFFDIO_COPY");
        served++;
    }
    printf("uffd_handler: done, %lu page(s) served\n", served);
    return 0;
}
