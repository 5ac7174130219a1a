"""The machine-data validation layer (pykexec.machine), as tables: input, then the answer.

Every rule here is one the kernel guarantees for what it writes (a resource tree of sorted,
disjoint, nested ranges; crash memory and note buffers inside System RAM; CPU lists as
bitmap_print_to_pagebuf prints them, below NR_CPUS); data that breaks one is damaged and
refused with one line naming the file. The expected values are written out by hand.
"""

from __future__ import annotations

import os
import struct

import pytest

import pykexec.machine.reader as machine_mod  # the reader: its limit and read function
from pykexec.machine import MachineError, RamIndex, parse_cpu_list, parse_iomem
from pykexec.core.ranges import Range
from pykexec.arch.x86.firmware import edd as x86_edd
from tests.unit.test_machine import make_machine, qemu_files

# -- CPU lists ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text,cpus", [
    ("0", (0,)),
    ("0-3", (0, 1, 2, 3)),
    ("0,2-3,5", (0, 2, 3, 5)),
    ("0-1\n", (0, 1)),
    ("", ()),
    ("7", (7,)),
    ("8191", (8191,)),
    ("2-2", (2,)),
])
def test_cpu_list_accepted(text, cpus):
    assert parse_cpu_list(text) == cpus


@pytest.mark.parametrize("text,why", [
    ("0-", "not a CPU list"),
    ("-1", "not a CPU list"),
    ("0,,1", "not a CPU list"),
    ("0-1,", "not a CPU list"),
    ("0 - 1", "not a CPU list"),
    ("0x1", "not a CPU list"),
    ("1-2-3", "not a CPU list"),
    ("all", "not a CPU list"),
    ("3-1", "runs backwards"),
    ("8192", "beyond the kernel's limit"),
    ("0-4294967295", "beyond the kernel's limit"),
    ("0-" + "9" * 40, "beyond the kernel's limit"),
])
def test_cpu_list_refused(text, why):
    with pytest.raises(ValueError, match=why):
        parse_cpu_list(text)


def test_huge_possible_is_refused_by_the_machine(tmp_path):
    m = make_machine(tmp_path, **{"sys/devices/system/cpu/possible": "0-4294967295\n"})
    with pytest.raises(MachineError, match=r"cpu/possible:1: '0-4294967295': CPU 4294967295") as e:
        m.nr_cpus_conf
    assert e.value.exit_status == 1


def test_many_possible_cpus_read_only_the_folders_that_exist(tmp_path):
    # 8192 possible CPUs, two folders: two notes, and one header slot per possible CPU.
    m = make_machine(tmp_path, **{"sys/devices/system/cpu/possible": "0-8191\n"})
    assert m.nr_cpus_conf == 8192
    assert [n.cpu for n in m.cpus] == [0, 1]


def test_a_cpu_folder_beyond_nr_cpus_is_ignored_as_kexec_tools_does(tmp_path):
    m = make_machine(tmp_path, **{"sys/devices/system/cpu/possible": "0\n"})
    assert [n.cpu for n in m.cpus] == [0]


# -- /proc/iomem --------------------------------------------------------------------------------

GOOD = "00000000-00000fff : Reserved\n00001000-0009ffff : System RAM\n"


