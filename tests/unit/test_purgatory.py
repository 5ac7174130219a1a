"""The x86_64 purgatory: build, symbol contract, code hygiene, its SHA-256, and a run.

The SHA-256 used by the purgatory (arch/common/purgatory/sha256.c) is compiled for the
build host with a small harness and compared with hashlib.  At the end the purgatory
runs for real under QEMU (TCG, well under a second per boot) between a multiboot stub
that plays relocate_kernel and a fake kernel that reports what it was entered with.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from pykexec.arch.x86 import purgatory_spec
from tests.unit.relocs import X86_RELOCATIONS
from pykexec.purgatory import build as purgatory
from pykexec.purgatory.elfrel import RelocatableObject
from tests.conftest import require

SRC = purgatory.source_dir(purgatory_spec.X86_64)
SHARED = SRC.parent.parent / "common" / "purgatory"   # the C core every purgatory compiles

# name -> st_size; the loader writes these through the symbol table.
LOADER_SYMBOLS = {
    "entry64_regs": 136,
    "sha256_regions": 256,
    "sha256_digest": 32,
    "skip_checks": 4,
    "panic_kernel": 1,
    "backup_start": 8,
    "backup_src_start": 8,
    "backup_src_size": 8,
    "console_serial": 1,
    "serial_base": 2,
    "serial_baud": 4,
    "cmdline_end": 8,
}


def need_toolchain():
    require(shutil.which("gcc") and shutil.which("ld") and shutil.which("nm"),
            "needs gcc and binutils to build the purgatory")


@pytest.fixture(scope="module")
def obj_bytes():
    need_toolchain()
    return purgatory.purgatory_object(purgatory_spec.X86_64)


@pytest.fixture(scope="module")
def elf(obj_bytes):
    return ELFFile(io.BytesIO(obj_bytes))


@pytest.fixture(scope="module")
def ro(obj_bytes):
    return RelocatableObject.from_bytes(obj_bytes, relocations=X86_RELOCATIONS)


def global_symbols(elf):
    symtab = elf.get_section_by_name(".symtab")
    return {s.name: s for s in symtab.iter_symbols() if s["st_info"]["bind"] == "STB_GLOBAL"}


# --- the object --------------------------------------------------------------------

def test_object_kind(elf):
    assert elf["e_type"] == "ET_REL"
    assert elf["e_machine"] == "EM_X86_64"
    assert elf.elfclass == 64 and elf.little_endian


def test_loader_symbol_contract(elf):
    syms = global_symbols(elf)
    for name, size in LOADER_SYMBOLS.items():
        assert name in syms, f"{name} missing or not STB_GLOBAL"
        sym = syms[name]
        assert sym["st_info"]["type"] == "STT_OBJECT", name
        assert sym["st_size"] == size, name
        section = elf.get_section(sym["st_shndx"])
        assert section["sh_type"] == "SHT_PROGBITS", f"{name} in {section.name}"
        assert section["sh_flags"] & 0x2, f"{name} not in an allocated section"
        assert sym["st_value"] + size <= section["sh_size"]
    assert "entry32_regs" not in syms  # the i386 purgatory will carry its own


def test_entry_and_stack(elf, ro):
    syms = global_symbols(elf)
    start = syms["purgatory_start"]
    assert elf.get_section(start["st_shndx"]).name == ".text"
    assert start["st_value"] == 0 == elf["e_entry"]  # first thing in .text
    loaded = ro.layout(0x40000000)
    assert loaded.entry == loaded.symbol_address("purgatory_start") == 0x40000000
    # stack_end tops a stack of at least 4 KiB inside the segment.
    stack_end = loaded.symbol_address("stack_end")
    assert stack_end % 16 == 0
    assert loaded.base + 4096 <= stack_end <= loaded.base + loaded.memsz
    stack = elf.get_section(syms["stack_end"]["st_shndx"])
    assert syms["stack_end"]["st_value"] >= 4096 and stack["sh_flags"] & 0x2


def test_no_undefined_symbols_or_common(elf):
    symtab = elf.get_section_by_name(".symtab")
    for sym in symtab.iter_symbols():
        if sym.name:
            assert sym["st_shndx"] not in ("SHN_UNDEF", "SHN_COMMON"), sym.name


def test_sections_and_relocations(elf, ro):
    names = {s.name for s in elf.iter_sections()}
    assert not names & {".eh_frame", ".rela.eh_frame", ".note.gnu.property", ".got", ".plt"}
    types = set()
    for section in elf.iter_sections():
        if section["sh_type"] in ("SHT_RELA", "SHT_REL"):
            types.update(r["r_info_type"] for r in section.iter_relocations())
    # Only 64-bit absolute and pc-relative relocations: loadable anywhere.
    assert types <= {1, 2, 4}, types  # R_X86_64_64, PC32, PLT32


@pytest.mark.parametrize("base", [0x1000, 0xFFFF_F000 - 0x4000, 0x10_0000_0000, 0xFFFF_FFFF_0000_0000])
def test_loads_anywhere(ro, base):
    loaded = ro.layout(base)
    assert loaded.memsz == ro.memsz and loaded.bufsz == ro.bufsz


def test_defaults(ro):
    loaded = ro.layout(0x100000)
    assert loaded.get_int("serial_base") == 0x3F8
    for name in LOADER_SYMBOLS:
        if name != "serial_base":
            assert loaded.get_symbol(name) == bytes(LOADER_SYMBOLS[name]), name


def test_code_uses_no_simd_and_no_tls(obj_bytes, tmp_path):
    require(shutil.which("objdump"), "needs objdump")
    path = tmp_path / "p.o"
    path.write_bytes(obj_bytes)
    text = subprocess.run(["objdump", "-d", str(path)], check=True, capture_output=True, text=True).stdout
    for bad in ("%xmm", "%ymm", "%zmm", "%mm", "%st", "%fs:", "%gs:", "endbr64"):
        assert bad not in text, bad


def test_size_is_small(ro):
    # Guard against accidental bloat (e.g. .eh_frame, large tables).
    assert ro.bufsz < 0x2000
    assert ro.memsz <= ro.bufsz + 0x2000 + 64


def test_reproducible_build(tmp_path, obj_bytes):
    need_toolchain()
    out = purgatory.build_purgatory(purgatory_spec.X86_64, tmp_path / "again.o")
    assert out.read_bytes() == obj_bytes


@pytest.mark.parametrize("spec", [purgatory_spec.X86_64, purgatory_spec.I386], ids=lambda s: s.arch)
def test_the_build_record_loads_as_the_parsed_object(tmp_path, spec):
    """A load reads the build's record instead of parsing the object (cold start): every
    byte, address and symbol of the laid-out object is what pyelftools' parse gives."""
    need_toolchain()
    out = purgatory.build_purgatory(spec, tmp_path / f"{spec.arch}.o")
    data = out.read_bytes()
    record = json.loads(purgatory.record_path(out).read_text())
    parsed = RelocatableObject.from_bytes(data, relocations=X86_RELOCATIONS)
    recorded = RelocatableObject.from_record(data, record, relocations=X86_RELOCATIONS)
    assert recorded is not None
    assert (recorded.bufsz, recorded.memsz, recorded.required_alignment) == \
        (parsed.bufsz, parsed.memsz, parsed.required_alignment)
    assert list(recorded.symbols()) == list(parsed.symbols())
    for base in (0x3000 * recorded.required_alignment, 0x7F000 * recorded.required_alignment):
        mine, theirs = recorded.layout(base), parsed.layout(base)
        assert (mine.data, mine.entry, mine.sections) == (theirs.data, theirs.entry, theirs.sections)
        assert mine.data != parsed.layout(base * 2).data      # relocated: the base shows


