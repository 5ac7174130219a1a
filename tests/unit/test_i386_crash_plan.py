"""Invariants of pykexec's i386 crash plans, read back from the plan's bytes.

Machines: the i386 guest snapshots (tests/snapshots/qemu-i386-*: the 2006 document's
1 GiB machine with crashkernel=64M@16M, and a PAE guest with RAM above 4 GiB). Kernels:
the fake 32-bit bzImage and vmlinux of tests/bed/fakekernel32.py.
"""

from __future__ import annotations

import os
import struct

import pytest

from pykexec.arch.x86 import purgatory_spec
from tests.unit.relocs import X86_RELOCATIONS
from pykexec.arch import arch_for, plan_load
from pykexec.purgatory.elfrel import RelocatableObject
from pykexec.errors import LoadError
from pykexec.machine import Machine
from pykexec.purgatory.build import purgatory_object
from pykexec.arch import parse_args
from pykexec.abi.elf import parse_core_header
from tests.bed.fakekernel import make_bzimage, make_initrd
from tests.bed.fakekernel32 import I386_BZIMAGE, make_vmlinux32

SNAPSHOTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "snapshots")
DOC = os.path.join(SNAPSHOTS, "qemu-i386-1g-2cpu-at16m")
PAE = os.path.join(SNAPSHOTS, "qemu-i386-pae-5g-2cpu")
X86_64_AT16M = os.path.join(SNAPSHOTS, "qemu-x86_64-1g-2cpu-at16m")
APPEND = "root=/dev/sda1 init 1 irqpoll maxcpus=1"
PAGE = 4096
REGS = ("eax", "ebx", "ecx", "edx", "esi", "edi", "esp", "ebp", "eip")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("i386-files")
    return {"bzimage": make_bzimage(str(d / "bzImage"), I386_BZIMAGE),
            "vmlinux": make_vmlinux32(str(d / "vmlinux")),
            "initrd": make_initrd(str(d / "initrd"), 100 * 1024)}


def plan_for(snapshot, argv):
    return plan_load(parse_args(argv + ["--sysroot", snapshot, "--dry-run"]),
                     Machine.read(snapshot), random_bytes=lambda n: bytes(n))


def u32(data, off):
    return struct.unpack_from("<I", data, off)[0]


def registers(plan):
    syms = plan.notes["purgatory_symbols"]
    addr = syms["symbol_addresses"]["entry32_regs"]
    return dict(zip(REGS, struct.unpack("<9I", plan.read_phys(addr, 36))))


def check_common(plan, machine):
    window = machine.crash_region
    assert plan.arch == "i386" and plan.syscall == "kexec_load"
    assert plan.flags == 0x1                      # KEXEC_ON_CRASH, KEXEC_ARCH_DEFAULT
    segs = plan.segments
    assert len(segs) <= 16
    for a, b in zip(segs, segs[1:]):
        assert a.mem + a.memsz <= b.mem
    for s in segs:
        assert s.mem % PAGE == 0 and s.memsz % PAGE == 0 and s.bufsz <= s.memsz
        assert window.start <= s.mem and s.mem + s.memsz <= window.end
        assert s.mem + s.memsz <= 1 << 32
    purg = plan.segments_of("purgatory")[0]
    assert purg.contains(plan.entry)
    # the command line names the elfcorehdr in KiB, and purgatory backs up low RAM there
    hdr = plan.segments_of("elfcorehdr")[0]
    assert f" elfcorehdr={hdr.mem // 1024}K" in plan.cmdline
    assert plan.cmdline.startswith(APPEND)
    backup = plan.segments_of("backup")[0]
    syms = plan.notes["purgatory_symbols"]
    assert (syms["backup_src_start"], syms["backup_src_size"]) == (0x1000, 0x9EC00)
    assert syms["backup_start"] == backup.mem and syms["panic_kernel"] == 1
    assert backup.data == bytes(0x9EC00)          # zeros until purgatory copies at crash time
    return hdr


def core_phdrs(plan):
    hdr = plan.segments_of("elfcorehdr")[0]
    ehdr, phdrs = parse_core_header(hdr.data)
    return hdr, ehdr, phdrs


def test_i686_machines_use_the_i386_module():
    assert arch_for("i686").name == "i386"
    assert Machine.read(DOC).machine_arch == "i686"


def test_purgatory_object_is_i386():
    obj = RelocatableObject.from_bytes(purgatory_object(purgatory_spec.I386), relocations=X86_RELOCATIONS)
    assert obj.machine == "EM_386"
    sizes = {s.name: s.size for s in obj.symbols() if s.bind == "STB_GLOBAL"}
    assert sizes["entry32_regs"] == 36 and sizes["sha256_regions"] == 256
    assert sizes["sha256_digest"] == 32
    for name in ("backup_start", "backup_src_start", "backup_src_size", "cmdline_end",
                 "skip_checks", "serial_baud"):
        assert sizes[name] == 4, name
    assert sizes["panic_kernel"] == sizes["console_serial"] == 1 and sizes["serial_base"] == 2
    loaded = obj.layout(0x4000000)
    assert loaded.entry == loaded.symbol_address("purgatory_start") == 0x4000000
    assert loaded.get_int("serial_base") == 0x3F8


