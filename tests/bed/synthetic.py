"""Synthetic x86_64 machine snapshots (docs/snapshot-format.md) for the oracle and for pykexec.

A `MachineSpec` says what the machine has (RAM, number of RAM ranges, CPUs, crash regions,
ACPI/NVS/persistent-memory ranges, KASLR). `machine_layout(spec)` turns it into concrete
addresses, as a firmware and a booted kernel would have chosen them; `make_machine(dest,
spec)` writes the files a loader reads. Tests compute their expected values from the
`Layout` (for example "System RAM minus the crash regions"), never from a loader's output.

The shapes follow a BIOS/SeaBIOS-style e820 and a Debian 6.1 kernel: the firmware map starts
with RAM 0-0x9fbff, /proc/iomem shows the first page as Reserved, the kernel image and the
crash regions are children of the System RAM line that holds them, and crashkernel memory
is taken top-down (near the top of low RAM, or of all RAM for ",high").
"""

from __future__ import annotations

import argparse
import json
import os
import random
import struct
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from tests.bed import bootproto, kcore

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
FOUR_GIB = 4 * GiB

RAM = "System RAM"
RESERVED = "Reserved"
ACPI = "ACPI Tables"
NVS = "ACPI Non-volatile Storage"
PMEM = "Persistent Memory"

KERNEL_TEXT_BASE = 0xFFFFFFFF80000000      # __START_KERNEL_map
DIRECT_MAP_BASE = 0xFFFF888000000000       # page_offset_base without KASLR
DEFAULT_KERNEL_VADDR = 0xFFFFFFFF81000000  # _text without KASLR
DEFAULT_KERNEL_PADDR = 0x1000000           # CONFIG_PHYSICAL_START
CRASH_ALIGN = 16 * MiB                     # the kernel's crashkernel alignment on x86_64
CRASH_NOTE_BYTES = 368                     # sizeof(note_buf_t) on x86_64 6.1
VMCOREINFO_NOTE_SIZE = 0x1024              # printed in hex by the kernel: "1024"
PERCPU_UNIT = 0x40000
KCORE_RANGES_MAX = 500                     # RAM ranges whose kcore PT_LOADs fit the 64 KiB head
CRASH_NOTES_IN_UNIT = 0x1A018


@dataclass(frozen=True)
class MachineSpec:
    """What a synthetic machine has. Sizes in bytes."""

    name: str = "synthetic"
    ram: int = 1 * GiB
    ram_ranges: int = 2                # System RAM ranges in the firmware map
    cpus: int = 2
    cpus_without_notes: Tuple[int, ...] = ()
    crash_size: int = 256 * MiB        # the crashkernel= region (above 4 GiB if crash_high)
    crash_high: bool = False           # crashkernel=X,high
    crash_low_size: int = 0            # crashkernel=Y,low (only with crash_high)
    crash_at: Optional[int] = None     # crashkernel=X@crash_at (low RAM; kernel placed above it)
    edd_disks: int = 0                 # /sys/firmware/edd/int13_dev80.. entries (BIOS disks)
    acpi: bool = False                 # ACPI Tables range below 4 GiB
    nvs_ranges: int = 0                # ACPI Non-volatile Storage ranges below 4 GiB
    pmem_size: int = 0                 # a Persistent Memory range above RAM
    kaslr: bool = True
    seed: int = 1
    acpi_rsdp: int = 0xF59D0
    kernel_release: str = "6.1.0-56-amd64"
    notes: str = ""


@dataclass(frozen=True)
class MemRange:
    """An inclusive physical range and its resource name, as /proc/iomem prints it."""

    start: int
    end: int
    name: str

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    def contains(self, other: "MemRange") -> bool:
        return self.start <= other.start and other.end <= self.end


