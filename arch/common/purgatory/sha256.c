/*
 * SHA-256 (FIPS 180-4), written for the pykexec purgatory.
 *
 * Small and portable rather than fast: a rolling 16-word message schedule
 * keeps the stack use low, and only general-purpose integer operations are
 * used.  This file is also compiled for the build host by the unit tests
 * (tests/unit/test_purgatory.py), so it must not depend on anything the
 * purgatory alone provides.
 */
#include "core.h"

static const uint32_t sha256_k[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
	0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
	0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
	0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
	0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
	0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
	0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
	0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
	0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t ror32(uint32_t x, unsigned int n)
{
	return (x >> n) | (x << (32 - n));
}

static uint32_t load_be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	       ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static void store_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Fold one 64-byte block into the chaining state. */
static void sha256_compress(uint32_t state[8], const uint8_t *block)
{
	uint32_t w[16];
	uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
	uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
	unsigned int t;

	for (t = 0; t < 64; t++) {
		uint32_t wt, t1, t2;

		if (t < 16) {
			wt = load_be32(block + 4 * t);
		} else {
			/* w[t] = s1(w[t-2]) + w[t-7] + s0(w[t-15]) + w[t-16] */
			uint32_t x2 = w[(t - 2) & 15], x15 = w[(t - 15) & 15];
			uint32_t s0 = ror32(x15, 7) ^ ror32(x15, 18) ^ (x15 >> 3);
			uint32_t s1 = ror32(x2, 17) ^ ror32(x2, 19) ^ (x2 >> 10);

			wt = s1 + w[(t - 7) & 15] + s0 + w[t & 15];
		}
		w[t & 15] = wt;

		t1 = h + (ror32(e, 6) ^ ror32(e, 11) ^ ror32(e, 25)) +
		     ((e & f) ^ (~e & g)) + sha256_k[t] + wt;
		t2 = (ror32(a, 2) ^ ror32(a, 13) ^ ror32(a, 22)) +
		     ((a & b) ^ (a & c) ^ (b & c));
		h = g;
		g = f;
		f = e;
		e = d + t1;
		d = c;
		c = b;
		b = a;
		a = t1 + t2;
	}

	state[0] += a;
	state[1] += b;
	state[2] += c;
	state[3] += d;
	state[4] += e;
	state[5] += f;
	state[6] += g;
	state[7] += h;
}

void sha256_init(struct sha256_ctx *ctx)
{
	/* First 32 bits of the fractional parts of the square roots of the first 8 primes. */
	ctx->state[0] = 0x6a09e667;
	ctx->state[1] = 0xbb67ae85;
	ctx->state[2] = 0x3c6ef372;
	ctx->state[3] = 0xa54ff53a;
	ctx->state[4] = 0x510e527f;
	ctx->state[5] = 0x9b05688c;
	ctx->state[6] = 0x1f83d9ab;
	ctx->state[7] = 0x5be0cd19;
	ctx->total = 0;
}

void sha256_update(struct sha256_ctx *ctx, const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t used = (size_t)(ctx->total & 63);

	ctx->total += len;

	/* Top up a partial block first. */
	if (used) {
		size_t take = 64 - used;

		if (take > len)
			take = len;
		memcpy(ctx->block + used, p, take);
		p += take;
		len -= take;
		if (used + take < 64)
			return;
		sha256_compress(ctx->state, ctx->block);
	}

	/* Whole blocks straight from the input. */
	while (len >= 64) {
		sha256_compress(ctx->state, p);
		p += 64;
		len -= 64;
	}

	if (len)
		memcpy(ctx->block, p, len);
}

void sha256_final(struct sha256_ctx *ctx, uint8_t out[SHA256_DIGEST_SIZE])
{
	uint64_t bits = ctx->total * 8;
	size_t used = (size_t)(ctx->total & 63);
	unsigned int i;

	/* Append 0x80, zero-pad to 56 mod 64, then the bit length big-endian. */
	ctx->block[used++] = 0x80;
	if (used > 56) {
		memset(ctx->block + used, 0, 64 - used);
		sha256_compress(ctx->state, ctx->block);
		used = 0;
	}
	memset(ctx->block + used, 0, 56 - used);
	store_be32(ctx->block + 56, (uint32_t)(bits >> 32));
	store_be32(ctx->block + 60, (uint32_t)bits);
	sha256_compress(ctx->state, ctx->block);

	for (i = 0; i < 8; i++)
		store_be32(out + 4 * i, ctx->state[i]);
}

/*
 * Hash the concatenation of the regions, in table order.  A region of length
 * 0 contributes nothing (unused table slots are {0, 0}).  Addresses are used
 * as pointers: the purgatory runs with an identity mapping.
 */
void sha256_hash_regions(const struct sha256_region *regions, size_t count,
			 uint8_t out[SHA256_DIGEST_SIZE])
{
	struct sha256_ctx ctx;
	size_t i;

	sha256_init(&ctx);
	for (i = 0; i < count; i++) {
		if (regions[i].len == 0)
			continue;
		sha256_update(&ctx, (const void *)(uintptr_t)regions[i].start,
			      (size_t)regions[i].len);
	}
	sha256_final(&ctx, out);
}