def test_bzimage_on_the_document_machine(files):
    plan = plan_for(DOC, ["-p", files["bzimage"], f"--initrd={files['initrd']}",
                          f"--append={APPEND}"])
    machine = Machine.read(DOC)
    check_common(plan, machine)
    kernel = plan.segments_of("kernel")[0]
    # bottom-up at the aligned start of the crash region, sized by init_size
    assert kernel.mem == 0x1000000 and kernel.memsz == 0x100C000
    regs = registers(plan)
    params = plan.segments_of("boot_params")[0]
    assert regs["eip"] == kernel.mem and regs["esi"] == params.mem
    assert regs["ebx"] == regs["ebp"] == regs["edi"] == 0
    purg = plan.segments_of("purgatory")[0]
    assert purg.contains(regs["esp"]) and plan.entry < 0x80000000
    zp = params.data
    assert zp[0x202:0x206] == b"HdrS" and zp[0x210] == 0xD0
    initrd = plan.segments_of("initrd")[0]
    assert (u32(zp, 0x218), u32(zp, 0x21C)) == (initrd.mem, 100 * 1024)
    assert initrd.mem >= 0x1000000 and initrd.mem + initrd.memsz <= 0x38000000
    cmd_ptr = u32(zp, 0x228)
    assert plan.read_phys(cmd_ptr, len(plan.cmdline) + 1) == plan.cmdline.encode() + b"\0"
    n = zp[0x1E8]
    e820 = [struct.unpack_from("<QQI", zp, 0x2D0 + 20 * i) for i in range(n)]
    assert (0x1000, 0x9EC00, 1) in e820
    assert all(not (a < 0x1000000 and a + s > 0x100000) or t != 1 for a, s, t in e820)


def test_document_command_elf32_header(files):
    """pykexec -p vmlinux --args-linux --elf32-core-headers, crashkernel=64M@16M."""
    plan = plan_for(DOC, ["-p", files["vmlinux"], "--args-linux", "--elf32-core-headers",
                          f"--append={APPEND}"])
    machine = Machine.read(DOC)
    check_common(plan, machine)
    loads = plan.segments_of("elf_load")
    assert [s.mem for s in loads] == [0x1000000, 0x1040000]
    regs = registers(plan)
    param = plan.segments_of("param_block")[0]
    assert regs["eip"] == 0x1000000 and regs["esi"] == param.mem
    assert u32(param.data, 0x228) == param.mem + 0x1000
    assert param.data[0x202:0x206] == b"HdrS"
    hdr, ehdr, phdrs = core_phdrs(plan)
    assert hdr.data[4] == 1 and ehdr.e_machine == 3       # ELFCLASS32, EM_386
    notes = [p for p in phdrs if p.p_type == 4]
    ram = [p for p in phdrs if p.p_type == 1]
    assert len(notes) == machine.nr_cpus_conf + 1           # CPUs + vmcoreinfo
    backup = plan.segments_of("backup")[0]
    assert (ram[0].p_paddr, ram[0].p_offset, ram[0].p_filesz) == (0x1000, backup.mem, 0x9EC00)
    for p in ram:
        if p.p_paddr + p.p_filesz > 0x38000000:
            assert p.p_paddr >= 0x38000000 and p.p_vaddr == 0xFFFFFFFF
        else:
            assert p.p_vaddr == 0xC0000000 + p.p_paddr
        assert not (p.p_paddr < 0x5000000 and p.p_paddr + p.p_filesz > 0x1000000)  # no crash region
    assert any(p.p_vaddr == 0xFFFFFFFF for p in ram)        # 1 GiB: there is highmem


def test_elf64_on_request_and_above_4g(files):
    doc64 = plan_for(DOC, ["-p", files["bzimage"], "--elf64-core-headers"])
    assert core_phdrs(doc64)[0].data[4] == 2
    assert doc64.notes["core_header_class"] == 64
    pae = plan_for(PAE, ["-p", files["bzimage"]])
    hdr, ehdr, phdrs = core_phdrs(pae)
    assert hdr.data[4] == 2 and ehdr.e_machine == 3
    assert any(p.p_paddr >= 1 << 32 for p in phdrs if p.p_type == 1)
    assert all(p.p_vaddr == (1 << 64) - 1 for p in phdrs
               if p.p_type == 1 and p.p_paddr >= 0x38000000)


def test_elf32_with_ram_above_4g_is_refused(files):
    with pytest.raises(LoadError, match="above 4 GiB.*--elf64-core-headers"):
        plan_for(PAE, ["-p", files["bzimage"], "--elf32-core-headers"])


def test_vmlinux_must_sit_at_its_link_address(files):
    vmlinux32 = make_vmlinux32(files["vmlinux"] + ".at256m", phys=0x10000000)
    with pytest.raises(LoadError, match=r"cannot be moved.*crashkernel=64M@256M"):
        plan_for(DOC, ["-p", vmlinux32, "--args-linux"])