def test_a_record_of_another_object_is_not_used(tmp_path):
    need_toolchain()
    out = purgatory.build_purgatory(purgatory_spec.X86_64, tmp_path / "x86_64.o")
    record = json.loads(purgatory.record_path(out).read_text())
    data = bytearray(out.read_bytes())
    data[-1] ^= 1                                   # a rebuilt or replaced object
    assert RelocatableObject.from_record(bytes(data), record, relocations=X86_RELOCATIONS) is None
    i386 = tuple(r for r in X86_RELOCATIONS if "EM_386" in r.machines)
    assert RelocatableObject.from_record(out.read_bytes(), record, relocations=i386) is None


def test_missing_compiler_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/gcc")
    with pytest.raises(purgatory.PurgatoryBuildError, match="gcc"):
        purgatory.build_purgatory(purgatory_spec.X86_64, tmp_path / "x.o")
    assert not (tmp_path / "x.o").exists()


def test_a_purgatory_without_sources_or_object_is_refused():
    spec = purgatory.PurgatorySpec(arch="sparc", sources=("entry.S",), cflags=())
    with pytest.raises(purgatory.PurgatoryBuildError, match="sparc purgatory is not installed"):
        purgatory.purgatory_object(spec)


def test_the_build_finds_every_declared_purgatory():
    """setup.py builds what the architectures declare (pykexec/arch/*/purgatory_spec.py),
    each with sources present in the tree."""
    specs = purgatory.declared_specs()
    assert [s.arch for s in specs] == ["arm64", "x86_64", "i386"]
    for spec in specs:
        src = purgatory.source_dir(spec)
        assert all((src / name).is_file() for name in spec.sources), spec


