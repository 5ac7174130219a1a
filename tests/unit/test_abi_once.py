"""Every ABI constant and binary layout is declared once, and used from its declaration.

The generic kexec ABI lives in pykexec/abi/kexec.py; x86's own values (its kexec arch
value, __START_KERNEL_map, purgatory's register blocks) in pykexec/arch/x86/abi.py; the
boot protocol's layouts in pykexec/arch/x86/bootparams.py. These tests read the package
source (and the purgatory's C header and assembly) to keep it so.
"""

import ast
import os
import re

import pytest

from pykexec.abi.fields import field_names, field_offset
from pykexec.arch.x86.abi import Entry32Regs, Entry64Regs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(ROOT, "pykexec")

# Files still being reshaped on another branch, with what happens to them there. The lead
# removes an entry when that branch lands (then the checks below cover the file again).
PENDING = {}  # files not yet held to these rules, each with its reason

# pack_into/unpack_from calls whose offset holds a number, and why that number is not a
# layout to declare.
LITERAL_OFFSET_REASONS = {
    "pykexec/vmcore/dmesg.py": "printk_info's facility/flags byte pair follows its u16 "
                               "text_len (+2; +4 in the old printk_log); VMCOREINFO, the "
                               "only source of these layouts, gives no offset for them",
}


def _sources():
    for folder, _, names in os.walk(PACKAGE):
        if "__pycache__" in folder or "_purgatory" in folder:
            continue
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, ROOT)
                if rel not in PENDING:
                    with open(path, encoding="utf-8") as f:
                        yield rel, f.read()


def _definitions(pattern):
    regex = re.compile(pattern, re.M)
    return [f"{rel}:{text.count(chr(10), 0, m.start()) + 1}"
            for rel, text in _sources() for m in regex.finditer(text)]


CONSTANTS = ("KEXEC_ON_CRASH", "KEXEC_PRESERVE_CONTEXT", "KEXEC_UPDATE_ELFCOREHDR",
             "KEXEC_ARCH_MASK", "KEXEC_ARCH_DEFAULT", "KEXEC_ARCH_X86_64",
             "KEXEC_FILE_UNLOAD", "KEXEC_FILE_ON_CRASH", "KEXEC_FILE_NO_INITRAMFS",
             "KEXEC_FILE_DEBUG", "KEXEC_FILE_NO_CMA", "KEXEC_FILE_FORCE_DTB",
             "LINUX_REBOOT_CMD_KEXEC", "START_KERNEL_MAP", "SETUP_HEADER_OFFSET")


@pytest.mark.parametrize("name", CONSTANTS)
def test_each_constant_is_assigned_once(name):
    found = _definitions(rf"^\s*{name}\s*=")
    assert len(found) == 1, f"{name} assigned {len(found)} times: {found}"


@pytest.mark.parametrize("what, pattern", [
    ("__START_KERNEL_map", r"0x_?[fF]{4}_?[fF]{4}_?80{7}\b"),
    ("LINUX_REBOOT_CMD_KEXEC", r"0x45584543\b"),
    ("the 64-bit register block", r'"rax",\s*"rbx",\s*"rcx",\s*"rdx"'),
    ("the 32-bit register block", r'"eax",\s*"ebx",\s*"ecx",\s*"edx",\s*"esi"'),
])
def test_each_value_is_written_once(what, pattern):
    found = _definitions(pattern)
    assert len(found) == 1, f"{what} written {len(found)} times: {found}"


def test_setup_header_offsets_come_from_the_declaration():
    """No (offset, field) table repeats bootparams.SetupHeader (inspect had one)."""
    assert not _definitions(r'\(0x[0-9a-fA-F]+,\s*"(?:setup_sects|cmd_line_ptr|xloadflags)"')


def _literal_offsets(rel, text):
    """`pack_into`/`unpack_from` calls whose offset argument contains a number."""
    out = []
    for node in ast.walk(ast.parse(text, rel)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("pack_into", "unpack_from")):
            continue
        offset = node.args[2] if len(node.args) > 2 else next(
            (k.value for k in node.keywords if k.arg == "offset"), None)
        if offset is not None and any(isinstance(n, ast.Constant) and isinstance(n.value, int)
                                      for n in ast.walk(offset)):
            out.append(f"{rel}:{node.lineno}")
    return out


def test_no_literal_offsets_bypass_the_declarations():
    found = [hit for rel, text in _sources() if rel not in LITERAL_OFFSET_REASONS
             for hit in _literal_offsets(rel, text)]
    assert not found, "struct offsets written as numbers (declare the layout):\n" + "\n".join(found)


def test_the_literal_offset_check_finds_one():
    planted = "import struct\nstruct.pack_into('<I', page, 0x1C8, 40)\nstruct.unpack_from('<H', b, off)\n"
    assert _literal_offsets("planted.py", planted) == ["planted.py:2"]


def test_the_old_bootparams_place_is_unused():
    """pykexec.abi.bootparams only re-exports x86's until machine/ imports the new place."""
    assert not _definitions(r"pykexec\.abi\.bootparams|from pykexec\.abi import [^\n]*\bbootparams\b")


# ---------------------------------------------------------------------------------------
# The register blocks: one Python declaration, the C header and the assembly checked against it

def _c_struct_fields(header, struct_name):
    text = open(os.path.join(ROOT, header)).read()
    body = re.search(rf"struct {struct_name} \{{(.*?)\}};", text, re.S).group(1)
    fields = []
    for ctype, names in re.findall(r"(uint(?:32|64)_t)\s+([^;]+);", body):
        fields += [(name.strip(), int(ctype[4:6]) // 8) for name in names.split(",")]
    return fields


def _asm_offsets(source, prefix):
    text = open(os.path.join(ROOT, source)).read()
    offsets = {name.lower(): int(value, 0)
               for name, value in re.findall(r"#define R_(\w+)\s+(\w+)", text)}
    size = int(re.search(rf"#define {prefix}_SIZE\s+(\w+)", text).group(1), 0)
    return offsets, size


@pytest.mark.parametrize("layout, symbol, folder, entry", [
    (Entry64Regs, "entry64_regs", "arch/x86_64/purgatory", "entry64.S"),
    (Entry32Regs, "entry32_regs", "arch/i386/purgatory", "entry32.S"),
])
def test_purgatory_register_block_matches_the_declaration(layout, symbol, folder, entry):
    names = field_names(layout)
    word = layout.sizeof() // len(names)
    assert _c_struct_fields(f"{folder}/arch.h", symbol) == [(n, word) for n in names]
    offsets, size = _asm_offsets(f"{folder}/{entry}", symbol.upper())
    assert offsets == {n: field_offset(layout, n) for n in names}
    assert size == layout.sizeof()
    # every register the assembly loads is one of the block's, at its declared offset
    loads = re.findall(rf"{symbol}\+R_(\w+)", open(os.path.join(ROOT, folder, entry)).read())
    assert sorted(set(r.lower() for r in loads)) == sorted(names)


def test_the_register_check_sees_a_reordered_header(tmp_path):
    header = tmp_path / "arch.h"
    header.write_text("struct entry32_regs {\n\tuint32_t ebx, eax, ecx, edx, esi, edi, esp, ebp;"
                      "\n\tuint32_t eip;\n};\n")
    fields = _c_struct_fields(str(header), "entry32_regs")
    assert [n for n, _ in fields][:2] == ["ebx", "eax"]
    assert [n for n, _ in fields] != list(field_names(Entry32Regs))
