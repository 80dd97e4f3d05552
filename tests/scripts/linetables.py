"""Prints, as JSON, the line tables of the code objects of a sample source and, for every
instruction of each, the line this CPython itself gives it (co_lines() on 3.10+,
dis.findlinestarts() before): what premain's decoding of the tables (monitor/src/python/stack.rs)
is compared with, on every CPython here.

  first   co_firstlineno
  table   co_lnotab (3.8, 3.9) or co_linetable (3.10+), in hex
  lines   [byte offset, line or null] for each instruction
"""

import dis
import json
import sys

SOURCE = '''
import os


def short(a):
    return a + 1


def long_function(items):
    total = 0
    for item in items:
        if item % 2:
            total += item
        else:
            total -= (
                item
                * 2
            )
    try:
        open("/nonexistent")
    except OSError:
        pass
    while total > 100:
        total //= 3
    return [x for x in range(total) if x]


class Thing:
    def method(self):
        def inner():
            return self
        return inner()
''' + "\n" * 300 + '''
def after_a_gap():
    return short(
        1,
    )
''' + "".join("value_%d = %d\n" % (i, i) for i in range(200)) + '''
if os.environ.get("NEVER"):
    long_function([1, 2, 3])
'''


def code_objects(co):
    yield co
    for const in co.co_consts:
        if hasattr(const, "co_code"):
            yield from code_objects(const)


def lines(co):
    size = len(co.co_code)
    if sys.version_info >= (3, 10):
        at = {}
        for start, end, line in co.co_lines():
            for offset in range(start, end, 2):
                at[offset] = line
        return [[offset, at.get(offset)] for offset in range(0, size, 2)]
    starts = dict(dis.findlinestarts(co))
    line, out = co.co_firstlineno, []
    for offset in range(0, size, 2):
        line = starts.get(offset, line)
        out.append([offset, line])
    return out


table = "co_linetable" if sys.version_info >= (3, 10) else "co_lnotab"
print(json.dumps([
    {"first": co.co_firstlineno, "table": getattr(co, table).hex(), "lines": lines(co)}
    for co in code_objects(compile(SOURCE, "sample.py", "exec"))
]))