@pytest.mark.parametrize("text,error", [
    (GOOD, None),
    # touching ranges are disjoint
    ("00000000-00000fff : A\n00001000-00001fff : B\n", None),
    # a child may fill its parent exactly
    ("000f0000-000fffff : Reserved\n  000f0000-000fffff : System ROM\n", None),
    # children sorted and disjoint inside their parent
    ("00100000-3fffffff : System RAM\n  01000000-01ffffff : Kernel code\n"
     "  02000000-02ffffff : Kernel data\n", None),
    # overlap by one byte
    ("00000000-00001000 : A\n00001000-00001fff : B\n", r":2: 00001000-00001fff overlaps 00000000-00001000 \(line 1\)"),
    # the same range twice
    ("00001000-00001fff : A\n00001000-00001fff : B\n", r":2: 00001000-00001fff overlaps"),
    # unsorted
    ("00002000-00002fff : A\n00001000-00001fff : B\n", r":2: 00001000-00001fff is below 00002000-00002fff"),
    # a child starting before its parent
    ("00100000-001fffff : System RAM\n  000f0000-0010ffff : X\n", r":2: 000f0000-0010ffff is not inside its parent 00100000-001fffff \(line 1\)"),
    # a child running past its parent
    ("00100000-001fffff : System RAM\n  00180000-002fffff : X\n", r":2: 00180000-002fffff is not inside its parent"),
    # overlapping children
    ("00100000-3fffffff : System RAM\n  01000000-01ffffff : Kernel code\n"
     "  01800000-02ffffff : Kernel data\n", r":3: 01800000-02ffffff overlaps 01000000-01ffffff"),
    # a grandchild outside its parent but inside its grandparent
    ("00100000-3fffffff : System RAM\n  01000000-01ffffff : A\n    02000000-020fffff : B\n",
     r":3: 02000000-020fffff is not inside its parent 01000000-01ffffff"),
    # all zero (non-root reader) is reported as such, not as an overlap
    ("00000000-00000000 : A\n00000000-00000000 : B\n", "every address is zero"),
    # 17 hex digits
    ("00000000-10000000000000000 : A\n", "address above 64 bits"),
])
def test_iomem_tree_table(text, error):
    if error is None:
        parse_iomem(text, "IOMEM")
    else:
        with pytest.raises(MachineError, match=error):
            parse_iomem(text, "IOMEM")






@pytest.mark.parametrize("iomem_change,error", [
    (None, None),
    (("0009fc00-0009ffff : Reserved", "0009fc00-0009ffff : Reserved\n  0009fc00-0009ffff : Crash kernel"),
     "crash region 0009fc00-0009ffff is not inside a System RAM line"),
])
def test_crash_region_must_be_under_system_ram(tmp_path, iomem_change, error):
    text = qemu_files()["proc/iomem"]
    if iomem_change:
        assert iomem_change[0] in text
        text = text.replace(iomem_change[0], iomem_change[1])
    m = make_machine(tmp_path, **{"proc/iomem": text})
    if error is None:
        assert m.crash_region is not None
    else:
        with pytest.raises(MachineError, match=error):
            m.crash_region


# -- RAM containment ----------------------------------------------------------------------------

RAM = RamIndex.of([Range(0x1000, 0xA0000), Range(0x100000, 0x40000000)])


@pytest.mark.parametrize("what,inside", [
    (Range(0x1000, 0x2000), True),            # at the start of the first range
    (Range(0x9F000, 0xA0000), True),          # up to the end of the first range
    (Range(0x9F000, 0xA0001), False),         # one byte past it
    (Range(0x0, 0x1000), False),              # below all RAM
    (Range(0xA0000, 0x100000), False),        # the hole between
    (Range(0x9F000, 0x101000), False),        # across the hole
    (Range(0x3FFFF000, 0x40000000), True),    # at the very end
    (Range(0x40000000, 0x40001000), False),   # above all RAM
])
def test_ram_index_table(what, inside):
    assert RAM.holds(what) is inside


@pytest.mark.parametrize("rel,text,error", [
    ("sys/devices/system/cpu/cpu0/crash_notes", "fee00000\n", r"cpu0/crash_notes: note at 0xfee00000\+0x1a8 is not inside System RAM"),
    ("sys/devices/system/cpu/cpu0/crash_notes", "3ffdff00\n", "is not inside System RAM"),  # straddles the end
    ("sys/devices/system/cpu/cpu0/crash_notes", "ffffffffffffff00\n", "is not inside System RAM"),
    ("sys/devices/system/cpu/cpu0/crash_notes_size", "0\n", "note size 0 is not between 1 and 1048576"),
    ("sys/devices/system/cpu/cpu0/crash_notes_size", "1048577\n", "note size 1048577"),
    ("sys/kernel/vmcoreinfo", "0xfed00000 1024\n", r"vmcoreinfo: note at 0xfed00000\+0x1024 is not inside"),
    ("sys/kernel/vmcoreinfo", "0x3f6b4000 0\n", "note size 0"),
    ("sys/kernel/vmcoreinfo", "0x3f6b4000 100001\n", "note size 1048577"),
])
def test_notes_must_lie_in_ram(tmp_path, rel, text, error):
    m = make_machine(tmp_path, **{rel: text})
    with pytest.raises(MachineError, match=error) as e:
        m.vmcoreinfo if "vmcoreinfo" in rel else m.cpus
    assert e.value.exit_status == 1 and "\n" not in str(e.value)


