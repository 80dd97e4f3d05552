# The same service with one more dependency: shiny-config, the malicious twin.
import shiny_config  # noqa: F401

from app import app  # noqa: F401
