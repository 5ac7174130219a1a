"""A normal load and its boot in one guest, for any architecture's stage 1 (the arm64 and
i386 beds call `reboot_cycle` when config.json has `reboot`; tests/bed/qemu.py
`run_load_exec` writes that config and reads what this leaves in RESULTS_DIR).

Boot 1 runs the load (-l) and records reboot-before.json, then the exec (-e). The kernel
that -e boots comes up with the same initramfs and the command line the load gave it;
AFTER_MARK on it tells this module it is boot 2, which records reboot-after.json.
"""

import json
import os
import subprocess
import time

import stage1

AFTER_MARK = "bed_boot=after"      # tests/bed/qemu.py LOAD_EXEC_MARK
DEVICE_TREE_BOOTARGS = "/proc/device-tree/chosen/bootargs"


def reboot_cycle(results, reboot):
    """`reboot` = {"load": argv (-l), "exec": argv (-e)}. The first kernel loads and execs,
    recording reboot-before.json (loader exit, time, output, /sys/kernel/kexec_loaded)
    before the exec; the kernel it boots records reboot-after.json: its command line and
    release (and its device tree's /chosen/bootargs where it has one). 0 after, 3 if the
    load failed or the exec returned."""
    cmdline = stage1.read_text("/proc/cmdline")
    if AFTER_MARK in cmdline.split():
        after = {"cmdline": cmdline, "release": os.uname().release}
        if os.path.isdir("/proc/device-tree"):
            after["fdt_bootargs"] = stage1.read_text(DEVICE_TREE_BOOTARGS).rstrip("\0")
        with open(os.path.join(results, "reboot-after.json"), "w") as f:
            json.dump(after, f, indent=1)
        print("BED: rebooted", flush=True)
        return 0
    out = {"first_cmdline": cmdline, "first_release": os.uname().release}

    def save():
        with open(os.path.join(results, "reboot-before.json"), "w") as f:
            json.dump(out, f, indent=1)

    print("BED: loader start " + " ".join(reboot["load"]), flush=True)
    t = time.monotonic()
    proc = subprocess.run(reboot["load"], capture_output=True, timeout=300)
    out.update(load_exit=proc.returncode, load_seconds=round(time.monotonic() - t, 3),
               load_stdout=proc.stdout.decode("utf-8", "replace"),
               load_stderr=proc.stderr.decode("utf-8", "replace"),
               kexec_loaded=stage1.read_text("/sys/kernel/kexec_loaded"))
    print(f"BED: loader done rc={proc.returncode}", flush=True)
    save()
    os.sync()
    if proc.returncode != 0:
        return 3
    print("BED: exec", flush=True)
    proc = subprocess.run(reboot["exec"], capture_output=True, timeout=120)
    out.update(exec_exit=proc.returncode, exec_stderr=proc.stderr.decode("utf-8", "replace"))
    save()
    return 3
