/*
 * pykexec arm64 purgatory: the C part.
 *
 * entry.S calls purgatory_main() on its own stack with the MMU off; when it
 * returns, entry.S enters the next kernel at kernel_entry with x0 = dtb_addr.
 * purgatory_main() returns only if every other segment still has the digest
 * the loader computed (or the loader asked to skip the check).
 *
 * All loader variables are placed in .data explicitly (and the build uses
 * -fno-zero-initialized-in-bss), so their bytes are part of the loaded image.
 */
#include "arch.h"

#define LOADER_VAR __attribute__((section(".data"), used))

/* Regions to hash, in order; unused slots are {0, 0}. */
struct sha256_region sha256_regions[SHA256_REGIONS] LOADER_VAR;
/* Expected SHA-256 of the concatenated regions. */
uint8_t sha256_digest[SHA256_DIGEST_SIZE] LOADER_VAR;
/* Non-zero: do not verify the digest (kexec-tools -i). 4 bytes wide. */
uint32_t skip_checks LOADER_VAR;
/* Where the next kernel is entered (the Image's first instruction). */
uint64_t kernel_entry LOADER_VAR;
/* The device tree's physical address, passed in x0 (booting.rst). */
uint64_t dtb_addr LOADER_VAR;
/* MMIO base of a PL011 UART for messages; 0 = no output. */
uint64_t uart_base LOADER_VAR;

void purgatory_halt(void)
{
	/* Interrupts stay masked: nothing but a reset leaves this loop. */
	for (;;)
		__asm__ __volatile__("wfi" : : : "memory");
}

static int digest_matches(void)
{
	uint8_t digest[SHA256_DIGEST_SIZE];

	sha256_hash_regions(sha256_regions, SHA256_REGIONS, digest);
	if (memcmp(digest, sha256_digest, SHA256_DIGEST_SIZE) == 0)
		return 1;

	uart_puts(PURGATORY_NAME ": sha256 mismatch, halting\n  expected ");
	uart_put_bytes_hex(sha256_digest, SHA256_DIGEST_SIZE);
	uart_puts("\n  computed ");
	uart_put_bytes_hex(digest, SHA256_DIGEST_SIZE);
	uart_puts("\n");
	return 0;
}

void purgatory_main(void)
{
	/* Never enter a kernel whose segments differ from what was loaded. */
	if (skip_checks) {
		uart_puts(PURGATORY_NAME ": checks skipped\n");
	} else {
		if (!digest_matches())
			purgatory_halt();
		uart_puts(PURGATORY_NAME ": sha256 ok\n");
	}
	uart_puts(PURGATORY_NAME ": entering ");
	uart_put_hex(kernel_entry);
	uart_puts(" with x0 = ");
	uart_put_hex(dtb_addr);
	uart_puts("\n");
}
