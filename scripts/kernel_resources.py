"""Print what ptxas reports for each of gpunn's kernels: registers, shared memory, stack, spills.

    python scripts/kernel_resources.py [sm_90]

Compiles with NVRTC and CuPy's run-time options (no GPU needed); the table is Markdown.
"""

import sys

from gpunn.compute.kernel_source import resource_usage

arch = sys.argv[1] if len(sys.argv) > 1 else "sm_90"
print(f"| kernel ({arch}) | registers | shared bytes | stack bytes | spill stores | spill loads |")
print("|---|---|---|---|---|---|")
for name, usage in sorted(resource_usage(arch).items()):
    print(f"| {name} | " + " | ".join(str(value) for value in usage) + " |")
