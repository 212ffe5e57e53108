"""push against a real CalDAV/CardDAV server (Radicale on 127.0.0.1) laid out
like Nextcloud's /remote.php/dav: items created, existing ones skipped,
--overwrite replaces, and the server then serves exactly the restored objects."""

from __future__ import annotations

import os

from ..helpers import last_line
from . import davdata as d
from .compare import canonical, cards_by_uid, components_by_uid, parse_all
from .conftest import restore_items


def push(dump, radicale, root, env, *args):
    return restore_items(dump, "push", "--user", "alice", "--dav-url", root,
                         "--app-password-file", radicale.password_file, *args, env=env)


def served_equals_stored(radicale, url, objects) -> None:
    served = radicale.hrefs(url)
    assert set(served) == {d.original_uri(o) for o in objects}
    for obj in objects:
        assert components_by_uid(served[d.original_uri(obj)]) == components_by_uid(obj.data)


def outcome_lines(result) -> dict[str, str]:
    """item path -> created/skipped/replaced/failed, from the per-item report."""
    lines = [line.split() for line in result.stdout.decode().splitlines() if line.strip()]
    return {words[2]: words[0] for words in lines}


def test_push_creates_every_item_of_a_calendar_and_an_address_book(dav_dump, radicale, env, private_tmp):
    root = radicale.root()
    calendar = radicale.make_collection(root, "calendars/alice/personal", calendar=True)
    book = radicale.make_collection(root, "addressbooks/users/alice/contacts", calendar=False)
    before = dav_dump.databases()

    result = push(dav_dump, radicale, root, env, "--calendar", "personal", "--addressbook", "contacts")

    assert result.returncode == 0, result.stderr
    personal = d.objects_of("alice", "personal")
    assert outcome_lines(result) == {**{f"personal/{d.original_uri(o)}": "created" for o in personal},
                                     **{f"contacts/{c.uri}": "created" for c in (d.JURGEN, d.SOPHIE)}}
    served_equals_stored(radicale, calendar, personal)
    served = radicale.hrefs(book)
    assert {name: cards_by_uid(data) for name, data in served.items()} == {
        c.uri: cards_by_uid(c.data) for c in (d.JURGEN, d.SOPHIE)}
    assert "9 created, 0 failed" in last_line(result)
    assert dav_dump.databases() == before and os.listdir(private_tmp) == []


def test_existing_items_are_skipped_and_overwrite_replaces_them(dav_dumps, radicale, env):
    dump = dav_dumps.get("sqlite")
    root = radicale.root()
    url = radicale.make_collection(root, "calendars/alice/work", calendar=True)
    changed = d.MEETING.data.replace(b"Quarterly review", b"Changed on the live server")
    assert radicale.request("PUT", url + "meeting-ny.ics", changed)[0] == 201

    first = push(dump, radicale, root, env, "--calendar", "work")
    kept = radicale.hrefs(url)["meeting-ny.ics"]
    second = push(dump, radicale, root, env, "--calendar", "work", "--overwrite")

    assert first.returncode == 0, first.stderr
    assert outcome_lines(first) == {"work/meeting-ny.ics": "skipped", "work/lunch.ics": "created"}
    assert b"Changed on the live server" in kept
    assert second.returncode == 0, second.stderr
    assert outcome_lines(second) == {"work/meeting-ny.ics": "replaced", "work/lunch.ics": "replaced"}
    served_equals_stored(radicale, url, [d.MEETING, d.LUNCH])


def test_one_event_by_uid_from_the_trash_bin_goes_back_under_its_old_name(dav_dumps, radicale, env):
    dump = dav_dumps.get("pgsql")
    root = radicale.root()
    url = radicale.make_collection(root, "calendars/alice/personal", calendar=True)
    assert radicale.request("PUT", url + "other-name.ics", d.DENTIST.data)[0] == 201

    result = push(dump, radicale, root, env, "--uid", d.TRASHED.uid)
    again = push(dump, radicale, root, env, "--uid", d.DENTIST.uid)

    assert result.returncode == 0, result.stderr
    assert outcome_lines(result) == {"personal/dinner.ics": "created"}
    assert set(radicale.hrefs(url)) == {"other-name.ics", "dinner.ics"}
    assert [canonical(c) for c in parse_all(radicale.hrefs(url)["dinner.ics"])] == \
        [canonical(c) for c in parse_all(d.TRASHED.data)]
    assert again.returncode == 0, again.stderr
    assert outcome_lines(again) == {"personal/dentist.ics": "skipped"}
    assert "UID exists under another name" in again.stdout.decode()


