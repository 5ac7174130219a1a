"""The kexec syscalls and the host actions around them, and what their errors mean.

glibc has no wrappers for kexec_load or kexec_file_load, so they go through syscall(2)
with ctypes. Everything that touches the running system (the two kexec syscalls,
reboot(LINUX_REBOOT_CMD_KEXEC), sync, taking interfaces down, shutdown(8)) goes through
one *backend* object: `Host` does it for real, `Recorder` only writes it down (tests,
and anything that must never reboot this machine), and `Faults` wraps either one to make
chosen calls fail with chosen errnos (a kernel without CONFIG_KEXEC_FILE, lockdown, a
rejected signature). `use(backend)` swaps it; the environment variable
PYKEXEC_SYSCALL_FAULTS (e.g. "kexec_file_load=ENOSYS") wraps the live backend the same
way, so a guest can play a kernel built without kexec_file_load.

Every errno is turned into one sentence a kdump maintainer can act on.

(Longer than 400 lines: the syscalls, the recording and fault-injecting layers the tests
and the guest use, and the errno diagnoses are one interface to the running kernel, and a
diagnosis needs the call it explains beside it.)
"""

from __future__ import annotations

import ctypes
import errno
import os

from pykexec.errors import PykexecError

# the ABI's values, here too because callers and tests reach them as syscall.KEXEC_*
from pykexec.abi.kexec import (KEXEC_ARCH_DEFAULT, KEXEC_ARCH_MASK,  # noqa: F401
                               KEXEC_FILE_DEBUG, KEXEC_FILE_FORCE_DTB, KEXEC_FILE_NO_CMA,
                               KEXEC_FILE_NO_INITRAMFS, KEXEC_FILE_ON_CRASH, KEXEC_FILE_UNLOAD,
                               KEXEC_ON_CRASH, KEXEC_PRESERVE_CONTEXT, LINUX_REBOOT_CMD_KEXEC)
CAP_SYS_BOOT = 22

# errnos after which kexec-tools (2.0.27+) retries a failed kexec_file_load with kexec_load
FILE_LOAD_FALLBACK_ERRNOS = (errno.ENOSYS, errno.EINVAL, errno.ENOEXEC, errno.ENOTSUP)
# ... and after which a failed kexec_file_load unload is retried with kexec_load
FILE_UNLOAD_FALLBACK_ERRNOS = (errno.ENOSYS,)
# Errnos a crash load can only get before the kernel touches the loaded crash image: the
# checks of kexec_load_check() (permission and load limits, IMA/LSM, lockdown for
# kexec_load), the kexec lock, a missing syscall, a bad user pointer. Every later failure
# (segment checks, memory, image probe, signature, ...) comes after the kernel has freed
# the loaded crash image to load the new one into the same reserved memory (kernel/kexec.c
# do_kexec_load, kernel/kexec_file.c kexec_file_load: "Free any current crash dump kernel
# before we corrupt it"), so no loader can keep the old capture kernel then.
CRASH_IMAGE_KEPT_ERRNOS = (errno.EPERM, errno.EACCES, errno.EBUSY, errno.ENOSYS, errno.EFAULT)
# What a kernel that checks signatures answers when it does not like one.
SIGNATURE_ERRNOS = (errno.EKEYREJECTED, errno.ENOKEY, errno.EBADMSG, errno.ENODATA,
                    errno.ELIBBAD, errno.ENOPKG, errno.EMSGSIZE, errno.EKEYEXPIRED,
                    errno.EKEYREVOKED)



class KexecSegment(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_void_p), ("bufsz", ctypes.c_size_t),
                ("mem", ctypes.c_void_p), ("memsz", ctypes.c_size_t)]


class KexecError(PykexecError):
    """A syscall failed; `str()` is one line that explains it."""

    def __init__(self, message: str, err: int):
        super().__init__(message)
        self.errno = err


# ---------------------------------------------------------------------------------------------
# Explaining errors


def _proc_flag(sysroot: str, rel: str) -> str | None:
    try:
        with open(os.path.join(sysroot, rel)) as f:
            return f.read().strip()
    except OSError:
        return None


def has_cap_sys_boot(sysroot: str = "/") -> bool | None:
    """Whether this process has CAP_SYS_BOOT in its effective set (None: cannot tell)."""
    status = _proc_flag(sysroot, "proc/self/status")
    for line in (status or "").splitlines():
        if line.startswith("CapEff:"):
            try:
                return bool(int(line.split()[1], 16) >> CAP_SYS_BOOT & 1)
            except (IndexError, ValueError):
                return None
    return None


