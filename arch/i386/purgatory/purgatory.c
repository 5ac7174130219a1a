/*
 * pykexec i386 purgatory: the C part.
 *
 * entry32.S:purgatory_start installs a GDT and a stack and calls
 * purgatory_main(); when it returns, entry32.S loads entry32_regs and jumps
 * to the next kernel.  See README.md for the contract.
 *
 * The variables below are written by the loader through the object's symbol
 * table.  They are placed in .data explicitly so their bytes are part of the
 * loaded image (a .bss variable would be zero-filled by the kernel).
 */
#include "purgatory.h"

#define LOADER_VAR __attribute__((section(".data"), used))

struct sha256_region sha256_regions[SHA256_REGIONS] LOADER_VAR;
uint8_t sha256_digest[SHA256_DIGEST_SIZE] LOADER_VAR;
uint32_t skip_checks LOADER_VAR;
uint8_t panic_kernel LOADER_VAR;
uint32_t backup_start LOADER_VAR;
uint32_t backup_src_start LOADER_VAR;
uint32_t backup_src_size LOADER_VAR;
uint8_t console_serial LOADER_VAR;
uint16_t serial_base LOADER_VAR = 0x3f8;
uint32_t serial_baud LOADER_VAR;
uint32_t cmdline_end LOADER_VAR;
uint32_t jump_back_entry LOADER_VAR;

void purgatory_halt(void)
{
	for (;;)
		__asm__ __volatile__("cli; hlt" : : : "memory");
}

static int digest_matches(void)
{
	uint8_t digest[SHA256_DIGEST_SIZE];

	sha256_hash_regions(sha256_regions, SHA256_REGIONS, digest);
	if (memcmp(digest, sha256_digest, SHA256_DIGEST_SIZE) == 0)
		return 1;
	serial_puts("pykexec purgatory (i386): sha256 digest mismatch, halting\n");
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
	if (!skip_checks && !digest_matches())
		purgatory_halt();

	/*
	 * Crash load: the capture kernel will use the low 640 KiB of RAM as
	 * its own, and the ELF core header points the dump of that range at
	 * the backup segment.  Copy it there now, after the check, so the
	 * backup segment was hashed while it was still zero.
	 */
	if (panic_kernel && backup_start && backup_src_size) {
		memmove((void *)(uintptr_t)backup_start,
			(const void *)(uintptr_t)backup_src_start, backup_src_size);
		serial_puts("pykexec purgatory (i386): backup ");
		serial_put_hex(backup_src_size);
		serial_puts(" bytes from ");
		serial_put_hex(backup_src_start);
		serial_puts(" to ");
		serial_put_hex(backup_start);
		serial_puts("\n");
	}

	serial_puts(skip_checks ? "pykexec purgatory (i386): checks skipped, jumping to "
				: "pykexec purgatory (i386): digest ok, jumping to ");
	serial_put_hex(entry32_regs.eip);
	serial_puts("\n");
}
