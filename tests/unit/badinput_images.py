"""Bad input for the loaders' own inputs: the files (kernel, initrd), the kernel images
(bzImage setup header, ELF program headers), the address options and the command line.
Vocabulary in tests/unit/badinput.py.

Exit statuses, from Debian's kexec 2.0.25 on the same faults (tests/bed/oracle.py) or, where
kexec-tools has no such check, from its status for the same class of fault:
* 1 for what its kexec_load reader and placement die() on: "Cannot open `F'", "Cannot read F"
  (a directory, /dev/null, a 0-byte file, `--initrd=`), "locate_hole failed" (no room),
  "Command line overflow", and a bad option value (usage);
* 255 for what a loader refuses ("Cannot load F": command line over cmdline_size, a
  non-relocatable capture kernel) or cannot recognise ("Cannot determine the file type"),
  and for a file kexec_file_load cannot open (the default -a and -s open the files first);
* 253 for -s when the kernel's kexec_file_load cannot take the image.
"""

from __future__ import annotations

import gzip
import lzma
import os
import shutil
import socket
import struct
import zlib

from tests.bed.fakekernel import FakeKernel, bzimage_bytes
from tests.bed.fakekernel32 import I386_BZIMAGE, vmlinux32_bytes
from tests.unit.badinput import bad, elf_kernel, put

HERE = os.path.dirname(os.path.abspath(__file__))
I386_SNAPSHOT = os.path.join(os.path.dirname(HERE), "snapshots", "qemu-i386-1g-2cpu-at16m")
GIB = 1 << 30

# Setup-header offsets (Documentation/arch/x86/boot.rst), written here by hand so that the
# cases do not depend on pykexec's own struct.
SETUP_SECTS, SYSSIZE, KERNEL_ALIGNMENT, RELOCATABLE = 0x1F1, 0x1F4, 0x230, 0x234
CMDLINE_SIZE, PREF_ADDRESS, INIT_SIZE = 0x238, 0x258, 0x260


def bzimage(w, name, kernel=FakeKernel(), cut=0, **fields):
    """A fake bzImage with setup-header fields overwritten (name -> value) and `cut` bytes
    removed from its end."""
    data = bytearray(bzimage_bytes(kernel))
    formats = {SETUP_SECTS: "<B", SYSSIZE: "<I", KERNEL_ALIGNMENT: "<I", RELOCATABLE: "<B",
               CMDLINE_SIZE: "<I", PREF_ADDRESS: "<Q", INIT_SIZE: "<I"}
    for offset, value in fields.values():
        struct.pack_into(formats[offset], data, offset, value)
    return put(w, name, bytes(data[:len(data) - cut]))


def elf64(w, name, phdrs, entry=0x1000000, size=0x3000):
    """An x86_64 ELF executable with the given (p_offset, p_paddr, p_filesz, p_memsz)
    PT_LOADs, `size` bytes long."""
    ehdr = struct.pack("<4sBBBBB7xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, 2, 62, 1, entry,
                       64, 0, 0, 64, 56, len(phdrs), 0, 0, 0)
    table = b"".join(struct.pack("<IIQQQQQQ", 1, 7, off, (0xFFFFFFFF80000000 + paddr) % (1 << 64), paddr,
                                 filesz, memsz, 0x200000) for off, paddr, filesz, memsz in phdrs)
    body = ehdr + table
    return put(w, name, body + b"\x90" * (size - len(body)))


def elf32(w, name, phdrs, entry=0x1000000, size=0x3000):
    """An i386 ELF executable with (p_offset, p_paddr, p_filesz, p_memsz) PT_LOADs."""
    ehdr = struct.pack("<4sBBBBB7xHHIIIIIHHHHHH", b"\x7fELF", 1, 1, 1, 0, 0, 2, 3, 1, entry,
                       52, 0, 0, 52, 32, len(phdrs), 0, 0, 0)
    table = b"".join(struct.pack("<8I", 1, off, (0xC0000000 + paddr) % (1 << 32), paddr, filesz, memsz, 7,
                                 0x1000) for off, paddr, filesz, memsz in phdrs)
    body = ehdr + table
    return put(w, name, body + b"\x90" * (size - len(body)))


