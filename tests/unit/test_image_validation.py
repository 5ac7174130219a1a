"""The kernel-image validation layer (bzImage setup-header rules, ELF program headers), the
command line as bytes end to end, and the loaders' use of both on x86_64 and i386."""

from __future__ import annotations

import gzip
import io
import lzma
import os
import struct
from contextlib import redirect_stderr, redirect_stdout

import pytest

from pykexec.host import syscall
from pykexec.arch import plan_load
from pykexec.arch.x86.bzimage import HEADER_RULES, BzImage, ImageError
from pykexec.cli import run
from pykexec.errors import LoadError
from pykexec.machine import Machine
from pykexec.arch import parse_args
from pykexec.request import UsageError
from tests.bed.fakekernel import FakeKernel, bzimage_bytes
from tests.bed.fakekernel32 import I386_BZIMAGE

SNAPSHOTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "snapshots")
X86_64 = os.path.join(SNAPSHOTS, "qemu-x86_64-1g-2cpu")
X86_64_AT16M = os.path.join(SNAPSHOTS, "qemu-x86_64-1g-2cpu-at16m")
I386 = os.path.join(SNAPSHOTS, "qemu-i386-1g-2cpu-at16m")
# setup-header offsets, by hand (Documentation/arch/x86/boot.rst)
OFFSETS = {"setup_sects": (0x1F1, "<B"), "syssize": (0x1F4, "<I"),
           "kernel_alignment": (0x230, "<I"), "relocatable_kernel": (0x234, "<B"),
           "cmdline_size": (0x238, "<I"), "pref_address": (0x258, "<Q"),
           "init_size": (0x260, "<I")}


def patched(kernel=FakeKernel(), cut=0, **fields) -> bytes:
    data = bytearray(bzimage_bytes(kernel))
    for name, value in fields.items():
        offset, fmt = OFFSETS[name]
        struct.pack_into(fmt, data, offset, value)
    return bytes(data[:len(data) - cut])


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def plan(snapshot, argv):
    return plan_load(parse_args(argv + ["--sysroot", snapshot]), Machine.read(snapshot),
                     random_bytes=lambda n: bytes(n))


# --- bzImage header rules ------------------------------------------------------------------

@pytest.mark.parametrize("field,bad,good", [
    ("syssize", 0, 0x400),                        # FakeKernel: 16 KiB payload = 0x400 paragraphs
    ("syssize", 0x401, 0x3FF),
    ("kernel_alignment", 0, 0x1000),
    ("kernel_alignment", 0x300000, 0x400000),
    ("pref_address", 0x1000800, 0x1001000),
    ("init_size", 0, 0x4000),
    ("init_size", 0x3FFF, 0x100000),
])
def test_each_header_rule_refuses_its_bad_value_and_names_it(field, bad, good):
    assert field in {r.field for r in HEADER_RULES}
    BzImage.parse(patched(**{field: good})).validate("k")
    with pytest.raises(ImageError, match=rf"^k: setup header {field}={bad:#x} "):
        BzImage.parse(patched(**{field: bad})).validate("k")


def test_a_signature_after_the_kernel_is_allowed():
    """Signed kernels (sbsign) carry bytes after setup + syssize * 16."""
    BzImage.parse(bzimage_bytes(FakeKernel()) + b"\x30\x82" * 700).validate("signed")


def test_rules_apply_from_their_protocol_version():
    """Before 2.10 a header has no init_size or pref_address: zeros there are not checked."""
    BzImage.parse(patched(FakeKernel(protocol=0x0209), init_size=0, pref_address=3)).validate("k")


# --- what the loaders do with them ---------------------------------------------------------

@pytest.mark.parametrize("snapshot,kernel", [(X86_64, FakeKernel()), (I386, I386_BZIMAGE)],
                         ids=["x86_64", "i386"])
def test_truncated_kernel_is_refused_by_both_loaders(tmp_path, snapshot, kernel):
    path = write(tmp_path, "cut", patched(kernel, cut=512))
    with pytest.raises(ImageError, match="cut: setup header syssize="):
        plan(snapshot, ["-p", path])


@pytest.mark.parametrize("snapshot,kernel", [(X86_64, FakeKernel()), (I386, I386_BZIMAGE)],
                         ids=["x86_64", "i386"])
def test_cmdline_size_is_checked_on_the_final_line(tmp_path, snapshot, kernel):
    """The line with elfcorehdr= must fit cmdline_size, to the byte."""
    append = ["--append=console=ttyS0"]
    final = plan(snapshot, ["-p", write(tmp_path, "k", patched(kernel))] + append).cmdline
    exact = write(tmp_path, "exact", patched(kernel, cmdline_size=len(final)))
    assert plan(snapshot, ["-p", exact] + append).cmdline == final
    short = write(tmp_path, "short", patched(kernel, cmdline_size=len(final) - 1))
    with pytest.raises(LoadError, match=f"short: the final command line is {len(final)} bytes"):
        plan(snapshot, ["-p", short] + append)


