"""`pykexec vmcore dmesg|info` on real vmcores, kept from one pykexec kdump cycle per arch
(tests/bed/keep.py): x86_64 (6.1 amd64, ELF64, 5-level paging under TCG) and i386 (6.1
686, ELF32, the 2006 document's load). Both kernels use the lockless ring buffer (prb).

The reference is Debian's vmcore-dmesg (kexec-tools) run on the host on the same file,
compared byte for byte; also the guest's own vmcore-dmesg and pykexec run on /proc/vmcore
in the capture kernel, so the kept copy is the dump the capture kernel saw and pykexec
reads /proc/vmcore itself. drgn (PyPI) opens the same x86_64 dump
without debug info: kallsyms for symbols, its own page-table walk for memory.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys

import pytest

from tests.bed.qemu import PANIC_LINE
from tests.conftest import require

pytestmark = pytest.mark.e2e

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VMCORE_DMESG = "/usr/sbin/vmcore-dmesg"
ARCHES = ["x86_64", "i386"]


@pytest.fixture(params=ARCHES)
def kept(request):
    return request.getfixturevalue(f"kept_vmcore_{request.param}")


def pykexec(*args):
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-m", "pykexec", "vmcore", *args],
                          capture_output=True, env=env, timeout=300)


def test_dmesg_is_vmcore_dmesg_byte_for_byte(kept):
    require(os.path.exists(VMCORE_DMESG), "Debian's kexec-tools (vmcore-dmesg) not installed")
    theirs = subprocess.run([VMCORE_DMESG, str(kept.path)], capture_output=True, timeout=300)
    ours = pykexec("dmesg", str(kept.path))
    assert theirs.returncode == 0, theirs.stderr
    assert ours.returncode == 0 and ours.stderr == b"", ours.stderr
    assert PANIC_LINE.encode() in ours.stdout
    assert ours.stdout.count(b"\n") > 100
    assert ours.stdout == theirs.stdout
    # and the guest's vmcore-dmesg on /proc/vmcore (kept as text in stage2.json)
    assert kept.result.vmcore_dmesg_exit == 0
    assert ours.stdout.decode("utf-8", "replace") == kept.result.vmcore_dmesg
    # and pykexec itself on /proc/vmcore in the capture kernel (32-bit Python for i386)
    guest = kept.guest_pykexec_dmesg
    assert guest["exit"] == 0 and guest["stderr"] == "", guest["stderr"]
    assert guest["stdout"] == kept.result.vmcore_dmesg


def test_dmesg_json_records(kept):
    p = pykexec("dmesg", "--json", str(kept.path))
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    seqs = [r["sequence"] for r in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    panic = [r for r in rows if PANIC_LINE in r["text"]]
    assert len(panic) == 1 and panic[0]["level"] == 0          # KERN_EMERG
    assert panic[0]["caller"].startswith(("T", "C"))
    assert rows[0]["text"].startswith("Linux version " + kept.release)


def test_info(kept):
    p = pykexec("info", "--json", str(kept.path))
    assert p.returncode == 0, p.stderr
    facts = json.loads(p.stdout)
    assert facts["release"] == kept.release == kept.uname_release
    assert facts["elf_class"] == kept.elfclass and facts["machine"] == kept.arch
    assert PANIC_LINE in facts["panic_line"]
    assert len(facts["cpus"]) == kept.cpus                      # one NT_PRSTATUS per CPU
    assert facts["panic_cpu"] is not None
    assert facts["cpus"][facts["panic_cpu"]]["pid"] != 0       # the task that wrote sysrq-c
    assert facts["complete"] and facts["problems"] == []
    assert facts["memory"]["in_file"] == facts["memory"]["total"]
    assert facts["log_format"] == "prb"
    table = pykexec("info", str(kept.path)).stdout.decode()
    assert f"release        {kept.release}" in table and "complete       yes" in table


def test_truncated_copy_is_refused_in_one_line(kept, tmp_path):
    """The real dump cut in the middle of its RAM: info says so, in one line, exit 1."""
    cut = tmp_path / "cut"
    with open(kept.path, "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read(64 << 20))
    p = pykexec("info", str(cut))
    err = p.stderr.decode()
    assert p.returncode == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"pykexec vmcore info: {cut}: incomplete dump: PT_LOAD"), err


def _vmcoreinfo(path):
    from pykexec.vmcore import Vmcore
    with Vmcore.open(str(path)) as d:
        return d.vmcoreinfo


def test_drgn_reads_release_and_log_without_debug_info(kept_vmcore_x86_64):
    """drgn opens pykexec's dump with no vmlinux debug info: symbols from the kernel's own
    kallsyms (load_vmlinux_kallsyms), memory through drgn's own translation. drgn's
    printk helper needs DWARF types, so the log is read with drgn's Program.read from the
    VMCOREINFO layout, and must be vmcore-dmesg's."""
    try:
        import drgn
        from drgn.helpers.linux.kallsyms import load_vmlinux_kallsyms
    except ImportError as err:
        require(False, f"drgn (PyPI) with kallsyms support not installed: {err}")
    path = kept_vmcore_x86_64.path
    prog = drgn.Program()
    prog.set_core_dump(str(path))
    prog.register_symbol_finder("kallsyms", load_vmlinux_kallsyms(prog), enable_index=0)
    info = _vmcoreinfo(path)
    uts = prog.symbol("init_uts_ns").address
    assert uts == info.symbol("init_uts_ns")
    # struct new_utsname: sysname, nodename, release: 65 bytes each
    release = prog.read(uts + info.offset("uts_namespace", "name") + 2 * 65, 65)
    assert release.split(b"\0")[0].decode() == kept_vmcore_x86_64.release

    def ulong(addr):
        return struct.unpack("<Q", prog.read(addr, 8))[0]
    off = lambda name: info.offset(*name.split("."))  # noqa: E731
    prb = ulong(prog.symbol("prb").address)
    ring = prb + off("printk_ringbuffer.desc_ring")
    text = prb + off("printk_ringbuffer.text_data_ring")
    count = 1 << struct.unpack("<I", prog.read(ring + off("prb_desc_ring.count_bits"), 4))[0]
    size = 1 << struct.unpack("<I", prog.read(text + off("prb_data_ring.size_bits"), 4))[0]
    descs = prog.read(ulong(ring + off("prb_desc_ring.descs")), count * info.size("prb_desc"))
    infos = prog.read(ulong(ring + off("prb_desc_ring.infos")), count * info.size("printk_info"))
    data = prog.read(ulong(text + off("prb_data_ring.data")), size)
    tail = ulong(ring + off("prb_desc_ring.tail_id"))
    head = ulong(ring + off("prb_desc_ring.head_id"))
    lines = []
    for rid in range(tail, head + 1):
        d = (rid % count) * info.size("prb_desc")
        i = (rid % count) * info.size("printk_info")
        state = struct.unpack_from("<Q", descs, d + off("prb_desc.state_var"))[0]
        if state & ((1 << 62) - 1) != rid or state >> 62 not in (1, 2):
            continue
        lpos = d + off("prb_desc.text_blk_lpos")
        begin = struct.unpack_from("<Q", descs, lpos + off("prb_data_blk_lpos.begin"))[0] % size
        end = struct.unpack_from("<Q", descs, lpos + off("prb_data_blk_lpos.next"))[0] % size
        n = struct.unpack_from("<H", infos, i + off("printk_info.text_len"))[0]
        if begin > end:
            begin = 0
        lines.append(bytes(data[begin + 8:begin + 8 + min(n, end - begin - 8)]))
    assert any(PANIC_LINE.encode() in line for line in lines)
    reference = subprocess.run([VMCORE_DMESG, str(path)], capture_output=True,
                               timeout=300).stdout
    # each record drgn read (printable ASCII ones: no escaping needed) is in vmcore-dmesg's
    # output, in the same order
    plain = [x for x in lines if x and all(32 <= c < 127 for c in x)]
    at = 0
    for x in plain:
        at = reference.find(b"] " + x + b"\n", at)
        assert at >= 0, x
    assert len(plain) > 100


