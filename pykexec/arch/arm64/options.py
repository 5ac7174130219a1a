"""arm64's command-line options: kexec-tools' arm64 table (read for facts:
kexec/arch/arm64/include/arch/options.h): --append/--command-line, --reuse-cmdline,
--initrd/--ramdisk, --dtb FILE and --serial NAME (the tty whose UART purgatory writes to,
e.g. ttyAMA0). kexec-tools arm64 takes long options only and checks no value while argv
is walked; a missing --dtb file or an unknown console is found when the load is built.

Kept light (no construct): `-h` and `-v` import it through the registry.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

from pykexec.request import COMMON_LOADER_OPTIONS, Option, OptionTable

GROUP = "arm64 (Image loader, device tree, purgatory console)"


class Arm64Options(NamedTuple):
    dtb: Optional[str] = None        # a device tree file instead of the machine's
    serial: Optional[str] = None     # console name whose UART purgatory prints on


_COMMON = {o.name: o._replace(group=GROUP) for o in COMMON_LOADER_OPTIONS}

OPTIONS = (
    _COMMON["append"],
    _COMMON["command-line"],
    Option("dtb", True, "the device tree for the new kernel (default: the running one's, "
                        "/sys/firmware/fdt)", GROUP, "FILE"),
    _COMMON["initrd"],
    Option("serial", True, "console whose UART purgatory prints on (e.g. ttyAMA0)", GROUP,
           "NAME"),
    _COMMON["ramdisk"],
    _COMMON["reuse-cmdline"],
)

TABLE = OptionTable(
    OPTIONS,
    values={},          # kexec-tools' arm64 keeps each argument as given
    needs_kernel=("dtb",),
    generic_help={
        "type": "force the kernel file type (vmlinux, Image, vmlinuz: EFI zboot)",
        "reuseinitrd": "reuse the running kernel's initrd (refused, as in kexec-tools)",
    },
    reuse_initrd_refusal="--reuseinitrd is not implemented on arm64 (as in kexec-tools): pass "
                         "the initrd again with --initrd")

NAMES = frozenset(o.name for o in OPTIONS)


def arm64_options(request) -> Arm64Options:
    """The arm64 options of `request`, the last one given winning."""
    found = {name: value for name, value in request.arch_options if name in NAMES}
    return Arm64Options(dtb=found.get("dtb"), serial=found.get("serial"))
