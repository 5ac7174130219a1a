"""Running pykexec under a time and memory bound, and judging what came out.

`in_child(fn, ...)` runs one example in a forked child: RLIMIT_AS caps its address space and
SIGALRM with its default action ends it, so even a runaway loop inside one C call (a set of
four billion CPU numbers) is stopped, and the shared machine is never at risk. Inside, the
Python memory peak is measured with tracemalloc against a tighter bound. `run_cli()` runs
the real command line in-process with the syscalls recorded; `judge()` states the property
of issue 9: exit 0 and a plan that passes tests/bed/plancheck.py, or a non-zero exit with
exactly one stderr line, no traceback and no "internal error", and nothing loaded.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import pickle
import resource
import select
import signal
import traceback
import tracemalloc
from dataclasses import dataclass, field
from typing import List, Optional

from pykexec.arch.x86.abi import KEXEC_ARCH_X86_64
from tests.bed import plancheck

# Generous: a planning run takes well under a second, but the machine is shared and loaded;
# what this catches is a hang or a blow-up, which never ends.
TIME_LIMIT_S = float(os.environ.get("PYKEXEC_FUZZ_TIME_LIMIT", "60"))
PEAK_LIMIT = int(os.environ.get("PYKEXEC_FUZZ_PEAK_MB", "160")) << 20   # traced Python memory
AS_HEADROOM = 1024 << 20                                                  # address-space cap
# Machines are written per example: RAM-backed scratch space when there is one.
SCRATCH = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


class OverTime(AssertionError):
    pass


class OverMemory(AssertionError):
    pass


class ChildFailed(AssertionError):
    pass


def _vm_size() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def in_child(fn, *args, seconds: float = TIME_LIMIT_S, peak: int = PEAK_LIMIT, what: str = "example"):
    """fn(*args) in a forked child under the bounds; its return value (picklable) or an
    AssertionError saying what went wrong (the child's traceback included)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:                                   # the child: never returns into pytest
        os.close(read_fd)
        try:
            soft = _vm_size() + AS_HEADROOM
            resource.setrlimit(resource.RLIMIT_AS, (soft, resource.getrlimit(resource.RLIMIT_AS)[1]))
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.setitimer(signal.ITIMER_REAL, seconds)
            tracemalloc.start()
            result = ("ok", fn(*args))
            used = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            if used > peak:
                result = ("memory", f"{what} peaked at {used >> 20} MiB of Python memory "
                                    f"(bound {peak >> 20} MiB)")
        except MemoryError:
            result = ("memory", f"{what}: MemoryError at the {AS_HEADROOM >> 20} MiB address-space cap")
        except BaseException as e:  # noqa: BLE001 - everything goes back to the parent
            result = ("error", f"{e.__class__.__name__}: {e}\n{traceback.format_exc()}"[-20000:])
        try:
            payload = pickle.dumps(result)
        except Exception as e:  # noqa: BLE001
            payload = pickle.dumps(("error", f"unpicklable result: {e}"))
        with os.fdopen(write_fd, "wb") as f:
            f.write(payload)
        os._exit(0)
    os.close(write_fd)
    chunks = []
    with os.fdopen(read_fd, "rb") as f:
        while True:
            ready, _, _ = select.select([f], [], [], seconds + 30)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                break
            chunk = os.read(f.fileno(), 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig in (signal.SIGALRM, signal.SIGKILL):
            raise OverTime(f"{what} ran longer than {seconds} s")
        raise ChildFailed(f"{what} died of signal {sig}")
    kind, value = pickle.loads(b"".join(chunks))
    if kind == "ok":
        return value
    if kind == "memory":
        raise OverMemory(value)
    raise ChildFailed(value)


@dataclass
class Outcome:
    argv: List[str]
    code: int
    out: str
    err: str
    calls: list = field(default_factory=list)
    plan_dir: Optional[str] = None


def run_cli(argv: List[str], live_root: Optional[str] = None, plan_dir: Optional[str] = None) -> Outcome:
    """Run `pykexec argv` in-process with a syscall recorder (bound it with `in_child`).

    `live_root`: pretend this sysroot is the running machine, so a real load (not a dry run)
    reaches the recorder. `plan_dir`: add --save-plan there.
    """
    import pykexec.cli as cli
    import pykexec.host.syscall as kexec_syscall

    class LiveRecorder(kexec_syscall.Recorder):
        live = True

    recorder = LiveRecorder()
    argv = list(argv) + (["--save-plan", plan_dir] if plan_dir else [])
    saved = (kexec_syscall._backend, kexec_syscall.arch_flag, cli._LIVE_ROOTS)
    kexec_syscall._backend = kexec_syscall.Faults(recorder, {"kexec_file_load": errno.ENOSYS})
    kexec_syscall.arch_flag = lambda: KEXEC_ARCH_X86_64
    if live_root is not None:
        cli._LIVE_ROOTS = ("/", "", live_root)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.run(argv)
    finally:
        kexec_syscall._backend, kexec_syscall.arch_flag, cli._LIVE_ROOTS = saved
    return Outcome(argv, code, out.getvalue(), err.getvalue(), recorder.calls, plan_dir)


def run_main(argv: List[str]) -> Outcome:
    """`pykexec SUBCOMMAND ...` (snapshot, inspect) in-process: click's exit becomes the status."""
    import pykexec.cli as cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.main(list(argv))
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return Outcome(list(argv), code, out.getvalue(), err.getvalue())


def judge_command(outcome: Outcome) -> None:
    """Any command: exit 0, or non-zero with one stderr line; never a traceback."""
    lines = [l for l in outcome.err.splitlines() if l.strip()]
    context = f"argv={outcome.argv!r}\nexit={outcome.code}\nstderr={outcome.err[-3000:]!r}"
    assert "Traceback" not in outcome.err, context
    assert not any("internal error" in l for l in lines), context
    if outcome.code != 0:
        assert len(lines) == 1, "a refusal must be exactly one stderr line\n" + context


def judge(outcome: Outcome, sysroot: str, kernel: Optional[bytes] = None,
          initrd: Optional[bytes] = None, crash: bool = True) -> None:
    """Assert issue 9's property on one run (AssertionError with the reason otherwise)."""
    lines = [l for l in outcome.err.splitlines() if l.strip()]
    context = f"argv={outcome.argv!r}\nexit={outcome.code}\nstderr={outcome.err!r}"
    assert "Traceback" not in outcome.err, context
    assert not any("internal error" in l for l in lines), context
    if outcome.code == 253 and lines[-1:] == ["pykexec: syscall kexec_file_load not available."]:
        lines = lines[:-1]    # -s without kexec_file_load: kexec-tools' own second line
    if outcome.code != 0:
        assert len(lines) == 1, "a refusal must be exactly one stderr line\n" + context
        assert not any(c[0] in ("kexec_load", "kexec_file_load") for c in outcome.calls), \
            "a refusal loaded something\n" + context
        return
    assert outcome.plan_dir and os.path.exists(os.path.join(outcome.plan_dir, "plan.json")), \
        "exit 0 without a saved plan\n" + context
    data = plancheck.PlanData.from_folder(outcome.plan_dir)
    loads = [c for c in outcome.calls if c[0] == "kexec_load"]
    if loads:
        _, entry, segments, flags = loads[-1]
        recorded = sorted((mem, memsz, bytes(buf)) for buf, mem, memsz in segments)
        planned = sorted((s.mem, s.memsz, s.data) for s in data.segments)
        assert (entry, flags, recorded) == (data.entry, data.flags, planned), \
            "the syscall got something else than the saved plan\n" + context
    problems = plancheck.check(data, plancheck.read_machine(sysroot), kernel, initrd, crash=crash)
    assert not problems, "exit 0 with a plan that would not boot:\n  " + \
        "\n  ".join(map(str, problems)) + "\n" + context
