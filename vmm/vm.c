/* vm.c - VM lifecycle: KVM checks, VM and memory creation, legacy devices,
 * boot, and the main thread's event loop (see vm.h). */
#define _GNU_SOURCE
#include "vm.h"

#include "../boot/layout.h"
#include "err.h"
#include "evloop.h"
#include "log.h"
#include "metrics.h"
#include "vcpu.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <signal.h>
#include <termios.h>
#include <unistd.h>

#define KVM_API_VERSION_EXPECTED 12

static const struct {
    int cap;
    const char *name;
} required_caps[] = {
    {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
    {KVM_CAP_PIT2, "KVM_CAP_PIT2"},
    {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
    {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
    {KVM_CAP_SET_IDENTITY_MAP_ADDR, "KVM_CAP_SET_IDENTITY_MAP_ADDR"},
    {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
    {KVM_CAP_IRQFD, "KVM_CAP_IRQFD"},
    {KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD"},
    {KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE"},
};

static struct termios saved_termios;
static void kick_handler(int sig);

void vm_request_exit(struct vm *vm, int status, const char *fmt, ...)
{
    int expected = -1;
    if (!atomic_compare_exchange_strong(&vm->exit_status, &expected, status))
        return; /* the first reason wins */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(vm->exit_reason, sizeof(vm->exit_reason), fmt, ap);
    va_end(ap);
    uint64_t one = 1;
    if (write(vm->exit_efd, &one, sizeof(one)) < 0) {
        /* an eventfd write only fails on overflow, which one write cannot cause */
    }
}

int vm_irqfd(struct vm *vm, unsigned gsi)
{
    if (gsi >= sizeof(vm->irqfds) / sizeof(vm->irqfds[0]))
        return -EINVAL;
    if (vm->irqfds[gsi] >= 0)
        return vm->irqfds[gsi];
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0)
        return err_set(-errno, "irq %u: eventfd: %s", gsi, strerror(errno));
    struct kvm_irqfd irqfd = {.fd = (uint32_t)fd, .gsi = gsi};
    if (ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0) {
        int e = errno;
        close(fd);
        return err_set(-e, "irq %u: KVM_IRQFD failed: %s", gsi, strerror(e));
    }
    vm->irqfds[gsi] = fd;
    return fd;
}

static void i8042_reset(void *opaque)
{
    struct vm *vm = opaque;
    METRIC_INC(i8042_reset_count);
    if (serial_saw_panic(&vm->serial))
        vm_request_exit(vm, EMBER_EXIT_GUEST_PANIC,
                        "guest panicked (\"Kernel panic\" on the console), then reset via i8042");
    else
        vm_request_exit(vm, EMBER_EXIT_OK, "guest reset via i8042");
}

static int open_kvm(struct vm *vm)
{
    vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (vm->kvm_fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return err_set(-e, "/dev/kvm: not found: KVM is not available on this host "
                               "(load kvm_intel or kvm_amd, or enable nested virtualization)");
        if (e == EACCES || e == EPERM)
            return err_set(-e, "/dev/kvm: permission denied: run as a user with read/write "
                               "access to /dev/kvm (e.g. in the kvm group)");
        return err_set(-e, "/dev/kvm: %s", strerror(e));
    }
    int version = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
    if (version != KVM_API_VERSION_EXPECTED)
        return err_set(-ENOTSUP, "/dev/kvm: KVM API version %d, Ember needs %d", version,
                       KVM_API_VERSION_EXPECTED);
    for (size_t i = 0; i < sizeof(required_caps) / sizeof(required_caps[0]); i++)
        if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, required_caps[i].cap) <= 0)
            return err_set(-ENOTSUP, "/dev/kvm: capability %s is missing", required_caps[i].name);
    vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (vm->run_size <= 0)
        return err_set(-ENOTSUP, "/dev/kvm: KVM_GET_VCPU_MMAP_SIZE failed");
    return 0;
}

/* MemTotal + SwapTotal in bytes, 0 if unknown. */
static uint64_t host_memory_bytes(void)
{
    FILE *f = fopen("/proc/meminfo", "re");
    if (!f)
        return 0;
    char line[128];
    uint64_t total = 0;
    unsigned long long kb;
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "MemTotal: %llu kB", &kb) == 1 ||
            sscanf(line, "SwapTotal: %llu kB", &kb) == 1)
            total += kb * 1024;
    }
    fclose(f);
    return total;
}

