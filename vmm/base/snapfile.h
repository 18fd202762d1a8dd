/* snapfile.h - the snapshot file: a versioned, checksummed container of typed sections.
 *
 * What a section holds is its owner's business (the VM, a vCPU, a device);
 * this module only frames, writes, checks and finds them. Layout, all
 * integers little-endian:
 *
 *   header (64 bytes)
 *     char     magic[8]      "EMBERSNP"
 *     uint32_t version       SNAPFILE_VERSION
 *     uint32_t header_len    64
 *     uint64_t payload_len   bytes after the header
 *     uint32_t n_sections
 *     uint32_t crc32         CRC-32 (IEEE) of the payload
 *     char     producer[32]  NUL-padded, informational ("ember 0.2.0")
 *   payload: n_sections times
 *     uint32_t type, index   (type, index) is unique in a file
 *     uint64_t len
 *     uint8_t  data[len], zero-padded to a multiple of 8
 *
 * A reader takes a file only if every part checks: its size, the magic, the
 * version, the lengths, the checksum, every section inside the payload and
 * unique. Nothing is restored from a file that fails any check, so a bad or
 * foreign snapshot is refused, never half-restored. Errors name the file and
 * what is wrong with it.
 */
#ifndef EMBER_SNAPFILE_H
#define EMBER_SNAPFILE_H

#include <stddef.h>
#include <stdint.h>

#define SNAPFILE_MAGIC "EMBERSNP"
#define SNAPFILE_VERSION 1
#define SNAPFILE_HEADER_LEN 64
#define SNAPFILE_MAX_LEN (256u << 20) /* a larger file is refused unread */
#define SNAPFILE_MAX_SECTIONS 1024    /* more is not a snapshot of ours */

struct snap_writer {
    uint8_t *buf; /* payload */
    size_t len, cap;
    uint32_t n_sections;
    int error; /* first failure (-ENOMEM); every later call is a no-op */
};

void snapw_init(struct snap_writer *w);
/* Append section (type, index) with `len` bytes of `data`. */
void snapw_add(struct snap_writer *w, uint32_t type, uint32_t index, const void *data, size_t len);
/* Write header and payload to `path` (through a temporary file renamed into
 * place, so a failed write leaves no partial snapshot). 0 or -errno. */
int snapw_write(struct snap_writer *w, const char *path, const char *producer);
void snapw_free(struct snap_writer *w);

struct snap_section {
    uint32_t type, index;
    const uint8_t *data;
    uint64_t len;
};

struct snap_reader {
    uint8_t *file; /* the whole file */
    size_t len;
    uint32_t version;
    char producer[33];
    uint32_t n_sections;
    struct snap_section *sections;
};

/* Read and check a whole file; 0, or -EINVAL/-errno naming `path` and the fault. */
int snapr_open(struct snap_reader *r, const char *path);
/* The same on bytes in memory (`what` names them in messages): the fuzzed entry point. */
int snapr_parse(struct snap_reader *r, const uint8_t *data, size_t len, const char *what);
/* Section (type, index), or NULL. */
const struct snap_section *snapr_find(const struct snap_reader *r, uint32_t type, uint32_t index);
/* Sections of `type`. */
unsigned snapr_count(const struct snap_reader *r, uint32_t type);
void snapr_close(struct snap_reader *r);

/* CRC-32 (IEEE 802.3, reflected, as zlib's crc32()). */
uint32_t snap_crc32(uint32_t crc, const void *data, size_t len);

#endif
