"""list and export on real dumps of MariaDB, PostgreSQL and SQLite: exported
files parse with vobject and equal the stored objects; the scratch database
is gone afterwards."""

from __future__ import annotations

import os

from ..helpers import last_line
from . import davdata as d
from .compare import cards_by_uid, components_by_uid, parse_all, stored_body, timezones
from .conftest import restore_items


def run_clean(dump, env, private_tmp, *args):
    """Run and check that no scratch database or temporary file stayed behind."""
    before = dump.databases()
    result = restore_items(dump, *args, env=env)
    assert dump.databases() == before
    assert os.listdir(private_tmp) == []
    return result


def test_list_shows_collections_with_counts_including_trash(dav_dump, env, private_tmp, syslog):
    result = run_clean(dav_dump, env, private_tmp, "list", "--user", "alice")

    assert result.returncode == 0, result.stderr
    lines = {line.split()[1]: line for line in result.stdout.decode().splitlines()[2:]}
    assert set(lines) == {"personal", "work", "old-project", "contact_birthdays", "contacts",
                          "z-app-generated--contactsinteraction--recent"}
    assert lines["personal"].split()[2:5] == ["Persönlich", "7", "1"]
    assert "calendar in trash bin since 2023-11-14" in lines["old-project"]
    assert lines["contacts"].split()[2:4] == ["Kontakte", "2"]
    assert "Subscribed holiday" not in result.stdout.decode()
    assert "loading the" in syslog.text()


def test_list_of_one_calendar_names_uids_and_titles(dav_dumps, env, private_tmp):
    dump = dav_dumps.get("sqlite")
    result = run_clean(dump, env, private_tmp, "list", "--user", "alice", "--calendar", "Persönlich")

    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr
    assert "dinner.ics" in out and "dinner-with-grandma" in out and "in trash bin since" in out
    assert "Zahnarzt – Kontrolle ✓" in out and "feed-1" not in out


def test_export_round_trip_equals_the_stored_objects(dav_dump, env, private_tmp, tmp_path):
    out = tmp_path / "out"
    result = run_clean(dav_dump, env, private_tmp, "export", "--user", "alice", "--out", out)

    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(out)) == ["contacts.vcf", "old-project.ics", "personal.ics", "work.ics",
                                       "z-app-generated--contactsinteraction--recent.vcf"]
    for calendar in (d.PERSONAL, d.WORK, d.OLD):
        exported = (out / f"{calendar.uri}.ics").read_bytes()
        stored = d.objects_of("alice", calendar.uri)
        expected = {}
        for obj in stored:
            expected.update(components_by_uid(obj.data))
            assert stored_body(obj.data) in exported        # copied byte for byte
            for tzid, zone in timezones(obj.data).items():
                assert timezones(exported)[tzid] == zone
        assert components_by_uid(exported) == expected
        assert len(parse_all(exported)) == 1                # one VCALENDAR per calendar
    contacts = (out / "contacts.vcf").read_bytes()
    assert contacts == d.JURGEN.data + d.SOPHIE.data
    assert cards_by_uid(contacts) == {**cards_by_uid(d.JURGEN.data), **cards_by_uid(d.SOPHIE.data)}
    assert oct(os.stat(out / "contacts.vcf").st_mode & 0o777) == "0o600"


def test_split_export_is_byte_identical_and_uses_pre_trash_names(dav_dump, env, private_tmp, tmp_path):
    out = tmp_path / "split"
    result = run_clean(dav_dump, env, private_tmp, "export", "--user", "alice", "--calendar", "personal",
                       "--addressbook", "Kontakte", "--split", "--out", out)

    assert result.returncode == 0, result.stderr
    for obj in d.objects_of("alice", "personal"):
        assert (out / "personal" / d.original_uri(obj)).read_bytes() == obj.data
    for card in (d.JURGEN, d.SOPHIE):
        assert (out / "contacts" / card.uri).read_bytes() == card.data
    assert (out / "personal" / "dinner.ics").exists()       # trash: dinner-deleted.ics


def test_selection_by_uid_dates_and_trash(dav_dumps, env, private_tmp, tmp_path):
    dump = dav_dumps.get("sqlite")

    by_uid = run_clean(dump, env, private_tmp, "export", "--user", "alice", "--uid",
                       d.DENTIST.uid, "--out", tmp_path / "uid")
    march = run_clean(dump, env, private_tmp, "export", "--user", "alice", "--from", "2024-03-01",
                      "--to", "2024-03-31", "--out", tmp_path / "march")
    trash = run_clean(dump, env, private_tmp, "export", "--user", "alice", "--trash", "only",
                      "--split", "--out", tmp_path / "trash")

    assert by_uid.returncode == march.returncode == trash.returncode == 0
    uid_file = (tmp_path / "uid" / "personal.ics").read_bytes()
    assert set(components_by_uid(uid_file)) == {d.DENTIST.uid}     # not bob's event with that UID
    assert b"Bob" not in uid_file
    exported = set()
    for name in os.listdir(tmp_path / "march"):
        exported |= set(components_by_uid((tmp_path / "march" / name).read_bytes()))
    assert exported == {d.DENTIST.uid, d.WEEKLY.uid, d.ALLDAY.uid, d.MEETING.uid}
    trashed = sorted(str(p.relative_to(tmp_path / "trash")) for p in (tmp_path / "trash").rglob("*.ics"))
    assert trashed == ["old-project/kickoff.ics", "personal/dinner.ics"]


def test_legacy_schema_and_table_prefix(dav_dumps, env, private_tmp, tmp_path):
    dump = dav_dumps.get("sqlite", "legacy")

    wrong = run_clean(dump, env, private_tmp, "list", "--user", "alice")
    right = run_clean(dump, env, private_tmp, "export", "--user", "alice", "--table-prefix", "nc_",
                      "--calendar", "work", "--out", tmp_path / "out")

    assert wrong.returncode == 65
    assert "table prefix 'nc_' (use --table-prefix)" in last_line(wrong)
    assert right.returncode == 0, right.stderr
    assert set(components_by_uid((tmp_path / "out" / "work.ics").read_bytes())) == {
        d.MEETING.uid, d.LUNCH.uid}


def test_existing_files_are_kept_unless_forced(dav_dumps, env, private_tmp, tmp_path):
    dump = dav_dumps.get("sqlite")
    out = tmp_path / "out"
    out.mkdir()
    (out / "work.ics").write_bytes(b"precious")
    args = ("export", "--user", "alice", "--calendar", "work", "--out", out)

    kept = run_clean(dump, env, private_tmp, *args)
    assert (out / "work.ics").read_bytes() == b"precious"
    forced = run_clean(dump, env, private_tmp, *args, "--force")

    assert kept.returncode == 73 and "exists; use --force" in last_line(kept)
    assert forced.returncode == 0 and (out / "work.ics").read_bytes() != b"precious"