static int setup_memory(struct vm *vm, uint64_t mem_mib)
{
    if (mem_mib < 2)
        return err_set(-EINVAL,
                       "machine-config.mem_size_mib: %llu MiB is too small to boot a "
                       "kernel (at least 2 MiB)",
                       (unsigned long long)mem_mib);
    uint64_t host = host_memory_bytes();
    if (mem_mib > (UINT64_MAX >> 20) || (host && (mem_mib << 20) > host))
        return err_set(-ENOMEM,
                       "machine-config.mem_size_mib: %llu MiB is more than this host has "
                       "(%llu MiB of RAM and swap)",
                       (unsigned long long)mem_mib, (unsigned long long)(host >> 20));
    int rc = guest_mem_init(&vm->mem, mem_mib << 20);
    if (rc)
        return rc;
    for (int i = 0; i < gm_region_count(&vm->mem); i++) {
        struct gm_region r = gm_region(&vm->mem, i);
        struct kvm_userspace_memory_region region = {
            .slot = (uint32_t)i,
            .guest_phys_addr = r.gpa,
            .memory_size = r.size,
            .userspace_addr = (uint64_t)(uintptr_t)r.host,
        };
        if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
            int e = errno;
            return err_set(-e, "machine-config.mem_size_mib: KVM cannot map %llu MiB at 0x%llx: %s",
                           (unsigned long long)(r.size >> 20), (unsigned long long)r.gpa,
                           strerror(e));
        }
    }
    return 0;
}

static int setup_devices(struct vm *vm, const struct vm_config *cfg)
{
    int irq = vm_irqfd(vm, SERIAL_IRQ);
    if (irq < 0)
        return irq;
    int rc = serial_init(&vm->serial, irq, STDOUT_FILENO);
    if (rc)
        return err_set(rc, "serial: cannot set up: %s", strerror(-rc));
    if (cfg->has_serial && (rc = serial_configure(&vm->serial, cfg->serial.serial_out_path,
                                                  &cfg->serial.rate_limiter)))
        return rc;
    struct bus_range r = {SERIAL_PORT_BASE, SERIAL_PORT_LEN, &vm->serial,
                          &vm->serial.lock, serial_pio_read, serial_pio_write};
    if ((rc = bus_register(&vm->pio, &r)))
        return err_set(rc, "serial: cannot register ports");

    if ((irq = vm_irqfd(vm, I8042_IRQ)) < 0)
        return irq;
    i8042_init(&vm->i8042, irq, i8042_reset, vm);
    r = (struct bus_range){I8042_DATA_PORT, 1, &vm->i8042, &vm->i8042.lock, i8042_data_read,
                           i8042_data_write};
    if ((rc = bus_register(&vm->pio, &r)))
        return err_set(rc, "i8042: cannot register ports");
    r = (struct bus_range){I8042_CMD_PORT, 1, &vm->i8042, &vm->i8042.lock, i8042_cmd_read,
                           i8042_cmd_write};
    if ((rc = bus_register(&vm->pio, &r)))
        return err_set(rc, "i8042: cannot register ports");

    r = (struct bus_range){BOOT_TIMER_PORT, 1, &vm->boot_timer, NULL, NULL, boot_timer_write};
    if ((rc = bus_register(&vm->pio, &r)))
        return err_set(rc, "boot timer: cannot register its port");
    return 0;
}

