/*
 * pykexec arm64 purgatory: declarations shared by its C files.
 *
 * The loader writes the variables below through the object's symbol table;
 * purgatory.c defines them in .data so their bytes are part of the segment.
 */
#ifndef PYKEXEC_PURGATORY_ARCH_H
#define PYKEXEC_PURGATORY_ARCH_H

/* SHA-256 over regions and the memory routines: shared by every architecture. */
#include "../../common/purgatory/core.h"

#define PURGATORY_NAME "pykexec purgatory"

/* Loader-visible variables (purgatory.c). */
extern struct sha256_region sha256_regions[SHA256_REGIONS];
extern uint8_t sha256_digest[SHA256_DIGEST_SIZE];
extern uint32_t skip_checks;
extern uint64_t kernel_entry;
extern uint64_t dtb_addr;
extern uint64_t uart_base;

/* pl011.c: polled output, silent while uart_base is 0. */
void uart_puts(const char *s);
void uart_put_hex(uint64_t value);
void uart_put_bytes_hex(const uint8_t *p, size_t len);

/* purgatory.c */
void purgatory_main(void);
void purgatory_halt(void) __attribute__((noreturn));

#endif
