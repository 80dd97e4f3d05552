# Install-time payload: setup.py runs inside pip's build hooks.
import os

from setuptools import setup

open(os.path.join(os.path.expanduser("~"), ".pypirc")).close()

setup(name="evil-setup", version="0.3", packages=["evil_setup"])
