# gunicorn reads this from the working directory. After a worker has loaded the app, it leaves
# a mark the test waits for (when asked to), so that both workers' imports are done.
import os


def post_worker_init(worker):
    marks = os.environ.get("WORKERS_READY_DIR")
    if marks:
        open(os.path.join(marks, str(worker.pid)), "w").close()