def test_args_elf_and_default_are_refused_for_a_capture_kernel(files):
    for extra in ([], ["--args-elf"]):
        with pytest.raises(LoadError, match="--args-linux"):
            plan_for(DOC, ["-p", files["vmlinux"], *extra])


def test_args_none_loads_the_bare_image(files):
    plan = plan_for(DOC, ["-p", files["vmlinux"], "--args-none"])
    assert plan.entry == 0x1000000 and plan.flags == 0x1
    assert [s.kind for s in plan.segments] == ["elf_load", "elf_load"]
    assert any("--args-none" in w for w in plan.notes["warnings"])
    with pytest.raises(LoadError, match="initrd"):
        plan_for(DOC, ["-p", files["vmlinux"], "--args-none", f"--initrd={files['initrd']}"])


def test_real_mode_and_non_relocatable_bzimage_are_refused(files, tmp_path):
    with pytest.raises(LoadError, match="real mode"):
        plan_for(DOC, ["-p", files["bzimage"], "--real-mode"])
    data = bytearray(open(files["bzimage"], "rb").read())
    data[0x234] = 0
    fixed = tmp_path / "bzImage.fixed"
    fixed.write_bytes(bytes(data))
    with pytest.raises(LoadError, match="not relocatable"):
        plan_for(DOC, ["-p", str(fixed)])


def test_skip_checks_and_serial_console(files):
    plan = plan_for(DOC, ["-p", files["bzimage"], "-i", "--console-serial", "--serial=ttyS1",
                          "--serial-baud=9600"])
    syms = plan.notes["purgatory_symbols"]
    assert (syms["skip_checks"], syms["console_serial"]) == (1, 1)
    assert (syms["serial_base"], syms["serial_baud"]) == (0x2F8, 9600)
    assert syms["sha256_digest"] == "00" * 32


def test_digest_covers_every_other_segment(files):
    import hashlib
    plan = plan_for(DOC, ["-p", files["bzimage"], f"--initrd={files['initrd']}"])
    others = [s for s in plan.segments if s.kind != "purgatory"]
    h = hashlib.sha256()
    for s in others:
        h.update(s.data + bytes(s.memsz - s.bufsz))
    syms = plan.notes["purgatory_symbols"]
    assert syms["sha256_digest"] == h.hexdigest()
    assert [tuple(r) for r in syms["sha256_regions"]] == [(s.mem, s.memsz) for s in others]


def test_reserved_range_above_4g_alone_keeps_elf32_with_a_warning(files):
    """kexec-tools' rule looks at the last range of any type; pykexec at RAM only."""
    from pykexec.arch import i386
    machine = Machine.read(X86_64_AT16M)   # QEMU x86_64: a reserved range at 0xfd00000000
    plan = i386.ARCH.plan_load(parse_args(["-p", files["bzimage"], "--sysroot", X86_64_AT16M]),
                          machine, random_bytes=lambda n: bytes(n))
    assert plan.notes["core_header_class"] == 32
    assert any("kexec-tools would write ELF64" in w for w in plan.notes["warnings"])


# --- normal loads (-l): the same steps without crash segments --------------------------------

@pytest.mark.parametrize("snapshot", [DOC, PAE])
def test_normal_load_stays_below_4g_and_enters_startup_32(files, snapshot):
    plan = plan_for(snapshot, ["-l", files["bzimage"], f"--initrd={files['initrd']}",
                               f"--append={APPEND}"])
    assert plan.flags == 0 and plan.syscall == "kexec_load"
    assert not plan.segments_of("elfcorehdr") and not plan.segments_of("backup")
    assert all(s.mem + s.memsz <= 1 << 32 for s in plan.segments)
    purgatory = plan.segment_at(plan.entry)
    assert purgatory.kind == "purgatory" and purgatory.mem + purgatory.memsz <= 1 << 31
    [kernel] = plan.segments_of("kernel")
    [params] = plan.segments_of("boot_params")
    regs = registers(plan)
    assert (regs["eip"], regs["esi"]) == (kernel.mem, params.mem)
    assert regs["ebx"] == regs["ebp"] == regs["edi"] == 0
    assert plan.notes["purgatory_symbols"]["panic_kernel"] == 0
    # the new kernel's e820 is the whole firmware map: RAM above the old crash region too
    assert APPEND in plan.cmdline and "elfcorehdr=" not in plan.cmdline


def test_a_non_relocatable_bzimage_loads_where_it_was_linked_for_l_only(tmp_path, files):
    data = bytearray(open(files["bzimage"], "rb").read())
    data[0x234] = 0                                   # relocatable_kernel
    pref = struct.unpack_from("<Q", data, 0x258)[0]   # pref_address
    path = tmp_path / "fixed"
    path.write_bytes(bytes(data))
    [kernel] = plan_for(DOC, ["-l", str(path), f"--append={APPEND}"]).segments_of("kernel")
    assert kernel.mem == (pref or 0x100000)
    with pytest.raises(LoadError, match="not relocatable"):
        plan_for(DOC, ["-p", str(path), f"--append={APPEND}"])
