"""Hypothesis profiles for the fuzz tests (applied by `examples()` in each fuzz test).

- "ci" (default): part of the normal suite, with a fixed seed (CI_SEED); all fuzz tests together take about 2-3 minutes on
  a 2-core machine; no shrinking. Reads the committed corpus (tests/fuzz/corpus) so every failure a long
  run found and kept is replayed first, but never writes it (CI leaves the tree clean).
- "long": what scripts/fuzz runs: many more examples, writing new failures to the corpus.
- "dev": a quick smoke run while editing (PYKEXEC_FUZZ_PROFILE=dev).

Per-example time and memory bounds are in tests/fuzz/harness.py (SIGALRM, tracemalloc,
RLIMIT_AS); hypothesis' own deadline is off because timing on a shared machine is noisy
and a deadline miss would be reported as a flaky failure instead of a hang.
"""

import os

from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis.database import DirectoryBasedExampleDatabase, ReadOnlyDatabase

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
SCALE = float(os.environ.get("PYKEXEC_FUZZ_SCALE", "1"))
_common = dict(deadline=None, derandomize=False, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.filter_too_much])

# CI does not shrink: a failure is reported as found (with its @reproduce_failure blob), so a
# failing run stays within minutes; scripts/fuzz shrinks and keeps the small example.
settings.register_profile("ci", max_examples=500, **_common,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target],
                          database=ReadOnlyDatabase(DirectoryBasedExampleDatabase(CORPUS)))
settings.register_profile("long", max_examples=max(1, int(5000 * SCALE)), **_common,
                          database=DirectoryBasedExampleDatabase(CORPUS))
settings.register_profile("dev", max_examples=20, **_common, database=None)
# Applied per fuzz test (never loaded globally: the other suites keep their own settings).
PROFILE_NAME = os.environ.get("PYKEXEC_FUZZ_PROFILE", "ci")
PROFILE = settings.get_profile(PROFILE_NAME)
# CI draws the same examples every run (after the corpus), so a submission's CI result is its
# own and not a draw; finding new inputs is scripts/fuzz's job, and what it finds joins the
# corpus that CI replays first.
CI_SEED = 20261129


def examples(share: float):
    """The fuzz profile for one test, with `share` x its max_examples (at least 5)."""
    chosen = settings(PROFILE, max_examples=max(5, int(PROFILE.max_examples * share)))
    if PROFILE_NAME != "ci":
        return chosen
    return lambda test: seed(CI_SEED)(chosen(test))
