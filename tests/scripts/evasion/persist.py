"""Performs one persistence write the way malware does, but only inside the
directories given (a fake HOME and, for some kinds, a stand-in system dir).

argv: KIND HOME [DIR|FILE], KIND one of:
  bashrc          append a line to HOME/.bashrc
  profile         append a line to HOME/.profile
  authorized_keys append a key to HOME/.ssh/authorized_keys (dirs created)
  systemd_user    write HOME/.config/systemd/user/evil.service
  autostart       write HOME/.config/autostart/evil.desktop
  cron_user       write DIR/<user name> (DIR stands in for /var/spool/cron/crontabs)
  pth             write DIR/evil.pth (DIR stands in for a site-packages dir)
  pth_rename      write DIR/.evil.tmp, then os.rename it to DIR/x.pth
  sitecustomize   write DIR/sitecustomize.py
  symlink_bashrc  replace HOME/.bashrc by a symlink to FILE (not written), or
                  to HOME/.evil_rc (written first) when FILE is not given
Refuses a HOME or DIR that is the real home directory or under /etc.
Prints one JSON line with the path written, the bytes and their SHA-256.
"""
import hashlib
import json
import os
import pwd
import sys

TECHNIQUE = "persist"
TAG = "premain-evasion-test"
CONTENT = {
    "bashrc": "echo %s >/dev/null  # %s\n" % (TAG, TAG),
    "profile": "export PREMAIN_EVASION_TEST=1  # %s\n" % TAG,
    "authorized_keys": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHByZW1haW4tZXZhc2lvbi10ZXN0LWtleS0wMDAw %s\n" % TAG,
    "systemd_user": "[Unit]\nDescription=%s\n\n[Service]\nExecStart=/bin/true\n\n"
                    "[Install]\nWantedBy=default.target\n" % TAG,
    "autostart": "[Desktop Entry]\nType=Application\nName=%s\nExec=/bin/true\n" % TAG,
    "cron_user": "* * * * * /bin/true  # %s\n" % TAG,
    # A .pth line starting with "import" is executed at interpreter start:
    # keep it harmless in case DIR is on some interpreter's path.
    "pth": "import os  # %s\n" % TAG,
    "pth_rename": "import os  # %s\n" % TAG,
    "sitecustomize": "# %s\n" % TAG,
    "symlink_bashrc": "echo %s >/dev/null  # %s\n" % (TAG, TAG),
}
NEEDS_DIR = ("cron_user", "pth", "pth_rename", "sitecustomize")


def guard(path, real_homes):
    real = os.path.realpath(path)
    if real == "/etc" or real.startswith("/etc/"):
        raise PermissionError("refusing to write under /etc: %s" % path)
    if real in real_homes:
        raise PermissionError("refusing to use the real home directory: %s" % path)


def write(path, text, mode="w"):
    with open(path, mode) as f:
        f.write(text)


def main(argv):
    if len(argv) not in (2, 3) or argv[0] not in CONTENT:
        raise SystemExit("usage: persist.py {%s} HOME [DIR|FILE]" % "|".join(CONTENT))
    kind, home = argv[0], os.path.abspath(argv[1])
    directory = os.path.abspath(argv[2]) if len(argv) == 3 else None
    if kind in NEEDS_DIR and directory is None:
        raise SystemExit("persist.py %s needs DIR" % kind)
    real_homes = {os.path.realpath(os.path.expanduser("~")),
                  os.path.realpath(pwd.getpwuid(os.getuid()).pw_dir)}
    guard(home, real_homes)
    if directory is not None and kind != "symlink_bashrc":
        guard(directory, real_homes)
    text = CONTENT[kind]
    result = {"technique": TECHNIQUE, "ok": True, "kind": kind}

    if kind in ("bashrc", "profile"):
        path = os.path.join(home, "." + kind)
        write(path, text, "a")
    elif kind == "authorized_keys":
        ssh = os.path.join(home, ".ssh")
        os.makedirs(ssh, mode=0o700, exist_ok=True)
        path = os.path.join(ssh, "authorized_keys")
        write(path, text, "a")
        os.chmod(path, 0o600)
    elif kind == "systemd_user":
        unit_dir = os.path.join(home, ".config", "systemd", "user")
        os.makedirs(unit_dir, exist_ok=True)
        path = os.path.join(unit_dir, "evil.service")
        write(path, text)
    elif kind == "autostart":
        autostart = os.path.join(home, ".config", "autostart")
        os.makedirs(autostart, exist_ok=True)
        path = os.path.join(autostart, "evil.desktop")
        write(path, text)
    elif kind == "cron_user":
        path = os.path.join(directory, pwd.getpwuid(os.getuid()).pw_name)
        write(path, text)
        os.chmod(path, 0o600)
    elif kind == "pth":
        path = os.path.join(directory, "evil.pth")
        write(path, text)
    elif kind == "pth_rename":
        tmp = os.path.join(directory, ".evil.tmp")
        path = os.path.join(directory, "x.pth")
        write(tmp, text)
        os.rename(tmp, path)
        result["written_as"] = tmp
    elif kind == "sitecustomize":
        path = os.path.join(directory, "sitecustomize.py")
        write(path, text)
    else:  # symlink_bashrc
        link = os.path.join(home, ".bashrc")
        if directory is None:
            target = os.path.join(home, ".evil_rc")
            write(target, text)
        else:
            target = directory
            text = ""
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(target, link)
        result["link"] = link
        path = target
    data = text.encode()
    result.update(path=path, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    return result


if __name__ == "__main__":
    try:
        result = main(sys.argv[1:])
    except Exception as exc:
        sys.stderr.write("%s: %s\n" % (TECHNIQUE, exc))
        sys.exit(1)
    print(json.dumps(result))