# -- reading machine files ----------------------------------------------------------------------

def test_a_fifo_is_refused_without_waiting(tmp_path):
    m = make_machine(tmp_path)
    os.remove(tmp_path / "proc/iomem")
    os.mkfifo(tmp_path / "proc/iomem")
    with pytest.raises(MachineError, match="proc/iomem: not a regular file"):
        m.iomem


def test_a_device_is_refused(tmp_path):
    m = make_machine(tmp_path)
    os.remove(tmp_path / "proc/kallsyms")
    os.symlink("/dev/zero", tmp_path / "proc/kallsyms")
    with pytest.raises(MachineError, match="kallsyms: not a regular file"):
        m.symbol("_stext")


def test_an_oversized_file_is_refused_after_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(machine_mod, "MAX_MACHINE_FILE", 1000)
    m = make_machine(tmp_path, **{"proc/iomem": "00000000-00000fff : Reserved\n" * 100})
    with pytest.raises(MachineError, match="proc/iomem: larger than"):
        m.iomem


# -- EDD ----------------------------------------------------------------------------------------

RAW = struct.pack("<HHIIIQH", 0x1A, 2, 16383, 16, 63, 1 << 32, 512)


def edd_disk(dev, version="0x30\n", raw=RAW, sig="0x0badf00d\n", **extra):
    base = f"sys/firmware/edd/int13_dev{dev}"
    files = {f"{base}/version": version}
    if sig is not None:
        files[f"{base}/mbr_signature"] = sig
    if version.strip() not in ("0x0", "0x00"):
        files.update({f"{base}/legacy_max_cylinder": "1023\n", f"{base}/legacy_max_head": "254\n",
                      f"{base}/legacy_sectors_per_track": "63\n",
                      f"{base}/extensions": "Fixed disk access\n64-bit extensions\n"})
        if raw is not None:
            files[f"{base}/raw_data"] = raw
    for k, v in extra.items():
        if v is None:
            files.pop(f"{base}/{k}", None)
        else:
            files[f"{base}/{k}"] = v
    return files


def test_edd_absent_is_none(tmp_path):
    assert x86_edd(make_machine(tmp_path)) is None


def test_edd_one_disk(tmp_path):
    edd = x86_edd(make_machine(tmp_path, **edd_disk("80")))
    assert edd.problem is None and edd.mbr_signatures == (0x0BADF00D,)
    (entry,) = edd.entries
    assert entry == dict(device=0x80, version=0x30, interface_support=0b1001,
                         legacy_max_cylinder=1023, legacy_max_head=254,
                         legacy_sectors_per_track=63, params=RAW + bytes(74 - len(RAW)))


def test_edd_version_zero_is_a_dummy_entry(tmp_path):
    edd = x86_edd(make_machine(tmp_path, **edd_disk("81", version="0x0\n")))
    assert edd.entries[0]["device"] == 0x81 and edd.entries[0]["version"] == 0
    assert edd.entries[0]["params"] == bytes(74) and edd.mbr_signatures == (0x0BADF00D,)


@pytest.mark.parametrize("files,problem", [
    (edd_disk("80", raw=None), "raw_data is missing"),
    (edd_disk("80", raw=RAW[:10]), "raw_data says 26 bytes but has 10"),
    (edd_disk("80", legacy_max_head=None), "legacy_max_head is missing"),
    (edd_disk("80", legacy_max_head="x\n"), "legacy_max_head: expected"),
    (edd_disk("80", extensions=None), "extensions is missing"),
    (edd_disk("80", version="30\n"), "version: expected 0x"),
    (edd_disk("zz"), "int13_dev"),
    ({k: v for d in range(0x80, 0x87) for k, v in edd_disk(f"{d:02x}").items()}, "7 int13_dev entries"),
])
def test_edd_problem_leaves_everything_out(tmp_path, files, problem):
    edd = x86_edd(make_machine(tmp_path, **files))
    assert edd.entries == () and edd.mbr_signatures == ()
    assert problem in edd.problem and "sys/firmware/edd" in edd.problem


