"""The arm64 purgatory: its build and symbol contract, place/finish_purgatory, the refusal
without a compiler, and runs under QEMU.

In the runs, qemu-system-aarch64 (-M virt, TCG, no firmware, the CPU at EL1) loads a stub that plays
relocate_kernel (MMU off, garbage in x0..x3, branch to the purgatory's entry), the
purgatory relocated and patched by purgatory_setup, a fake "kernel" (assembled here) that
prints the registers it was entered with and the first bytes at x0, and a data segment
standing in for the device tree. Each run takes well under a second of emulation.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import re
import select
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from pykexec.arch.arm64 import purgatory_setup
from pykexec.arch.arm64.purgatory_spec import ARM64
from pykexec.arch.arm64.relocations import ARM64_RELOCATIONS
from pykexec.core.layout import Layout
from pykexec.core.plan import Segment
from pykexec.core.ranges import Range
from pykexec.errors import describe
from pykexec.purgatory import build
from pykexec.purgatory.elfrel import RelocatableObject
from tests.conftest import require
from tests.unit.arm64_tools import assemble, need, tool

# name -> st_size: what finish_purgatory writes.
LOADER_SYMBOLS = {"sha256_regions": 256, "sha256_digest": 32, "skip_checks": 4,
                  "kernel_entry": 8, "dtb_addr": 8, "uart_base": 8}


@pytest.fixture(scope="module")
def obj_bytes():
    need("gcc", "ld", "nm")
    return build.purgatory_object(ARM64)


@pytest.fixture(scope="module")
def elf(obj_bytes):
    return ELFFile(io.BytesIO(obj_bytes))


def test_object_kind_and_symbol_contract(elf):
    assert (elf["e_type"], elf["e_machine"], elf.elfclass) == ("ET_REL", "EM_AARCH64", 64)
    symtab = elf.get_section_by_name(".symtab")
    globals_ = {s.name: s for s in symtab.iter_symbols() if s["st_info"]["bind"] == "STB_GLOBAL"}
    for name, size in LOADER_SYMBOLS.items():
        sym = globals_[name]
        assert sym["st_size"] == size, name
        section = elf.get_section(sym["st_shndx"])
        assert section.name == ".data", f"{name} must be preset, so not in .bss"
    entry = globals_["purgatory_start"]
    assert elf.get_section(entry["st_shndx"]).name == ".text" and entry["st_info"]["type"] == "STT_FUNC"
    assert not [s.name for s in symtab.iter_symbols()
                if s["st_shndx"] in ("SHN_UNDEF", "SHN_COMMON") and s.name]


def test_code_uses_no_fp_or_simd_registers(obj_bytes, tmp_path):
    """With the MMU off and CPACR unknown, FP/SIMD may trap; -mgeneral-regs-only keeps
    gcc (and memcpy-like loops) off them."""
    need("objdump")
    (tmp_path / "p.o").write_bytes(obj_bytes)
    listing = subprocess.run([tool("objdump"), "-d", str(tmp_path / "p.o")], check=True,
                             capture_output=True, text=True).stdout
    body = [line.split("\t", 2)[-1] for line in listing.splitlines() if re.match(r"\s+[0-9a-f]+:\t", line)]
    assert body, "no instructions disassembled"
    fp = [line for line in body if re.search(r"\b[vqdsbh]\d{1,2}\b(?![\]x])", line.split("//")[0])
          and not line.startswith(("b", "bl", "cbz", "cbnz", "tbz", "tbnz"))]
    assert not fp, fp[:5]


def test_reproducible_build(tmp_path, obj_bytes):
    need("gcc", "ld", "nm")
    again = build.build_purgatory(ARM64, tmp_path / "again.o").read_bytes()
    assert again == obj_bytes


def test_installed_object_is_current(obj_bytes):
    path = build.installed_path(ARM64)
    assert path.read_bytes() == obj_bytes
    src = build.source_dir(ARM64)
    newest = max(p.stat().st_mtime for folder in (src, src.parent.parent / "common" / "purgatory")
                 for p in folder.iterdir())
    assert path.stat().st_mtime >= newest


def test_the_build_record_loads_as_the_parsed_object(obj_bytes):
    record = build.purgatory_record(ARM64)
    from_record = RelocatableObject.from_record(obj_bytes, record, relocations=(ARM64_RELOCATIONS,))
    parsed = RelocatableObject.from_bytes(obj_bytes, relocations=(ARM64_RELOCATIONS,))
    assert from_record is not None
    for base in (0x4000_0000, 0x1_2345_6000):
        assert from_record.layout(base).data == parsed.layout(base).data


# --- the toolchain: cross on other hosts, refused in one line without it ------------------

@pytest.fixture
def only_host_tools(tmp_path, monkeypatch):
    """A PATH with the host's gcc, ld and nm and nothing else, on an x86_64 host."""
    need("gcc")   # (the host tools below are needed by the x86 side anyway)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("gcc", "ld", "nm"):
        found = shutil.which(name)
        require(found, f"needs {name}")
        (bin_dir / name).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    return bin_dir


