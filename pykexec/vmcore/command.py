"""`pykexec vmcore ...`: the click group and its commands `dmesg` and `info`.

Every command takes FILE (default /proc/vmcore). Bad input is one line on stderr,
"pykexec vmcore CMD: FILE: problem", exit 1; a traceback only with --debug.

`save` is declared here and imports pykexec/vmcore/save.py (numpy) only when it runs:
`dmesg` and `info` must work in a capture kernel whose Python has no numpy (the 32-bit bed's).
"""

from __future__ import annotations

import json
import struct
import sys

import click

from pykexec.vmcore.dump import DEFAULT_VMCORE, Vmcore
from pykexec.vmcore.error import VmcoreError

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


@vmcore.command(name="save")
@click.argument("out", type=click.Path())
@click.argument("path", metavar="[FILE]", default=DEFAULT_VMCORE)
@click.option("-d", "--dump-level", "level", type=int, default=31, show_default=True,
              help="pages to leave out, makedumpfile's bits: 1 zero, 2 non-private cache, "
                   "4 all cache, 8 user data, 16 free")
@click.option("-v", "--verbose", is_flag=True, help="print what was left out and why")
@click.option("--debug", is_flag=True, help="tracebacks for errors")
def save(out, path, level, verbose, debug):
    """Copy the vmcore FILE to OUT as an ELF vmcore without the pages LEVEL leaves out."""
    def body():
        try:
            from pykexec.vmcore.save import report, save_vmcore
        except ImportError as e:
            raise VmcoreError(f"save needs numpy, which this Python lacks ({e})") from None
        try:
            result = save_vmcore(path, out, level, progress=sys.stderr.isatty())
        except OSError as e:
            raise VmcoreError(f"{e.filename or out}: {e.strerror or e}") from None
        if verbose:
            report(result, path, out)
    run_guarded("save", path, debug, body)
