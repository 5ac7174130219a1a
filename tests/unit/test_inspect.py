"""`pykexec inspect`: each kind of input explained, numbers checked against what the test
built (packed with struct from the specifications, or read with pyelftools); bad input
gives one line on stderr, a non-zero exit and no traceback."""

import os
import re
import struct
import subprocess
import sys
from collections import Counter

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection

from pykexec.arch.x86 import purgatory_spec
from tests.unit.relocs import X86_RELOCATIONS
from pykexec.views.inspect import InspectError, detect, inspect_path
from pykexec.core.plan import save_plan
from tests.bed.fakekernel import FakeKernel, make_bzimage
from tests.unit._plans import BACKUP_AT, PHDRS, labelled_plan
from tests.unit.test_planfacts import make_core_header

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "pykexec", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


def field(text, name):
    """The value column of a setup-header line `0x... name value ...`."""
    m = re.search(rf"^\s+0x[0-9a-f]+\s+{name}\s+(\S+)", text, re.M)
    assert m, name
    return int(m.group(1), 16) if m.group(1).startswith("0x") else m.group(1)


# ------------------------------------------------------------------------------------------
# bzImage

def test_bzimage_setup_header(tmp_path):
    k = FakeKernel(init_size=0x1234000, kernel_alignment=0x400000, pref_address=0x2000000,
                   setup_sects=6, payload_size=12345)
    path = make_bzimage(str(tmp_path / "bzImage"), k)
    text = inspect_path(path)
    assert text.startswith(f"{path}: bzImage (x86 boot protocol 2.15)")
    assert field(text, "init_size") == k.init_size
    assert field(text, "kernel_alignment") == k.kernel_alignment
    assert field(text, "pref_address") == k.pref_address
    assert field(text, "setup_sects") == k.setup_sects
    assert field(text, "cmdline_size") == k.cmdline_size - 1
    assert field(text, "boot_flag") == 0xAA55
    assert f"protected-mode code: {k.payload_size:#x} bytes at file offset {k.setup_size:#x}" in text
    assert "XLF_KERNEL_64" in text and "LOADED_HIGH" in text


# ------------------------------------------------------------------------------------------
# vmlinux

def make_vmlinux(path, entry=0x1000000, loads=((0xFFFFFFFF81000000, 0x1000000, 0x3000, 0x5000, 5),
                                               (0xFFFFFFFF82000000, 0x2000000, 0x1000, 0x1000, 6))):
    """An ELF64 ET_EXEC x86_64 with PT_LOADs (vaddr, paddr, filesz, memsz, flags)."""
    phoff, phnum = 64, len(loads)
    data_off = 0x1000
    ehdr = struct.pack("<4sBBBBB7xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, 2, 62, 1, entry,
                       phoff, 0, 0, 64, 56, phnum, 64, 0, 0)
    phdrs, body, off = b"", b"", data_off
    for vaddr, paddr, filesz, memsz, flags in loads:
        phdrs += struct.pack("<IIQQQQQQ", 1, flags, off, vaddr, paddr, filesz, memsz, 0x1000)
        body += bytes([0xCC]) * filesz
        off += filesz
    blob = ehdr + phdrs
    blob += bytes(data_off - len(blob)) + body
    with open(path, "wb") as f:
        f.write(blob)
    return loads


def test_vmlinux_program_headers(tmp_path):
    path = str(tmp_path / "vmlinux")
    loads = make_vmlinux(path)
    text = inspect_path(path)
    assert "ET_EXEC" in text and "EM_X86_64" in text and "entry 0x1000000" in text
    rows = re.findall(r"^\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+([RWX-]{3})",
                      text, re.M)
    assert [tuple(int(v, 16) for v in r[:4]) for r in rows] == [l[:4] for l in loads]
    assert [r[4] for r in rows] == ["R-X", "RW-"]
    assert "0x0 into the PT_LOAD at 0x1000000" in text


# ------------------------------------------------------------------------------------------
# purgatory object

