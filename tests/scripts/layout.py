"""Prints, as JSON, where this CPython keeps what premain's probes read (the object layout of
monitor/src/python/layout.rs), measured on live objects with ctypes:

  co_filename    offset of co_filename in a code object
  str_length     offset of a str's length (in characters)
  str_data       offset of a compact ASCII str's characters
  str_wide_data  offset of the characters of a compact str that is not ASCII (Latin-1, UCS-2
                 and UCS-4 alike)
  str_state      offset of the byte of PyASCIIObject.state that holds the bits below
  ascii_bit      that byte's ascii bit (set for an ASCII str, clear for a Latin-1 one)
  compact_bit    its compact bit (set for every str, clear for an instance of a str subclass,
                 whose characters live elsewhere)
  kind_shift     where its 3-bit kind (bytes per character: 1, 2, 4) starts
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


def one(what, found):
    found = list(found)
    if len(found) != 1:
        raise SystemExit("%s: %r" % (what, found))
    return found[0]


code = compile("pass", "/premain/layout/probe.py", "exec")
# Same length: only the hash, the state and the characters differ between them.
asciis = ["premain-layout-probe-" + t for t in ("abc", "xyz", "klm", "qrs")]
latins = ["premain-layout-probe-" + t for t in ("\xe9\xe9\xe9", "\xe0\xe1\xe2", "\xf0\xf1\xf2", "\xc0\xc1\xc2")]
# Built at run time, so none of them is interned.
wides = {
    1: ("premain-layout-probe-" + "\xe9\xe0\xe8", "latin-1"),
    2: ("premain-layout-probe-" + "\u0437\u043b\u043e", "utf-16-le"),
    4: ("premain-layout-probe-" + "\U0001f40d\U0001f40d\U0001f40d", "utf-32-le"),
}
data = peek(id(asciis[0]), 128).find(asciis[0].encode())


class Sub(str):
    pass


sub = Sub("premain-layout-probe-sub")


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

samples = asciis + latins + [s for s, _ in wides.values()]
length = one(
    "length",
    (
        off
        for off in range(0, data, struct.calcsize("n"))
        if all(ctypes.c_ssize_t.from_address(id(s) + off).value == len(s) for s in samples)
    ),
)
wide_data = one("wide data", {peek(id(s), 256).find(s.encode(codec)) for s, codec in wides.values()})
states = {kind: peek(id(s), data)[state] for kind, (s, _) in wides.items()}
# Set in every plain str, whatever its kind, and clear in the subclass's instance.
common = 0xFF
for s in samples:
    common &= peek(id(s), data)[state]
compact_bit = common & ~peek(id(sub), data)[state]
kind_shift = one(
    "kind shift",
    (
        shift
        for shift in range(0, 6)
        if all((states[kind] >> shift) & 7 == kind for kind in states) and (heads[0][state] >> shift) & 7 == 1
    ),
)
json.dump(
    {
        "version": "%d.%d" % sys.version_info[:2],
        "co_filename": pointer_offset(code, code.co_filename),
        "str_length": length,
        "str_data": data,
        "str_wide_data": wide_data,
        "str_state": state,
        "ascii_bit": bit,
        "compact_bit": compact_bit,
        "kind_shift": kind_shift,
    },
    sys.stdout,
)
print()