int vm_create(struct vm *vm, const struct vm_config *cfg, const struct vm_options *opt)
{
    memset(vm, 0, sizeof(*vm));
    vm->kvm_fd = vm->vm_fd = vm->exit_efd = -1;
    for (size_t i = 0; i < sizeof(vm->irqfds) / sizeof(vm->irqfds[0]); i++)
        vm->irqfds[i] = -1;
    atomic_init(&vm->exit_status, -1);
    pthread_mutex_init(&vm->pause_lock, NULL);
    pthread_cond_init(&vm->parked_cond, NULL);
    pthread_cond_init(&vm->resume_cond, NULL);
    vm->boot_timer.start_us = time_start_us();
    vm->serial.rx_ready_fd = -1;

    int rc = open_kvm(vm);
    if (rc)
        return rc;
    vm->exit_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (vm->exit_efd < 0)
        return err_set(-errno, "eventfd: %s", strerror(errno));
    vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
    if (vm->vm_fd < 0) {
        int e = errno;
        return err_set(-e, "/dev/kvm: KVM_CREATE_VM failed: %s", strerror(e));
    }
    /* Memory slots first: once the irqchip exists, every slot change waits
     * for an SRCU grace period (measured: 0.1 ms before, 3-5 ms after). */
    if ((rc = setup_memory(vm, cfg->machine.mem_size_mib)))
        return rc;
    /* Virtio devices (files, taps, queue ioeventfds) also before the irqchip. */
    if ((rc = vdev_create_all(vm, cfg)))
        return rc;
    if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)LAYOUT_KVM_TSS) < 0)
        return err_set(-errno, "KVM_SET_TSS_ADDR failed: %s", strerror(errno));
    uint64_t idmap = LAYOUT_KVM_IDENTITY_MAP;
    if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0)
        return err_set(-errno, "KVM_SET_IDENTITY_MAP_ADDR failed: %s", strerror(errno));
    if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
        return err_set(-errno, "KVM_CREATE_IRQCHIP failed: %s", strerror(errno));
    struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
    if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
        return err_set(-errno, "KVM_CREATE_PIT2 failed: %s", strerror(errno));

    if ((rc = cpuid_get_supported(vm->kvm_fd, &vm->cpuid)))
        return rc;
    bool tsc_deadline = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0;
    cpuid_normalize(&vm->cpuid, cfg->machine.vcpu_count, tsc_deadline);
    (void)opt;

    if ((rc = setup_devices(vm, cfg)))
        return rc;
    if ((rc = vdev_wire_irqs(vm)))
        return rc;

    vm->n_vcpus = cfg->machine.vcpu_count;
    for (unsigned i = 0; i < vm->n_vcpus; i++)
        vm->vcpus[i].fd = -1;
    for (unsigned i = 0; i < vm->n_vcpus; i++)
        if ((rc = vcpu_create(vm, i)))
            return rc;
    return 0;
}

int vm_boot(struct vm *vm, const struct vm_config *cfg, const struct vm_options *opt)
{
    struct cpu_template tpl;
    memset(&tpl, 0, sizeof(tpl));
    int rc;
    if (opt->cpu_template_path) {
        if ((rc = cpu_template_load(opt->cpu_template_path, &tpl)))
            return rc;
        if ((rc = cpu_template_apply_cpuid(&tpl, &vm->cpuid)))
            return rc;
    }
    char *cmdline = NULL;
    rc = vdev_cmdline(vm, cfg, cfg->boot.boot_args ? cfg->boot.boot_args : VM_DEFAULT_BOOT_ARGS,
                      &cmdline);
    if (rc)
        return rc;
    struct boot_spec spec = {
        .kernel_path = cfg->boot.kernel_image_path,
        .initrd_path = cfg->boot.initrd_path,
        .cmdline = cmdline,
        .proto = opt->boot_proto,
        .vcpus = vm->n_vcpus,
    };
    struct boot_entry entry;
    rc = boot_load(&vm->mem, &spec, &entry);
    free(cmdline);
    if (rc)
        return rc;
    for (unsigned i = 0; i < vm->n_vcpus; i++)
        if ((rc = vcpu_setup(&vm->vcpus[i], &tpl)))
            return rc;
    if ((rc = vcpu_set_boot_regs(&vm->vcpus[0], &entry)))
        return rc;
    struct sigaction sa = {.sa_handler = kick_handler};
    sigemptyset(&sa.sa_mask);
    sigaction(VCPU_KICK_SIGNAL, &sa, NULL);
    log_info("Booting %s (%s entry at 0x%llx) with %u vCPU(s) and %llu MiB", spec.kernel_path,
             entry.proto == BOOT_PROTO_PVH ? "PVH" : "Linux 64-bit", (unsigned long long)entry.rip,
             vm->n_vcpus, (unsigned long long)cfg->machine.mem_size_mib);
    for (unsigned i = 0; i < vm->n_vcpus; i++)
        if ((rc = vcpu_start(&vm->vcpus[i])))
            return rc;
    return 0;
}

