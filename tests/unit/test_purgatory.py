"""The x86_64 purgatory: build, symbol contract, code hygiene, and its SHA-256.

The SHA-256 used by the purgatory (arch/x86_64/purgatory/sha256.c) is compiled for the
build host with a small harness and compared with hashlib.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from pykexec import purgatory
from pykexec.elfrel import RelocatableObject
from tests.conftest import require

SRC = purgatory.source_dir("x86_64")

# name -> st_size; the loader writes these through the symbol table.
LOADER_SYMBOLS = {
    "entry64_regs": 136,
    "sha256_regions": 256,
    "sha256_digest": 32,
    "skip_checks": 4,
    "panic_kernel": 1,
    "backup_start": 8,
    "backup_src_start": 8,
    "backup_src_size": 8,
    "console_serial": 1,
    "serial_base": 2,
    "serial_baud": 4,
    "cmdline_end": 8,
}


def need_toolchain():
    require(shutil.which("gcc") and shutil.which("ld") and shutil.which("nm"),
            "needs gcc and binutils to build the purgatory")


@pytest.fixture(scope="module")
def obj_bytes():
    need_toolchain()
    return purgatory.purgatory_object("x86_64")


@pytest.fixture(scope="module")
def elf(obj_bytes):
    return ELFFile(io.BytesIO(obj_bytes))


@pytest.fixture(scope="module")
def ro(obj_bytes):
    return RelocatableObject.from_bytes(obj_bytes)


def global_symbols(elf):
    symtab = elf.get_section_by_name(".symtab")
    return {s.name: s for s in symtab.iter_symbols() if s["st_info"]["bind"] == "STB_GLOBAL"}


# --- the object --------------------------------------------------------------------

def test_object_kind(elf):
    assert elf["e_type"] == "ET_REL"
    assert elf["e_machine"] == "EM_X86_64"
    assert elf.elfclass == 64 and elf.little_endian


def test_loader_symbol_contract(elf):
    syms = global_symbols(elf)
    for name, size in LOADER_SYMBOLS.items():
        assert name in syms, f"{name} missing or not STB_GLOBAL"
        sym = syms[name]
        assert sym["st_info"]["type"] == "STT_OBJECT", name
        assert sym["st_size"] == size, name
        section = elf.get_section(sym["st_shndx"])
        assert section["sh_type"] == "SHT_PROGBITS", f"{name} in {section.name}"
        assert section["sh_flags"] & 0x2, f"{name} not in an allocated section"
        assert sym["st_value"] + size <= section["sh_size"]
    assert "entry32_regs" not in syms  # the i386 purgatory will carry its own


def test_entry_and_stack(elf, ro):
    syms = global_symbols(elf)
    start = syms["purgatory_start"]
    assert elf.get_section(start["st_shndx"]).name == ".text"
    assert start["st_value"] == 0 == elf["e_entry"]  # first thing in .text
    loaded = ro.layout(0x40000000)
    assert loaded.entry == loaded.symbol_address("purgatory_start") == 0x40000000
    # stack_end tops a stack of at least 4 KiB inside the segment.
    stack_end = loaded.symbol_address("stack_end")
    assert stack_end % 16 == 0
    assert loaded.base + 4096 <= stack_end <= loaded.base + loaded.memsz
    stack = elf.get_section(syms["stack_end"]["st_shndx"])
    assert syms["stack_end"]["st_value"] >= 4096 and stack["sh_flags"] & 0x2


def test_no_undefined_symbols_or_common(elf):
    symtab = elf.get_section_by_name(".symtab")
    for sym in symtab.iter_symbols():
        if sym.name:
            assert sym["st_shndx"] not in ("SHN_UNDEF", "SHN_COMMON"), sym.name


def test_sections_and_relocations(elf, ro):
    names = {s.name for s in elf.iter_sections()}
    assert not names & {".eh_frame", ".rela.eh_frame", ".note.gnu.property", ".got", ".plt"}
    types = set()
    for section in elf.iter_sections():
        if section["sh_type"] in ("SHT_RELA", "SHT_REL"):
            types.update(r["r_info_type"] for r in section.iter_relocations())
    # Only 64-bit absolute and pc-relative relocations: loadable anywhere.
    assert types <= {1, 2, 4}, types  # R_X86_64_64, PC32, PLT32


@pytest.mark.parametrize("base", [0x1000, 0xFFFF_F000 - 0x4000, 0x10_0000_0000, 0xFFFF_FFFF_0000_0000])
def test_loads_anywhere(ro, base):
    loaded = ro.layout(base)
    assert loaded.memsz == ro.memsz and loaded.bufsz == ro.bufsz


def test_defaults(ro):
    loaded = ro.layout(0x100000)
    assert loaded.get_int("serial_base") == 0x3F8
    for name in LOADER_SYMBOLS:
        if name != "serial_base":
            assert loaded.get_symbol(name) == bytes(LOADER_SYMBOLS[name]), name


def test_code_uses_no_simd_and_no_tls(obj_bytes, tmp_path):
    require(shutil.which("objdump"), "needs objdump")
    path = tmp_path / "p.o"
    path.write_bytes(obj_bytes)
    text = subprocess.run(["objdump", "-d", str(path)], check=True, capture_output=True, text=True).stdout
    for bad in ("%xmm", "%ymm", "%zmm", "%mm", "%st", "%fs:", "%gs:", "endbr64"):
        assert bad not in text, bad


def test_size_is_small(ro):
    # Guard against accidental bloat (e.g. .eh_frame, large tables).
    assert ro.bufsz < 0x2000
    assert ro.memsz <= ro.bufsz + 0x2000 + 64


def test_reproducible_build(tmp_path, obj_bytes):
    need_toolchain()
    out = purgatory.build_purgatory("x86_64", tmp_path / "again.o")
    assert out.read_bytes() == obj_bytes


def test_missing_compiler_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/gcc")
    with pytest.raises(purgatory.PurgatoryBuildError, match="gcc"):
        purgatory.build_purgatory("x86_64", tmp_path / "x.o")
    assert not (tmp_path / "x.o").exists()


def test_unknown_arch():
    with pytest.raises(purgatory.PurgatoryBuildError, match="sparc"):
        purgatory.purgatory_object("sparc")


# --- SHA-256 against hashlib -----------------------------------------------------------

HARNESS = r"""
/* Host test driver for sha256.c: hash stdin, streamed or through a region table. */
#include <stdio.h>
#include <stdlib.h>
#include "purgatory.h"

