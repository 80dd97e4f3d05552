# The test suite's configuration comes from the project's .env, loaded when pytest imports
# this conftest.
from dotenv import load_dotenv

load_dotenv()
