# The application under development, installed with `pip install -e`: its package reads the
# project's .env when imported.
from dotenv import load_dotenv

load_dotenv()
