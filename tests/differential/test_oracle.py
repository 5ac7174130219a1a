"""The oracle (Debian's kexec under the recording shim) on synthetic machines.

Every expected value is computed from the machine's spec/layout (tests/bed/synthetic.py) and
from the kexec-tools rules in the reference notes, never from the recorded output itself.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from tests.bed import synthetic
from tests.bed.fakekernel import FakeKernel, bzimage_bytes, make_bzimage, make_initrd
from tests.bed.oracle import check_argv, parse_kexec_debug, run_oracle
from tests.bed.synthetic import GiB, MiB, MachineSpec, machine_layout, make_machine
from tests.conftest import require_root

pytestmark = pytest.mark.differential

PAGE = 4096
CRASH_FLAGS = 0x3E0001          # KEXEC_ARCH_X86_64 | KEXEC_ON_CRASH
NORMAL_FLAGS = 0x3E0000
APPEND = "console=ttyS0 irqpoll nr_cpus=1 reset_devices"
E820_TYPE = {"Reserved": 2, "ACPI Tables": 3, "ACPI Non-volatile Storage": 4,
             "Persistent Memory": 7}
SETUP_E820_EXT = 1
E820_MAX_ZEROPAGE = 128
FAKE_KERNEL = FakeKernel()
# A generated machine is up to thousands of tiny files: write them to tmpfs when there is one.
SCRATCH = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("oracle-inputs")
    return {"kernel": make_bzimage(str(d / "bzImage"), FAKE_KERNEL),
            "initrd": make_initrd(str(d / "initrd.img"), 96 * 1024)}


@pytest.fixture(scope="module")
def machines(tmp_path_factory):
    """Preset name -> (snapshot folder, layout), made once per module."""
    d = tmp_path_factory.mktemp("machines")
    return {name: (str(d / name), make_machine(str(d / name), spec))
            for name, spec in synthetic.PRESETS.items()}


def crash_argv(files, initrd: bool, debug: bool = False):
    argv = (["-d"] if debug else []) + ["-p", files["kernel"], f"--append={APPEND}"]
    if initrd:
        argv.append(f"--initrd={files['initrd']}")
    return argv


def expected_ram_pieces(layout):
    """iomem System RAM minus every crash region (kexec splits, keeping file order)."""
    pieces = [(r.start, r.end) for r in layout.system_ram()]
    for c in layout.crash_regions:
        out = []
        for s, e in pieces:
            if c.end < s or c.start > e:
                out.append((s, e))
                continue
            if s < c.start:
                out.append((s, c.start - 1))
            if c.end < e:
                out.append((c.end + 1, e))
        pieces = out
    return pieces


def non_ram_e820(layout):
    """The iomem ranges kexec passes to the capture kernel with their own type."""
    return sorted((r.start, r.size, E820_TYPE[r.name])
                  for r in layout.iomem_ranges_named(*E820_TYPE))


def core_header(plan):
    hits = [s for s in plan.segments if s.data[:4] == b"\x7fELF" and s.data[16] == 4]
    assert len(hits) == 1, "exactly one segment holds an ELF ET_CORE header"
    return hits[0], ELFFile(io.BytesIO(hits[0].data))


def boot_params(plan):
    hits = [s for s in plan.segments
            if s.bufsz >= 4096 and s.data[0x202:0x206] == b"HdrS" and s.data[0x1FE] == 0x55]
    assert len(hits) == 1, "exactly one segment holds a zero page"
    return hits[0]


def capture_e820(plan):
    """All e820 entries the capture kernel gets: the zero page's, then SETUP_E820_EXT's."""
    bp = boot_params(plan).data
    n = bp[0x1E8]
    entries = [struct.unpack_from("<QQI", bp, 0x2D0 + 20 * i) for i in range(n)]
    ext = []
    addr = struct.unpack_from("<Q", bp, 0x250)[0]
    while addr:
        nxt, typ, length = struct.unpack("<QII", plan.read_phys(addr, 16))
        if typ == SETUP_E820_EXT:
            body = plan.read_phys(addr + 16, length)
            ext += [struct.unpack_from("<QQI", body, 20 * i) for i in range(length // 20)]
        addr = nxt
    return n, entries, ext


def check_crash_plan(result, layout, files, initrd: bool):
    """Everything a correct kexec -p must have produced for this machine."""
    assert result.exit_code == 0, result.stderr[-3000:]
    assert not result.reboots
    plan = result.plan
    assert plan is not None and plan.syscall == "kexec_load"
    assert plan.flags == CRASH_FLAGS
    window = layout.crash_regions[-1]             # kexec -p loads into the highest region

    # Placement: inside the crash window, page aligned, sorted, no overlap.
    segs = plan.segments
    for s in segs:
        assert window.start <= s.mem and s.mem + s.memsz - 1 <= window.end, hex(s.mem)
        assert s.mem % PAGE == 0 and s.memsz % PAGE == 0
        assert s.bufsz <= s.memsz
    for a, b in zip(segs, segs[1:]):
        assert a.mem + a.memsz <= b.mem
    assert window.start <= plan.entry <= window.end
    assert len(segs) <= 16

    # Kernel and initrd bytes are the files' (the bzImage without its real-mode part).
    kernel = bzimage_bytes(FAKE_KERNEL)[FAKE_KERNEL.setup_size:]
    kseg = [s for s in segs if s.data == kernel]
    assert len(kseg) == 1 and kseg[0].memsz == FAKE_KERNEL.init_size
    assert kseg[0].mem % FAKE_KERNEL.kernel_alignment == 0
    with open(files["initrd"], "rb") as f:
        initrd_bytes = f.read()
    assert any(s.data == initrd_bytes for s in segs) == initrd

    # ELF core header.
    core_seg, elf = core_header(plan)
    assert elf["e_type"] == "ET_CORE" and elf["e_machine"] == "EM_X86_64"
    assert elf.elfclass == 64 and elf.little_endian
    ram = expected_ram_pieces(layout)
    cpus = layout.cpus_with_notes
    assert elf.num_segments() == len(cpus) + 1 + 1 + len(ram)
    phdrs = [elf.get_segment(i).header for i in range(elf.num_segments())]
    notes = [(p.p_offset, p.p_filesz) for p in phdrs if p.p_type == "PT_NOTE"]
    assert notes == [(layout.crash_notes[c], synthetic.CRASH_NOTE_BYTES) for c in cpus] + [
        (layout.vmcoreinfo_paddr, synthetic.VMCOREINFO_NOTE_SIZE)]
    loads = [p for p in phdrs if p.p_type == "PT_LOAD"]
    text = loads[0]
    vstart = layout.kernel_vaddr & ~(MiB - 1)
    assert (text.p_paddr, text.p_offset, text.p_vaddr) == (layout.kernel_paddr,) * 2 + (vstart,)
    assert text.p_memsz == -(-(layout.kernel_vaddr + layout.kernel_image_size - vstart) // PAGE) * PAGE
    assert [(p.p_paddr, p.p_paddr + p.p_memsz - 1) for p in loads[1:]] == ram
    backup = [s for s in segs if s.mem == loads[1].p_offset]
    for p in loads[1:]:
        assert p.p_vaddr == p.p_paddr + layout.page_offset
        assert p.p_filesz == p.p_memsz
        if p.p_paddr == 0x1000:                   # the low RAM kexec backs up, read from its copy
            assert len(backup) == 1 and backup[0].bufsz == p.p_memsz
        else:
            assert p.p_offset == p.p_paddr

    # Command line: the user's, then acpi_rsdp= and elfcorehdr= (address in KiB).
    assert plan.cmdline == f"{APPEND} acpi_rsdp={layout.spec.acpi_rsdp:#x} elfcorehdr={core_seg.mem // 1024}K"

    # Capture e820: every ACPI/NVS/reserved/pmem range of the machine, plus a few RAM entries
    # (backup source and crash-region pieces); beyond 128 entries a SETUP_E820_EXT carries them.
    n, entries, ext = capture_e820(plan)
    all_entries = entries + ext
    others = non_ram_e820(layout)
    ram_entries = [e for e in all_entries if e[2] == 1]
    assert sorted(e for e in all_entries if e[2] != 1) == others
    assert 1 + len(layout.crash_regions) <= len(ram_entries) <= 1 + 3 * len(layout.crash_regions)
    assert n == min(len(all_entries), E820_MAX_ZEROPAGE)
    if len(others) + 1 + len(layout.crash_regions) > E820_MAX_ZEROPAGE:
        assert ext, "more than 128 capture e820 entries need a SETUP_E820_EXT"
    if len(others) + 1 + 3 * len(layout.crash_regions) <= E820_MAX_ZEROPAGE:
        assert not ext
    for start, size, typ in ram_entries:
        assert (start, size) == (0x1000, 0x9EC00) or any(
            c.start <= start and start + size - 1 <= c.end for c in layout.crash_regions)
    return plan


# ---------------------------------------------------------------------------------------------
# Presets


@pytest.mark.parametrize("initrd", [False, True], ids=["no-initrd", "initrd"])
@pytest.mark.parametrize("preset", sorted(synthetic.PRESETS))
def test_crash_load_on_preset(preset, initrd, machines, files):
    require_root()
    snap, layout = machines[preset]
    result = run_oracle(snap, crash_argv(files, initrd, debug=True))
    plan = check_crash_plan(result, layout, files, initrd)
    # `kexec -d` printed the same table the shim recorded.
    dbg = parse_kexec_debug(result.stderr)
    assert (dbg.entry, dbg.flags) == (plan.entry, plan.flags)
    assert dbg.segments == [(s.mem, s.memsz, s.bufsz) for s in plan.segments]


def test_many_ranges_need_e820_ext(machines, files):
    require_root()
    snap, layout = machines["server_64g_numa"]
    assert len(non_ram_e820(layout)) > E820_MAX_ZEROPAGE     # the preset is meant to need it
    plan = run_oracle(snap, crash_argv(files, initrd=True)).plan
    n, _entries, ext = capture_e820(plan)
    assert n == E820_MAX_ZEROPAGE and ext
    assert len([s for s in plan.segments if s.kind == "setup_data"]) == 2   # RNG seed + e820


def test_runs_are_byte_identical(machines, files, tmp_path):
    require_root()
    snap, _layout = machines["server_64g_numa"]
    argv = crash_argv(files, initrd=True)
    a = run_oracle(snap, argv, out_dir=str(tmp_path / "a"))
    b = run_oracle(snap, argv, out_dir=str(tmp_path / "b"))
    assert a.getrandom_calls >= 1            # the RNG seed was asked for, and faked
    key = lambda r: (r.plan.entry, r.plan.flags, r.plan.cmdline,
                     [(s.mem, s.memsz, s.data) for s in r.plan.segments])
    assert key(a) == key(b)
    for name in sorted(os.listdir(tmp_path / "a")):
        if name.endswith(".bin"):
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_saved_plan_round_trips(machines, files, tmp_path):
    require_root()
    from pykexec.core.plan import load_plan
    snap, _layout = machines["qemu_like_1g"]
    result = run_oracle(snap, crash_argv(files, initrd=True), out_dir=str(tmp_path))
    loaded = load_plan(str(tmp_path))
    assert [(s.mem, s.memsz, s.data, s.kind) for s in loaded.segments] == \
        [(s.mem, s.memsz, s.data, s.kind) for s in result.plan.segments]
    assert loaded.notes["exit_code"] == 0 and loaded.notes["argv"][0] == "-p"


def test_qemu_like_matches_the_guest_trace(machines, files):
    """The 1 GiB preset has the QEMU guest's crash region, so the placements that do not depend
    on the kernel (backup, elfcorehdr, purgatory, RNG seed) equal the trace in the notes."""
    require_root()
    snap, _layout = machines["qemu_like_1g"]
    plan = run_oracle(snap, crash_argv(files, initrd=False)).plan
    by_mem = {s.mem: (s.memsz, s.bufsz) for s in plan.segments}
    assert by_mem[0x3DF61000] == (0x9F000, 0x9EC00)      # backup
    assert by_mem[0x3DF5D000][0] == 0x4000                # elfcorehdr, 16 KiB
    assert by_mem[0x3DF54000] == (0x9000, 0x70E0)         # purgatory
    assert by_mem[0x2E000000] == (0x1000, 0x30)           # SETUP_RNG_SEED
    assert plan.entry == 0x3DF54760
    assert plan.cmdline.endswith("elfcorehdr=1015156K")


def _align_up(x, a):
    return -(-x // a) * a


def test_real_debian_bzimage_on_qemu_like(machines, tmp_path):
    """Debian's own bzImage on the QEMU-shaped machine: placement per the bzImage64 rules.

    Expected addresses come from the kernel's header and the rules in the reference notes
    (top-down below the purgatory; kernel 2 MiB aligned with memsz init_size; initrd just
    below it); with the trace's kernel and initrd size they are the guest's own segments.
    """
    require_root()
    from tests.bed import kernels
    try:
        kernel = kernels.get_kernel()
    except kernels.BedError as e:
        from tests.conftest import require
        require(False, f"no Debian kernel: {e}")
    snap, layout = machines["qemu_like_1g"]
    image = kernel.bzimage.read_bytes()
    setup_sects, = struct.unpack_from("<B", image, 0x1F1)
    align, = struct.unpack_from("<I", image, 0x230)
    init_size, = struct.unpack_from("<I", image, 0x260)
    kern16 = (setup_sects + 1) * 512
    initrd_size = 0xA06A29                                    # the trace's initrd size
    initrd = make_initrd(str(tmp_path / "initrd"), initrd_size)
    result = run_oracle(snap, ["-p", str(kernel.bzimage), f"--initrd={initrd}", f"--append={APPEND}"])
    assert result.exit_code == 0, result.stderr[-2000:]
    plan = result.plan
    cmdline = f"{APPEND} acpi_rsdp=0xf59d0 elfcorehdr=1015156K"
    assert plan.cmdline == cmdline
    purgatory = 0x3DF54000
    setup_size = max(kern16, 4096) + len(cmdline) + 1 + 64
    setup_mem = purgatory - _align_up(setup_size, PAGE)
    kernel_mem = (setup_mem - init_size) // align * align
    initrd_mem = kernel_mem - _align_up(initrd_size, PAGE)
    expected = [
        (0x2E000000, 0x1000, 0x30),                                   # SETUP_RNG_SEED
        (initrd_mem, _align_up(initrd_size, PAGE), initrd_size),
        (kernel_mem, _align_up(init_size, PAGE), len(image) - kern16),
        (setup_mem, _align_up(setup_size, PAGE), setup_size),
        (purgatory, 0x9000, 0x70E0),
        (0x3DF5D000, 0x4000, 0x400),                                  # elfcorehdr
        (0x3DF61000, 0x9F000, 0x9EC00),                               # backup
    ]
    assert [(s.mem, s.memsz, s.bufsz) for s in plan.segments] == expected
    assert [s.kind for s in plan.segments] == [
        "setup_data", "initrd", "kernel", "boot_params", "purgatory", "elfcorehdr", "backup"]
    if (len(image), init_size) == (0x7DD7C0, 0x3F98000):     # the trace's kernel, 6.1.0-56
        assert (kernel_mem, initrd_mem, setup_mem) == (0x39E00000, 0x393F9000, 0x3DF4E000)


# ---------------------------------------------------------------------------------------------
# Other syscalls and actions


def test_crash_unload_records_one_call(machines):
    require_root()
    snap, _layout = machines["qemu_like_1g"]
    result = run_oracle(snap, ["-pu"])
    assert result.exit_code == 0
    assert len(result.calls) == 1
    call = result.calls[0]
    assert (call.name, call.entry, call.nr_segments, call.flags) == ("kexec_load", 0, 0, CRASH_FLAGS)
    assert call.is_unload and result.plan.segments == ()


def test_normal_unload_flags(machines):
    require_root()
    snap, _layout = machines["qemu_like_1g"]
    result = run_oracle(snap, ["-u"])
    assert [(c.nr_segments, c.flags) for c in result.calls] == [(0, NORMAL_FLAGS)]


def test_file_load_records_fds_and_cmdline(machines, files):
    require_root()
    snap, _layout = machines["pmem_nvs"]
    result = run_oracle(snap, ["-s", "-p", files["kernel"], f"--initrd={files['initrd']}",
                               f"--append={APPEND}"])
    assert result.exit_code == 0, result.stderr
    (call,) = result.calls
    assert call.name == "kexec_file_load" and call.flags == 2          # KEXEC_FILE_ON_CRASH
    with open(files["kernel"], "rb") as f:
        assert call.kernel == f.read()
    with open(files["initrd"], "rb") as f:
        assert call.initrd == f.read()
    assert call.cmdline == APPEND.encode() + b"\0" and call.cmdline_len == len(APPEND) + 1
    plan = result.plan
    assert plan.syscall == "kexec_file_load" and plan.entry is None
    assert [s.kind for s in plan.segments] == ["kernel", "initrd"]
    assert all(s.mem is None for s in plan.segments)
    assert plan.cmdline == APPEND


def test_file_load_without_initrd_and_file_unload(machines, files):
    require_root()
    snap, _layout = machines["pmem_nvs"]
    (call,) = run_oracle(snap, ["-s", "-p", files["kernel"]]).calls
    assert call.flags == 2 | 4 and call.initrd_fd == -1 and call.initrd is None   # NO_INITRAMFS
    assert call.cmdline == b"\0"
    (unload,) = run_oracle(snap, ["-s", "-pu"]).calls
    assert unload.name == "kexec_file_load" and unload.kernel_fd == -1 and unload.is_unload


def test_kexec_errors_reach_the_result(machines, files):
    require_root()
    snap, _layout = machines["qemu_like_1g"]
    missing_kernel = run_oracle(snap, ["-p"])
    assert missing_kernel.exit_code == 255 and "No kernel specified" in missing_kernel.stderr
    assert missing_kernel.calls == () and missing_kernel.plan is None
    bad_value = run_oracle(snap, ["-p", "--mem-min=zz", files["kernel"]])
    assert bad_value.exit_code == 1 and bad_value.plan is None
    status = run_oracle(snap, ["-S"])          # reads the snapshot's kexec_crash_loaded (0)
    assert status.exit_code == 0 and status.calls == ()


def test_print_ckr_size_is_the_highest_region(machines):
    require_root()
    snap, layout = machines["server_64g_numa"]
    result = run_oracle(snap, ["--print-ckr-size"])
    assert result.exit_code == 0 and result.stdout == f"{layout.crash_regions[-1].size}\n"


def test_no_crash_region_is_refused_by_kexec(tmp_path, files):
    require_root()
    snap = tmp_path / "m"
    make_machine(str(snap), synthetic.PRESETS["qemu_like_1g"])
    iomem = (snap / "proc/iomem").read_text()
    (snap / "proc/iomem").write_text("".join(l + "\n" for l in iomem.splitlines()
                                             if "Crash kernel" not in l))
    result = run_oracle(str(snap), crash_argv(files, initrd=False))
    assert result.exit_code == 1 and "Memory for crashkernel is not reserved" in result.stderr
    assert result.plan is None


@pytest.mark.parametrize("argv", [
    ["-e"], ["--exec"], ["-f", "k"], ["--force", "k"], ["k"], ["-pe"], ["-lf", "k"],
    ["--ex"], ["--fo", "k"], ["-p", "--load-jump-back-helper"], ["-d", "k", "--append=x"],
    ["-t", "p", "k"],            # "p" is -t's argument, not -p: still a plain load
])
def test_dangerous_argv_is_refused(argv):
    with pytest.raises(ValueError):
        check_argv(argv)


@pytest.mark.parametrize("argv", [
    ["-p", "k"], ["-l", "k"], ["-pu"], ["-u"], ["-S"], ["-h"], ["-v"], ["--print-ckr-size"],
    ["--load-panic", "k", "--append", "-e"], ["--entry=0x1000", "-l", "k"], ["-tbzImage64", "-p", "k"],
])
def test_safe_argv_is_accepted(argv):
    check_argv(argv)


def test_argv_paths_are_found():
    parsed = check_argv(["-d", "-p", "--append", "x y", "/boot/k", "--ramdisk", "/boot/i"])
    assert (parsed.kernel, parsed.initrd) == ("/boot/k", "/boot/i")


# ---------------------------------------------------------------------------------------------
# The shim on its own: reboot() refused, getrandom() fixed


SHIM_PROBE = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
# An invalid reboot command: even if the shim failed to catch it, the kernel would say EINVAL.
r1 = libc.reboot(0x1234567)
e1 = ctypes.get_errno()
r2 = libc.syscall(169, 0xfee1dead, 672274793, 0x1234567, 0)   # SYS_reboot on x86_64
e2 = ctypes.get_errno()
buf = ctypes.create_string_buffer(16)
libc.getrandom(buf, 16, 0)
print(r1, e1, r2, e2, buf.raw.hex())
"""