@dataclass(frozen=True)
class Layout:
    """Concrete addresses of one synthetic machine."""

    spec: MachineSpec
    firmware: Tuple[MemRange, ...]      # /sys/firmware/memmap (and boot_params e820), sorted
    iomem_top: Tuple[MemRange, ...]     # top-level /proc/iomem lines, sorted
    iomem_children: Tuple[MemRange, ...]  # nested lines (kernel image, crash regions, ROM)
    crash_regions: Tuple[MemRange, ...]   # ascending; the last one is where kexec -p loads
    kernel_paddr: int                   # "Kernel code" start
    kernel_vaddr: int                   # _text
    kernel_image_size: int              # _end - _text
    page_offset: int                    # page_offset_base
    vmalloc_base: int
    vmemmap_base: int
    crash_notes: Tuple[Optional[int], ...]  # per CPU, physical; None: no crash_notes file
    vmcoreinfo_paddr: int
    cmdline: str

    def system_ram(self) -> List[MemRange]:
        """The top-level System RAM lines of /proc/iomem, in order."""
        return [r for r in self.iomem_top if r.name == RAM]

    def iomem_ranges_named(self, *names: str) -> List[MemRange]:
        return [r for r in self.iomem_top + self.iomem_children if r.name in names]

    @property
    def cpus_with_notes(self) -> List[int]:
        return [cpu for cpu, addr in enumerate(self.crash_notes) if addr is not None]


# ---------------------------------------------------------------------------------------------
# Layout


def _align_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def _align_down(x: int, a: int) -> int:
    return x // a * a


def _subtract(spans: List[Tuple[int, int]], cut: Tuple[int, int]) -> List[Tuple[int, int]]:
    """Half-open interval subtraction."""
    out = []
    for s, e in spans:
        if cut[1] <= s or cut[0] >= e:
            out.append((s, e))
            continue
        if s < cut[0]:
            out.append((s, cut[0]))
        if cut[1] < e:
            out.append((cut[1], e))
    return out


def _crashkernel_arg(spec: MachineSpec) -> str:
    def size(n):
        return f"{n // GiB}G" if n % GiB == 0 else f"{n // MiB}M"
    if spec.crash_at is not None:
        return f"crashkernel={size(spec.crash_size)}@{spec.crash_at // MiB}M"
    if spec.crash_high:
        arg = f"crashkernel={size(spec.crash_size)},high"
        if spec.crash_low_size:
            arg += f" crashkernel={size(spec.crash_low_size)},low"
        return arg
    return f"crashkernel={size(spec.crash_size)}"


