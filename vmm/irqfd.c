/* irqfd.c - eventfds wired to guest interrupt lines with KVM_IRQFD (see irqfd.h). */
#include "irqfd.h"

#include "base/err.h"

#include <errno.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

int irqfd_open(int vm_fd, unsigned gsi)
{
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0)
        return err_set(-errno, "irq %u: eventfd: %s", gsi, strerror(errno));
    struct kvm_irqfd irqfd = {.fd = (uint32_t)fd, .gsi = gsi};
    if (ioctl(vm_fd, KVM_IRQFD, &irqfd) < 0) {
        int e = errno;
        close(fd);
        return err_set(-e, "irq %u: KVM_IRQFD failed: %s", gsi, strerror(e));
    }
    return fd;
}
