"""What an architecture plugs into the pipeline, declared once.

The shape is the kernel's `kexec_file_ops` and kexec-tools' `file_type[]`: an
architecture offers image formats in probe order, each with a probe (is this file mine?)
and a load (this file into a plan); and it states its facts as values, as kexec-tools'
`crash_elf_info` does for the core header. Generic code (core, machine, host, views, cli)
talks to an architecture only through these declarations and `pykexec.arch.registry`; it
never compares an architecture's name.

Everything here is a declaration: `typing.Protocol`s that an architecture's module
satisfies (checked by tests/unit/test_arch_seam.py), and the frozen values passed across
the seam.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Protocol, Tuple, runtime_checkable

if TYPE_CHECKING:  # annotations only: importing these here would run the layers upward
    from pykexec.core.plan import Plan
    from pykexec.machine import Machine
    from pykexec.request import OptionTable, Request


@dataclass(frozen=True)
class KernelTextMap:
    """Where the running kernel's text is: physical start, virtual start and size."""

    phys_start: int
    virt_start: int
    size: int


@dataclass(frozen=True)
class CrashElfInfo:
    """The architecture's facts for the ELF core header (kexec-tools' crash_elf_info).

    `elf_class` and `elf_machine` go into the header; `page_offset` turns a physical
    address into the direct map's virtual one; `kernel_text` adds the kernel-text PT_LOAD
    (None: no such header); `lowmem_limit` is where the direct map ends (None:
    it maps all RAM; above it a PT_LOAD has no virtual address).

    What the notes and loads are, as the architecture reads them from the machine:
    `nr_cpus` header slots for CPUs, `cpu_notes` `(cpu, paddr, size)` each, `vmcoreinfo`
    `(paddr, size)` or None, `crash_ranges` the memory the dump describes (the arch's
    split and exclusions applied) and `backup` the low RAM purgatory copies away (None:
    no backup segment)."""

    elf_class: int
    elf_machine: int
    page_offset: int
    kernel_text: Optional[KernelTextMap]
    lowmem_limit: Optional[int]
    nr_cpus: int = 0
    cpu_notes: Tuple[Tuple[int, int, int], ...] = ()
    vmcoreinfo: Optional[Tuple[int, int]] = None
    crash_ranges: Tuple = ()
    backup: Optional[object] = None


@runtime_checkable
class ImageFormat(Protocol):
    """One kernel file format of an architecture (a compressed image, an ELF vmlinux...)."""

    NAME: str  # what `-t/--type` names it by

    def probe(self, kernel: bytes) -> Optional[str]:
        """None if the file is this format; else the one-line reason why not."""

    def load(self, inputs) -> "Plan":
        """The plan for a kexec_load of `inputs` (request, machine, file bytes)."""


@runtime_checkable
class Arch(Protocol):
    """An architecture: its names, ABI values, formats, crash rules and purgatory."""

    name: str                        # the plan's `arch` and the purgatory's build name
    machine_names: Tuple[str, ...]   # `uname -m` values that select it
    kexec_arch: int                  # KEXEC_ARCH_* value sent in kexec_load's flags
    elf_machine: int                 # e_machine of its kernels, kcore and core headers

    def formats(self) -> Tuple[ImageFormat, ...]:
        """Image formats in probe order."""

    def plan_load(self, request: "Request", machine: "Machine",
                  random_bytes: Callable[[int], bytes]) -> "Plan":
        """The whole plan of a kexec_load: choose a format, let it lay the load out."""

    def crash_elf_info(self, machine: "Machine", request: "Request") -> CrashElfInfo:
        """The core header's facts for a crash load of `request` on `machine`."""

    # --- load side: syscalls, command line, kexec_file_load, arch options ----------------
    syscall_numbers: Tuple[int, Optional[int]]   # (kexec_load, kexec_file_load or None)
    # what a 32-bit process calls on this kernel (its compat table), or None: the same
    compat_syscall_numbers: Optional[Tuple[int, Optional[int]]]

    def user_cmdline(self, request: "Request", machine: "Machine") -> str:
        """The user's part of the new command line (--reuse-cmdline's text, --append's)."""

    def option_refusal(self, request: "Request") -> Optional[str]:
        """Why this architecture refuses the load's arch options (one line), or None: the
        checks kexec-tools' arch option pass makes before anything is loaded. An option of
        another architecture's table raises request.ForeignOptionError instead (kexec's
        "unrecognized option", exit 1)."""

    def file_load_refusal(self, kernel: bytes) -> Optional[str]:
        """Why this kernel's kexec_file_load would refuse `kernel` (ENOEXEC), or None: the
        formats it accepts (its kexec_file_ops), probed on the (decompressed) file."""

    # --- command-line options (options): the arch's and its loaders' option table ---------
    # kexec-tools' arch option table and its loaders' options, joined by the registry to
    # the generic ones; register(..., options=MODULE) names the module holding the same
    # table, so that -h and -v import no Arch.
    options: "OptionTable"


# --- views and vmcore: optional hooks (pykexec.arch.optional_hook) ---------------------
# An Arch also offers `plan_decoder()` (a PlanDecoder), `dump_reader()` (its vmcore reader,
# a pykexec.arch.dumpreader.DumpReader subclass), `image_explainer()` (an ImageExplainer)
# and `relocations()` (its purgatory's pykexec.purgatory.elfrel.RelocationSet), found
# through pykexec.arch's by_name, by_elf_machine, registered and image_explainers.

@runtime_checkable
class PlanDecoder(Protocol):
    """Reads an architecture's boot structures back out of a plan (views.planfacts, show)."""

    E820_TYPE_NAMES: dict        # memory-map type number -> short name ("RAM", "ACPI"...)
    E820_IN_BOOT_PARAMS: int     # entries the boot parameters hold before an extension
    SETUP_DATA_NAMES: dict       # linked boot-data item type -> name
    SETUP_DATA_MEANING: dict     # ... -> what it is for
    # optional: SEGMENT_PURPOSE, segment kind -> the views' words for it (the generic ones
    # otherwise)

    def is_kernel_text(self, vaddr: int) -> bool:
        """A core PT_LOAD at `vaddr` maps kernel text, not the direct map of RAM."""

    def is_boot_params(self, seg) -> bool:
        """The segment's bytes are the new kernel's boot parameters (by content)."""

    def boot_params_segment(self, plan: "Plan"):
        """The segment holding the new kernel's boot parameters, or None."""

    def cmdline_address(self, plan: "Plan") -> Optional[int]:
        """Where the boot parameters put the command line (0: none; None: no parameters)."""

    def setup_data_chain(self, plan: "Plan") -> list:
        """(address, type, len, data) of each item the boot parameters link."""

    def read_e820(self, plan: "Plan") -> list:
        """The new kernel's memory map as (addr, size, type)."""

    def boot_header(self, plan: "Plan") -> dict:
        """The boot header fields two loaders must agree on."""

    def find_entry_registers(self, plan: "Plan") -> Optional[dict]:
        """Purgatory's register block found by content, as {name: value}, or None."""

    def bzimage_payload(self, kernel: bytes) -> Optional[bytes]:
        """The part of a kernel image file a loader copies (to label a recorded plan)."""


@runtime_checkable
class ImageExplainer(Protocol):
    """Explains an architecture's kernel image format for `pykexec inspect`."""

    KIND: str

    def probe(self, head: bytes) -> bool:
        """The file's first bytes are this format."""

    def explain(self, data: bytes, path: str, file_size: int) -> str:
        """The report; ValueError naming `path` when the file cannot be explained."""
