/* rebase-snap.c - lay a Diff snapshot's memory file over its base.
 *
 *   rebase-snap --base-file BASE --diff-file DIFF
 *
 * DIFF (written by PUT /snapshot/create with snapshot_type Diff) holds only
 * the pages dirtied since the base; its other pages are holes. Every data
 * extent of DIFF (SEEK_DATA/SEEK_HOLE) is copied into BASE at the same
 * offset, so BASE becomes the memory file of the Diff snapshot. Both files
 * must have the same size (the guest's RAM). Firecracker ships a tool of this
 * name with the same flags.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail(const char *what, const char *path)
{
    fprintf(stderr, "rebase-snap: %s: %s\n", path, what);
    return 1;
}

int main(int argc, char **argv)
{
    const char *base = NULL, *diff = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--base-file") == 0)
            base = argv[i + 1];
        else if (strcmp(argv[i], "--diff-file") == 0)
            diff = argv[i + 1];
    }
    if (!base || !diff || argc != 5) {
        fprintf(stderr, "usage: rebase-snap --base-file BASE --diff-file DIFF\n");
        return 2;
    }
    int bfd = open(base, O_WRONLY | O_CLOEXEC), dfd = open(diff, O_RDONLY | O_CLOEXEC);
    struct stat bs, ds;
    if (bfd < 0 || fstat(bfd, &bs) < 0)
        return fail(strerror(errno), base);
    if (dfd < 0 || fstat(dfd, &ds) < 0)
        return fail(strerror(errno), diff);
    if (bs.st_size != ds.st_size)
        return fail("the base and the diff differ in size (not of the same guest)", diff);
    unsigned long long copied = 0;
    off_t pos = 0;
    while ((pos = lseek(dfd, pos, SEEK_DATA)) >= 0) {
        off_t end = lseek(dfd, pos, SEEK_HOLE);
        if (end < 0)
            end = ds.st_size;
        while (pos < end) {
            off64_t in = pos, out = pos;
            ssize_t n = copy_file_range(dfd, &in, bfd, &out, (size_t)(end - pos), 0);
            if (n <= 0)
                return fail(n < 0 ? strerror(errno) : "short copy", base);
            pos += n;
            copied += (unsigned long long)n;
        }
    }
    if (errno != ENXIO)
        return fail(strerror(errno), diff);
    if (fsync(bfd) < 0)
        return fail(strerror(errno), base);
    printf("rebase-snap: %llu bytes of %s laid over %s\n", copied, diff, base);
    return 0;
}
