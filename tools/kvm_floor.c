/* kvm_floor.c - the raw-KVM floor for exec -> exit (issue 12): open /dev/kvm, one VM with
 * lazily mapped RAM (argv[1] MiB, default 128) and one vCPU in real mode, a 7-byte guest
 * that writes 123 to the boot-timer port 0x3f0, and exit 0 on that write. No checks beyond
 * the return codes: what any VMM must at least do. tools/bench_density.py.
 * `kvm-floor MIB irqchip` also makes the in-kernel PIC/IOAPIC/LAPIC and PIT after the
 * memory, as Ember does (a Linux guest needs them): the same floor with their set-up and
 * their tear-down when the VM closes. */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

int main(int argc, char **argv)
{
    unsigned long mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 128, size = mib << 20;
    static const unsigned char code[] = {0xba, 0xf0, 0x03, 0xb0, 0x7b, 0xee, 0xf4}; /* out; hlt */
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), vm = ioctl(kvm, KVM_CREATE_VM, 0);
    unsigned char *ram = mmap(NULL, size, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (kvm < 0 || vm < 0 || ram == MAP_FAILED || ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000) < 0)
        return 1;
    memcpy(ram + 0x1000, code, sizeof(code));
    struct kvm_userspace_memory_region r = {.memory_size = size, .userspace_addr = (__u64)ram};
    struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0 ||
        (argc > 2 && !strcmp(argv[2], "irqchip") &&
         (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0 || ioctl(vm, KVM_CREATE_PIT2, &pit) < 0)))
        return 1;
    int cpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    struct kvm_run *run = cpu < 0 || run_size < 0
                              ? MAP_FAILED
                              : mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, cpu, 0);
    struct kvm_sregs s;
    if (run == MAP_FAILED || ioctl(cpu, KVM_GET_SREGS, &s) < 0)
        return 1;
    s.cs.base = s.cs.selector = 0;
    struct kvm_regs regs = {.rip = 0x1000, .rflags = 2};
    if (ioctl(cpu, KVM_SET_SREGS, &s) < 0 || ioctl(cpu, KVM_SET_REGS, &regs) < 0)
        return 1;
    while (ioctl(cpu, KVM_RUN, 0) == 0)
        if (run->exit_reason == KVM_EXIT_IO && run->io.port == 0x3f0)
            return 0; /* the boot-timer write: the floor's "guest up" and its exit */
        else if (run->exit_reason != KVM_EXIT_IO)
            return 2;
    return 3;
}
