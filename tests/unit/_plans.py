"""Hand-built plans for the presentation tests (show, svg, inspect).

The bytes come from tests/unit/test_planfacts.py's `make_plan`, which packs them with
`struct` straight from the specifications; here the segments get their kinds and sources
the way a loader would label them. The constants below restate the addresses that
`make_plan` uses, so tests can check the report against numbers they know independently.
"""

from pykexec.core.plan import Plan, Segment
from tests.unit.test_planfacts import USER_CMDLINE, make_plan

KINDS = ("setup_data", "initrd", "kernel", "boot_params", "purgatory", "elfcorehdr", "backup")
SOURCES = ("zeropage builder: setup_data", "/boot/initrd.img-test", "/boot/vmlinuz-test",
           "zeropage builder", "purgatory x86_64.o", "elfcore builder", "backup (zero-filled)")
# make_plan(shift=0) addresses
PARAMS_AT = 0x3DF4E000
KERNEL_AT = 0x39E00000
PURGATORY_AT = 0x3DF54000
CORE_AT = 0x3DF5D000
BACKUP_AT = 0x3DF61000
CRASH = (0x2E000000, 0x3E000000)     # the gap the core header leaves in the dumped RAM
E820 = [(0x0, 0x1000, 2), (0x1000, 0x9EC00, 1), (0x9FC00, 0x400, 2),
        (0x2E000000, CORE_AT - 0x2E000000, 1)] + [(0xFED00000 + 0x1000 * i, 0x1000, 2)
                                                  for i in range(3)]
# (type, offset, paddr, memsz) of the core header's program headers
PHDRS = [("NOTE", 0x3FC15C00, 0x3FC15C00, 0x1A8), ("NOTE", 0x3F6B4000, 0x3F6B4000, 0x1024),
         ("LOAD", 0x1000000, 0x1000000, 0x1A00000), ("LOAD", BACKUP_AT, 0x1000, 0x9EC00),
         ("LOAD", 0x100000, 0x100000, 0x2DF00000), ("LOAD", 0x3E000000, 0x3E000000, 0x1FE0000)]


def labelled_plan(notes=None) -> Plan:
    raw = make_plan()
    segs = [Segment(s.mem, s.memsz, s.data, kind, source)
            for s, kind, source in zip(raw.segments, KINDS, SOURCES)]
    return Plan(raw.arch, raw.syscall, raw.flags, raw.entry, None, segs, notes or {})


def file_load_plan() -> Plan:
    return Plan("x86_64", "kexec_file_load", 2, None, "console=ttyS0 irqpoll",
                [Segment(None, 5000, b"K" * 5000, "kernel", "/boot/vmlinuz"),
                 Segment(None, 3000, b"I" * 3000, "initrd", "/boot/initrd.img")])


__all__ = ["labelled_plan", "file_load_plan", "USER_CMDLINE"]