def test_shim_refuses_reboot_and_fixes_getrandom(tmp_path):
    import errno
    import subprocess
    import sys
    from tests.bed.oracle import shim_library
    env = dict(os.environ, LD_PRELOAD=str(shim_library()), PYKEXEC_SHIM_OUT=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", SHIM_PROBE], env=env, capture_output=True,
                           text=True, check=True).stdout.split() for _ in range(2)]
    assert runs[0] == runs[1]
    r1, e1, r2, e2, rand = runs[0]
    assert (int(r1), int(e1), int(r2), int(e2)) == (-1, errno.EPERM, -1, errno.EPERM)
    assert rand != "00" * 16
    calls = (tmp_path / "calls.txt").read_text()
    assert calls.count("event=reboot") == 4 and "cmd=0x1234567" in calls


# ---------------------------------------------------------------------------------------------
# kexec -d parsing (offline)

DEBUG_SAMPLE = """\
E820 memmap:
0000000000000000-0000000000000fff (2)
/sys/firmware/edd does not exist.
kexec_load: entry = 0x3df54760 flags = 0x3e0001
nr_segments = 2
segment[0].buf   = 0x559a159bd8d0
segment[0].bufsz = 0x30
segment[0].mem   = 0x2e000000
segment[0].memsz = 0x1000
segment[1].buf   = 0x7ff73c201010
segment[1].bufsz = 0x9ec00
segment[1].mem   = 0x3df61000
segment[1].memsz = 0x9f000
"""


