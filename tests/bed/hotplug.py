"""CPU and memory hot-add in a running bed guest, through the QEMU monitor (QMP).

`run_hotplug_cycle(cfg, plan)` runs a kdump cycle (tests/bed/qemu.py) whose guest starts
with `-smp CPUS,maxcpus=MAXCPUS` and `-m MEM,slots=SLOTS,maxmem=MAXMEM` and a QMP socket.
After the crash load, stage 1 (tests/bed/guest/hotplug.py) writes results/hotplug-ready
and waits; the host then hot-adds `plan.cpus` CPUs (`device_add` of the CPU type and
socket/core/thread ids `query-hotpluggable-cpus` offers) and `plan.dimms` DIMMs
(`object-add memory-backend-ram` + `device_add pc-dimm`), reads back where QEMU put each
DIMM (`query-memory-devices`), and writes results/hotplug-done with that; the guest onlines
what came and panics. Nothing reloads the crash kernel in between.

CPUs: a 6.12 kernel counts QEMU's disabled MADT LAPIC entries as hot-pluggable CPUs only
when it knows it runs under a hypervisor (the "Enabled=0 means usable for hotplug" reading
is allowed for guests only, since the x86 topology rework); on bare metal, and to it a TCG
guest is bare metal, it says "Allowing 1 present CPUs plus 0 hotplug CPUs" and refuses the
`device_add`ed CPU ("ACPI: Unable to map lapic to logical cpu number"). TCG offers no
CPUID signature Linux knows, but QEMU's pc machine emulates VMware's backdoor port
(vmport), and Linux takes a DMI serial naming VMware plus a backdoor that answers as a
VMware hypervisor when the CPUID hypervisor bit is off. So a guest with room to grow
(`room_argv`, also used for the 6.12 snapshot) runs with `-cpu max,hypervisor=off -smbios
type=1,serial=VMware-...` (`HYPERVISOR_ARGS`): the 6.12 guest then allows `maxcpus` - 1
hotplug CPUs and onlines an added one.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import List, Optional, Tuple

from tests.bed.kernels import BedError
from tests.bed.qemu import CycleConfig, CycleResult, new_run_dir, qemu_argv, run_kdump_cycle


@dataclass(frozen=True)
class HotplugPlan:
    """What the guest may grow to, and what the host adds once the crash kernel is loaded."""

    cpus: int = 0                 # CPUs to hot-add (see above for what the guest needs)
    dimms: Tuple[int, ...] = (128,)   # MiB of each DIMM to hot-add (x86 memory blocks: 128 MiB)
    maxcpus: int = 4
    slots: int = 4
    maxmem_mib: int = 4096


@dataclass
class HotplugReport:
    """What the host added (from QMP) and what the guest saw (stage 1's report)."""

    cpus: List[dict] = field(default_factory=list)    # query-hotpluggable-cpus entries used
    dimms: List[dict] = field(default_factory=list)   # {"id", "addr", "size"} from QEMU
    guest: dict = field(default_factory=dict)         # stage1.json "hotplug"
    crash_sysfs_loaded: dict = field(default_factory=dict)   # right after the load
    errors: List[str] = field(default_factory=list)

    @property
    def crash_hotplug_after(self) -> dict:
        return self.guest.get("after", {}).get("crash_sysfs", {})


# Makes the guest kernel detect a hypervisor (VMware, through QEMU's vmport and the DMI
# serial), so that it keeps QEMU's disabled LAPIC entries as hot-pluggable CPUs.
HYPERVISOR_CPU = "max,hypervisor=off"
HYPERVISOR_ARGS = ("-smbios", "type=1,serial=VMware-pykexec-bed")


def room_argv(plan: HotplugPlan):
    """An argv builder for CycleConfig: the bed's x86 PC with room to grow (DIMM slots, CPU
    slots the guest kernel counts as hot-pluggable)."""
    def build(cfg: CycleConfig, kernel, initrd, results) -> List[str]:
        argv = qemu_argv(cfg, kernel, initrd, results)
        argv[argv.index("-m") + 1] = (f"{cfg.memory_mib},slots={plan.slots},"
                                      f"maxmem={plan.maxmem_mib}M")
        argv[argv.index("-smp") + 1] = f"{cfg.cpus},maxcpus={plan.maxcpus}"
        argv[argv.index("-cpu") + 1] = HYPERVISOR_CPU
        return argv + list(HYPERVISOR_ARGS)
    return build


def hotplug_argv(plan: HotplugPlan, qmp_socket: Path):
    """`room_argv` plus a QMP socket for the hot-add."""
    room = room_argv(plan)

    def build(cfg: CycleConfig, kernel, initrd, results) -> List[str]:
        return room(cfg, kernel, initrd, results) + ["-qmp", f"unix:{qmp_socket},server=on,wait=off"]
    return build


def hot_add(qmp_socket: Path, plan: HotplugPlan, report: HotplugReport) -> dict:
    """Add plan.cpus CPUs and plan.dimms DIMMs through QMP; what was added, for the guest."""
    from qemu.qmp.legacy import QEMUMonitorProtocol
    mon = QEMUMonitorProtocol(str(qmp_socket))
    mon.connect()
    try:
        free = [c for c in mon.cmd("query-hotpluggable-cpus") if "qom-path" not in c]
        if len(free) < plan.cpus:
            raise BedError(f"QEMU offers {len(free)} hotpluggable CPU slots, plan needs {plan.cpus}")
        # lowest socket/core/thread first, so the new CPU gets the next APIC id
        free.sort(key=lambda c: tuple(sorted(c["props"].items())))
        for n, slot in enumerate(free[:plan.cpus]):
            mon.cmd("device_add", driver=slot["type"], id=f"hotcpu{n}", **slot["props"])
            report.cpus.append(slot)
        for n, mib in enumerate(plan.dimms):
            mon.cmd("object-add", **{"qom-type": "memory-backend-ram", "id": f"hotmem{n}",
                                     "size": mib << 20})
            mon.cmd("device_add", driver="pc-dimm", id=f"hotdimm{n}", memdev=f"hotmem{n}")
        for dev in mon.cmd("query-memory-devices"):
            data = dev.get("data", {})
            if str(data.get("id", "")).startswith("hotdimm"):
                report.dimms.append({"id": data["id"], "addr": data["addr"],
                                     "size": data["size"]})
    finally:
        mon.close()
    return {"cpus": [c["props"] for c in report.cpus], "dimms": report.dimms}


def _serve(results: Path, qmp_socket: Path, plan: HotplugPlan, report: HotplugReport,
           stop: threading.Event) -> None:
    """Wait for the guest's hotplug-ready, hot-add, answer with hotplug-done."""
    ready, done = results / "hotplug-ready", results / "hotplug-done"
    while not stop.is_set():
        if ready.exists() and not done.exists():
            try:
                added = hot_add(qmp_socket, plan, report)
            except Exception as err:       # reported; the guest times out and says so
                report.errors.append(f"hot-add: {type(err).__name__}: {err}")
                added = {"cpus": [], "dimms": [], "error": str(err)}
            tmp = results / "hotplug-done.tmp"
            tmp.write_text(json.dumps(added))
            tmp.rename(done)
            return
        stop.wait(0.2)


def run_hotplug_cycle(cfg: CycleConfig, plan: HotplugPlan = HotplugPlan()
                      ) -> Tuple[CycleResult, HotplugReport]:
    """A kdump cycle with a CPU and memory hot-add between the crash load and the panic."""
    run_dir = Path(cfg.run_dir) if cfg.run_dir else new_run_dir(cfg.name)
    run_dir.mkdir(parents=True, exist_ok=True)
    qmp_socket = run_dir / "qmp.sock"
    if len(str(qmp_socket)) > 100:
        raise BedError(f"{qmp_socket}: too long for a unix socket")
    cfg = replace(cfg, run_dir=run_dir, argv_builder=hotplug_argv(plan, qmp_socket),
                  guest_config={**cfg.guest_config, "hotplug": True})
    report = HotplugReport()
    stop = threading.Event()
    server = threading.Thread(target=_serve, args=(run_dir / "results", qmp_socket, plan,
                                                   report, stop), daemon=True)
    server.start()
    try:
        res = run_kdump_cycle(cfg)
    finally:
        stop.set()
        server.join(timeout=30)
    s1 = run_dir / "results" / "stage1.json"
    if s1.exists():
        data = json.loads(s1.read_text())
        report.guest = data.get("hotplug") or {}
        report.crash_sysfs_loaded = data.get("crash_sysfs_loaded") or {}
    return res, report


def pt_load_covering(phdrs: List[dict], start: int, size: int) -> Optional[dict]:
    """The PT_LOAD whose physical range holds all of [start, start + size), or None."""
    for p in phdrs:
        if p["type"] == "PT_LOAD" and p["paddr"] <= start and start + size <= p["paddr"] + p["memsz"]:
            return p
    return None
