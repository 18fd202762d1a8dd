/* vm.c - VM lifecycle: KVM checks, VM and memory creation, legacy devices,
 * boot, and the VM's fds on the main thread's event loop (see vm.h). */
#define _GNU_SOURCE
#include "vm.h"

#include "../boot/layout.h"
#include "base/container_of.h"
#include "base/err.h"
#include "base/evloop.h"
#include "base/log.h"
#include "base/metrics.h"
#include "irqfd.h"

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

void vm_request_exit(struct vm *vm, int status, const char *fmt, ...)
{
    char reason[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    vcpu_ctl_request_exit(&vm->ctl, status, "%s", reason);
}

static void i8042_reset(void *opaque)
{
    struct vm *vm = opaque;
    METRIC_INC(i8042_reset_count);
    vm_request_exit(vm, EMBER_EXIT_OK, "guest reset via i8042");
}

static int open_kvm(int *kvm_fd, int *run_size)
{
    int fd = *kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return err_set(-e, "/dev/kvm: not found: KVM is not available on this host "
                               "(load kvm_intel or kvm_amd, or enable nested virtualization)");
        if (e == EACCES || e == EPERM)
            return err_set(-e, "/dev/kvm: permission denied: run as a user with read/write "
                               "access to /dev/kvm (e.g. in the kvm group)");
        return err_set(-e, "/dev/kvm: %s", strerror(e));
    }
    int version = ioctl(fd, KVM_GET_API_VERSION, 0);
    if (version != KVM_API_VERSION_EXPECTED)
        return err_set(-ENOTSUP, "/dev/kvm: KVM API version %d, Ember needs %d", version,
                       KVM_API_VERSION_EXPECTED);
    for (size_t i = 0; i < sizeof(required_caps) / sizeof(required_caps[0]); i++)
        if (ioctl(fd, KVM_CHECK_EXTENSION, required_caps[i].cap) <= 0)
            return err_set(-ENOTSUP, "/dev/kvm: capability %s is missing", required_caps[i].name);
    *run_size = ioctl(fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (*run_size <= 0)
        return err_set(-ENOTSUP, "/dev/kvm: KVM_GET_VCPU_MMAP_SIZE failed");
    return 0;
}

/* MemTotal + SwapTotal in bytes, 0 if unknown. Read once (the spare VM reads
 * it before the first request), so that a build does not read /proc again. */
static uint64_t host_memory_bytes(void)
{
    static uint64_t cached;
    if (cached)
        return cached;
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
    return cached = total;
}

/* One KVM memory slot per RAM region of gm, in order from slot 0; `add`
 * false deletes them instead. */
static int set_slots(int vm_fd, const struct guest_mem *gm, bool add, uint32_t flags)
{
    for (int i = 0; i < gm_region_count(gm); i++) {
        struct gm_region r = gm_region(gm, i);
        struct kvm_userspace_memory_region region = {
            .slot = (uint32_t)i,
            .guest_phys_addr = r.gpa,
            .memory_size = add ? r.size : 0,
            .userspace_addr = (uint64_t)(uintptr_t)r.host,
            .flags = flags,
        };
        if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
            int e = errno;
            return err_set(-e, "machine-config.mem_size_mib: KVM cannot map %llu MiB at 0x%llx: %s",
                           (unsigned long long)(r.size >> 20), (unsigned long long)r.gpa,
                           strerror(e));
        }
    }
    return 0;
}

/* The spare's RAM is not what the VM needs: its slots go, then the mapping. */
static void spare_mem_drop(int vm_fd, struct guest_mem *mem)
{
    if (!mem->host)
        return;
    set_slots(vm_fd, mem, false, 0);
    guest_mem_free(mem);
}

void vm_spare_close(struct vm_spare *s)
{
    if (s->vm_fd >= 0)
        close(s->vm_fd); /* its memory slots with it */
    if (s->kvm_fd >= 0)
        close(s->kvm_fd);
    guest_mem_free(&s->mem);
    s->vm_fd = s->kvm_fd = -1;
}

