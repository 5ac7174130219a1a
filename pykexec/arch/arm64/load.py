"""An arm64 kexec_load laid out: the Image, then what follows it, then purgatory.

The rules are the boot protocol's (Documentation/arch/arm64/booting.rst) and kexec-tools'
arm64 loader's (read for facts: kexec-arm64.c, kexec-image-arm64.c), so that a crash load
lands where Debian's kexec puts it:

* the Image at a 2 MiB aligned base + `text_offset`, occupying `image_size` (BSS
  included): for -p the crash region's first such base, else the lowest hole in RAM;
* for -p the ELF core header at the top of the crash region;
* above the image (from base + image_size on, bottom-up): the initrd, the device tree
  (the running one's /sys/firmware/fdt, or --dtb FILE, with /chosen edited: bootargs,
  initrd, and for -p linux,elfcorehdr and linux,usable-memory-range), then purgatory;
* purgatory is the entry: it checks the segments' SHA-256 and jumps to the Image with
  x0 = the device tree's address.

The command line goes in the device tree's /chosen/bootargs; nothing is added to it.
"""

from __future__ import annotations

import os
from typing import Callable, List, NamedTuple, Optional, Tuple

from pykexec.arch.arm64.crashmem import subtract, system_ram, usable_memory
from pykexec.arch.arm64.image import Arm64Image
from pykexec.arch.arm64.options import arm64_options
from pykexec.core.cmdline import COMMAND_LINE_MAX, byte_length
from pykexec.core.elfcore import core_header_for
from pykexec.core.layout import Layout
from pykexec.core.plan import Plan
from pykexec.core.ranges import ADDR_LIMIT, PAGE_SIZE, Range, align_down, align_up
from pykexec.errors import LoadError
from pykexec.machine import Machine

MACHINE_DTB = "sys/firmware/fdt"
MIN_KIMG_ALIGN = 2 << 20          # the Image's base: 2 MiB aligned
DTB_MAX = 2 << 20                 # booting.rst: the device tree must not exceed 2 MiB
DTB_FILE_LIMIT = 16 << 20         # what a --dtb file is read up to (edited, it must fit DTB_MAX)
LINEAR_SPAN = 32 << 30            # booting.rst: image and initrd within 32 GiB (1 GiB aligned)
LEGACY_IMAGE_SIZE = 16 << 20      # image_size 0 (before 3.17): kexec-tools' guess
# iomem lines inside System RAM that a normal load may still overwrite (kexec-tools'
# get_memory_ranges keeps them); every other nested line is a hole
REUSABLE = ("System RAM", "Kernel code", "Kernel data", "Crash kernel")
LEGACY_WARNING = ("{path}: image_size is 0 (a kernel older than 3.17): assuming text_offset "
                  "0x80000 and 16 MiB, as kexec-tools does")


def normal_ram(machine: Machine) -> Tuple[Range, ...]:
    """RAM a normal load may use: System RAM minus the reserved lines nested in it."""
    holes = [n.range for n in machine.iomem.walk()
             if not n.name.startswith(REUSABLE) and not n.range.empty]
    return subtract(system_ram(machine), holes)


def machine_dtb(machine: Machine, path: Optional[str]) -> Tuple[bytes, str]:
    """The device tree to edit and where it came from: --dtb FILE, else the machine's."""
    if path is not None:
        from pykexec.core.inputfiles import read_input
        return read_input(path, "dtb", DTB_FILE_LIMIT, "a --dtb file's 16 MiB"), path
    data = machine.flattened_device_tree
    if data is None:
        raise LoadError(f"{machine.path(MACHINE_DTB)}: no device tree available "
                        "(pass one with --dtb FILE)")
    # named as the machine names it: a plan of a snapshot names no temporary folder
    return data, "/" + MACHINE_DTB


def console_base(machine: Machine, name: Optional[str]) -> Tuple[Optional[int], List[str]]:
    """The MMIO base of --serial NAME's UART (sys/class/tty/NAME/iomem_base), else None,
    with kexec-tools' warning when the console is not there."""
    if not name:
        return None, []
    rel = f"sys/class/tty/{name}/iomem_base"
    text = machine.file_bytes(rel) if "/" not in name else None
    try:
        base = int(text.decode().strip(), 16) if text else 0
    except ValueError:
        base = 0
    if not base:
        return None, [f"--serial {name}: the machine has no /{rel}; purgatory stays silent"]
    return base, []


