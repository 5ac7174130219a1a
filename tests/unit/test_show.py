"""The dry-run report and its JSON, checked against the numbers the plan itself holds."""

import io
import json
import re

from pykexec.views.show import describe_plan, plan_report, plan_summary, print_plan
from tests.unit._plans import (BACKUP_AT, CORE_AT, CRASH, E820, KERNEL_AT, PARAMS_AT, PHDRS,
                               PURGATORY_AT, USER_CMDLINE, file_load_plan, labelled_plan)

ROW = re.compile(r"^\s*(\d+)\s+(\w+)\s+0x([0-9a-f]+)-0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)"
                 r"\s+([0-9a-f]{12})\s+(.*)$")


def report(plan, machine=None):
    out = io.StringIO()
    print_plan(plan, as_json=False, out=out, machine=machine)
    return out.getvalue()


def as_json(plan):
    out = io.StringIO()
    print_plan(plan, as_json=True, out=out)
    return json.loads(out.getvalue())


def test_segment_table_parses_back_to_the_plan():
    plan = labelled_plan()
    rows = [ROW.match(line) for line in report(plan).splitlines()]
    rows = [m for m in rows if m]
    assert len(rows) == len(plan.segments)
    for m, seg in zip(rows, plan.segments):
        index, kind, first, last, memsz, bufsz, sha, source = m.groups()
        assert plan.segments[int(index)] is seg
        assert kind == seg.kind
        assert int(first, 16) == seg.mem and int(last, 16) == seg.mem + seg.memsz - 1
        assert int(memsz, 16) == seg.memsz and int(bufsz, 16) == seg.bufsz
        assert seg.sha256.startswith(sha)
        assert source.strip() == seg.source


def test_json_integers_are_the_plans():
    plan = labelled_plan()
    doc = as_json(plan)
    assert doc["flags"] == plan.flags and doc["entry"] == plan.entry
    assert isinstance(doc["flags"], int)
    for s, seg in zip(doc["segments"], plan.segments):
        assert (s["mem"], s["memsz"], s["bufsz"], s["sha256"], s["kind"], s["source"]) == \
            (seg.mem, seg.memsz, seg.bufsz, seg.sha256, seg.kind, seg.source)
        assert s["end"] == seg.mem + seg.memsz
    assert doc["total_memsz"] == sum(s.memsz for s in plan.segments)
    assert [(e["addr"], e["size"], e["type"]) for e in doc["e820"]] == E820
    assert doc["e820"][-1]["where"] == "boot_params"   # 7 entries all fit the zero page
    core = doc["elf_core_header"]
    assert core["address"] == CORE_AT
    assert [(p["type"], p["offset"], p["paddr"], p["memsz"]) for p in core["program_headers"]] == PHDRS
    assert doc["elfcorehdr_parameter"] == CORE_AT
    assert doc == json.loads(json.dumps(plan_summary(plan)))   # the CLI's JSON is plan_summary


def test_json_keys_are_stable():
    doc = as_json(labelled_plan())
    assert {"arch", "syscall", "flags", "flag_names", "entry", "cmdline", "cmdline_parameters",
            "crash_window", "crash_windows", "segments", "elf_core_header", "e820", "setup_data",
            "boot_header", "purgatory", "notes"} <= set(doc)
    assert set(doc["segments"][0]) >= {"index", "kind", "mem", "end", "memsz", "bufsz",
                                       "sha256", "source", "purpose"}


def test_program_headers_say_what_they_stand_for():
    doc = describe_plan(labelled_plan())
    phdrs = doc["elf_core_header"]["program_headers"]
    assert [p["stands_for"] for p in phdrs] == ["cpu_notes", "vmcoreinfo", "kernel_text",
                                                "ram_backup", "ram", "ram"]
    assert phdrs[3]["backup_copy"] == BACKUP_AT
    text = plan_report(labelled_plan())
    assert f"read from the backup copy at {BACKUP_AT:#x}" in text
    assert "vmcoreinfo" in text and "kernel text" in text
    assert doc["elf_core_header"]["dumped_bytes"] == sum(p[3] for p in PHDRS[3:])


def test_cpu_numbers_come_from_the_notes_when_recorded():
    plan = labelled_plan({"cpu_notes": [[3, PHDRS[0][2], PHDRS[0][3]]]})
    phdrs = describe_plan(plan)["elf_core_header"]["program_headers"]
    assert phdrs[0]["cpu"] == 3
    assert "CPU 3 notes" in plan_report(plan)


def test_crash_window_inferred_from_the_core_header_gap():
    doc = describe_plan(labelled_plan())
    assert (doc["crash_window"]["start"], doc["crash_window"]["end"]) == CRASH
    assert doc["crash_window"]["size"] == CRASH[1] - CRASH[0]
    inside = [s["index"] for s in doc["segments"] if s["in_crash_window"]]
    assert inside == list(range(7))
    assert f"[{CRASH[0]:#x}, {CRASH[1]:#x})" in plan_report(labelled_plan())


