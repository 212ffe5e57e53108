"""Nextcloud's DAV tables filled with several users' calendars and contacts,
in MariaDB, PostgreSQL and SQLite.

Columns and types follow the dav app's migrations (Version1004Date20170825134824
for the tables, calendartype from Version1006Date20180628111625, cards.uid
from Version1008Date20181030113700, the trash bin's deleted_at from
Version1018Date20210312100735).  The data has what real calendars have:
recurring events with exceptions, several time zones, attachments as URLs,
non-ASCII text, folded lines, LF-only objects, trash-bin entries, a
subscription's cached objects, a generated birthday calendar.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

USERS = ("alice", "bob", "o'brien")
CRLF = "\r\n"


def ics(*lines: str, newline: str = CRLF) -> bytes:
    return (newline.join(lines) + newline).encode("utf-8")


BERLIN = [
    "BEGIN:VTIMEZONE", "TZID:Europe/Berlin",
    "BEGIN:DAYLIGHT", "TZOFFSETFROM:+0100", "TZOFFSETTO:+0200", "TZNAME:CEST",
    "DTSTART:19700329T020000", "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU", "END:DAYLIGHT",
    "BEGIN:STANDARD", "TZOFFSETFROM:+0200", "TZOFFSETTO:+0100", "TZNAME:CET",
    "DTSTART:19701025T030000", "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU", "END:STANDARD",
    "END:VTIMEZONE"]
NEW_YORK = [
    "BEGIN:VTIMEZONE", "TZID:America/New_York",
    "BEGIN:DAYLIGHT", "TZOFFSETFROM:-0500", "TZOFFSETTO:-0400", "TZNAME:EDT",
    "DTSTART:19700308T020000", "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU", "END:DAYLIGHT",
    "BEGIN:STANDARD", "TZOFFSETFROM:-0400", "TZOFFSETTO:-0500", "TZNAME:EST",
    "DTSTART:19701101T020000", "RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU", "END:STANDARD",
    "END:VTIMEZONE"]
HEAD = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//IDN nextcloud.com//Calendar app 4.6.4//EN",
        "CALSCALE:GREGORIAN"]
TAIL = ["END:VCALENDAR"]


def event(uid: str, start: str, summary: str, *extra: str) -> list[str]:
    return ["BEGIN:VEVENT", "CREATED:20240101T100000Z", "DTSTAMP:20240101T100000Z",
            "LAST-MODIFIED:20240101T100000Z", f"UID:{uid}", f"DTSTART{start}", f"SUMMARY:{summary}",
            *extra, "END:VEVENT"]


# A description folded at 75 octets, the fold falling inside multi-byte characters.
LONG_DESCRIPTION = ("DESCRIPTION:Bitte Versichertenkarte mitbringen – Überweisung vom Hausarzt "
                    "nicht vergessen; Wartezeit ca. 20 Min. Straße: Müllerstraße 12\\, Zürich")


def folded(line: str) -> list[str]:
    data, parts = line.encode("utf-8"), []
    while len(data) > 75:
        cut = 75 if not parts else 74
        while (data[cut] & 0xC0) == 0x80:
            cut -= 1
        parts.append(data[:cut].decode())
        data = data[cut:]
    parts.append(data.decode())
    return [parts[0]] + [" " + part for part in parts[1:]]


@dataclass(frozen=True)
class Calendar:
    id: int
    user: str
    uri: str
    displayname: str
    deleted_at: int | None = None


@dataclass(frozen=True)
class CalendarObject:
    calendar: Calendar
    uri: str                # as stored (trash: name-deleted.ics)
    uid: str
    data: bytes
    component: str = "VEVENT"
    first: int | None = None
    last: int | None = None
    deleted_at: int | None = None
    calendartype: int = 0


@dataclass(frozen=True)
class AddressBook:
    id: int
    user: str
    uri: str
    displayname: str


@dataclass(frozen=True)
class Card:
    book: AddressBook
    uri: str
    uid: str
    data: bytes


PERSONAL = Calendar(1, "alice", "personal", "Persönlich")
WORK = Calendar(2, "alice", "work", "Arbeit 📅")
OLD = Calendar(3, "alice", "old-project", "Altes Projekt", deleted_at=1_700_000_000)
BIRTHDAYS = Calendar(4, "alice", "contact_birthdays", "Contact birthdays")
BOB = Calendar(5, "bob", "personal", "Personal")
OBRIEN = Calendar(6, "o'brien", "personal", "Personal")
CALENDARS = (PERSONAL, WORK, OLD, BIRTHDAYS, BOB, OBRIEN)

DENTIST = CalendarObject(PERSONAL, "dentist.ics", "dentist-2024@example.com", ics(
    *HEAD, *event("dentist-2024@example.com", ":20240310T090000Z", "Zahnarzt – Kontrolle ✓",
                  *folded(LONG_DESCRIPTION), "LOCATION:Praxis Dr. Ärztin\\, 2. OG"), *TAIL),
    first=1_710_061_200, last=1_710_064_800)
WEEKLY = CalendarObject(PERSONAL, "weekly-standup.ics", "b5d5a8c2-1f7e-4c55-9c1e-2b3c4d5e6f70", ics(
    *HEAD, *BERLIN,
    *event("b5d5a8c2-1f7e-4c55-9c1e-2b3c4d5e6f70", ";TZID=Europe/Berlin:20240108T093000", "Stand-up",
           "DTEND;TZID=Europe/Berlin:20240108T094500", "RRULE:FREQ=WEEKLY;COUNT=10;BYDAY=MO",
           "EXDATE;TZID=Europe/Berlin:20240122T093000"),
    *event("b5d5a8c2-1f7e-4c55-9c1e-2b3c4d5e6f70", ";TZID=Europe/Berlin:20240130T100000",
           "Stand-up (verschoben)", "DTEND;TZID=Europe/Berlin:20240130T101500",
           "RECURRENCE-ID;TZID=Europe/Berlin:20240129T093000"), *TAIL),
    first=1_704_702_600, last=1_710_150_300)
ATTACHMENT = CalendarObject(PERSONAL, "sabredav-6c1f0b0e-attach.ics", "attach-event-7781", ics(
    *HEAD, *event("attach-event-7781", ":20240402T120000Z", "Vertrag unterschreiben",
                  "DTEND:20240402T130000Z",
                  "ATTACH;FMTTYPE=application/pdf;FILENAME=/Vertrag.pdf:https://cloud.example.com/f/4711",
                  "ATTACH:https://cloud.example.com/s/AbC123xyz",
                  "URL:https://example.com/meeting?id=1&lang=de"), *TAIL),
    first=1_712_059_200, last=1_712_062_800)
TODO = CalendarObject(PERSONAL, "todo-milk.ics", "todo-milk-1", ics(
    *HEAD, "BEGIN:VTODO", "UID:todo-milk-1", "DTSTAMP:20240101T100000Z", "SUMMARY:Milch kaufen 🥛",
    "STATUS:NEEDS-ACTION", "END:VTODO", *TAIL), component="VTODO")
ALLDAY = CalendarObject(PERSONAL, "allday.ics", "allday-holiday", ics(
    *HEAD, *event("allday-holiday", ";VALUE=DATE:20240315", "Urlaubstag", "DTEND;VALUE=DATE:20240316",
                  "TRANSP:TRANSPARENT"), *TAIL),
    first=1_710_460_800, last=1_710_547_200)
TRASHED = CalendarObject(PERSONAL, "dinner-deleted.ics", "dinner-with-grandma", ics(
    *HEAD, *event("dinner-with-grandma", ":20240201T180000Z", "Abendessen bei Oma",
                  "DTEND:20240201T200000Z"), *TAIL),
    first=1_706_810_400, last=1_706_817_600, deleted_at=1_708_000_000)
LF_ONLY = CalendarObject(PERSONAL, "lf-only.ics", "lf-only-event", ics(
    *HEAD, *event("lf-only-event", ":20240505T080000Z", "Written with LF line ends"), *TAIL,
    newline="\n"), first=1_714_896_000, last=1_714_896_000)
MEETING = CalendarObject(WORK, "meeting-ny.ics", "meeting-ny-1", ics(
    *HEAD, *NEW_YORK, *event("meeting-ny-1", ";TZID=America/New_York:20240312T090000", "Quarterly review",
                             "DTEND;TZID=America/New_York:20240312T100000"), *TAIL),
    first=1_710_248_400, last=1_710_252_000)
LUNCH = CalendarObject(WORK, "lunch.ics", "lunch-ny-2", ics(
    *HEAD, *NEW_YORK, *event("lunch-ny-2", ";TZID=America/New_York:20240601T120000", "Team lunch",
                             "DTEND;TZID=America/New_York:20240601T130000"), *TAIL),
    first=1_717_257_600, last=1_717_261_200)
KICKOFF = CalendarObject(OLD, "kickoff.ics", "kickoff-2023", ics(
    *HEAD, *event("kickoff-2023", ":20231101T100000Z", "Projekt-Kickoff"), *TAIL),
    first=1_698_832_800, last=1_698_832_800)
BIRTHDAY = CalendarObject(BIRTHDAYS, "jurgen-birthday.ics", "jurgen-bday", ics(
    *HEAD, *event("jurgen-bday", ";VALUE=DATE:19800704", "🎂 Jürgen Müller (1980)",
                  "RRULE:FREQ=YEARLY"), *TAIL), first=331_516_800, last=2_145_916_800)
BOB_EVENT = CalendarObject(BOB, "bob-dentist.ics", "dentist-2024@example.com", ics(
    *HEAD, *event("dentist-2024@example.com", ":20240311T090000Z", "Bob's own appointment"), *TAIL),
    first=1_710_147_600, last=1_710_147_600)
OBRIEN_EVENT = CalendarObject(OBRIEN, "gaelic.ics", "obrien-1", ics(
    *HEAD, *event("obrien-1", ":20240317T170000Z", "St. Patrick's Day"), *TAIL),
    first=1_710_694_800, last=1_710_694_800)
# a subscription's cached object: calendartype 1, its calendarid is a subscription id
SUBSCRIBED = CalendarObject(PERSONAL, "holidays-feed.ics", "feed-1", ics(
    *HEAD, *event("feed-1", ";VALUE=DATE:20241225", "Subscribed holiday"), *TAIL),
    first=1_735_084_800, last=1_735_171_200, calendartype=1)
OBJECTS = (DENTIST, WEEKLY, ATTACHMENT, TODO, ALLDAY, TRASHED, LF_ONLY, MEETING, LUNCH, KICKOFF,
           BIRTHDAY, BOB_EVENT, OBRIEN_EVENT, SUBSCRIBED)

CONTACTS = AddressBook(1, "alice", "contacts", "Kontakte")
RECENT = AddressBook(2, "alice", "z-app-generated--contactsinteraction--recent", "Recently contacted")
BOB_BOOK = AddressBook(3, "bob", "contacts", "Contacts")
ADDRESSBOOKS = (CONTACTS, RECENT, BOB_BOOK)

PHOTO = "PHOTO;ENCODING=b;TYPE=JPEG:" + "/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAP" * 6
JURGEN = Card(CONTACTS, "jürgen-müller.vcf", "e5f4c3b2-jurgen", (CRLF.join([
    "BEGIN:VCARD", "VERSION:3.0", "PRODID:-//Sabre//Sabre VObject 4.5.4//EN", "UID:e5f4c3b2-jurgen",
    "FN:Jürgen Müller", "N:Müller;Jürgen;;;", "EMAIL;TYPE=HOME:juergen@example.de",
    "TEL;TYPE=CELL:+49 170 1234567", "ADR;TYPE=HOME:;;Hauptstraße 5;Köln;;50667;Deutschland",
    "NOTE:Kennt sich mit Segelbooten aus\\, Hafen Kiel", *folded(PHOTO), "REV:20240101T100000Z",
    "END:VCARD"]) + CRLF).encode())
SOPHIE = Card(CONTACTS, "4F3E2D1C-sophie.vcf", "4F3E2D1C-sophie", (CRLF.join([
    "BEGIN:VCARD", "VERSION:4.0", "UID:4F3E2D1C-sophie", "FN:Sophie Ørsted 👩‍🔬",
    "N:Ørsted;Sophie;;;", "EMAIL:sophie@example.dk", "BDAY:19900412", "END:VCARD"]) + CRLF).encode())
RECENT_CARD = Card(RECENT, "recent-1.vcf", "recent-1", (CRLF.join([
    "BEGIN:VCARD", "VERSION:3.0", "UID:recent-1", "FN:Someone Emailed", "EMAIL:x@example.org",
    "END:VCARD"]) + CRLF).encode())
BOB_CARD = Card(BOB_BOOK, "bob-card.vcf", "bob-card-1", (CRLF.join([
    "BEGIN:VCARD", "VERSION:3.0", "UID:bob-card-1", "FN:Bob's Friend", "END:VCARD"]) + CRLF).encode())
CARDS = (JURGEN, SOPHIE, RECENT_CARD, BOB_CARD)


def objects_of(user: str, calendar_uri: str | None = None, trash: bool = True):
    return [o for o in OBJECTS if o.calendar.user == user and o.calendartype == 0
            and (calendar_uri is None or o.calendar.uri == calendar_uri)
            and (trash or (o.deleted_at is None and o.calendar.deleted_at is None))]


def original_uri(obj: CalendarObject) -> str:
    return obj.uri.replace("-deleted.ics", ".ics") if obj.deleted_at else obj.uri


# --- the tables, per engine --------------------------------------------------------

TYPES = {
    "mysql": dict(ID="BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY", BLOB="LONGBLOB",
                  TEXT="LONGTEXT", UINT="INT UNSIGNED", UBIGINT="BIGINT UNSIGNED",
                  TAIL=" ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"),
    "pgsql": dict(ID="BIGSERIAL PRIMARY KEY", BLOB="BYTEA", TEXT="TEXT", UINT="INTEGER",
                  UBIGINT="BIGINT", TAIL=""),
    "sqlite": dict(ID="INTEGER PRIMARY KEY AUTOINCREMENT", BLOB="BLOB", TEXT="CLOB", UINT="INTEGER",
                   UBIGINT="BIGINT", TAIL=""),
}

SCHEMA = """
CREATE TABLE {P}calendars (id {ID}, principaluri VARCHAR(255) DEFAULT NULL,
  displayname VARCHAR(255) DEFAULT NULL, uri VARCHAR(255) DEFAULT NULL,
  synctoken {UINT} DEFAULT 1 NOT NULL, description VARCHAR(255) DEFAULT NULL,
  calendarorder {UINT} DEFAULT 0 NOT NULL, calendarcolor VARCHAR(255) DEFAULT NULL,
  timezone {TEXT} DEFAULT NULL, components VARCHAR(64) DEFAULT NULL,
  transparent SMALLINT DEFAULT 0 NOT NULL{DELETED}){TAIL};
