"""arm64 stage 1: the generic stage 1 (tests/bed/guest/stage1.py: snapshot, loader,
pattern, panic), or with config.json's `reboot` a normal load and boot (the generic
tests/bed/guest/load_exec.py), and for a snapshot two more records in its folder:

- sys/firmware/fdt: the machine's flattened device tree, at the path the snapshot format
  gives it (pykexec.machine.snapshot does not copy it yet);
- oracle/kexec-p-d.json: Debian's kexec-tools:arm64 run on this machine with the argv of
  config.json's `record_kexec_argv` (a `kexec -p -d ...`): exit status, stdout, stderr (the
  segments), then unloaded again;
- oracle/shim/: the same command under the recording shim (tests/bed/shim, built for
  aarch64; config.json's `record_shim`), which loads nothing but keeps every segment's
  bytes (the DTB kexec-tools passes among them) and fixes getrandom's bytes.
"""

import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "guest"))

import stage1  # noqa: E402
from load_exec import reboot_cycle  # noqa: E402


def record_machine(results, snapshot, kexec_argv, shim=None):
    fdt = os.path.join(snapshot, "sys", "firmware", "fdt")
    os.makedirs(os.path.dirname(fdt), exist_ok=True)
    shutil.copyfile("/sys/firmware/fdt", fdt)
    if not kexec_argv:
        return
    if shim:
        out = os.path.join(snapshot, "oracle", "shim")
        os.makedirs(out)
        env = dict(os.environ, LD_PRELOAD=shim, PYKEXEC_SHIM_OUT=out)
        proc = subprocess.run(kexec_argv, capture_output=True, timeout=300, env=env)
        with open(os.path.join(out, "kexec.json"), "w") as f:
            json.dump({"argv": kexec_argv, "exit": proc.returncode,
                       "stderr": proc.stderr.decode("utf-8", "replace")}, f, indent=1)
            f.write("\n")
    proc = subprocess.run(kexec_argv, capture_output=True, timeout=300)
    record = {"argv": kexec_argv, "exit": proc.returncode,
              "stdout": proc.stdout.decode("utf-8", "replace"),
              "stderr": proc.stderr.decode("utf-8", "replace"),
              "kexec_crash_loaded": stage1.read_text("/sys/kernel/kexec_crash_loaded")}
    os.makedirs(os.path.join(snapshot, "oracle"), exist_ok=True)
    with open(os.path.join(snapshot, "oracle", "kexec-p-d.json"), "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    subprocess.run([kexec_argv[0], "-p", "-u"], capture_output=True, timeout=60)


def main(results):
    with open(os.path.join(results, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("reboot"):
        return reboot_cycle(results, cfg["reboot"])
    rc = stage1.main(results)
    snapshot = os.path.join(results, "snapshot")
    if rc == 0 and cfg.get("take_snapshot") and os.path.isdir(snapshot):
        try:
            record_machine(results, snapshot, cfg.get("record_kexec_argv"), cfg.get("record_shim"))
        except Exception as e:
            with open(os.path.join(results, "stage1-arm64-error.txt"), "w") as f:
                f.write(f"{type(e).__name__}: {e}\n")
            return 5
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