def i386_machine(w):
    """Make the case's machine the i386 guest (crash region 16-80 MiB)."""
    shutil.rmtree(w["machine"])
    shutil.copytree(I386_SNAPSHOT, w["machine"])


def crash_region(w):
    """The machine's crash region (start, end inclusive), read from its /proc/iomem."""
    with open(os.path.join(w["machine"], "proc/iomem")) as f:
        for line in f:
            if "Crash kernel" in line:
                start, end = line.split(":")[0].strip().split("-")
                return int(start, 16), int(end, 16)
    raise AssertionError("the good machine has no crash region")


def sparse(w, name, size):
    path = w["dir"] / name
    with open(path, "wb") as f:
        f.write(b"\x1f\x8b" if name.startswith("gz") else b"x")
        f.truncate(size)
    return str(path)


# --- the input reader: what a file is ------------------------------------------------------

@bad(1)
def case_kernel_is_fifo(w):
    os.mkfifo(w["dir"] / "kfifo")
    return ["-p", str(w["dir"] / "kfifo")], "kfifo"


@bad(1)
def case_initrd_is_fifo(w):
    os.mkfifo(w["dir"] / "ififo")
    return ["-p", w["kernel"], f"--initrd={w['dir'] / 'ififo'}"], "ififo"


@bad(1)
def case_kernel_is_fifo_with_c(w):
    os.mkfifo(w["dir"] / "kfifo")
    return ["-c", "-p", str(w["dir"] / "kfifo")], "kfifo"


@bad(1)
def case_initrd_is_fifo_with_s(w):
    os.mkfifo(w["dir"] / "ififo")
    return ["-s", "-p", w["kernel"], f"--initrd={w['dir'] / 'ififo'}"], "ififo"


@bad(1)
def case_kernel_is_dev_zero(w):
    return ["-p", "/dev/zero"], "/dev/zero"


@bad(1)
def case_initrd_is_dev_zero(w):
    return ["-p", w["kernel"], "--initrd=/dev/zero"], "/dev/zero"


@bad(1)
def case_initrd_is_dev_null_with_c(w):
    return ["-c", "-p", w["kernel"], "--initrd=/dev/null"], "/dev/null"


@bad(1)
def case_kernel_is_directory(w):
    os.mkdir(w["dir"] / "kdir")
    return ["-p", str(w["dir"] / "kdir")], "kdir"


@bad(1)
def case_initrd_is_socket(w):
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(w["dir"] / "isock"))
    w.setdefault("keep", []).append(sock)
    return ["-p", w["kernel"], f"--initrd={w['dir'] / 'isock'}"], "isock"


@bad(1)
def case_empty_initrd(w):
    return ["-p", w["kernel"], f"--initrd={put(w, 'empty-initrd', b'')}"], "empty-initrd"


@bad(1)
def case_empty_initrd_with_c(w):
    return ["-c", "-p", w["kernel"], f"--initrd={put(w, 'empty-initrd', b'')}"], "empty-initrd"


@bad(1)
def case_initrd_option_empty(w):
    return ["-p", w["kernel"], "--initrd="], "initrd"


@bad(1)
def case_initrd_option_empty_with_c(w):
    return ["-c", "-p", w["kernel"], "--initrd="], "initrd"


@bad(1)
def case_empty_kernel(w):
    return ["-p", put(w, "empty-kernel", b"")], "empty-kernel"


@bad(1)
def case_missing_kernel_with_c(w):
    return ["-c", "-p", str(w["dir"] / "nope")], "nope"


@bad(1)
def case_missing_initrd_with_c(w):
    return ["-c", "-p", w["kernel"], f"--initrd={w['dir'] / 'no-initrd'}"], "no-initrd"