static void print(const uint8_t *d)
{
	for (int i = 0; i < 32; i++)
		printf("%02x", d[i]);
	printf("\n");
}

int main(int argc, char **argv)
{
	size_t cap = 1 << 16, len = 0, n;
	uint8_t *buf = malloc(cap), out[32];

	while ((n = fread(buf + len, 1, cap - len, stdin)) > 0) {
		len += n;
		if (len == cap)
			buf = realloc(buf, cap *= 2);
	}
	if (argc >= 3 && argv[1][0] == 's') {
		/* "stream STEP": sha256_update in pieces of STEP bytes. */
		size_t step = strtoul(argv[2], NULL, 0), off = 0;
		struct sha256_ctx ctx;

		sha256_init(&ctx);
		while (off < len) {
			size_t take = len - off < step ? len - off : step;
			sha256_update(&ctx, buf + off, take);
			off += take;
		}
		sha256_final(&ctx, out);
	} else {
		/* "regions L0 L1 ...": consecutive slices of stdin as up to 16 regions. */
		struct sha256_region regions[SHA256_REGIONS] = {{0, 0}};
		size_t off = 0;

		for (int i = 2; i < argc && i - 2 < SHA256_REGIONS; i++) {
			size_t l = strtoul(argv[i], NULL, 0);
			regions[i - 2].start = l ? (uint64_t)(uintptr_t)(buf + off) : 0;
			regions[i - 2].len = l;
			off += l;
		}
		sha256_hash_regions(regions, SHA256_REGIONS, out);
	}
	print(out);
	return 0;
}
"""


@pytest.fixture(scope="module")
def sha_harness(tmp_path_factory):
    require(shutil.which("gcc"), "needs gcc")
    tmp = tmp_path_factory.mktemp("sha")
    (tmp / "harness.c").write_text(HARNESS)
    exe = tmp / "sha256-host"
    subprocess.run(
        ["gcc", "-std=gnu11", "-O2", "-Wall", "-Wextra", "-fno-builtin", f"-I{SRC}",
         "-o", str(exe), str(tmp / "harness.c"), str(SRC / "sha256.c")],
        check=True, capture_output=True, text=True,
    )
    return exe


def run_harness(exe, data: bytes, *args) -> str:
    proc = subprocess.run([str(exe), *map(str, args)], input=data, capture_output=True, check=True)
    return proc.stdout.decode().strip()


LENGTHS = [0, 1, 2, 3, 31, 32, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 191, 192, 1000, 4095,
           4096, 4097, 65536 + 7, 1 << 20]


@pytest.mark.parametrize("length", LENGTHS)
def test_sha256_matches_hashlib(sha_harness, length):
    rng = random.Random(length)
    data = rng.randbytes(length)
    expected = hashlib.sha256(data).hexdigest()
    assert run_harness(sha_harness, data, "stream", 1 << 30) == expected
    for step in (1, 7, 63, 64, 65, 1000):
        if step < 200 and length > 70000:
            continue  # byte-at-a-time over a MiB is slow through the harness only
        assert run_harness(sha_harness, data, "stream", step) == expected, step


def test_sha256_random_lengths(sha_harness):
    rng = random.Random(2024)
    for _ in range(40):
        data = rng.randbytes(rng.randrange(0, 3000))
        step = rng.randrange(1, 200)
        assert run_harness(sha_harness, data, "stream", step) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("lengths", [
    [],
    [0, 0, 0],
    [1],
    [100, 0, 55, 0, 64, 1],
    [4096] * 16,
    [3, 61, 0, 200, 1 << 16, 0, 17],
])
def test_sha256_regions(sha_harness, lengths):
    data = random.Random(len(lengths)).randbytes(sum(lengths))
    assert run_harness(sha_harness, data, "regions", *lengths) == hashlib.sha256(data).hexdigest()


# --- building as part of the package --------------------------------------------------

def test_installed_object_is_current(obj_bytes):
    """purgatory_object() returns the in-package object, rebuilt when sources change."""
    path = purgatory.installed_path("x86_64")
    assert path.is_file() and path.read_bytes() == obj_bytes
    if SRC.is_dir():
        newest = max(p.stat().st_mtime for p in SRC.iterdir())
        assert path.stat().st_mtime >= newest
