"""Bad machine data (the world's snapshot of qemu_like_1g, one file damaged per case).

Statuses are Debian kexec 2.0.25's for the same fault, checked with the oracle
(tests/bed/oracle.py) where it has the check: it dies with 1 on a machine file it cannot
parse ("Cannot parse .../crash_notes", ".../vmcoreinfo", "Cannot open /proc/iomem") and its
load fails with 255 on kcore and the kernel text mapping. Where kexec-tools has no check
(it loads a plan from overlapping iomem ranges, crash notes outside RAM, "0-" as the CPU
list), pykexec refuses with the status of the same class: a damaged machine file, 1.
"""

from __future__ import annotations

import os
import struct

from tests.unit.badinput import bad, rewrite

CPU0 = "sys/devices/system/cpu/cpu0"


def iomem(w):
    return open(os.path.join(w["machine"], "proc/iomem")).read()


def damage_iomem(w, old, new):
    text = iomem(w)
    assert old in text, old
    rewrite(w, "proc/iomem", text.replace(old, new, 1))
    return ["-p", w["kernel"]], "proc/iomem"


def special(w, rel, kind):
    """Replace machine file `rel` by a FIFO or a symlink to /dev/zero."""
    path = os.path.join(w["machine"], rel)
    if os.path.lexists(path):
        os.remove(path)
    if kind == "fifo":
        os.mkfifo(path)
    else:
        os.symlink("/dev/zero", path)
    return path


# -- /proc/iomem: the kernel's resource tree is sorted, disjoint and nested --------------------

@bad(1)
def case_iomem_top_level_ranges_overlap(w):
    return damage_iomem(w, "3ffe0000-3fffffff : Reserved", "3f000000-3fffffff : Reserved")


@bad(1)
def case_iomem_top_level_ranges_unsorted(w):
    text = iomem(w)
    rewrite(w, "proc/iomem", text + "00100000-001fffff : Reserved\n")
    return ["-p", w["kernel"]], "proc/iomem"


@bad(1)
def case_iomem_duplicate_system_ram(w):
    line = "00100000-3ffdffff : System RAM\n"
    return damage_iomem(w, "3ffe0000-3fffffff : Reserved\n",
                        "3ffe0000-3fffffff : Reserved\n" + line)


@bad(1)
def case_iomem_child_outside_its_parent(w):
    return damage_iomem(w, "  000f0000-000fffff : System ROM", "  000f0000-0010ffff : System ROM")


@bad(1)
def case_iomem_children_overlap(w):
    return damage_iomem(w, "  2e000000-3dffffff : Crash kernel", "  0b500000-3dffffff : Crash kernel")


@bad(1)
def case_crash_region_at_top_level(w):
    text = iomem(w).replace("  2e000000-3dffffff : Crash kernel\n", "")
    text = text.replace("c0000000-febfffff", "40000000-4fffffff : Crash kernel\nc0000000-febfffff")
    rewrite(w, "proc/iomem", text)
    return ["-p", w["kernel"]], "proc/iomem"


@bad(1)
def case_crash_region_under_reserved(w):
    text = iomem(w).replace("  2e000000-3dffffff : Crash kernel\n", "")
    text = text.replace("feffc000-feffffff : Reserved\n",
                        "feffc000-feffffff : Reserved\n  feffc000-feffcfff : Crash kernel\n")
    rewrite(w, "proc/iomem", text)
    return ["-p", w["kernel"]], "proc/iomem"


@bad(1)
def case_crash_region_larger_than_ram(w):
    return damage_iomem(w, "  2e000000-3dffffff : Crash kernel", "  2e000000-7fffffff : Crash kernel")


@bad(1)
def case_iomem_address_above_64_bits(w):
    return damage_iomem(w, "fffc0000-ffffffff : Reserved", "fffc0000-1ffffffffffffffff : Reserved")


@bad(1)
def case_iomem_end_below_start(w):
    return damage_iomem(w, "3ffe0000-3fffffff : Reserved", "3fffffff-3ffe0000 : Reserved")


