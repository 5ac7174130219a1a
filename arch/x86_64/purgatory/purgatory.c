/*
 * pykexec x86_64 purgatory: the C part.
 *
 * entry64.S:purgatory_start sets up a GDT and a stack and calls
 * purgatory_main(); when it returns, entry64.S loads entry64_regs and jumps
 * to the next kernel.  See README.md for the full contract.
 *
 * The variables below are written by the loader through the object's symbol
 * table before the purgatory is handed to the kernel.  They are all placed
 * in .data explicitly (and the build also uses -fno-zero-initialized-in-bss)
 * so that their bytes are part of the loaded image: a variable in .bss would
 * be zero-filled by the kernel and could not be preset.
 */
#include "purgatory.h"

#define LOADER_VAR __attribute__((section(".data"), used))

/* Regions to hash, in order; unused slots are {0, 0}. */
struct sha256_region sha256_regions[SHA256_REGIONS] LOADER_VAR;
/* Expected SHA-256 of the concatenated regions. */
uint8_t sha256_digest[SHA256_DIGEST_SIZE] LOADER_VAR;
/* Non-zero: do not verify the digest (kexec-tools -i). 4 bytes wide. */
uint32_t skip_checks LOADER_VAR;
/* Non-zero for a crash (kdump) load: do the backup copy below. */
uint8_t panic_kernel LOADER_VAR;
/* Backup copy destination, source and length (crash loads only). */
uint64_t backup_start LOADER_VAR;
uint64_t backup_src_start LOADER_VAR;
uint64_t backup_src_size LOADER_VAR;
/* Serial console: enable flag, I/O port, baud (0 = keep the current rate). */
uint8_t console_serial LOADER_VAR;
uint16_t serial_base LOADER_VAR = 0x3f8;
uint32_t serial_baud LOADER_VAR;
/* Address of the command line's NUL; reserved, not used yet. */
uint64_t cmdline_end LOADER_VAR;
/* The word on top of the stack at entry (0 unless preserve-context); saved by entry64.S. */
uint64_t jump_back_entry LOADER_VAR;

void purgatory_halt(void)
{
	for (;;)
		__asm__ __volatile__("cli; hlt" : : : "memory");
}

static int verify_digest(void)
{
	uint8_t digest[SHA256_DIGEST_SIZE];

	sha256_hash_regions(sha256_regions, SHA256_REGIONS, digest);
	if (memcmp(digest, sha256_digest, SHA256_DIGEST_SIZE) == 0)
		return 1;

	serial_puts("pykexec purgatory: sha256 digest mismatch, halting\n");
	serial_puts("  expected ");
	serial_put_bytes_hex(sha256_digest, SHA256_DIGEST_SIZE);
	serial_puts("\n  computed ");
	serial_put_bytes_hex(digest, SHA256_DIGEST_SIZE);
	serial_puts("\n");
	return 0;
}

void purgatory_main(void)
{
	if (console_serial)
		serial_init();

	/* Never enter a kernel whose image does not match what was loaded. */
	if (!skip_checks && !verify_digest())
		purgatory_halt();

	/*
	 * Crash load: save the low memory the capture kernel will reuse into
	 * the backup segment.  This happens after verification, so the backup
	 * segment is hashed while still zero.
	 */
	if (panic_kernel && backup_start && backup_src_size) {
		memmove((void *)(uintptr_t)backup_start,
			(const void *)(uintptr_t)backup_src_start,
			(size_t)backup_src_size);
		serial_puts("pykexec purgatory: backup ");
		serial_put_hex(backup_src_size);
		serial_puts(" bytes from ");
		serial_put_hex(backup_src_start);
		serial_puts(" to ");
		serial_put_hex(backup_start);
		serial_puts("\n");
	}

	serial_puts(skip_checks ? "pykexec purgatory: checks skipped, jumping to "
				: "pykexec purgatory: digest ok, jumping to ");
	serial_put_hex(entry64_regs.rip);
	serial_puts("\n");
}