class Arm64Load:
    """One load's placement and its plan."""

    def __init__(self, inputs, image: Arm64Image, format_name: str, kernel: bytes):
        self.inputs = inputs
        self.request = inputs.request
        self.machine: Machine = inputs.machine
        self.arch = inputs.arch
        self.format_name = format_name
        self.kernel = kernel
        self.image = image
        self.warnings: List[str] = []
        self.options = arm64_options(self.request)
        self.text_offset = image.effective_text_offset
        self.image_size = image.image_size or LEGACY_IMAGE_SIZE
        if image.legacy:
            self.warnings.append(LEGACY_WARNING.format(path=inputs.kernel_path))
        if self.text_offset % PAGE_SIZE:
            raise LoadError(f"{inputs.kernel_path}: text_offset {self.text_offset:#x} is not "
                            "page aligned (kexec_load places whole pages)")
        if image.big_endian:
            raise LoadError(f"{inputs.kernel_path}: a big-endian Image (pykexec loads "
                            "little-endian arm64 kernels only)")
        if byte_length(inputs.cmdline) > COMMAND_LINE_MAX:
            raise LoadError(f"{inputs.kernel_path}: the command line is "
                            f"{byte_length(inputs.cmdline)} bytes, more than the kernel's "
                            f"{COMMAND_LINE_MAX}")
        request = self.request
        if request.hotplug:
            raise LoadError("--hotplug: arm64 kernels do not rewrite a kexec_load'ed "
                            "elfcorehdr on CPU/memory hotplug (no crash hotplug on arm64)")
        if request.crash:
            region = self.machine.crash_region
            if region is None:
                raise LoadError(f"{self.machine.path('proc/iomem')}: no 'Crash kernel' region: "
                                "memory for a crash kernel is not reserved (crashkernel=)")
            start = max(region.start, request.mem_min)
            end = region.end if request.mem_max is None else min(region.end, request.mem_max + 1)
            if start >= end:
                raise LoadError(f"--mem-min/--mem-max leave nothing of the crash region {region}")
            self.window = Range(start, end)
            self.layout = Layout(self.machine.ram, self.window, crash=True)
        else:
            end = ADDR_LIMIT if request.mem_max is None else request.mem_max + 1
            self.window = Range(request.mem_min, max(end, request.mem_min + 1))
            self.layout = Layout(normal_ram(self.machine), self.window)

    # --- the steps, in the order that decides where things land --------------------------
    def place_kernel(self) -> int:
        """The Image's load address (base + text_offset)."""
        span = self.text_offset + self.image_size
        if self.request.crash:
            base = align_up(self.window.start, MIN_KIMG_ALIGN)
            if base + span > self.window.end:
                raise LoadError(f"{self.inputs.kernel_path}: the Image needs {span:#x} bytes from "
                                f"{base:#x}, beyond the crash region's window {self.window}")
        else:
            base = self.layout.find(span, "kernel", align=MIN_KIMG_ALIGN, top_down=False,
                                    source=self.inputs.kernel_path)
        image_base = base + self.text_offset
        memsz = max(self.image_size, len(self.kernel))
        self.layout.place_at(image_base, memsz, "kernel", self.inputs.kernel_path)
        self.layout.fill(image_base, self.kernel)
        return image_base

    def place_core_header(self):
        """-p: the ELF core header at the top of the crash region; (address, size)."""
        info = self.arch.crash_elf_info(self.machine, self.request)
        header = core_header_for(info, None)
        where = (f"ELF64 core header: {sum(1 for p in header.phdrs if p.p_type == 4)} PT_NOTE, "
                 f"{sum(1 for p in header.phdrs if p.p_type == 1)} PT_LOAD")
        addr = self.layout.add(header.data, "elfcorehdr", where)
        self.core_header = header
        return addr, len(header.data)

    def place_initrd(self, low: int, high: int) -> Optional[Tuple[int, int]]:
        initrd = self.inputs.initrd
        if initrd is None:
            return None
        addr = self.layout.add(initrd, "initrd", self.inputs.initrd_path, low=low, high=high,
                               top_down=False)
        return addr, addr + len(initrd)

    def plan(self) -> Plan:
        from pykexec.arch.arm64 import dtb as boot_dtb_module
        from pykexec.arch.arm64 import purgatory_setup
        request, machine = self.request, self.machine
        elfcorehdr = self.place_core_header() if request.crash else None
        image_base = self.place_kernel()
        hole_min = image_base + self.image_size
        hole_max = self.window.end
        initrd = self.place_initrd(hole_min, hole_max)
        if initrd is not None and (align_up(initrd[1], 1 << 30)
                                   - align_down(image_base, 1 << 30)) > LINEAR_SPAN:
            raise LoadError(f"{self.inputs.initrd_path}: the Image and the initrd would span "
                            "more than the 32 GiB booting.rst allows")
        base, source = machine_dtb(machine, self.options.dtb)
        built = boot_dtb_module.boot_dtb(
            base, source, cmdline=self.inputs.cmdline, initrd=initrd, elfcorehdr=elfcorehdr,
            usable_memory=usable_memory(machine) if request.crash else (),
            random_bytes=self.inputs.random_bytes)
        if len(built.data) > DTB_MAX:
            raise LoadError(f"{source}: the device tree for the new kernel is "
                            f"{len(built.data):#x} bytes, more than booting.rst's 2 MiB")
        dtb_addr = self.layout.add(built.data, "dtb", f"{source}, /chosen edited", low=hole_min,
                                   high=hole_max, top_down=False)
        uart, warnings = console_base(machine, self.options.serial)
        self.warnings.extend(warnings)
        loaded = purgatory_setup.place_purgatory(self.layout, hole_min, hole_max)
        segments, shown = purgatory_setup.finish_purgatory(
            self.layout.finish(), loaded, kernel_entry=image_base, dtb_addr=dtb_addr,
            uart_base=uart, skip_checks=request.skip_checks)
        notes = {
            "format": self.format_name, "image_base": image_base,
            "text_offset": self.text_offset, "image_size": self.image_size,
            "dtb": dtb_addr, "dtb_source": source,
            "dtb_edits": [{"node": e.node, "property": e.property, "action": e.action,
                           "value": e.shown} for e in built.edits],
            "purgatory_symbols": shown, "warnings": self.warnings,
            # the given line, or (when it was empty) the running tree's bootargs, which
            # the new tree keeps as kexec-tools does: no part of it is the loader's
            "user_cmdline": built.bootargs,
        }
        if built.bootargs != self.inputs.cmdline:
            notes["cmdline_origin"] = (f"kept from {source}'s /chosen/bootargs: the command "
                                       "line given was empty")
        if request.crash:
            notes.update(crash_window=[self.window.start, self.window.end],
                         core_header=[p.what for p in self.core_header.phdrs],
                         usable_memory=[list(r) for r in usable_memory(machine)])
        return Plan(arch=self.arch.name, syscall="kexec_load",
                    flags=request.kexec_flags | self.arch.kexec_arch,
                    entry=purgatory_setup.entry_address(loaded), cmdline=built.bootargs,
                    segments=segments, notes=notes)


class LoadInputs(NamedTuple):
    """Everything a format's loader needs, read once."""

    request: object
    machine: Machine
    kernel_path: str
    kernel: bytes                      # the file, gunzipped/unxz'd as kexec-tools reads it
    initrd_path: Optional[str]
    initrd: Optional[bytes]
    cmdline: str                       # the user's part: reused and/or appended
    arch: object
    random_bytes: Callable[[int], bytes] = os.urandom


def read_inputs(request, machine, arch, random_bytes=os.urandom) -> LoadInputs:
    """The kernel and the initrd through the one input reader (pykexec.core.inputfiles)."""
    from pykexec.core.inputfiles import input_limit, read_input, read_kernel
    limit, limit_what = input_limit(request, machine)
    kernel = read_kernel(request.kernel, limit, limit_what)
    initrd = None
    if request.initrd is not None:
        initrd = read_input(request.initrd, "initrd", limit, limit_what)
    return LoadInputs(request, machine, request.kernel, kernel, request.initrd, initrd,
                      arch.user_cmdline(request, machine), arch, random_bytes)
