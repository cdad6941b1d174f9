"""Run a command and write its resource usage (peak RSS, CPU) to a file, as JSON.

    python bench/launch.py USAGE.json COMMAND [ARG...]

Why a launcher: Linux carries a process's RSS high-water mark across fork and exec, so a
child forked straight from a large benchmark process reports the parent's size as its
own peak. Forked from this small process instead, the command's ru_maxrss is its own
(and that of the largest of the children it waited for).
"""

import json
import os
import sys

usage_file, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(usage_file, "w") as f:
    json.dump({"maxrss": usage.ru_maxrss * 1024, "cpu": usage.ru_utime + usage.ru_stime}, f)
sys.exit(os.waitstatus_to_exitcode(status) % 256)