def _machine(sysroot: str):
    from pykexec.machine import Machine
    return Machine(sysroot)


def lockdown_mode(sysroot: str = "/") -> str | None:
    from pykexec.machine import MachineError
    try:
        return _machine(sysroot).lockdown
    except MachineError:     # unreadable or without a [mode]: not known to be locked down
        return None


def _load_disabled(sysroot: str) -> bool:
    from pykexec.machine import MachineError
    try:
        return _machine(sysroot).kexec_load_disabled is True
    except MachineError:
        return False


def _why_not_permitted(call: str, sysroot: str, crash: bool | None) -> str:
    if has_cap_sys_boot(sysroot) is False or (has_cap_sys_boot(sysroot) is None
                                               and os.geteuid() != 0):
        return f"{call} failed: Operation not permitted: this process lacks CAP_SYS_BOOT (run as root)"
    if _load_disabled(sysroot):
        return (f"{call} failed: kexec is disabled until reboot "
                "(/proc/sys/kernel/kexec_load_disabled is 1)")
    limits = ("kexec_load_limit_panic",) if crash else ("kexec_load_limit_reboot",) \
        if crash is False else ("kexec_load_limit_panic", "kexec_load_limit_reboot")
    for limit in limits:
        if _proc_flag(sysroot, f"proc/sys/kernel/{limit}") == "0":
            return (f"{call} failed: the kernel allows no more loads of this kind "
                    f"(/proc/sys/kernel/{limit} is 0, it only goes down until reboot)")
    mode = lockdown_mode(sysroot)
    if mode in ("integrity", "confidentiality"):
        if call == "kexec_load":
            return (f"{call} failed: the kernel is locked down ({mode}); kexec_load is refused "
                    "in lockdown, use a signed kernel with kexec_file_load (-s)")
        return (f"{call} failed: the kernel is locked down ({mode}) and refused the image "
                "(it must carry a signature the kernel trusts)")
    return (f"{call} failed: Operation not permitted (a security policy such as IMA or an "
            "LSM refused it; under Secure Boot use -s with a signed kernel)")


def explain_errno(err: int, call: str, sysroot: str = "/", crash: bool | None = None) -> str:
    """One line: what `err` from `call` means on this machine, and what to do."""
    if err == errno.EPERM and call.startswith("reboot"):
        return (f"{call} failed: Operation not permitted (needs CAP_SYS_BOOT in the initial "
                "user namespace)")
    if err == errno.EPERM:
        return _why_not_permitted(call, sysroot, crash)
    if err in SIGNATURE_ERRNOS and call == "kexec_file_load":
        why = {
            errno.EKEYREJECTED: "the kernel image's signature was rejected (unsigned, or signed "
                                "with a key the running kernel does not trust, while signature "
                                "checks are enforced by lockdown or CONFIG_KEXEC_SIG_FORCE)",
            errno.ENOKEY: "the key that signed the kernel image is not in the running kernel's "
                          "keyrings",
            errno.EBADMSG: "the kernel image's signature is malformed",
            errno.ENODATA: "the kernel image carries no signature, and signatures are enforced",
            errno.ELIBBAD: "the kernel image's PE/signature structure is damaged",
            errno.ENOPKG: "the signature uses an algorithm the running kernel lacks",
            errno.EMSGSIZE: "the kernel image's signature block has a bad size",
            errno.EKEYEXPIRED: "the key that signed the kernel image has expired",
            errno.EKEYREVOKED: "the key that signed the kernel image was revoked",
        }[err]
        return f"{call} failed: {why} ({errno.errorcode.get(err, err)})"
    if err == errno.ENOSYS:
        what = ("kexec_file_load (CONFIG_KEXEC_FILE off, or no such syscall here)"
                if call.startswith("kexec_file_load") else
                "kexec (CONFIG_KEXEC off)" if call.startswith("kexec") else call)
        return f"{call} failed: this kernel has no {what} (ENOSYS)"
    reasons = {
        errno.EBUSY: "another kexec load or unload is in progress",
        errno.EADDRNOTAVAIL: "a segment or the entry lies outside the allowed memory "
                             "(for -p: outside the crashkernel region)",
        errno.EINVAL: ("the kernel refused the request (flags it does not know, a command line "
                       "too long for it, or an image it cannot use)" if call == "kexec_file_load"
                       else "the kernel refused the request (flags, segment overlap or count, "
                            "or size)"),
        errno.ENOMEM: "the kernel could not allocate memory for the image (crash region full?)",
        errno.ENOEXEC: "the kernel does not recognise this image format",
        errno.EFBIG: "the image is too large",
        errno.EACCES: "a security policy (IMA/LSM) refused the image",
        errno.ETXTBSY: "the kernel or initrd file is open for writing",
    }
    if call == "reboot(LINUX_REBOOT_CMD_KEXEC)" and err == errno.EINVAL:
        text = "no kernel is loaded for kexec (load one with -l first)"
    else:
        text = reasons.get(err, os.strerror(err))
    return f"{call} failed: {text} ({errno.errorcode.get(err, err)})"


