"""The yardstick for the relay's CPU: SHA-256 alone over the same bytes.

Usage: sha256_cost.py FILE

Reads FILE in 1 MiB blocks into one reused buffer and prints the CPU seconds
spent in hashlib.sha256().update() alone - not reading, not start-up.  Run
with the interpreter dbpipe runs with (same OpenSSL, same SHA extensions), it
is the least a relay that checksums every byte can cost: the relay target is
a multiple of this figure.
"""

import hashlib
import os
import sys
import time

BLOCK = 1 << 20


def main() -> None:
    sha = hashlib.sha256()
    buffer = bytearray(BLOCK)
    view = memoryview(buffer)
    spent = 0.0
    with open(sys.argv[1], "rb", buffering=0) as handle:
        fd = handle.fileno()
        while True:
            count = os.readv(fd, [buffer])
            if count == 0:
                break
            started = time.process_time()
            sha.update(view[:count])
            spent += time.process_time() - started
    print(f"{spent:.4f}")


if __name__ == "__main__":
    main()