static void restore_terminal(struct vm *vm)
{
    if (vm->stdin_raw)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved_termios);
    vm->stdin_raw = false;
}

/* Guest console input: a terminal goes raw (keys reach the guest as typed). */
static bool setup_stdin(struct vm *vm)
{
    int fl = fcntl(STDIN_FILENO, F_GETFL);
    if (fl < 0)
        return false;
    if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_termios) == 0) {
        struct termios raw = saved_termios;
        cfmakeraw(&raw);
        raw.c_oflag = saved_termios.c_oflag; /* keep output processing (\n -> \r\n) */
        if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0)
            vm->stdin_raw = true;
    }
    return true;
}

static void kick_handler(int sig)
{
    (void)sig; /* only interrupts KVM_RUN */
}

/* Make every started vCPU leave KVM_RUN (now, or at once if it is not in it). */
static void vm_kick_vcpus(struct vm *vm)
{
    for (unsigned i = 0; i < vm->n_vcpus; i++) {
        struct vcpu *v = &vm->vcpus[i];
        if (!v->started)
            continue;
        v->run->immediate_exit = 1;
        pthread_kill(v->thread, VCPU_KICK_SIGNAL);
    }
}

/* Take every vCPU out of KVM_RUN and join its thread. */
static void vm_stop_vcpus(struct vm *vm)
{
    pthread_mutex_lock(&vm->pause_lock);
    vm->paused = false;
    pthread_cond_broadcast(&vm->resume_cond);
    pthread_mutex_unlock(&vm->pause_lock);
    vm_kick_vcpus(vm);
    for (unsigned i = 0; i < vm->n_vcpus; i++) {
        struct vcpu *v = &vm->vcpus[i];
        if (v->started)
            pthread_join(v->thread, NULL);
        v->started = false;
    }
}

static void on_exit_event(struct ev_handler *h, uint32_t events)
{
    struct vm *vm = (struct vm *)((char *)h - offsetof(struct vm, ev_exit));
    uint64_t cnt;
    (void)events;
    if (read(vm->exit_efd, &cnt, sizeof(cnt)) < 0) {
        /* the flag in exit_status is what counts */
    }
}

