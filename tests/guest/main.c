/* Ember test guest: the CPL3 main program and the report.
 *
 * entry.S irets here at CPL3 with IOPL=3.  Order: read the boot info, map
 * RAM above 4 GiB, CPUID (at CPL0), start the APs, write the boot timer,
 * print the report, obey the command-line options, reset through the i8042.
 * Output format: README.md. */
#include "guest.h"
#include "virtio.h"

struct options opt;
static struct boot_info bi;

#define MAX_CPUS 256

static void parse_options(const char *s)
{
	while (s && *s) {
		while (*s == ' ')
			s++;
		int n;
		if ((n = strncmp_prefix(s, "fault=triple")))
			opt.fault_triple = (s[n] == ' ' || !s[n]);
		else if ((n = strncmp_prefix(s, "fault=ud")))
			opt.fault_ud = (s[n] == ' ' || !s[n]);
		else if ((n = strncmp_prefix(s, "fault=panic")))
			opt.fault_panic = (s[n] == ' ' || !s[n]);
		else if ((n = strncmp_prefix(s, "quiet")))
			opt.quiet = (s[n] == ' ' || !s[n]);
		else if ((n = strncmp_prefix(s, "probe")))
			opt.probe = (s[n] == ' ' || !s[n]);
		else if ((n = strncmp_prefix(s, "idle")))
			opt.idle = (s[n] == ' ' || !s[n]);
		else if ((n = strncmp_prefix(s, "exit=debug")))
			opt.exit_debug = (s[n] == ' ' || !s[n]);
		else if ((n = strncmp_prefix(s, "smp=0")))
			opt.smp_off = (s[n] == ' ' || !s[n]);
		else if ((n = strncmp_prefix(s, "echo="))) {
			s += n;
			while (*s >= '0' && *s <= '9')
				opt.echo = opt.echo * 10 + (u64)(*s++ - '0');
		} else if ((n = strncmp_prefix(s, "counter="))) {
			u64 v = 0;
			s += n;
			while (*s >= '0' && *s <= '9')
				v = v * 10 + (u64)(*s++ - '0');
			opt.counter_set = 1;
			opt.counter = v;
		}
		while (*s && *s != ' ')
			s++;
	}
}

static void print_cmdline(const char *s)
{
	size_t n = 0;
	while (s && n < 4096 && s[n])
		n++;
	print("cmdline: ");
	serial_write(s, n);
	print("\n");
}

/* Write and read back a pattern, then restore the old contents. */
static int probe(u64 pa)
{
	if (pa + 8 > mapped_top)
		return 1; /* not mapped: reported as a failure */
	u64 old = peek64(pa);
	u64 pattern = 0xa5c3e1f00f1e3c5aULL ^ pa;
	poke64(pa, pattern);
	int ok = peek64(pa) == pattern;
	poke64(pa, ~pattern);
	ok = ok && peek64(pa) == ~pattern;
	poke64(pa, old);
	return !ok;
}

static void mem_probe(void)
{
	for (u32 i = 0; i < bi.nmap; i++) {
		const struct mem_range *r = &bi.map[i];
		if (r->type != 1 || r->size < 8)
			continue;
		u64 at[3] = {r->addr, r->addr + r->size - 8, 4 * GiB};
		for (int k = 0; k < 3; k++) {
			if (k == 2 && !(r->addr <= 4 * GiB && 4 * GiB + 8 <= r->addr + r->size))
				continue;
			if (probe(at[k])) {
				print("mem-probe: FAIL 0x%lx\n", at[k]);
				return;
			}
		}
	}
	print("mem-probe: ok\n");
}

static void report_initrd(void)
{
	if (!bi.initrd_size) {
		print("initrd: none\n");
		return;
	}
	print("initrd: 0x%lx 0x%lx ", bi.initrd_addr, bi.initrd_size);
	if (bi.initrd_addr + bi.initrd_size < bi.initrd_addr ||
	    bi.initrd_addr + bi.initrd_size > mapped_top) {
		print("unmapped\n");
		return;
	}
	u32 sum = 0;
	const u8 *p = (const u8 *)(uintptr_t)bi.initrd_addr;
	for (u64 i = 0; i < bi.initrd_size; i++)
		sum += p[i];
	print("sum=0x%x\n", sum);
}

static void delay_cycles(u64 cycles)
{
	u64 start = rdtsc();
	while (rdtsc() - start < cycles)
		cpu_relax();
}