def test_cross_compiler_on_other_hosts_native_gcc_on_arm64(monkeypatch):
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    assert [argv[0] for argv in build.toolchain(ARM64)] == \
        ["aarch64-linux-gnu-gcc", "aarch64-linux-gnu-ld", "aarch64-linux-gnu-nm"]
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    monkeypatch.delenv("CC", raising=False)
    assert [argv[0] for argv in build.toolchain(ARM64)] == ["gcc", "ld", "nm"]


def test_no_cross_compiler_refuses_arm64_only(only_host_tools, tmp_path, monkeypatch):
    from pykexec.arch.x86.purgatory_spec import X86_64
    assert build.missing_toolchain(X86_64) is None
    reason = build.missing_toolchain(ARM64)
    assert reason == ("cannot build the arm64 purgatory: 'aarch64-linux-gnu-gcc' not found; "
                      "it is compiled from source (apt-get install gcc-aarch64-linux-gnu)")
    with pytest.raises(build.PurgatoryBuildError) as raised:
        build.build_purgatory(ARM64, tmp_path / "arm64.o")
    assert describe(raised.value) == reason and not (tmp_path / "arm64.o").exists()
    # A load with no installed object: the same one line, from place_purgatory.
    monkeypatch.setattr(build, "installed_path", lambda spec: tmp_path / "none" / f"{spec.arch}.o")
    build.purgatory_object.cache_clear()
    build.purgatory_record.cache_clear()
    try:
        layout = Layout([Range.from_size(0x4000_0000, 1 << 30)], Range.from_size(0x4000_0000, 1 << 30))
        with pytest.raises(build.PurgatoryBuildError) as raised:
            purgatory_setup.place_purgatory(layout, 0x4000_0000, 0x8000_0000)
        assert describe(raised.value) == reason
    finally:
        build.purgatory_object.cache_clear()
        build.purgatory_record.cache_clear()


# --- place_purgatory / finish_purgatory ---------------------------------------------------

RAM = Range.from_size(0x4000_0000, 0x8000_0000)
CRASH = Range.from_size(0xA9A0_0000, 0x1000_0000)


def planned(rng, *, uart_base=0x900_0000, skip_checks=False, unhashed_kinds=(), data_size=0x3000):
    """A small crash-region plan: kernel, initrd (with a zero tail), dtb, purgatory."""
    layout = Layout([RAM], CRASH, crash=True)
    kernel = layout.add(rng.randbytes(0x2000), "kernel", low=CRASH.start, top_down=False)
    initrd = layout.add(rng.randbytes(0x1800), "initrd", memsz=0x4000, top_down=False)
    dtb = layout.add(rng.randbytes(data_size), "param_block", top_down=False)
    loaded = purgatory_setup.place_purgatory(layout, dtb, CRASH.end)
    segments, shown = purgatory_setup.finish_purgatory(
        layout.finish(), loaded, kernel_entry=kernel, dtb_addr=dtb, uart_base=uart_base,
        skip_checks=skip_checks, unhashed_kinds=unhashed_kinds)
    return segments, loaded, shown, {"kernel": kernel, "initrd": initrd, "dtb": dtb}


def symbol_bytes(segments, loaded, name):
    (seg,) = [s for s in segments if s.mem == loaded.base]
    offset = loaded.symbol_address(name) - loaded.base
    return seg.data[offset:offset + LOADER_SYMBOLS[name]]


def test_place_puts_it_lowest_in_the_range_and_fills_it(obj_bytes):
    segments, loaded, _, where = planned(random.Random(1))
    dtb_seg = next(s for s in segments if s.mem == where["dtb"])
    assert loaded.base == dtb_seg.mem + dtb_seg.memsz      # right after the device tree
    assert purgatory_setup.entry_address(loaded) == loaded.symbol_address("purgatory_start")
    ro = RelocatableObject.from_bytes(obj_bytes, relocations=(ARM64_RELOCATIONS,))
    assert loaded.data == ro.layout(loaded.base).data
    (seg,) = [s for s in segments if s.mem == loaded.base]
    assert seg.kind == "purgatory" and seg.memsz >= ro.memsz