static void on_stdin(struct ev_handler *h, uint32_t events)
{
    struct vm *vm = (struct vm *)((char *)h - offsetof(struct vm, ev_stdin));
    uint8_t buf[SERIAL_FIFO_LEN];
    (void)events;
    size_t room = serial_rx_space(&vm->serial);
    ssize_t r = room ? read(STDIN_FILENO, buf, room) : 0;
    if (room && r > 0) {
        serial_input(&vm->serial, buf, (size_t)r);
        return;
    }
    if (room && r < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    /* FIFO full (re-armed when the guest drains it), or end of input. */
    evloop_del(vm->ev, &vm->ev_stdin);
    vm->stdin_on = false;
    vm->stdin_eof = room != 0;
}

static void on_serial_ready(struct ev_handler *h, uint32_t events)
{
    struct vm *vm = (struct vm *)((char *)h - offsetof(struct vm, ev_serial));
    uint64_t cnt;
    (void)events;
    if (read(vm->serial.rx_ready_fd, &cnt, sizeof(cnt)) < 0) {
        /* spurious wake-up */
    }
    if (!vm->stdin_on && !vm->stdin_eof)
        vm->stdin_on = evloop_add(vm->ev, &vm->ev_stdin, STDIN_FILENO, EPOLLIN, on_stdin) == 0;
}

int vm_attach(struct vm *vm, struct evloop *ev)
{
    vm->ev = ev;
    int rc = evloop_add(ev, &vm->ev_exit, vm->exit_efd, EPOLLIN, on_exit_event);
    if (!rc)
        rc = evloop_add(ev, &vm->ev_serial, vm->serial.rx_ready_fd, EPOLLIN, on_serial_ready);
    if (rc)
        return err_set(rc, "event loop: %s", strerror(-rc));
    /* EPERM: stdin is a regular file or /dev/null; the guest gets no input. */
    if (setup_stdin(vm))
        vm->stdin_on = evloop_add(ev, &vm->ev_stdin, STDIN_FILENO, EPOLLIN, on_stdin) == 0;
    return vdev_attach(vm, ev);
}

bool vm_exited(struct vm *vm)
{
    return atomic_load(&vm->exit_status) >= 0;
}

int vm_finish(struct vm *vm)
{
    vm_stop_vcpus(vm);
    restore_terminal(vm);
    serial_flush(&vm->serial);
    int status = atomic_load(&vm->exit_status);
    if (status == EMBER_EXIT_OK)
        log_info("%s; exiting with status 0", vm->exit_reason);
    else
        log_error("%s; exiting with status %d", vm->exit_reason, status);
    return status;
}

/* ---- pause / resume ---- */

int vm_pause(struct vm *vm)
{
    uint64_t t0 = time_now_us();
    pthread_mutex_lock(&vm->pause_lock);
    vm->paused = true;
    vm_kick_vcpus(vm);
    /* Wait until every running vCPU has left KVM_RUN and parked. */
    while (vm->n_parked < vm->n_started && !vm_exited(vm))
        pthread_cond_wait(&vm->parked_cond, &vm->pause_lock);
    pthread_mutex_unlock(&vm->pause_lock);
    METRIC_INC(pause_count);
    atomic_store(&metrics.pause_latency_us, time_now_us() - t0);
    return 0;
}

int vm_resume(struct vm *vm)
{
    uint64_t t0 = time_now_us();
    pthread_mutex_lock(&vm->pause_lock);
    vm->paused = false;
    for (unsigned i = 0; i < vm->n_vcpus; i++)
        if (vm->vcpus[i].run)
            vm->vcpus[i].run->immediate_exit = 0;
    pthread_cond_broadcast(&vm->resume_cond);
    pthread_mutex_unlock(&vm->pause_lock);
    METRIC_INC(resume_count);
    atomic_store(&metrics.resume_latency_us, time_now_us() - t0);
    return 0;
}

bool vm_is_paused(struct vm *vm)
{
    pthread_mutex_lock(&vm->pause_lock);
    bool p = vm->paused;
    pthread_mutex_unlock(&vm->pause_lock);
    return p;
}

void vcpu_park_if_paused(struct vcpu *v)
{
    struct vm *vm = v->vm;
    pthread_mutex_lock(&vm->pause_lock);
    if (vm->paused) {
        /* Tell a kvmclock guest it was stopped, so its soft-lockup and RCU
         * watchdogs do not count the pause (EINVAL without kvmclock: fine). */
        ioctl(v->fd, KVM_KVMCLOCK_CTRL, 0);
        vm->n_parked++;
        pthread_cond_broadcast(&vm->parked_cond);
        while (vm->paused && !vm_exited(vm))
            pthread_cond_wait(&vm->resume_cond, &vm->pause_lock);
        vm->n_parked--;
    }
    pthread_mutex_unlock(&vm->pause_lock);
}

void vm_destroy(struct vm *vm)
{
    vm_stop_vcpus(vm);
    restore_terminal(vm);
    for (unsigned i = 0; i < vm->n_vcpus; i++)
        vcpu_destroy(&vm->vcpus[i]);
    vdev_destroy_all(vm); /* waits for in-flight I/O into guest RAM */
    if (vm->serial.rx_ready_fd >= 0)
        serial_destroy(&vm->serial);
    for (size_t i = 0; i < sizeof(vm->irqfds) / sizeof(vm->irqfds[0]); i++)
        if (vm->irqfds[i] >= 0)
            close(vm->irqfds[i]);
    guest_mem_free(&vm->mem);
    if (vm->exit_efd >= 0)
        close(vm->exit_efd);
    if (vm->vm_fd >= 0)
        close(vm->vm_fd);
    if (vm->kvm_fd >= 0)
        close(vm->kvm_fd);
}
