"""pykexec.machine.snapshot.take_snapshot on a fake root folder."""

import json
import os
import struct

import pytest

from pykexec.machine.snapshot import (SnapshotError, filter_kallsyms, kcore_header_length,
                              take_snapshot)

IOMEM = (b"00000000-00000fff : Reserved\n00001000-0009fbff : System RAM\n"
         b"00100000-3ffdffff : System RAM\n  2f000000-3effffff : Crash kernel\n")
KALLSYMS = (b"ffffffff81000000 T _text\n"
            b"ffffffff81000000 T startup_64\n"
            b"ffffffff81001000 T _stext\n"
            b"ffffffff81001234 t some_local\n"
            b"ffffffff82000000 D phys_base\n"
            b"0000000000000000 A fixed_percpu_data\n"
            b"ffffffffc0000000 t _text\t[virtio]\n"
            b"ffffffff83000000 B _end\n")


def fake_kcore(phnum=3, notes=b"\x05\x00\x00\x00" * 300):
    """ELF64 header, a PT_NOTE then phnum - 1 PT_LOADs, the notes right after the headers."""
    ehdr = bytearray(64)
    ehdr[:7] = b"\x7fELF\x02\x01\x01"
    struct.pack_into("<HHI", ehdr, 16, 4, 62, 1)
    struct.pack_into("<Q", ehdr, 0x20, 64)           # e_phoff
    struct.pack_into("<HHHH", ehdr, 0x34, 64, 56, phnum, 0)
    note_off = 64 + 56 * phnum
    phdrs = struct.pack("<IIQQQQQQ", 4, 0, note_off, 0, 0, len(notes), 0, 4)
    phdrs += b"".join(struct.pack("<IIQQQQQQ", 1, 7, 0x100000 * (i + 1), 0xffff888000000000,
                                  0, 0x1000, 0x1000, 0x1000) for i in range(phnum - 1))
    return bytes(ehdr) + phdrs + notes + b"\xAA" * 20000      # followed by "memory"


def put(root, rel, data):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


@pytest.fixture
def fake_root(tmp_path):
    root = str(tmp_path / "root")
    put(root, "proc/iomem", IOMEM)
    put(root, "proc/cmdline", "console=ttyS0 crashkernel=256M\n")
    put(root, "proc/mounts", "rootfs / rootfs rw 0 0\n")
    put(root, "proc/kallsyms", KALLSYMS)
    put(root, "proc/kcore", fake_kcore())
    put(root, "proc/sys/kernel/osrelease", "6.1.0-56-amd64\n")
    put(root, "proc/sys/kernel/kexec_load_disabled", "0\n")
    put(root, "sys/kernel/vmcoreinfo", "3f8e7000 1000\n")
    put(root, "sys/kernel/kexec_crash_size", "268435456\n")
    put(root, "sys/kernel/kexec_crash_loaded", "0\n")
    put(root, "sys/kernel/kexec_loaded", "0\n")
    put(root, "sys/kernel/boot_params/data", bytes(range(256)) * 16)
    put(root, "sys/kernel/boot_params/version", "0x020f\n")
    for name in ("possible", "present", "online"):
        put(root, f"sys/devices/system/cpu/{name}", "0-1\n")
    for cpu in (0, 1, 10):
        put(root, f"sys/devices/system/cpu/cpu{cpu}/crash_notes", f"3fc1{cpu:04x}\n")
        put(root, f"sys/devices/system/cpu/cpu{cpu}/crash_notes_size", "368\n")
        put(root, f"sys/devices/system/cpu/cpu{cpu}/online", "1\n")   # not copied
    put(root, "sys/devices/system/cpu/cpufreq/boost", "0\n")          # not a cpuN
    for n, (s, e, t) in enumerate([("0x0", "0x9fbff", "System RAM"),
                                   ("0x100000", "0x3ffdffff", "System RAM")]):
        for k, v in (("start", s), ("end", e), ("type", t)):
            put(root, f"sys/firmware/memmap/{n}/{k}", v + "\n")
    put(root, "sys/firmware/acpi/tables/DSDT", b"\x00" * 100)          # omitted on purpose
    return root


def read(dest, rel):
    with open(os.path.join(dest, rel), "rb") as f:
        return f.read()