# --- SHA-256 against hashlib -----------------------------------------------------------

HARNESS = r"""
/* Host test driver for sha256.c: hash stdin, streamed or through a region table. */
#include <stdio.h>
#include <stdlib.h>
#include "core.h"

static void print(const uint8_t *d)
{
	for (int i = 0; i < 32; i++)
		printf("%02x", d[i]);
	printf("\n");
}

int main(int argc, char **argv)
{
	size_t cap = 1 << 16, len = 0, n;
	uint8_t *buf = malloc(cap), out[32];

	while ((n = fread(buf + len, 1, cap - len, stdin)) > 0) {
		len += n;
		if (len == cap)
			buf = realloc(buf, cap *= 2);
	}
	if (argc >= 3 && argv[1][0] == 's') {
		/* "stream STEP": sha256_update in pieces of STEP bytes. */
		size_t step = strtoul(argv[2], NULL, 0), off = 0;
		struct sha256_ctx ctx;

		sha256_init(&ctx);
		while (off < len) {
			size_t take = len - off < step ? len - off : step;
			sha256_update(&ctx, buf + off, take);
			off += take;
		}
		sha256_final(&ctx, out);
	} else {
		/* "regions L0 L1 ...": consecutive slices of stdin as up to 16 regions. */
		struct sha256_region regions[SHA256_REGIONS] = {{0, 0}};
		size_t off = 0;

		for (int i = 2; i < argc && i - 2 < SHA256_REGIONS; i++) {
			size_t l = strtoul(argv[i], NULL, 0);
			regions[i - 2].start = l ? (uint64_t)(uintptr_t)(buf + off) : 0;
			regions[i - 2].len = l;
			off += l;
		}
		sha256_hash_regions(regions, SHA256_REGIONS, out);
	}
	print(out);
	return 0;
}
"""


@pytest.fixture(scope="module")
def sha_harness(tmp_path_factory):
    require(shutil.which("gcc"), "needs gcc")
    tmp = tmp_path_factory.mktemp("sha")
    (tmp / "harness.c").write_text(HARNESS)
    exe = tmp / "sha256-host"
    subprocess.run(
        ["gcc", "-std=gnu11", "-O2", "-Wall", "-Wextra", "-fno-builtin", f"-I{SHARED}",
         "-o", str(exe), str(tmp / "harness.c"), str(SHARED / "sha256.c")],
        check=True, capture_output=True, text=True,
    )
    return exe


def run_harness(exe, data: bytes, *args) -> str:
    proc = subprocess.run([str(exe), *map(str, args)], input=data, capture_output=True, check=True)
    return proc.stdout.decode().strip()


LENGTHS = [0, 1, 2, 3, 31, 32, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 191, 192, 1000, 4095,
           4096, 4097, 65536 + 7, 1 << 20]


@pytest.mark.parametrize("length", LENGTHS)
def test_sha256_matches_hashlib(sha_harness, length):
    rng = random.Random(length)
    data = rng.randbytes(length)
    expected = hashlib.sha256(data).hexdigest()
    assert run_harness(sha_harness, data, "stream", 1 << 30) == expected
    for step in (1, 7, 63, 64, 65, 1000):
        if step < 200 and length > 70000:
            continue  # byte-at-a-time over a MiB is slow through the harness only
        assert run_harness(sha_harness, data, "stream", step) == expected, step


