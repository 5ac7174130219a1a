/*
 * pykexec arm64 purgatory: entry and exit (GNU as).
 *
 * The kernel's relocate_kernel branches to purgatory_start with the MMU and
 * D-cache off, at EL2 or EL1, after copying the segments.  We mask
 * interrupts, move to our own stack, run purgatory_main() (the digest check)
 * and enter the next kernel as Documentation/arch/arm64/booting.rst asks:
 * x0 = physical address of the device tree, x1 = x2 = x3 = 0, MMU off.
 *
 * Only pc-relative addressing (adrp + :lo12:, bl) is used, so the object can
 * be placed at any suitably aligned address, above 4 GiB too.
 */
	.text

	.globl	purgatory_start
	.type	purgatory_start, %function
purgatory_start:
	msr	daifset, #0xf
	adrp	x9, purgatory_stack_end
	add	x9, x9, :lo12:purgatory_stack_end
	mov	sp, x9
	bl	purgatory_main

	/* purgatory_main returned: the segments are intact. */
	adrp	x9, kernel_entry
	ldr	x4, [x9, :lo12:kernel_entry]
	adrp	x9, dtb_addr
	ldr	x0, [x9, :lo12:dtb_addr]
	mov	x1, xzr
	mov	x2, xzr
	mov	x3, xzr
	br	x4
	.size	purgatory_start, . - purgatory_start

	.bss

	/* Our own stack while purgatory_main runs (16-byte aligned, as sp must be). */
	.balign	16
purgatory_stack:
	.skip	4096
purgatory_stack_end:

	.section .note.GNU-stack, "", %progbits