@bad(255)
def case_missing_initrd_with_s(w):
    return ["-s", "-p", w["kernel"], f"--initrd={w['dir'] / 'no-initrd'}"], "no-initrd"


@bad(255)
def case_dangling_kernel_symlink(w):
    os.symlink(w["dir"] / "gone", w["dir"] / "klink")
    return ["-p", str(w["dir"] / "klink")], "klink"


# --- the input reader: how big a file is --------------------------------------------------

@bad(1)
def case_sparse_2g_kernel(w):
    return ["-p", sparse(w, "sparse-kernel", 2 * GIB)], "sparse-kernel"


@bad(1)
def case_sparse_2g_initrd(w):
    return ["-p", w["kernel"], f"--initrd={sparse(w, 'sparse-initrd', 2 * GIB)}"], "sparse-initrd"


@bad(1)
def case_initrd_larger_than_crash_region(w):
    return ["-p", w["kernel"], f"--initrd={sparse(w, 'big-initrd', 257 << 20)}"], "big-initrd"


@bad(1)
def case_initrd_larger_than_mem_window(w):
    start, _ = crash_region(w)
    return ["-p", w["kernel"], f"--initrd={sparse(w, 'mid-initrd', 64 << 20)}",
            f"--mem-max={start + (32 << 20) - 1:#x}"], "mid-initrd"


@bad(1, modes=("dry-run",))
def case_gzip_bomb_with_c(w):
    # 64 MiB of zeros in a ~64 KiB gzip file; the window holds 16 MiB.
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    data = b"".join(comp.compress(block) for _ in range(64)) + comp.flush()
    _, last = crash_region(w)
    return ["-c", "-p", put(w, "bomb.gz", data), f"--mem-min={last + 1 - (16 << 20):#x}"], \
        "bomb.gz"


