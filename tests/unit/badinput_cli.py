"""Bad-input cases of the command line: option values, --save-plan/--svg targets, and
`pykexec inspect` / `snapshot` on damaged input (see tests/unit/badinput.py).

Statuses: kexec-tools' for its own options (checked with the oracle: a bad --mem-min or
--mem-max value and a window with no room both exit 1, --serial 255); for pykexec's own
commands the documented ones (inspect and snapshot: 1; a --save-plan or --svg that cannot
be written: 255, as any write failure of a load).
"""

from __future__ import annotations

import json
import os

from tests.bed.fakekernel import FakeKernel, bzimage_bytes
from tests.unit.badinput import bad, elf_kernel, put

ONCE = dict(sysroot=False, append=False, modes=("once",))


# --- --mem-min / --mem-max: strtoul, then a window that leaves room -------------------------

@bad(1)
def case_mem_min_junk(w):
    return ["-p", w["kernel"], "--mem-min=12q"], "--mem-min=12q"


@bad(1)
def case_mem_max_hex_prefix_only(w):
    return ["-p", w["kernel"], "--mem-max=0x"], "--mem-max=0x"


@bad(1)
def case_mem_min_trailing_blank(w):
    return ["-p", w["kernel"], "--mem-min=0x1000 "], "--mem-min=0x1000"


@bad(1)
def case_mem_min_not_octal(w):
    return ["-p", w["kernel"], "--mem-min=09"], "--mem-min=09"


@bad(1)
def case_mem_max_sign_only(w):
    return ["-p", w["kernel"], "--mem-max=-"], "--mem-max=-"


@bad(1)
def case_mem_min_minus_one(w):
    return ["-p", w["kernel"], "--mem-min=-1"], "--mem-min=0xffffffffffffffff"


@bad(1)
def case_mem_min_72_bits(w):
    return ["-p", w["kernel"], "--mem-min=0xfffffffffffffffffe"], "--mem-min=0xffffffffffffffff"


@bad(1)
def case_mem_min_decimal_overflow(w):
    return ["-p", w["kernel"], "--mem-min=99999999999999999999999"], "--mem-min"


@bad(1)
def case_mem_max_below_mem_min(w):
    return (["-p", w["kernel"], "--mem-min=0x30000000", "--mem-max=0x2fffffff"],
            "--mem-max=0x2fffffff")


@bad(1)
def case_mem_max_below_crash_region(w):
    return ["-p", w["kernel"], "--mem-max=0x100000"], "--mem-max=0x100000"


@bad(1)
def case_normal_load_mem_min_minus_one(w):
    return ["-l", w["kernel"], "--mem-min=-1"], "--mem-min=0xffffffffffffffff"


@bad(1)
def case_entry_junk(w):
    return ["-p", w["kernel"], "--entry=zz"], "--entry=zz"


# --- other options --------------------------------------------------------------------------

@bad(1)
def case_unknown_option(w):
    return ["-p", w["kernel"], "--no-such-option"], "--no-such-option"


@bad(1, append=False, modes=("load",))
def case_option_without_its_value(w):
    # last, so that getopt has nothing to take as its value
    return ["--sysroot", w["machine"], "-p", w["kernel"], "--initrd"], "--initrd"


@bad(255)
def case_bad_serial_port(w):
    return ["-p", w["kernel"], "--serial=ttyS9"], "ttyS9"


@bad(255)
def case_bad_serial_baud(w):
    return ["-p", w["kernel"], "--serial-baud=1000"], "1000"


@bad(1)
def case_preserve_context_without_mem_max(w):
    return ["-l", "--load-preserve-context", w["kernel"]], "--mem-max"


@bad(1)
def case_reuseinitrd(w):
    return ["-p", w["kernel"], "--reuseinitrd"], "--reuseinitrd"


@bad(1, append=False)
def case_status_with_a_loader_option(w):
    return ["-S", f"--initrd={w['initrd']}"], "--initrd"


@bad(1, append=False)
def case_unload_with_append(w):
    return ["-u", "--append=x"], "--append"


# --- --save-plan / --svg targets (-c: written before the load) ------------------------------

@bad(255)
def case_save_plan_into_a_file(w):
    target = put(w, "not-a-folder", b"x")
    return ["-c", "-p", w["kernel"], f"--save-plan={target}"], "not-a-folder"


@bad(255)
def case_save_plan_into_a_folder_with_other_files(w):
    folder = w["dir"] / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"\xff\xd8")
    return ["-c", "-p", w["kernel"], f"--save-plan={folder}"], "photos"


@bad(255)
def case_save_plan_under_a_missing_folder(w):
    return (["-c", "-p", w["kernel"], f"--save-plan={w['dir'] / 'no-such' / 'plan'}"],
            "no-such")


