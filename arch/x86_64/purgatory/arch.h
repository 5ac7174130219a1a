/*
 * pykexec x86_64 purgatory: what the shared C code (arch/x86/purgatory) needs
 * to know about this architecture.
 */
#ifndef PYKEXEC_PURGATORY_ARCH_H
#define PYKEXEC_PURGATORY_ARCH_H

#include <stdint.h>

/* entry64_regs, defined in entry64.S; loaded just before jumping to the kernel. */
struct entry64_regs {
	uint64_t rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp;
	uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
	uint64_t rip;
};
extern struct entry64_regs entry64_regs;

#define KERNEL_ENTRY (entry64_regs.rip)
#define PURGATORY_NAME "pykexec purgatory"

#endif
