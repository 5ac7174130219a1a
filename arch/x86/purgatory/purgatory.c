/*
 * pykexec x86 purgatory (x86_64 and i386): the C part.
 *
 * The architecture's entry code (arch/<arch>/purgatory/entry*.S) sets up a GDT
 * and a stack and calls purgatory_main(); when it returns, the entry code loads
 * the register block (entry64_regs or entry32_regs) and jumps to the next
 * kernel.  See arch/<arch>/purgatory/README.md for each contract.
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
/* Backup copy destination, source and length (crash loads only); word-sized. */
uintptr_t backup_start LOADER_VAR;
uintptr_t backup_src_start LOADER_VAR;
uintptr_t backup_src_size LOADER_VAR;
/* Serial console: enable flag, I/O port, baud (0 = keep the current rate). */
uint8_t console_serial LOADER_VAR;
uint16_t serial_base LOADER_VAR = 0x3f8;
uint32_t serial_baud LOADER_VAR;
/* Address of the command line's NUL; reserved, not used yet. */
uintptr_t cmdline_end LOADER_VAR;
/* The word on top of the stack at entry (0 unless preserve-context); saved by the entry code. */
uintptr_t jump_back_entry LOADER_VAR;

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

	serial_puts(PURGATORY_NAME ": sha256 digest mismatch, halting\n");
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
		memmove((void *)backup_start, (const void *)backup_src_start,
			(size_t)backup_src_size);
		serial_puts(PURGATORY_NAME ": backup ");
		serial_put_hex(backup_src_size);
		serial_puts(" bytes from ");
		serial_put_hex(backup_src_start);
		serial_puts(" to ");
		serial_put_hex(backup_start);
		serial_puts("\n");
	}

	serial_puts(skip_checks ? PURGATORY_NAME ": checks skipped, jumping to "
				: PURGATORY_NAME ": digest ok, jumping to ");
	serial_put_hex(KERNEL_ENTRY);
	serial_puts("\n");
}
