"""A hostile user's inputs that issue 9 does not list (its "fresh set" check), as a table.

Each case builds a world (a good synthetic machine, a good bzImage and initrd in a scratch
folder), breaks or twists one thing, and runs `pykexec ... --dry-run --sysroot`, `inspect`
or `snapshot` in a bounded child (tests/fuzz/harness.py). The property is the fuzz
property: exit 0 with a plan that passes tests/bed/plancheck.py, or one stderr line and a
non-zero exit; never a traceback, a hang or a memory blow-up. A few cases also run the real
program as a subprocess (pipes, signals, argv limits).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.bed import synthetic
from tests.bed.fakekernel import FakeKernel, bzimage_bytes, make_initrd
from tests.fuzz import harness

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CASES = {}


def case(fn):
    CASES[fn.__name__[len("case_"):]] = fn
    return fn


class World:
    def __init__(self, d):
        self.dir = d
        self.machine = os.path.join(d, "machine")
        synthetic.make_machine(self.machine, synthetic.PRESETS["qemu_like_1g"])
        self.kernel = os.path.join(d, "bzImage")
        with open(self.kernel, "wb") as f:
            f.write(bzimage_bytes(FakeKernel()))
        self.initrd = make_initrd(os.path.join(d, "initrd.img"), 64 * 1024)

    def path(self, *rel):
        return os.path.join(self.dir, *rel)

    def put(self, rel, data: bytes, machine=True):
        path = os.path.join(self.machine if machine else self.dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def read(self, rel) -> bytes:
        with open(os.path.join(self.machine, rel), "rb") as f:
            return f.read()

    def load(self, *extra, kernel=None):
        return ["-p", kernel or self.kernel, "--initrd", self.initrd, "--append=console=ttyS0",
                *extra]

    def iomem_edit(self, fn):
        self.put("proc/iomem", fn(self.read("proc/iomem").decode()).encode())


# --- argv --------------------------------------------------------------------------------------

@case
def case_kernel_twice(w):
    return ["-p", w.kernel, w.kernel, "--append=x"]


@case
def case_p_repeated_and_options_after_kernel(w):
    return ["-p", "-p", w.kernel, "--initrd", w.initrd, "-p", "--append=x", "--initrd", w.initrd]


@case
def case_double_dash_then_options(w):
    return ["-p", "--append=x", "--", w.kernel, "--initrd", w.initrd]


@case
def case_append_and_command_line_repeated(w):
    return w.load("--append=a", "--command-line=b", "--append=c", "--command-line=", "--append=d")


@case
def case_user_elfcorehdr_and_duplicates(w):
    return ["-p", w.kernel, "--append=elfcorehdr=0x1000 elfcorehdr=4K@0x2000 console=ttyS0"]


@case
def case_append_one_mebibyte(w):
    return ["-p", w.kernel, "--append=" + "a" * (1 << 20)]


@case
def case_ten_thousand_initrd_options(w):
    return ["-p", w.kernel] + ["--initrd=" + w.initrd] * 10000 + ["--append=x"]


@case
def case_prefix_abbreviations(w):
    return ["--load-p", w.kernel, "--ini=" + w.initrd, "--app=x", "--dry"]


@case
def case_empty_sysroot_value(w):
    return ["-p", w.kernel, "--append=x", "--sysroot="]


@case
def case_sysroot_is_a_file(w):
    return ["-p", w.kernel, "--append=x", "--sysroot", w.kernel]


# --- file names and file kinds ---------------------------------------------------------------

@case
def case_kernel_symlink_loop(w):
    loop = w.path("loop")
    os.symlink(loop, loop)
    return ["-p", loop, "--append=x"]


@case
def case_initrd_symlink_loop(w):
    loop = w.path("loop")
    os.symlink(loop, loop)
    return ["-p", w.kernel, "--initrd", loop, "--append=x"]


@case
def case_kernel_name_with_newline(w):
    path = w.path("bz\nImage")
    shutil.copy(w.kernel, path)
    return ["-p", path, "--append=x"]


@case
def case_missing_kernel_name_with_newline(w):
    return ["-p", w.path("no\nsuch"), "--append=x"]


@case
def case_unicode_file_names(w):
    path = w.path("ядро-カーネル.img")
    shutil.copy(w.kernel, path)
    ipath = w.path("initrd-\U0001F4A5.img")
    shutil.copy(w.initrd, ipath)
    return ["-p", path, "--initrd", ipath, "--append=x"]


@case
def case_non_utf8_file_name(w):
    path = os.fsdecode(os.fsencode(w.dir) + b"/k\xff\xfe")
    shutil.copy(w.kernel, path)
    return ["-p", path, "--append=x"]


@case
def case_missing_non_utf8_file_name(w):
    return ["-p", os.fsdecode(os.fsencode(w.dir) + b"/none\xff"), "--append=x"]


@case
def case_kernel_is_also_the_initrd(w):
    return ["-p", w.kernel, "--initrd", w.kernel, "--append=x"]


@case
def case_kernel_is_dev_null(w):
    return ["-p", "/dev/null", "--append=x"]


@case
def case_initrd_is_dev_null(w):
    return ["-p", w.kernel, "--initrd", "/dev/null", "--append=x"]


@case
def case_kernel_is_proc_self_mem(w):
    return ["-p", "/proc/self/mem", "--append=x"]


@case
def case_kernel_is_a_directory_symlink(w):
    link = w.path("dirlink")
    os.symlink(w.machine, link)
    return ["-p", link, "--append=x"]


@case
def case_initrd_is_the_sysroot(w):
    return ["-p", w.kernel, "--initrd", w.machine, "--append=x"]


@case
def case_kernel_without_read_permission(w):
    path = w.path("noread")
    shutil.copy(w.kernel, path)
    os.chmod(path, 0)
    return ["-p", path, "--append=x"]    # root reads it anyway: must still plan correctly


@case
def case_save_plan_into_a_file(w):
    return w.load("--save-plan", w.kernel)


@case
def case_save_plan_into_dev_full(w):
    return w.load("--save-plan", "/dev/full")


@case
def case_svg_into_dev_full(w):
    return w.load("--svg", "/dev/full")


@case
def case_svg_into_missing_folder(w):
    return w.load("--svg", w.path("no", "such", "x.svg"))


@case
def case_save_plan_over_the_kernel_folder(w):
    return w.load("--save-plan", w.machine)


# --- machine files ---------------------------------------------------------------------------

@case
def case_iomem_crlf(w):
    w.iomem_edit(lambda t: t.replace("\n", "\r\n"))
    return w.load()


@case
def case_iomem_nul_inside_a_name(w):
    w.iomem_edit(lambda t: t.replace("Crash kernel", "Crash\0kernel"))
    return w.load()


@case
def case_iomem_nul_after_last_line(w):
    w.iomem_edit(lambda t: t + "\0" * 64)
    return w.load()


@case
def case_iomem_tabs_for_indentation(w):
    w.iomem_edit(lambda t: t.replace("  ", "\t"))
    return w.load()


@case
def case_iomem_uppercase_hex(w):
    w.iomem_edit(lambda t: "\n".join(l.upper() if "Crash" in l else l for l in t.splitlines()) + "\n")
    return w.load()


@case
def case_crash_region_of_size_zero(w):
    def edit(t):
        out = []
        for line in t.splitlines():
            if "Crash kernel" in line:
                start = line.split("-")[0].strip()
                line = f"  {start}-{int(start, 16) - 1:08x} : Crash kernel"
            out.append(line)
        return "\n".join(out) + "\n"
    w.iomem_edit(edit)
    return w.load()


@case
def case_crash_region_of_one_page(w):
    def edit(t):
        out = []
        for line in t.splitlines():
            if "Crash kernel" in line:
                start = line.split("-")[0].strip()
                line = f"  {start}-{int(start, 16) + 0xFFF:08x} : Crash kernel"
            out.append(line)
        return "\n".join(out) + "\n"
    w.iomem_edit(edit)
    return w.load()


@case
def case_crash_region_not_page_aligned(w):
    def edit(t):
        out = []
        for line in t.splitlines():
            if "Crash kernel" in line:
                start, rest = line.strip().split("-", 1)
                line = f"  {int(start, 16) + 0x800:08x}-{rest}"
            out.append(line)
        return "\n".join(out) + "\n"
    w.iomem_edit(edit)
    return w.load()


@case
def case_crash_region_at_top_level(w):
    w.iomem_edit(lambda t: "\n".join(l.strip() if "Crash kernel" in l else l
                                      for l in t.splitlines()) + "\n")
    return w.load()


@case
def case_two_overlapping_crash_regions(w):
    def edit(t):
        out = []
        for line in t.splitlines():
            out.append(line)
            if "Crash kernel" in line:
                start, rest = line.strip().split("-", 1)
                out.append(f"  {int(start, 16) + (64 << 20):08x}-{rest}")
        return "\n".join(out) + "\n"
    w.iomem_edit(edit)
    return w.load()


@case
def case_one_page_of_ram(w):
    w.put("proc/iomem", b"00000000-00000fff : Reserved\n00001000-00001fff : System RAM\n"
                        b"  00001000-00001fff : Crash kernel\n")
    for i in range(20):
        shutil.rmtree(os.path.join(w.machine, f"sys/firmware/memmap/{i}"), ignore_errors=True)
    return w.load()


@case
def case_ram_beyond_52_bits(w):
    w.iomem_edit(lambda t: t + "fff0000000000000-fff00000ffffffff : System RAM\n")
    return w.load()


@case
def case_negative_crash_notes_size(w):
    w.put("sys/devices/system/cpu/cpu1/crash_notes_size", b"-368\n")
    return w.load()


@case
def case_huge_crash_notes_size(w):
    w.put("sys/devices/system/cpu/cpu0/crash_notes_size", b"18446744073709551615\n")
    return w.load()


@case
def case_negative_kexec_crash_size(w):
    w.put("sys/kernel/kexec_crash_size", b"-268435456\n")
    return w.load()


@case
def case_crash_notes_for_a_cpu_not_possible(w):
    w.put("sys/devices/system/cpu/cpu7/crash_notes", b"3fc00000\n")
    w.put("sys/devices/system/cpu/cpu7/crash_notes_size", b"368\n")
    return w.load()


@case
def case_crash_notes_inside_the_crash_region(w):
    start = next(l for l in w.read("proc/iomem").decode().splitlines() if "Crash" in l)
    addr = int(start.strip().split("-")[0], 16) + 0x1000
    w.put("sys/devices/system/cpu/cpu1/crash_notes", f"{addr:x}\n".encode())
    return w.load()


@case
def case_two_cpus_share_one_note(w):
    w.put("sys/devices/system/cpu/cpu1/crash_notes", w.read("sys/devices/system/cpu/cpu0/crash_notes"))
    return w.load()


@case
def case_vmcoreinfo_with_0x_and_three_fields(w):
    w.put("sys/kernel/vmcoreinfo", b"0x2c6b000 0x1024 7\n")
    return w.load()


@case
def case_vmcoreinfo_size_zero(w):
    w.put("sys/kernel/vmcoreinfo", b"2c6b000 0\n")
    return w.load()


@case
def case_cpu_lists_with_crlf_and_nul(w):
    w.put("sys/devices/system/cpu/possible", b"0-1\r\n\0")
    w.put("sys/devices/system/cpu/online", b"0-1\r\n")
    return w.load()


@case
def case_possible_empty(w):
    w.put("sys/devices/system/cpu/possible", b"\n")
    return w.load()


@case
def case_boot_params_truncated(w):
    w.put("sys/kernel/boot_params/data", w.read("sys/kernel/boot_params/data")[:100])
    return w.load()


@case
def case_boot_params_huge(w):
    w.put("sys/kernel/boot_params/data", w.read("sys/kernel/boot_params/data") + bytes(1 << 24))
    return w.load()


@case
def case_memmap_entry_is_a_file(w):
    shutil.rmtree(os.path.join(w.machine, "sys/firmware/memmap/3"))
    w.put("sys/firmware/memmap/3", b"0x0\n")
    return w.load()


@case
def case_memmap_start_after_end_for_ram(w):
    w.put("sys/firmware/memmap/0/start", b"0xfffff\n")
    w.put("sys/firmware/memmap/0/end", b"0x1000\n")
    return w.load()


@case
def case_proc_cmdline_for_reuse_has_elfcorehdr_and_nul(w):
    w.put("proc/cmdline", b"root=/dev/vda elfcorehdr=0x1000 crashkernel=256M\0 BOOT_IMAGE=/x\r\n")
    return ["-p", w.kernel, "--reuse-cmdline"]


@case
def case_proc_cmdline_huge(w):
    w.put("proc/cmdline", b"a" * (1 << 22) + b"\n")
    return ["-p", w.kernel, "--reuse-cmdline"]


@case
def case_kallsyms_huge_line(w):
    w.put("proc/kallsyms", b"ffffffff81000000 T " + b"x" * (1 << 22) + b"\n")
    return w.load()


@case
def case_kcore_is_a_directory(w):
    os.unlink(os.path.join(w.machine, "proc/kcore"))
    os.makedirs(os.path.join(w.machine, "proc/kcore"))
    return w.load()


@case
def case_iomem_symlink_loop(w):
    path = os.path.join(w.machine, "proc/iomem")
    os.unlink(path)
    os.symlink(path, path)
    return w.load()


@case
def case_snapshot_json_machine_is_unknown(w):
    w.put("snapshot.json", b'{"format": 1, "machine": "riscv64"}')
    return w.load()


@case
def case_snapshot_json_is_not_json(w):
    w.put("snapshot.json", b"\xff\xfe{")
    return w.load()


# --- inspect and snapshot --------------------------------------------------------------------

@case
def case_inspect_symlink_loop(w):
    loop = w.path("loop")
    os.symlink(loop, loop)
    return ["inspect", loop]


@case
def case_inspect_dev_null(w):
    return ["inspect", "/dev/null"]


@case
def case_inspect_a_machine_folder(w):
    return ["inspect", w.machine]


@case
def case_inspect_name_with_newline(w):
    path = w.path("a\nb")
    shutil.copy(w.kernel, path)
    return ["inspect", path]


@case
def case_inspect_proc_kcore_of_snapshot(w):
    return ["inspect", os.path.join(w.machine, "proc/kcore")]


@case
def case_inspect_boot_params_data(w):
    return ["inspect", os.path.join(w.machine, "sys/kernel/boot_params/data")]


@case
def case_snapshot_of_itself(w):
    return ["snapshot", os.path.join(w.machine, "copy"), "--sysroot", w.machine]


@case
def case_snapshot_dest_with_newline(w):
    return ["snapshot", w.path("snap\nshot"), "--sysroot", w.machine]


@case
def case_snapshot_dest_is_dangling_symlink(w):
    link = w.path("dangling")
    os.symlink(w.path("nowhere", "deeper"), link)
    return ["snapshot", link, "--sysroot", w.machine]


@case
def case_snapshot_sysroot_symlink_loop(w):
    loop = w.path("loop")
    os.symlink(loop, loop)
    return ["snapshot", w.path("snap"), "--sysroot", loop]


@case
def case_snapshot_with_unreadable_optional_dir(w):
    os.makedirs(os.path.join(w.machine, "sys/firmware/edd/int13_dev80"), exist_ok=True)
    w.put("sys/firmware/edd/int13_dev80/mbr_signature", b"\xff\xff\n")
    return ["snapshot", w.path("snap"), "--sysroot", w.machine]


def _run_case(name):
    with tempfile.TemporaryDirectory(prefix="pykexec-sweep-", dir=harness.SCRATCH) as d:
        w = World(d)
        argv = CASES[name](w)
        if argv[0] in ("inspect", "snapshot"):
            out = harness.run_main(argv)
            harness.judge_command(out)
            return out.code, out.err
        if "--sysroot" not in argv and not any(a.startswith("--sysroot=") for a in argv):
            argv += ["--sysroot", w.machine]
        plan = w.path("plan")
        argv += ["--dry-run", "-c"]
        out = harness.run_cli(argv, plan_dir=None if "--save-plan" in argv else plan)
        initrd = None
        if "--initrd" in argv and os.path.isfile(argv[argv.index("--initrd") + 1]):
            with open(argv[argv.index("--initrd") + 1], "rb") as f:
                initrd = f.read()
        if out.code == 0 and os.path.exists(os.path.join(plan, "plan.json")):
            with open(w.kernel, "rb") as f:
                kernel = f.read()
            harness.judge(out, w.machine, kernel if argv[1] == w.kernel else None, initrd)
        else:
            harness.judge_command(out)
        return out.code, out.err


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input(name):
    harness.in_child(_run_case, name, seconds=60, what=name)


def _subprocess(w, argv, shell_tail):
    cmd = " ".join("'" + a.replace("'", "'\\''") + "'" for a in
                   [sys.executable, "-m", "pykexec", *argv]) + shell_tail
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=ROOT))


def test_stdout_closed():
    """`pykexec --dry-run ... >&-`: the report cannot be written; one line, no traceback."""
    with tempfile.TemporaryDirectory(prefix="pykexec-sweep-", dir=harness.SCRATCH) as d:
        w = World(d)
        proc = _subprocess(w, w.load("--sysroot", w.machine, "--dry-run"), " >&-")
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_stderr_closed_on_a_refusal():
    """A refusal with stderr closed: a non-zero exit and no crash of the error path itself."""
    with tempfile.TemporaryDirectory(prefix="pykexec-sweep-", dir=harness.SCRATCH) as d:
        w = World(d)
        proc = _subprocess(w, ["-p", w.path("none"), "--sysroot", w.machine, "--dry-run"],
                           " 2>&- ; echo status=$?")
        assert "status=1" in proc.stdout or "status=255" in proc.stdout, proc.stdout
