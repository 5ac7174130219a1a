"""x86 boot protocol layouts: setup header, boot_params ("zero page"), e820, setup_data.

Offsets follow the kernel's Documentation/arch/x86/boot.rst and zero-page.rst; every
field pykexec reads or writes is named here once, and the rest of the 4 KiB page is
declared as padding so that `BootParams.sizeof() == 4096` keeps the offsets honest.
"""

from __future__ import annotations

from construct import Array, Bytes, Int8ul, Int16ul, Int32ul, Int64ul, Padding, Struct, this

from pykexec.core.ranges import MemType

BOOT_PARAMS_SIZE = 4096
SETUP_HEADER_OFFSET = 0x1F1
E820_MAX_ENTRIES_ZEROPAGE = 128
HDRS_MAGIC = 0x53726448  # "HdrS"
BOOT_FLAG = 0xAA55

# loadflags bits
LOADED_HIGH = 0x01
CAN_USE_HEAP = 0x80
# xloadflags bits
XLF_KERNEL_64 = 0x01
XLF_CAN_BE_LOADED_ABOVE_4G = 0x02
XLF_EFI_HANDOVER_32 = 0x04
XLF_EFI_HANDOVER_64 = 0x08
XLF_EFI_KEXEC = 0x10

# setup_data types
SETUP_E820_EXT = 1
SETUP_DTB = 2
SETUP_PCI = 3
SETUP_EFI = 4
SETUP_RNG_SEED = 9

# e820 types as the boot protocol numbers them
E820_RAM = 1
E820_RESERVED = 2
E820_ACPI = 3
E820_NVS = 4
E820_UNUSABLE = 5
E820_PMEM = 7
E820_PRAM = 12
_E820_OF_MEMTYPE = {MemType.RAM: E820_RAM, MemType.ACPI: E820_ACPI, MemType.NVS: E820_NVS,
                    MemType.PMEM: E820_PMEM, MemType.PRAM: E820_PRAM}


def e820_type(kind: MemType) -> int:
    """The boot protocol's e820 type number of a memory type (anything else: reserved)."""
    return _E820_OF_MEMTYPE.get(kind, E820_RESERVED)


SetupHeader = Struct(
    "setup_sects" / Int8ul,          # 0x1f1
    "root_flags" / Int16ul,          # 0x1f2
    "syssize" / Int32ul,             # 0x1f4
    "ram_size" / Int16ul,            # 0x1f8
    "vid_mode" / Int16ul,            # 0x1fa
    "root_dev" / Int16ul,            # 0x1fc
    "boot_flag" / Int16ul,           # 0x1fe
    "jump" / Int16ul,                # 0x200
    "header" / Int32ul,              # 0x202
    "version" / Int16ul,             # 0x206
    "realmode_swtch" / Int32ul,      # 0x208
    "start_sys_seg" / Int16ul,       # 0x20c
    "kernel_version" / Int16ul,      # 0x20e
    "type_of_loader" / Int8ul,       # 0x210
    "loadflags" / Int8ul,            # 0x211
    "setup_move_size" / Int16ul,     # 0x212
    "code32_start" / Int32ul,        # 0x214
    "ramdisk_image" / Int32ul,       # 0x218
    "ramdisk_size" / Int32ul,        # 0x21c
    "bootsect_kludge" / Int32ul,     # 0x220
    "heap_end_ptr" / Int16ul,        # 0x224
    "ext_loader_ver" / Int8ul,       # 0x226
    "ext_loader_type" / Int8ul,      # 0x227
    "cmd_line_ptr" / Int32ul,        # 0x228
    "initrd_addr_max" / Int32ul,     # 0x22c
    "kernel_alignment" / Int32ul,    # 0x230
    "relocatable_kernel" / Int8ul,   # 0x234
    "min_alignment" / Int8ul,        # 0x235
    "xloadflags" / Int16ul,          # 0x236
    "cmdline_size" / Int32ul,        # 0x238
    "hardware_subarch" / Int32ul,    # 0x23c
    "hardware_subarch_data" / Int64ul,  # 0x240
    "payload_offset" / Int32ul,      # 0x248
    "payload_length" / Int32ul,      # 0x24c
    "setup_data" / Int64ul,          # 0x250
    "pref_address" / Int64ul,        # 0x258
    "init_size" / Int32ul,           # 0x260
    "handover_offset" / Int32ul,     # 0x264
    "kernel_info_offset" / Int32ul,  # 0x268
)
SETUP_HEADER_SIZE = SetupHeader.sizeof()  # 0x7b: up to and including kernel_info_offset

E820Entry = Struct("addr" / Int64ul, "size" / Int64ul, "type" / Int32ul)

