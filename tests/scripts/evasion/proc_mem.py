"""Dumps another process's memory the way the tj-actions/changed-files payload
(memdump.py) did: parse /proc/PID/maps, open /proc/PID/mem, pread the
readable and writable mappings.

argv: PID [MARKER]. Without MARKER, reads the first rw mapping (at most
64 KiB) and prints its byte count and SHA-256. With MARKER, reads the rw
mappings in address order, 64 KiB at a time, until MARKER is found or 64 MiB
have been read, and prints whether and where it was found.
"""
import hashlib
import json
import os
import sys

TECHNIQUE = "proc_mem"
CHUNK = 64 * 1024
BUDGET = 64 * 1024 * 1024


def rw_mappings(pid):
    """(start, end, name) of each readable+writable mapping, in address order."""
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            fields = line.split(None, 5)
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if fields[1].startswith("rw"):
                yield start, end, fields[5].strip() if len(fields) > 5 else ""


def main(argv):
    if len(argv) not in (1, 2):
        raise SystemExit("usage: proc_mem.py PID [MARKER]")
    pid = int(argv[0])
    marker = os.fsencode(argv[1]) if len(argv) == 2 else None
    maps = list(rw_mappings(pid))
    if not maps:
        raise OSError("no readable writable mapping in /proc/%d/maps" % pid)
    result = {"technique": TECHNIQUE, "ok": True, "pid": pid,
              "first_region": {"start": "%#x" % maps[0][0], "end": "%#x" % maps[0][1],
                               "name": maps[0][2]}}
    fd = os.open("/proc/%d/mem" % pid, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if marker is None:
            start, end, _ = maps[0]
            data = os.pread(fd, min(CHUNK, end - start), start)
            result.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
            return result
        total, regions, found = 0, 0, None
        for start, end, name in maps:
            regions += 1
            tail = b""  # carried over so a marker split across two chunks is still found
            addr = start
            while addr < end and total < BUDGET and found is None:
                try:
                    chunk = os.pread(fd, min(CHUNK, end - addr), addr)
                except OSError:
                    break  # e.g. an unbacked VM_IO mapping; skip the region
                if not chunk:
                    break
                total += len(chunk)
                hay = tail + chunk
                hit = hay.find(marker)
                if hit >= 0:
                    found = {"addr": "%#x" % (addr - len(tail) + hit), "region": name}
                tail = hay[-(len(marker) - 1):] if len(marker) > 1 else b""
                addr += len(chunk)
            if found is not None or total >= BUDGET:
                break
    finally:
        os.close(fd)
    result.update(marker=argv[1], found=found is not None, regions_read=regions, bytes=total)
    if found is not None:
        result.update(found_at=found["addr"], found_region=found["region"])
    return result


if __name__ == "__main__":
    try:
        result = main(sys.argv[1:])
    except Exception as exc:
        sys.stderr.write("%s: %s\n" % (TECHNIQUE, exc))
        sys.exit(1)
    print(json.dumps(result))
