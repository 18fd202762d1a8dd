/* Ember test guest: the few libc routines the compiler and the guest need. */
#include "guest.h"

void *memcpy(void *d, const void *s, size_t n)
{
	u8 *dp = d;
	const u8 *sp = s;
	while (n--)
		*dp++ = *sp++;
	return d;
}

void *memset(void *d, int c, size_t n)
{
	u8 *dp = d;
	while (n--)
		*dp++ = (u8)c;
	return d;
}

/* Length of prefix if s starts with it, else 0. */
int strncmp_prefix(const char *s, const char *prefix)
{
	int i = 0;
	while (prefix[i]) {
		if (s[i] != prefix[i])
			return 0;
		i++;
	}
	return i;
}