int vm_spare_make(struct vm_spare *s, uint64_t mem_mib)
{
    s->vm_fd = -1;
    memset(&s->mem, 0, sizeof(s->mem));
    int rc = open_kvm(&s->kvm_fd, &s->run_size);
    if (!rc && (s->vm_fd = ioctl(s->kvm_fd, KVM_CREATE_VM, 0)) < 0)
        rc = err_set(-errno, "/dev/kvm: KVM_CREATE_VM failed: %s", strerror(errno));
    if (!rc)
        rc = cpuid_get_supported(s->kvm_fd, &s->cpuid);
    if (rc) {
        vm_spare_close(s);
        return rc;
    }
    s->tsc_deadline = ioctl(s->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0;
    /* RAM ready for a VM of the size guessed (host_memory_bytes read now, not at the
     * request); without it, a VM maps its own. */
    if (mem_mib && mem_mib <= (UINT64_MAX >> 20) && (mem_mib << 20) <= host_memory_bytes() &&
        guest_mem_init(&s->mem, mem_mib << 20, LAYOUT_MMIO_GAP_START, LAYOUT_MMIO_GAP_END) == 0 &&
        set_slots(s->vm_fd, &s->mem, true, 0) != 0)
        spare_mem_drop(s->vm_fd, &s->mem);
    return 0;
}

static int setup_memory(struct vm *vm, uint64_t mem_mib, const struct vm_options *opt,
                        bool track_dirty, enum huge_pages huge_pages, struct guest_mem *spare)
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
    /* The spare's RAM if it is the size wanted (plain pages: huge pages are mapped
     * otherwise): taken as it is, or the memory file mapped over it in place; either
     * way its slots stay. Else it goes, and this VM maps and registers its own. */
    bool take = spare->host && spare->size == mem_mib << 20 && huge_pages == HUGE_PAGES_NONE;
    if (!take)
        spare_mem_drop(vm->vm_fd, spare);
    int rc = 0;
    if (opt->mem_from_file)
        rc = guest_mem_map_file(&vm->mem, mem_mib << 20, LAYOUT_MMIO_GAP_START, LAYOUT_MMIO_GAP_END,
                                opt->mem_fd, take ? spare->host : NULL);
    else if (take)
        vm->mem = *spare;
    else
        rc = guest_mem_init_huge(&vm->mem, mem_mib << 20, LAYOUT_MMIO_GAP_START,
                                 LAYOUT_MMIO_GAP_END, huge_pages);
    if (take) {
        memset(spare, 0, sizeof(*spare));
        if (!rc)
            log_debug("guest RAM: the spare VM's %llu MiB and memory slot%s",
                      (unsigned long long)mem_mib,
                      opt->mem_from_file ? ", the memory file mapped over it" : "");
    }
    if (rc)
        return rc;
    vm->track_dirty = track_dirty;
    if (track_dirty && (rc = gm_track_dirty(&vm->mem)))
        return rc;
    /* Taken slots need only their flags changed, and only for dirty tracking. */
    if (take && !track_dirty)
        return 0;
    return set_slots(vm->vm_fd, &vm->mem, true, track_dirty ? KVM_MEM_LOG_DIRTY_PAGES : 0);
}

static int setup_devices(struct vm *vm, const struct vm_config *cfg)
{
    int irq = vm->serial_irq = irqfd_open(vm->vm_fd, SERIAL_IRQ);
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

    if ((irq = vm->i8042_irq = irqfd_open(vm->vm_fd, I8042_IRQ)) < 0)
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
    uint64_t t[6];
    t[0] = time_now_us();
    memset(vm, 0, sizeof(*vm));
    vm->kvm_fd = vm->vm_fd = vm->serial_irq = vm->i8042_irq = vm->uffd = vm->uffd_sock = -1;
    vm->boot_timer.start_us = time_start_us();
    vm->serial.rx_ready_fd = -1;

    /* The spare VM if there is one (taken, whatever happens next), else one now. */
    struct vm_spare now = {.kvm_fd = -1, .vm_fd = -1}, *k = opt->spare;
    int rc = vcpu_ctl_init(&vm->ctl);
    if (!k || k->vm_fd < 0) {
        k = &now;
        if (!rc)
            rc = vm_spare_make(k, 0);
    }
    vm->kvm_fd = k->kvm_fd;
    vm->vm_fd = k->vm_fd;
    vm->run_size = k->run_size;
    k->kvm_fd = k->vm_fd = -1;
    if (rc) {
        if (opt->mem_from_file)
            close(opt->mem_fd);
        return rc;
    }
    t[1] = time_now_us();
    /* Memory slots first: once the irqchip exists, every slot change waits
     * for an SRCU grace period (measured: 0.1 ms before, 3-5 ms after). */
    rc = setup_memory(vm, cfg->machine.mem_size_mib, opt, cfg->machine.track_dirty_pages,
                      cfg->machine.huge_pages, &k->mem);
    guest_mem_free(&k->mem); /* nothing if taken; else on a failure before the drop */
    if (rc)
        return rc;
    t[2] = time_now_us();
    /* Virtio devices (files, taps, queue ioeventfds) also before the irqchip. */
    if ((rc = vdev_create_all(&vm->vdevs, cfg, &vm->mem, vm->vm_fd, &vm->mmio)))
        return rc;
    t[3] = time_now_us();
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

    vm->cpuid = k->cpuid;
    cpuid_normalize(&vm->cpuid, cfg->machine.vcpu_count, k->tsc_deadline, cfg->machine.smt);

    if ((rc = setup_devices(vm, cfg)))
        return rc;
    if ((rc = vdev_wire_irqs(&vm->vdevs, vm->vm_fd)))
        return rc;
    t[4] = time_now_us();

    vm->n_vcpus = cfg->machine.vcpu_count;
    for (unsigned i = 0; i < vm->n_vcpus; i++)
        vm->vcpus[i].fd = -1;
    for (unsigned i = 0; i < vm->n_vcpus; i++)
        if ((rc = vcpu_create(&vm->vcpus[i], vm->vm_fd, vm->run_size, i, &vm->ctl, &vm->pio,
                              &vm->mmio)))
            return rc;
    t[5] = time_now_us();
    log_debug("VM built: /dev/kvm and KVM_CREATE_VM %llu us%s, memory %llu us, virtio devices "
              "%llu us, irqchip, PIT, CPUID and legacy devices %llu us, vCPUs %llu us",
              (unsigned long long)(t[1] - t[0]), k == &now ? "" : " (spare)",
              (unsigned long long)(t[2] - t[1]), (unsigned long long)(t[3] - t[2]),
              (unsigned long long)(t[4] - t[3]), (unsigned long long)(t[5] - t[4]));
    return 0;
}

