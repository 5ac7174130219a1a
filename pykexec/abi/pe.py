"""PE/COFF, as far as a kexec loader reads it (Microsoft's PE format specification).

Kernels with an EFI stub carry a PE wrapper (compressed or not), and a unified kernel image
(UKI) is a PE file whose sections hold the kernel, initrd and command line. All little
endian:

    DOS header        "MZ" ... the PE header's file offset at 0x3c
    PE header         "PE\\0\\0", the COFF file header (machine, section count, optional
                      header size), then the optional header
    section table     40 bytes a section, right after the optional header
"""

from __future__ import annotations

from construct import Bytes, Const, Int16ul, Int32ul, Padding, Struct

MZ_MAGIC = b"MZ"
PE_SIGNATURE = b"PE\0\0"

DosHeader = Struct(
    "magic" / Const(MZ_MAGIC),
    Padding(0x3a),
    "pe_offset" / Int32ul,          # e_lfanew
)

CoffHeader = Struct(
    "signature" / Const(PE_SIGNATURE),
    "machine" / Int16ul,
    "number_of_sections" / Int16ul,
    "time_date_stamp" / Int32ul,
    "pointer_to_symbol_table" / Int32ul,
    "number_of_symbols" / Int32ul,
    "size_of_optional_header" / Int16ul,
    "characteristics" / Int16ul,
)

SectionHeader = Struct(
    "name" / Bytes(8),              # NUL-padded; "/N" names the string table (not used here)
    "virtual_size" / Int32ul,       # the section's real size
    "virtual_address" / Int32ul,
    "size_of_raw_data" / Int32ul,   # the bytes in the file, rounded up to the file alignment
    "pointer_to_raw_data" / Int32ul,
    "pointer_to_relocations" / Int32ul,
    "pointer_to_linenumbers" / Int32ul,
    "number_of_relocations" / Int16ul,
    "number_of_linenumbers" / Int16ul,
    "characteristics" / Int32ul,
)
