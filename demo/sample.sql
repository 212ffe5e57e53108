-- A tiny Nextcloud-like SQLite database for `make demo`.
PRAGMA journal_mode=WAL;
CREATE TABLE oc_users (uid VARCHAR(64) PRIMARY KEY, displayname VARCHAR(64), password VARCHAR(255));
CREATE TABLE oc_filecache (fileid INTEGER PRIMARY KEY AUTOINCREMENT, storage INTEGER NOT NULL,
  path VARCHAR(4000), path_hash VARCHAR(32) NOT NULL, name VARCHAR(250), size BIGINT NOT NULL DEFAULT 0,
  mtime BIGINT NOT NULL DEFAULT 0, etag VARCHAR(40));
CREATE INDEX fs_storage_path_hash ON oc_filecache (storage, path_hash);
CREATE TABLE oc_calendarobjects (id INTEGER PRIMARY KEY AUTOINCREMENT, calendarid BIGINT NOT NULL,
  uri VARCHAR(255), calendardata BLOB, etag VARCHAR(32), lastmodified BIGINT);
INSERT INTO oc_users VALUES ('alice', 'Alice Ümlaut', '3|$argon2id$v=19$m=65536,t=4,p=1$c2FsdA$aGFzaA');
INSERT INTO oc_users VALUES ('bob', 'Bob 🚀', '3|$argon2id$v=19$m=65536,t=4,p=1$c2FsdA$aGFzaB');
INSERT INTO oc_filecache (storage, path, path_hash, name, size, mtime, etag) VALUES
  (1, 'files', '45b963397aa40d4a0063e0d85e4fe7a1', 'files', 0, 1700000000, 'e1'),
  (1, 'files/Photos/Zürich.jpg', 'a1b2c3d4e5f60718293a4b5c6d7e8f90', 'Zürich.jpg', 231442, 1700000100, 'e2'),
  (1, 'files/Notes/🗒 todo.md', '0f1e2d3c4b5a69788796a5b4c3d2e1f0', '🗒 todo.md', 512, 1700000200, 'e3');
INSERT INTO oc_calendarobjects (calendarid, uri, calendardata, etag, lastmodified) VALUES
  (1, 'standup.ics', CAST('BEGIN:VCALENDAR
VERSION:2.0
BEGIN:VEVENT
UID:standup-1
SUMMARY:Stand-up ☕
DTSTART:20261126T090000Z
END:VEVENT
END:VCALENDAR
' AS BLOB), 'c0ffee', 1700000300);
