"""Prints, as JSON, where this CPython keeps what premain's probes read (the object layout of
monitor/src/kernel/probes.rs), measured on live objects with ctypes:

  co_filename  offset of co_filename in a code object
  str_data     offset of a compact ASCII str's characters
  str_state    offset of the byte of PyASCIIObject.state that holds the ascii bit
  ascii_bit    that bit (set for an ASCII str, clear for a Latin-1 one)
"""

import ctypes
import json
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
ascii_one, ascii_two = "premain-layout-probe-abc", "premain-layout-probe-xyz"
latin = "premain-layout-probe-\xe9\xe9\xe9"
data = peek(id(ascii_one), 128).find(ascii_one.encode())
one, two, lat = (peek(id(s), data) for s in (ascii_one, ascii_two, latin))
# The state byte: the same in both ASCII strings, different in the Latin-1 one (the hash
# differs everywhere), the ascii bit set only in the ASCII ones.
state = next(i for i in range(2 * ctypes.sizeof(ctypes.c_void_p), data) if one[i] == two[i] and one[i] & ~lat[i])
json.dump(
    {
        "version": "%d.%d" % sys.version_info[:2],
        "co_filename": pointer_offset(code, code.co_filename),
        "str_data": data,
        "str_state": state,
        "ascii_bit": one[state] & ~lat[state],
    },
    sys.stdout,
)
print()
