"""`pykexec vmcore ...`: the click group and its commands `dmesg` and `info`.

Every command takes FILE (default /proc/vmcore). Bad input is one line on stderr,
"pykexec vmcore CMD: FILE: problem", exit 1; a traceback only with --debug.

Other commands join the group from their own module: each module named in
COMMAND_MODULES that exists exposes `command` (a click.Command), added here, so a new
command (`save`: pykexec/vmcore/save.py) needs no edit of this file.
"""

from __future__ import annotations

import importlib
import json
import struct
import sys

import click

from pykexec.vmcore.dump import DEFAULT_VMCORE, Vmcore
from pykexec.vmcore.error import VmcoreError

COMMAND_MODULES = ("pykexec.vmcore.save",)
EXIT_BAD_DUMP = 1


def fail(command: str, message: str) -> None:
    sys.stderr.write(f"pykexec vmcore {command}: {message}\n")
    sys.exit(EXIT_BAD_DUMP)


def run_guarded(command: str, path: str, debug: bool, body) -> None:
    """Run body(); a user-facing error becomes one line and exit 1."""
    try:
        body()
    except VmcoreError as e:
        if debug:
            raise
        fail(command, str(e))
    except BrokenPipeError:
        sys.stderr.close()          # a pager quit: not an error
    except (struct.error, IndexError, OverflowError, MemoryError, ValueError) as e:
        if debug:
            raise
        fail(command, f"{path}: corrupt dump: {e.__class__.__name__}: {e}")


@click.group(name="vmcore")
def vmcore():
    """Read a vmcore (/proc/vmcore in a capture kernel, or a saved file)."""


@vmcore.command()
@click.argument("path", metavar="[FILE]", default=DEFAULT_VMCORE)
@click.option("--json", "as_json", is_flag=True, help="records as JSON lines")
@click.option("--debug", is_flag=True, help="tracebacks for errors")
def dmesg(path, as_json, debug):
    """The kernel log kept in the dump (as kexec-tools' vmcore-dmesg prints it)."""
    from pykexec.vmcore import dmesg as log

    def body():
        with Vmcore.open(path) as dump:
            out = sys.stdout.buffer
            if as_json:
                for rec in log.records(dump):
                    if rec.committed:
                        out.write(json.dumps(rec.as_json()).encode() + b"\n")
            else:
                log.write_text(dump, out)
            out.flush()
    run_guarded("dmesg", path, debug, body)


@vmcore.command()
@click.argument("path", metavar="[FILE]", default=DEFAULT_VMCORE)
@click.option("--json", "as_json", is_flag=True, help="one JSON object")
@click.option("--lines", default=10, show_default=True, help="last log lines to show")
@click.option("--debug", is_flag=True, help="tracebacks for errors")
def info(path, as_json, lines, debug):
    """Release, panic, CPUs' registers, memory, VMCOREINFO and completeness of a dump."""
    from pykexec.vmcore.info import gather, table

    def body():
        with Vmcore.open(path) as dump:
            facts = gather(dump, lines)
        sys.stdout.write(json.dumps(facts, indent=1) + "\n" if as_json else table(facts))
        sys.stdout.flush()
        if not facts["complete"]:
            fail("info", f"{path}: incomplete dump: {facts['problems'][0]}")
    run_guarded("info", path, debug, body)


for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(_name)
    except ModuleNotFoundError as _e:
        if _e.name != _name:
            raise
        continue
    vmcore.add_command(_module.command)
