"""Guest side of the hotplug harness (tests/bed/hotplug.py drives the host side).

Runs in the first kernel after the crash load and before the panic: writes
RESULTS/hotplug-ready, waits for the host to hot-add CPUs and DIMMs through QMP and write
RESULTS/hotplug-done (JSON: what it added), waits until the kernel sees them, onlines every
offline CPU and memory block (there is no udev in the bed's guest; memory may already be
online when the kernel onlines hot-added memory itself), and returns what it saw.
"""

import glob
import json
import os
import time

CPU = "/sys/devices/system/cpu"
MEMORY = "/sys/devices/system/memory"
# What a kernel with CONFIG_CRASH_HOTPLUG tells user space; absent on older kernels.
CRASH_SYSFS = ("/sys/kernel/crash_elfcorehdr_size", f"{CPU}/crash_hotplug",
               f"{MEMORY}/crash_hotplug", "/sys/kernel/kexec_crash_size",
               "/sys/kernel/kexec_crash_loaded")


def read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def crash_sysfs():
    """{path: text or None} of CRASH_SYSFS."""
    return {p: read(p) for p in CRASH_SYSFS}


def _cpus():
    return sorted(int(os.path.basename(p)[3:]) for p in glob.glob(f"{CPU}/cpu[0-9]*"))


def _blocks():
    return sorted(int(os.path.basename(p)[6:]) for p in glob.glob(f"{MEMORY}/memory[0-9]*"))


def _online_all():
    """Online every offline CPU and memory block; the ones it onlined (or failed to)."""
    done = {"cpus": [], "blocks": [], "failed": []}
    for n in _cpus():
        path = f"{CPU}/cpu{n}/online"
        if read(path) == "0":
            try:
                with open(path, "w") as f:
                    f.write("1")
                done["cpus"].append(n)
            except OSError as e:
                done["failed"].append(f"cpu{n}: {e}")
    for n in _blocks():
        path = f"{MEMORY}/memory{n}/state"
        if read(path) == "offline":
            try:
                with open(path, "w") as f:
                    f.write("online")
                done["blocks"].append(n)
            except OSError as e:
                done["failed"].append(f"memory{n}: {e}")
    return done


def system_ram():
    """The top-level "System RAM" ranges of /proc/iomem as [start, end] (inclusive)."""
    ranges = []
    with open("/proc/iomem") as f:
        for line in f:
            if not line.startswith(" ") and line.rstrip().endswith(": System RAM"):
                start, end = line.split(":")[0].strip().split("-")
                ranges.append([int(start, 16), int(end, 16)])
    return ranges


def hot_add(results, timeout=120.0):
    """Hand over to the host for the hot-add, then online what came; a JSON-ready report."""
    cpus0, blocks0 = _cpus(), _blocks()
    report = {"before": {"cpus": cpus0, "blocks": len(blocks0), "crash_sysfs": crash_sysfs()}}
    with open(os.path.join(results, "hotplug-ready"), "w") as f:
        f.write("ready\n")
    print("BED: hotplug ready", flush=True)
    done_path = os.path.join(results, "hotplug-done")
    deadline = time.monotonic() + timeout
    while not os.path.exists(done_path):
        if time.monotonic() > deadline:
            report["error"] = "the host never wrote hotplug-done"
            return report
        time.sleep(0.2)
    with open(done_path) as f:
        added = json.load(f)
    report["host"] = added
    want_cpus = len(cpus0) + len(added.get("cpus", []))
    want_bytes = sum(d["size"] for d in added.get("dimms", []))
    block_size = int(read(f"{MEMORY}/block_size_bytes") or "0", 16)
    want_blocks = len(blocks0) + (want_bytes // block_size if block_size else 0)
    # ACPI hotplug notifications are asynchronous: wait for the devices to appear.
    while len(_cpus()) < want_cpus or len(_blocks()) < want_blocks:
        if time.monotonic() > deadline:
            report["error"] = (f"kernel sees {len(_cpus())}/{want_cpus} CPUs and "
                               f"{len(_blocks())}/{want_blocks} memory blocks")
            break
        time.sleep(0.2)
    report["onlined"] = _online_all()
    report["after"] = {"cpus": _cpus(), "blocks": len(_blocks()),
                       "online_cpus": read(f"{CPU}/online"), "crash_sysfs": crash_sysfs(),
                       "system_ram": system_ram()}
    print(f"BED: hotplug done, CPUs online {report['after']['online_cpus']}", flush=True)
    return report
