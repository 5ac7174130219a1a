"""Capture kernel of scripts/capture-vmcore-head: keep the head of /proc/vmcore, then the
bed's own stage 2.

The head is everything before the first PT_LOAD's data: the ELF header, the program
headers and the PT_NOTE data (NT_PRSTATUS per CPU, VMCOREINFO) that the capture kernel
merged from the notes the old kernel left. A few KiB, so it can live in the repository
(examples/vmcore-1g-2cpu/vmcore-head) for `pykexec inspect`.
"""
import os
import runpy
import struct
import sys

BED_GUEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "bed", "guest")


def save_head(results):
    with open("/proc/vmcore", "rb") as f:
        ehdr = f.read(64)
        phoff, = struct.unpack_from("<Q", ehdr, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", ehdr, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
        ends, first_load = [phoff + len(table)], None
        for i in range(phnum):
            ptype, _flags, off, _v, _p, filesz = struct.unpack_from("<IIQQQQ", table, i * phentsize)
            if ptype == 1:
                first_load = off if first_load is None else min(first_load, off)
            elif ptype == 4:
                ends.append(off + filesz)
        size = max(ends)
        f.seek(0)
        head = f.read(size)
    with open(os.path.join(results, "vmcore-head"), "wb") as out:
        out.write(head)
    print(f"BED: saved {size} bytes of /proc/vmcore headers and notes "
          f"(first PT_LOAD data at {first_load:#x})", flush=True)


if __name__ == "__main__":
    try:
        save_head(sys.argv[1])
    except Exception as e:  # the bed's checks still run
        print(f"BED: vmcore head not saved: {e}", flush=True)
    sys.argv[0] = os.path.join(BED_GUEST, "stage2.py")
    runpy.run_path(sys.argv[0], run_name="__main__")
