/* seccomp_trigger.c - the test hook of ember-testhooks (linked with
 * -Wl,--wrap=seccomp_install; never part of ember): once a thread has
 * installed its filter, if EMBER_TEST_SECCOMP_TRIGGER names its kind ("vmm" or
 * "vcpu"), it makes a call the filter forbids (socket(AF_INET)), so the
 * integration tests can watch the filter catch it. */
#include "../../jail/seccomp.h"
#include "../../vmm/base/log.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int __real_seccomp_install(enum seccomp_kind kind, unsigned index);
int __wrap_seccomp_install(enum seccomp_kind kind, unsigned index);

int __wrap_seccomp_install(enum seccomp_kind kind, unsigned index)
{
    int rc = __real_seccomp_install(kind, index);
    const char *want = getenv("EMBER_TEST_SECCOMP_TRIGGER");
    if (rc || !want || strcmp(want, seccomp_kind_name(kind)) != 0)
        return rc;
    log_warn("test hook: the %s thread calls socket(AF_INET), which its filter forbids",
             seccomp_kind_name(kind));
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd >= 0)
        close(fd); /* filters off: nothing happens */
    return rc;
}
