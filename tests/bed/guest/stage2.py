"""Stage 2 of a kdump cycle, in the capture kernel (run by /init in the chroot of the host root).

Usage: stage2.py RESULTS_DIR. Reads /proc/vmcore's ELF header, program headers and notes,
checks the pattern recorded by stage 1 (and the shifted-PFN negative control), saves
/proc/cmdline, dmesg and Debian's `vmcore-dmesg /proc/vmcore`, and writes everything to
RESULTS_DIR/stage2.json. Exit 0 when the JSON was written.
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