def test_finish_writes_the_digest_of_every_other_segment():
    segments, loaded, shown, where = planned(random.Random(2))
    others = sorted((s for s in segments if s.mem != loaded.base), key=lambda s: s.mem)
    expected = hashlib.sha256(b"".join(s.data + bytes(s.memsz - len(s.data)) for s in others))
    assert symbol_bytes(segments, loaded, "sha256_digest") == expected.digest()
    table = symbol_bytes(segments, loaded, "sha256_regions")
    regions = [(int.from_bytes(table[i:i + 8], "little"), int.from_bytes(table[i + 8:i + 16], "little"))
               for i in range(0, 256, 16)]
    assert regions == [(s.mem, s.memsz) for s in others] + [(0, 0)] * (16 - len(others))
    as_int = {name: int.from_bytes(symbol_bytes(segments, loaded, name), "little")
              for name in ("kernel_entry", "dtb_addr", "uart_base", "skip_checks")}
    assert as_int == {"kernel_entry": where["kernel"], "dtb_addr": where["dtb"],
                      "uart_base": 0x900_0000, "skip_checks": 0}
    assert shown["sha256_digest"] == expected.hexdigest() and shown["entry"] == loaded.base


def test_finish_options():
    segments, loaded, _, where = planned(random.Random(3), uart_base=None, skip_checks=True)
    assert symbol_bytes(segments, loaded, "uart_base") == bytes(8)
    assert symbol_bytes(segments, loaded, "skip_checks") == (1).to_bytes(4, "little")
    assert symbol_bytes(segments, loaded, "sha256_regions") == bytes(256)
    segments, loaded, _, where = planned(random.Random(3), unhashed_kinds=("initrd",))
    table = symbol_bytes(segments, loaded, "sha256_regions")
    starts = {int.from_bytes(table[i:i + 8], "little") for i in range(0, 256, 16)}
    assert where["initrd"] not in starts and where["dtb"] in starts


# --- running it under QEMU ------------------------------------------------------------------

UART = 0x0900_0000
STUB_AT = 0x4010_0000   # QEMU keeps its own device tree in the first MiB of RAM
KERNEL_AT = 0x4020_0000

# Plays relocate_kernel: turns the PL011 on (firmware and the old kernel did; newer QEMU
# drops output otherwise), leaves garbage in x0..x3 and branches to the purgatory.
STUB_S = """
    .text
    .globl _start
_start:
    ldr     x9, =0x09000030         // PL011 UARTCR
    mov     w10, #0x301             // UARTEN | TXE | RXE
    str     w10, [x9]
    ldr     x0, =0xdead0000
    ldr     x1, =0xdead0001
    ldr     x2, =0xdead0002
    ldr     x3, =0xdead0003
    ldr     x9, =ENTRY
    br      x9
"""

# Reports what it was entered with, then powers the machine off (QEMU's own PSCI, as there
# is no firmware: over hvc from EL1, over smc when the machine has EL2).
FAKE_KERNEL_S = """
    .text
    .globl _start
_start:
    mov     x19, x0
    mov     x20, x1
    mov     x21, x2
    mov     x22, x3
    ldr     x9, =0x09000000
    adr     x10, tag_x0
    bl      puts
    mov     x0, x19
    bl      put_hex
    adr     x10, tag_x1
    bl      puts
    orr     x0, x20, x21
    orr     x0, x0, x22
    bl      put_hex
    adr     x10, tag_data
    bl      puts
    ldr     x0, [x19]
    bl      put_hex
    adr     x10, tag_el
    bl      puts
    mrs     x0, CurrentEL
    lsr     x0, x0, #2
    bl      put_hex
    adr     x10, tag_end
    bl      puts
    ldr     x0, =0x84000008         // PSCI SYSTEM_OFF
    CONDUIT #0
1:  b       1b

puts:                               // x10: NUL-terminated string
    ldrb    w11, [x10], #1
    cbz     w11, 2f
    str     w11, [x9]
    b       puts
2:  ret

put_hex:                            // x0 as 16 hex digits
    mov     x12, #60
3:  lsr     x13, x0, x12
    and     x13, x13, #15
    add     x14, x13, #'0'
    add     x15, x13, #('a' - 10)
    cmp     x13, #10
    csel    x14, x14, x15, lo
    str     w14, [x9]
    subs    x12, x12, #4
    b.ge    3b
    ret

tag_x0:   .asciz "KERNEL x0="
tag_x1:   .asciz " x1|x2|x3="
tag_data: .asciz " [x0]="
tag_el:   .asciz " EL"
tag_end:  .asciz "\\n"
"""


