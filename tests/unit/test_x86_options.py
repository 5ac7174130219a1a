"""x86's option table (pykexec.arch.x86.options): its options reach the load through
Request.arch_options, folded the way kexec-tools overwrites its settings, checked while argv
is walked, and shared by both x86 architectures."""

import pytest

from pykexec import arch as registry
from pykexec.arch import parse_args
from pykexec.arch.x86.options import FIELDS, REFUSED, TABLE, X86Options, x86_options
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


def test_a_bad_serial_value_fails_with_status_255_on_an_x86_machine():
    # --serial is arm64's too (a console name, any text): argv keeps it as given, and the
    # x86 machine's reading of it fails as kexec-tools' x86 arch pass does
    request = parse_args(["-p", "K", "--serial=ttyS9", "--serial-baud=9600"])
    assert ("serial", "ttyS9") in request.arch_options
    with pytest.raises(ArchOptionError, match="Bad serial port base 'ttyS9'") as err:
        x86_options(request)
    assert err.value.code == 255
    with pytest.raises(ArchOptionError, match="Bad serial port base ''"):
        registry.arch_for("x86_64").option_refusal(parse_args(["-p", "K", "--serial="]))
    # an x86-only option's value is still checked in argv order
    with pytest.raises(ArchOptionError, match="baud rate 'x'"):
        parse_args(["-p", "K", "--serial-baud=x", "--mem-max=12q"])
    with pytest.raises(UsageError, match="--mem-max") as err:
        parse_args(["-p", "K", "--mem-max=12q", "--serial-baud=x"])
    assert err.value.code == 1
    # -h acts when getopt reaches it: a bad value after it is never looked at
    assert parse_args(["-h", "--serial-baud=x"]).show_help


def test_every_x86_option_is_read_refused_shared_or_documented_as_ignored():
    names = {o.name for o in TABLE.options}
    common = {"command-line", "append", "reuse-cmdline", "initrd", "ramdisk"}
    ignored = {"reuse-video-type"}    # pykexec always copies screen_info
    assert names == set(FIELDS) | set(REFUSED) | common | ignored
    assert set(FIELDS).isdisjoint(REFUSED)


def test_both_x86_arches_share_the_table_and_it_is_registered_once():
    assert registry.arch_for("x86_64").options is TABLE is registry.arch_for("i686").options
    assert [t for t in registry.option_tables() if t is TABLE] == [TABLE]


def test_refused_options_are_refused_on_x86_machines_in_argv_order():
    request = parse_args(["-p", "K", "--dtb=d", "--hotplug", "--console-vga"])
    # not refused while argv is walked: arm64 takes --dtb
    assert request.refused == ()
    assert registry.arch_for("x86_64").option_refusal(request) == REFUSED["dtb"]
    request = parse_args(["-p", "K", "--console-vga", "--dtb=d"])
    assert registry.arch_for("i386").option_refusal(request) == REFUSED["console-vga"]
