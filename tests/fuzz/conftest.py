"""Every test under tests/fuzz carries the `fuzz` marker (`-m "not fuzz"` leaves them out)."""

import pytest


def pytest_collection_modifyitems(config, items):
    here = __file__.rsplit("/", 1)[0]
    for item in items:
        if str(item.fspath).startswith(here + "/"):
            item.add_marker(pytest.mark.fuzz)