void guest_main(u64 boot_ptr, u32 entry)
{
	bootinfo_parse(&bi, boot_ptr, (int)entry);
	parse_options(bi.cmdline);
	paging_map_ram(&bi);

	u32 leaf1[4], hv[4];
	cpuid0(1, 0, leaf1);
	cpuid0(0x40000000, 0, hv);

	static u8 ap_ids[MAX_CPUS];
	u32 lapic = 0xfee00000, naps;
	u32 cpus = mptable_scan(ap_ids, MAX_CPUS, &naps, &lapic);
	u32 started = 1;
	if (!opt.smp_off && naps)
		started += smp_start(lapic, ap_ids, naps);

	outb(0x3f0, 123); /* boot timer */
	print("boot-timer: written\n");

	if (!opt.quiet) {
		print("ember-test-guest: entry=%s\n", entry == ENTRY_PVH ? "pvh" : "linux64");
		if (bi.error)
			print("error: %s\n", bi.error);
		print_cmdline(bi.cmdline);
		u64 ram = 0;
		for (u32 i = 0; i < bi.nmap; i++) {
			print("e820: 0x%lx 0x%lx %u\n", bi.map[i].addr, bi.map[i].size, bi.map[i].type);
			if (bi.map[i].type == 1)
				ram += bi.map[i].size;
		}
		print("mem-ram-total: 0x%lx\n", ram);
		report_initrd();
		print("hypervisor-bit: %u\n", leaf1[2] >> 31);
		char sig[13];
		for (int i = 0; i < 12; i++) {
			char c = (char)(hv[1 + i / 4] >> (8 * (i % 4)));
			sig[i] = (c >= 0x20 && c < 0x7f) ? c : '.';
		}
		sig[12] = 0;
		print("hypervisor-signature: %s\n", sig);
		print("mptable: cpus=%u\n", cpus);
		u32 l0[4], lb[4];
		cpuid0(0, 0, l0);
		if (l0[0] >= 0xb) { /* threads per core, from the SMT level of leaf 0xb */
			cpuid0(0xb, 0, lb);
			print("cpuid-smt-threads: %u\n", lb[1] & 0xffff);
		}
		print("cpus-started: %u\n", started);
		mem_probe();
	}

	/* virtio devices from virtio_mmio.device= entries, then their test modes. */
	for (u32 i = 0; i < bi.nmap; i++)
		if (bi.map[i].type == 1 && bi.map[i].addr + bi.map[i].size > ram_top)
			ram_top = bi.map[i].addr + bi.map[i].size;
	vio_scan_cmdline(bi.cmdline);
	if (n_vdevs) {
		vblk_probe_all();
		vblk_run(bi.cmdline);
		hostile_run(bi.cmdline);
		vnet_run(bi.cmdline);
	}

	if (opt.echo) {
		print("echo-ready: %lu\n", opt.echo);
		static char buf[256];
		u64 n = opt.echo < sizeof(buf) ? opt.echo : sizeof(buf);
		for (u64 i = 0; i < n; i++)
			buf[i] = serial_getc();
		print("echo: ");
		serial_write(buf, n);
		print("\n");
	}
	if (opt.counter_set) {
		for (u64 i = 0; opt.counter == 0 || i < opt.counter; i++) {
			print("counter: %lu\n", i);
			/* The boot timer again: after a snapshot restore, Ember logs the
			 * first write as the time from the load to the guest running. */
			outb(0x3f0, 123);
			/* Ctrl-Alt-Del from the VMM's i8042: the Del make code,
			 * 0x53 in set 1 (translation on), 0xe0 0x71 in set 2. */
			int cad = 0;
			while (inb(0x64) & 0x01) {
				u8 c = inb(0x60);
				cad |= c == 0x53 || c == 0x71;
			}
			if (cad) {
				print("ctrl-alt-del: received\n");
				break;
			}
			/* ~10 ms; with `probe` the boot timer is written every
			 * ~0.1 ms meanwhile, so that after a restore the first
			 * write comes as soon as the guest runs again. */
			for (int k = 0; k < (opt.probe ? 100 : 1); k++) {
				delay_cycles(opt.probe ? 300000 : 30000000);
				if (opt.probe)
					outb(0x3f0, 123);
			}
		}
	}
	if (opt.idle) {
		/* Idle for density runs: one line, then halted with interrupts off, so
		 * the vCPU never wakes again; the VMM is stopped from outside. */
		print("guest: idle\n");
		sys_simple(SYS_HALT);
	}
	print("guest: done\n");

	if (opt.fault_ud) {
		print("fault: ud\n");
		__asm__ volatile("ud2");
	}
	if (opt.fault_panic) {
		/* What Linux prints before panic=1 reboots it: Ember reports status 5. */
		print("Kernel panic - not syncing: test guest panic\n");
	}
	if (opt.fault_triple) {
		print("fault: triple\n");
		sys_simple(SYS_TRIPLE_FAULT);
	}
	guest_exit();
}

/* isa-debug-exit (QEMU) if asked, then the i8042 reset (Ember exits 0). */
void guest_exit(void)
{
	if (opt.exit_debug)
		outb(0xf4, 0);
	outb(0x64, 0xfe);
	if (at_cpl0()) {
		for (;;)
			__asm__ volatile("cli; hlt");
	}
	for (;;)
		sys_simple(SYS_HALT);
}

/* Called at CPL0 by isr_common for every exception; never returns. */
struct trap_frame {
	u64 vector, error, rip, cs, rflags, rsp, ss;
};

void trap(const struct trap_frame *f) __attribute__((noreturn));
void trap(const struct trap_frame *f)
{
	print("exception: vector=%lu error=0x%lx rip=0x%lx cs=0x%lx", f->vector, f->error, f->rip, f->cs);
	if (f->vector == 14) {
		u64 cr2;
		__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
		print(" cr2=0x%lx", cr2);
	}
	print("\n");
	guest_exit();
}
