/* Ember test guest: output on the 8250 UART at 0x3f8 and a tiny printf.
 * Polls LSR.THRE before every THR write; no divisor set-up (the VMM's UART
 * does not need one).  Usable at CPL3 (IOPL=3) and at CPL0 (trap()). */
#include <stdarg.h>

#include "guest.h"

#define COM1 0x3f8
#define LSR 5
#define LSR_THRE 0x20

void serial_putc(char c)
{
	while (!(inb(COM1 + LSR) & LSR_THRE))
		cpu_relax();
	outb(COM1, (u8)c);
}

/* Wait for a received byte (LSR data ready) and return it. */
char serial_getc(void)
{
	while (!(inb(COM1 + LSR) & 0x01))
		cpu_relax();
	return (char)inb(COM1);
}

void serial_write(const char *s, size_t n)
{
	while (n--)
		serial_putc(*s++);
}

static void put_num(u64 v, unsigned base)
{
	char buf[20];
	int i = 0;
	do {
		buf[i++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	while (i)
		serial_putc(buf[--i]);
}

/* %s %c %d %u (32-bit), %lu %lx (64-bit), %x (32-bit). No widths. */
void print(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			serial_putc(*fmt);
			continue;
		}
		int is_long = 0;
		if (*++fmt == 'l') {
			is_long = 1;
			fmt++;
		}
		switch (*fmt) {
		case 's': {
			const char *s = va_arg(ap, const char *);
			while (*s)
				serial_putc(*s++);
			break;
		}
		case 'c':
			serial_putc((char)va_arg(ap, int));
			break;
		case 'd': {
			long v = is_long ? va_arg(ap, long) : va_arg(ap, int);
			if (v < 0) {
				serial_putc('-');
				v = -v;
			}
			put_num((u64)v, 10);
			break;
		}
		case 'u':
			put_num(is_long ? va_arg(ap, u64) : va_arg(ap, u32), 10);
			break;
		case 'x':
			put_num(is_long ? va_arg(ap, u64) : va_arg(ap, u32), 16);
			break;
		case '%':
			serial_putc('%');
			break;
		default:
			serial_putc('?');
			break;
		}
	}
	va_end(ap);
}