def test_sha256_random_lengths(sha_harness):
    rng = random.Random(2024)
    for _ in range(40):
        data = rng.randbytes(rng.randrange(0, 3000))
        step = rng.randrange(1, 200)
        assert run_harness(sha_harness, data, "stream", step) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("lengths", [
    [],
    [0, 0, 0],
    [1],
    [100, 0, 55, 0, 64, 1],
    [4096] * 16,
    [3, 61, 0, 200, 1 << 16, 0, 17],
])
def test_sha256_regions(sha_harness, lengths):
    data = random.Random(len(lengths)).randbytes(sum(lengths))
    assert run_harness(sha_harness, data, "regions", *lengths) == hashlib.sha256(data).hexdigest()


# --- building as part of the package --------------------------------------------------

def test_installed_object_is_current(obj_bytes):
    """purgatory_object() returns the in-package object, rebuilt when sources change."""
    path = purgatory.installed_path(purgatory_spec.X86_64)
    assert path.is_file() and path.read_bytes() == obj_bytes
    if SRC.is_dir():
        newest = max(p.stat().st_mtime for p in SRC.iterdir())
        assert path.stat().st_mtime >= newest


# --- running it: QEMU, a multiboot stub and a fake kernel ------------------------------
#
# A flat multiboot image holds: a stub that enters long mode with an identity map and
# jumps to purgatory_start the way relocate_kernel does (64-bit, interrupts off, 0 on top
# of the stack, but its own GDT with code at 0x08); the purgatory laid out by elfrel; and
# a fake "kernel" that prints the registers, CS/DS/SS and RFLAGS it was entered with,
# checks the backup copy (r8 = source, r9 = copy, r10 = length) and exits QEMU through
# isa-debug-exit.  The digest covers the fake kernel and a data blob.

STUB_S = r"""
	.code32
	.text
	.globl start32
mb_header:				/* multiboot v1, "a.out kludge": flat image */
	.long 0x1BADB002
	.long 0x00010000
	.long -(0x1BADB002 + 0x00010000)
	.long mb_header			/* header_addr */
	.long mb_header			/* load_addr */
	.long LOAD_END			/* load_end_addr */
	.long LOAD_END			/* bss_end_addr */
	.long start32			/* entry_addr */
start32:
	cli
	movl $0x7f000, %esp
	movl $0x70000, %edi		/* PML4 0x70000, PDPT 0x71000, PD 0x72000 */
	xorl %eax, %eax
	movl $(3 * 4096 / 4), %ecx
	rep stosl
	movl $0x71003, 0x70000
	movl $0x72003, 0x71000
	movl $0x72000, %edi
	movl $0x83, %eax		/* 2 MiB pages: the first GiB, identity */
	movl $512, %ecx
1:	movl %eax, (%edi)
	addl $0x200000, %eax
	addl $8, %edi
	loop 1b
	movl %cr4, %eax
	orl $0x20, %eax			/* PAE */
	movl %eax, %cr4
	movl $0x70000, %eax
	movl %eax, %cr3
	movl $0xC0000080, %ecx		/* EFER.LME */
	rdmsr
	orl $0x100, %eax
	wrmsr
	movl %cr0, %eax
	orl $0x80000001, %eax		/* PG | PE */
	movl %eax, %cr0
	lgdt gdt_ptr
	ljmp $0x08, $start64
	.code64
start64:
	movl $0x10, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movq $0x7f000, %rsp
	pushq $0			/* ordinary kexec: 0 on top of the stack */
	movabsq $ENTRY, %rax
	jmp *%rax
	.balign 8
gdt:
	.quad 0
	.quad 0x00af9a000000ffff	/* 0x08: code (not the purgatory's 0x10) */
	.quad 0x00cf92000000ffff	/* 0x10: data */
gdt_ptr:
	.word gdt_ptr - gdt - 1
	.long gdt
"""