def machine_layout(spec: MachineSpec) -> Layout:
    """Choose every address of the machine described by `spec` (deterministic for a seed)."""
    if spec.ram < 512 * MiB:
        raise ValueError("synthetic machines need at least 512 MiB of RAM")
    if spec.crash_low_size and not spec.crash_high:
        raise ValueError("a ,low crash region only exists together with ,high")
    rng = random.Random(spec.seed)

    # --- firmware e820: low RAM up to 2 GiB (3 GiB for small machines), the rest above 4 GiB.
    low_end = spec.ram if spec.ram <= 3 * GiB else 2 * GiB
    high_size = spec.ram - low_end
    if spec.crash_high and not high_size:
        raise ValueError("crash_high needs RAM above 4 GiB (ram > 3 GiB)")

    firmware: List[MemRange] = [
        MemRange(0, 0x9FBFF, RAM),
        MemRange(0x9FC00, 0x9FFFF, RESERVED),
        MemRange(0xF0000, 0xFFFFF, RESERVED),
    ]
    # The top of low memory: firmware-reserved, with ACPI tables and NVS just below it.
    tail = [(RESERVED, 0x20000)] + [(NVS, 0x4000)] * spec.nvs_ranges + ([(ACPI, 0x10000)] if spec.acpi else [])
    top = low_end
    for name, size in tail:
        firmware.append(MemRange(top - size, top - 1, name))
        top -= size
    low_main = MemRange(0x100000, top - 1, RAM)
    firmware.append(low_main)
    firmware.append(MemRange(0xFEFFC000, 0xFEFFFFFF, RESERVED))
    firmware.append(MemRange(0xFFFC0000, 0xFFFFFFFF, RESERVED))
    high_ram = MemRange(FOUR_GIB, FOUR_GIB + high_size - 1, RAM) if high_size else None
    if high_ram:
        firmware.append(high_ram)
    if spec.pmem_size:
        pstart = _align_up((high_ram.end + 1) if high_ram else FOUR_GIB, GiB)
        firmware.append(MemRange(pstart, pstart + spec.pmem_size - 1, PMEM))

    # --- crash regions, taken top-down as memblock does.
    crash: List[MemRange] = []
    low_crash_size = spec.crash_low_size if spec.crash_high else spec.crash_size
    if spec.crash_at is not None:
        if spec.crash_high or not low_main.start <= spec.crash_at < low_main.end - spec.crash_size:
            raise ValueError("crash_at must put the crash region inside low RAM (without ,high)")
        crash.append(MemRange(spec.crash_at, spec.crash_at + spec.crash_size - 1, "Crash kernel"))
    elif low_crash_size:
        end = _align_down(low_main.end + 1 - 0x1FE0000, CRASH_ALIGN)
        crash.append(MemRange(end - low_crash_size, end - 1, "Crash kernel"))
    if spec.crash_high:
        end = _align_down(high_ram.end + 1 - 128 * MiB, CRASH_ALIGN)
        crash.append(MemRange(end - spec.crash_size, end - 1, "Crash kernel"))

    # --- kernel image (physical and virtual KASLR are independent), then the per-CPU areas.
    image_size = 0x1E00000
    # The kernel sits at 16 MiB or above, and above a crash region placed low with @.
    kernel_floor = max([DEFAULT_KERNEL_PADDR] + [_align_up(c.end + 1, 2 * MiB) for c in crash
                                                 if c.start < DEFAULT_KERNEL_PADDR])
    low_limit = min([c.start for c in crash if kernel_floor <= c.start and c.end < FOUR_GIB]
                    + [low_main.end + 1, GiB])
    percpu_size = _align_up(spec.cpus * PERCPU_UNIT, 2 * MiB)
    if spec.kaslr:
        slots = (low_limit - 64 * MiB - percpu_size - image_size - kernel_floor) // (2 * MiB)
        kernel_paddr = kernel_floor + 2 * MiB * rng.randrange(max(slots, 1))
        kernel_vaddr = KERNEL_TEXT_BASE + 2 * MiB * rng.randrange(8, (GiB - image_size) // (2 * MiB))
        page_offset = DIRECT_MAP_BASE + GiB * rng.randrange(0, 1 << 12)
    else:
        kernel_paddr, kernel_vaddr, page_offset = kernel_floor, DEFAULT_KERNEL_VADDR, DIRECT_MAP_BASE
    vmalloc_base = page_offset + (64 << 40) + GiB * rng.randrange(0, 1 << 10)
    vmemmap_base = vmalloc_base + (32 << 40) + GiB * rng.randrange(0, 1 << 10)
    image = [
        MemRange(kernel_paddr, kernel_paddr + 0xC00E06 - 1, "Kernel code"),
        MemRange(kernel_paddr + 0xE00000, kernel_paddr + 0x1497FFF, "Kernel rodata"),
        MemRange(kernel_paddr + 0x1600000, kernel_paddr + 0x184D53F, "Kernel data"),
        MemRange(kernel_paddr + 0x1B17000, kernel_paddr + image_size - 1, "Kernel bss"),
    ]
    percpu_base = kernel_paddr + image_size + 2 * MiB
    missing = set(spec.cpus_without_notes)
    crash_notes = tuple(None if cpu in missing else percpu_base + cpu * PERCPU_UNIT + CRASH_NOTES_IN_UNIT
                        for cpu in range(spec.cpus))
    vmcoreinfo_paddr = kernel_paddr + 0x1C6B000   # vmcoreinfo_note lives in the kernel's bss

    # --- split RAM into spec.ram_ranges ranges: carve holes and reserved ranges into the
    # largest RAM range, away from the kernel, the per-CPU areas and the crash regions.
    ram_now = [r for r in firmware if r.name == RAM]
    extra = spec.ram_ranges - len(ram_now)
    if extra < 0:
        raise ValueError(f"ram_ranges must be at least {len(ram_now)} for this machine")
    if extra:
        biggest = max(ram_now, key=lambda r: r.size)
        free = [(biggest.start + 64 * MiB, biggest.end + 1 - 128 * MiB)]
        for c in crash:
            free = _subtract(free, (c.start - 64 * MiB, c.end + 1 + 64 * MiB))
        free = _subtract(free, (kernel_paddr - 16 * MiB, percpu_base + percpu_size + 16 * MiB))
        zone = max(free, key=lambda s: s[1] - s[0], default=None)
        if zone is None or zone[1] - zone[0] < (extra + 1) * 4 * MiB:
            raise ValueError(f"not enough room to split RAM into {spec.ram_ranges} ranges")
        step = _align_down((zone[1] - zone[0]) // (extra + 1), 2 * MiB)
        cuts = []
        for i in range(extra):
            at = zone[0] + (i + 1) * step
            if i % 3 == 2:
                cuts.append((at, at + MiB, None))                       # a hole: no e820 entry
            else:
                cuts.append((at, at + 0x1000 * (1 + i % 8), RESERVED))  # firmware-reserved
        firmware.remove(biggest)
        start = biggest.start
        for s, e, name in cuts:
            firmware.append(MemRange(start, s - 1, RAM))
            if name:
                firmware.append(MemRange(s, e - 1, name))
            start = e
        firmware.append(MemRange(start, biggest.end, RAM))
    firmware.sort(key=lambda r: r.start)

    # --- /proc/iomem: the kernel's view of the e820 (first page reserved), plus a few devices.
    iomem_top: List[MemRange] = [MemRange(0, 0xFFF, RESERVED), MemRange(0x1000, 0x9FBFF, RAM)]
    iomem_top += [r for r in firmware if r.start > 0x9FBFF]
    iomem_top += [MemRange(0xA0000, 0xBFFFF, "PCI Bus 0000:00"), MemRange(0xC0000, 0xC99FF, "Video ROM"),
                  MemRange(0xFEC00000, 0xFEC003FF, "IOAPIC 0"), MemRange(0xFED00000, 0xFED003FF, "HPET 0"),
                  MemRange(0xFEE00000, 0xFEE00FFF, "Local APIC")]
    if low_end <= 0xC0000000:
        iomem_top.append(MemRange(0xC0000000, 0xFEBFFFFF, "PCI Bus 0000:00"))
    iomem_top.sort(key=lambda r: r.start)
    children = [MemRange(0xF0000, 0xFFFFF, "System ROM")] + image + crash
    for child in children:
        if not any(r.contains(child) for r in iomem_top):
            raise AssertionError(f"{child} is not inside a top-level iomem range")

    cmdline = (f"BOOT_IMAGE=/boot/vmlinuz-{spec.kernel_release} root=/dev/vda ro console=ttyS0 "
               f"{_crashkernel_arg(spec)} quiet")
    return Layout(
        spec=spec, firmware=tuple(firmware), iomem_top=tuple(iomem_top),
        iomem_children=tuple(sorted(children, key=lambda r: r.start)), crash_regions=tuple(crash),
        kernel_paddr=kernel_paddr, kernel_vaddr=kernel_vaddr, kernel_image_size=image_size,
        page_offset=page_offset, vmalloc_base=vmalloc_base, vmemmap_base=vmemmap_base,
        crash_notes=crash_notes, vmcoreinfo_paddr=vmcoreinfo_paddr, cmdline=cmdline,
    )


# ---------------------------------------------------------------------------------------------
# Rendering


def render_iomem(layout: Layout) -> str:
    lines = []
    for top in layout.iomem_top:
        lines.append(f"{top.start:08x}-{top.end:08x} : {top.name}")
        for child in layout.iomem_children:
            if top.contains(child):
                lines.append(f"  {child.start:08x}-{child.end:08x} : {child.name}")
    return "\n".join(lines) + "\n"


def render_kallsyms(layout: Layout) -> str:
    text = layout.kernel_vaddr
    symbols = {
        "_text": (text, "T"), "startup_64": (text, "T"), "_stext": (text, "T"),
        "_etext": (text + 0xC00E06, "T"), "_edata": (text + 0x184D540, "D"),
        "__bss_start": (text + 0x1B17000, "B"), "_end": (text + layout.kernel_image_size, "B"),
        "phys_base": (text + 0x1611010, "D"), "page_offset_base": (text + 0x1611028, "D"),
        "vmalloc_base": (text + 0x1611020, "D"), "vmemmap_base": (text + 0x1611018, "D"),
        "init_top_pgt": (text + 0x160A000, "D"), "crash_notes": (text + 0x1B2C0A8, "B"),
        "vmcoreinfo_note": (text + 0x1C6B000, "B"), "prb": (text + 0x16520C0, "D"),
    }
    rows = sorted(symbols.items(), key=lambda kv: (kv[1][0], kv[0]))
    return "".join(f"{addr:016x} {kind} {name}\n" for name, (addr, kind) in rows)


def boot_params_bytes(layout: Layout) -> bytes:
    """/sys/kernel/boot_params/data as a BIOS-booted 6.1 kernel exports it."""
    spec = layout.spec
    e820 = [dict(addr=r.start, size=r.size, type=bootproto.E820_TYPES[r.name])
            for r in layout.firmware][:bootproto.E820_MAX_ZEROPAGE]
    e820 += [dict(addr=0, size=0, type=0)] * (bootproto.E820_MAX_ZEROPAGE - len(e820))
    hdr = dict(
        setup_sects=39, root_flags=1, syssize=0x7D87C, ram_size=0, vid_mode=0xFFFF, root_dev=0,
        boot_flag=0xAA55, jump=bootproto.SETUP_HEADER_JUMP, version=0x020F, realmode_swtch=0,
        start_sys_seg=0x1000, kernel_version=0x4380, type_of_loader=0x72, loadflags=0x83,
        setup_move_size=0x8000, code32_start=0x100000, ramdisk_image=0x3F000000,
        ramdisk_size=0xA06A29, bootsect_kludge=0, heap_end_ptr=0xFE00, ext_loader_ver=0,
        ext_loader_type=0, cmd_line_ptr=0x20000, initrd_addr_max=0x7FFFFFFF,
        kernel_alignment=0x200000, relocatable_kernel=1, min_alignment=21, xloadflags=0x7F,
        cmdline_size=2047, hardware_subarch=0, hardware_subarch_data=0, payload_offset=0x3E0,
        payload_length=0x7D4B9D, setup_data=0, pref_address=0x1000000, init_size=0x3F98000,
        handover_offset=0x190, kernel_info_offset=0x7C6018,
    )
    screen = dict(orig_x=0, orig_y=24, ext_mem_k=0xFC00, orig_video_page=0, orig_video_mode=3,
                  orig_video_cols=80, flags=1, orig_video_ega_bx=3, orig_video_lines=25,
                  orig_video_isVGA=1, orig_video_points=16, rest=bytes(0x40 - 0x12))
    return bootproto.BootParams.build(dict(
        screen_info=screen, apm_bios_info=bytes(0x14), tboot_addr=0, ist_info=bytes(16),
        acpi_rsdp_addr=spec.acpi_rsdp, hd0_info=bytes(16), hd1_info=bytes(16),
        sys_desc_table=bytes(16), olpc_ofw_header=bytes(16), ext_ramdisk_image=0,
        ext_ramdisk_size=0, ext_cmd_line_ptr=0, cc_blob_address=0, edid_info=bytes(0x80),
        efi_info=bytes(0x20), alt_mem_k=min(spec.ram // KiB - 1024, 0xFFFFFFFF), scratch=0,
        e820_entries=min(len(layout.firmware), bootproto.E820_MAX_ZEROPAGE), eddbuf_entries=0,
        edd_mbr_sig_buf_entries=0, kbd_status=0, secure_boot=0, sentinel=0, hdr=hdr,
        edd_mbr_sig_buffer=bytes(64), e820_table=e820, eddbuf=bytes(0xEEC - 0xD00),
    ))


def kcore_header_bytes(layout: Layout) -> bytes:
    """The head of /proc/kcore: PT_NOTE, kernel text, modules, vmalloc, direct map, vmemmap."""
    spec = layout.spec
    loads = [
        kcore.Load(layout.kernel_vaddr, layout.kernel_paddr, layout.kernel_image_size),
        kcore.Load(KERNEL_TEXT_BASE + GiB, 0, 0x3F000000),                  # modules
        kcore.Load(layout.vmalloc_base, 0, 32 << 40),                       # vmalloc
    ]
    ram = layout.system_ram()
    if len(ram) > KCORE_RANGES_MAX:
        # Too many ranges for the 64 KiB a loader reads: one direct-map and one vmemmap
        # PT_LOAD spanning all RAM (the loaders only use the lowest direct-map vaddr).
        ram = [MemRange(ram[0].start, ram[-1].end, RAM)]
    for r in ram:
        start = _align_down(r.start, 4096)
        end = _align_up(r.end + 1, 4096)
        loads.append(kcore.Load(layout.page_offset + start, start, end - start))
    for r in ram:
        pages = (r.end + 1 - r.start) // 4096
        first = layout.vmemmap_base + (r.start // 4096) * 64
        loads.append(kcore.Load(_align_down(first, 4096), 0, _align_up(pages * 64, 4096)))
    head = kcore.header_bytes(loads, release=spec.kernel_release, page_offset=layout.page_offset)
    if len(head) > 64 * KiB:      # loaders read only the first 64 KiB of /proc/kcore
        raise ValueError(f"kcore head of {len(head)} bytes exceeds 64 KiB: too many RAM ranges")
    return head


def edd_files(spec: MachineSpec) -> Dict[str, bytes]:
    """/sys/firmware/edd as drivers/firmware/edd.c shows BIOS disks 0x80, 0x81, ...

    Each disk is 2 TiB-ish with its own MBR signature; the third (0x82) answered no EDD
    (version 0x0: only the version and signature files mean anything). raw_data holds the
    EDD 1.x part of the int13 ah=48h buffer: as many bytes as its first u16 says.
    """
    rng = random.Random(spec.seed * 7919 + 1)
    files: Dict[str, bytes] = {}
    for i in range(spec.edd_disks):
        base = f"sys/firmware/edd/int13_dev{0x80 + i:02x}"
        sectors = (1 << 32) + rng.randrange(1 << 30)
        files[f"{base}/mbr_signature"] = f"0x{rng.randrange(1 << 32):08x}\n".encode()
        if i == 2:
            files[f"{base}/version"] = b"0x0\n"
            continue
        raw = struct.pack("<HHIIIQH", 0x1A, 0x0002, 16383, 16, 63, sectors, 512)
        files[f"{base}/raw_data"] = raw
        files[f"{base}/version"] = b"0x30\n" if i == 0 else b"0x21\n"
        files[f"{base}/extensions"] = (b"Fixed disk access\nEnhanced Disk Drive support\n"
                                       + (b"64-bit extensions\n" if i == 0 else b""))
        files[f"{base}/legacy_max_cylinder"] = f"{1023 - i}\n".encode()
        files[f"{base}/legacy_max_head"] = f"{254 - i}\n".encode()
        files[f"{base}/legacy_sectors_per_track"] = b"63\n"
        files[f"{base}/sectors"] = f"{sectors}\n".encode()
        files[f"{base}/info_flags"] = b"DMA boundary error transparent\n"
    return files


def snapshot_files(layout: Layout) -> Dict[str, bytes]:
    """Relative path -> file contents for the whole snapshot (snapshot.json excluded)."""
    spec = layout.spec
    files: Dict[str, bytes] = {}

    def text(path, s):
        files[path] = s.encode()

    text("proc/iomem", render_iomem(layout))
    text("proc/cmdline", layout.cmdline + "\n")
    text("proc/kallsyms", render_kallsyms(layout))
    files["proc/kcore"] = kcore_header_bytes(layout)
    text("proc/mounts",
         "sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0\n"
         "proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n"
         "devtmpfs /dev devtmpfs rw,nosuid,size=4096k,nr_inodes=65536,mode=755 0 0\n"
         "/dev/vda / ext4 rw,relatime 0 0\n"
         "tmpfs /run tmpfs rw,nosuid,nodev,size=65536k,mode=755 0 0\n")
    for key in ("kexec_load_disabled", "kexec_load_limit_panic", "kexec_load_limit_reboot"):
        text(f"proc/sys/kernel/{key}", "0\n" if key == "kexec_load_disabled" else "-1\n")
    for i, r in enumerate(layout.firmware):
        text(f"sys/firmware/memmap/{i}/start", f"0x{r.start:x}\n")
        text(f"sys/firmware/memmap/{i}/end", f"0x{r.end:x}\n")
        text(f"sys/firmware/memmap/{i}/type", f"{r.name}\n")
    text("sys/kernel/vmcoreinfo", f"0x{layout.vmcoreinfo_paddr:016x} {VMCOREINFO_NOTE_SIZE:x}\n")
    text("sys/kernel/kexec_crash_size", f"{layout.crash_regions[-1].size if layout.crash_regions else 0}\n")
    text("sys/kernel/kexec_crash_loaded", "0\n")
    text("sys/kernel/kexec_loaded", "0\n")
    files["sys/kernel/boot_params/data"] = boot_params_bytes(layout)
    text("sys/kernel/boot_params/version", "0x020f\n")
    cpu_list = f"0-{spec.cpus - 1}\n" if spec.cpus > 1 else "0\n"
    for key in ("possible", "present", "online"):
        text(f"sys/devices/system/cpu/{key}", cpu_list)
    files.update(edd_files(spec))
    for cpu, addr in enumerate(layout.crash_notes):
        text(f"sys/devices/system/cpu/cpu{cpu}/online", "1\n")
        if addr is not None:
            text(f"sys/devices/system/cpu/cpu{cpu}/crash_notes", f"{addr:x}\n")
            text(f"sys/devices/system/cpu/cpu{cpu}/crash_notes_size", f"{CRASH_NOTE_BYTES}\n")
    return files


_NEWER_SPEC_FIELDS = {"crash_at": None, "edd_disks": 0}


def make_machine(dest: str, spec: MachineSpec) -> Layout:
    """Write the snapshot of `spec` into folder `dest` (created); returns its layout."""
    layout = machine_layout(spec)
    made = set()
    for rel, data in snapshot_files(layout).items():
        path = os.path.join(dest, rel)
        folder = os.path.dirname(path)
        if folder not in made:       # thousands of files on big machines: mkdir each folder once
            os.makedirs(folder, exist_ok=True)
            made.add(folder)
        with open(path, "wb") as f:
            f.write(data)
    meta = {
        "format": 1, "source": "synthetic", "machine": "x86_64",
        "kernel_release": spec.kernel_release, "taken": "1970-01-01T00:00:00Z",
        "notes": (f"{spec.name}: {spec.ram // MiB} MiB RAM in {spec.ram_ranges} ranges, "
                  f"{spec.cpus} CPUs ({len(spec.cpus_without_notes)} without crash_notes), "
                  f"{_crashkernel_arg(spec)}. {spec.notes}").strip(),
        # Fields at their defaults that older snapshots did not have are left out.
        "spec": {k: (list(v) if isinstance(v, tuple) else v) for k, v in spec.__dict__.items()
                 if not (k in _NEWER_SPEC_FIELDS and v == _NEWER_SPEC_FIELDS[k])},
    }
    with open(os.path.join(dest, "snapshot.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    return layout


# ---------------------------------------------------------------------------------------------
# Presets

PRESETS: Dict[str, MachineSpec] = {
    "qemu_like_1g": MachineSpec(
        name="qemu_like_1g", ram=1 * GiB, ram_ranges=2, cpus=2, crash_size=256 * MiB,
        notes="Shaped like the 1 GiB QEMU/SeaBIOS guest: crash region near the top of low RAM."),
    "server_64g_numa": MachineSpec(
        name="server_64g_numa", ram=64 * GiB, ram_ranges=320, cpus=64, cpus_without_notes=(5, 33),
        crash_size=512 * MiB, crash_high=True, crash_low_size=256 * MiB, acpi=True, nvs_ranges=2,
        seed=64, acpi_rsdp=0x7FFCE014,
        notes="Hundreds of RAM ranges (capture e820 > 128 entries: SETUP_E820_EXT), "
              "crashkernel high above 4 GiB plus low, two CPUs without crash_notes."),
    "pmem_nvs": MachineSpec(
        name="pmem_nvs", ram=8 * GiB, ram_ranges=12, cpus=8, crash_size=384 * MiB, acpi=True,
        nvs_ranges=4, pmem_size=4 * GiB, seed=7,
        notes="Persistent memory above RAM, four ACPI NVS ranges, crash region below 4 GiB."),
    "no_kaslr_4cpu": MachineSpec(
        name="no_kaslr_4cpu", ram=2 * GiB, ram_ranges=5, cpus=4, crash_size=192 * MiB,
        kaslr=False, seed=3, notes="No KASLR: kernel at 16 MiB, page_offset_base 0xffff888000000000."),
    "crash_at_1m": MachineSpec(
        name="crash_at_1m", ram=1 * GiB, ram_ranges=2, cpus=2, crash_size=128 * MiB,
        crash_at=1 * MiB, seed=11,
        notes="crashkernel=128M@1M: the capture e820's RAM holds 1 MiB (ext_mem_k, alt_mem_k)."),
    "edd_bios_disks": MachineSpec(
        name="edd_bios_disks", ram=2 * GiB, ram_ranges=3, cpus=2, crash_size=256 * MiB,
        edd_disks=3, seed=12,
        notes="Three BIOS disks in /sys/firmware/edd (EDD 3.0, EDD 2.1, no EDD), each with an "
              "MBR signature: boot_params eddbuf and edd_mbr_sig_buffer."),
}

# Machines too big for every test that walks PRESETS: scripts/bench --ranges uses them.
BENCH_PRESETS: Dict[str, MachineSpec] = {
    "ranges_2k": MachineSpec(
        name="ranges_2k", ram=64 * GiB, ram_ranges=2000, cpus=4, crash_size=256 * MiB, seed=20,
        notes="2,000 System RAM ranges (scripts/bench: memory and time linear in the ranges)."),
    "ranges_10k": MachineSpec(
        name="ranges_10k", ram=64 * GiB, ram_ranges=10000, cpus=4, crash_size=256 * MiB, seed=21,
        notes="10,000 System RAM ranges (scripts/bench: memory and time linear in the ranges)."),
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.bed.synthetic",
                                 description="write a synthetic machine snapshot")
    ap.add_argument("name", choices=sorted({**PRESETS, **BENCH_PRESETS}))
    ap.add_argument("dest")
    ns = ap.parse_args(argv)
    layout = make_machine(ns.dest, {**PRESETS, **BENCH_PRESETS}[ns.name])
    print(f"{ns.dest}: {len(layout.firmware)} firmware ranges, {len(layout.system_ram())} System RAM "
          f"ranges, crash {', '.join(f'{c.start:#x}-{c.end:#x}' for c in layout.crash_regions)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
