"""Stage 1 of a kdump cycle, in the first kernel (run by /init in the chroot of the host root).

Usage: stage1.py RESULTS_DIR. Reads RESULTS_DIR/config.json:
  take_snapshot (bool), snapshot_notes (str), loader_argv (list or null), pattern_mib (int),
  loader_timeout (seconds), hotplug (bool: after the load, hand over to the host for a
  CPU and memory hot-add and online what came, guest/hotplug.py).
Records the kernel's crash sysfs files (crash hotplug on 6.6+) before and after the load.
Optionally takes a machine snapshot (pykexec.machine.snapshot) into RESULTS_DIR/snapshot, runs the
loader, records its exit code/stdout/stderr and /sys/kernel/kexec_crash_loaded, starts the
pattern filler, writes RESULTS_DIR/stage1.json and panics the kernel (sysrq c). With no
loader, or when the load failed, it writes stage1.json and exits (/init powers off).
Exit codes: 0 snapshot only, 3 load failed, 4 filler failed, 5 internal error,
7 no crash region reserved (require_crash_region).
"""

import json
import os
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))


def read_text(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as e:
        return f"<{e}>"


def start_filler(mib, results):
    """Fork a child that fills `mib` MiB with the pattern and stays alive; its status line."""
    sys.path.insert(0, HERE)
    import pattern
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            buf, records = pattern.fill(mib, results)
            unmapped = sum(1 for _, pfn in records if pfn == 0)
            os.write(w, f"ready pages={len(records)} unmapped={unmapped}\n".encode())
        except BaseException as e:
            os.write(w, f"error {type(e).__name__}: {e}\n".encode())
            os._exit(1)
        while True:  # keep the pages mapped until the panic
            time.sleep(3600)
    os.close(w)
    with os.fdopen(r) as f:
        return f.readline().strip()


def main(results):
    with open(os.path.join(results, "config.json")) as f:
        cfg = json.load(f)
    out = {"stage": 1, "times": {}, "uname": list(os.uname())}
    out_path = os.path.join(results, "stage1.json")

    def save():
        with open(out_path + ".tmp", "w") as f:
            json.dump(out, f, indent=1)
        os.rename(out_path + ".tmp", out_path)

    try:
        out["cmdline"] = read_text("/proc/cmdline")
        out["iomem_crash"] = [l.strip() for l in read_text("/proc/iomem").splitlines()
                              if "Crash kernel" in l]
        size = read_text("/sys/kernel/kexec_crash_size")
        out["crash_size"] = int(size) if size.isdigit() else None
        if cfg.get("require_crash_region") and not out["crash_size"]:
            # e.g. crashkernel=256M@16M when KASLR put this kernel there: the host retries.
            out["result"] = "no-crash-region"
            # where this kernel sat, to tell a KASLR collision from anything else
            out["iomem_kernel"] = [l.strip() for l in read_text("/proc/iomem").splitlines()
                                   if "Kernel " in l]
            save()
            print("BED: no crash region reserved", flush=True)
            return 7
        sys.path.insert(0, HERE)
        import hotplug
        out["crash_sysfs"] = hotplug.crash_sysfs()
        if cfg.get("take_snapshot"):
            from pykexec.machine.snapshot import take_snapshot
            t = time.monotonic()
            take_snapshot(os.path.join(results, "snapshot"), root="/", source="qemu",
                          notes=cfg.get("snapshot_notes", ""))
            out["times"]["snapshot"] = round(time.monotonic() - t, 3)
            out["snapshot"] = "snapshot"
        argv = cfg.get("loader_argv")
        if not argv:
            out["result"] = "snapshot-only"
            save()
            return 0
        print("BED: loader start " + " ".join(argv), flush=True)
        t = time.monotonic()
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=cfg.get("loader_timeout", 120))
            out["loader_exit"] = proc.returncode
            out["loader_stdout"] = proc.stdout.decode("utf-8", "replace")
            out["loader_stderr"] = proc.stderr.decode("utf-8", "replace")
        except (OSError, subprocess.TimeoutExpired) as e:
            out["loader_exit"] = None
            out["loader_stdout"] = ""
            out["loader_stderr"] = f"{type(e).__name__}: {e}"
        out["times"]["load"] = round(time.monotonic() - t, 3)
        print(f"BED: loader done rc={out['loader_exit']}", flush=True)
        loaded = read_text("/sys/kernel/kexec_crash_loaded")
        out["crash_loaded"] = int(loaded) if loaded.isdigit() else None
        out["crash_sysfs_loaded"] = hotplug.crash_sysfs()
        if out["loader_exit"] != 0 or out["crash_loaded"] != 1:
            out["result"] = "load-failed"
            save()
            print("BED: load failed, not panicking", flush=True)
            return 3
        if cfg.get("hotplug"):
            t = time.monotonic()
            out["hotplug"] = hotplug.hot_add(results)
            out["times"]["hotplug"] = round(time.monotonic() - t, 3)
            save()
        t = time.monotonic()
        line = start_filler(cfg.get("pattern_mib", 64), results)
        out["times"]["pattern_fill"] = round(time.monotonic() - t, 3)
        out["pattern_ready"] = line
        if not line.startswith("ready"):
            out["result"] = "filler-failed"
            save()
            return 4
        out["result"] = "panicking"
        save()
        os.sync()
        print("BED: panic", flush=True)
        try:  # let the serial line carry the marker before the panic stops the tty
            import termios
            termios.tcdrain(sys.stdout.fileno())
        except (ImportError, OSError):
            pass
        time.sleep(0.1)
        with open("/proc/sysrq-trigger", "w") as f:
            f.write("c")
        time.sleep(30)
        return 6
    except Exception:
        out["result"] = "error"
        out["error"] = traceback.format_exc()
        save()
        print(out["error"], flush=True)
        return 5


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
