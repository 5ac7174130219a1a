"""Plan folders and plan decoding, on plans assembled byte by byte in the test.

The bytes here are packed with `struct` straight from the boot protocol and ELF
specifications (offsets written out), not with pykexec's construct declarations, so a wrong
offset in either side shows up as a failure.
"""

import json
import os
import struct

import pytest

from pykexec.core.plan import Plan, PlanFormatError, Segment, load_plan, save_plan
from pykexec.views.planfacts import annotate, compare_plans, decode_plan, read_cmdline

CRASH = (0x2E000000, 0x3E000000)
USER_CMDLINE = "console=ttyS0 irqpoll nr_cpus=1 reset_devices"


def make_core_header(backup_copy, page_offset=0xFFFF888000000000):
    """ELF64 ET_CORE header: 1 CPU note, vmcoreinfo, kernel text, 3 RAM loads (one backed up)."""
    ehdr = struct.pack("<4sBBBBB7xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0,
                       4, 62, 1, 0, 64, 0, 0, 64, 56, 6, 0, 0, 0)
    phdrs = [
        (4, 0, 0x3FC15C00, 0, 0x3FC15C00, 0x1A8, 0x1A8, 0),
        (4, 0, 0x3F6B4000, 0, 0x3F6B4000, 0x1024, 0x1024, 0),
        (1, 7, 0x1000000, 0xFFFFFFFF81000000, 0x1000000, 0x1A00000, 0x1A00000, 0),
        (1, 7, backup_copy, 0x1000 + page_offset, 0x1000, 0x9EC00, 0x9EC00, 0),
        (1, 7, 0x100000, 0x100000 + page_offset, 0x100000, 0x2DF00000, 0x2DF00000, 0),
        (1, 7, 0x3E000000, 0x3E000000 + page_offset, 0x3E000000, 0x1FE0000, 0x1FE0000, 0),
    ]
    body = ehdr + b"".join(struct.pack("<IIQQQQQQ", *p) for p in phdrs)
    return body + bytes(1024 - len(body))


def make_boot_params(cmdline_addr, setup_data_addr, e820):
    page = bytearray(4096)
    page[0x1F1] = 39                                   # setup_sects
    struct.pack_into("<H", page, 0x1FE, 0xAA55)
    struct.pack_into("<I", page, 0x202, 0x53726448)    # "HdrS"
    struct.pack_into("<H", page, 0x206, 0x020F)
    page[0x210] = 0xD0
    struct.pack_into("<I", page, 0x228, cmdline_addr & 0xFFFFFFFF)
    struct.pack_into("<I", page, 0x0C8, cmdline_addr >> 32)
    struct.pack_into("<Q", page, 0x250, setup_data_addr)
    struct.pack_into("<Q", page, 0x070, 0xF59D0)
    page[0x1E8] = len(e820)
    for i, (addr, size, typ) in enumerate(e820):
        struct.pack_into("<QQI", page, 0x2D0 + 20 * i, addr, size, typ)
    return bytes(page)


def make_plan(shift=0, kernel_payload=b"K" * 5000, initrd=b"I" * 3000, extra_e820=()):
    """A plan shaped like kexec-tools' x86_64 crash load, with every address moved by `shift`."""
    setup_data = 0x2E000000
    initrd_at = 0x393F9000 - shift
    kernel_at = 0x39E00000 - shift
    params_at = 0x3DF4E000 - shift
    purg_at = 0x3DF54000 - shift
    core_at = 0x3DF5D000 - shift
    backup_at = 0x3DF61000 - shift
    cmdline = f"{USER_CMDLINE} acpi_rsdp=0xf59d0 elfcorehdr={core_at // 1024}K"
    e820 = [(0x0, 0x1000, 2), (0x1000, 0x9EC00, 1), (0x9FC00, 0x400, 2),
            (0x2E000000, core_at - 0x2E000000, 1)] + list(extra_e820)
    ext = [(0xFED00000 + 0x1000 * i, 0x1000, 2) for i in range(3)]
    ext_blob = b"".join(struct.pack("<QQI", *e) for e in ext)
    rng = struct.pack("<QII", setup_data + 0x100, 9, 32) + bytes(range(32))
    e820ext = struct.pack("<QII", 0, 1, len(ext_blob)) + ext_blob
    setup_blob = rng + bytes(0x100 - len(rng)) + e820ext
    params = make_boot_params(params_at + 0x5000, setup_data, e820) + bytes(0x5000 - 4096) + cmdline.encode() + b"\0" + bytes(64)
    regs = [0, 0, 0, 0, params_at, 0, purg_at + 0x7000, 0] + [0] * 8 + [kernel_at + 0x200]
    purgatory = bytes(0x760) + b"\x90" * 16 + bytes(0x5000 - 0x770) + struct.pack("<17Q", *regs) + bytes(64)
    segments = [
        Segment(setup_data, 0x1000, setup_blob, "unknown"),
        Segment(initrd_at, 0x1000, initrd, "unknown"),
        Segment(kernel_at, 0x3F98000, kernel_payload, "unknown"),
        Segment(params_at, 0x6000, params, "unknown"),
        Segment(purg_at, 0x9000, purgatory, "unknown"),
        Segment(core_at, 0x4000, make_core_header(backup_at), "unknown"),
        Segment(backup_at, 0x9F000, bytes(0x9EC00), "unknown"),
    ]
    return Plan("x86_64", "kexec_load", 0x3E0001, purg_at + 0x760, None, segments)