CREATE UNIQUE INDEX {P}calendars_index ON {P}calendars (principaluri, uri);
CREATE TABLE {P}calendarobjects (id {ID}, calendardata {BLOB} DEFAULT NULL,
  uri VARCHAR(255) DEFAULT NULL, calendarid {UINT} NOT NULL, lastmodified {UINT} DEFAULT NULL,
  etag VARCHAR(32) DEFAULT NULL, size {UBIGINT} NOT NULL, componenttype VARCHAR(8) DEFAULT NULL,
  firstoccurence {UBIGINT} DEFAULT NULL, lastoccurence {UBIGINT} DEFAULT NULL,
  uid VARCHAR(255) DEFAULT NULL, classification INTEGER DEFAULT 0{CALTYPE}{DELETED}){TAIL};
CREATE TABLE {P}calendarchanges (id {ID}, uri VARCHAR(255) DEFAULT NULL,
  synctoken {UINT} DEFAULT 1 NOT NULL, calendarid INTEGER NOT NULL, operation SMALLINT NOT NULL,
  calendartype INTEGER DEFAULT 0 NOT NULL){TAIL};
CREATE TABLE {P}addressbooks (id {ID}, principaluri VARCHAR(255) DEFAULT NULL,
  displayname VARCHAR(255) DEFAULT NULL, uri VARCHAR(255) DEFAULT NULL,
  description VARCHAR(255) DEFAULT NULL, synctoken {UINT} DEFAULT 1 NOT NULL){TAIL};
