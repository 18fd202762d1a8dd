/* snapfile.c - framing, writing and checking snapshot files (see snapfile.h). */
#include "snapfile.h"

#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEC_HDR_LEN 16

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

uint32_t snap_crc32(uint32_t crc, const void *data, size_t len)
{
    if (!crc_table[1])
        crc_init();
    const uint8_t *p = data;
    crc = ~crc;
    while (len--)
        crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4); /* x86_64: little-endian */
}

static void put64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* ---- writing --------------------------------------------------------------- */

void snapw_init(struct snap_writer *w)
{
    memset(w, 0, sizeof(*w));
}

static void reserve(struct snap_writer *w, size_t more)
{
    if (w->error || w->len + more <= w->cap)
        return;
    size_t cap = w->cap ? w->cap : 4096;
    while (cap < w->len + more)
        cap *= 2;
    uint8_t *b = realloc(w->buf, cap);
    if (!b) {
        w->error = -ENOMEM;
        return;
    }
    w->buf = b;
    w->cap = cap;
}

void snapw_add(struct snap_writer *w, uint32_t type, uint32_t index, const void *data, size_t len)
{
    size_t padded = (len + 7) & ~(size_t)7;
    reserve(w, SEC_HDR_LEN + padded);
    if (w->error)
        return;
    uint8_t *p = w->buf + w->len;
    put32(p, type);
    put32(p + 4, index);
    put64(p + 8, len);
    if (len)
        memcpy(p + SEC_HDR_LEN, data, len);
    memset(p + SEC_HDR_LEN + len, 0, padded - len);
    w->len += SEC_HDR_LEN + padded;
    w->n_sections++;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int snapw_write(struct snap_writer *w, const char *path, const char *producer)
{
    if (w->error)
        return err_set(w->error, "snapshot %s: out of memory", path);
    if (SNAPFILE_HEADER_LEN + w->len > SNAPFILE_MAX_LEN)
        return err_set(-EFBIG, "snapshot %s: %zu bytes of state, more than the %u a file may hold",
                       path, w->len, SNAPFILE_MAX_LEN);
    uint8_t hdr[SNAPFILE_HEADER_LEN] = {0};
    memcpy(hdr, SNAPFILE_MAGIC, 8);
    put32(hdr + 8, SNAPFILE_VERSION);
    put32(hdr + 12, SNAPFILE_HEADER_LEN);
    put64(hdr + 16, w->len);
    put32(hdr + 24, w->n_sections);
    put32(hdr + 28, snap_crc32(0, w->buf, w->len));
    snprintf((char *)hdr + 32, 32, "%s", producer ? producer : "");
    char tmp[4200];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= sizeof(tmp))
        return err_set(-ENAMETOOLONG, "snapshot %s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return err_set(-errno, "snapshot %s: cannot create it: %s", path, strerror(errno));
    int rc = write_all(fd, hdr, sizeof(hdr));
    if (!rc)
        rc = write_all(fd, w->buf, w->len);
    if (!rc && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && !rc)
        rc = -errno;
    if (!rc && rename(tmp, path) < 0)
        rc = -errno;
    if (rc) {
        unlink(tmp);
        return err_set(rc, "snapshot %s: cannot write it: %s", path, strerror(-rc));
    }
    return 0;
}

void snapw_free(struct snap_writer *w)
{
    free(w->buf);
    memset(w, 0, sizeof(*w));
}

/* ---- reading --------------------------------------------------------------- */

int snapr_parse(struct snap_reader *r, const uint8_t *data, size_t len, const char *what)
{
    memset(r, 0, sizeof(*r));
    if (len < SNAPFILE_HEADER_LEN)
        return err_set(-EINVAL, "snapshot %s: truncated (%zu bytes, the header alone is %d)", what,
                       len, SNAPFILE_HEADER_LEN);
    if (memcmp(data, SNAPFILE_MAGIC, 8) != 0)
        return err_set(-EINVAL, "snapshot %s: not an Ember snapshot (bad magic)", what);
    r->version = get32(data + 8);
    if (r->version != SNAPFILE_VERSION)
        return err_set(-EPROTO, "snapshot %s: format version %u, this Ember reads version %d", what,
                       r->version, SNAPFILE_VERSION);
    uint32_t hlen = get32(data + 12);
    uint64_t plen = get64(data + 16);
    uint32_t n = get32(data + 24);
    if (hlen != SNAPFILE_HEADER_LEN)
        return err_set(-EINVAL, "snapshot %s: header length %u, expected %d", what, hlen,
                       SNAPFILE_HEADER_LEN);
    if (plen != len - SNAPFILE_HEADER_LEN)
        return err_set(-EINVAL,
                       "snapshot %s: the header announces %llu bytes of state, the file "
                       "has %zu (truncated or padded)",
                       what, (unsigned long long)plen, len - SNAPFILE_HEADER_LEN);
    const uint8_t *p = data + SNAPFILE_HEADER_LEN;
    if (snap_crc32(0, p, (size_t)plen) != get32(data + 28))
        return err_set(-EBADMSG, "snapshot %s: checksum mismatch (the file is corrupt)", what);
    memcpy(r->producer, data + 32, 32);
    r->producer[32] = '\0';
    if (n > SNAPFILE_MAX_SECTIONS)
        return err_set(-EINVAL, "snapshot %s: %u sections, at most %d", what, n,
                       SNAPFILE_MAX_SECTIONS);
    if (n > plen / SEC_HDR_LEN)
        return err_set(-EINVAL, "snapshot %s: %u sections cannot fit in %llu bytes", what, n,
                       (unsigned long long)plen);
    r->sections = calloc(n ? n : 1, sizeof(*r->sections));
    if (!r->sections)
        return err_set(-ENOMEM, "snapshot %s: out of memory", what);
    uint64_t off = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (plen - off < SEC_HDR_LEN)
            goto bad;
        struct snap_section *s = &r->sections[i];
        s->type = get32(p + off);
        s->index = get32(p + off + 4);
        s->len = get64(p + off + 8);
        off += SEC_HDR_LEN;
        if (s->len > plen - off || ((s->len + 7) & ~7ull) > plen - off)
            goto bad;
        s->data = p + off;
        off += (s->len + 7) & ~7ull;
        for (uint32_t k = 0; k < i; k++)
            if (r->sections[k].type == s->type && r->sections[k].index == s->index) {
                uint32_t type = s->type, index = s->index; /* s is in the array freed next */
                free(r->sections);
                r->sections = NULL;
                return err_set(-EINVAL, "snapshot %s: section %u/%u appears twice", what, type,
                               index);
            }
    }
    if (off != plen)
        goto bad;
    r->n_sections = n;
    return 0;
bad:
    free(r->sections);
    r->sections = NULL;
    return err_set(-EINVAL, "snapshot %s: a section runs past the end of the file", what);
}

