"""Pre-main code reading a credential: site imports this module at start-up (it is on
PYTHONPATH); HOME points at a fake home holding a fake .netrc. With BENCH_WAIT_STDIN set, it
first says "waiting" and waits for a line on stdin, still before the main code: the capacity
steps use it as a sentinel whose alert comes after every record already in the ring."""
import os
import sys

if os.environ.get("BENCH_WAIT_STDIN"):
    sys.stdout.write("waiting\n")
    sys.stdout.flush()
    sys.stdin.readline()
open(os.path.join(os.environ["HOME"], ".netrc")).close()
