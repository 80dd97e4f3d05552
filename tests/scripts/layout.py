"""Prints, as JSON, where this CPython keeps what premain's probes read (the object layout of
monitor/src/kernel/probes.rs), measured on live objects with ctypes:

  co_filename  offset of co_filename in a code object
  str_data     offset of a compact ASCII str's characters
  str_state    offset of the byte of PyASCIIObject.state that holds the ascii bit
  ascii_bit    that bit (set for an ASCII str, clear for a Latin-1 one)
"""

import ctypes
import json
import struct
import sys


def peek(address, size):
    return ctypes.string_at(address, size)


def pointer_offset(obj, target, limit=256):
    for off in range(0, limit, ctypes.sizeof(ctypes.c_void_p)):
        if ctypes.c_void_p.from_address(id(obj) + off).value == id(target):
            return off
    raise SystemExit("not found")


code = compile("pass", "/premain/layout/probe.py", "exec")
# Same length: only the hash, the state and the characters differ between them.
asciis = ["premain-layout-probe-" + t for t in ("abc", "xyz", "klm", "qrs")]
latins = ["premain-layout-probe-" + t for t in ("\xe9\xe9\xe9", "\xe0\xe1\xe2", "\xf0\xf1\xf2", "\xc0\xc1\xc2")]
data = peek(id(asciis[0]), 128).find(asciis[0].encode())


def hash_bytes(s):
    # The cached hash is random per run (PYTHONHASHSEED): its bytes can agree by chance.
    raw = peek(id(s), data)
    at = raw.find(struct.pack("n", hash(s)))
    return range(at, at + struct.calcsize("n")) if at >= 0 else range(0)


heads = [peek(id(s), data) for s in asciis]
lats = [peek(id(s), data) for s in latins]
skip = set().union(*(hash_bytes(s) for s in asciis + latins))
# The state byte: the same in every ASCII string, the ascii bit set in all of them and clear in
# every Latin-1 one.
state = next(
    i
    for i in range(2 * ctypes.sizeof(ctypes.c_void_p), data)
    if i not in skip
    and len({h[i] for h in heads}) == 1
    and all(heads[0][i] & ~l[i] for l in lats)
)
bit = heads[0][state]
for l in lats:
    bit &= ~l[state]
json.dump(
    {
        "version": "%d.%d" % sys.version_info[:2],
        "co_filename": pointer_offset(code, code.co_filename),
        "str_data": data,
        "str_state": state,
        "ascii_bit": bit,
    },
    sys.stdout,
)
print()