# ---------------------------------------------------------------------------------------------
# Raw calls


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def process_is_32bit() -> bool:
    return ctypes.sizeof(ctypes.c_void_p) == 4


def syscall_numbers(machine: str | None = None) -> tuple[int, int | None]:
    """(kexec_load, kexec_file_load or None) on the running kernel (its architecture's
    numbers; a 32-bit process gets the kernel's compat table where it has one)."""
    from pykexec.arch import syscall_numbers as numbers_of
    machine = machine or os.uname().machine
    numbers = numbers_of(machine, process_is_32bit())
    if numbers is None:
        raise KexecError(f"unsupported machine type {machine}", errno.ENOSYS)
    return numbers


def _numbers():
    return syscall_numbers()


def kexec_load(entry: int, segments: list, flags: int) -> None:
    """Call kexec_load; `segments` are (data bytes, mem, memsz) triples in address order."""
    nr_load, _ = _numbers()
    if process_is_32bit() and any(mem + memsz > 1 << 32 for _data, mem, memsz in segments):
        raise KexecError("kexec_load: a 32-bit process cannot pass segments above 4 GiB "
                         "(run pykexec with a 64-bit Python)", errno.EINVAL)
    arr = (KexecSegment * max(1, len(segments)))()
    keep = []
    for i, (data, mem, memsz) in enumerate(segments):
        # the kernel only reads the buffers: point at the bytes themselves (no copy of a
        # 64 MiB initrd); `keep` holds them alive until the call returns
        buf = bytes(data) if data else None
        keep.append(buf)
        arr[i] = KexecSegment(ctypes.cast(ctypes.c_char_p(buf), ctypes.c_void_p)
                              if buf is not None else None, len(data), mem, memsz)
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    ret = libc.syscall(ctypes.c_long(nr_load), ctypes.c_ulong(entry or 0),
                       ctypes.c_ulong(len(segments)),
                       ctypes.cast(arr, ctypes.c_void_p) if segments else None,
                       ctypes.c_ulong(flags))
    if ret != 0:
        err = ctypes.get_errno()
        raise KexecError(explain_errno(err, "kexec_load", crash=bool(flags & KEXEC_ON_CRASH)), err)


def kexec_file_load(kernel_fd: int, initrd_fd: int, cmdline: bytes | None, flags: int) -> None:
    """Call kexec_file_load. `cmdline` includes its NUL (its length is the cmdline_len)."""
    _, nr_file = _numbers()
    if nr_file is None:
        raise KexecError(explain_errno(errno.ENOSYS, "kexec_file_load"), errno.ENOSYS)
    buf = ctypes.create_string_buffer(cmdline, len(cmdline)) if cmdline else None
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    ret = libc.syscall(ctypes.c_long(nr_file), ctypes.c_long(kernel_fd), ctypes.c_long(initrd_fd),
                       ctypes.c_ulong(len(cmdline) if cmdline else 0),
                       ctypes.cast(buf, ctypes.c_void_p) if buf is not None else None,
                       ctypes.c_ulong(flags))
    if ret != 0:
        err = ctypes.get_errno()
        raise KexecError(explain_errno(err, "kexec_file_load",
                                       crash=bool(flags & KEXEC_FILE_ON_CRASH)), err)


def reboot_kexec() -> None:
    """reboot(LINUX_REBOOT_CMD_KEXEC): returns only if it failed (then raises)."""
    libc = _libc()
    ret = libc.reboot(ctypes.c_int(LINUX_REBOOT_CMD_KEXEC))
    if ret != 0:
        err = ctypes.get_errno()
        raise KexecError(explain_errno(err, "reboot(LINUX_REBOOT_CMD_KEXEC)"), err)


SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def ifdown() -> list[str]:
    """Take every network interface down as kexec-tools does before -e: "shaper*" first,
    then the rest, never lo or alias names (with ':'); stop at the first error. Returns the
    names taken down."""
    import fcntl
    import socket
    import struct

    done: list[str] = []
    try:
        names = [n for _, n in socket.if_nameindex()]
    except OSError:
        return done
    ordered = [n for n in names if n.startswith("shaper")] + \
              [n for n in names if not n.startswith("shaper")]
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    except OSError:
        return done
    with sock:
        for name in ordered:
            if name == "lo" or ":" in name:
                continue
            req = struct.pack("16sH14x", name.encode()[:15], 0)
            try:
                got = fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, req)
                flags = struct.unpack_from("16sH", got)[1]
                fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS,
                            struct.pack("16sH14x", name.encode()[:15], flags & ~IFF_UP & 0xFFFF))
            except OSError:
                break
            done.append(name)
    return done


SHUTDOWN_PROGRAMS = ("/sbin/shutdown", "/etc/shutdown", "/bin/shutdown")


# ---------------------------------------------------------------------------------------------
# Backends


def _read_loaded(sysroot: str, crash: bool) -> int | None:
    from pykexec.machine import MachineError
    name = "kexec_crash_loaded" if crash else "kexec_loaded"
    machine = _machine(sysroot)
    try:   # sys/kernel/<name>, else sys/kernel/kexec/<short name> (newer kernels)
        text = machine.first_line(machine.kexec_file(name))
        return int(text) if text is not None else None
    except (MachineError, ValueError):
        return None


class Host:
    """The real thing: syscalls into this kernel, sync, ifdown, shutdown(8)."""

    live = True

    def __init__(self, sysroot: str = "/"):
        self.sysroot = sysroot

    def kexec_load(self, entry: int, segments: list, flags: int) -> None:
        kexec_load(entry, segments, flags)

    def kexec_file_load(self, kernel_fd: int, initrd_fd: int, cmdline: bytes | None,
                        flags: int) -> None:
        kexec_file_load(kernel_fd, initrd_fd, cmdline, flags)

    def loaded(self, crash: bool) -> int | None:
        return _read_loaded(self.sysroot, crash)

    def sync(self) -> None:
        os.sync()

    def ifdown(self) -> list[str]:
        return ifdown()

    def reboot_kexec(self) -> None:
        reboot_kexec()

    def shutdown(self) -> bool:
        """exec shutdown -r now (replaces this process); returns False if none could run."""
        for prog in SHUTDOWN_PROGRAMS:
            try:
                os.execv(prog, ["shutdown", "-r", "now"])
            except OSError:
                continue
        return False


class Recorder:
    """Writes every host action down and pretends it worked. Tracks what is loaded, so
    `-l` then `-e` behaves as on a kernel that accepted the load (`state`: crash? -> 0/1)."""

    live = False

    def __init__(self, calls: list[tuple] | None = None,
                 state: dict[bool, int] | None = None):
        self.calls: list[tuple] = [] if calls is None else calls
        self.state: dict[bool, int] = {False: 0, True: 0} if state is None else state

    def kexec_load(self, entry, segments, flags) -> None:
        segs = tuple((bytes(d), mem, memsz) for d, mem, memsz in segments)
        self.calls.append(("kexec_load", entry, segs, flags))
        crash = bool(flags & KEXEC_ON_CRASH)
        self.state[crash] = 1 if segs else 0

    def kexec_file_load(self, kernel_fd, initrd_fd, cmdline, flags) -> None:
        def contents(fd):
            if fd is None or fd < 0:
                return None
            return os.pread(fd, os.fstat(fd).st_size, 0)
        self.calls.append(("kexec_file_load", contents(kernel_fd), contents(initrd_fd),
                           cmdline, flags))
        crash = bool(flags & KEXEC_FILE_ON_CRASH)
        self.state[crash] = 0 if flags & KEXEC_FILE_UNLOAD else 1

    def loaded(self, crash: bool) -> int | None:
        return self.state[crash]

    def failed_load(self, crash: bool, err: int) -> None:
        """A load the kernel refused with `err`: as the kernel, drop the loaded crash
        image when the refusal comes after the kernel freed it (CRASH_IMAGE_KEPT_ERRNOS)."""
        if crash and err not in CRASH_IMAGE_KEPT_ERRNOS:
            self.state[True] = 0

    def sync(self) -> None:
        self.calls.append(("sync",))

    def ifdown(self) -> list[str]:
        self.calls.append(("ifdown",))
        return []

    def reboot_kexec(self) -> None:
        self.calls.append(("reboot", LINUX_REBOOT_CMD_KEXEC))

    def shutdown(self) -> bool:
        self.calls.append(("shutdown",))
        return True

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