FAKE_KERNEL_S = r"""
	.code64
	.text
	.globl _start
_start:
	movq %rax, save+0(%rip)
	movq %rbx, save+8(%rip)
	movq %rcx, save+16(%rip)
	movq %rdx, save+24(%rip)
	movq %rsi, save+32(%rip)
	movq %rdi, save+40(%rip)
	movq %rsp, save+48(%rip)
	movq %rbp, save+56(%rip)
	movq %r8, save+64(%rip)
	movq %r9, save+72(%rip)
	movq %r10, save+80(%rip)
	movq %r11, save+88(%rip)
	movq %r12, save+96(%rip)
	movq %r13, save+104(%rip)
	movq %r14, save+112(%rip)
	movq %r15, save+120(%rip)
	xorl %eax, %eax
	movw %cs, %ax
	movq %rax, save+128(%rip)
	movw %ds, %ax
	movq %rax, save+136(%rip)
	movw %ss, %ax
	movq %rax, save+144(%rip)
	pushfq
	popq %rax
	movq %rax, save+152(%rip)

	leaq msg_regs(%rip), %rsi
	call puts
	leaq save(%rip), %r12
	xorl %ebx, %ebx
1:	movq (%r12,%rbx,8), %rax
	call put_hex
	incq %rbx
	cmpq $20, %rbx
	jb 1b
	movb $'\n', %al
	call putc

	movq save+64(%rip), %rsi
	movq save+72(%rip), %rdi
	movq save+80(%rip), %rcx
	leaq msg_none(%rip), %rax
	testq %rcx, %rcx
	jz 2f
	repe cmpsb
	leaq msg_same(%rip), %rax
	je 2f
	leaq msg_diff(%rip), %rax
2:	movq %rax, %rsi
	call puts
	movb $0x10, %al			/* QEMU exits with (0x10 << 1) | 1 = 33 */
	outb %al, $0xf4
3:	hlt
	jmp 3b

putc:
	pushq %rdx
	movw $0x3f8, %dx
	outb %al, %dx
	popq %rdx
	ret

puts:
	lodsb
	testb %al, %al
	jz 1f
	call putc
	jmp puts
1:	ret

put_hex:
	movq %rax, %rdx
	movb $' ', %al
	call putc
	movl $16, %ecx
1:	rolq $4, %rdx
	movb %dl, %al
	andb $15, %al
	cmpb $10, %al
	jb 2f
	addb $('a' - 10 - '0'), %al
2:	addb $'0', %al
	call putc
	loop 1b
	ret

	.data
msg_regs: .asciz "FAKEKERNEL regs"
msg_none: .asciz "FAKEKERNEL backup none\n"
msg_same: .asciz "FAKEKERNEL backup same\n"
msg_diff: .asciz "FAKEKERNEL backup diff\n"
	.balign 8
save:	.fill 20, 8, 0
"""

IMG_BASE, PURG_BASE, KERN_BASE, DATA_BASE = 0x100000, 0x200000, 0x300000, 0x310000
BACKUP_SRC, BACKUP_DST, IMG_END = 0x320000, 0x330000, 0x331000
DEBUG_EXIT_STATUS = 33
REG_NAMES = ("rax rbx rcx rdx rsi rdi rsp rbp r8 r9 r10 r11 r12 r13 r14 r15").split()


def flat_binary(tmp, name, source, base, *defsyms):
    src, obj, out = tmp / f"{name}.S", tmp / f"{name}.o", tmp / f"{name}.bin"
    src.write_text(source)
    args = [a for d in defsyms for a in ("--defsym", d)]
    subprocess.run(["as", "--64", *args, "-o", str(obj), str(src)], check=True, capture_output=True)
    subprocess.run(["ld", "-m", "elf_x86_64", "-N", f"-Ttext={base:#x}", "--oformat", "binary",
                    "-e", "0", "-o", str(out), str(obj)], check=True, capture_output=True)
    return out.read_bytes()