def test_copies_listed_files_byte_exact(fake_root, tmp_path):
    dest = str(tmp_path / "snap")
    doc = take_snapshot(dest, root=fake_root, source="qemu", notes="fake machine")
    for rel in ("proc/iomem", "proc/cmdline", "proc/mounts", "sys/kernel/vmcoreinfo",
                "sys/kernel/boot_params/data", "sys/kernel/kexec_crash_size",
                "sys/devices/system/cpu/possible", "proc/sys/kernel/kexec_load_disabled",
                "sys/firmware/memmap/1/end", "sys/devices/system/cpu/cpu10/crash_notes"):
        assert read(dest, rel) == read(fake_root, rel), rel
    assert not os.path.exists(os.path.join(dest, "sys/firmware/acpi"))
    assert not os.path.exists(os.path.join(dest, "sys/devices/system/cpu/cpu0/online"))
    assert not os.path.exists(os.path.join(dest, "sys/devices/system/cpu/cpufreq"))
    assert not os.path.exists(os.path.join(dest, "sys/firmware/efi"))
    assert not os.path.exists(os.path.join(dest, "proc/sys/kernel/kexec_load_limit_panic"))
    meta = json.loads(read(dest, "snapshot.json"))
    assert meta == doc
    assert meta["format"] == 1 and meta["source"] == "qemu" and meta["notes"] == "fake machine"
    assert meta["kernel_release"] == "6.1.0-56-amd64"
    assert meta["machine"] == "x86_64"   # from the fake kcore's EM_X86_64, not the host
    assert "T" in meta["taken"]


def test_kallsyms_filtered(fake_root, tmp_path):
    dest = str(tmp_path / "snap")
    take_snapshot(dest, root=fake_root)
    assert read(dest, "proc/kallsyms") == (b"ffffffff81000000 T _text\n"
                                           b"ffffffff81000000 T startup_64\n"
                                           b"ffffffff81001000 T _stext\n"
                                           b"ffffffff82000000 D phys_base\n"
                                           b"ffffffff83000000 B _end\n")


def test_kcore_cut_after_headers_and_notes(fake_root, tmp_path):
    dest = str(tmp_path / "snap")
    take_snapshot(dest, root=fake_root)
    data = read(dest, "proc/kcore")
    assert len(data) == 4096
    assert data == fake_kcore()[:4096]


def test_kcore_header_length_rounds_to_pages():
    assert kcore_header_length(fake_kcore(3)) == 4096
    assert kcore_header_length(fake_kcore(80, notes=b"")) == 8192   # 64 + 80*56 = 4544


@pytest.mark.parametrize("data, why", [
    (b"", "not an ELF file"),
    (b"\x7fELF", "ends after its magic"),
    (b"\x7fELF\x09" + bytes(60), "unknown ELF class 9"),
    (fake_kcore(3)[:40], "ELF header is cut"),
    (fake_kcore(3)[:64], "program headers end at"),
])
def test_a_damaged_kcore_is_one_value_error(data, why):
    with pytest.raises(ValueError, match=why):
        kcore_header_length(data)


def test_kcore_keeps_the_notes():
    # headers end at 232, notes (5000 bytes) at 5232: kexec-tools parses the notes too.
    assert kcore_header_length(fake_kcore(3, notes=b"\0" * 5000)) == 8192


def test_efi_and_edd_when_present(fake_root, tmp_path):
    put(fake_root, "sys/firmware/efi/systab", "ACPI20=0x7fb7e014\n")
    put(fake_root, "sys/firmware/efi/fw_vendor", "0x7fc1e018\n")
    put(fake_root, "sys/firmware/efi/runtime-map/0/type", "0x5\n")
    put(fake_root, "sys/firmware/efi/runtime-map/0/phys_addr", "0x7f9d0000\n")
    put(fake_root, "sys/firmware/efi/efivars/x", "not copied\n")
    put(fake_root, "sys/firmware/edd/int13_dev80/raw_data", b"\x1e\x00\x01\x00")
    put(fake_root, "sys/firmware/edd/int13_dev80/version", "0x30\n")
    dest = str(tmp_path / "snap")
    take_snapshot(dest, root=fake_root)
    assert read(dest, "sys/firmware/efi/systab") == b"ACPI20=0x7fb7e014\n"
    assert read(dest, "sys/firmware/efi/runtime-map/0/phys_addr") == b"0x7f9d0000\n"
    assert not os.path.exists(os.path.join(dest, "sys/firmware/efi/efivars"))
    assert read(dest, "sys/firmware/edd/int13_dev80/raw_data") == b"\x1e\x00\x01\x00"
    assert read(dest, "sys/firmware/edd/int13_dev80/version") == b"0x30\n"


