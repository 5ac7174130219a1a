"""The architecture seam (pykexec.arch): every registered architecture satisfies the
declared interfaces, the registry finds it by what generic code has in hand, an unknown
machine is refused in one line, and an architecture registered from outside (a test's own,
below) plans through the unchanged generic pipeline: the command line, the registry, the
plan views."""

from __future__ import annotations

import io
import json
import os
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from pykexec import arch as registry
from pykexec.arch.interfaces import Arch, CrashElfInfo, ImageFormat
from pykexec.cli import run
from pykexec.core.plan import Plan, Segment
from pykexec.errors import LoadError
from pykexec.request import Option, OptionTable, UsageError
from pykexec.machine import Machine
from pykexec.arch import parse_args

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
X86_64_MACHINE = EXAMPLES / "qemu-x86_64-1g-1cpu"
ARCH_ATTRIBUTES = ("name", "machine_names", "kexec_arch", "elf_machine", "syscall_numbers",
                   "compat_syscall_numbers", "options")
ARCH_METHODS = ("formats", "plan_load", "crash_elf_info", "user_cmdline", "option_refusal",
                "file_load_refusal")


def test_every_registered_arch_satisfies_the_protocol():
    arches = registry.registered()
    assert {a.name for a in arches} == {"x86_64", "i386", "arm64"}
    for arch in arches:
        assert isinstance(arch, Arch), arch
        for attr in ARCH_ATTRIBUTES:
            assert hasattr(arch, attr), (arch, attr)
        for method in ARCH_METHODS:
            assert callable(getattr(arch, method)), (arch, method)
        assert arch.name in ("x86_64", "i386", "arm64") and arch.machine_names
        for name in arch.machine_names:
            assert registry.arch_for(name) is arch
        load_nr, file_nr = arch.syscall_numbers
        assert load_nr > 0 and (file_nr is None or file_nr > 0)
        # the table the registry reads without importing the Arch is the Arch's own
        assert any(arch.options is table for table in registry.option_tables())


def test_every_format_satisfies_image_format_and_probes_garbage_with_a_reason():
    for arch in registry.registered():
        formats = arch.formats()
        assert len(formats) >= 2
        assert len({f.NAME for f in formats}) == len(formats)
        for fmt in formats:
            assert isinstance(fmt, ImageFormat), fmt
            why = fmt.probe(b"\0" * 4096)
            assert isinstance(why, str) and why


@pytest.mark.parametrize("uname,name,e_machine,kexec_arch", [
    ("x86_64", "x86_64", 62, 62 << 16),
    ("i386", "i386", 3, 0),
    ("i686", "i386", 3, 0),
    ("aarch64", "arm64", 183, 183 << 16),
])
def test_registry_lookups(uname, name, e_machine, kexec_arch):
    arch = registry.arch_for(uname)
    assert arch.name == name and arch.kexec_arch == kexec_arch
    assert registry.by_name(name) is arch
    assert registry.by_elf_machine(e_machine) is arch


def test_unknown_lookups_are_none_or_one_line():
    assert registry.find_machine("sparc64") is None
    assert registry.by_name("sparc") is None and registry.by_elf_machine(43) is None
    with pytest.raises(LoadError) as err:
        registry.arch_for("sparc64")
    assert "\n" not in str(err.value) and "sparc64" in str(err.value)


def machine_folder(tmp_path: Path, machine_name: str) -> Path:
    """An x86_64 example machine that says it is `machine_name` (no kcore to contradict)."""
    root = tmp_path / "m"
    shutil.copytree(X86_64_MACHINE, root)
    (root / "proc" / "kcore").unlink()
    info = json.loads((root / "snapshot.json").read_text())
    info["machine"] = machine_name
    (root / "snapshot.json").write_text(json.dumps(info))
    return root


def cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = run(argv)
    return status, out.getvalue(), err.getvalue()


def test_an_unknown_machine_is_refused_in_one_line(tmp_path):
    kernel = tmp_path / "k"
    kernel.write_bytes(b"\0" * 4096)
    status, _, err = cli(["-l", "-c", str(kernel), "--sysroot",
                          str(machine_folder(tmp_path, "sparc64")), "--dry-run"])
    assert status == 255
    assert err.count("\n") == 1 and "no loader for sparc64 machines" in err


# --- a tiny architecture of the test's own -------------------------------------------------

FAKE_MAGIC = b"FAKEKRNL"
FAKE_LOAD_ADDR = 0x200000


class FakeFormat:
    """A kernel file that starts with FAKE_MAGIC, loaded whole at a fixed address."""

    NAME = "fake-image"

    def probe(self, kernel: bytes):
        return None if kernel.startswith(FAKE_MAGIC) else "no FAKEKRNL magic"

    def load(self, inputs) -> Plan:
        request, kernel, cmdline = inputs
        return Plan(arch="fakearch", syscall="kexec_load",
                    flags=request.kexec_flags | FakeArch.kexec_arch,
                    entry=FAKE_LOAD_ADDR + len(FAKE_MAGIC), cmdline=cmdline,
                    segments=(Segment(FAKE_LOAD_ADDR, 0x1000, kernel, "kernel", request.kernel),),
                    notes={"format": self.NAME})