@bad(255)
def case_damaged_gzip_kernel_with_c(w):
    data = gzip.compress(bzimage_bytes(FakeKernel()))
    return ["-c", "-p", put(w, "damaged.gz", data[:len(data) // 2])], "damaged.gz"


@bad(255)
def case_xz_of_not_a_kernel_with_c(w):
    return ["-c", "-p", put(w, "text.xz", lzma.compress(b"not a kernel\n" * 200))], "text.xz"


# --- the bzImage setup header -------------------------------------------------------------

@bad(255)
def case_bzimage_truncated_payload(w):
    return ["-p", bzimage(w, "cut-bz", cut=4096)], "syssize"


@bad(255)
def case_bzimage_setup_sects_255(w):
    return ["-p", bzimage(w, "sects-bz", sects=(SETUP_SECTS, 255))], "sects-bz"


@bad(255)
def case_bzimage_syssize_zero(w):
    return ["-p", bzimage(w, "sys0-bz", sys=(SYSSIZE, 0))], "syssize=0x0"


@bad(255)
def case_bzimage_syssize_past_eof(w):
    return ["-p", bzimage(w, "sysbig-bz", sys=(SYSSIZE, 0x100000))], "sysbig-bz"


@bad(255)
def case_bzimage_kernel_alignment_zero(w):
    return ["-p", bzimage(w, "al0-bz", al=(KERNEL_ALIGNMENT, 0))], "kernel_alignment=0x0"


@bad(255)
def case_bzimage_kernel_alignment_not_power_of_two(w):
    return ["-p", bzimage(w, "al3-bz", al=(KERNEL_ALIGNMENT, 0x300000))], "kernel_alignment=0x300000"


@bad(255)
def case_bzimage_init_size_zero(w):
    return ["-p", bzimage(w, "init0-bz", init=(INIT_SIZE, 0))], "init_size=0x0"


@bad(255)
def case_bzimage_init_size_below_payload(w):
    return ["-p", bzimage(w, "init-small-bz", init=(INIT_SIZE, 0x1000))], "init-small-bz"


@bad(255)
def case_bzimage_pref_address_unaligned(w):
    return ["-p", bzimage(w, "pref-bz", pref=(PREF_ADDRESS, 0x1000123))], "pref_address=0x1000123"


@bad(255)
def case_bzimage_not_relocatable_capture_kernel(w):
    return ["-p", bzimage(w, "fixed-bz", rel=(RELOCATABLE, 0))], "relocatable_kernel=0"


@bad(255)
def case_bzimage_no_64bit_entry(w):
    return ["-p", bzimage(w, "no64-bz", FakeKernel(xloadflags=0))], "no64-bz"


@bad(255)
def case_bzimage_cmdline_size_below_user_line(w):
    return ["-p", bzimage(w, "cl-bz", cl=(CMDLINE_SIZE, 10))], "cl-bz"


@bad(255)
def case_bzimage_cmdline_size_cuts_elfcorehdr(w):
    # The user's 21 bytes fit; with acpi_rsdp= and elfcorehdr= added they would not.
    return ["-p", bzimage(w, "cl30-bz", cl=(CMDLINE_SIZE, 30))], "cmdline_size"


@bad(1)
def case_final_command_line_overflow(w):
    return ["-p", bzimage(w, "cl4k-bz", cl=(CMDLINE_SIZE, 4095)), "--append=" + "y" * 2030], \
        "Command line overflow"


@bad(1)
def case_bzimage_init_size_larger_than_window(w):
    return ["-p", bzimage(w, "init-huge-bz", init=(INIT_SIZE, 0x10000000))], "init-huge-bz"


@bad(255)
def case_gzip_kernel_decompresses_to_bad_header(w):
    # -c reads a gzip kernel decompressed; its header is then checked like any other.
    data = bytearray(bzimage_bytes(FakeKernel()))
    struct.pack_into("<I", data, KERNEL_ALIGNMENT, 0)
    return ["-c", "-p", put(w, "al0.gz", gzip.compress(bytes(data)))], "kernel_alignment=0x0"


# --- ELF kernels (x86_64) -----------------------------------------------------------------

@bad(255)
def case_elf_only_load_has_no_memory(w):
    return ["-p", elf64(w, "memsz0", [(0x1000, 0x1000000, 0, 0)]), "--args-linux"], "memsz0"


@bad(255)
def case_elf_filesz_above_memsz(w):
    return ["-p", elf64(w, "filesz", [(0x1000, 0x1000000, 0x2000, 0x1000)]), "--args-linux"], \
        "p_filesz 0x2000"


@bad(255)
def case_elf_load_past_end_of_file(w):
    return ["-p", elf64(w, "short-elf", [(0x1000, 0x1000000, 0x8000, 0x8000)]), "--args-linux"], \
        "short-elf"


@bad(255)
def case_elf_entry_outside_every_load(w):
    return ["-p", elf64(w, "entry-elf", [(0x1000, 0x1000000, 0x2000, 0x2000)], entry=0x5000000),
            "--args-linux"], "e_entry 0x5000000"


@bad(255)
def case_elf_load_at_top_of_64bit_space(w):
    top = (1 << 64) - 0x1000
    return ["-p", elf64(w, "top-elf", [(0x1000, top, 0x1000, 0x2000)], entry=top),
            "--args-linux"], "top-elf"


@bad(255)
def case_elf_loads_overlap(w):
    return ["-p", elf64(w, "overlap-elf", [(0x1000, 0x1000000, 0x1000, 0x3000),
                                           (0x2000, 0x1002000, 0x1000, 0x1000)]),
            "--args-linux"], "overlap"


@bad(255)
def case_elf_damaged_program_header_offset(w):
    data = bytearray(elf_kernel())
    struct.pack_into("<Q", data, 32, 0x7FFFFFFF)      # e_phoff far past the end
    return ["-p", put(w, "phoff-elf", bytes(data)), "--args-linux"], "phoff-elf"


@bad(1)
def case_elf_too_big_for_crash_region(w):
    return ["-p", elf64(w, "huge-elf", [(0x1000, 0x1000000, 0x1000, 0x20000000)]),
            "--args-linux"], "huge-elf"


@bad(253, modes=("dry-run",))
def case_file_syscall_with_elf_kernel(w):
    start, _ = crash_region(w)
    return ["-s", "-p", elf64(w, "vmlinux-s", [(0x1000, start, 0x2000, 0x2000)], entry=start),
            "--args-linux"], "ENOEXEC"


# --- i386 (the i386 guest's machine) ------------------------------------------------------

@bad(255)
def case_i386_bzimage_kernel_alignment_zero(w):
    i386_machine(w)
    return ["-p", bzimage(w, "al0-686", I386_BZIMAGE, al=(KERNEL_ALIGNMENT, 0))], \
        "kernel_alignment=0x0"


@bad(255)
def case_i386_bzimage_truncated(w):
    i386_machine(w)
    return ["-p", bzimage(w, "cut-686", I386_BZIMAGE, cut=8192)], "cut-686"


@bad(255)
def case_i386_bzimage_cmdline_size_cuts_elfcorehdr(w):
    i386_machine(w)
    return ["-p", bzimage(w, "cl-686", I386_BZIMAGE, cl=(CMDLINE_SIZE, 30))], "cmdline_size"


@bad(255)
def case_i386_elf_filesz_above_memsz(w):
    i386_machine(w)
    return ["-p", elf32(w, "filesz32", [(0x1000, 0x1000000, 0x2000, 0x1000)]), "--args-linux"], \
        "filesz32"


@bad(255)
def case_i386_elf_entry_outside_every_load(w):
    i386_machine(w)
    return ["-p", elf32(w, "entry32", [(0x1000, 0x1000000, 0x1000, 0x1000)], entry=0x3000000),
            "--args-linux"], "e_entry 0x3000000"


@bad(255)
def case_i386_elf_load_wraps_32bit_space(w):
    i386_machine(w)
    return ["-p", elf32(w, "wrap32", [(0x1000, 0xFFFFF000, 0x1000, 0x3000)], entry=0xFFFFF000),
            "--args-linux"], "wrap32"


@bad(255)
def case_i386_elf_only_load_has_no_memory(w):
    i386_machine(w)
    return ["-p", elf32(w, "memsz0-32", [(0x1000, 0x1000000, 0, 0)]), "--args-linux"], \
        "memsz0-32"


@bad(1)
def case_i386_sparse_initrd(w):
    i386_machine(w)
    return ["-p", bzimage(w, "ok-686", I386_BZIMAGE),
            f"--initrd={sparse(w, 'sparse-686', 2 * GIB)}"], "sparse-686"


@bad(255)
def case_i386_entry_above_4g(w):
    i386_machine(w)
    return ["-p", bzimage(w, "ok-686", I386_BZIMAGE), "--entry=0x100000000"], "--entry"


# --- address options ----------------------------------------------------------------------

@bad(1)
def case_entry_negative(w):
    return ["-p", w["kernel"], "--entry=-5"], "--entry=-5"


@bad(1)
def case_entry_72_bits(w):
    return ["-p", w["kernel"], "--entry=0xffffffffffffffffff"], "--entry=0xffffffffffffffffff"


@bad(1)
def case_mem_min_negative(w):
    # strtoul, as kexec-tools: -1 is ULONG_MAX, which leaves no room
    return ["-p", w["kernel"], "--mem-min=-1"], "--mem-min"


@bad(255)
def case_entry_outside_crash_region(w):
    return ["-p", w["kernel"], "--entry=0x1000"], "--entry=0x1000"


@bad(255)
def case_entry_in_no_segment_of_a_normal_load(w):
    # found by the CI fuzz run: plain `kexec K --entry=0x1000` planned a jump into nothing
    return [w["kernel"], "--entry=0x1000"], "--entry=0x1000"