def test_purgatory_object(tmp_path):
    from pykexec.purgatory.elfrel import RelocatableObject
    from pykexec.purgatory.build import purgatory_object
    data = purgatory_object(purgatory_spec.X86_64)
    path = tmp_path / "purgatory.o"
    path.write_bytes(data)
    text = inspect_path(str(path))
    assert "relocatable object for EM_X86_64" in text
    elf = ELFFile(open(path, "rb"))
    expected = Counter()
    for section in elf.iter_sections():
        if isinstance(section, RelocationSection):
            for rel in section.iter_relocations():
                expected[rel["r_info_type"]] += 1
    from elftools.elf.enums import ENUM_RELOC_TYPE_x64
    names = {v: k for k, v in ENUM_RELOC_TYPE_x64.items()}
    for rtype, n in expected.items():
        m = re.search(rf"^\s+{names[rtype]}\s+(\d+)", text, re.M)
        assert m and int(m.group(1)) == n
    assert f"relocations: {sum(expected.values())}" in text
    alloc = [s.name for s in elf.iter_sections() if s["sh_flags"] & 2 and s.name]
    for name in alloc:
        assert re.search(rf"\s{re.escape(name)}$", text, re.M), name
    loaded = RelocatableObject.from_bytes(data, relocations=X86_RELOCATIONS).layout(0)
    m = re.search(r"^\s+entry64_regs\s+\+(0x[0-9a-f]+)\s+(\d+) bytes", text, re.M)
    assert m and int(m.group(1), 16) == loaded.symbol_address("entry64_regs")
    assert int(m.group(2)) == loaded.symbol_size("entry64_regs")


# ------------------------------------------------------------------------------------------
# elfcorehdr and vmcore

def test_elfcorehdr_blob(tmp_path):
    path = tmp_path / "elfcorehdr.bin"
    path.write_bytes(make_core_header(BACKUP_AT))
    text = inspect_path(str(path))
    assert "an elfcorehdr" in text
    rows = re.findall(r"^\s+\d+\s+(NOTE|LOAD)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)", text, re.M)
    assert [(t, int(o, 16), int(p, 16), int(m, 16)) for t, p, m, o in rows] == \
        [(t, o, p, m) for t, o, p, m in PHDRS]
    assert f"read from the backup copy at {BACKUP_AT:#x}" in text


X86_64_REGS = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax",
               "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss",
               "fs_base", "gs_base", "ds", "es", "fs", "gs")


def note(name, ntype, desc):
    n = name.encode() + b"\0"
    pad = lambda b: b + bytes(-len(b) % 4)
    return struct.pack("<III", len(n), len(desc), ntype) + pad(n) + pad(desc)


def prstatus(pid, regs):
    """struct elf_prstatus for x86_64: 112 bytes before pr_reg, 27 registers, pr_fpvalid."""
    head = bytearray(112)
    struct.pack_into("<I", head, 32, pid)          # pr_pid after siginfo, cursig, sigpend, sighold
    return bytes(head) + struct.pack("<27Q", *regs) + struct.pack("<I", 0) + bytes(4)


def make_vmcore(path, cpus):
    vmcoreinfo = b"OSRELEASE=6.1.0-test\nPAGESIZE=4096\nSYMBOL(swapper_pg_dir)=ffffffff82a0a000\n"
    notes = b"".join(note("CORE", 1, prstatus(pid, regs)) for pid, regs in cpus)
    notes += note("VMCOREINFO", 0, vmcoreinfo)
    ram = bytes(range(256)) * 16
    phoff, phnum = 64, 3
    notes_off = phoff + phnum * 56
    load_off = (notes_off + len(notes) + 0xFFF) & ~0xFFF
    ehdr = struct.pack("<4sBBBBB7xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, 4, 62, 1, 0,
                       phoff, 0, 0, 64, 56, phnum, 0, 0, 0)
    ph = struct.pack("<IIQQQQQQ", 4, 0, notes_off, 0, 0, len(notes), len(notes), 0)
    ph += struct.pack("<IIQQQQQQ", 1, 7, load_off, 0xFFFFFFFF81000000, 0x1000000, 0x1000, 0x1000, 0)
    ph += struct.pack("<IIQQQQQQ", 1, 7, load_off, 0xFFFF888000100000, 0x100000, len(ram), len(ram), 0)
    blob = ehdr + ph + notes
    blob += bytes(load_off - len(blob)) + ram
    with open(path, "wb") as f:
        f.write(blob)
    return vmcoreinfo


