"""The plan's building blocks: ranges, placement, the plan value, core headers, command lines, input files."""