@bad(1)
def case_iomem_odd_indentation(w):
    return damage_iomem(w, "  0a600000-0ac97fff : Kernel rodata", "   0a600000-0ac97fff : Kernel rodata")


@bad(1)
def case_iomem_all_addresses_zero(w):
    import re
    rewrite(w, "proc/iomem", re.sub(r"[0-9a-f]+-[0-9a-f]+ :", "00000000-00000000 :", iomem(w)))
    return ["-p", w["kernel"]], "proc/iomem"


@bad(1)
def case_iomem_not_text(w):
    rewrite(w, "proc/iomem", data=b"\x7fELF\x02\x01\x01" + bytes(range(256)) * 4)
    return ["-p", w["kernel"]], "proc/iomem"


@bad(1)
def case_iomem_is_a_fifo(w):
    special(w, "proc/iomem", "fifo")
    return ["-p", w["kernel"]], "proc/iomem"


@bad(1)
def case_iomem_is_dev_zero(w):
    special(w, "proc/iomem", "zero")
    return ["-p", w["kernel"]], "proc/iomem"


@bad(1)
def case_iomem_missing(w):
    os.remove(os.path.join(w["machine"], "proc/iomem"))
    return ["-p", w["kernel"]], "proc/iomem"


@bad(1)
def case_iomem_empty(w):
    rewrite(w, "proc/iomem", "")
    return ["-p", w["kernel"]], "iomem"


# -- CPU lists: strict, bounded, never silently fewer CPUs -------------------------------------

@bad(1)
def case_possible_open_range(w):
    rewrite(w, "sys/devices/system/cpu/possible", "0-\n")
    return ["-p", w["kernel"]], "cpu/possible"


@bad(1)
def case_possible_four_billion_cpus(w):
    rewrite(w, "sys/devices/system/cpu/possible", "0-4294967295\n")
    return ["-p", w["kernel"]], "cpu/possible"


@bad(1)
def case_possible_above_the_kernel_limit(w):
    rewrite(w, "sys/devices/system/cpu/possible", "0-1,8192\n")
    return ["-p", w["kernel"]], "cpu/possible"


@bad(1)
def case_possible_backwards(w):
    rewrite(w, "sys/devices/system/cpu/possible", "3-1\n")
    return ["-p", w["kernel"]], "cpu/possible"


@bad(1)
def case_possible_not_a_list(w):
    rewrite(w, "sys/devices/system/cpu/possible", "all\n")
    return ["-p", w["kernel"]], "cpu/possible"


@bad(1)
def case_possible_negative(w):
    rewrite(w, "sys/devices/system/cpu/possible", "-1\n")
    return ["-p", w["kernel"]], "cpu/possible"


@bad(1)
def case_possible_with_spaces(w):
    rewrite(w, "sys/devices/system/cpu/possible", "0 - 1\n")
    return ["-p", w["kernel"]], "cpu/possible"


@bad(1)
def case_possible_trailing_comma(w):
    rewrite(w, "sys/devices/system/cpu/possible", "0-1,\n")
    return ["-p", w["kernel"]], "cpu/possible"


# -- per-CPU crash notes -----------------------------------------------------------------------

@bad(1)
def case_crash_notes_outside_ram(w):
    rewrite(w, f"{CPU0}/crash_notes", "fee00000\n")
    return ["-p", w["kernel"]], "cpu0/crash_notes"


@bad(1)
def case_crash_notes_beyond_64_bits(w):
    rewrite(w, f"{CPU0}/crash_notes", "fffffffffffffff0\n")
    return ["-p", w["kernel"]], "cpu0/crash_notes"


@bad(1)
def case_crash_notes_empty(w):
    rewrite(w, f"{CPU0}/crash_notes", "")
    return ["-p", w["kernel"]], "cpu0/crash_notes"


@bad(1)
def case_crash_notes_size_zero(w):
    rewrite(w, f"{CPU0}/crash_notes_size", "0\n")
    return ["-p", w["kernel"]], "cpu0/crash_notes"