@bad(255)
def case_svg_under_a_missing_folder(w):
    return ["-c", "-p", w["kernel"], f"--svg={w['dir'] / 'gone' / 'p.svg'}"], "gone"


# --- pykexec inspect ------------------------------------------------------------------------

def _plan_folder(w, doc=None, segments=None, name="plan"):
    """A plan folder with plan.json `doc` (a good one-segment plan when None)."""
    folder = w["dir"] / name
    folder.mkdir()
    data = b"\x90" * 16
    (folder / "segment-00.bin").write_bytes(data)
    import hashlib
    good = {"format": 1, "arch": "x86_64", "syscall": "kexec_load", "flags": 1,
            "entry": 0x1000, "cmdline": "", "notes": {},
            "segments": [{"index": 0, "kind": "kernel", "mem": 0x1000, "memsz": 0x1000,
                          "bufsz": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                          "file": "segment-00.bin", "source": ""}]}
    if segments is not None:
        good["segments"][0].update(segments)
    text = doc if isinstance(doc, str) else json.dumps(good if doc is None else doc)
    (folder / "plan.json").write_text(text)
    return folder


@bad(1, **ONCE)
def case_inspect_missing(w):
    return ["inspect", str(w["dir"] / "nothing-here")], "nothing-here"


@bad(1, **ONCE)
def case_inspect_fifo(w):
    path = w["dir"] / "pipe"
    os.mkfifo(path)
    return ["inspect", str(path)], "pipe"


@bad(1, **ONCE)
def case_inspect_dev_zero(w):
    return ["inspect", "/dev/zero"], "/dev/zero"


@bad(1, **ONCE)
def case_inspect_huge_sparse_file(w):
    path = w["dir"] / "sparse"
    with open(path, "wb") as f:
        f.truncate(2 << 30)
    return ["inspect", str(path)], "sparse"


@bad(1, **ONCE)
def case_inspect_folder_without_plan(w):
    (w["dir"] / "empty-folder").mkdir()
    return ["inspect", str(w["dir"] / "empty-folder")], "empty-folder"


@bad(1, **ONCE)
def case_inspect_plan_json_a_list(w):
    return ["inspect", str(_plan_folder(w, doc=[1, 2, 3]))], "plan.json"


@bad(1, **ONCE)
def case_inspect_plan_json_not_json(w):
    return ["inspect", str(_plan_folder(w, doc="{not json"))], "plan.json"


@bad(1, **ONCE)
def case_inspect_plan_json_is_a_folder(w):
    folder = w["dir"] / "plan"
    (folder / "plan.json").mkdir(parents=True)
    return ["inspect", str(folder)], "plan.json"


@bad(1, **ONCE)
def case_inspect_plan_segments_not_a_list(w):
    doc = {"format": 1, "arch": "x86_64", "syscall": "kexec_load", "flags": 0,
           "segments": {"0": "segment-00.bin"}}
    return ["inspect", str(_plan_folder(w, doc=doc))], "'segments'"


@bad(1, **ONCE)
def case_inspect_plan_segment_a_string(w):
    doc = {"format": 1, "arch": "x86_64", "syscall": "kexec_load", "flags": 0,
           "segments": ["segment-00.bin"]}
    return ["inspect", str(_plan_folder(w, doc=doc))], "segment 0"


@bad(1, **ONCE)
def case_inspect_plan_mem_a_string(w):
    return ["inspect", str(_plan_folder(w, segments={"mem": "0x1000"}))], "'mem'"


@bad(1, **ONCE)
def case_inspect_plan_memsz_negative(w):
    return ["inspect", str(_plan_folder(w, segments={"memsz": -4096}))], "'memsz'"


@bad(1, **ONCE)
def case_inspect_plan_segment_file_missing(w):
    folder = _plan_folder(w)
    os.remove(folder / "segment-00.bin")
    return ["inspect", str(folder)], "segment-00.bin"


@bad(1, **ONCE)
def case_inspect_plan_segment_file_a_folder(w):
    folder = _plan_folder(w)
    os.remove(folder / "segment-00.bin")
    (folder / "segment-00.bin").mkdir()
    return ["inspect", str(folder)], "segment-00.bin"


@bad(1, **ONCE)
def case_inspect_plan_segment_file_outside(w):
    (w["dir"] / "secret").write_bytes(b"\x90" * 16)
    return ["inspect", str(_plan_folder(w, segments={"file": "../secret"}))], "../secret"


@bad(1, **ONCE)
def case_inspect_plan_segment_file_absolute(w):
    return ["inspect", str(_plan_folder(w, segments={"file": "/etc/hostname"}))], "/etc/hostname"


