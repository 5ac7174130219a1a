/*
 * pykexec x86_64 purgatory: shared declarations.
 *
 * Everything here is freestanding: no libc, no headers beyond the compiler's
 * own <stdint.h>/<stddef.h>.  See README.md in this directory for the
 * contract between the loader, the kernel and this code.
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
extern uint64_t backup_start;
extern uint64_t backup_src_start;
extern uint64_t backup_src_size;
extern uint8_t console_serial;
extern uint16_t serial_base;
extern uint32_t serial_baud;
extern uint64_t cmdline_end;
extern uint64_t jump_back_entry;

/* entry64_regs, defined in entry64.S; the C side only reads rip for messages. */
struct entry64_regs {
	uint64_t rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp;
	uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
	uint64_t rip;
};
extern struct entry64_regs entry64_regs;

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
