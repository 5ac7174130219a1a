"""Parser-level properties: round trips, and arbitrary bytes raise only the parser's error type.

Each call runs under tests/fuzz/harness.py's time and memory bound: a CPU list such as
"0-4294967295" must be refused, not expanded.
"""

from __future__ import annotations

import functools

from hypothesis import example, given, strategies as st

from pykexec import machine as pmachine
from tests.bed import synthetic
from tests.fuzz import harness
from tests.fuzz import strategies as fz
from tests.fuzz.profiles import examples

PARSE_SECONDS = 5
PARSE_PEAK = 32 << 20


def bounded(fn, *args):
    """fn(*args) in a bounded child; the child's exception comes back as its class name."""
    def call():
        try:
            return ("ok", fn(*args))
        except Exception as e:  # noqa: BLE001 - judged by the caller
            return ("raised", e.__class__.__name__, str(e))
    result = harness.in_child(call, seconds=PARSE_SECONDS, peak=PARSE_PEAK,
                              what=f"{getattr(fn, '__name__', 'call')}{args!r:.200}")
    return result


def returns(fn, *args):
    result = bounded(fn, *args)
    assert result[0] == "ok", result
    return result[1]


def raises_only(allowed, fn, *args):
    result = bounded(fn, *args)
    assert result[0] == "ok" or result[1] in allowed, result


@examples(0.3)
@given(fz.iomem_trees())
def test_iomem_round_trip(lines):
    tree = returns(pmachine.parse_iomem, fz.render_iomem(lines))
    got = [(n.range.start, n.range.end - 1, n.name, n.depth) for n in tree.walk()]
    assert got == [(l.start, l.end, l.name, l.depth) for l in lines]


@examples(0.3)
@given(fz.hostile_text())
def test_iomem_garbage_raises_only_machine_error(text):
    raises_only({"MachineError"}, pmachine.parse_iomem, text)


@examples(0.3)
@given(fz.machines(mutate=False).filter(lambda m: m.layout is not None).flatmap(
    lambda m: st.tuples(st.just(m), fz.machine_mutations(synthetic.snapshot_files(m.layout)))))
def test_mutated_iomem_raises_only_machine_error(case):
    _, changes = case
    text = changes.get("proc/iomem")
    if text:
        raises_only({"MachineError"}, pmachine.parse_iomem, text.decode("latin-1"))


@examples(0.3)
@given(fz.cpu_sets())
def test_cpu_list_round_trip(cpus):
    assert list(returns(pmachine.parse_cpu_list, fz.render_cpu_list(cpus))) == cpus


@examples(0.3)
@given(fz.CPU_LIST_HOSTILE)
@example("0-4294967295")
def test_cpu_list_garbage_raises_only_value_error(text):
    raises_only({"ValueError", "MachineError"}, pmachine.parse_cpu_list, text)


@functools.lru_cache(maxsize=None)
def _kcore():
    return synthetic.kcore_header_bytes(synthetic.machine_layout(synthetic.PRESETS["qemu_like_1g"]))


@examples(0.3)
@given(st.data())
def test_kcore_header_garbage_raises_only_machine_error(data):
    blob = data.draw(st.one_of(fz.mutate_bytes(_kcore()[:2048], 12), st.binary(max_size=256)))
    raises_only({"MachineError"}, pmachine.parse_kcore_loads, blob)


@functools.lru_cache(maxsize=None)
def _purgatory(arch):
    from pykexec.purgatory.build import purgatory_object
    from tests.unit.relocs import SPECS
    return purgatory_object(SPECS[arch])


@examples(0.3)
@given(arch=st.sampled_from(["x86_64", "i386"]), data=st.data())
def test_purgatory_object_garbage_raises_only_elfrel_error(arch, data):
    from pykexec.purgatory.elfrel import ElfRelError, RelocatableObject
    from tests.unit.relocs import X86_RELOCATIONS
    blob = data.draw(fz.mutate_bytes(_purgatory(arch), 6))
    base = data.draw(st.one_of(st.just(0x3EF5A000), fz.edge_ints()))

    def parse_and_place():
        obj = RelocatableObject.from_bytes(blob, relocations=X86_RELOCATIONS)
        obj.layout(base - base % max(obj.required_alignment, 1))

    raises_only({c.__name__ for c in (ElfRelError, *ElfRelError.__subclasses__())}, parse_and_place)