@bad(1, **ONCE)
def case_inspect_plan_segment_symlink_out(w):
    folder = _plan_folder(w)
    os.remove(folder / "segment-00.bin")
    os.symlink("/etc/hostname", folder / "segment-00.bin")
    return ["inspect", str(folder)], "segment-00.bin"


@bad(1, **ONCE)
def case_inspect_plan_segment_fifo(w):
    folder = _plan_folder(w)
    os.remove(folder / "segment-00.bin")
    os.mkfifo(folder / "segment-00.bin")
    return ["inspect", str(folder)], "segment-00.bin"


@bad(1, **ONCE)
def case_inspect_plan_bufsz_wrong(w):
    return ["inspect", str(_plan_folder(w, segments={"bufsz": 15}))], "segment-00.bin"


@bad(1, **ONCE)
def case_inspect_plan_sha256_wrong(w):
    return ["inspect", str(_plan_folder(w, segments={"sha256": "00" * 32}))], "sha256"


@bad(1, **ONCE)
def case_inspect_plan_unknown_format(w):
    return ["inspect", str(_plan_folder(w, doc={"format": 99}))], "format 99"


@bad(1, **ONCE)
def case_inspect_truncated_elf_head(w):
    return ["inspect", put(w, "elf-head", elf_kernel()[:40])], "elf-head"


@bad(1, **ONCE)
def case_inspect_elf_program_headers_cut(w):
    return ["inspect", put(w, "elf-cut", elf_kernel()[:80])], "elf-cut"


@bad(1, **ONCE)
def case_inspect_truncated_bzimage_head(w):
    return ["inspect", put(w, "bz-head", bzimage_bytes(FakeKernel())[:0x210])], "bz-head"


@bad(1, **ONCE)
def case_inspect_truncated_core_head(w):
    core = bytearray(elf_kernel()[:64])
    core[16] = 4        # ET_CORE
    return ["inspect", put(w, "vmcore-head", bytes(core))], "vmcore-head"


# --- pykexec snapshot -----------------------------------------------------------------------

@bad(1, **ONCE)
def case_snapshot_into_a_file(w):
    return ["snapshot", put(w, "a-file", b"x"), "--sysroot", w["machine"]], "a-file"


@bad(1, **ONCE)
def case_snapshot_without_destination(w):
    return ["snapshot"], "DEST"


@bad(1, **ONCE)
def case_snapshot_empty_name(w):
    return ["snapshot", "", "--sysroot", w["machine"]], "empty"


@bad(1, **ONCE)
def case_snapshot_under_proc(w):
    return ["snapshot", "/proc/no-such-dir/snap", "--sysroot", w["machine"]], "/proc/no-such-dir"


@bad(1, **ONCE)
def case_inspect_object_with_a_wild_string_table(w):
    """A relocatable object whose section-name table lies at 2**63 (pyelftools seeks there)."""
    import struct
    ehdr = struct.pack("<4sBBBBB7xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, 1, 62, 1,
                       0, 0, 64, 0, 64, 0, 0, 64, 2, 1)
    null = bytes(64)
    strtab = struct.pack("<IIQQQQIIQQ", 1, 3, 0, 0, 1 << 63, 16, 0, 0, 1, 0)
    return ["inspect", put(w, "wild.o", ehdr + null + strtab)], "wild.o"


@bad(1, **ONCE)
def case_inspect_plan_kexec_load_segment_without_address(w):
    return ["inspect", str(_plan_folder(w, segments={"mem": None}))], "'mem'"


def _sparse_elf(w, name, e_type, p_type):
    """A 3 GiB sparse ELF file whose one program header covers it all (zeros)."""
    import struct
    size = 3 << 30
    ehdr = struct.pack("<4sBBBBB7xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, e_type, 62, 1,
                       0x1000000, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", p_type, 4, 0x1000, 0, 0, size - 0x1000, size - 0x1000, 4)
    path = w["dir"] / name
    with open(path, "wb") as f:
        f.write(ehdr + phdr)
        f.truncate(size)
    return str(path)


@bad(1, **ONCE)
def case_inspect_core_with_a_3gib_note(w):
    return ["inspect", _sparse_elf(w, "vmcore-huge-note", 4, 4)], "vmcore-huge-note"


@bad(255)
def case_svg_into_a_full_device(w):
    return ["-c", "-p", w["kernel"], "--svg=/dev/full"], "/dev/full: No space left on device"


@bad(1)   # -c: kexec-tools' slurp_file dies
def case_kernel_name_with_a_newline(w):
    return ["-c", "-p", str(w["dir"] / "no\nsuch")], "no\\nsuch"