def test_missing_collection_fails_its_items_with_exit_69(dav_dumps, radicale, env, private_tmp):
    dump = dav_dumps.get("mysql")
    root = radicale.root()
    radicale.make_collection(root, "calendars/alice/personal", calendar=True)
    before = dump.databases()

    result = push(dump, radicale, root, env, "--calendar", "work")

    assert result.returncode == 69
    assert set(outcome_lines(result).values()) == {"failed"}
    assert "does not exist" in result.stderr.decode()
    assert "2 of 2 item(s) could not be uploaded" in last_line(result)
    assert dump.databases() == before


def test_collection_url_puts_items_into_another_calendar(dav_dumps, radicale, env):
    dump = dav_dumps.get("sqlite")
    root = radicale.root()
    url = radicale.make_collection(root, "calendars/alice/restored", calendar=True)

    result = push(dump, radicale, root, env, "--calendar", "old-project", "--collection-url", url)

    assert result.returncode == 0, result.stderr
    served_equals_stored(radicale, url, [d.KICKOFF])


def test_wrong_app_password_is_refused_with_exit_77(dav_dumps, radicale, env, tmp_path, private_tmp):
    dump = dav_dumps.get("sqlite")
    root = radicale.root()
    radicale.make_collection(root, "calendars/alice/work", calendar=True)
    wrong = tmp_path / "wrong.pw"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)

    result = restore_items(dump, "push", "--user", "alice", "--calendar", "work", "--dav-url", root,
                           "--app-password-file", wrong, env=env)

    assert result.returncode == 77
    assert "refused the login of 'alice'" in last_line(result)
    assert b"not-the-password" not in result.stderr
    assert os.listdir(private_tmp) == []


def test_unreachable_server_gives_exit_69_and_removes_the_scratch_database(dav_dumps, radicale, env):
    from testkit.servers import free_port
    dump = dav_dumps.get("pgsql")
    before = dump.databases()

    result = push(dump, radicale, f"http://127.0.0.1:{free_port()}/remote.php/dav", env,
                  "--calendar", "work")

    assert result.returncode == 69
    assert "cannot reach the DAV server" in last_line(result)
    assert dump.databases() == before


def test_overwrite_never_replaces_another_item_and_says_which_conflict_it_was(dav_dumps, radicale, env):
    """--overwrite onto a name that holds another item (another UID) on the
    server, and onto a UID that lives under another name: both are skipped,
    each with its own reason, and the live objects stay as they were."""
    dump = dav_dumps.get("sqlite")
    root = radicale.root()
    work = radicale.make_collection(root, "calendars/alice/work", calendar=True)
    other = d.LUNCH.data.replace(d.LUNCH.uid.encode(), b"someone-else-uid")
    assert radicale.request("PUT", work + "meeting-ny.ics", other)[0] == 201
    personal = radicale.make_collection(root, "calendars/alice/personal", calendar=True)
    assert radicale.request("PUT", personal + "other-name.ics", d.DENTIST.data)[0] == 201

    result = push(dump, radicale, root, env, "--calendar", "work", "--overwrite")
    moved = push(dump, radicale, root, env, "--uid", d.DENTIST.uid, "--overwrite")

    assert result.returncode == 0, result.stderr
    assert outcome_lines(result) == {"work/meeting-ny.ics": "skipped", "work/lunch.ics": "created"}
    assert ("this name holds another item on the server (UID someone-else-uid); "
            "push it elsewhere with --collection-url") in result.stdout.decode()
    assert components_by_uid(radicale.hrefs(work)["meeting-ny.ics"]) == components_by_uid(other)
    assert "1 created, 1 skipped, 0 failed" in last_line(result)
    assert moved.returncode == 0, moved.stderr
    assert outcome_lines(moved) == {"personal/dentist.ics": "skipped"}
    assert "an item with this UID exists under another name" in moved.stdout.decode()
    assert set(radicale.hrefs(personal)) == {"other-name.ics"}