@bad(1)
def case_crash_notes_size_huge(w):
    rewrite(w, f"{CPU0}/crash_notes_size", "99999999999\n")
    return ["-p", w["kernel"]], "cpu0/crash_notes"


@bad(1)
def case_crash_notes_size_not_decimal(w):
    rewrite(w, f"{CPU0}/crash_notes_size", "0x170\n")
    return ["-p", w["kernel"]], "cpu0/crash_notes_size"


@bad(1)
def case_crash_notes_is_a_fifo(w):
    special(w, f"{CPU0}/crash_notes", "fifo")
    return ["-p", w["kernel"]], "cpu0/crash_notes"


# -- vmcoreinfo --------------------------------------------------------------------------------

@bad(1)
def case_vmcoreinfo_outside_ram(w):
    rewrite(w, "sys/kernel/vmcoreinfo", "fed00000 1024\n")
    return ["-p", w["kernel"]], "vmcoreinfo"


@bad(1)
def case_vmcoreinfo_size_zero(w):
    rewrite(w, "sys/kernel/vmcoreinfo", "0b000000 0\n")
    return ["-p", w["kernel"]], "vmcoreinfo"


@bad(1)
def case_vmcoreinfo_size_huge(w):
    rewrite(w, "sys/kernel/vmcoreinfo", "01000000 10000000\n")
    return ["-p", w["kernel"]], "vmcoreinfo"


@bad(1)
def case_vmcoreinfo_wraps_around(w):
    rewrite(w, "sys/kernel/vmcoreinfo", "ffffffffffffff00 1000\n")
    return ["-p", w["kernel"]], "vmcoreinfo"


@bad(1)
def case_vmcoreinfo_one_field(w):
    rewrite(w, "sys/kernel/vmcoreinfo", "0b000000\n")
    return ["-p", w["kernel"]], "vmcoreinfo"


@bad(1)
def case_vmcoreinfo_is_dev_zero(w):
    special(w, "sys/kernel/vmcoreinfo", "zero")
    return ["-p", w["kernel"]], "vmcoreinfo"


# -- kcore (kexec-tools: "ELF core (kcore) parse failed", load fails: 255) ----------------------

@bad(255)
def case_kcore_not_elf(w):
    rewrite(w, "proc/kcore", data=b"garbage" * 100)
    return ["-p", w["kernel"]], "kcore"


@bad(255)
def case_kcore_empty(w):
    rewrite(w, "proc/kcore", data=b"")
    return ["-p", w["kernel"]], "kcore"


@bad(255)
def case_kcore_program_headers_cut(w):
    data = open(os.path.join(w["machine"], "proc/kcore"), "rb").read()
    struct.pack_into("<H", data := bytearray(data), 0x38, 0xFFFF)   # e_phnum past the file
    rewrite(w, "proc/kcore", data=bytes(data))
    return ["-p", w["kernel"]], "kcore"


@bad(255)
def case_kcore_not_a_core_file(w):
    data = bytearray(open(os.path.join(w["machine"], "proc/kcore"), "rb").read())
    struct.pack_into("<H", data, 16, 2)                             # e_type ET_EXEC
    rewrite(w, "proc/kcore", data=bytes(data))
    return ["-p", w["kernel"]], "kcore"


@bad(255)
def case_kcore_is_a_fifo(w):
    special(w, "proc/kcore", "fifo")
    return ["-p", w["kernel"]], "kcore"


@bad(255)
def case_no_kernel_code_line(w):
    return damage_iomem(w, "Kernel code", "Kernel cod")


# -- --sysroot ---------------------------------------------------------------------------------

@bad(255)
def case_sysroot_empty(w):
    return ["-p", w["kernel"], "--sysroot="], "--sysroot"


@bad(255)
def case_sysroot_is_a_file(w):
    return ["-p", w["kernel"], "--sysroot", w["kernel"]], "--sysroot"
