"""Every test under tests/fuzz carries the `fuzz` marker (`-m "not fuzz"` leaves them out)."""

import os

import pytest


def pytest_collection_modifyitems(config, items):
    here = __file__.rsplit("/", 1)[0]
    for item in items:
        if str(item.fspath).startswith(here + "/"):
            item.add_marker(pytest.mark.fuzz)


@pytest.fixture(scope="session", autouse=True)
def warmed_up():
    """Build the purgatory objects and run one good load of each arch and one inspect in this
    process, before any example: each example runs in a fork of it, which then starts with
    every module imported and every cache filled (otherwise each child imports pykexec anew,
    several times the cost of the example itself)."""
    import shutil
    import tempfile

    from pykexec.purgatory.build import purgatory_object
    from tests.unit.relocs import SPECS
    from tests.bed import synthetic
    from tests.bed.fakekernel import FakeKernel, bzimage_bytes
    from tests.bed.fakekernel32 import I386_BZIMAGE
    from tests.fuzz import harness
    from tests.fuzz.strategies import BUNDLED, MachineCase

    from pykexec.arch.arm64.purgatory_spec import ARM64
    from tests.fuzz.strategies import ARM64_BUNDLED

    for spec in (SPECS["x86_64"], SPECS["i386"], ARM64):
        purgatory_object(spec)
    d = tempfile.mkdtemp(prefix="pykexec-fuzz-warm-", dir=harness.SCRATCH)
    try:
        spec = synthetic.PRESETS["qemu_like_1g"]
        i386 = next(b for b in BUNDLED if "i386" in b)
        for uname, kernel in (("x86_64", FakeKernel()), ("i686", I386_BZIMAGE)):
            root = MachineCase(spec, synthetic.machine_layout(spec), {}, uname,
                               i386 if uname == "i686" else None).write(os.path.join(d, uname))
            path = os.path.join(d, uname + ".bz")
            with open(path, "wb") as f:
                f.write(bzimage_bytes(kernel))
            plan = os.path.join(d, uname + ".plan")
            out = harness.run_cli(["-p", path, "--append=x", "--sysroot", root, "--dry-run", "-c",
                                   "--json", "--svg", os.path.join(d, uname + ".svg")], plan_dir=plan)
            assert out.code == 0, out.err
            harness.run_main(["inspect", plan])
            harness.run_main(["inspect", path])
            harness.run_main(["snapshot", os.path.join(d, uname + ".snap"), "--sysroot", root])
        image = os.path.join(d, "Image")
        with open(image, "wb") as f:     # an arm64 Image header and filler
            f.write(bytes(56) + b"ARM\x64" + bytes(0x1000))
        out = harness.run_cli(["-p", image, "--append=x", "--sysroot", ARM64_BUNDLED[0],
                               "--dry-run", "-c"], plan_dir=os.path.join(d, "arm64.plan"))
        assert out.code == 0, out.err
    finally:
        shutil.rmtree(d, ignore_errors=True)
