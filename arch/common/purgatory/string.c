/*
 * Minimal memory routines for the pykexec purgatory.
 *
 * GCC may emit calls to memcpy/memset/memmove/memcmp (struct copies,
 * zeroing) even in freestanding mode, so they must exist.  The build uses
 * -fno-tree-loop-distribute-patterns so these loops are not themselves
 * turned back into calls to the same functions.
 */
#include "core.h"

void *memcpy(void *dst, const void *src, size_t len)
{
	uint8_t *d = dst;
	const uint8_t *s = src;

	while (len--)
		*d++ = *s++;
	return dst;
}

void *memmove(void *dst, const void *src, size_t len)
{
	uint8_t *d = dst;
	const uint8_t *s = src;

	if (d == s || len == 0)
		return dst;
	if ((uintptr_t)d < (uintptr_t)s) {
		while (len--)
			*d++ = *s++;
	} else {
		d += len;
		s += len;
		while (len--)
			*--d = *--s;
	}
	return dst;
}

void *memset(void *dst, int c, size_t len)
{
	uint8_t *d = dst;

	while (len--)
		*d++ = (uint8_t)c;
	return dst;
}

int memcmp(const void *a, const void *b, size_t len)
{
	const uint8_t *x = a, *y = b;

	for (; len; len--, x++, y++) {
		if (*x != *y)
			return *x < *y ? -1 : 1;
	}
	return 0;
}
