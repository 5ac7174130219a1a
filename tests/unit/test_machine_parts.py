"""The machine's parts that the older tests reach only through whole loads: the kexec state
(where each flag lives, with the newer sys/kernel/kexec/ fallback), the ELF machine table
that tells a folder's architecture, and the x86 facts kept in the machine's cache. Tables on
fake machine folders (tests/unit/test_machine.make_machine) and synthetic ones."""

from __future__ import annotations

import os

import pytest

from pykexec.abi.elf import EM_386, EM_X86_64
from pykexec.abi.machines import ELF_MACHINE_NAMES, family_of, uname_by_address_digits
from pykexec.machine import Machine, MachineError
from tests.bed import synthetic
from tests.unit.test_machine import make_machine

K = "sys/kernel/"


NO_FLAGS = {K + "kexec_loaded": None, K + "kexec_crash_loaded": None,  # of qemu_files()
            K + "kexec_crash_size": None}


class Refused(str):
    """An expected MachineError: its message pattern."""


# (files written, fact, expected value or the MachineError pattern)
KEXEC_STATE = [
    ({K + "kexec_loaded": "1\n"}, "kexec_loaded", True),
    ({K + "kexec/loaded": "1\n"}, "kexec_loaded", True),                 # only the newer file
    ({K + "kexec_loaded": "0\n", K + "kexec/loaded": "1\n"}, "kexec_loaded", False),
    ({}, "kexec_loaded", None),
    ({K + "kexec/crash_loaded": "0\n"}, "kexec_crash_loaded", False),
    ({K + "kexec/crash_size": "134217728\n"}, "kexec_crash_size", 128 << 20),
    ({K + "crash_elfcorehdr_size": "8192\n"}, "crash_elfcorehdr_size", 8192),
    ({K + "kexec/crash_elfcorehdr_size": "4096\n"}, "crash_elfcorehdr_size", 4096),
    ({K + "kexec/loaded": "2\n"}, "kexec_loaded", Refused(r"kexec/loaded:1: expected 0 or 1, got '2'")),
    ({"proc/sys/kernel/kexec_load_disabled": "1\n"}, "kexec_load_disabled", True),
    ({K + "security/lockdown": "[none] integrity confidentiality\n"}, "lockdown", "none"),
    ({K + "security/lockdown": "none integrity\n"}, "lockdown", Refused(r"lockdown:1: no \[mode\]")),
]


@pytest.mark.parametrize("files, fact, expected", KEXEC_STATE)
def test_kexec_state(tmp_path, files, fact, expected):
    m = make_machine(tmp_path, **{**NO_FLAGS, **files})
    if isinstance(expected, Refused):
        with pytest.raises(MachineError, match=expected):
            getattr(m, fact)
    else:
        assert getattr(m, fact) == expected


@pytest.mark.parametrize("files, size, expected", [
    ({K + "kexec_crash_loaded": "1\n"}, 2, b"1\n"),
    ({K + "kexec_crash_loaded": "123\n"}, 2, b"12"),       # only the bytes asked for
    ({K + "kexec_crash_loaded": "\n1\n"}, 2, b"\n"),       # the first line only
    ({K + "kexec/crash_loaded": "1\n"}, 2, b"1\n"),       # the newer place
    ({}, 2, None),
])
def test_kexec_flag_head(tmp_path, files, size, expected):
    assert make_machine(tmp_path, **{**NO_FLAGS, **files}).kexec_flag_head("kexec_crash_loaded", size) == expected


def test_kexec_flag_head_of_a_directory_is_an_error(tmp_path):
    m = make_machine(tmp_path, **NO_FLAGS)
    os.makedirs(tmp_path / "sys/kernel/kexec_crash_loaded")
    with pytest.raises(MachineError, match="Is a directory"):
        m.kexec_flag_head("kexec_crash_loaded", 2)


@pytest.mark.parametrize("uname, family", [
    ("x86_64", "x86_64"), ("i686", "i386"), ("i386", "i386"), ("i586", "i386"),
    ("riscv64", "riscv64"),                       # unknown: its own family
])
def test_family_of(uname, family):
    assert family_of(uname) == family


def test_elf_machine_table():
    assert ELF_MACHINE_NAMES[EM_X86_64].uname == "x86_64"
    assert ELF_MACHINE_NAMES[EM_386].uname == "i686"        # what Debian's i386 kernel says
    assert uname_by_address_digits(16) == "x86_64" and uname_by_address_digits(8) == "i686"
    assert uname_by_address_digits(12) is None


@pytest.mark.parametrize("preset", ["qemu_like_1g", "no_kaslr_4cpu", "edd_bios_disks"])
def test_x86_facts_of_a_synthetic_machine_are_cached(tmp_path, preset, monkeypatch):
    """kernel_text/edd/acpi_rsdp of pykexec.arch.x86 equal the synthetic machine's truth,
    and a second call reads no file again (the machine's cache)."""
    from pykexec.arch.x86 import firmware, kerneltext
    from pykexec.machine import reader
    if preset not in synthetic.PRESETS:
        pytest.fail(f"no synthetic preset {preset}")
    layout = synthetic.make_machine(str(tmp_path), synthetic.PRESETS[preset])
    m = Machine.read(str(tmp_path))
    first = (kerneltext.kernel_text(m), kerneltext.page_offset(m), firmware.edd(m),
             firmware.acpi_rsdp(m))
    assert first[0].page_offset == layout.page_offset == first[1]
    assert first[3] == layout.spec.acpi_rsdp
    reads = []
    monkeypatch.setattr(reader, "read_machine_file", lambda *a: reads.append(a))
    again = (kerneltext.kernel_text(m), kerneltext.page_offset(m), firmware.edd(m),
             firmware.acpi_rsdp(m))
    assert again == first and reads == []
