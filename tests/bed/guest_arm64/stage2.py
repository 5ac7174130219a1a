"""arm64 stage 2: the generic checks (tests/bed/guest/stage2.py: vmcore headers and
notes, the pattern page by page, Debian's vmcore-dmesg), this kernel's /chosen and System
RAM (chosen.json), then Debian's makedumpfile:arm64:
`makedumpfile -d 31 /proc/vmcore DUMP` and `makedumpfile --dump-dmesg DUMP DMESG`, written
to RESULTS_DIR/makedumpfile.json (the dump itself is deleted: only its size is kept).
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "guest"))

import stage2  # noqa: E402

MAKEDUMPFILE = "/usr/bin/makedumpfile"


def dump_checks(results):
    dump = os.path.join(results, "dump.d31")
    log = os.path.join(results, "dump-dmesg.txt")
    out = {}
    made = stage2.run([MAKEDUMPFILE, "-d", "31", "/proc/vmcore", dump], timeout=600)
    out["dump_exit"], out["dump_stderr"] = made["exit"], made["stdout"] + made["stderr"]
    if os.path.exists(dump):
        out["dump_size"] = os.path.getsize(dump)
        shown = stage2.run([MAKEDUMPFILE, "--dump-dmesg", dump, log], timeout=300)
        out["dmesg_exit"], out["dmesg_stderr"] = shown["exit"], shown["stdout"] + shown["stderr"]
        if os.path.exists(log):
            with open(log, errors="replace") as f:
                out["dmesg"] = f.read()
            os.unlink(log)
        os.unlink(dump)
    return out


CHOSEN = "/proc/device-tree/chosen"


def chosen_record(results):
    """What the loader told this (capture) kernel in its DTB's /chosen: the raw cells of
    linux,elfcorehdr and linux,usable-memory-range as hex, and /proc/iomem's System RAM."""
    out = {}
    for name in ("linux,elfcorehdr", "linux,usable-memory-range", "linux,initrd-start",
                 "linux,initrd-end"):
        try:
            with open(os.path.join(CHOSEN, name), "rb") as f:
                out[name] = f.read().hex()
        except OSError:
            out[name] = None
    with open("/proc/iomem") as f:
        out["system_ram"] = [line.split(" : ")[0].strip() for line in f
                             if line.rstrip().endswith(" : System RAM")]
    with open(os.path.join(results, "chosen.json"), "w") as f:
        json.dump(out, f, indent=1)


def main(results):
    rc = stage2.main(results)
    try:
        chosen_record(results)
    except Exception as e:
        with open(os.path.join(results, "chosen.json"), "w") as f:
            json.dump({"error": f"{type(e).__name__}: {e}"}, f)
    try:
        out = dump_checks(results)
    except Exception as e:
        out = {"error": f"{type(e).__name__}: {e}"}
    with open(os.path.join(results, "makedumpfile.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(f"BED: makedumpfile -d 31 exit {out.get('dump_exit')}, --dump-dmesg exit "
          f"{out.get('dmesg_exit')}", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
