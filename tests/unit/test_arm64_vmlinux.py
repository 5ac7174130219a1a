"""An arm64 ELF vmlinux (pykexec.arch.arm64.vmlinuxload) loads as the Image it holds: GNU
binutils are the oracle (an object assembled with an Image header and text, data and BSS,
linked at a kernel address with a gap between its PT_LOADs, then `objcopy -O binary`: our
flattened kernel segment must be objcopy's bytes), and the plan is the one of that Image."""

from __future__ import annotations

import subprocess

import pytest

from pykexec.arch import parse_args, plan_load
from pykexec.machine import Machine
from tests.bed.arm64guest import SNAPSHOTS_DIR
from tests.unit.arm64_tools import assemble, need, tool

DT = SNAPSHOTS_DIR / "qemu-arm64-2g-1cpu"
LINK_AT = 0xFFFF800008000000
KERNEL = """
    .text
    .global _text
_text:
    .word 0x14000010, 0                 // code0 (a branch), code1
    .quad 0                             // text_offset
    .quad {image_size}                  // image_size
    .quad 0xa                           // flags: LE, 4K pages, anywhere
    .quad 0, 0, 0
    .ascii "ARM\\x64"
    .word 0
    .fill 0x3000, 1, 0x5a
    .data
    .fill 0x1000, 1, 0xd7
    .bss
    .fill 0x8000, 1, 0
"""


def build(tmp_path, image_size=0x200000, header=True):
    need("as", "ld", "objcopy")
    source = KERNEL.format(image_size=image_size)
    if not header:
        source = source.replace('.ascii "ARM\\x64"', '.ascii "NOPE"')
        assert "NOPE" in source
    obj = tmp_path / "k.o"
    obj.write_bytes(assemble(tmp_path, source, "k"))
    elf, flat = tmp_path / "vmlinux", tmp_path / "Image"
    # text at LINK_AT, data 64 KiB further: two PT_LOADs with a gap, as a vmlinux has
    subprocess.run([tool("ld"), "-o", str(elf), "-e", "_text", "--no-relax",
                    f"-Ttext={LINK_AT:#x}", f"-Tdata={LINK_AT + 0x10000:#x}", str(obj)],
                   check=True, capture_output=True)
    subprocess.run([tool("objcopy"), "-O", "binary", str(elf), str(flat)], check=True,
                   capture_output=True)
    return elf, flat


def plan(argv, snap=DT):
    return plan_load(parse_args(argv), Machine.read(str(snap)), random_bytes=bytes)


def test_a_vmlinux_is_loaded_as_objcopys_image(tmp_path):
    elf, flat = build(tmp_path)
    from_elf = plan(["-p", str(elf), "--append=x"])
    from_image = plan(["-p", str(flat), "--append=x"])
    kernel = next(s for s in from_elf.segments if s.kind == "kernel")
    assert kernel.data == flat.read_bytes()
    assert from_elf.notes["format"] == "vmlinux" and from_image.notes["format"] == "Image"
    assert [(s.kind, s.mem, s.memsz, s.data) for s in from_elf.segments
            if s.kind != "purgatory"] == \
        [(s.kind, s.mem, s.memsz, s.data) for s in from_image.segments if s.kind != "purgatory"]
    assert kernel.mem == 0xA9A00000 and kernel.memsz == 0x200000


def test_type_vmlinux_takes_only_an_elf(tmp_path):
    _elf, flat = build(tmp_path)
    from pykexec.errors import LoadError
    with pytest.raises(LoadError, match="vmlinux: not an ELF file"):
        plan(["-p", "-t", "vmlinux", str(flat)])


def test_a_vmlinux_without_an_image_header_is_one_line(tmp_path):
    elf, _flat = build(tmp_path, header=False)
    from pykexec.errors import LoadError
    with pytest.raises(LoadError) as err:
        plan(["-p", str(elf)])
    assert "\n" not in str(err.value) and "a vmlinux loads as the Image it holds" in str(err.value)


def test_an_x86_elf_is_no_arm64_vmlinux(tmp_path):
    from pykexec.errors import LoadError
    from tests.unit.badinput import elf_kernel
    path = tmp_path / "vmlinux-x86"
    path.write_bytes(elf_kernel())
    with pytest.raises(LoadError, match="EM_X86_64, not an arm64 vmlinux"):
        plan(["-p", str(path)])
