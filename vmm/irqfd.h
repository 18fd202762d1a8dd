/* irqfd.h - an interrupt line into the guest: an eventfd KVM raises GSI `gsi` from (KVM_IRQFD).
 * Writing 1 to the fd is an edge on that line. */
#ifndef EMBER_IRQFD_H
#define EMBER_IRQFD_H

/* The new eventfd, or -errno (the message names the GSI). */
int irqfd_open(int vm_fd, unsigned gsi);

#endif