def test_device_tree_when_present(fake_root, tmp_path):
    take_snapshot(str(tmp_path / "none"), root=fake_root)
    assert not os.path.exists(str(tmp_path / "none/sys/firmware/fdt"))
    dtb = bytes.fromhex("d00dfeed") + bytes(range(256)) * 8      # copied as is, never parsed
    put(fake_root, "sys/firmware/fdt", dtb)
    dest = str(tmp_path / "snap")
    take_snapshot(dest, root=fake_root)
    assert read(dest, "sys/firmware/fdt") == dtb


def test_a_damaged_device_tree_is_a_warning(fake_root):
    from pykexec.machine.snapcheck import snapshot_problems
    real = (os.path.join(os.path.dirname(__file__), "..", "snapshots", "qemu-arm64-2g-1cpu",
                         "sys", "firmware", "fdt"))
    with open(real, "rb") as f:
        dtb = f.read()
    put(fake_root, "sys/firmware/fdt", dtb)
    assert snapshot_problems(fake_root) == (None, [])
    for data, why in ((dtb[:4096], f"is cut short: its header says {len(dtb)} bytes, the file "
                                   f"has 4096"),
                      (b"\0" * 64, "does not start with the device tree magic 0xd00dfeed")):
        put(fake_root, "sys/firmware/fdt", data)
        fatal, warnings = snapshot_problems(fake_root)
        assert fatal is None and len(warnings) == 1
        assert warnings[0] == (f"/sys/firmware/fdt (under {fake_root}) {why}; the snapshot keeps "
                               f"it as it is, and a loader using the snapshot will refuse it")


def test_missing_required_file_is_one_line_error(fake_root, tmp_path):
    os.remove(os.path.join(fake_root, "proc/iomem"))
    with pytest.raises(SnapshotError) as e:
        take_snapshot(str(tmp_path / "snap"), root=fake_root)
    assert "/proc/iomem" in str(e.value) and "\n" not in str(e.value)


def test_unreadable_file_is_one_line_error(fake_root, tmp_path):
    # A directory where a file should be cannot be read, even by root.
    path = os.path.join(fake_root, "sys/kernel/vmcoreinfo")
    os.remove(path)
    os.mkdir(path)
    with pytest.raises(SnapshotError) as e:
        take_snapshot(str(tmp_path / "snap"), root=fake_root)
    msg = str(e.value)
    assert "/sys/kernel/vmcoreinfo" in msg and "\n" not in msg


def test_bad_kcore_is_reported(fake_root, tmp_path):
    put(fake_root, "proc/kcore", b"garbage" * 10)
    with pytest.raises(SnapshotError, match="/proc/kcore"):
        take_snapshot(str(tmp_path / "snap"), root=fake_root)


def test_refuses_non_empty_destination(fake_root, tmp_path):
    dest = tmp_path / "snap"
    dest.mkdir()
    (dest / "x").write_text("x")
    with pytest.raises(SnapshotError, match="not empty"):
        take_snapshot(str(dest), root=fake_root)


def test_filter_kallsyms_skips_modules():
    assert filter_kallsyms(b"ffffffffc0000000 t _text\t[virtio]\n") == b""


def test_machine_comes_from_the_source_not_the_host(fake_root, tmp_path):
    # An i386 source (its arch file and its kcore's EM_386) whatever the host runs.
    put(fake_root, "proc/sys/kernel/arch", "i686\n")
    kcore = bytearray(fake_kcore())
    struct.pack_into("<H", kcore, 18, 3)
    put(fake_root, "proc/kcore", bytes(kcore))
    doc = take_snapshot(str(tmp_path / "a"), root=fake_root)
    assert doc["machine"] == "i686"
    assert read(str(tmp_path / "a"), "proc/sys/kernel/arch") == b"i686\n"


@pytest.mark.parametrize("kcore_machine,expected", [(62, "x86_64"), (3, "i686")])
def test_machine_from_kcore_e_machine(tmp_path, kcore_machine, expected):
    from pykexec.machine.snapshot import source_machine
    root = str(tmp_path / "root")
    head = bytearray(fake_kcore())
    struct.pack_into("<H", head, 18, kcore_machine)
    put(root, "proc/kcore", bytes(head))
    assert source_machine(root) == expected