CREATE UNIQUE INDEX {P}addressbook_index ON {P}addressbooks (principaluri, uri);
CREATE TABLE {P}cards (id {ID}, addressbookid BIGINT DEFAULT 0 NOT NULL,
  carddata {BLOB} DEFAULT NULL, uri VARCHAR(255) DEFAULT NULL, lastmodified {UBIGINT} DEFAULT NULL,
  etag VARCHAR(32) DEFAULT NULL, size {UBIGINT} NOT NULL{CARDUID}){TAIL};
CREATE TABLE {P}users (uid VARCHAR(64) NOT NULL PRIMARY KEY, displayname VARCHAR(64) DEFAULT NULL,
  password VARCHAR(255) DEFAULT '' NOT NULL, uid_lower VARCHAR(64) DEFAULT ''){TAIL};
"""


def schema_sql(kind: str, prefix: str = "oc_", legacy: bool = False) -> str:
    """legacy: the columns of Nextcloud 13 (no calendartype, cards.uid, deleted_at)."""
    return SCHEMA.format(P=prefix, **TYPES[kind],
                         DELETED="" if legacy else f", deleted_at {TYPES[kind]['UINT']} DEFAULT NULL",
                         CALTYPE="" if legacy else ", calendartype INTEGER DEFAULT 0 NOT NULL",
                         CARDUID="" if legacy else ", uid VARCHAR(255) DEFAULT NULL")


def _literal(value, kind: str) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return f"decode('{value.hex()}', 'hex')" if kind == "pgsql" else f"X'{value.hex()}'"
    text = value.replace("'", "''")
    return "'" + (text.replace("\\", "\\\\") if kind == "mysql" else text) + "'"


def rows(legacy: bool = False):
    """(table, {column: value}) for everything, in insertion order."""
    for user in USERS:
        yield "users", {"uid": user, "displayname": user.title(), "uid_lower": user}
    for c in CALENDARS:
        row = {"id": c.id, "principaluri": f"principals/users/{c.user}", "displayname": c.displayname,
               "uri": c.uri, "components": "VEVENT,VTODO", "calendarorder": c.id}
        if not legacy:
            row["deleted_at"] = c.deleted_at
        yield "calendars", row
    for number, o in enumerate(OBJECTS, 1):
        if legacy and (o.calendartype or o.deleted_at):
            continue
        row = {"id": number, "calendardata": o.data, "uri": o.uri, "calendarid": o.calendar.id,
               "lastmodified": 1_704_103_200, "etag": f"{number:032x}", "size": len(o.data),
               "componenttype": o.component, "firstoccurence": o.first, "lastoccurence": o.last,
               "uid": o.uid}
        if not legacy:
            row.update(calendartype=o.calendartype, deleted_at=o.deleted_at)
        yield "calendarobjects", row
    for b in ADDRESSBOOKS:
        yield "addressbooks", {"id": b.id, "principaluri": f"principals/users/{b.user}",
                               "displayname": b.displayname, "uri": b.uri}
    for number, card in enumerate(CARDS, 1):
        row = {"id": number, "addressbookid": card.book.id, "carddata": card.data, "uri": card.uri,
               "lastmodified": 1_704_103_200, "etag": f"{number:032x}", "size": len(card.data)}
        if not legacy:
            row["uid"] = card.uid
        yield "cards", row


def insert_sql(kind: str, prefix: str = "oc_", legacy: bool = False) -> str:
    statements = []
    for table, row in rows(legacy):
        values = ", ".join(_literal(value, kind) for value in row.values())
        statements.append(f"INSERT INTO {prefix}{table} ({', '.join(row)}) VALUES ({values});")
    if kind == "pgsql":
        statements += [f"SELECT setval('{prefix}{t}_id_seq', 100);"
                       for t in ("calendars", "calendarobjects", "addressbooks", "cards")]
    return "\n".join(statements)


def make_sqlite(path: str, prefix: str = "oc_", legacy: bool = False) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(schema_sql("sqlite", prefix, legacy))
    for table, row in rows(legacy):
        conn.execute(f"INSERT INTO {prefix}{table} ({', '.join(row)}) VALUES "
                     f"({', '.join('?' * len(row))})", list(row.values()))
    conn.commit()
    conn.close()


def make_server_db(server, name: str, prefix: str = "oc_") -> None:
    server.create_database(name)
    server.sql(schema_sql(server.kind, prefix) + insert_sql(server.kind, prefix), database=name)
