"""Runtime workload: one process, many function-local imports of cached modules and many
file opens. argv: <file to open> [imports] [opens]."""
import sys

path = sys.argv[1]
imports = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
opens = int(sys.argv[3]) if len(sys.argv) > 3 else 30_000


def local_import():
    import os  # noqa: F401  (cached after the first call: a sys.modules lookup)


for _ in range(imports):
    local_import()
for _ in range(opens):
    open(path, "rb").close()
