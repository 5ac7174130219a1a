"""Stage 2 of a kdump cycle, in the capture kernel (run by /init in the chroot of the host root).

Usage: stage2.py RESULTS_DIR. Reads /proc/vmcore's ELF header, program headers and notes,
checks the pattern recorded by stage 1 (and the shifted-PFN negative control), saves
/proc/cmdline, dmesg and Debian's `vmcore-dmesg /proc/vmcore`, and writes everything to
RESULTS_DIR/stage2.json. With "keep_vmcore" in RESULTS_DIR/config.json, /proc/vmcore is
also copied to RESULTS_DIR/vmcore in bounded chunks (tests/bed/keep.py), after running
`pykexec vmcore dmesg /proc/vmcore`. Exit 0 when the JSON was written.
"""

import json
import os
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pattern  # noqa: E402
import vmcore  # noqa: E402

VMCORE = "/proc/vmcore"
COPY_CHUNK = 8 << 20


def keep_vmcore(results):
    """Copy /proc/vmcore to RESULTS/vmcore, a chunk at a time (memory stays bounded)."""
    part = os.path.join(results, "vmcore.part")
    copied = 0
    with open(VMCORE, "rb", buffering=0) as src, open(part, "wb") as dst:
        while True:
            chunk = src.read(COPY_CHUNK)
            if not chunk:
                break
            dst.write(chunk)
            copied += len(chunk)
    os.rename(part, os.path.join(results, "vmcore"))
    return copied


def run(argv, timeout=120):
    try:
        p = subprocess.run(argv, capture_output=True, timeout=timeout)
        return {"exit": p.returncode, "stdout": p.stdout.decode("utf-8", "replace"),
                "stderr": p.stderr.decode("utf-8", "replace")}
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"exit": None, "stdout": "", "stderr": f"{type(e).__name__}: {e}"}


def main(results):
    out = {"stage": 2, "times": {}, "errors": []}
    out_path = os.path.join(results, "stage2.json")
    t0 = time.monotonic()
    try:
        with open("/proc/cmdline") as f:
            out["cmdline"] = f.read().strip()
        out["uname_release"] = os.uname().release
        # EFI runtime services in the capture kernel: only when the loader passed EFI data
        out["efi_runtime"] = os.path.exists("/sys/firmware/efi/runtime")
        out["vmcore_size"] = os.stat(VMCORE).st_size
        with open(VMCORE, "rb") as f:
            core = vmcore.describe_core(f)
            out.update(core)      # kept even if the pattern check fails
            out["times"]["headers"] = round(time.monotonic() - t0, 3)
            rec_path = os.path.join(results, "pattern.txt")
            if os.path.exists(rec_path):
                tag, records = pattern.read_records(rec_path)
                out["pattern"] = pattern.check_pattern(f.fileno(), core["phdrs"], tag, records)
                out["pattern_shifted"] = pattern.check_pattern(
                    f.fileno(), core["phdrs"], tag, records, shift=1)
            else:
                out["errors"].append("no pattern.txt from stage 1")
    except Exception:
        out["errors"].append(traceback.format_exc())
    out["times"]["checks"] = round(time.monotonic() - t0, 3)
    try:
        with open(os.path.join(results, "config.json")) as f:
            wanted = json.load(f).get("keep_vmcore")
        if wanted:
            # pykexec's own reader on /proc/vmcore itself (procfs mmap, or pread where the
            # mapping does not fit, as in a 32-bit guest), next to vmcore-dmesg below
            out["pykexec_vmcore_dmesg"] = run([sys.executable, "-m", "pykexec", "vmcore",
                                               "dmesg", VMCORE])
            t1 = time.monotonic()
            out["kept_vmcore_bytes"] = keep_vmcore(results)
            out["times"]["keep_vmcore"] = round(time.monotonic() - t1, 3)
    except Exception:
        out["errors"].append("keeping the vmcore: " + traceback.format_exc())
    out["dmesg"] = run(["dmesg"])["stdout"]
    out["vmcore_dmesg"] = run(["/usr/sbin/vmcore-dmesg", VMCORE])
    out["times"]["total"] = round(time.monotonic() - t0, 3)
    with open(out_path + ".tmp", "w") as f:
        json.dump(out, f, indent=1)
    os.rename(out_path + ".tmp", out_path)
    print(f"BED: stage2 wrote {out_path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