# --- this session's parsers: UKI (PE), device trees, arm64 kernel files, compressed kernels ---

import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@functools.lru_cache(maxsize=None)
def _uki() -> bytes:
    """A small UKI laid out as objcopy lays one out: .cmdline, .linux, .initrd sections."""
    data = bytearray(0x1000)
    data[0:2] = b"MZ"
    struct.pack_into("<I", data, 0x3c, 0x80)
    struct.pack_into("<4sHHIIIHH", data, 0x80, b"PE\0\0", 0x8664, 3, 0, 0, 0, 0, 0)
    for i, (name, size) in enumerate(((b".cmdline", 0x20), (b".linux", 0x400), (b".initrd", 0x300))):
        struct.pack_into("<8sIIIIIIHHI", data, 0x98 + 40 * i, name, size, 0, 0x400, 0x400 * (i + 1),
                         0, 0, 0, 0, 0)
    return bytes(data)


@examples(0.3)
@given(st.data())
def test_uki_garbage_is_a_uki_not_one_or_one_error(data):
    from pykexec.core.uki import parse_uki
    blob = data.draw(st.one_of(fz.mutate_bytes(_uki(), 12), st.binary(max_size=512)))
    raises_only({"UkiError"}, parse_uki, blob, "fuzz.efi")


@functools.lru_cache(maxsize=None)
def _read(rel: str) -> bytes:
    with open(os.path.join(ROOT, rel), "rb") as f:
        return f.read()


@examples(0.3)
@given(st.data())
def test_device_tree_garbage_raises_only_fdt_error(data):
    """Parsing and the new kernel's edits of a damaged machine DTB (QEMU's, 1 MiB)."""
    from pykexec.arch.arm64.dtb import boot_dtb
    tree = _read("tests/snapshots/qemu-arm64-2g-1cpu/sys/firmware/fdt")
    blob = data.draw(fz.mutate_bytes(tree[:0x4000] if data.draw(st.booleans()) else tree, 12))

    def edit():
        boot_dtb(blob, "fuzz.dtb", cmdline="console=ttyAMA0", initrd=(0x48000000, 0x48100000),
                 elfcorehdr=(0xb99ff000, 0x1000), usable_memory=((0xa9a00000, 0x10000000),),
                 random_bytes=lambda n: bytes(n))
    raises_only({"FdtError"}, edit)


@examples(0.3)
@given(st.data())
def test_arm64_kernel_file_garbage_raises_only_image_error(data):
    from pykexec.arch.arm64.image import parse_image, parse_zboot, zboot_image
    blob = data.draw(fz.mutate_bytes(_read("examples/kernels/stand-in-Image-arm64"), 12))
    for parse in (parse_image, parse_zboot, zboot_image):
        raises_only({"ImageError", "InputFileError"}, parse, blob, "fuzz-Image")


@examples(0.3)
@given(kind=st.sampled_from(["gzip", "xz", "zstd"]), data=st.data())
def test_damaged_compressed_kernels_raise_only_input_file_error(kind, data):
    """Bounded decompression (1 MiB limit) of damaged gzip, xz and zstd data."""
    import gzip
    import lzma

    import zstandard
    from pykexec.core.inputfiles import decompress_bounded
    plain = bytes(range(256)) * 512
    packed = {"gzip": gzip.compress, "xz": lzma.compress,
              "zstd": zstandard.ZstdCompressor().compress}[kind](plain)
    blob = data.draw(fz.mutate_bytes(packed, 8))
    raises_only({"InputFileError"}, decompress_bounded, blob, kind, "fuzz.z", "kernel", 1 << 20,
                "the test's limit")