def flat_binary(tmp_path: Path, source: str, at: int, name: str, defs=()) -> bytes:
    obj = tmp_path / f"{name}.o"
    obj.write_bytes(assemble(tmp_path, source, name=name))
    elf = tmp_path / f"{name}.elf"
    subprocess.run([tool("ld"), "-static", "-nostdlib", "--build-id=none", f"-Ttext={at:#x}",
                    *[f"--defsym={k}={v:#x}" for k, v in defs], "-o", str(elf), str(obj)],
                   check=True, capture_output=True)
    out = tmp_path / f"{name}.bin"
    subprocess.run([tool("objcopy"), "-O", "binary", str(elf), str(out)], check=True, capture_output=True)
    return out.read_bytes()


@pytest.fixture(scope="module")
def qemu(obj_bytes):
    require(shutil.which("qemu-system-aarch64"), "needs qemu-system-aarch64 (Debian: qemu-system-arm)")
    need("as", "ld", "objcopy")


def run_qemu(tmp_path: Path, segments, entry: int, *, memory="2G", settle: float = 0.0,
             timeout: float = 60.0, el2: bool = False) -> str:
    """Boot the segments; the serial output once QEMU exits, or `settle` seconds after a
    "computed" digest line (the purgatory halts there for good)."""
    stub = flat_binary(tmp_path, STUB_S.replace("ENTRY", f"{entry:#x}"), STUB_AT, "stub")
    argv = ["qemu-system-aarch64", "-M", "virt,virtualization=on" if el2 else "virt", "-cpu", "max", "-accel", "tcg", "-m", memory,
            "-nodefaults", "-display", "none", "-monitor", "none", "-serial", "stdio",
            "-no-reboot"]   # no -bios: virt then runs no firmware (7.2 reads "-bios none" as a file)
    images = [(STUB_AT, stub)] + [(s.mem, s.data) for s in segments]
    for n, (mem, data) in enumerate(images):
        path = tmp_path / f"seg{n}.bin"
        path.write_bytes(data)
        argv += ["-device", f"loader,file={path},addr={mem:#x},force-raw=on"]
    argv += ["-device", f"loader,addr={STUB_AT:#x},cpu-num=0"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = b""
    deadline = time.monotonic() + timeout
    halted_at = None
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.1)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                out += chunk
            if halted_at is None and re.search(rb"computed [0-9a-f]{64}\r\n", out):
                halted_at = time.monotonic()
            if halted_at is not None and time.monotonic() - halted_at >= settle:
                break
        else:
            pytest.fail(f"QEMU did not finish in {timeout} s; output so far: {out!r}")
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert b"qemu-system-aarch64:" not in err, err.decode(errors="replace")
    return out.decode(errors="replace").replace("\r\n", "\n")


def kernel_line(out: str):
    """(x0, x1|x2|x3, the 8 bytes at x0, exception level) of each line the kernel printed."""
    found = re.findall(r"^KERNEL x0=([0-9a-f]{16}) x1\|x2\|x3=([0-9a-f]{16}) \[x0\]=([0-9a-f]{16})"
                       r" EL([0-9a-f]{16})$", out, re.M)
    return [tuple(int(v, 16) for v in line) for line in found]


def boot_plan(tmp_path, *, crash=CRASH, dtb_low=None, corrupt=None, conduit="hvc", **finish):
    """kernel (the fake one) at KERNEL_AT, a random "device tree" and a random blob with a
    zero tail in `crash`, the purgatory after them; segments as QEMU gets them."""
    rng = random.Random(11)
    ram = Range.from_size(0x4000_0000, crash.end - 0x4000_0000)
    layout = Layout([ram], Range(KERNEL_AT, crash.end))
    kernel = layout.place_at(KERNEL_AT, 0x1000, "kernel")
    layout.fill(kernel, flat_binary(tmp_path, FAKE_KERNEL_S.replace("CONDUIT", conduit), KERNEL_AT,
                                    "kernel"))
    dtb = layout.add(rng.randbytes(0x2000), "param_block", low=dtb_low or crash.start, top_down=False)
    blob = layout.add(rng.randbytes(0x9000), "initrd", memsz=0x10000, low=dtb, top_down=False)
    loaded = purgatory_setup.place_purgatory(layout, blob, crash.end)
    segments, _ = purgatory_setup.finish_purgatory(layout.finish(), loaded, kernel_entry=kernel,
                                                   dtb_addr=dtb, **finish)
    if corrupt:
        segments = tuple(replace(s, data=s.data[:100] + bytes([s.data[100] ^ 1]) + s.data[101:])
                         if s.kind == corrupt else s for s in segments)
    return segments, loaded, dtb, kernel