def test_machine_unknown_is_refused_and_leaves_nothing(fake_root, tmp_path):
    os.remove(os.path.join(fake_root, "proc/kcore"))
    put(fake_root, "proc/kallsyms", b"")
    with pytest.raises(SnapshotError, match="cannot tell the architecture"):
        take_snapshot(str(tmp_path / "snap"), root=fake_root)
    assert os.listdir(tmp_path) == ["root"]


def test_failed_snapshot_leaves_no_partial_folder(fake_root, tmp_path):
    put(fake_root, "proc/kcore", b"garbage" * 10)   # fails after the plain files are copied
    with pytest.raises(SnapshotError):
        take_snapshot(str(tmp_path / "snap"), root=fake_root)
    assert sorted(os.listdir(tmp_path)) == ["root"]
    put(fake_root, "proc/kcore", fake_kcore())
    take_snapshot(str(tmp_path / "snap"), root=fake_root)     # the retry works
    assert os.path.exists(tmp_path / "snap" / "snapshot.json")


@pytest.mark.parametrize("dest,pattern", [
    ("", "destination path is empty"), ("FILE", "exists and is not a folder"),
    ("/proc/xyz", "/proc/xyz"),
])
def test_bad_destination_is_one_line(fake_root, tmp_path, dest, pattern):
    if dest == "FILE":
        dest = str(tmp_path / "file")
        put(str(tmp_path), "file", "x")
    with pytest.raises(SnapshotError, match=pattern) as e:
        take_snapshot(dest, root=fake_root)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("dest,sysroot,fragment", [
    ("FILE", None, "exists and is not a folder"),
    ("", None, "destination path is empty"),
    ("/proc/xyz", None, "/proc/xyz"),
    ("NEW", "", "--sysroot: the path is empty"),
    ("NEW", "FILE", "is not a folder"),
])
def test_snapshot_command_refusals_exit_1_with_one_line(fake_root, tmp_path, capsys, dest,
                                                        sysroot, fragment):
    from pykexec.cli import main
    put(str(tmp_path), "file", "x")
    subst = {"FILE": str(tmp_path / "file"), "NEW": str(tmp_path / "new")}
    argv = ["snapshot", subst.get(dest, dest),
            "--sysroot", fake_root if sysroot is None else subst.get(sysroot, sysroot)]
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 1 and len(err.splitlines()) == 1 and fragment in err, err
    assert not os.path.exists(tmp_path / "new")


def test_a_fifo_in_the_source_is_refused_without_waiting(fake_root, tmp_path):
    os.remove(os.path.join(fake_root, "sys/kernel/vmcoreinfo"))
    os.mkfifo(os.path.join(fake_root, "sys/kernel/vmcoreinfo"))
    with pytest.raises(SnapshotError, match="/sys/kernel/vmcoreinfo: not a regular file"):
        take_snapshot(str(tmp_path / "snap"), root=fake_root)
    assert sorted(os.listdir(tmp_path)) == ["root"]


@pytest.mark.parametrize("arch_file,kcore_machine,recorded,expected", [
    (None, 62, None, "x86_64"),
    (None, 3, None, "i686"),
    ("i686\n", 3, "i586", "i686"),                    # one family: the arch file answers
    (None, None, "i686", "i686"),                     # a snapshot of a snapshot
    (None, 62, "i686", "snapshot.json says i686"),    # contradiction: refused (fuzz M1)
    ("i686\n", 62, None, "proc/kcore's ELF header says x86_64"),
])
def test_source_machine_rule(tmp_path, arch_file, kcore_machine, recorded, expected):
    from pykexec.machine.snapshot import source_machine
    root = str(tmp_path / "root")
    os.makedirs(root)
    if arch_file:
        put(root, "proc/sys/kernel/arch", arch_file)
    if kcore_machine:
        head = bytearray(fake_kcore())
        struct.pack_into("<H", head, 18, kcore_machine)
        put(root, "proc/kcore", bytes(head))
    if recorded:
        put(root, "snapshot.json", json.dumps({"format": 1, "machine": recorded}))
    if " says " in expected:
        with pytest.raises(SnapshotError, match=expected):
            source_machine(root)
    else:
        assert source_machine(root) == expected