class FakeArch:
    name = "fakearch"
    machine_names = ("fake64",)
    kexec_arch = 0x7E << 16
    elf_machine = 0x7E7E
    syscall_numbers = (1000, None)
    compat_syscall_numbers = None
    options = OptionTable(
        (Option("fake-banner", True, "a word the fake kernel's command line starts with",
                "fakearch", "WORD"),),
        values={"fake-banner": lambda word: word.upper()},
        needs_kernel=("fake-banner",))

    def formats(self):
        return (FakeFormat(),)

    def plan_load(self, request, machine, random_bytes=os.urandom) -> Plan:
        with open(request.kernel, "rb") as f:
            kernel = f.read()
        fmt = next((f for f in self.formats() if f.probe(kernel) is None), None)
        if fmt is None:
            raise LoadError(f"{request.kernel}: not a fakearch kernel")
        return fmt.load((request, kernel, self.user_cmdline(request, machine)))

    def crash_elf_info(self, machine, request) -> CrashElfInfo:
        return CrashElfInfo(elf_class=2, elf_machine=self.elf_machine, page_offset=0,
                            kernel_text=None, lowmem_limit=None)

    def user_cmdline(self, request, machine) -> str:
        banner = dict(request.arch_options).get("fake-banner")
        return " ".join(w for w in ("fake", banner, request.append) if w)

    def option_refusal(self, request):
        return None

    def file_load_refusal(self, kernel: bytes):
        return None


@pytest.fixture
def fake_arch():
    arch = FakeArch()
    registry.register(arch.machine_names, arch)
    try:
        yield arch
    finally:
        registry.unregister(arch.machine_names)


def test_the_fake_arch_satisfies_the_protocol_and_is_found(fake_arch):
    assert isinstance(fake_arch, Arch) and isinstance(FakeFormat(), ImageFormat)
    assert registry.arch_for("fake64") is fake_arch
    assert registry.by_name("fakearch") is fake_arch
    assert registry.by_elf_machine(0x7E7E) is fake_arch
    assert registry.syscall_numbers("fake64", process_32bit=True) == (1000, None)


def test_a_registered_arch_plans_through_the_generic_pipeline(fake_arch, tmp_path):
    kernel = tmp_path / "k"
    kernel.write_bytes(FAKE_MAGIC + b"payload")
    root = machine_folder(tmp_path, "fake64")
    plan = registry.plan_load(parse_args(["-l", str(kernel), "--append=x"]),
                              Machine.read(str(root)))
    assert plan.arch == "fakearch" and plan.cmdline == "fake x"
    assert plan.segments[0].mem == FAKE_LOAD_ADDR
    # the whole command line: -c (kexec_load only), a dry run, the plan saved and shown
    saved = tmp_path / "plan"
    status, out, err = cli(["-l", "-c", str(kernel), "--append=y", "--sysroot", str(root),
                            "--dry-run", "--json", "--save-plan", str(saved)])
    assert status == 0, err
    shown = json.loads(out)
    assert shown["arch"] == "fakearch" and shown["cmdline"] == "fake y"
    assert shown["flags"] == 0x7E << 16
    assert (saved / "plan.json").exists()
    # and the format's probe is what refuses another file
    kernel.write_bytes(b"not a fake kernel")
    status, _, err = cli(["-l", "-c", str(kernel), "--sysroot", str(root), "--dry-run"])
    assert status == 255 and "not a fakearch kernel" in err and err.count("\n") == 1


def test_a_registered_arch_brings_its_options(fake_arch, tmp_path):
    """Its table joins the command line: -h lists it after x86's groups and before
    pykexec's own, the walk makes its value in argv order (the last one wins when the arch
    folds them), a load reads it, and it needs a kernel as a loader option does."""
    help_text = registry.usage_text("kexec")
    fake_at = help_text.index(" Fakearch options:\n      --fake-banner=WORD")
    assert help_text.index("--dtb=FILE") < fake_at < help_text.index(" Pykexec's own options:")
    request = registry.parse_args(["-l", "K", "--fake-banner=one", "--serial=ttyS1",
                                   "--fake-b", "two"])
    # --serial is declared by x86 and arm64: kept as given, for the machine's arch to read
    assert request.arch_options == (("fake-banner", "ONE"), ("serial", "ttyS1"),
                                    ("fake-banner", "TWO"))
    kernel = tmp_path / "k"
    kernel.write_bytes(FAKE_MAGIC + b"payload")
    status, out, err = cli(["-l", "-c", str(kernel), "--fake-banner=hi", "--append=y",
                            "--sysroot", str(machine_folder(tmp_path, "fake64")),
                            "--dry-run", "--json"])
    assert status == 0, err
    assert json.loads(out)["cmdline"] == "fake HI y"
    with pytest.raises(UsageError, match="--fake-banner needs a kernel"):
        registry.parse_args(["-u", "--fake-banner=x"])


def test_an_unregistered_arch_leaves_no_option_behind():
    arch = FakeArch()
    registry.register(arch.machine_names, arch)
    registry.unregister(arch.machine_names)
    assert "fake-banner" not in registry.usage_text("kexec")
    with pytest.raises(UsageError, match="fake-banner"):
        registry.parse_args(["-l", "K", "--fake-banner=x"])


def test_syscalls_come_from_the_registry(monkeypatch):
    from pykexec.host import syscall
    monkeypatch.setattr(syscall, "process_is_32bit", lambda: False)
    assert syscall.syscall_numbers("x86_64") == registry.arch_for("x86_64").syscall_numbers
    # a machine with no loader yet still has its syscalls (kexec_file_load needs no plan)
    assert syscall.syscall_numbers("aarch64") == (104, 294)
    with pytest.raises(syscall.KexecError, match="unsupported machine type sparc64"):
        syscall.syscall_numbers("sparc64")
    monkeypatch.setattr(os, "uname", lambda: os.uname_result(("Linux", "h", "6.1", "#1", "sparc64")))
    with pytest.raises(syscall.KexecError, match="Unsupported machine type: sparc64"):
        syscall.arch_flag()


def test_file_load_refusal_is_the_archs():
    arch = registry.arch_for("x86_64")
    why = arch.file_load_refusal(b"\0" * 4096)
    assert why is not None and "64-bit entry" in why and "\n" not in why
