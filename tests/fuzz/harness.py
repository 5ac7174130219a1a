"""Running pykexec under a time and memory bound, and judging what came out.

`bounded()` guards one example: a SIGALRM timer (an exception derived from BaseException, so
pykexec's own `except Exception` cannot swallow it), tracemalloc for the measured peak, and
RLIMIT_AS as the safety net so a runaway allocation ends as MemoryError instead of taking the
shared machine down. `run_cli()` runs the real command line in-process with the syscalls
recorded; `judge()` states the property of issue 9: exit 0 and a plan that passes
tests/bed/plancheck.py, or a non-zero exit with exactly one stderr line, no traceback and no
"internal error", and nothing loaded.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import resource
import signal
import tracemalloc
from dataclasses import dataclass, field
from typing import List, Optional

from tests.bed import plancheck

TIME_LIMIT_S = float(os.environ.get("PYKEXEC_FUZZ_TIME_LIMIT", "20"))
PEAK_LIMIT = int(os.environ.get("PYKEXEC_FUZZ_PEAK_MB", "160")) << 20   # traced Python memory
AS_HEADROOM = 1536 << 20                                                  # address-space net
# Machines are written per example: RAM-backed scratch space when there is one.
SCRATCH = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


class OverTime(BaseException):
    """The example ran past TIME_LIMIT_S (BaseException: no `except Exception` may hide it)."""


class OverMemory(AssertionError):
    pass


def _vm_size() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


@contextlib.contextmanager
def bounded(seconds: float = TIME_LIMIT_S, peak: int = PEAK_LIMIT, what: str = "example"):
    def on_alarm(signum, frame):
        raise OverTime(f"{what} ran longer than {seconds} s")

    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    old_limit = resource.getrlimit(resource.RLIMIT_AS)
    soft = _vm_size() + AS_HEADROOM
    if old_limit[1] != resource.RLIM_INFINITY:
        soft = min(soft, old_limit[1])
    resource.setrlimit(resource.RLIMIT_AS, (soft, old_limit[1]))
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        resource.setrlimit(resource.RLIMIT_AS, old_limit)
        used = tracemalloc.get_traced_memory()[1]
        if not tracing:
            tracemalloc.stop()
    if used > peak:
        raise OverMemory(f"{what} peaked at {used >> 20} MiB of Python memory (bound {peak >> 20} MiB)")


@dataclass
class Outcome:
    argv: List[str]
    code: int
    out: str
    err: str
    calls: list = field(default_factory=list)
    plan_dir: Optional[str] = None


def run_cli(argv: List[str], live_root: Optional[str] = None, plan_dir: Optional[str] = None,
            seconds: float = TIME_LIMIT_S) -> Outcome:
    """Run `pykexec argv` in-process with a syscall recorder.

    `live_root`: pretend this sysroot is the running machine, so a real load (not a dry run)
    reaches the recorder. `plan_dir`: add --save-plan there.
    """
    import pykexec.cli as cli
    import pykexec.syscall as kexec_syscall

    class LiveRecorder(kexec_syscall.Recorder):
        live = True

    recorder = LiveRecorder()
    argv = list(argv) + (["--save-plan", plan_dir] if plan_dir else [])
    saved = (kexec_syscall._backend, kexec_syscall.arch_flag, cli._LIVE_ROOTS)
    kexec_syscall._backend = kexec_syscall.Faults(recorder, {"kexec_file_load": errno.ENOSYS})
    kexec_syscall.arch_flag = lambda: kexec_syscall.KEXEC_ARCH_X86_64
    if live_root is not None:
        cli._LIVE_ROOTS = ("/", "", live_root)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                bounded(seconds, what=f"pykexec {' '.join(map(repr, argv))[:300]}"):
            code = cli.run(argv)
    finally:
        kexec_syscall._backend, kexec_syscall.arch_flag, cli._LIVE_ROOTS = saved
    return Outcome(argv, code, out.getvalue(), err.getvalue(), recorder.calls, plan_dir)


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