def run_in_qemu(tmp, ro, *, base=PURG_BASE, corrupt=False, timeout=20, **symbols):
    """Boot stub + purgatory + fake kernel; return (exit status or None if hung, output, regs)."""
    kernel = flat_binary(tmp, "kernel", FAKE_KERNEL_S, KERN_BASE)
    data = random.Random(5).randbytes(5000)
    pattern = random.Random(6).randbytes(4096)
    loaded = ro.layout(base)
    assert base + loaded.memsz <= KERN_BASE
    regions = [(KERN_BASE, len(kernel)), (0, 0), (DATA_BASE, len(data))]
    table = b"".join(s.to_bytes(8, "little") + n.to_bytes(8, "little") for s, n in regions)
    regs = [0x1111111111111111, 0, 0x3333, 0x4444, 0x12345000, 0x6666,
            loaded.symbol_address("stack_end"), 0x8888, BACKUP_SRC, BACKUP_DST, 4096,
            0xBBBB, 0xCCCC, 0xDDDD, 0xEEEE, 0xFFFFFFFFFFFFFFFF, KERN_BASE]
    values = {
        "sha256_regions": table.ljust(256, b"\0"),
        "sha256_digest": hashlib.sha256(kernel + data).digest(),
        "entry64_regs": b"".join(r.to_bytes(8, "little") for r in regs),
        "console_serial": 1,
    }
    values.update(symbols)
    loaded = loaded.set_symbols(values)
    stub = flat_binary(tmp, "stub", STUB_S, IMG_BASE, f"LOAD_END={IMG_END:#x}", f"ENTRY={loaded.entry:#x}")
    image = bytearray(IMG_END - IMG_BASE)
    for addr, blob in ((IMG_BASE, stub), (base, loaded.data), (KERN_BASE, kernel),
                       (DATA_BASE, data), (BACKUP_SRC, pattern)):
        image[addr - IMG_BASE:addr - IMG_BASE + len(blob)] = blob
    if corrupt:  # one bit of the hashed data changes after the digest was taken
        image[DATA_BASE - IMG_BASE + 1234] ^= 0x40
    (tmp / "image.bin").write_bytes(image)
    proc = subprocess.Popen(
        ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", "64", "-display", "none",
         "-no-reboot", "-serial", "stdio", "-monitor", "none", "-nodefaults",
         "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel", str(tmp / "image.bin")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
        status = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        status = None
    return status, out.decode(errors="replace"), regs


def kernel_saw(out):
    line = next(l for l in out.splitlines() if l.startswith("FAKEKERNEL regs"))
    values = [int(v, 16) for v in line.split()[2:]]
    return dict(zip(REG_NAMES + ["cs", "ds", "ss", "rflags"], values))


@pytest.fixture(scope="module")
def qemu(ro):
    require(shutil.which("qemu-system-x86_64"), "needs qemu-system-x86_64")
    require(shutil.which("as") and shutil.which("ld"), "needs binutils")
    return ro


@pytest.mark.parametrize("base", [PURG_BASE, 0x2FD020])
def test_qemu_crash_load_reaches_kernel(qemu, tmp_path, base):
    status, out, regs = run_in_qemu(
        tmp_path, qemu, base=base, serial_baud=115200, panic_kernel=1, backup_start=BACKUP_DST,
        backup_src_start=BACKUP_SRC, backup_src_size=4096)
    assert status == DEBUG_EXIT_STATUS, out
    assert "pykexec purgatory: backup 0x1000 bytes from 0x320000 to 0x330000" in out
    assert f"pykexec purgatory: digest ok, jumping to {KERN_BASE:#x}" in out
    saw = kernel_saw(out)
    assert [saw[name] for name in REG_NAMES] == regs[:16]  # rsp is stack_end (regs[6])
    assert (saw["cs"], saw["ds"], saw["ss"]) == (0x10, 0x18, 0x18)
    assert not saw["rflags"] & 0x200  # interrupts still off
    assert "FAKEKERNEL backup same" in out


def test_qemu_digest_mismatch_halts(qemu, tmp_path):
    status, out, _ = run_in_qemu(tmp_path, qemu, corrupt=True, timeout=4)
    assert status is None, out  # still running: halted, not rebooted, not in the kernel
    assert "sha256 digest mismatch, halting" in out
    assert "FAKEKERNEL" not in out
    expected = next(l for l in out.splitlines() if "expected" in l).split()[-1]
    computed = next(l for l in out.splitlines() if "computed" in l).split()[-1]
    assert len(expected) == len(computed) == 64 and expected != computed


def test_qemu_skip_checks_and_no_backup(qemu, tmp_path):
    # A corrupted image still boots with skip_checks; without panic_kernel no copy is made.
    status, out, _ = run_in_qemu(tmp_path, qemu, corrupt=True, skip_checks=1, panic_kernel=0,
                                 backup_start=BACKUP_DST, backup_src_start=BACKUP_SRC,
                                 backup_src_size=4096)
    assert status == DEBUG_EXIT_STATUS, out
    assert "checks skipped, jumping to 0x300000" in out
    assert "backup 0x" not in out
    assert "FAKEKERNEL backup diff" in out


def test_qemu_silent_without_console(qemu, tmp_path):
    status, out, _ = run_in_qemu(tmp_path, qemu, console_serial=0)
    assert status == DEBUG_EXIT_STATUS, out
    assert "pykexec purgatory" not in out
    assert "FAKEKERNEL regs" in out
