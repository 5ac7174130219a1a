"""kexec-style argv: the ordered state machine, prefixes, placement of the kernel path."""

import pytest

from pykexec.core.cmdline import compose, remove_parameter, reused_cmdline, with_crash_parameters
from pykexec.arch import parse_args
from pykexec.arch.x86.options import x86_options
from pykexec.request import UsageError


@pytest.mark.parametrize("argv, load, unload, crash", [
    (["-p", "K"], True, False, True),
    (["-pu"], False, True, True),          # crash unload
    (["-up", "K"], True, True, True),      # unload, then load again
    (["-p", "-u"], False, True, True),
    (["-u"], False, True, False),
    (["-l", "K"], True, False, False),
    (["-p", "-l", "K"], True, False, True),  # -l keeps the crash flag
])
def test_action_state_machine(argv, load, unload, crash):
    r = parse_args(argv)
    assert (r.do_load, r.do_unload, r.crash) == (load, unload, crash)


def test_options_after_kernel_and_both_value_forms():
    r = parse_args(["-p", "/boot/vmlinuz", "--initrd", "/boot/initrd", "--append=root=/dev/sda x=1"])
    assert r.kernel == "/boot/vmlinuz"
    assert r.initrd == "/boot/initrd"
    assert r.append == "root=/dev/sda x=1"


def test_last_append_wins_and_command_line_is_the_same_option():
    r = parse_args(["-p", "K", "--append=a", "--command-line=b"])
    assert r.append == "b"
    r = parse_args(["-p", "K", "--command-line=b", "--append=a"])
    assert r.append == "a"


def test_unique_prefixes_are_accepted_and_ambiguous_ones_refused():
    assert parse_args(["-p", "K", "--ramd=/i"]).initrd == "/i"
    assert x86_options(parse_args(["-p", "K", "--elf32"])).core_header_class == 32
    with pytest.raises(UsageError):
        parse_args(["-p", "K", "--elf"])       # elf32-core-headers or elf64-core-headers
    with pytest.raises(UsageError):
        parse_args(["-p", "K", "--no-such-option"])


def test_status_defaults_to_crash_image():
    assert parse_args(["-S"]).crash
    assert not parse_args(["-S", "-l"]).crash
    assert not parse_args(["-S"]).do_load


def test_loader_options_without_a_load_are_usage_errors():
    with pytest.raises(UsageError):
        parse_args(["-e", "--append=x"])
    with pytest.raises(UsageError):
        parse_args(["-u", "--initrd=x"])


@pytest.mark.parametrize("text, value", [("0x1000", 0x1000), ("4096", 4096), ("010", 8)])
def test_numbers_like_strtoul(text, value):
    assert parse_args(["-p", "K", f"--mem-min={text}"]).mem_min == value


def test_bad_numbers_and_serial_options():
    with pytest.raises(UsageError, match="--mem-max"):
        parse_args(["-p", "K", "--mem-max=12q"])
    with pytest.raises(UsageError, match="serial port base"):   # on an x86 machine
        x86_options(parse_args(["-p", "K", "--serial=ttyS7"]))
    with pytest.raises(UsageError, match="baud"):
        parse_args(["-p", "K", "--serial-baud=1000"])
    assert x86_options(parse_args(["-p", "K", "--serial=ttyS1", "--serial-baud=9600"])
                       ).serial_base == 0x2F8


def test_reuse_cmdline_drops_boot_image_and_crashkernel():
    line = "BOOT_IMAGE=/vmlinuz root=/dev/sda1 crashkernel=256M quiet\n"
    assert reused_cmdline(line, crash=True) == "root=/dev/sda1 quiet"
    assert reused_cmdline(line, crash=False) == "root=/dev/sda1 crashkernel=256M quiet"
    assert remove_parameter("a crashkernel=1G,high crashkernel=256M,low b", "crashkernel") == "a b"
    assert remove_parameter("xcrashkernel=1 b", "crashkernel") == "xcrashkernel=1 b"


def test_crash_parameters_in_kib():
    # kexec-tools-x86.md section 9: header at 0x3df5d000 gives elfcorehdr=1015156K.
    assert with_crash_parameters(compose(None, "console=ttyS0"), 0x3DF5D000, 0xF59D0) == \
        "console=ttyS0 acpi_rsdp=0xf59d0 elfcorehdr=1015156K"
    assert compose("root=/dev/sda", "irqpoll") == "root=/dev/sda irqpoll"