def test_non_relocatable_capture_kernel_runs_at_pref_address_when_the_region_has_it(tmp_path):
    """The at16m guest's crash region starts at 16 MiB = pref_address: the kernel goes there."""
    path = write(tmp_path, "fixed", patched(relocatable_kernel=0))
    p = plan(X86_64_AT16M, ["-p", path])
    [kernel] = p.segments_of("kernel")
    assert kernel.mem == 0x1000000
    with pytest.raises(LoadError, match="fixed: this bzImage is not relocatable"):
        plan(X86_64, ["-p", path])


def test_normal_load_of_non_relocatable_kernel_reserves_pref_address(tmp_path):
    path = write(tmp_path, "fixed", patched(relocatable_kernel=0))
    [kernel] = plan(X86_64, ["-l", path]).segments_of("kernel")
    assert kernel.mem == 0x1000000


def _zstd(data: bytes) -> bytes:
    import zstandard
    return zstandard.ZstdCompressor().compress(data)


@pytest.mark.parametrize("compress", [gzip.compress, lzma.compress, _zstd], ids=["gzip", "xz", "zstd"])
def test_kexec_load_of_a_compressed_kernel_equals_the_plain_one(tmp_path, compress):
    raw = bzimage_bytes(FakeKernel())
    plain = plan(X86_64, ["-c", "-p", write(tmp_path, "bz", raw)])
    packed = plan(X86_64, ["-c", "-p", write(tmp_path, "bz.z", compress(raw))])
    assert [(s.mem, s.data) for s in plain.segments if s.kind != "kernel"] == \
        [(s.mem, s.data) for s in packed.segments if s.kind != "kernel"]
    assert plain.segments_of("kernel")[0].data == packed.segments_of("kernel")[0].data == raw[0xA00:]


# --- ELF images ----------------------------------------------------------------------------

def elf64(phdrs, entry):
    ehdr = struct.pack("<4sBBBBB7xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, 2, 62, 1, entry,
                       64, 0, 0, 64, 56, len(phdrs), 0, 0, 0)
    table = b"".join(struct.pack("<IIQQQQQQ", 1, 7, off, paddr | 0xFFFFFFFF00000000, paddr,
                                 filesz, memsz, 0x1000) for off, paddr, filesz, memsz in phdrs)
    body = ehdr + table
    return body + b"\x90" * (0x3000 - len(body))


def test_elf_warning_names_the_part_that_does_not_fit(tmp_path, capsys):
    """Linked at the region's last page, with a second page beyond it: the start fits,
    the end does not, and the warning says which part."""
    region_end = 0x11000000                        # at16m: crash region 16 MiB - 272 MiB
    start = region_end - 0x1000
    path = write(tmp_path, "vmlinux", elf64([(0x1000, start, 0x1000, 0x1000),
                                             (0x2000, region_end, 0x1000, 0x1000)], start))
    p = plan(X86_64_AT16M, ["-p", path, "--args-linux"])
    [warning] = [w for w in p.notes["warnings"] if "linked at" in w]
    assert f"linked at {start:#x}-{region_end + 0xfff:#x}" in warning
    assert f"its part at {region_end:#x}-{region_end + 0xfff:#x} is not inside" in warning


def test_elf_segments_carry_exactly_the_file_bytes_then_zeros(tmp_path):
    path = write(tmp_path, "vmlinux", elf64([(0x1000, 0x2000000, 0x800, 0x3000)], 0x2000000))
    p = plan(X86_64_AT16M, ["-p", path, "--args-linux"])
    [seg] = p.segments_of("elf_load")
    assert seg.mem == 0x2000000 and seg.data == b"\x90" * 0x800 and seg.memsz == 0x3000


# --- address options -----------------------------------------------------------------------

@pytest.mark.parametrize("value", ["-5", "0x1" + "0" * 16, "-0x1", "18446744073709551616"])
def test_entry_out_of_range_is_a_usage_error(value):
    """--mem-min/--mem-max follow kexec-tools' strtoul instead (test_request.py)."""
    with pytest.raises(UsageError, match=f"--entry={value}"):
        parse_args(["-p", "k", f"--entry={value}"])


def test_the_largest_address_is_accepted():
    assert parse_args(["-p", "k", "--mem-max=0xffffffffffffffff"]).mem_max == (1 << 64) - 1


# --- the command line as bytes -------------------------------------------------------------

def _cmdline_bytes(p) -> bytes:
    """The command line as the kernel will read it: from the boot_params segment."""
    [params] = p.segments_of("boot_params") or p.segments_of("param_block")
    ptr = struct.unpack_from("<I", params.data, 0x228)[0]
    return p.read_phys(ptr, 4096 if ptr + 4096 <= params.mem + params.memsz
                       else params.mem + params.memsz - ptr).split(b"\0", 1)[0]


@pytest.mark.parametrize("snapshot,kernel", [(X86_64, FakeKernel()), (I386, I386_BZIMAGE)],
                         ids=["x86_64", "i386"])
