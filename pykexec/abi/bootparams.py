"""Moved to pykexec.arch.x86.bootparams (x86's boot protocol belongs to x86).

Kept only until pykexec/machine/ (being split on another branch) imports the new place;
then this file goes. Nothing else may import it (tests/unit/test_abi_once.py checks).
"""

from pykexec.arch.x86.bootparams import *  # noqa: F401,F403
