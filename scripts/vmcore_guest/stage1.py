"""First kernel of scripts/capture-vmcore-head: the bed's own stage 1, unchanged."""
import os
import runpy
import sys

BED_GUEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "bed", "guest")
sys.argv[0] = os.path.join(BED_GUEST, "stage1.py")
runpy.run_path(sys.argv[0], run_name="__main__")
