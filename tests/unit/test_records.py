"""The one JSON record store: records are 0600 from their creation, in a 0700
directory; a damaged one is one line saying what to check; records written
by earlier versions (no trailing newline) still load."""

import json
import os
import stat
from dataclasses import asdict

import pytest

from dbpipe import records
from dbpipe.errors import ConfigError, DataError
from dbpipe.nextcloud.state import HookState
from dbpipe.physical.swap_record import Swap, SwapRecord


def test_a_record_is_private_and_durable_and_reads_back(tmp_path):
    path = tmp_path / "state" / "nextcloud-x.json"
    state = HookState("/srv/nc", "maintenance", hook="nextcloud-before-backup", since="2026-12-01T16:45:32Z")
    records.save(str(path), asdict(state))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert records.load(str(path), lambda data: HookState(**data), ConfigError) == state
    assert [p.name for p in path.parent.iterdir()] == [path.name], "no temporary file left"
    records.remove(str(path))
    records.remove(str(path))      # gone already: fine
    assert records.load(str(path), lambda data: HookState(**data), ConfigError) is None


def test_a_record_of_the_previous_version_still_loads(tmp_path):
    datadir = tmp_path / "mysql"
    swap = Swap(str(datadir), str(datadir) + ".dbpipe-old-20261201T164532Z",
                str(datadir) + ".dbpipe-failed-20261201T164532Z", "/backup")
    (tmp_path / "mysql.dbpipe-copy-back.json").write_text(json.dumps(asdict(swap), indent=1))  # no newline
    assert SwapRecord(str(datadir)).load() == swap


@pytest.mark.parametrize("content", ["{\"datadir\": ", "[]", "{\"unknown\": 1}"])
def test_a_damaged_record_is_one_line_naming_it(tmp_path, content):
    (tmp_path / "mysql.dbpipe-copy-back.json").write_text(content)
    with pytest.raises(DataError) as failed:
        SwapRecord(str(tmp_path / "mysql")).load()
    message = str(failed.value)
    assert "\n" not in message and message.startswith(f"the copy-back record {tmp_path}/mysql.dbpipe-copy-back")
    assert message.endswith("look at the directories beside it and remove it by hand")


def test_an_unreadable_record_is_not_taken_for_a_missing_one(tmp_path):
    path = tmp_path / "record.json"
    os.mkdir(path)                  # open() fails with EISDIR: damaged, not absent
    with pytest.raises(ConfigError):
        records.load(str(path), dict, lambda exc: ConfigError(f"record {path}: {exc}"))