int vm_load_kernel(struct vm *vm, const struct vm_config *cfg, const struct vm_options *opt)
{
    struct cpu_template tpl;
    memset(&tpl, 0, sizeof(tpl));
    int rc;
    /* PUT /cpu-config (or the file's "cpu-config") wins over --cpu-template. */
    if (cfg->cpu_config) {
        if ((rc = cpu_template_parse(cfg->cpu_config, &tpl)))
            return rc;
        if ((rc = cpu_template_apply_cpuid(&tpl, &vm->cpuid)))
            return rc;
    } else if (opt->cpu_template_path) {
        if ((rc = cpu_template_load(opt->cpu_template_path, &tpl)))
            return rc;
        if ((rc = cpu_template_apply_cpuid(&tpl, &vm->cpuid)))
            return rc;
    }
    char *cmdline = NULL;
    rc = vdev_cmdline(&vm->vdevs, cfg,
                      cfg->boot.boot_args ? cfg->boot.boot_args : VM_DEFAULT_BOOT_ARGS, &cmdline);
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
        if ((rc = vcpu_setup(&vm->vcpus[i], &vm->cpuid, &tpl)))
            return rc;
    if ((rc = vcpu_set_boot_regs(&vm->vcpus[0], &entry)))
        return rc;
    log_info("Booting %s (%s entry at 0x%llx) with %u vCPU(s) and %llu MiB", spec.kernel_path,
             entry.proto == BOOT_PROTO_PVH ? "PVH" : "Linux 64-bit", (unsigned long long)entry.rip,
             vm->n_vcpus, (unsigned long long)cfg->machine.mem_size_mib);
    return 0;
}

