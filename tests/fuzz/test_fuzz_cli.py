"""The whole command line on generated machines, kernels, initrds and options.

Property (issue 9): `pykexec -p ...` either exits 0 with a plan that passes the independent
checker (tests/bed/plancheck.py) and is exactly what the syscall got, or exits non-zero with
exactly one stderr line, no traceback, no internal error and nothing loaded; always within
the time and memory bounds of tests/fuzz/harness.py.
"""

from __future__ import annotations

import os
import tempfile

from hypothesis import event, given, strategies as st

from tests.bed import synthetic
from tests.bed.fakekernel import FakeKernel, bzimage_bytes
from tests.fuzz import harness
from tests.fuzz import strategies as fz
from tests.fuzz.profiles import examples


def _files(d, kernel, initrd):
    kpath = os.path.join(d, "kernel")
    with open(kpath, "wb") as f:
        f.write(kernel)
    ipath = None
    if initrd is not None:
        ipath = os.path.join(d, "initrd")
        with open(ipath, "wb") as f:
            f.write(initrd)
    return kpath, ipath


def check_load(machine: fz.MachineCase, kernel: bytes, initrd, opts, mode: str):
    """One load, judged in a bounded child; returns (exit status, names of the calls made)."""
    return harness.in_child(_check_load, machine, kernel, initrd, opts, mode,
                            what=f"pykexec -p ... {opts!r:.200} ({mode})")


def _check_load(machine, kernel, initrd, opts, mode):
    with tempfile.TemporaryDirectory(prefix="pykexec-fuzz-", dir=harness.SCRATCH) as d:
        root = machine.write(os.path.join(d, "machine"))
        kpath, ipath = _files(d, kernel, initrd)
        argv = ["-p", kpath] + (["--initrd", ipath] if ipath else []) + list(opts)
        if not any(o.startswith(("--append", "--command-line", "--reuse-cmdline")) for o in opts):
            argv.append("--append=console=ttyS0 irqpoll")
        argv += ["--sysroot", root] + (["--dry-run"] if mode == "dry-run" else [])
        out = harness.run_cli(argv, live_root=root if mode == "load" else None,
                              plan_dir=os.path.join(d, "plan"))
        harness.judge(out, root, kernel, initrd)
        return out.code, [c[0] for c in out.calls]


@examples(0.45)
@given(machine=fz.machines(), kernel=fz.KERNELS, initrd=fz.INITRDS, opts=fz.cli_options(),
       mode=st.sampled_from(["dry-run", "load"]))
def test_load_gives_a_bootable_plan_or_one_line(machine, kernel, initrd, opts, mode):
    check_load(machine, kernel, initrd, opts, mode)


@examples(0.25)
@given(machine=fz.machines(mutate=False), kernel=fz.bzimages().map(fz.Blob), initrd=fz.INITRDS,
       append=fz.APPEND_BYTES, mode=st.sampled_from(["dry-run", "load"]))
def test_generated_machines_with_bzimages(machine, kernel, initrd, append, mode):
    """Valid machines and near-valid bzImages: most examples plan; every plan must pass."""
    check_load(machine, kernel, initrd, ["-c", "--append=" + os.fsdecode(append)], mode)


@examples(0.25)
@given(machine=fz.arm64_machines(), kernel=fz.ARM64_KERNELS, initrd=fz.ARM64_INITRDS,
       opts=fz.arm64_cli_options(), mode=st.sampled_from(["dry-run", "load"]))
def test_arm64_snapshots_with_random_requests(machine, kernel, initrd, opts, mode):
    """arm64: the bundled QEMU snapshots (synthetic.py makes x86 machines only), mutated
    or not, with generated Images and options; every plan must pass the arm64 checks."""
    code, _ = check_load(machine, kernel, initrd, opts, mode)
    event("planned" if code == 0 else "refused")


def test_the_harness_sees_good_plans():
    """The control: a good machine and kernel plan (exit 0) and pass the checker."""
    spec = synthetic.PRESETS["qemu_like_1g"]
    machine = fz.MachineCase(spec, synthetic.machine_layout(spec))
    assert check_load(machine, bzimage_bytes(FakeKernel()), b"I" * 5000, ["-c"], "load") == \
        (0, ["kexec_load"])


def test_the_harness_sees_good_arm64_plans():
    """The arm64 control: every arm64 snapshot plans a stand-in Image and passes the checker."""
    import struct
    image = struct.pack("<IIQQQQQQ4sI", 0x14000000, 0, 0, 0x400000, 0b1010, 0, 0, 0,
                        b"ARM\x64", 0) + bytes(0x4000)
    assert fz.ARM64_BUNDLED
    for base in fz.ARM64_BUNDLED:
        machine = fz.MachineCase(synthetic.PRESETS["qemu_like_1g"], None, {}, "aarch64", base)
        assert check_load(machine, image, b"I" * 5000, ["-c"], "load") == (0, ["kexec_load"])
