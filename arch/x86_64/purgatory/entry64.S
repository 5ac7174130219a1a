/*
 * pykexec x86_64 purgatory: entry and exit (GNU as, AT&T syntax).
 *
 * purgatory_start is where the kernel's relocate_kernel jumps after copying
 * the segments: 64-bit mode, identity-mapped, interrupts off, on a stack
 * whose top word is 0 for an ordinary kexec (a return address when the
 * kernel preserves context).  We load our own GDT and segments, move to our
 * own stack, run purgatory_main() and then enter the next kernel with every
 * general-purpose register, rsp and rip taken from entry64_regs.
 *
 * Only rip-relative and absolute-64 references are used, so the object can
 * be placed anywhere in the 64-bit physical address space.
 */

#define BOOT_CS 0x10	/* 64-bit code: the boot protocol's __BOOT_CS */
#define BOOT_DS 0x18	/* flat data: the boot protocol's __BOOT_DS */

/* Offsets into entry64_regs (17 x 8 bytes). */
#define R_RAX 0
#define R_RBX 8
#define R_RCX 16
#define R_RDX 24
#define R_RSI 32
#define R_RDI 40
#define R_RSP 48
#define R_RBP 56
#define R_R8 64
#define R_R9 72
#define R_R10 80
#define R_R11 88
#define R_R12 96
#define R_R13 104
#define R_R14 112
#define R_R15 120
#define R_RIP 128
#define ENTRY64_REGS_SIZE 136

	.code64
	.text

	.globl	purgatory_start
	.type	purgatory_start, @function
purgatory_start:
	cli
	cld

	/* Remember the word the kernel left on top of its stack. */
	movq	(%rsp), %rax
	movq	%rax, jump_back_entry(%rip)

	lgdt	purgatory_gdt_ptr(%rip)
	movl	$BOOT_DS, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	%eax, %fs
	movl	%eax, %gs
	leaq	purgatory_stack_end(%rip), %rsp

	/* Reload CS from the new GDT with a far return. */
	pushq	$BOOT_CS
	leaq	.Lnew_cs(%rip), %rax
	pushq	%rax
	lretq
.Lnew_cs:
	call	purgatory_main

	/*
	 * Enter the next kernel.  rsp is loaded like any other register; no
	 * stack is used after this point.
	 */
	.globl	entry64
entry64:
	movq	entry64_regs+R_RAX(%rip), %rax
	movq	entry64_regs+R_RBX(%rip), %rbx
	movq	entry64_regs+R_RCX(%rip), %rcx
	movq	entry64_regs+R_RDX(%rip), %rdx
	movq	entry64_regs+R_RSI(%rip), %rsi
	movq	entry64_regs+R_RDI(%rip), %rdi
	movq	entry64_regs+R_RSP(%rip), %rsp
	movq	entry64_regs+R_RBP(%rip), %rbp
	movq	entry64_regs+R_R8(%rip), %r8
	movq	entry64_regs+R_R9(%rip), %r9
	movq	entry64_regs+R_R10(%rip), %r10
	movq	entry64_regs+R_R11(%rip), %r11
	movq	entry64_regs+R_R12(%rip), %r12
	movq	entry64_regs+R_R13(%rip), %r13
	movq	entry64_regs+R_R14(%rip), %r14
	movq	entry64_regs+R_R15(%rip), %r15
	jmp	*entry64_regs+R_RIP(%rip)
	.size	purgatory_start, . - purgatory_start

	.data

	/* Registers for the next kernel, written by the loader. */
	.balign	8
	.globl	entry64_regs
	.type	entry64_regs, @object
entry64_regs:
	.fill	ENTRY64_REGS_SIZE, 1, 0
	.size	entry64_regs, . - entry64_regs

	/* Flat GDT: two null slots, then 64-bit code at 0x10 and data at 0x18. */
	.balign	16
purgatory_gdt:
	.quad	0
	.quad	0
	.quad	0x00af9a000000ffff	/* 0x10: code, L=1, DPL 0, present */
	.quad	0x00cf92000000ffff	/* 0x18: data, 4 GiB, writable, present */
purgatory_gdt_end:

	.balign	16
	.word	0	/* pad so the base below is 8-byte aligned */
	.word	0
	.word	0
purgatory_gdt_ptr:
	.word	purgatory_gdt_end - purgatory_gdt - 1
	.quad	purgatory_gdt

	.bss

	/* Our own stack while purgatory_main runs. */
	.balign	16
purgatory_stack:
	.skip	4096
purgatory_stack_end:

	/* A stack the loader may hand to the next kernel as its initial rsp. */
	.balign	16
	.globl	stack_end
	.type	stack_end, @object
kernel_stack:
	.skip	4096
stack_end:
	.size	stack_end, 0

	.section .note.GNU-stack, "", @progbits