def test_vmcore_registers_and_vmcoreinfo(tmp_path):
    cpus = [(101, [0x1000 * (i + 1) + cpu for i in range(27)]) for cpu in range(2)]
    path = str(tmp_path / "vmcore")
    vmcoreinfo = make_vmcore(path, cpus)
    text = inspect_path(path)
    assert "a vmcore" in text
    for cpu, (pid, regs) in enumerate(cpus):
        block = text.split(f"CPU {cpu} (note {cpu})")[1].split("CPU")[0]
        assert f"pid {pid}" in block
        found = dict((k, int(v, 16)) for k, v in re.findall(r"(\w+)=(0x[0-9a-f]+)", block))
        assert found == dict(zip(X86_64_REGS, regs))
    for line in vmcoreinfo.decode().splitlines():
        key, value = line.split("=", 1)
        assert re.search(rf"^\s+{re.escape(key)}\s+{re.escape(value)}$", text, re.M)
    assert "3 keys" in text


# ------------------------------------------------------------------------------------------
# plan folder

def test_plan_folder(tmp_path):
    plan = labelled_plan()
    save_plan(plan, str(tmp_path / "plan"))
    text = inspect_path(str(tmp_path / "plan"))
    assert text.startswith(f"{tmp_path / 'plan'}: plan folder")
    for seg in plan.segments:
        assert f"{seg.mem:#018x}-{seg.mem + seg.memsz - 1:#018x}" in text


def test_detect_kinds_from_content(tmp_path):
    from pykexec.purgatory.build import purgatory_object
    named_wrong = tmp_path / "vmlinux"               # names do not matter, content does
    named_wrong.write_bytes(purgatory_object(purgatory_spec.X86_64))
    assert detect(str(named_wrong), named_wrong.read_bytes()[:4096]) == "object"
    bz = make_bzimage(str(tmp_path / "image.elf"))
    assert detect(bz, open(bz, "rb").read(4096)) == "bzimage"
    core = tmp_path / "x.bin"
    core.write_bytes(make_core_header(BACKUP_AT))
    assert detect(str(core), core.read_bytes()) == "core"
    save_plan(labelled_plan(), str(tmp_path / "p"))
    assert detect(str(tmp_path / "p"), b"") == "plan"
    with pytest.raises(InspectError, match="without plan.json"):
        detect(str(tmp_path), b"")


# ------------------------------------------------------------------------------------------
# The command line, and bad input

