/*
 * pykexec i386 purgatory: entry and exit (GNU as, AT&T syntax, 32-bit).
 *
 * The kernel's relocate_kernel (i386) jumps to purgatory_start after copying
 * the segments: 32-bit protected mode, paging off, interrupts off, flat
 * segments of the old kernel's GDT (which lives in memory the capture kernel
 * may reuse, so we install our own at once).  We save the word on top of the
 * kernel's stack, move to our own stack, run purgatory_main() and enter the
 * next kernel through its 32-bit boot protocol entry: every general-purpose
 * register, esp and eip from entry32_regs, CS = 0x10, DS/ES/SS/FS/GS = 0x18.
 *
 * Every address here is an absolute 32-bit one (R_386_32) or pc-relative
 * (R_386_PC32), so the object can sit at any 32-byte aligned address below
 * 4 GiB.
 */

#define BOOT_CS 0x10	/* flat 32-bit code: the boot protocol's __BOOT_CS */
#define BOOT_DS 0x18	/* flat data: the boot protocol's __BOOT_DS */

/* Offsets into entry32_regs (9 x 4 bytes). */
#define R_EAX 0
#define R_EBX 4
#define R_ECX 8
#define R_EDX 12
#define R_ESI 16
#define R_EDI 20
#define R_ESP 24
#define R_EBP 28
#define R_EIP 32
#define ENTRY32_REGS_SIZE 36

	.code32
	.text

	.globl	purgatory_start
	.type	purgatory_start, @function
purgatory_start:
	cli
	cld

	/* The word the kernel left on top of its stack (0 unless preserving context). */
	movl	(%esp), %eax
	movl	%eax, jump_back_entry

	lgdt	purgatory_gdt_ptr
	ljmp	$BOOT_CS, $.Lnew_cs
.Lnew_cs:
	movl	$BOOT_DS, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	%eax, %fs
	movl	%eax, %gs
	movl	$purgatory_stack_end, %esp

	call	purgatory_main

	/*
	 * Enter the next kernel.  esp is loaded like any other register and the
	 * jump goes through memory, so no register is needed for it.
	 */
	.globl	entry32
entry32:
	movl	entry32_regs+R_EAX, %eax
	movl	entry32_regs+R_EBX, %ebx
	movl	entry32_regs+R_ECX, %ecx
	movl	entry32_regs+R_EDX, %edx
	movl	entry32_regs+R_ESI, %esi
	movl	entry32_regs+R_EDI, %edi
	movl	entry32_regs+R_ESP, %esp
	movl	entry32_regs+R_EBP, %ebp
	jmp	*entry32_regs+R_EIP
	.size	purgatory_start, . - purgatory_start

	.data

	/* Registers for the next kernel, written by the loader. */
	.balign	4
	.globl	entry32_regs
	.type	entry32_regs, @object
entry32_regs:
	.fill	ENTRY32_REGS_SIZE, 1, 0
	.size	entry32_regs, . - entry32_regs

	/* Flat GDT: two null slots, then 32-bit code at 0x10 and data at 0x18. */
	.balign	16
purgatory_gdt:
	.quad	0
	.quad	0
	.quad	0x00cf9a000000ffff	/* 0x10: code, 4 GiB, D=1, DPL 0, present */
	.quad	0x00cf92000000ffff	/* 0x18: data, 4 GiB, writable, present */
purgatory_gdt_end:

	.balign	4
	.word	0	/* pad so the base below is 4-byte aligned */
purgatory_gdt_ptr:
	.word	purgatory_gdt_end - purgatory_gdt - 1
	.long	purgatory_gdt

	.bss

	/* Our own stack while purgatory_main runs. */
	.balign	16
purgatory_stack:
	.skip	4096
purgatory_stack_end:

	/* A stack the loader may hand to the next kernel as its initial esp. */
	.balign	16
	.globl	stack_end
	.type	stack_end, @object
kernel_stack:
	.skip	4096
stack_end:
	.size	stack_end, 0

	.section .note.GNU-stack, "", @progbits
