"""Every error pykexec raises on purpose derives from one root, PykexecError, and the
one-line report is an isinstance check on it (pykexec.errors imports no layer above)."""

import ast
import importlib
import inspect
import pkgutil

import pykexec
from pykexec.errors import PykexecError, describe


def _all_modules():
    for info in pkgutil.walk_packages(pykexec.__path__, "pykexec."):
        if info.name.endswith("__main__"):
            continue
        yield importlib.import_module(info.name)


def test_every_exception_class_of_pykexec_derives_from_the_root():
    found, strays = [], []
    for module in _all_modules():
        for name, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, BaseException)
                    and value.__module__ == module.__name__):
                found.append(f"{module.__name__}.{name}")
                if not issubclass(value, PykexecError):
                    strays.append(f"{module.__name__}.{name}")
    assert len(found) >= 20, found          # the walk did reach the layers
    assert strays == []


def test_the_report_is_one_isinstance_check():
    class Stray(ValueError):
        __module__ = "pykexec.somewhere"    # a module name alone no longer makes a refusal
    assert describe(Stray("x")) is None
    assert describe(type("Mine", (PykexecError,), {})("a\nb")) == "a\\nb"
    assert describe(FileNotFoundError(2, "No such file or directory", "/k")) == \
        "/k: No such file or directory"


def test_errors_module_imports_no_layer():
    tree = ast.parse(inspect.getsource(importlib.import_module("pykexec.errors")))
    imported = [n.module if isinstance(n, ast.ImportFrom) else a.name
                for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                for a in n.names]
    assert not [m for m in imported if m and m.startswith("pykexec")]