def test_crash_window_from_plan_notes_wins():
    window = [0x2D000000, 0x3E000000]
    doc = describe_plan(labelled_plan({"crash_window": window}))
    assert [doc["crash_window"]["start"], doc["crash_window"]["end"]] == window
    assert doc["crash_window"]["source"] == "plan notes"
    in_window = [e for e in doc["e820"] if e["in_crash_window"]]
    assert [(e["addr"], e["size"]) for e in in_window] == [(0x2E000000, CORE_AT - 0x2E000000)]


def test_added_command_line_parameters_are_marked():
    plan = labelled_plan({"user_cmdline": USER_CMDLINE})
    doc = describe_plan(plan)
    added = [p["text"] for p in doc["cmdline_parameters"] if p["added_by_loader"]]
    assert added == ["acpi_rsdp=0xf59d0", f"elfcorehdr={CORE_AT // 1024}K"]
    assert " ".join(p["text"] for p in doc["cmdline_parameters"]) == doc["cmdline"]
    text = plan_report(plan)
    marked = [line.split()[1] for line in text.splitlines() if line.startswith("  + ")]
    assert marked == added
    # An oracle plan's argv says what the user appended.
    oracle = labelled_plan({"argv": ["-p", "k", f"--append={USER_CMDLINE}"]})
    assert [p["text"] for p in describe_plan(oracle)["cmdline_parameters"]
            if p["added_by_loader"]] == added


def test_purgatory_registers_and_symbols():
    symbols = {"sha256_digest": "00" * 32, "entry64_regs": PURGATORY_AT + 0x5000}
    plan = labelled_plan({"purgatory_symbols": symbols})
    pg = describe_plan(plan)["purgatory"]
    regs = {r["name"]: r["value"] for r in pg["registers"]}
    assert regs["rsi"] == PARAMS_AT and regs["rip"] == KERNEL_AT + 0x200
    assert regs["rsp"] == PURGATORY_AT + 0x7000
    assert pg["register_block"] == PURGATORY_AT + 0x5000
    assert pg["entry"] == plan.entry and pg["entry_in"]["kind"] == "purgatory"
    rip = next(r for r in pg["registers"] if r["name"] == "rip")
    assert rip["points_to"] == {"segment": 2, "kind": "kernel", "offset": 0x200}
    text = plan_report(plan)
    assert f"entry64_regs = {PURGATORY_AT + 0x5000:#x}" in text
    line = next(l for l in text.splitlines() if l.strip().startswith("rip"))
    assert int(line.split("=")[1].split()[0], 16) == KERNEL_AT + 0x200


def test_setup_data_chain_is_listed():
    doc = describe_plan(labelled_plan())
    assert [(s["type"], s["len"]) for s in doc["setup_data"]] == [(9, 32), (1, 60)]
    assert doc["setup_data"][0]["type_name"] == "SETUP_RNG_SEED"


def test_file_load_plan_has_no_addresses():
    plan = file_load_plan()
    doc = as_json(plan)
    assert [s["mem"] for s in doc["segments"]] == [None, None]
    assert doc["crash_window"] is None and doc["elf_core_header"] is None
    assert doc["flag_names"] == ["KEXEC_FILE_ON_CRASH"]
    text = report(plan)
    assert "(file descriptor)" in text and "console=ttyS0 irqpoll" in text


def test_functions_are_pure():
    plan = labelled_plan()
    assert plan_report(plan) == plan_report(plan)
    assert describe_plan(plan) == describe_plan(plan)


def test_loader_notes_label_notes_and_symbols():
    labels = ["CPU 5 notes", "vmcoreinfo", "kernel text", "RAM backup", "RAM", "RAM"]
    regions = [[0x39E00000, 0x3F98000], [0x3DF4E000, 0x6000]]
    plan = labelled_plan({"core_header": labels, "purgatory_symbols": {
        "panic_kernel": 1, "sha256_regions": regions,
        "symbol_addresses": {"panic_kernel": PURGATORY_AT + 0x5100}}})
    phdrs = describe_plan(plan)["elf_core_header"]["program_headers"]
    assert phdrs[0]["cpu"] == 5 and phdrs[1]["stands_for"] == "vmcoreinfo"
    text = plan_report(plan)
    assert f"panic_kernel = 0x1  (at {PURGATORY_AT + 0x5100:#x})" in text
    listed = re.findall(r"^\s+(0x[0-9a-f]+) \+ (0x[0-9a-f]+)\s+segment #(\d+)", text, re.M)
    assert [(int(a, 16), int(n, 16)) for a, n, _i in listed] == [tuple(r) for r in regions]
    assert [int(i) for *_x, i in listed] == [2, 3]
    unchecked = next(l for l in text.splitlines() if "not checked" in l)
    assert {int(i) for i in re.findall(r"#(\d+)", unchecked)} == {0, 1, 4, 5, 6}
