"""Loads the fuzz tests' hypothesis profile (tests/fuzz/profiles.py) before they are collected."""

from tests.fuzz import profiles  # noqa: F401  (registers and loads the profile)
