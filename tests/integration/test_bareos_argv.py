"""The writer as Bareos <= 25 starts it for a restore to /: the FD turns
where=/ into an empty string, so '%w' expands to nothing and, split on spaces,
vanishes from argv.  Both spellings must still mean "load the live database"."""

from __future__ import annotations

import subprocess

import pytest

from ..conftest import make_sqlite
from ..helpers import BIN, bareos_argv, bareos_env


@pytest.mark.parametrize("writer", ["--where=%w --replace=%r", "--where %w --replace %r",
                                    "--replace %r --where %w"])
def test_an_empty_where_restores_the_live_database(writer, tmp_path):
    db = make_sqlite(tmp_path)
    stream = subprocess.run([str(BIN / "dbpipe-dump"), *db.args()], capture_output=True,
                            env=bareos_env(), check=True).stdout
    before = db.content()
    db.change()
    expanded = writer.replace("%w", "").replace("%r", "a")     # what bpipe makes of it
    argv = bareos_argv(f"{BIN}/dbpipe-restore --type sqlite --database {db.path} {expanded}")

    result = subprocess.run(argv, input=stream, capture_output=True, env=bareos_env())

    assert result.returncode == 0, result.stderr
    assert db.content() == before
