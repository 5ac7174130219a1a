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

/* SHA-256 over regions and the memory routines: shared by every architecture. */
#include "../../common/purgatory/core.h"

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

/* serial.c */
void serial_init(void);
void serial_puts(const char *s);
void serial_put_hex(uint64_t value);
void serial_put_bytes_hex(const uint8_t *p, size_t len);

/* purgatory.c */
void purgatory_main(void);
void purgatory_halt(void) __attribute__((noreturn));

#endif
