"""A coverage-guided (atheris/libFuzzer) target over pykexec's byte and text parsers.

Run by `scripts/fuzz --atheris SECONDS`, not by pytest. The first input byte picks the parser;
the rest is its input. Each parser may refuse with its own error type, nothing else: any other
exception is a crash libFuzzer reports (and saves under the artifact prefix). libFuzzer's own
-timeout and -rss_limit_mb bound time and memory per input.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from pykexec import machine
    from pykexec.purgatory import elfrel
    from tests.unit.relocs import X86_RELOCATIONS
    from pykexec.arch.x86 import bzimage
    from pykexec.arch.x86_64 import elf_x86_64
    from pykexec.arch.arm64 import dtb as arm64_dtb, fdt, image as arm64_image
    from pykexec.core import inputfiles, uki


def _bzimage(data: bytes):
    try:
        image = bzimage.BzImage.parse(data)
        image.payload, image.protocol, image.init_size, image.relocatable  # noqa: B018
    except bzimage.ImageError:
        pass


def _elf(data: bytes):
    elf_x86_64.probe(data)      # a message or None, never an exception


def _text(parse, allowed):
    def go(data: bytes):
        try:
            parse(data.decode("latin-1"))
        except allowed:
            pass
    return go


def _kcore(data: bytes):
    try:
        machine.parse_kcore_loads(data)
    except machine.MachineError:
        pass


def _object(data: bytes):
    try:
        elfrel.RelocatableObject.from_bytes(data, relocations=X86_RELOCATIONS).layout(0x3EF5A000)
    except elfrel.ElfRelError:
        pass


def _uki(data: bytes):
    try:
        uki.parse_uki(data, "fuzz.efi")
    except uki.UkiError:
        pass


def _dtb(data: bytes):
    try:
        arm64_dtb.boot_dtb(data, "fuzz.dtb", cmdline="console=ttyAMA0", initrd=None,
                           elfcorehdr=(0x80000000, 0x1000), usable_memory=((0x90000000, 1 << 28),),
                           random_bytes=lambda n: bytes(n))
    except fdt.FdtError:
        pass


def _arm64_image(data: bytes):
    for parse in (arm64_image.parse_image, arm64_image.zboot_image):
        try:
            parse(data, "fuzz-Image")
        except (arm64_image.ImageError, inputfiles.InputFileError):
            pass


def _zstd(data: bytes):
    try:
        inputfiles.decompress_bounded(data, "zstd", "fuzz.zst", "kernel", 1 << 24, "the limit")
    except inputfiles.InputFileError:
        pass


TARGETS = [_bzimage, _elf, _text(machine.parse_iomem, machine.MachineError),
           _text(machine.parse_cpu_list, (ValueError, machine.MachineError)), _kcore, _object,
           _uki, _dtb, _arm64_image, _zstd]


def one_input(data: bytes) -> None:
    if data:
        TARGETS[data[0] % len(TARGETS)](data[1:])


def seeds():
    """One starting input per parser, so libFuzzer begins from valid shapes."""
    from tests.bed import synthetic
    from tests.bed.fakekernel import FakeKernel, bzimage_bytes
    from tests.unit.badinput import elf_kernel
    from pykexec.arch.x86.purgatory_spec import X86_64
    from pykexec.purgatory.build import purgatory_object
    layout = synthetic.machine_layout(synthetic.PRESETS["qemu_like_1g"])
    return [bytes([0]) + bzimage_bytes(FakeKernel(payload_size=512)),
            bytes([1]) + elf_kernel()[:0x1100],
            bytes([2]) + synthetic.render_iomem(layout).encode(),
            bytes([3]) + b"0-3,5,7-8\n",
            bytes([4]) + synthetic.kcore_header_bytes(layout)[:4096],
            bytes([5]) + purgatory_object(X86_64),
            bytes([6]) + _uki_seed(),
            bytes([7]) + _read("tests/snapshots/qemu-arm64-2g-1cpu/sys/firmware/fdt")[:0x4000],
            bytes([8]) + _read("examples/kernels/stand-in-Image-arm64"),
            bytes([9]) + __import__("zstandard").ZstdCompressor().compress(bytes(range(256)) * 64)]


def _uki_seed() -> bytes:
    from tests.fuzz.test_fuzz_parsers import _uki as small_uki
    return small_uki()


def _read(rel: str) -> bytes:
    import os
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, rel), "rb") as f:
        return f.read()


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
