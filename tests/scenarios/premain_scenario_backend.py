"""A minimal in-tree PEP 517 backend for premain's scenario packages.

Every file under the package's `src/` goes to the root of a pure-Python wheel; the project
name and version come from `pyproject.toml`. Standard library only, so pip can build the
packages with no index and no build dependencies.
"""
import base64
import hashlib
import os
import re
import zipfile


def _project():
    text = open("pyproject.toml", encoding="utf-8").read()
    name = re.search(r'^name\s*=\s*"([^"]+)"', text, re.M).group(1)
    version = re.search(r'^version\s*=\s*"([^"]+)"', text, re.M).group(1)
    return name, version


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name, version = _project()
    dist = re.sub(r"[-_.]+", "_", name)
    info = f"{dist}-{version}.dist-info"
    wheel_name = f"{dist}-{version}-py3-none-any.whl"
    files = []
    for root, _dirs, names in os.walk("src"):
        for n in sorted(names):
            full = os.path.join(root, n)
            files.append((os.path.relpath(full, "src"), open(full, "rb").read()))
    files.append((f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()))
    files.append((f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: premain-scenario\nRoot-Is-Purelib: true\nTag: py3-none-any\n"))
    record = [_record_line(path, data) for path, data in files] + [f"{info}/RECORD,,"]
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel_name), "w") as whl:
        for path, data in files:
            whl.writestr(path, data)
        whl.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return wheel_name
