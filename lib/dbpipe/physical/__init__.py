"""Physical MariaDB backups with mariabackup, streamed through bpipe.

A backup chain is one full backup plus any number of incremental and
differential backups taken relative to it.  Each backup is one dbpipe stream
(header, binary xbstream payload, trailer) whose trailer carries the piece's
place in the chain; the restore side stores every piece under its own name,
validates the chain from those trailers before touching anything, prepares it
and swaps it into the server's data directory without ever deleting the old one.

Modules: ``piece`` (metadata and names), ``state`` (the reader's chain state),
``identity`` (which server instance a data directory holds), ``tool``
(mariabackup/mbstream command lines, server facts), ``backup`` (the reader),
``store`` (the writer), ``chain`` (order and validate), ``prepare``,
``server_checks`` (is the server stopped, answering, whole; services.py stops
and starts it), ``copyback`` (Nextcloud through nextcloud.cycle),
``swap_record`` (what a killed copy-back leaves for the next one) and
``options`` (the command lines of dbpipe-mariabackup and dbpipe-mariabackup-restore).
"""