def test_cli_inspect_prints_the_explanation(tmp_path):
    path = make_bzimage(str(tmp_path / "bzImage"))
    proc = run_cli("inspect", path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == inspect_path(path)


BAD = {
    "random": os.urandom(3000),
    "empty": b"",
    "gzip": b"\x1f\x8b\x08\x00" + bytes(100),
    "truncated-elf": b"\x7fELF\x02\x01\x01" + bytes(9),
    "elf-garbage-phdrs": (struct.pack("<4sBBBBB7xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, 2, 62,
                                      1, 0, 0x10000, 0, 0, 64, 56, 40, 64, 0, 0)),
    "core-truncated": (struct.pack("<4sBBBBB7xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, 4, 62,
                                   1, 0, 64, 0, 0, 64, 56, 9, 0, 0, 0) + bytes(56)),
    "bzimage-short": bytes(0x1FE) + b"\x55\xaa" + bytes(2) + b"HdrS" + bytes(4),
    "object-garbage": (struct.pack("<4sBBBBB7xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, 1, 62,
                                   1, 0, 0, 0x4000, 0, 64, 0, 0, 64, 30, 2) + bytes(64)),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_is_one_line(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(BAD[name])
    proc = run_cli("inspect", str(path))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0], proc.stderr


def test_missing_file_and_bad_folders(tmp_path):
    for target in (tmp_path / "missing", tmp_path):
        proc = run_cli("inspect", str(target))
        assert proc.returncode != 0 and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and str(target) in proc.stderr
    bad = tmp_path / "plan"
    save_plan(labelled_plan(), str(bad))
    (bad / "segment-02.bin").write_bytes(b"tampered")
    proc = run_cli("inspect", str(bad))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "segment-02.bin" in proc.stderr and str(bad) in proc.stderr
    (bad / "plan.json").write_text("{not json")
    proc = run_cli("inspect", str(bad))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and str(bad) in proc.stderr


# ------------------------------------------------------------------------------------------
# pykexec snapshot: hidden addresses

def fake_root(tmp_path, iomem, kallsyms=None):
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    (root / "proc" / "iomem").write_text(iomem)
    (root / "proc" / "cmdline").write_text("console=ttyS0\n")
    if kallsyms is not None:
        (root / "proc" / "kallsyms").write_text(kallsyms)
    return root


def test_snapshot_refuses_zeroed_iomem(tmp_path):
    from pykexec.machine.snapcheck import snapshot_problems
    root = fake_root(tmp_path, "00000000-00000000 : Reserved\n00000000-00000000 : System RAM\n"
                               "  00000000-00000000 : Crash kernel\n")
    fatal, _ = snapshot_problems(str(root))
    assert fatal.startswith("needs root: /proc/iomem")
    proc = run_cli("snapshot", str(tmp_path / "out"), "--sysroot", str(root))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "needs root: /proc/iomem" in proc.stderr and "zero addresses" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_snapshot_warns_when_kptr_restrict_hides_symbols(tmp_path):
    from pykexec.machine.snapcheck import snapshot_problems
    root = fake_root(tmp_path, "00001000-0009fbff : System RAM\n",
                     "0000000000000000 T _text\n0000000000000000 T _stext\n")
    (root / "proc" / "sys" / "kernel").mkdir(parents=True)
    (root / "proc" / "sys" / "kernel" / "kptr_restrict").write_text("2\n")
    fatal, warnings = snapshot_problems(str(root))
    assert fatal is None and len(warnings) == 1
    assert "kptr_restrict" in warnings[0] and "= 2" in warnings[0]
    proc = run_cli("snapshot", str(tmp_path / "out"), "--sysroot", str(root))
    assert proc.returncode == 0, proc.stderr
    assert "kptr_restrict hides kernel addresses" in proc.stderr
    # Real addresses: no warning.
    (root / "proc" / "kallsyms").write_text("ffffffff81000000 T _text\n0000000000000000 A fixed\n")
    assert snapshot_problems(str(root)) == (None, [])


def test_snapshot_of_the_live_machine_needs_root(monkeypatch):
    from pykexec.machine import snapcheck
    monkeypatch.setattr(snapcheck.os, "geteuid", lambda: 1000)
    fatal, _ = snapcheck.snapshot_problems("/")
    assert fatal is not None and fatal.startswith("needs root: /proc/iomem")


def test_iomem_and_kallsyms_hidden_rules():
    from pykexec.machine.snapcheck import iomem_hidden, kallsyms_hidden
    assert iomem_hidden("00000000-00000000 : System RAM\n  00000000-00000000 : Kernel code\n")
    assert not iomem_hidden("00000000-00000fff : Reserved\n")
    assert not iomem_hidden("")                       # nothing listed: nothing hidden
    assert kallsyms_hidden([b"0000000000000000 T _text\n", b"0000000000000000 t x\n"])
    assert not kallsyms_hidden([b"0000000000000000 A fixed\n", b"ffffffff81000000 T _text\n"])


I386_REGS = ("ebx", "ecx", "edx", "esi", "edi", "ebp", "eax", "ds", "es", "fs", "gs",
             "orig_eax", "eip", "cs", "eflags", "esp", "ss")


def test_elf32_vmcore_registers(tmp_path):
    """i386 struct elf_prstatus: pr_pid at 24, pr_reg (17 longs) at 72."""
    regs = [0x100 + i for i in range(17)]
    head = bytearray(72)
    struct.pack_into("<I", head, 24, 77)
    notes = note("CORE", 1, bytes(head) + struct.pack("<17I", *regs) + bytes(4))
    phoff = 52
    notes_off = phoff + 32
    ehdr = struct.pack("<4sBBBBB7xHHIIIIIHHHHHH", b"\x7fELF", 1, 1, 1, 0, 0, 4, 3, 1, 0,
                       phoff, 0, 0, 52, 32, 1, 0, 0, 0)
    ph = struct.pack("<IIIIIIII", 4, notes_off, 0, 0, len(notes), len(notes), 0, 0)
    path = tmp_path / "vmcore32"
    path.write_bytes(ehdr + ph + notes)
    text = inspect_path(str(path))
    assert "ELF32 core for i386" in text and "pid 77" in text
    block = text.split("CPU 0 (note 0)")[1]
    assert dict((k, int(v, 16)) for k, v in re.findall(r"(\w+)=(0x[0-9a-f]+)", block)) == \
        dict(zip(I386_REGS, regs))
