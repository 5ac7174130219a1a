/*
 * pykexec purgatory: the part every architecture's purgatory shares.
 *
 * SHA-256 over a table of regions (sha256.c) and the memory routines gcc may
 * call (string.c).  Freestanding: nothing beyond the compiler's own
 * <stdint.h>/<stddef.h>, and nothing architecture-specific, so each
 * architecture compiles these files with its own flags.
 */
#ifndef PYKEXEC_PURGATORY_CORE_H
#define PYKEXEC_PURGATORY_CORE_H

#include <stddef.h>
#include <stdint.h>

/* One region to hash: physical (identity-mapped or MMU-off) start address and length. */
struct sha256_region {
	uint64_t start;
	uint64_t len;
};

#define SHA256_REGIONS 16
#define SHA256_DIGEST_SIZE 32

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

/* string.c: the compiler may emit calls to these even with -fno-builtin. */
void *memcpy(void *dst, const void *src, size_t len);
void *memmove(void *dst, const void *src, size_t len);
void *memset(void *dst, int c, size_t len);
int memcmp(const void *a, const void *b, size_t len);

#endif
