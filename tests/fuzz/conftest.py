"""Every test under tests/fuzz carries the `fuzz` marker (`-m "not fuzz"` leaves them out)."""

import pytest


def pytest_collection_modifyitems(config, items):
    here = __file__.rsplit("/", 1)[0]
    for item in items:
        if str(item.fspath).startswith(here + "/"):
            item.add_marker(pytest.mark.fuzz)


@pytest.fixture(scope="session", autouse=True)
def purgatory_built():
    """Build both purgatory objects once, before any example's time bound starts."""
    from pykexec.purgatory import purgatory_object
    for arch in ("x86_64", "i386"):
        purgatory_object(arch)