def test_a_non_utf8_byte_in_append_passes_through(tmp_path, snapshot, kernel):
    path = write(tmp_path, "k", bzimage_bytes(kernel))
    p = plan(snapshot, ["-p", path, "--append=" + os.fsdecode(b"root=/dev/\xff1 quiet")])
    assert _cmdline_bytes(p).startswith(b"root=/dev/\xff1 quiet elfcorehdr=") or \
        _cmdline_bytes(p).startswith(b"root=/dev/\xff1 quiet acpi_rsdp=")


def test_reuse_cmdline_keeps_the_running_kernels_bytes(tmp_path):
    import shutil
    machine = tmp_path / "m"
    shutil.copytree(X86_64, machine)
    (machine / "proc/cmdline").write_bytes(b"BOOT_IMAGE=/vmlinuz root=/dev/\xe9 ro\n")
    path = write(tmp_path, "k", bzimage_bytes(FakeKernel()))
    p = plan(str(machine), ["-p", path, "--reuse-cmdline"])
    line = _cmdline_bytes(p)
    assert line.startswith(b"root=/dev/\xe9 ro ") and b"\xef\xbf\xbd" not in line


def test_dry_run_shows_such_a_byte_escaped_and_json_keeps_it(tmp_path):
    path = write(tmp_path, "k", bzimage_bytes(FakeKernel()))
    argv = ["-c", "-p", path, "--sysroot", X86_64, "--dry-run",
            "--append=" + os.fsdecode(b"x=\xff")]
    for extra, expect in (([], "x=\\xff acpi_rsdp="), (["--json"], '"x=\\udcff acpi_rsdp=')):
        out = io.StringIO()
        with redirect_stdout(out), redirect_stderr(io.StringIO()):
            assert run(argv + extra) == 0
        assert expect in out.getvalue()
        out.getvalue().encode("utf-8")          # printable as strict UTF-8


def test_file_load_passes_the_bytes_unchanged(tmp_path):
    from pykexec.arch import user_cmdline as cmdline_for
    from pykexec.host.fileload import file_load
    path = write(tmp_path, "k", bzimage_bytes(FakeKernel()))
    request = parse_args(["-s", "-p", path, "--append=" + os.fsdecode(b"a\xffb")])
    machine = Machine.read(X86_64)
    assert file_load(request, cmdline_for(request, machine), machine).cmdline == b"a\xffb\0"


# --- -s / -a with an ELF kernel ------------------------------------------------------------

def test_dry_run_says_kexec_file_load_would_refuse_an_elf_kernel(tmp_path):
    path = write(tmp_path, "vmlinux", elf64([(0x1000, 0x1000000, 0x1000, 0x1000)], 0x1000000))
    base = ["-p", path, "--args-linux", "--sysroot", X86_64_AT16M, "--dry-run"]
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        assert run(["-a"] + base) == 0
    assert "which would fail: " in out.getvalue() and "ENOEXEC" in out.getvalue()
    assert "then, if the kernel has no kexec_file_load" in out.getvalue()
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        assert run(["-s"] + base) == 253
    assert "vmlinux: kexec_file_load would refuse it with ENOEXEC" in err.getvalue()
    assert "would load" not in out.getvalue()


def test_a_huge_bss_before_a_shared_page_costs_no_memory(tmp_path):
    """PT_LOAD 1 has 256 bytes of file and 1 GiB of bss; PT_LOAD 2 starts in its last page.
    The chunks must not pad that gap with zeros (1 GiB) to share the page."""
    import tracemalloc
    from pykexec.arch.x86.elfimage import LoadSegment, image_chunks
    data = bytes(0x1000) + b"\x11" * 0x100 + b"\x22" * 0x100
    gib = 1 << 30
    loads = [LoadSegment(0x1000000, gib - 0x800, 0x100, 0x1000),
             LoadSegment(0x1000000 + gib - 0x800, 0x100, 0x100, 0x1100)]
    tracemalloc.start()
    try:
        chunks = image_chunks(data, loads, "vmlinux")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    assert [(c.start, c.memsz) for c in chunks] == [(0x1000000, gib - 0x1000),
                                                     (0x1000000 + gib - 0x1000, 0x1000)]
    assert chunks[0].data == b"\x11" * 0x100
    assert chunks[1].data == bytes(0x800) + b"\x22" * 0x100


def test_pt_loads_sharing_a_page_with_file_bytes_in_it_are_merged():
    from pykexec.arch.x86.elfimage import LoadSegment, image_chunks
    data = bytes(0x1000) + b"\x11" * 0x800 + b"\x22" * 0x100
    loads = [LoadSegment(0x1000000, 0x800, 0x800, 0x1000),
             LoadSegment(0x1000800, 0x100, 0x100, 0x1800)]
    [chunk] = image_chunks(data, loads, "vmlinux")
    assert (chunk.start, chunk.memsz) == (0x1000000, 0x1000)
    assert chunk.data == b"\x11" * 0x800 + b"\x22" * 0x100