int snapr_open(struct snap_reader *r, const char *path)
{
    memset(r, 0, sizeof(*r));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set(-errno, "snapshot %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(-EINVAL, "snapshot %s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > SNAPFILE_MAX_LEN) {
        close(fd);
        return err_set(-EFBIG, "snapshot %s: %lld bytes, more than a snapshot holds", path,
                       (long long)st.st_size);
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        close(fd);
        return err_set(-ENOMEM, "snapshot %s: out of memory", path);
    }
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    int rc = snapr_parse(r, buf, got, path);
    if (rc) {
        free(buf);
        return rc;
    }
    r->file = buf;
    r->len = got;
    return 0;
}

const struct snap_section *snapr_find(const struct snap_reader *r, uint32_t type, uint32_t index)
{
    for (uint32_t i = 0; i < r->n_sections; i++)
        if (r->sections[i].type == type && r->sections[i].index == index)
            return &r->sections[i];
    return NULL;
}

unsigned snapr_count(const struct snap_reader *r, uint32_t type)
{
    unsigned n = 0;
    for (uint32_t i = 0; i < r->n_sections; i++)
        n += r->sections[i].type == type;
    return n;
}

void snapr_close(struct snap_reader *r)
{
    free(r->sections);
    free(r->file);
    memset(r, 0, sizeof(*r));
}
