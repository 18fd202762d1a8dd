/*
 * Ember's guest init (PID 1), for the test images built by build-images.sh.
 *
 *  1. mounts /proc, /sys and /dev (devtmpfs; already there on a disk root
 *     with CONFIG_DEVTMPFS_MOUNT, not on an initramfs);
 *  2. writes 123 to I/O port 0x3f0, Ember's boot timer: the VMM logs
 *     Guest-boot-time (the figure DESIGN.md measures boot time up to);
 *  3. prints "ember-init: ..." on the console;
 *  4. runs the command from the kernel command line, ember.cmd="...", as
 *     /bin/sh -c "...", and prints its exit status;
 *  5. reboots (RB_AUTOBOOT; with reboot=k the kernel resets through the
 *     i8042, which ends the Ember process with status 0).
 *
 * Static (gcc -static -Os), no dependencies beyond libc. Quoting of the
 * value follows the kernel's: ember.cmd="a b c" or ember.cmd=word.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define BOOT_TIMER_PORT 0x3f0
#define BOOT_TIMER_MAGIC 123
#define CMD_KEY "ember.cmd="

/* One write(2) per message, straight to the console (no stdio buffering). */
static void __attribute__((format(printf, 1, 2))) say(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int len;

	va_start(ap, fmt);
	len = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (len > 0)
		(void)!write(2, buf, (size_t)len < sizeof(buf) ? (size_t)len : sizeof(buf) - 1);
}

static void mount_one(const char *type, const char *dir, unsigned long flags)
{
	mkdir(dir, 0755);
	if (mount(type, dir, type, flags, NULL) != 0 && errno != EBUSY)
		say("ember-init: mount %s: %s\n", dir, strerror(errno));
}

/* Returns the value of ember.cmd= from the command line (static buffer), or NULL. */
static char *find_cmd(void)
{
	static char line[4096];
	ssize_t n;
	char *p;
	int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return NULL;
	n = read(fd, line, sizeof(line) - 1);
	close(fd);
	if (n <= 0)
		return NULL;
	line[n] = '\0';

	for (p = line; (p = strstr(p, CMD_KEY)) != NULL; p += sizeof(CMD_KEY) - 1) {
		char *v, *end;

		if (p != line && p[-1] != ' ')
			continue;
		v = p + sizeof(CMD_KEY) - 1;
		if (*v == '"') {
			v++;
			end = strchr(v, '"');
		} else {
			end = v + strcspn(v, " \n");
		}
		if (end)
			*end = '\0';
		else
			v[strcspn(v, "\n")] = '\0';
		return v;
	}
	return NULL;
}

int main(void)
{
	char *cmd;
	pid_t child;
	int status = 0;

	if (getpid() != 1)
		say("ember-init: warning: pid %ld, not 1\n", (long)getpid());

	mount_one("proc", "/proc", MS_NOSUID | MS_NODEV | MS_NOEXEC);
	mount_one("sysfs", "/sys", MS_NOSUID | MS_NODEV | MS_NOEXEC);
	mount_one("devtmpfs", "/dev", MS_NOSUID);

	/* On an initramfs without /dev/console the kernel gave us no stdio. */
	if (fcntl(2, F_GETFD) < 0) {
		int fd = open("/dev/console", O_RDWR);

		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
			if (fd > 2)
				close(fd);
		}
	}

	/* Boot timer: the first thing user space does that the VMM can see. */
	if (ioperm(BOOT_TIMER_PORT, 1, 1) == 0)
		outb(BOOT_TIMER_MAGIC, BOOT_TIMER_PORT);
	else
		say("ember-init: ioperm: %s\n", strerror(errno));

	setenv("PATH", "/bin:/sbin:/usr/bin:/usr/sbin", 1);
	setenv("HOME", "/", 1);

	cmd = find_cmd();
	say("ember-init: user space up; command: %s\n", cmd ? cmd : "(none)");

	if (cmd && *cmd) {
		child = fork();
		if (child == 0) {
			execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
			say("ember-init: exec /bin/sh: %s\n", strerror(errno));
			_exit(127);
		}
		if (child < 0) {
			say("ember-init: fork: %s\n", strerror(errno));
			status = 127 << 8;
		} else {
			/* PID 1 also reaps orphans; stop when our child is done. */
			for (;;) {
				int st;
				pid_t w = wait(&st);

				if (w == child) {
					status = st;
					break;
				}
				if (w < 0 && errno != EINTR)
					break;
			}
		}
		if (WIFEXITED(status))
			say("ember-init: command exited with status %d\n", WEXITSTATUS(status));
		else if (WIFSIGNALED(status))
			say("ember-init: command killed by signal %d\n", WTERMSIG(status));
	}

	say("ember-init: rebooting\n");
	sync();
	reboot(RB_AUTOBOOT);
	say("ember-init: reboot: %s\n", strerror(errno));
	for (;;)
		pause();
}
