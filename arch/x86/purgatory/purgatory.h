/*
 * pykexec x86 purgatory (x86_64 and i386): shared declarations.
 *
 * Everything here is freestanding: no libc, no headers beyond the compiler's
 * own <stdint.h>/<stddef.h>.  What differs between the architectures (the
 * register block the entry code loads, the name in messages) comes from the
 * architecture's "arch.h" (arch/<arch>/purgatory/, on the include path).
 */
#ifndef PYKEXEC_PURGATORY_H
#define PYKEXEC_PURGATORY_H

#include <stddef.h>
#include <stdint.h>

/* One region to hash: physical (identity-mapped) start address and length. */
struct sha256_region {
	uint64_t start;
	uint64_t len;
};

#define SHA256_REGIONS 16
#define SHA256_DIGEST_SIZE 32

/* Loader-visible variables (defined in purgatory.c, set via the symbol table). */
extern struct sha256_region sha256_regions[SHA256_REGIONS];
extern uint8_t sha256_digest[SHA256_DIGEST_SIZE];
extern uint32_t skip_checks;
extern uint8_t panic_kernel;
extern uintptr_t backup_start;
extern uintptr_t backup_src_start;
extern uintptr_t backup_src_size;
extern uint8_t console_serial;
extern uint16_t serial_base;
extern uint32_t serial_baud;
extern uintptr_t cmdline_end;
extern uintptr_t jump_back_entry;

/* The register block and KERNEL_ENTRY / PURGATORY_NAME of this architecture. */
#include "arch.h"

/* sha256.c */
struct sha256_ctx {
	uint32_t state[8];
	uint64_t total;		/* bytes fed so far */
	uint8_t block[64];	/* pending partial block */
};
void sha256_init(struct sha256_ctx *ctx);
void sha256_update(struct sha256_ctx *ctx, const void *data, size_t len);
void sha256_final(struct sha256_ctx *ctx, uint8_t out[SHA256_DIGEST_SIZE]);
void sha256_hash_regions(const struct sha256_region *regions, size_t count,
			 uint8_t out[SHA256_DIGEST_SIZE]);

/* serial.c */
void serial_init(void);
void serial_puts(const char *s);
void serial_put_hex(uint64_t value);
void serial_put_bytes_hex(const uint8_t *p, size_t len);

/* string.c: the compiler may emit calls to these even with -fno-builtin. */
void *memcpy(void *dst, const void *src, size_t len);
void *memmove(void *dst, const void *src, size_t len);
void *memset(void *dst, int c, size_t len);
int memcmp(const void *a, const void *b, size_t len);

/* purgatory.c */
void purgatory_main(void);
void purgatory_halt(void) __attribute__((noreturn));

#endif
