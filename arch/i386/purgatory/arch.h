/*
 * pykexec i386 purgatory: what the shared C code (arch/x86/purgatory) needs
 * to know about this architecture.  The shared code is compiled with -m32, so
 * its word-sized loader variables (backup_*, cmdline_end) are 32 bits here.
 */
#ifndef PYKEXEC_PURGATORY_ARCH_H
#define PYKEXEC_PURGATORY_ARCH_H

#include <stdint.h>

/* entry32_regs, defined in entry32.S; loaded just before jumping to the kernel. */
struct entry32_regs {
	uint32_t eax, ebx, ecx, edx, esi, edi, esp, ebp;
	uint32_t eip;
};
extern struct entry32_regs entry32_regs;

#define KERNEL_ENTRY (entry32_regs.eip)
#define PURGATORY_NAME "pykexec purgatory (i386)"

#endif
