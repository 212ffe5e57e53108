"""A test-only snapshot provider: a plain copy of a tmpfs, taken in the window.

It shows the provider boundary: a second provider is this one module plus
one register() line (done by run_with_dircopy below, for the hook processes
of a test) - nothing else in dbpipe changes.  A copy is no atomic snapshot,
which is why it is never shipped; for the flow it is a directory like any
other.  Each copy has a sidecar file <copy>.dircopy with its id and its
source's id, so info() can tell ours from anything else.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid

if __name__ == "__main__":  # run as the hook process: dbpipe from this tree, like bin/ finds it
    LIB = os.path.join(os.path.dirname(os.path.realpath(__file__)), os.pardir, os.pardir, "lib")
    sys.path[:0] = [LIB, os.path.join(LIB, "vendor")]

from dbpipe.snapshot.mounts import Mount  # noqa: E402
from dbpipe.snapshot.provider import Provider, SnapshotInfo, Volume  # noqa: E402

SIDECAR = ".dircopy"


class DirCopyProvider(Provider):
    name = "dircopy"
    fstypes = ("tmpfs",)
    kind = "tmpfs (plain copy)"
    listing = "'ls <mount point>/.dbpipe-copies'"
    home_name = ".dbpipe-copies"

    def volume(self, path: str, mount: Mount, key: str) -> Volume:
        """The whole tmpfs is one volume; its id is where it is mounted."""
        return Volume(self.name, mount.point, f"tmpfs:{mount.point}", self.home(mount, key))

    def nested(self, volume: Volume, mount: Mount) -> list[str]:
        return []

    def flush(self, volume: Volume) -> None:
        os.sync()

    def create(self, volume: Volume, destination: str) -> None:
        home = self.snapshots_below(volume.root)
        shutil.copytree(volume.root, destination, symlinks=True,
                        ignore=lambda directory, names: [n for n in names
                                                         if os.path.join(directory, n) == home])
        with open(destination + SIDECAR, "w") as handle:
            json.dump({"uuid": uuid.uuid4().hex, "parent": volume.uuid}, handle)

    def info(self, path: str) -> SnapshotInfo | None:
        try:
            with open(path + SIDECAR) as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return None
        return SnapshotInfo(data["uuid"], data["parent"], readonly=True) if os.path.isdir(path) else None

    def delete(self, path: str) -> None:
        shutil.rmtree(path)
        os.unlink(path + SIDECAR)


def run_with_dircopy(executable: str, *args: str) -> None:
    """Run a dbpipe executable in this process with the provider registered
    (python3 dircopy.py EXECUTABLE ARGS...)."""
    import runpy

    from dbpipe.snapshot import register
    register(DirCopyProvider)
    sys.argv = [executable, *args]
    runpy.run_path(executable, run_name="__main__")


if __name__ == "__main__":
    run_with_dircopy(*sys.argv[1:])
