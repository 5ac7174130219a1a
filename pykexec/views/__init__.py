"""Showing a plan: report, JSON, picture, and explaining kernels, objects and dumps."""
