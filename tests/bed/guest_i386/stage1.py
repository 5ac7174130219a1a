"""i386 stage 1: keep a copy of the low RAM the backup region covers, then the generic
stage 1 (tests/bed/guest/stage1.py: snapshot, loader, pattern, panic); or, with
config.json's `reboot`, a normal load and its boot (tests/bed/guest/load_exec.py).

The copy is read through /proc/kcore (the kernel's direct map at 0xc0000000 + physical
address): /dev/mem reads the low 1 MiB of RAM as zeros on these kernels (STRICT_DEVMEM).
"""

import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
GENERIC = os.path.join(os.path.dirname(HERE), "guest")
PAGE_OFFSET = 0xC0000000


def backup_source():
    """(start, size) of the first System RAM range ending at or below 0xa0000."""
    with open("/proc/iomem") as f:
        for line in f:
            rng, _, name = line.strip().partition(" : ")
            if name != "System RAM":
                continue
            start, end = (int(x, 16) for x in rng.split("-"))
            if end <= 0xA0000:
                return start, end - start + 1
    return 0, 0xA0000


def read_kcore(paddr, size):
    vaddr = PAGE_OFFSET + paddr
    with open("/proc/kcore", "rb") as f:
        head = f.read(65536)
        if head[4] != 1:
            raise ValueError("kcore is not ELF32")
        phoff, = struct.unpack_from("<I", head, 28)
        phentsize, phnum = struct.unpack_from("<HH", head, 42)
        for i in range(phnum):
            p_type, p_offset, p_vaddr, _, p_filesz, _, _, _ = struct.unpack_from(
                "<8I", head, phoff + i * phentsize)
            if p_type == 1 and p_vaddr <= vaddr and vaddr + size <= p_vaddr + p_filesz:
                f.seek(p_offset + vaddr - p_vaddr)
                return f.read(size)
    raise ValueError(f"no kcore PT_LOAD covers {vaddr:#x}+{size:#x}")


def main(results):
    sys.path.insert(0, GENERIC)
    with open(os.path.join(results, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("reboot"):
        from load_exec import reboot_cycle
        return reboot_cycle(results, cfg["reboot"])
    info = {}
    try:
        start, size = backup_source()
        data = read_kcore(start, size)
        with open(os.path.join(results, "lowmem-before.bin"), "wb") as f:
            f.write(data)
        info = {"start": start, "size": size, "nonzero_bytes": len(data) - data.count(0)}
    except Exception as e:  # the cycle goes on; stage 2 reports the missing copy
        info = {"error": f"{type(e).__name__}: {e}"}
    with open(os.path.join(results, "lowmem-before.json"), "w") as f:
        json.dump(info, f)
    import stage1
    return stage1.main(results)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