# BIOS Enhanced Disk Drive data (the kernel's struct edd_info, include/uapi/linux/edd.h).
EDD_MAX_ENTRIES = 6          # EDDMAXNR: eddbuf slots
EDD_MBR_SIG_MAX = 16         # edd_mbr_sig_buffer slots
EDD_DEVICE_PARAM_SIZE = 74   # the int13 ah=48h result buffer (raw_data)
EDD_EXT_FIXED_DISK_ACCESS = 1 << 0   # interface_support bits (int13 ah=41h cx)
EDD_EXT_DEVICE_LOCKING_AND_EJECTING = 1 << 1
EDD_EXT_ENHANCED_DISK_DRIVE_SUPPORT = 1 << 2
EDD_EXT_64BIT_EXTENSIONS = 1 << 3
EddInfo = Struct(
    "device" / Int8ul,                   # BIOS drive number (0x80 = first hard disk)
    "version" / Int8ul,                  # EDD version (int13 ah=41h ah), 0: no EDD
    "interface_support" / Int16ul,       # EDD_EXT_* bits
    "legacy_max_cylinder" / Int16ul,     # int13 ah=08h geometry
    "legacy_max_head" / Int8ul,
    "legacy_sectors_per_track" / Int8ul,
    "params" / Bytes(EDD_DEVICE_PARAM_SIZE),
)

# The two legacy corners of screen_info a loader writes: the extended-memory size and the
# old command-line protocol (cl_magic, cl_offset); the rest is copied as it is.
ScreenInfo = Struct(
    "orig_x" / Int8ul,                   # 0x00
    "orig_y" / Int8ul,                   # 0x01
    "ext_mem_k" / Int16ul,               # 0x02
    "video" / Bytes(0x1C),               # 0x04
    "cl_magic" / Int16ul,                # 0x20
    "cl_offset" / Int16ul,               # 0x22
    "lfb_and_rest" / Bytes(0x1C),        # 0x24
)
# struct efi_info: what the running kernel got from its EFI stub
EfiInfo = Struct(
    "efi_loader_signature" / Int32ul,    # 0x00
    "efi_systab" / Int32ul,              # 0x04
    "efi_memdesc_size" / Int32ul,        # 0x08
    "efi_memdesc_version" / Int32ul,     # 0x0c
    "efi_memmap" / Int32ul,              # 0x10
    "efi_memmap_size" / Int32ul,         # 0x14
    "efi_systab_hi" / Int32ul,           # 0x18
    "efi_memmap_hi" / Int32ul,           # 0x1c
)

BootParams = Struct(
    "screen_info" / ScreenInfo,                  # 0x000
    "apm_bios_info" / Bytes(0x14),               # 0x040
    Padding(4),                                  # 0x054
    "tboot_addr" / Int64ul,                      # 0x058
    "ist_info" / Bytes(0x10),                    # 0x060
    "acpi_rsdp_addr" / Int64ul,                  # 0x070
    Padding(8),                                  # 0x078
    "hd0_info" / Bytes(16),                      # 0x080
    "hd1_info" / Bytes(16),                      # 0x090
    "sys_desc_table" / Bytes(0x10),              # 0x0a0
    "olpc_ofw_header" / Bytes(0x10),             # 0x0b0
    "ext_ramdisk_image" / Int32ul,               # 0x0c0
    "ext_ramdisk_size" / Int32ul,                # 0x0c4
    "ext_cmd_line_ptr" / Int32ul,                # 0x0c8
    Padding(0x74),                               # 0x0cc
    "edid_info" / Bytes(0x80),                   # 0x140
    "efi_info" / EfiInfo,                        # 0x1c0
    "alt_mem_k" / Int32ul,                       # 0x1e0
    "scratch" / Int32ul,                         # 0x1e4
    "e820_entries" / Int8ul,                     # 0x1e8
    "eddbuf_entries" / Int8ul,                   # 0x1e9
    "edd_mbr_sig_buf_entries" / Int8ul,          # 0x1ea
    "kbd_status" / Int8ul,                       # 0x1eb
    "secure_boot" / Int8ul,                      # 0x1ec
    Padding(2),                                  # 0x1ed
    "sentinel" / Int8ul,                         # 0x1ef
    Padding(1),                                  # 0x1f0
    "hdr" / SetupHeader,                         # 0x1f1
    Padding(0x290 - 0x1F1 - SETUP_HEADER_SIZE),  # 0x26c
    "edd_mbr_sig_buffer" / Array(EDD_MBR_SIG_MAX, Int32ul),  # 0x290
    "e820_table" / Array(E820_MAX_ENTRIES_ZEROPAGE, E820Entry),  # 0x2d0
    Padding(0x30),                               # 0xcd0
    "eddbuf" / Array(EDD_MAX_ENTRIES, EddInfo),  # 0xd00
    Padding(BOOT_PARAMS_SIZE - 0xEEC),           # 0xeec
)

SetupDataHeader = Struct("next" / Int64ul, "type" / Int32ul, "len" / Int32ul)
SetupData = Struct("next" / Int64ul, "type" / Int32ul, "len" / Int32ul, "data" / Bytes(this.len))

assert BootParams.sizeof() == BOOT_PARAMS_SIZE
assert ScreenInfo.sizeof() == 0x40 and EfiInfo.sizeof() == 0x20
assert E820Entry.sizeof() == 20
assert EddInfo.sizeof() == 82
