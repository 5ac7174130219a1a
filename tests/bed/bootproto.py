"""x86 boot protocol structures, declared with construct, for building test inputs.

The setup header (Documentation/arch/x86/boot.rst) sits at offset 0x1f1 of a bzImage and of
the zero page; the zero page (struct boot_params) is what /sys/kernel/boot_params/data holds.
The test bed keeps its own declarations on purpose: inputs made here must not depend on the
pykexec code they are used to test.
"""

from construct import Array, Bytes, Const, Int8ul, Int16ul, Int32ul, Int64ul, Padding, Struct

SETUP_HEADER_OFFSET = 0x1F1

# Offsets in the comments are from the start of the zero page / the bzImage file.
SetupHeader = Struct(
    "setup_sects" / Int8ul,            # 0x1f1
    "root_flags" / Int16ul,            # 0x1f2
    "syssize" / Int32ul,               # 0x1f4
    "ram_size" / Int16ul,              # 0x1f8
    "vid_mode" / Int16ul,              # 0x1fa
    "root_dev" / Int16ul,              # 0x1fc
    "boot_flag" / Int16ul,             # 0x1fe  0xAA55
    "jump" / Int16ul,                  # 0x200  short jmp; its second byte says where the header ends
    "header" / Const(b"HdrS"),         # 0x202
    "version" / Int16ul,               # 0x206
    "realmode_swtch" / Int32ul,        # 0x208
    "start_sys_seg" / Int16ul,         # 0x20c
    "kernel_version" / Int16ul,        # 0x20e
    "type_of_loader" / Int8ul,         # 0x210
    "loadflags" / Int8ul,              # 0x211
    "setup_move_size" / Int16ul,       # 0x212
    "code32_start" / Int32ul,          # 0x214
    "ramdisk_image" / Int32ul,         # 0x218
    "ramdisk_size" / Int32ul,          # 0x21c
    "bootsect_kludge" / Int32ul,       # 0x220
    "heap_end_ptr" / Int16ul,          # 0x224
    "ext_loader_ver" / Int8ul,         # 0x226
    "ext_loader_type" / Int8ul,        # 0x227
    "cmd_line_ptr" / Int32ul,          # 0x228
    "initrd_addr_max" / Int32ul,       # 0x22c
    "kernel_alignment" / Int32ul,      # 0x230
    "relocatable_kernel" / Int8ul,     # 0x234
    "min_alignment" / Int8ul,          # 0x235
    "xloadflags" / Int16ul,            # 0x236
    "cmdline_size" / Int32ul,          # 0x238
    "hardware_subarch" / Int32ul,      # 0x23c
    "hardware_subarch_data" / Int64ul, # 0x240
    "payload_offset" / Int32ul,        # 0x248
    "payload_length" / Int32ul,        # 0x24c
    "setup_data" / Int64ul,            # 0x250
    "pref_address" / Int64ul,          # 0x258
    "init_size" / Int32ul,             # 0x260
    "handover_offset" / Int32ul,       # 0x264
    "kernel_info_offset" / Int32ul,    # 0x268
)                                      # ends at 0x26c
SETUP_HEADER_SIZE = SetupHeader.sizeof()  # 0x7b
# The jump at 0x200 is "EB xx": the header ends at 0x202 + xx.
SETUP_HEADER_JUMP = 0xEB | ((SETUP_HEADER_OFFSET + SETUP_HEADER_SIZE - 0x202) << 8)

E820Entry = Struct("addr" / Int64ul, "size" / Int64ul, "type" / Int32ul)
E820_MAX_ZEROPAGE = 128
E820_TYPES = {"System RAM": 1, "Reserved": 2, "ACPI Tables": 3,
              "ACPI Non-volatile Storage": 4, "Unusable memory": 5,
              "Persistent Memory": 7, "Persistent Memory (legacy)": 12}

ScreenInfo = Struct(
    "orig_x" / Int8ul, "orig_y" / Int8ul, "ext_mem_k" / Int16ul, "orig_video_page" / Int16ul,
    "orig_video_mode" / Int8ul, "orig_video_cols" / Int8ul, "flags" / Int8ul, Padding(1),
    "orig_video_ega_bx" / Int16ul, Padding(2), "orig_video_lines" / Int8ul,
    "orig_video_isVGA" / Int8ul, "orig_video_points" / Int16ul,
    "rest" / Bytes(0x40 - 0x12),       # lfb_* fields; zero for a text console
)

BootParams = Struct(
    "screen_info" / ScreenInfo,        # 0x000
    "apm_bios_info" / Bytes(0x14),     # 0x040
    Padding(4),                        # 0x054
    "tboot_addr" / Int64ul,            # 0x058
    "ist_info" / Bytes(0x10),          # 0x060
    "acpi_rsdp_addr" / Int64ul,        # 0x070
    Padding(8),                        # 0x078
    "hd0_info" / Bytes(16),            # 0x080
    "hd1_info" / Bytes(16),            # 0x090
    "sys_desc_table" / Bytes(16),      # 0x0a0
    "olpc_ofw_header" / Bytes(16),     # 0x0b0
    "ext_ramdisk_image" / Int32ul,     # 0x0c0
    "ext_ramdisk_size" / Int32ul,      # 0x0c4
    "ext_cmd_line_ptr" / Int32ul,      # 0x0c8
    Padding(0x13C - 0xCC),             # 0x0cc
    "cc_blob_address" / Int32ul,       # 0x13c
    "edid_info" / Bytes(0x80),         # 0x140
    "efi_info" / Bytes(0x20),          # 0x1c0
    "alt_mem_k" / Int32ul,             # 0x1e0
    "scratch" / Int32ul,               # 0x1e4
    "e820_entries" / Int8ul,           # 0x1e8
    "eddbuf_entries" / Int8ul,         # 0x1e9
    "edd_mbr_sig_buf_entries" / Int8ul,  # 0x1ea
    "kbd_status" / Int8ul,             # 0x1eb
    "secure_boot" / Int8ul,            # 0x1ec
    Padding(2),                        # 0x1ed
    "sentinel" / Int8ul,               # 0x1ef
    Padding(1),                        # 0x1f0
    "hdr" / SetupHeader,               # 0x1f1
    Padding(0x290 - 0x26C),            # 0x26c
    "edd_mbr_sig_buffer" / Bytes(64),  # 0x290
    "e820_table" / Array(E820_MAX_ZEROPAGE, E820Entry),  # 0x2d0
    Padding(0xD00 - 0xCD0),            # 0xcd0
    "eddbuf" / Bytes(0xEEC - 0xD00),   # 0xd00
    Padding(0x1000 - 0xEEC),           # 0xeec
)
assert BootParams.sizeof() == 4096

# setup_data header (linked list hanging off boot_params.hdr.setup_data)
SetupDataHeader = Struct("next" / Int64ul, "type" / Int32ul, "len" / Int32ul)
SETUP_E820_EXT = 1
SETUP_RNG_SEED = 9