@pytest.fixture
def files(tmp_path):
    kernel = bytearray(40 * 512)
    kernel[0x1F1] = 39
    kernel[0x202:0x206] = b"HdrS"
    kernel = bytes(kernel) + b"K" * 5000
    (tmp_path / "bzImage").write_bytes(kernel)
    (tmp_path / "initrd").write_bytes(b"I" * 3000)
    return str(tmp_path / "bzImage"), str(tmp_path / "initrd")


def test_save_and_load_round_trip(tmp_path):
    plan = make_plan()
    save_plan(plan, str(tmp_path / "p"))
    doc = json.loads((tmp_path / "p" / "plan.json").read_text())
    assert doc["flags"] == 0x3E0001 and isinstance(doc["segments"][0]["mem"], int)
    assert [s["bufsz"] for s in doc["segments"]] == [s.bufsz for s in plan.segments]
    again = load_plan(str(tmp_path / "p"))
    assert again == plan


def test_load_rejects_tampered_segment(tmp_path):
    save_plan(make_plan(), str(tmp_path / "p"))
    seg = tmp_path / "p" / "segment-03.bin"
    data = bytearray(seg.read_bytes())
    data[10] ^= 1
    seg.write_bytes(bytes(data))
    with pytest.raises(PlanFormatError, match="segment-03.bin"):
        load_plan(str(tmp_path / "p"))


def test_segment_rejects_bufsz_over_memsz():
    with pytest.raises(ValueError):
        Segment(0x1000, 0x1000, bytes(0x1001))


def test_annotate_classifies_every_segment(files):
    plan = annotate(make_plan(), *files)
    assert [s.kind for s in plan.segments] == [
        "setup_data", "initrd", "kernel", "boot_params", "purgatory", "elfcorehdr", "backup"]
    assert plan.cmdline == f"{USER_CMDLINE} acpi_rsdp=0xf59d0 elfcorehdr={0x3DF5D000 // 1024}K"


def test_decode_reads_e820_including_setup_data_extension(files):
    facts = decode_plan(annotate(make_plan(), *files))
    assert facts.e820[:3] == ((0x0, 0x1000, 2), (0x1000, 0x9EC00, 1), (0x9FC00, 0x400, 2))
    assert facts.e820[-3:] == tuple((0xFED00000 + 0x1000 * i, 0x1000, 2) for i in range(3))
    assert facts.setup_data_types == (9, 1)


def test_decode_core_header_and_registers(files):
    facts = decode_plan(annotate(make_plan(), *files))
    assert facts.core_class == 2 and facts.core_machine == 62
    assert [p.type for p in facts.program_headers] == ["NOTE", "NOTE", "LOAD", "LOAD", "LOAD", "LOAD"]
    backup = [p for p in facts.program_headers if p.points_elsewhere]
    assert len(backup) == 1 and backup[0].offset == 0x3DF61000 and backup[0].paddr == 0x1000
    assert facts.registers["rsi"] == 0x3DF4E000
    assert facts.registers["rip"] == 0x39E00200
    assert facts.boot_header["acpi_rsdp_addr"] == 0xF59D0


def test_moved_plan_differs_only_in_placement(files):
    a = annotate(make_plan(), *files)
    b = annotate(make_plan(shift=0x200000), *files)
    result = compare_plans(a, b, CRASH)
    assert result.equivalent, result.explain()
    facts = {d.fact for d in result.placement}
    assert {"segment addresses", "entry", "elfcorehdr= value"} <= facts


def test_changed_content_is_a_mismatch(files):
    a = annotate(make_plan(), *files)
    b = annotate(make_plan(extra_e820=[(0x40000000, 0x1000, 4)]), *files)
    result = compare_plans(a, b, CRASH)
    assert not result.equivalent
    assert [d.fact for d in result.must_match] == ["e820 outside the crash region"]


def test_different_kernel_bytes_is_a_mismatch(files, tmp_path):
    a = annotate(make_plan(), *files)
    b = annotate(make_plan(kernel_payload=b"X" * 5000), *files)
    result = compare_plans(a, b, CRASH)
    assert {"kernel bytes", "segment kinds"} <= {d.fact for d in result.must_match}


def test_file_load_plan_cmdline_is_the_argument():
    plan = Plan("x86_64", "kexec_file_load", 2, None, "root=/dev/sda",
                [Segment(None, 10, b"k" * 10), Segment(None, 5, b"i" * 5)])
    assert read_cmdline(plan) == "root=/dev/sda"
    assert [s.kind for s in annotate(plan).segments] == ["kernel", "initrd"]
