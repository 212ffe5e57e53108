"""Nextcloud: find the database from an installation's own config, run occ as
the web server user, and the job hooks that keep maintenance mode (or a
stopped web server) from ever getting stuck.

One module per concern: installation (where it is and who owns it), occ
(running the console), sysconfig (system config through occ, or PHP where occ
refuses), config (discovery of the database), fileset (what a FileSet backs
up), state (record and lock), maintenance, guard (timeouts and signals),
report (step lines for the Bareos job log), cycle (change and put back),
dumpfile (the method 4.2 dump file), snapshot_backup (snapshot mode), hooks
(the three flows) and options (their shared command line).
"""
