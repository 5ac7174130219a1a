/*
 * pykexec i386 purgatory: shared declarations.
 *
 * Freestanding: only the compiler's own <stdint.h>/<stddef.h>.  The SHA-256,
 * serial and string code is the x86_64 purgatory's (portable C, compiled
 * here with -m32); this header declares what the i386 files add or change:
 * 32-bit backup variables and entry32_regs.  See README.md.
 */
#ifndef PYKEXEC_PURGATORY_I386_H
#define PYKEXEC_PURGATORY_I386_H

#include <stddef.h>
#include <stdint.h>

/* One region to hash: start and length (64-bit fields, as on x86_64). */
struct sha256_region {
	uint64_t start;
	uint64_t len;
};

#define SHA256_REGIONS 16
#define SHA256_DIGEST_SIZE 32

extern struct sha256_region sha256_regions[SHA256_REGIONS];
extern uint8_t sha256_digest[SHA256_DIGEST_SIZE];
extern uint32_t skip_checks;
extern uint8_t panic_kernel;
/* Backup copy of the low 640 KiB: 32-bit addresses and size on i386. */
extern uint32_t backup_start;
extern uint32_t backup_src_start;
extern uint32_t backup_src_size;
extern uint8_t console_serial;
extern uint16_t serial_base;
extern uint32_t serial_baud;
extern uint32_t cmdline_end;
extern uint32_t jump_back_entry;

/* entry32_regs, defined in entry32.S; the C side only reads eip for messages. */
struct entry32_regs {
	uint32_t eax, ebx, ecx, edx, esi, edi, esp, ebp;
	uint32_t eip;
};
extern struct entry32_regs entry32_regs;

/* sha256.c (shared with x86_64) */
void sha256_hash_regions(const struct sha256_region *regions, size_t count,
			 uint8_t out[SHA256_DIGEST_SIZE]);

/* serial.c (shared with x86_64) */
void serial_init(void);
void serial_puts(const char *s);
void serial_put_hex(uint64_t value);
void serial_put_bytes_hex(const uint8_t *p, size_t len);

/* string.c (shared with x86_64) */
void *memmove(void *dst, const void *src, size_t len);
int memcmp(const void *a, const void *b, size_t len);

/* purgatory.c */
void purgatory_main(void);
void purgatory_halt(void) __attribute__((noreturn));

#endif