class Faults:
    """Wraps a backend; `faults` maps a call name ("kexec_load", "kexec_file_load",
    "reboot") to an errno, or to a list of errnos used up one call at a time (None in the
    list lets that call through)."""

    def __init__(self, inner, faults: dict[str, object]):
        self.inner = inner
        self.live = getattr(inner, "live", False)
        self.faults = {k: (list(v) if isinstance(v, (list, tuple)) else v)
                       for k, v in faults.items()}
        self.failed: list[tuple[str, int]] = []

    def _fault(self, name: str, call: str, crash: bool | None = None,
               load: bool = False) -> None:
        spec = self.faults.get(name)
        if isinstance(spec, list):
            err = spec.pop(0) if spec else None
        else:
            err = spec
        if err:
            self.failed.append((name, err))
            failed_load = getattr(self.inner, "failed_load", None)
            if load and failed_load is not None:
                failed_load(bool(crash), err)
            raise KexecError(explain_errno(err, call, crash=crash), err)

    def kexec_load(self, entry, segments, flags) -> None:
        self._fault("kexec_load", "kexec_load", bool(flags & KEXEC_ON_CRASH),
                    load=bool(segments))
        self.inner.kexec_load(entry, segments, flags)

    def kexec_file_load(self, kernel_fd, initrd_fd, cmdline, flags) -> None:
        self._fault("kexec_file_load", "kexec_file_load", bool(flags & KEXEC_FILE_ON_CRASH),
                    load=not flags & KEXEC_FILE_UNLOAD)
        self.inner.kexec_file_load(kernel_fd, initrd_fd, cmdline, flags)

    def reboot_kexec(self) -> None:
        self._fault("reboot", "reboot(LINUX_REBOOT_CMD_KEXEC)")
        self.inner.reboot_kexec()

    def __getattr__(self, name):
        return getattr(self.inner, name)


class FaultSpecError(PykexecError, ValueError):
    """PYKEXEC_SYSCALL_FAULTS cannot be read (one line)."""


def parse_faults(text: str) -> dict[str, object]:
    """"kexec_file_load=ENOSYS,kexec_load=EPERM" -> {"kexec_file_load": 38, ...}."""
    out: dict[str, object] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = item.partition("=")
        code = getattr(errno, value.strip().upper(), None) if not value.strip().isdigit() \
            else int(value)
        if not name or not isinstance(code, int):
            raise FaultSpecError(f"PYKEXEC_SYSCALL_FAULTS: cannot read {item!r} "
                             "(want NAME=ERRNO, e.g. kexec_file_load=ENOSYS)")
        out[name.strip()] = code
    return out


_backend = None


def backend():
    """The backend in use: set by `use`, else the host (wrapped by PYKEXEC_SYSCALL_FAULTS)."""
    global _backend
    if _backend is None:
        host = Host()
        spec = os.environ.get("PYKEXEC_SYSCALL_FAULTS")
        _backend = Faults(host, parse_faults(spec)) if spec else host
    return _backend


class use:
    """`with use(backend):` runs with another backend (a Recorder, a Faults wrapper)."""

    def __init__(self, new):
        self.new = new
        self.old = None

    def __enter__(self):
        global _backend
        self.old, _backend = _backend, self.new
        return self.new

    def __exit__(self, *exc):
        global _backend
        _backend = self.old
        return False


# ---------------------------------------------------------------------------------------------
# Plan-level helpers


def load_plan(plan) -> None:
    """Hand a kexec_load plan to the kernel."""
    if plan.syscall != "kexec_load":
        raise ValueError("load_plan takes a kexec_load plan")
    kexec_load(plan.entry, [(s.data, s.mem, s.memsz) for s in plan.segments], plan.flags)


def unload(flags: int) -> None:
    """kexec_load(0, 0, NULL, flags): drop the (crash) image."""
    kexec_load(0, [], flags)


def arch_flag() -> int:
    """The arch bits kexec-tools sends: from uname, the running kernel's architecture (a
    32-bit process on a 64-bit kernel too: the compat entry wants the kernel's own)."""
    from pykexec.arch import find_machine
    machine = os.uname().machine
    arch = find_machine(machine)
    if arch is None:
        raise KexecError(f"Unsupported machine type: {machine}", errno.ENOSYS)
    return arch.kexec_arch