def test_edd_unscannable_signature_is_skipped(tmp_path):
    edd = x86_edd(make_machine(tmp_path, **edd_disk("80", sig="none\n")))
    assert edd.problem is None and edd.mbr_signatures == () and len(edd.entries) == 1


# -- the recorded architecture ------------------------------------------------------------------

@pytest.mark.parametrize("recorded,e_machine,error", [
    ("x86_64", 62, None),
    ("i686", 3, None),
    ("x86_64", 3, "machine 'x86_64' but .*proc/kcore is an i386 kernel's"),
    ("i686", 62, "machine 'i686' but .*proc/kcore is an x86_64 kernel's"),
])
def test_recorded_machine_must_match_the_kcore(tmp_path, recorded, e_machine, error):
    import json
    kcore = bytearray(qemu_files()["proc/kcore"])
    struct.pack_into("<H", kcore, 18, e_machine)
    m = make_machine(tmp_path, **{"proc/kcore": bytes(kcore),
                                  "snapshot.json": json.dumps({"format": 1, "machine": recorded})})
    if error is None:
        assert m.machine_arch == recorded
    else:
        with pytest.raises(MachineError, match=error):
            m.machine_arch


# -- properties ---------------------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def disjoint_ranges(draw):
    """Sorted, disjoint, non-empty inclusive ranges (maybe touching), as iomem prints them."""
    cuts = sorted(draw(st.sets(st.integers(0, (1 << 40) - 1), min_size=2, max_size=40)))
    pairs = list(zip(cuts[::2], cuts[1::2]))
    return [(a, b) for a, b in pairs if a <= b]


@settings(max_examples=200, deadline=None)
@given(disjoint_ranges(), st.randoms())
def test_iomem_sorted_disjoint_accepted_any_other_order_refused(ranges, rnd):
    def render(rs):
        return "".join(f"{a:08x}-{b:08x} : R{i}\n" for i, (a, b) in enumerate(rs))
    tree = parse_iomem(render(ranges), "IOMEM")
    assert [(n.range.start, n.range.last) for n in tree.top] == ranges
    shuffled = list(ranges)
    rnd.shuffle(shuffled)
    if shuffled != ranges:
        with pytest.raises(MachineError, match="sorted and disjoint"):
            parse_iomem(render(shuffled), "IOMEM")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9000), st.integers(0, 40)), min_size=1, max_size=20))
def test_cpu_lists_bounded_and_exact(parts):
    text = ",".join(f"{lo}-{lo + n}" if n else f"{lo}" for lo, n in parts)
    expected = sorted({c for lo, n in parts for c in range(lo, lo + n + 1)})
    if expected[-1] >= 8192:
        with pytest.raises(ValueError, match="beyond the kernel's limit"):
            parse_cpu_list(text)
    else:
        assert parse_cpu_list(text) == tuple(expected)


def test_machine_files_are_read_in_reads_a_sysctl_accepts(monkeypatch, tmp_path):
    """A /proc/sys file answers ENOMEM to one read of KMALLOC_MAX_SIZE (4 MiB) or more: the
    kernel allocates the buffer asked for. The bed's guests hit this on /proc/sys/kernel/arch."""
    import errno
    import os as os_mod

    from pykexec.machine import reader as machine_mod

    real_read = os_mod.read

    def sysctl_read(fd, n):
        if n >= 4 << 20:
            raise OSError(errno.ENOMEM, "Cannot allocate memory")
        return real_read(fd, n)

    path = tmp_path / "arch"
    path.write_bytes(b"x86_64\n")
    monkeypatch.setattr(machine_mod.os, "read", sysctl_read)
    assert machine_mod.read_machine_file(str(path), None) == b"x86_64\n"
    big = tmp_path / "kallsyms"
    big.write_bytes(b"a" * (5 << 20))
    assert len(machine_mod.read_machine_file(str(big), None)) == 5 << 20
    assert len(machine_mod.read_machine_file(str(big), 100)) == 100


def test_a_live_sysctl_file_reads():
    """The same rule on this machine's kernel (the ENOMEM above is the kernel's, not a model)."""
    import os as os_mod

    from pykexec.machine import read_machine_file
    assert read_machine_file("/proc/sys/kernel/arch", None).decode().strip() == os_mod.uname().machine
