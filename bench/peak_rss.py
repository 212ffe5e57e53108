"""Run a Python script in this very process and record its own peak RSS.

Usage: peak_rss.py OUTFILE SCRIPT [ARGS...]

OUTFILE gets two lines: the peak RSS in KiB, and the CPU seconds (user +
system) of this process itself - all its threads, none of its children (the
dump tool, the client), which wait4() would add in.

ru_maxrss is useless here: wait4() reports the maximum over a process *and*
the children it waited for (mariadb-dump, psql), and Linux carries the
hiwater mark of the pre-exec memory over exec (a child forked by the
benchmark's Python starts at that Python's RSS).  VmHWM in /proc/self/status
is the peak of this process' own memory since its exec.  Running the script
here (same interpreter and process, as its shebang would) lets us read it at
exit: the peak RSS of the dbpipe process alone, in KiB.  Exit status passes
through unchanged.
"""

import os
import resource
import runpy
import sys


def peak_kib() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    out, script = sys.argv[1], sys.argv[2]
    sys.argv = sys.argv[2:]
    sys.path[0] = os.path.dirname(os.path.abspath(script))  # as if run directly
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        code = exc.code
    finally:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        with open(out, "w") as handle:
            handle.write(f"{peak_kib()}\n{usage.ru_utime + usage.ru_stime:.4f}\n")
    sys.exit(code)


if __name__ == "__main__":
    main()