int vm_start(struct vm *vm, bool paused)
{
    if (paused) {
        /* The threads park before their first KVM_RUN; vm_resume lets them go. */
        pthread_mutex_lock(&vm->ctl.lock);
        vm->ctl.paused = true;
        pthread_mutex_unlock(&vm->ctl.lock);
    }
    for (unsigned i = 0; i < vm->n_vcpus; i++) {
        int rc = vcpu_start(&vm->vcpus[i]);
        if (rc)
            return rc;
    }
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

static void on_exit_event(struct ev_handler *h, uint32_t events)
{
    struct vm *vm = container_of(h, struct vm, ev_exit);
    uint64_t cnt;
    (void)events;
    if (read(vm->ctl.exit_efd, &cnt, sizeof(cnt)) < 0) {
        /* the flag in exit_status is what counts */
    }
}

static void on_stdin(struct ev_handler *h, uint32_t events)
{
    struct vm *vm = container_of(h, struct vm, ev_stdin);
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
    struct vm *vm = container_of(h, struct vm, ev_serial);
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
    int rc = evloop_add(ev, &vm->ev_exit, vm->ctl.exit_efd, EPOLLIN, on_exit_event);
    if (!rc)
        rc = evloop_add(ev, &vm->ev_serial, vm->serial.rx_ready_fd, EPOLLIN, on_serial_ready);
    if (rc)
        return err_set(rc, "event loop: %s", strerror(-rc));
    /* EPERM: stdin is a regular file or /dev/null; the guest gets no input. */
    if (setup_stdin(vm))
        vm->stdin_on = evloop_add(ev, &vm->ev_stdin, STDIN_FILENO, EPOLLIN, on_stdin) == 0;
    return vdev_attach(&vm->vdevs, ev);
}

bool vm_exited(struct vm *vm)
{
    return vcpu_ctl_exited(&vm->ctl);
}

int vm_finish(struct vm *vm)
{
    vcpu_ctl_stop(&vm->ctl, vm->vcpus, vm->n_vcpus);
    restore_terminal(vm);
    serial_flush(&vm->serial);
    int status = atomic_load(&vm->ctl.exit_status);
    const char *reason = vm->ctl.exit_reason;
    /* A guest reset or triple fault that followed a kernel panic on the console is a panic. */
    if ((status == EMBER_EXIT_OK || status == EMBER_EXIT_TRIPLE_FAULT) &&
        serial_saw_panic(&vm->serial)) {
        status = EMBER_EXIT_GUEST_PANIC;
        char was[sizeof(vm->ctl.exit_reason)];
        memcpy(was, vm->ctl.exit_reason, sizeof(was));
        snprintf(vm->ctl.exit_reason, sizeof(vm->ctl.exit_reason),
                 "guest panicked (\"Kernel panic\" on the console), then: %.200s", was);
    }
    if (status == EMBER_EXIT_OK)
        log_info("%s; exiting with status 0", reason);
    else
        log_error("%s; exiting with status %d", reason, status);
    return status;
}

/* ---- pause / resume ---- */

static void quiesce_devices(struct vm *vm, bool on)
{
    for (unsigned i = 0; i < vm->vdevs.n; i++)
        vmmio_quiesce(&vm->vdevs.dev[i]->t, on);
}

int vm_pause(struct vm *vm)
{
    uint64_t t0 = time_now_us();
    int rc = vcpu_ctl_pause(&vm->ctl, vm->vcpus, vm->n_vcpus);
    if (rc)
        return err_set(rc, "the microVM is shutting down");
    /* vCPUs parked: no new kicks; finish the devices' work. */
    quiesce_devices(vm, true);
    serial_flush(&vm->serial); /* the console shows all the guest wrote before the pause */
    METRIC_INC(pause_count);
    atomic_store(&metrics.pause_latency_us, time_now_us() - t0);
    return 0;
}

int vm_resume(struct vm *vm)
{
    uint64_t t0 = time_now_us();
    quiesce_devices(vm, false); /* the devices first: they serve what the guest queued */
    vcpu_ctl_resume(&vm->ctl, vm->vcpus, vm->n_vcpus);
    METRIC_INC(resume_count);
    atomic_store(&metrics.resume_latency_us, time_now_us() - t0);
    return 0;
}

bool vm_is_paused(struct vm *vm)
{
    return vcpu_ctl_paused(&vm->ctl);
}

int vm_ctrl_alt_del(struct vm *vm)
{
    return i8042_ctrl_alt_del(&vm->i8042);
}

/* ---- state for snapshots ---- */

int vm_save_kvm_state(struct vm *vm, struct vm_kvm_state *s)
{
    memset(s, 0, sizeof(*s));
    if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &s->clock) < 0)
        return err_set(-errno, "KVM_GET_CLOCK: %s", strerror(errno));
    for (unsigned i = 0; i < 3; i++) {
        s->irqchip[i].chip_id = i;
        if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &s->irqchip[i]) < 0)
            return err_set(-errno, "KVM_GET_IRQCHIP %u: %s", i, strerror(errno));
    }
    if (ioctl(vm->vm_fd, KVM_GET_PIT2, &s->pit) < 0)
        return err_set(-errno, "KVM_GET_PIT2: %s", strerror(errno));
    return 0;
}

int vm_restore_irqchip(struct vm *vm, const struct vm_kvm_state *s)
{
    for (unsigned i = 0; i < 3; i++) {
        struct kvm_irqchip chip = s->irqchip[i];
        if (chip.chip_id != i)
            return err_set(-EINVAL, "irqchip %u: the snapshot holds chip %u there", i,
                           chip.chip_id);
        if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chip) < 0)
            return err_set(-errno, "KVM_SET_IRQCHIP %u: %s", i, strerror(errno));
    }
    struct kvm_pit_state2 pit = s->pit;
    if (ioctl(vm->vm_fd, KVM_SET_PIT2, &pit) < 0)
        return err_set(-errno, "KVM_SET_PIT2: %s", strerror(errno));
    return 0;
}