def test_page_table_walk_agrees_with_the_linear_maps(kept):
    """The real dump's own page tables (x86_64: 5-level under TCG's -cpu max, at
    SYMBOL(init_top_pgt); i386: 2-level at swapper_pg_dir) map kernel text and the direct
    map where the linear rules say: the walk is checked against them."""
    from pykexec.vmcore import Vmcore
    from pykexec.vmcore.arch import walk_page_tables
    with Vmcore.open(str(kept.path)) as d:
        arch = d.arch
        assert arch.root is not None
        info = d.vmcoreinfo
        size = 8 if kept.arch == "x86_64" or arch.pae else 4     # page-table entry size
        read = arch.read_entry_reader(size)
        for name in ("prb", "init_uts_ns", "swapper_pg_dir"):
            vaddr = info.symbol(name)
            walked = walk_page_tables(read, arch.root, vaddr, arch.levels, size, arch.address_mask)
            linear = (vaddr - arch.page_offset if kept.arch == "i386"
                      else vaddr - 0xFFFFFFFF80000000 + arch.phys_base)
            assert walked == linear, name
        ram = max(d.loads, key=lambda ld: ld.memsz)
        vaddr = arch.page_offset + ram.paddr + 0x123456
        walked = walk_page_tables(read, arch.root, vaddr, arch.levels, size, arch.address_mask)
        assert walked == ram.paddr + 0x123456
        if kept.arch == "x86_64":
            assert len(arch.levels) == int(info["NUMBER(pgtable_l5_enabled)"]) + 4
