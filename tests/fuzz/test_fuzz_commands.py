"""`pykexec inspect` on damaged plan folders and kernels, `pykexec snapshot` of damaged machines,
and odd argv: exit 0, or one stderr line and a non-zero exit; never a traceback or a hang."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

from hypothesis import example, given, strategies as st

from tests.bed import synthetic
from tests.bed.fakekernel import FakeKernel, bzimage_bytes
from tests.fuzz import harness
from tests.fuzz import strategies as fz
from tests.fuzz.profiles import examples

_GOOD_PLAN = {}


def good_plan_folder(scratch: str) -> str:
    """A real saved plan (made once per process, copied per example)."""
    if "dir" not in _GOOD_PLAN:
        base = tempfile.mkdtemp(prefix="pykexec-fuzz-plan-", dir=harness.SCRATCH)
        machine = os.path.join(base, "m")
        synthetic.make_machine(machine, synthetic.PRESETS["qemu_like_1g"])
        kernel = os.path.join(base, "k")
        with open(kernel, "wb") as f:
            f.write(bzimage_bytes(FakeKernel()))
        out = harness.run_cli(["-p", kernel, "--append=console=ttyS0", "--sysroot", machine,
                               "--dry-run", "-c"], plan_dir=os.path.join(base, "plan"))
        assert out.code == 0, out.err
        _GOOD_PLAN["dir"] = os.path.join(base, "plan")
    dest = os.path.join(scratch, "plan")
    shutil.copytree(_GOOD_PLAN["dir"], dest)
    return dest


def _inspect_plan(mutation):
    doc_change, files = mutation
    with tempfile.TemporaryDirectory(prefix="pykexec-fuzz-", dir=harness.SCRATCH) as d:
        folder = good_plan_folder(d)
        with open(os.path.join(folder, "plan.json")) as f:
            doc = json.load(f)
        doc = doc_change(doc)
        with open(os.path.join(folder, "plan.json"), "w") as f:
            json.dump(doc, f)
        for name, data in files.items():
            path = os.path.join(folder, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.unlink(path)
            if data is not None:
                with open(path, "wb") as f:
                    f.write(data)
        for target in (folder, os.path.join(folder, "plan.json")):
            harness.judge_command(harness.run_main(["inspect", target]))


@examples(0.25)
@given(st.data())
def test_inspect_damaged_plan_folders(data):
    # the mutation is drawn against the plan's real document shape
    with tempfile.TemporaryDirectory(prefix="pykexec-fuzz-", dir=harness.SCRATCH) as d:
        with open(os.path.join(good_plan_folder(d), "plan.json")) as f:
            doc = json.load(f)
    new_doc, files = data.draw(fz.plan_doc_mutations(doc))
    harness.in_child(_inspect_plan, (lambda _old, new=new_doc: new, files), what="inspect plan")


def _inspect_file(blob):
    with tempfile.TemporaryDirectory(prefix="pykexec-fuzz-", dir=harness.SCRATCH) as d:
        path = os.path.join(d, "file")
        with open(path, "wb") as f:
            f.write(blob)
        harness.judge_command(harness.run_main(["inspect", path]))


@examples(0.25)
@given(fz.KERNELS)
def test_inspect_kernels_and_garbage(blob):
    harness.in_child(_inspect_file, bytes(blob), what="inspect file")


def _snapshot(machine):
    with tempfile.TemporaryDirectory(prefix="pykexec-fuzz-", dir=harness.SCRATCH) as d:
        root = machine.write(os.path.join(d, "m"))
        out = harness.run_main(["snapshot", os.path.join(d, "snap"), "--sysroot", root])
        harness.judge_command(out)
        if out.code == 0:   # a snapshot that was taken must plan like its source machine
            assert os.path.isfile(os.path.join(d, "snap", "snapshot.json")), out.err
            with open(os.path.join(d, "snap", "snapshot.json")) as f:
                assert json.load(f).get("machine") == machine.machine, "snapshot.json machine"


@examples(0.15)
@given(fz.machines())
def test_snapshot_of_damaged_machines(machine):
    harness.in_child(_snapshot, machine, what="snapshot")


ARGV_WORDS = st.sampled_from([
    "-p", "-l", "-u", "-c", "-s", "-a", "-S", "--status", "--type=bzImage", "-t", "elf-x86_64",
    "--initrd", "--ramdisk=", "--append", "--append=", "--command-line=x", "--reuse-cmdline",
    "--dry-run", "--json", "--save-plan", "--svg", "--sysroot", "--entry=0x1000", "--mem-min=1",
    "--mem-max=0", "--", "-", "-pu", "-up", "-pc", "--load-panic", "--print-ckr-size", "-v", "-h",
    "--no-ifdown", "--args-linux", "KERNEL", "INITRD", "MACHINE", "", "\n", "--appen=x", "--ap=x",
    "-p-p", "--initrd=KERNEL", "--hotplug", "--noefi", "--kexec-file-syscall",
])


def _argv(words):
    with tempfile.TemporaryDirectory(prefix="pykexec-fuzz-", dir=harness.SCRATCH) as d:
        machine = os.path.join(d, "m")
        synthetic.make_machine(machine, synthetic.PRESETS["qemu_like_1g"])
        kernel = os.path.join(d, "k")
        with open(kernel, "wb") as f:
            f.write(bzimage_bytes(FakeKernel()))
        names = {"KERNEL": kernel, "INITRD": kernel, "MACHINE": machine}
        argv = [names.get(w, w) for w in words] + ["--sysroot", machine, "--dry-run"]
        out = harness.run_cli(argv, plan_dir=os.path.join(d, "plan"))
        if out.code == 0 and os.path.exists(os.path.join(d, "plan", "plan.json")):
            harness.judge(out, machine, crash=any(w in ("-p", "--load-panic", "-pu", "-up", "-pc")
                                                   for w in words))
        else:
            harness.judge_command(out)


@examples(0.25)
@given(st.lists(ARGV_WORDS, max_size=8))
@example(["--status", "--sysroot", "--append=", "--sysroot"])   # -S on a missing --sysroot: silent
@example(["INITRD", "--entry=0x1000", "", "--no-ifdown", "--reuse-cmdline", "--noefi"])  # jump into nothing
def test_odd_argv(words):
    harness.in_child(_argv, words, what=f"argv {words!r}")