def test_parse_kexec_debug_sample():
    dbg = parse_kexec_debug(DEBUG_SAMPLE)
    assert (dbg.entry, dbg.flags) == (0x3DF54760, 0x3E0001)
    assert dbg.segments == [(0x2E000000, 0x1000, 0x30), (0x3DF61000, 0x9F000, 0x9EC00)]
    assert parse_kexec_debug("no table here\n") is None
    console = "".join(f"[    3.14] {line}\r\n" for line in DEBUG_SAMPLE.splitlines())
    assert parse_kexec_debug(console) == dbg
    with pytest.raises(ValueError):
        parse_kexec_debug(DEBUG_SAMPLE.replace("segment[1].mem   = 0x3df61000\n", ""))


# ---------------------------------------------------------------------------------------------
# Generated machines


@st.composite
def machine_specs(draw):
    ram_gib = draw(st.sampled_from([1, 2, 3, 6, 16, 48, 96]))
    high = ram_gib > 3 and draw(st.booleans())
    cpus = draw(st.integers(1, 96))
    missing = draw(st.lists(st.integers(0, cpus - 1), unique=True, max_size=min(3, cpus - 1)))
    max_ranges = {1: 12, 2: 40, 3: 60}.get(ram_gib, 400)
    base = 3 if ram_gib > 3 else 2
    return MachineSpec(
        name="generated", ram=ram_gib * GiB, ram_ranges=draw(st.integers(base, max_ranges)),
        cpus=cpus, cpus_without_notes=tuple(sorted(missing)),
        crash_size=draw(st.sampled_from([128, 192, 256, 512])) * MiB, crash_high=high,
        crash_low_size=(draw(st.sampled_from([0, 64, 128, 256])) * MiB) if high else 0,
        acpi=draw(st.booleans()), nvs_ranges=draw(st.integers(0, 4)),
        pmem_size=draw(st.sampled_from([0, 0, 2 * GiB])), kaslr=draw(st.booleans()),
        seed=draw(st.integers(0, 2 ** 16)),
        acpi_rsdp=draw(st.sampled_from([0xF59D0, 0xF05B0, 0x7FFCE014])))


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(spec=machine_specs(), initrd=st.booleans())
def test_crash_load_on_generated_machines(spec, initrd, files):
    require_root()
    try:
        machine_layout(spec)
    except ValueError:
        assume(False)             # e.g. not enough room to split RAM that finely
    with tempfile.TemporaryDirectory(prefix="pykexec-machine-", dir=SCRATCH) as snap:
        layout = make_machine(snap, spec)
        check_crash_plan(run_oracle(snap, crash_argv(files, initrd)), layout, files, initrd)
