# A Flask service configured from its .env at import, served by gunicorn. Its request handler
# does, at runtime, what pre-main code must not: reads the AWS credentials and connects out.
import os
import socket

from dotenv import load_dotenv
from flask import Flask

load_dotenv()

app = Flask(__name__)
app.config["SECRET_KEY"] = os.environ["SECRET_KEY"]


@app.route("/work")
def work():
    with open(os.path.expanduser("~/.aws/credentials")) as f:
        profiles = sum(1 for line in f if line.startswith("["))
    with socket.create_connection(("127.0.0.1", int(os.environ["UPSTREAM_PORT"])), timeout=5):
        pass
    return {"profiles": profiles, "upstream": "reached"}
