"""`pykexec vmcore save` on real dumps kept by the bed (tests/bed/keep.py), against the C tools.

Both dumps, x86_64 (ELF64, 1 GiB guest) and i386 (the 2006 document's ELF32 form): for
-d 1, 17 and 31 the saved file holds exactly the pages Debian's `makedumpfile -E -d N`
keeps from the same vmcore, byte for byte (the independent checker, tests/vmcore_check.py,
reads the files page by page). Debian's makedumpfile handles only the arch it was built
for, so the i386 dump is compared with Debian's makedumpfile:i386, run on the host
(tests/bed/makedumpfile_i386.py). makedumpfile reads pykexec's output back (--dump-dmesg,
and refiltering it); Debian's vmcore-dmesg prints the same log from the saved file as from
the source; gdb opens the saved core: `info registers` shows CPU 0's NT_PRSTATUS, and `x/`
shows memory at a kernel virtual address (the bed's recorded pattern on x86_64; on i386 the
pattern's user pages sit in highmem, which has no kernel virtual address, so `x/s` shows
init_uts_ns's strings instead); drgn opens the saved x86_64 file without debug info.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import sys

import pytest

from tests.bed.guest import pattern
from tests.conftest import require
from tests.vmcore_check import check_saved, kept_pfns, loads, page_table

pytestmark = pytest.mark.e2e

LEVELS = (1, 17, 31)


def tool(name):
    path = shutil.which(name) or shutil.which(f"/usr/sbin/{name}")
    require(path is not None, f"{name} not installed (scripts/setup-host installs it)")
    return path


def save(src, out, level):
    p = subprocess.run([sys.executable, "-m", "pykexec", "vmcore", "save", "-d", str(level),
                        str(out), str(src)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return out


def save_both(src, work, makedumpfile):
    """{level: (pykexec's file, makedumpfile's file)} for LEVELS."""
    files = {}
    for level in LEVELS:
        ours = save(src, work / f"pykexec-d{level}", level)
        theirs = work / f"makedumpfile-d{level}"
        p = subprocess.run([*makedumpfile, "-E", "-d", str(level), str(src), str(theirs)],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr
        files[level] = (ours, theirs)
    return files


@pytest.fixture(scope="module")
def x86(kept_vmcore_x86_64, tmp_path_factory):
    work = tmp_path_factory.mktemp("save-x86_64")
    yield kept_vmcore_x86_64, save_both(kept_vmcore_x86_64.path, work, [tool("makedumpfile")])
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def i386(kept_vmcore_i386, tmp_path_factory):
    from tests.bed.kernels import BedError
    from tests.bed.makedumpfile_i386 import makedumpfile_i386_argv
    try:
        mdf = makedumpfile_i386_argv()
    except BedError as err:
        require(False, f"makedumpfile:i386 not available: {err}")
    work = tmp_path_factory.mktemp("save-i386")
    yield kept_vmcore_i386, save_both(kept_vmcore_i386.path, work, mdf)
    shutil.rmtree(work, ignore_errors=True)


@pytest.mark.parametrize("arch", ["x86_64", "i386"])
@pytest.mark.parametrize("level", LEVELS)
def test_keeps_the_pages_makedumpfile_keeps(request, arch, level):
    kept, files = request.getfixturevalue("x86" if arch == "x86_64" else "i386")
    ours, theirs = files[level]
    src = str(kept.path)
    mine, its = kept_pfns(str(ours)), kept_pfns(str(theirs))
    assert mine == its, (f"only pykexec: {sorted(mine - its)[:20]}, "
                         f"only makedumpfile: {sorted(its - mine)[:20]}")
    # byte for byte, and every page left out is one makedumpfile leaves out too
    left_out = {pfn: "makedumpfile leaves it out" for pfn in set(page_table(src)) - its}
    rep = check_saved(src, str(ours), may_drop=left_out)
    assert rep.ok, rep.problems
    assert rep.identical == len(mine) and rep.identical > 0
    # the same PT_LOAD layout of kept bytes, piece by piece (theirs has p_memsz > p_filesz),
    # except that a source PT_LOAD that is not whole pages (i386's first, 0x1000-0x9fc00)
    # is copied whole by pykexec, where makedumpfile may cut its partial last page
    # (a list, not a dict: x86_64's kernel-text PT_LOAD repeats paddrs of the RAM one)
    mine_l = sorted((ld["paddr"], ld["filesz"]) for ld in loads(str(ours)))
    its_l = sorted((ld["paddr"], ld["filesz"]) for ld in loads(str(theirs)) if ld["filesz"])
    partial = [(a, n) for a, n in mine_l if (a | n) % 4096]
    cut = [(a, n) for a, n in its_l if any(a == pa and pn - 4096 < n <= pn for pa, pn in partial)]
    assert len(cut) == len(partial)
    assert [x for x in mine_l if x not in partial] == [x for x in its_l if x not in cut]


def test_makedumpfile_reads_pykexecs_output(x86, tmp_path):
    kept, files = x86
    mdf = tool("makedumpfile")
    ours = files[31][0]
    log = tmp_path / "dmesg.txt"
    p = subprocess.run([mdf, "--dump-dmesg", str(ours), str(log)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "sysrq triggered crash" in log.read_text(errors="replace")
    # makedumpfile refilters pykexec's -d 1 output to -d 31: it keeps at least the pages its
    # own -d 31 keeps, byte for byte. It may keep more: its "runs under 256 pages are written"
    # rule counts per input PT_LOAD, and pykexec's -d 1 output has split the PT_LOADs where
    # zero pages were left out, so a run of free pages can be cut into short ones.
    again = tmp_path / "refiltered"
    p = subprocess.run([mdf, "-E", "-d", "31", str(files[1][0]), str(again)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    direct = kept_pfns(str(files[31][1]))
    assert direct <= kept_pfns(str(again)) <= kept_pfns(str(files[1][0]))
    src = str(kept.path)
    rep = check_saved(src, str(again),
                      may_drop={pfn: "left out" for pfn in set(page_table(src)) - direct})
    assert rep.ok, rep.problems


@pytest.mark.parametrize("arch", ["x86_64", "i386"])
def test_vmcore_dmesg_reads_the_saved_file(request, arch):
    kept, files = request.getfixturevalue("x86" if arch == "x86_64" else "i386")
    vd = tool("vmcore-dmesg")
    source = subprocess.run([vd, str(kept.path)], capture_output=True)
    assert source.returncode == 0 and b"sysrq triggered crash" in source.stdout
    for level in LEVELS:
        ours = files[level][0]
        saved = subprocess.run([vd, str(ours)], capture_output=True)
        assert saved.returncode == 0, saved.stderr
        assert saved.stdout == source.stdout


def gdb(core, *commands):
    argv = [tool("gdb"), "-batch", "-nx", "-c", str(core)]
    for c in commands:
        argv += ["-ex", c]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    return p.stdout + p.stderr


def cpu0_registers(path):
    from pykexec.vmcore.dump import Vmcore
    with Vmcore.open(str(path)) as dump:
        return dict(dump.cpus[0].regs)


@pytest.mark.parametrize("arch", ["x86_64", "i386"])
def test_gdb_info_registers_shows_cpu0(request, arch):
    kept, files = request.getfixturevalue("x86" if arch == "x86_64" else "i386")
    saved = files[31][0]
    out = gdb(saved, "info registers")
    shown = {m.group(1): int(m.group(2), 16)
             for m in re.finditer(r"^(\w+)\s+0x([0-9a-f]+)", out, re.M)}
    want = cpu0_registers(kept.path)
    names = (["rip", "rsp", "rbp", "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r15",
              "eflags", "cs", "ss"] if arch == "x86_64" else
             ["eip", "esp", "ebp", "eax", "ebx", "ecx", "edx", "esi", "edi", "eflags", "cs", "ss"])
    assert {n: shown.get(n) for n in names} == {n: want[n] for n in names}, out[-2000:]


def direct_map_address(path, pfn):
    for ld in loads(str(path)):
        if (ld["paddr"] <= pfn * pattern.PAGE < ld["paddr"] + ld["filesz"]
                and ld["vaddr"] < 0xFFFFFFFF80000000):
            return ld["vaddr"] + pfn * pattern.PAGE - ld["paddr"]
    return None


def test_gdb_shows_the_recorded_pattern_x86_64(x86):
    kept, files = x86
    tag, records = pattern.read_records(str(kept.result.run_dir / "results" / "pattern.txt"))
    index, pfn = next((i, p) for i, p in records[len(records) // 2:] if p)
    address = direct_map_address(kept.path, pfn)
    assert address is not None
    want = struct.unpack("<4Q", pattern.page_bytes(tag, index)[:32])
    out = gdb(files[1][0], f"x/4gx {address:#x}")     # -d 1 keeps the (user) pattern pages
    shown = [int(v, 16) for v in re.findall(r"\t(0x[0-9a-f]{16})", out)]
    assert shown == list(want), out[-1500:]
    # -d 31 leaves user pages out: gdb says so rather than showing zeros
    out = gdb(files[31][0], f"x/4gx {address:#x}")
    assert "Cannot access memory" in out, out[-1500:]


def test_gdb_shows_kernel_memory_i386(i386):
    kept, files = i386
    from pykexec.vmcore.dump import Vmcore
    with Vmcore.open(str(kept.path)) as dump:
        uts = dump.need("symbol", "init_uts_ns") + dump.need("offset", "uts_namespace.name")
        release = dump.vmcoreinfo.osrelease
    out = gdb(files[31][0], f"x/s {uts:#x}", f"x/s {uts + 65 * 2:#x}")   # sysname, release
    assert '"Linux"' in out and f'"{release}"' in out, out[-1500:]


def drgn_program(path):
    try:
        import drgn
        from drgn.helpers.linux.kallsyms import load_vmlinux_kallsyms
    except ImportError as err:
        require(False, f"drgn (PyPI) with kallsyms support not installed: {err}")
    prog = drgn.Program()
    prog.set_core_dump(str(path))
    prog.register_symbol_finder("kallsyms", load_vmlinux_kallsyms(prog), enable_index=0)
    return prog


def test_drgn_reads_the_saved_file_without_debug_info(x86):
    """drgn opens pykexec's -d 31 output (symbols from the kernel's own kallsyms, its own
    address translation): the release, and the printk text ring read whole, as in the source."""
    from pykexec.vmcore.dump import Vmcore
    kept, files = x86
    with Vmcore.open(str(kept.path)) as dump:
        info = dump.vmcoreinfo
        uts_name = info.offset("uts_namespace", "name")
        ring_off = info.offset("printk_ringbuffer", "text_data_ring")
        data_off, bits_off = info.offset("prb_data_ring", "data"), info.offset("prb_data_ring", "size_bits")
    seen = []
    for path in (kept.path, files[31][0]):
        prog = drgn_program(path)
        uts = prog.symbol("init_uts_ns").address
        release = prog.read(uts + uts_name + 2 * 65, 65).split(b"\0")[0].decode()
        prb = struct.unpack("<Q", prog.read(prog.symbol("prb").address, 8))[0]
        ring = prb + ring_off
        size = 1 << struct.unpack("<I", prog.read(ring + bits_off, 4))[0]
        data = prog.read(struct.unpack("<Q", prog.read(ring + data_off, 8))[0], size)
        seen.append((release, data))
    assert seen[0][0] == kept.release
    assert seen[1] == seen[0]
    assert b"sysrq triggered crash" in seen[1][1]
