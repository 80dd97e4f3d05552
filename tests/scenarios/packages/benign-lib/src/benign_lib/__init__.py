# A library whose functions read credentials when the application asks: not pre-main.
import os


def read_aws():
    with open(os.path.join(os.path.expanduser("~"), ".aws", "credentials")) as f:
        return f.read()
