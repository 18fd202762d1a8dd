/* cmdline.c - the kernel command line: length check, copy to LAYOUT_CMDLINE,
 * and an append helper for the VMM's own entries. */
#include "boot.h"
#include "layout.h"

#include "../vmm/base/err.h"

#include <errno.h>
#include <string.h>

int cmdline_write(struct guest_mem *gm, const char *cmdline, size_t limit)
{
    if (!cmdline)
        cmdline = "";
    if (limit > LAYOUT_CMDLINE_MAX - 1)
        limit = LAYOUT_CMDLINE_MAX - 1;
    size_t len = strnlen(cmdline, limit + 1);
    if (len > limit)
        return err_set(-EINVAL, "boot_args: command line is %zu bytes, the limit is %zu",
                       strlen(cmdline), limit);
    if (gm_write(gm, LAYOUT_CMDLINE, cmdline, len + 1) < 0)
        return err_set(-EFAULT, "boot_args: command line at 0x%llx is outside guest memory",
                       (unsigned long long)LAYOUT_CMDLINE);
    return 0;
}

int cmdline_append(char *buf, size_t cap, const char *word)
{
    size_t cur = strnlen(buf, cap);
    if (cur == cap)
        return err_set(-EINVAL, "boot_args: command line buffer is not terminated");
    size_t wlen = strlen(word);
    if (wlen == 0)
        return 0;
    size_t sep = cur ? 1 : 0;
    if (wlen + sep > cap - cur - 1)
        return err_set(-E2BIG,
                       "boot_args: adding \"%s\" makes the command line longer than %zu bytes",
                       word, cap - 1);
    if (sep)
        buf[cur++] = ' ';
    memcpy(buf + cur, word, wlen + 1);
    return 0;
}