int vm_restore_clock(struct vm *vm, const struct vm_kvm_state *s, bool realtime)
{
    struct kvm_clock_data c = {.clock = s->clock.clock};
    if (realtime && (s->clock.flags & KVM_CLOCK_REALTIME)) {
        c.flags = KVM_CLOCK_REALTIME;
        c.realtime = s->clock.realtime;
    }
    if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &c) < 0)
        return err_set(-errno, "KVM_SET_CLOCK: %s", strerror(errno));
    return 0;
}

void vm_save_legacy(struct vm *vm, struct vm_legacy_state *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_lock(&vm->serial.lock);
    s->serial = vm->serial.st;
    pthread_mutex_unlock(&vm->serial.lock);
    pthread_mutex_lock(&vm->i8042.lock);
    s->i8042 = vm->i8042.st;
    pthread_mutex_unlock(&vm->i8042.lock);
    s->boot_time_us = vm->boot_timer.boot_time_us;
}

int vm_restore_legacy(struct vm *vm, const struct vm_legacy_state *s)
{
    if (s->serial.rx_head >= SERIAL_FIFO_LEN || s->serial.rx_len > SERIAL_FIFO_LEN)
        return err_set(-EINVAL, "serial: the snapshot's receive FIFO is out of range");
    if (s->i8042.buf_head >= I8042_BUF_LEN || s->i8042.buf_len > I8042_BUF_LEN)
        return err_set(-EINVAL, "i8042: the snapshot's output buffer is out of range");
    pthread_mutex_lock(&vm->serial.lock);
    vm->serial.st = s->serial;
    pthread_mutex_unlock(&vm->serial.lock);
    pthread_mutex_lock(&vm->i8042.lock);
    vm->i8042.st = s->i8042;
    pthread_mutex_unlock(&vm->i8042.lock);
    vm->boot_timer.boot_time_us = s->boot_time_us;
    return 0;
}

int vm_take_dirty(struct vm *vm, uint64_t *bits, uint64_t words)
{
    if (!vm->track_dirty)
        return err_set(-EINVAL, "dirty pages are not tracked (machine-config.track_dirty_pages "
                                "or the snapshot load's track_dirty_pages)");
    uint64_t off = 0; /* mapping offset of the slot, in pages */
    for (int i = 0; i < gm_region_count(&vm->mem); i++) {
        struct gm_region r = gm_region(&vm->mem, i);
        uint64_t pages = r.size / GM_PAGE, n = (pages + 63) / 64;
        uint64_t *slot = calloc(n ? n : 1, sizeof(uint64_t));
        if (!slot)
            return err_set(-ENOMEM, "dirty log: out of memory");
        struct kvm_dirty_log log = {.slot = (uint32_t)i, .dirty_bitmap = slot};
        if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0) {
            int e = errno;
            free(slot);
            return err_set(-e, "KVM_GET_DIRTY_LOG slot %d: %s", i, strerror(e));
        }
        for (uint64_t p = 0; p < pages; p++)
            if (slot[p / 64] & (1ull << (p % 64))) {
                uint64_t q = off + p;
                if (q / 64 < words)
                    bits[q / 64] |= 1ull << (q % 64);
            }
        free(slot);
        off += pages;
    }
    gm_take_dirty(&vm->mem, bits, words);
    return 0;
}

void vm_destroy(struct vm *vm)
{
    vcpu_ctl_stop(&vm->ctl, vm->vcpus, vm->n_vcpus);
    restore_terminal(vm);
    for (unsigned i = 0; i < vm->n_vcpus; i++)
        vcpu_destroy(&vm->vcpus[i]);
    vdev_destroy_all(&vm->vdevs); /* waits for in-flight I/O into guest RAM */
    if (vm->serial.rx_ready_fd >= 0)
        serial_destroy(&vm->serial);
    if (vm->serial_irq >= 0)
        close(vm->serial_irq);
    if (vm->i8042_irq >= 0)
        close(vm->i8042_irq);
    guest_mem_free(&vm->mem);
    if (vm->uffd >= 0)
        close(vm->uffd);
    if (vm->uffd_sock >= 0)
        close(vm->uffd_sock);
    if (vm->vm_fd >= 0)
        close(vm->vm_fd);
    if (vm->kvm_fd >= 0)
        close(vm->kvm_fd);
    vcpu_ctl_destroy(&vm->ctl);
}
