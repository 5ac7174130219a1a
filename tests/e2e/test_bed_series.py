"""The bed's second kernel series, private apt state, kexec-tools build and hotplug harness.

Synthetic inputs run anywhere (no download, no QEMU); the real 6.12 kernel is e2e.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tests.bed import initramfs, kernels
from tests.bed.aptstate import BedApt
from tests.bed.hotplug import HotplugPlan, hotplug_argv, pt_load_covering
from tests.bed.kernels import BedError, Kernel, extract_vmlinux
from tests.bed.kexec_tools import KexecTools, _checked
from tests.bed.qemu import CycleConfig
from tests.conftest import require
from tests.e2e.test_bed import FAKE_ELF, fake_bzimage

# --- zstd payloads (the 6.12 kernel's) -----------------------------------------------------


def test_extract_vmlinux_from_zstd_payload_with_size_appended():
    require(shutil.which("zstd") is not None, "zstd not installed")
    z = subprocess.run(["zstd", "-19", "-c"], input=FAKE_ELF, capture_output=True, check=True).stdout
    # as the kernel build does: the uncompressed size follows the stream
    assert extract_vmlinux(fake_bzimage(z + struct.pack("<I", len(FAKE_ELF)))) == FAKE_ELF


# --- series ----------------------------------------------------------------------------------


def _ready(folder: Path, *fields: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "READY").write_text("\n".join(fields) + "\n")
    return folder


def test_unknown_series_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("PYKEXEC_BED_CACHE", str(tmp_path))
    with pytest.raises(BedError, match="kernel series 'bpo'"):
        kernels.get_kernel(series="bpo")


def test_cached_kernels_are_told_apart_by_series(tmp_path):
    # a folder from before the series existed (3 fields) is bookworm's own kernel
    old = _ready(tmp_path / "linux-image-6.1.0-50-amd64_6.1.176-1",
                 "linux-image-6.1.0-50-amd64", "6.1.176-1", "6.1.0-50-amd64")
    new = _ready(tmp_path / "linux-image-6.12.95+deb12-amd64_6.12.95-1~bpo12+1",
                 "linux-image-6.12.95+deb12-amd64", "6.12.95-1~bpo12+1", "6.12.95+deb12-amd64",
                 "backports")
    assert kernels._load_ready(old).series == "6.1"
    assert kernels._load_ready(new).series == "backports"
    # "6.12..." sorts after "6.1.0...": without the series an offline 6.1 run took 6.12
    assert kernels._cached_kernels(tmp_path, "6.1") == [old]
    assert kernels._cached_kernels(tmp_path, "backports") == [new]


def test_offline_backports_uses_the_cached_backports_kernel(tmp_path, monkeypatch):
    monkeypatch.setenv("PYKEXEC_BED_CACHE", str(tmp_path))
    base = tmp_path / "x86_64"
    _ready(base / "linux-image-6.1.0-50-amd64_6.1.176-1",
           "linux-image-6.1.0-50-amd64", "6.1.176-1", "6.1.0-50-amd64")
    _ready(base / "linux-image-6.12.95+deb12-amd64_6.12.95-1~bpo12+1",
           "linux-image-6.12.95+deb12-amd64", "6.12.95-1~bpo12+1", "6.12.95+deb12-amd64",
           "backports")

    def offline(*args, **kw):
        raise BedError("apt-cache: offline")
    monkeypatch.setattr(kernels, "resolve_package", offline)
    assert kernels.get_kernel(series="backports").release == "6.12.95+deb12-amd64"
    assert kernels.get_kernel(series="6.1").release == "6.1.0-50-amd64"


# --- private apt state -----------------------------------------------------------------------


def test_apt_options_name_only_the_private_state(tmp_path):
    apt = BedApt(tmp_path / "apt")
    opts = " ".join(apt.options)
    assert f"Dir::Etc::SourceList={tmp_path}/apt/sources.list" in opts
    assert "Dir::Etc::SourceParts=/dev/null" in opts          # not /etc/apt/sources.list.d
    assert f"Dir::State::Lists={tmp_path}/apt/lists" in opts
    assert f"Dir::Cache={tmp_path}/apt/cache" in opts
    assert "/etc/apt" not in opts


def test_source_versions_reads_each_stanza_of_the_package(tmp_path, monkeypatch):
    apt = BedApt(tmp_path)
    listing = ("Package: kexec-tools\nVersion: 1:2.0.29-2\n\n"
               "Package: kexec-tools-extra\nVersion: 9.9\n\n"
               "Package: kexec-tools\nVersion: 1:2.0.32-3\n")
    monkeypatch.setattr(apt, "cache", lambda *args: listing)
    assert apt.source_versions("kexec-tools") == ["1:2.0.29-2", "1:2.0.32-3"]


def test_download_source_falls_back_to_the_next_suite(tmp_path, monkeypatch):
    apt = BedApt(tmp_path)
    tried = []

    def get(*args, cwd):
        tried.append(args[-1])
        if args[-1].endswith("/sid"):
            (cwd / "kexec-tools_2.0.32.orig.tar.xz").write_bytes(b"partial")
            raise BedError("apt-get source failed (100): E: Failed to fetch ... 404  Not Found")
        (cwd / "kexec-tools_2.0.29-2.dsc").write_text("Version: 1:2.0.29-2\n")
        return ""
    monkeypatch.setattr(apt, "get", get)
    assert apt.download_source("kexec-tools", ("sid", "trixie"), tmp_path) == "trixie"
    assert tried == ["kexec-tools/sid", "kexec-tools/trixie"]
    # what the failed suite left is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kexec-tools_2.0.29-2.dsc"]


def test_download_source_names_every_suite_when_none_serves_it(tmp_path, monkeypatch):
    apt = BedApt(tmp_path)

    def get(*args, cwd):
        raise BedError(f"failed\nE: {args[-1]} 404")
    monkeypatch.setattr(apt, "get", get)
    with pytest.raises(BedError, match=r"no complete kexec-tools source package in sid, trixie: "
                                       r"sid: E: kexec-tools/sid 404; trixie: "):
        apt.download_source("kexec-tools", ("sid", "trixie"), tmp_path)


# --- kexec-tools version floor ---------------------------------------------------------------


def test_kexec_tools_older_than_2_0_28_is_refused(tmp_path):
    def tools(v):
        return KexecTools(version=v, debian_version=f"1:{v}-1", suite="x", folder=tmp_path)
    assert _checked(tools("2.0.28")).version == "2.0.28"
    assert _checked(tools("2.0.32")).version_tuple == (2, 0, 32)
    with pytest.raises(BedError, match=r"kexec-tools 2.0.27 from x: the bed needs 2.0.28\+"):
        _checked(tools("2.0.27"))


# --- initramfs modules per kernel ------------------------------------------------------------


def _kernel_with_modules(tmp_path, builtin, shipped) -> Kernel:
    k = Kernel(package="linux-image-x", version="1", release="9.9.9-amd64", folder=tmp_path)
    k.modules_dir.mkdir(parents=True)
    (k.modules_dir / "modules.builtin").write_text("".join(f"kernel/x/{m}.ko\n" for m in builtin))
    for name, subdir in initramfs.MODULES:
        if name in shipped:
            (k.modules_dir / subdir).mkdir(parents=True, exist_ok=True)
            (k.modules_dir / subdir / f"{name}.ko.xz").write_bytes(b"")
    return k


def test_built_in_and_merged_modules_are_left_out(tmp_path):
    virtio = [n for n, _ in initramfs.MODULES if n.startswith("virtio")]
    k = _kernel_with_modules(tmp_path, builtin=virtio, shipped={"9pnet", "9pnet_virtio", "netfs", "9p"})
    assert [n for n, _ in initramfs.bed_modules(k)] == ["9pnet", "9pnet_virtio", "netfs", "9p"]


def test_a_missing_module_that_was_not_merged_away_stays_and_fails(tmp_path):
    k = _kernel_with_modules(tmp_path, builtin=[], shipped={"netfs"})
    names = [n for n, _ in initramfs.bed_modules(k)]
    assert "9p" in names and "fscache" not in names
    with pytest.raises(BedError, match="9p.ko not found"):
        initramfs._module_bytes(k, "9p", "kernel/fs/9p")


def test_load_order_puts_dependencies_first(monkeypatch):
    deps = {"9pnet": ["netfs"], "9pnet_virtio": ["9pnet"], "9p": ["9pnet", "netfs"],
            "netfs": [], "virtio": ["virtio_ring"], "virtio_ring": []}
    monkeypatch.setattr(initramfs, "module_depends", lambda blob: deps[blob.decode()])
    mods = [(n, "d", n.encode()) for n in ("virtio_ring", "virtio", "9pnet", "9pnet_virtio",
                                           "netfs", "9p")]
    # otherwise the preferred (given) order is kept
    assert [m[0] for m in initramfs.load_order(mods)] == \
        ["virtio_ring", "virtio", "netfs", "9pnet", "9pnet_virtio", "9p"]
    deps["netfs"] = ["9p"]
    with pytest.raises(BedError, match="dependency cycle"):
        initramfs.load_order(mods)


# --- hotplug harness -------------------------------------------------------------------------


def test_hotplug_argv_gives_room_to_grow_and_a_monitor(tmp_path):
    build = hotplug_argv(HotplugPlan(maxcpus=4, slots=4, maxmem_mib=4096), tmp_path / "q.sock")
    k = Kernel(package="p", version="v", release="r", folder=tmp_path)
    argv = build(CycleConfig(loader_argv=None, memory_mib=1024, cpus=1), k, tmp_path / "i",
                 tmp_path / "results")
    assert argv[argv.index("-m") + 1] == "1024,slots=4,maxmem=4096M"
    assert argv[argv.index("-smp") + 1] == "1,maxcpus=4"
    assert argv[-2:] == ["-qmp", f"unix:{tmp_path}/q.sock,server=on,wait=off"]


def test_pt_load_covering_needs_the_whole_range():
    phdrs = [{"type": "PT_NOTE", "paddr": 0, "memsz": 1 << 40},
             {"type": "PT_LOAD", "paddr": 0x100000, "memsz": 0x2ef00000},
             {"type": "PT_LOAD", "paddr": 0x100000000, "memsz": 0x8000000}]
    assert pt_load_covering(phdrs, 0x100000000, 0x8000000) is phdrs[2]
    assert pt_load_covering(phdrs, 0x100000000, 0x8001000) is None   # one page past
    assert pt_load_covering(phdrs, 0x0, 0x1000) is None              # only a PT_NOTE there


# --- the real backports kernel (downloads it) ----------------------------------------------------


@pytest.mark.e2e
def test_backports_kernel_has_crash_hotplug():
    try:
        k = kernels.get_kernel(series="backports")
    except BedError as err:
        require(False, f"backports kernel not available: {err}")
    assert k.series == "backports" and not k.release.startswith("6.1.0-")
    config = k.config.read_text()
    for option in ("CONFIG_CRASH_HOTPLUG=y", "CONFIG_KEXEC=y", "CONFIG_CRASH_DUMP=y",
                   "CONFIG_MEMORY_HOTPLUG=y"):
        assert option in config.splitlines(), option
    assert k.vmlinux.read_bytes()[:4] == b"\x7fELF"
    names = [n for n, _ in initramfs.bed_modules(k)]
    order = initramfs.get_initramfs(k)       # built: every module found, order resolved
    assert order.exists() and "9p" in names
