"""Reads TARGET under a path spelling that differs from TARGET itself, to test
that the monitor reports the file actually opened rather than the string
passed to open.

argv: TARGET WORKDIR MODE, MODE one of:
  symlink     WORKDIR/innocent -> TARGET, read through the link, remove the link
  hardlink    os.link TARGET to WORKDIR/innocent, read that, unlink it
              (WORKDIR must be on TARGET's filesystem)
  proc_cwd    chdir to dirname(TARGET), open /proc/self/cwd/<basename>
  dots        open a spelling with //, /./ and a ../ detour
  proc_fd     open dirname(TARGET) as an fd N, open /proc/self/fd/N/<basename>
  proc_root   open /proc/self/root + TARGET
  chdir_race  chdir to dirname(TARGET), open <basename>, chdir("/") at once,
              then read the already-open fd
WORKDIR is used only by symlink and hardlink. Prints one JSON line with the
spelling opened, the byte count and the SHA-256 of what was read.
"""
import hashlib
import json
import os
import sys

TECHNIQUE = "link_tricks"
MODES = ("symlink", "hardlink", "proc_cwd", "dots", "proc_fd", "proc_root", "chdir_race")


def read_fd(fd):
    data = bytearray()
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return bytes(data)
        data += chunk


def read_path(path):
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return read_fd(fd)
    finally:
        os.close(fd)


def dotted(target):
    """/a/b/file -> //a/./b/../b//./file (resolves to the same file)."""
    directory, base = os.path.split(os.path.realpath(target))
    parts = [p for p in directory.split("/") if p]
    if not parts:
        return "//./../" + base
    return "//" + "/./".join(parts) + "/../" + parts[-1] + "//./" + base


def main(argv):
    if len(argv) != 3 or argv[2] not in MODES:
        raise SystemExit("usage: link_tricks.py TARGET WORKDIR {%s}" % "|".join(MODES))
    target, workdir, mode = os.path.abspath(argv[0]), argv[1], argv[2]
    directory, base = os.path.split(target)
    result = {"technique": TECHNIQUE, "ok": True, "mode": mode, "target": target}

    if mode in ("symlink", "hardlink"):
        innocent = os.path.join(workdir, "innocent")
        if mode == "symlink":
            os.symlink(target, innocent)
        else:
            os.link(target, innocent)
        try:
            data = read_path(innocent)
        finally:
            os.unlink(innocent)
        opened = innocent
    elif mode == "proc_cwd":
        os.chdir(directory)
        opened = "/proc/self/cwd/" + base
        data = read_path(opened)
    elif mode == "dots":
        opened = dotted(target)
        data = read_path(opened)
    elif mode == "proc_fd":
        dirfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            opened = "/proc/self/fd/%d/%s" % (dirfd, base)
            data = read_path(opened)
        finally:
            os.close(dirfd)
    elif mode == "proc_root":
        opened = "/proc/self/root" + target
        data = read_path(opened)
    else:  # chdir_race
        os.chdir(directory)
        fd = os.open(base, os.O_RDONLY | os.O_CLOEXEC)
        os.chdir("/")
        try:
            data = read_fd(fd)
        finally:
            os.close(fd)
        opened = base
        result["cwd_after"] = "/"
    result.update(opened=opened, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    return result


if __name__ == "__main__":
    try:
        result = main(sys.argv[1:])
    except Exception as exc:
        sys.stderr.write("%s: %s\n" % (TECHNIQUE, exc))
        sys.exit(1)
    print(json.dumps(result))
