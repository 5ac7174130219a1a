"""Views and vmcore reach an architecture's decoding only through the registry: what each
architecture offers satisfies the declared protocols, and a plan or dump of an
architecture pykexec has no module for gets the generic facts only (no x86 guess)."""

import dataclasses

import pytest

from pykexec.abi.elf import EM_386, EM_AARCH64, EM_X86_64
from pykexec.abi.machines import EM_S390
from pykexec.arch import by_elf_machine, by_name, image_explainers
from pykexec.arch.dumpreader import DumpReader
from pykexec.arch.interfaces import ImageExplainer, PlanDecoder
from pykexec.views.planfacts import decode_plan
from pykexec.views.show import describe_plan
from pykexec.vmcore.arch import arch_for
from tests.unit.test_planfacts import make_plan


@pytest.mark.parametrize("name, e_machine", [("x86_64", EM_X86_64), ("i386", EM_386),
                                             ("arm64", EM_AARCH64)])
def test_each_architecture_offers_the_view_hooks(name, e_machine):
    arch = by_name(name)
    assert by_elf_machine(e_machine) is arch
    assert isinstance(arch.plan_decoder(), PlanDecoder)
    assert isinstance(arch.image_explainer(), ImageExplainer)
    assert issubclass(arch.dump_reader(), DumpReader)
    assert arch_for(e_machine) is arch.dump_reader()


def test_unknown_architectures_get_the_generic_readers():
    assert by_name("sparc64") is None
    assert by_elf_machine(EM_S390) is None
    assert arch_for(EM_S390) is DumpReader
    assert len(image_explainers()) == 2          # x86_64 and i386 share x86's; arm64's


def test_a_plan_of_an_unknown_architecture_decodes_generic_facts_only():
    plan = make_plan()
    known = decode_plan(plan)
    assert known.e820 and known.registers and known.boot_header
    foreign = decode_plan(dataclasses.replace(plan, arch="sparc64"))
    assert (foreign.e820, foreign.registers, foreign.boot_header) == ((), None, {})
    assert foreign.program_headers == known.program_headers   # the ELF core header is generic
    facts = describe_plan(dataclasses.replace(plan, arch="sparc64"))
    assert facts["e820"] == [] and facts["setup_data"] == []
    # no kernel-text rule either: every core PT_LOAD counts as dumped RAM
    assert facts["elf_core_header"]["dumped_bytes"] > describe_plan(plan)["elf_core_header"]["dumped_bytes"]
