"""i386 stage 2: the generic checks (tests/bed/guest/stage2.py), then the low-memory
check: the PT_LOAD of /proc/vmcore that describes the backup source range (its p_offset
points at the copy purgatory made) must hold what stage 1 read there before the panic.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
GENERIC = os.path.join(os.path.dirname(HERE), "guest")
PAGE = 4096


def lowmem_check(results):
    out = {"pages": 0, "equal_pages": 0, "differing_pages": [], "nonzero_bytes": 0}
    with open(os.path.join(results, "lowmem-before.json")) as f:
        before = json.load(f)
    if "error" in before:
        out["error"] = "stage 1: " + before["error"]
        return out
    start, size = before["start"], before["size"]
    out.update(start=start, size=size)
    with open(os.path.join(results, "lowmem-before.bin"), "rb") as f:
        old = f.read()
    import vmcore
    with open("/proc/vmcore", "rb") as f:
        core = vmcore.describe_core(f)
        loads = [p for p in core["phdrs"] if p["type"] == "PT_LOAD"
                 and p["paddr"] <= start and start + size <= p["paddr"] + p["filesz"]]
        if not loads:
            out["error"] = f"no PT_LOAD in /proc/vmcore covers {start:#x}+{size:#x}"
            return out
        # /proc/vmcore's own file offsets are not the header's p_offset: find the range
        # through the vmcore's program headers as the kernel rewrote them.
        p = loads[0]
        out["vmcore_offset_phdr"] = p["offset"]
        f.seek(p["offset"] + start - p["paddr"])
        new = f.read(size)
    out["nonzero_bytes"] = len(new) - new.count(0)
    for i in range(0, size, PAGE):
        out["pages"] += 1
        if old[i:i + PAGE] == new[i:i + PAGE]:
            out["equal_pages"] += 1
        else:
            out["differing_pages"].append(start + i)
    return out


def main(results):
    sys.path.insert(0, GENERIC)
    import stage2
    rc = stage2.main(results)
    try:
        out = lowmem_check(results)
    except Exception as e:
        out = {"error": f"{type(e).__name__}: {e}"}
    with open(os.path.join(results, "lowmem.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(f"BED: lowmem {out.get('equal_pages')}/{out.get('pages')} pages equal", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
