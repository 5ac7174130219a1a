"""Parser-level properties: round trips, and arbitrary bytes raise only the parser's error type.

Each call runs under tests/fuzz/harness.py's time and memory bound: a CPU list such as
"0-4294967295" must be refused, not expanded.
"""

from __future__ import annotations

import functools

from hypothesis import example, given, strategies as st

from pykexec import machine as pmachine
from tests.bed import synthetic
from tests.fuzz import harness
from tests.fuzz import strategies as fz
from tests.fuzz.profiles import examples

PARSE_SECONDS = 5
PARSE_PEAK = 32 << 20


def bounded(fn, *args):
    """fn(*args) in a bounded child; the child's exception comes back as its class name."""
    def call():
        try:
            return ("ok", fn(*args))
        except Exception as e:  # noqa: BLE001 - judged by the caller
            return ("raised", e.__class__.__name__, str(e))
    result = harness.in_child(call, seconds=PARSE_SECONDS, peak=PARSE_PEAK,
                              what=f"{getattr(fn, '__name__', 'call')}{args!r:.200}")
    return result


def returns(fn, *args):
    result = bounded(fn, *args)
    assert result[0] == "ok", result
    return result[1]


def raises_only(allowed, fn, *args):
    result = bounded(fn, *args)
    assert result[0] == "ok" or result[1] in allowed, result


@examples(0.3)
@given(fz.iomem_trees())
def test_iomem_round_trip(lines):
    tree = returns(pmachine.parse_iomem, fz.render_iomem(lines))
    got = [(n.range.start, n.range.end - 1, n.name, n.depth) for n in tree.walk()]
    assert got == [(l.start, l.end, l.name, l.depth) for l in lines]


@examples(0.3)
@given(fz.hostile_text())
def test_iomem_garbage_raises_only_machine_error(text):
    raises_only({"MachineError"}, pmachine.parse_iomem, text)


@examples(0.3)
@given(fz.machines(mutate=False).filter(lambda m: m.layout is not None).flatmap(
    lambda m: st.tuples(st.just(m), fz.machine_mutations(synthetic.snapshot_files(m.layout)))))
def test_mutated_iomem_raises_only_machine_error(case):
    _, changes = case
    text = changes.get("proc/iomem")
    if text:
        raises_only({"MachineError"}, pmachine.parse_iomem, text.decode("latin-1"))


@examples(0.3)
@given(fz.cpu_sets())
def test_cpu_list_round_trip(cpus):
    assert list(returns(pmachine.parse_cpu_list, fz.render_cpu_list(cpus))) == cpus


@examples(0.3)
@given(fz.CPU_LIST_HOSTILE)
@example("0-4294967295")
def test_cpu_list_garbage_raises_only_value_error(text):
    raises_only({"ValueError", "MachineError"}, pmachine.parse_cpu_list, text)


@functools.lru_cache(maxsize=None)
def _kcore():
    return synthetic.kcore_header_bytes(synthetic.machine_layout(synthetic.PRESETS["qemu_like_1g"]))


@examples(0.3)
@given(st.data())
def test_kcore_header_garbage_raises_only_machine_error(data):
    blob = data.draw(st.one_of(fz.mutate_bytes(_kcore()[:2048], 12), st.binary(max_size=256)))
    raises_only({"MachineError"}, pmachine.parse_kcore_loads, blob)


@functools.lru_cache(maxsize=None)
def _purgatory(arch):
    from pykexec.purgatory.build import purgatory_object
    from tests.unit.relocs import SPECS
    return purgatory_object(SPECS[arch])


@examples(0.3)
@given(arch=st.sampled_from(["x86_64", "i386"]), data=st.data())
def test_purgatory_object_garbage_raises_only_elfrel_error(arch, data):
    from pykexec.purgatory.elfrel import ElfRelError, RelocatableObject
    from tests.unit.relocs import X86_RELOCATIONS
    blob = data.draw(fz.mutate_bytes(_purgatory(arch), 6))
    base = data.draw(st.one_of(st.just(0x3EF5A000), fz.edge_ints()))

    def parse_and_place():
        obj = RelocatableObject.from_bytes(blob, relocations=X86_RELOCATIONS)
        obj.layout(base - base % max(obj.required_alignment, 1))

    raises_only({c.__name__ for c in (ElfRelError, *ElfRelError.__subclasses__())}, parse_and_place)
