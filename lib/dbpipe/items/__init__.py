"""Item-level restore of Nextcloud calendars, events and contacts.

A backup holds every user's calendars and address books in a handful of DAV
tables.  Rolling the whole database back to bring back one deleted event
would also throw away everybody's newer changes, so instead the stored dump
is loaded into a throwaway scratch database, the wanted objects are read
from there, and they go back either as .ics/.vcf files or through CalDAV/
CardDAV - the way Nextcloud expects changes to arrive, so its sync tokens,
caches and change logs stay right.  The live database is never written.
"""
