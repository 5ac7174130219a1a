"""The QEMU bed's building blocks: bzImage payload extraction, the initramfs archive, loader argv.

Synthetic inputs run anywhere; the checks on the real Debian kernel are e2e (they download it).
"""

from __future__ import annotations

import gzip
import lzma
import os
import shutil
import struct

import pytest
from elftools.elf.elffile import ELFFile

from tests.bed import initramfs
from tests.bed.kernels import BedError, bzimage_payload, extract_vmlinux, get_kernel
from tests.bed.qemu import LOADERS, loader_argv, tmp_entries
from tests.conftest import require

FAKE_ELF = b"\x7fELF\x02\x01\x01" + bytes(57) + b"kernel body" * 100


def fake_bzimage(payload: bytes, setup_sects: int = 3, version: int = 0x20F) -> bytes:
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, version)
    prefix = b"\x90" * 0x4000            # decompressor code before the payload
    struct.pack_into("<II", setup, 0x248, len(prefix), len(payload))
    return bytes(setup) + prefix + payload + b"\xcc" * 64


def xz_payload(data: bytes) -> bytes:
    # As the kernel build does: xz (CRC32, x86 BCJ + LZMA2), then the size appended.
    xz = lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32,
                       filters=[{"id": lzma.FILTER_X86}, {"id": lzma.FILTER_LZMA2}])
    return xz + struct.pack("<I", len(data))


def test_extract_vmlinux_from_xz_payload():
    image = fake_bzimage(xz_payload(FAKE_ELF))
    assert bzimage_payload(image).startswith(b"\xfd7zXZ\x00")
    assert extract_vmlinux(image) == FAKE_ELF


def test_extract_vmlinux_from_gzip_payload():
    assert extract_vmlinux(fake_bzimage(gzip.compress(FAKE_ELF))) == FAKE_ELF


def test_extract_rejects_non_bzimage_and_old_protocol():
    with pytest.raises(BedError, match="HdrS"):
        extract_vmlinux(b"\0" * 4096)
    with pytest.raises(BedError, match="2.08"):
        extract_vmlinux(fake_bzimage(xz_payload(FAKE_ELF), version=0x206))


def test_newc_archive_layout():
    blob = initramfs.newc_archive([("init", initramfs.EXEC, b"#!/bin/busybox sh\n"),
                                   ("dev/console", initramfs.CHR, b"5:1")])
    assert blob.startswith(b"070701") and len(blob) % 512 == 0
    assert b"TRAILER!!!\0" in blob
    # header fields are 8 hex digits: mode of the first entry, rdev of the second
    assert int(blob[14:22], 16) == initramfs.EXEC
    second = blob.index(b"070701", 6)
    assert int(blob[second + 78:second + 86], 16) == 5 and int(blob[second + 86:second + 94], 16) == 1


def test_loader_argv_shape():
    argv = loader_argv(LOADERS["kexec"], "/k", "/i", append="x y", extra=["--args-linux"], debug=True)
    assert argv == ["/usr/sbin/kexec", "-d", "-p", "/k", "--args-linux", "--initrd=/i", "--append=x y"]


def test_tmp_entries_the_guest_must_keep():
    assert tmp_entries(["--initrd=/tmp/x/initrd.img", "/tmp/k", "/var/tmp/y",
                        "--append=console=ttyS0 root=/tmp/z", "/tmp", "/tmp/"]) == ["k", "x", "z"]
    assert tmp_entries(["/usr/sbin/kexec", "-p", "/boot/vmlinuz"]) == []
    # The guest's own results share needs no host folder (loaders may write there).
    assert tmp_entries(["--save-plan=/tmp/results/plan", "/tmp/k"]) == ["k"]
    with pytest.raises(BedError):
        tmp_entries(["/tmp/a$b/initrd"])     # not a name the guest's init can bind


@pytest.mark.e2e
def test_debian_kernel_and_initramfs():
    require(shutil.which("apt-get") is not None and shutil.which("dpkg") is not None,
            "needs apt-get and dpkg (Debian)")
    try:
        kernel = get_kernel()
        initrd = initramfs.get_initramfs(kernel)
    except BedError as e:
        require(False, f"test bed not available: {e}")
    assert kernel.bzimage.is_file() and kernel.modules_dir.is_dir()
    assert kernel.release.endswith("-amd64")
    with open(kernel.vmlinux, "rb") as f:
        elf = ELFFile(f)
        assert elf.header.e_machine == "EM_X86_64" and elf.header.e_type == "ET_EXEC"
        loads = [s for s in elf.iter_segments() if s.header.p_type == "PT_LOAD"]
        assert loads[0].header.p_paddr == 0x1000000      # link address: 16 MiB
    names = gzip.decompress(initrd.read_bytes())
    for needed in (b"init\0", b"bin/busybox\0", b"lib/modules/bed/9p.ko\0", b"dev/console\0"):
        assert needed in names
    assert os.path.getsize(initrd) < 4 << 20
