import os, signal, time
os.kill(os.getpid(), signal.SIGUSR1)
time.sleep(0.2)
