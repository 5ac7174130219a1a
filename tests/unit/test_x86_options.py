"""x86's option table (pykexec.arch.x86.options): its options reach the load through
Request.arch_options, folded the way kexec-tools overwrites its settings, checked while argv
is walked, and shared by both x86 architectures."""

import pytest

from pykexec import arch as registry
from pykexec.arch import parse_args
from pykexec.arch.x86.options import FIELDS, TABLE, X86Options, x86_options
from pykexec.request import ArchOptionError, UsageError


def test_no_x86_option_given_is_the_default():
    assert x86_options(parse_args(["-p", "K"])) == X86Options()
    assert X86Options().serial_base == 0x3F8 and X86Options().core_header_class is None


@pytest.mark.parametrize("argv, field, value", [
    (["--elf32-core-headers", "--elf64-core-headers"], "core_header_class", 64),
    (["--elf64-core-headers", "--elf32-core-headers"], "core_header_class", 32),
    (["--args-linux", "--args-none"], "args_mode", "none"),
    (["--args-none", "--args-linux"], "args_mode", "linux"),
    (["--serial=ttyS1", "--serial=0x2e8"], "serial_base", 0x2E8),
    (["--serial-baud=9600", "--serial-baud=115200"], "serial_baud", 115200),
])
def test_the_last_one_given_wins(argv, field, value):
    options = x86_options(parse_args(["-l", "K", *argv]))
    assert getattr(options, field) == value


def test_flags_set_their_field_and_only_it():
    options = x86_options(parse_args(["-l", "K", "--noefi", "--real-mode"]))
    assert options == X86Options(noefi=True, real_mode=True)


def test_a_bad_serial_value_fails_in_argv_order_with_status_255():
    with pytest.raises(ArchOptionError, match="Bad serial port base 'ttyS9'") as err:
        parse_args(["-p", "K", "--serial=ttyS9", "--mem-max=12q"])
    assert err.value.code == 255
    with pytest.raises(UsageError, match="--mem-max") as err:
        parse_args(["-p", "K", "--mem-max=12q", "--serial=ttyS9"])
    assert err.value.code == 1
    with pytest.raises(ArchOptionError, match="Bad serial port base ''"):
        parse_args(["-p", "K", "--serial="])
    # -h acts when getopt reaches it: a bad value after it is never looked at
    assert parse_args(["-h", "--serial=ttyS9"]).show_help


def test_every_x86_option_is_read_refused_shared_or_documented_as_ignored():
    names = {o.name for o in TABLE.options}
    common = {"command-line", "append", "reuse-cmdline", "initrd", "ramdisk"}
    ignored = {"reuse-video-type"}    # pykexec always copies screen_info
    assert names == set(FIELDS) | set(TABLE.refused) | common | ignored
    assert set(FIELDS).isdisjoint(TABLE.refused)


def test_both_x86_arches_share_the_table_and_it_is_registered_once():
    assert registry.arch_for("x86_64").options is TABLE is registry.arch_for("i686").options
    assert [t for t in registry.option_tables() if t is TABLE] == [TABLE]


def test_refused_options_are_recorded_in_argv_order():
    request = parse_args(["-p", "K", "--dtb=d", "--hotplug", "--console-vga"])
    # --hotplug is honoured now (tests/unit/test_crash_hotplug.py): not among them
    assert [o for o, _ in request.refused] == ["--dtb", "--console-vga"]