@pytest.mark.parametrize("el2", [False, True], ids=["EL1", "EL2"])
def test_qemu_digest_ok_enters_the_kernel_with_x0_the_dtb(qemu, tmp_path, el2):
    """Entered at EL1, or at EL2 as a kernel that runs at EL2 enters it."""
    segments, loaded, dtb, kernel = boot_plan(tmp_path, uart_base=UART, conduit="smc" if el2 else "hvc")
    out = run_qemu(tmp_path, segments, purgatory_setup.entry_address(loaded), el2=el2)
    assert "pykexec purgatory: sha256 ok\n" in out
    assert f"pykexec purgatory: entering {kernel:#x} with x0 = {dtb:#x}\n" in out
    dtb_bytes = next(s.data for s in segments if s.mem == dtb)
    assert kernel_line(out) == [(dtb, 0, int.from_bytes(dtb_bytes[:8], "little"), 2 if el2 else 1)]


def test_qemu_purgatory_above_4gib(qemu, tmp_path):
    """Everything but the kernel and the stub above 4 GiB: adrp reaches across."""
    high = Range.from_size(0x1_4000_0000, 0x1000_0000)
    segments, loaded, dtb, kernel = boot_plan(tmp_path, crash=high, uart_base=UART)
    assert loaded.base >= 1 << 32
    out = run_qemu(tmp_path, segments, purgatory_setup.entry_address(loaded), memory="6G")
    assert "pykexec purgatory: sha256 ok\n" in out
    dtb_bytes = next(s.data for s in segments if s.mem == dtb)
    assert kernel_line(out) == [(dtb, 0, int.from_bytes(dtb_bytes[:8], "little"), 1)]


@pytest.mark.parametrize("corrupt", ["initrd", "kernel"])
def test_qemu_a_corrupted_segment_halts_before_the_kernel(qemu, tmp_path, corrupt):
    segments, loaded, dtb, kernel = boot_plan(tmp_path, uart_base=UART, corrupt=corrupt)
    out = run_qemu(tmp_path, segments, purgatory_setup.entry_address(loaded), settle=1.0)
    assert "pykexec purgatory: sha256 mismatch, halting\n" in out
    assert "sha256 ok" not in out and "entering" not in out and kernel_line(out) == []
    expected, computed = re.search(r"expected ([0-9a-f]{64})\n  computed ([0-9a-f]{64})", out).groups()
    others = sorted((s for s in segments if s.mem != loaded.base), key=lambda s: s.mem)
    actual = hashlib.sha256(b"".join(s.data + bytes(s.memsz - len(s.data)) for s in others))
    assert computed == actual.hexdigest() != expected


def test_qemu_skip_checks_and_silence(qemu, tmp_path):
    segments, loaded, dtb, _ = boot_plan(tmp_path, uart_base=UART, skip_checks=True, corrupt="initrd")
    out = run_qemu(tmp_path, segments, purgatory_setup.entry_address(loaded))
    assert "pykexec purgatory: checks skipped\n" in out and len(kernel_line(out)) == 1
    segments, loaded, dtb, _ = boot_plan(tmp_path, uart_base=None)
    out = run_qemu(tmp_path, segments, purgatory_setup.entry_address(loaded))
    assert "pykexec purgatory" not in out and kernel_line(out)[0][0] == dtb


def test_an_installed_package_without_the_object_names_the_compilers(tmp_path, monkeypatch):
    """A wheel built where the cross compiler was missing has no arm64 object and no
    sources: the refusal says which compiler its build needed."""
    spec = replace(ARM64, arch="arm64-not-built")   # no such folder: no sources either
    with pytest.raises(build.PurgatoryBuildError) as raised:
        build.purgatory_object(spec)
    line = describe(raised.value)
    assert "\n" not in line and line.startswith("the arm64-not-built purgatory is not installed")
    assert line.endswith("(the build needs gcc, or aarch64-linux-gnu-gcc on other hosts)")
