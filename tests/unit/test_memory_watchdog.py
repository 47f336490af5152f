"""The memory watchdog stops a process past CORE20_MEMORY_LIMIT with a message naming the limit."""

import os
import subprocess
import sys

GROW = """
import time
from pipelines.limits import start_memory_watchdog
start_memory_watchdog(lambda message: print("recorded:", message[:60], flush=True), interval=0.05)
hog = []
for _ in range(40):
    hog.append(bytearray(20 * 1024 * 1024))  # 20 MiB at a time, touched
    time.sleep(0.05)
print("never stopped", flush=True)
"""


def test_a_process_past_the_limit_is_stopped_with_a_message_naming_the_limit():
    done = subprocess.run([sys.executable, "-c", GROW], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CORE20_MEMORY_LIMIT": "300MiB"})
    assert done.returncode == 1
    assert "never stopped" not in done.stdout
    assert "recorded: core20: stopped - the run's memory reached" in done.stdout
    assert "past the limit of 300.0 MiB ($CORE20_MEMORY_LIMIT" in done.stderr
    assert "Traceback" not in done.stderr
