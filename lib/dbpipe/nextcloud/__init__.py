"""Nextcloud: find the database from an installation's own config, run occ as
the web server user, and the job hooks that keep maintenance mode (or a
stopped web server) from ever getting stuck.

One module per concern: installation (where it is and who owns it), occ
(running the console), config (discovery), state (record and lock),
maintenance, service (method 4.1), guard (timeouts and signals), report
(step lines for the Bareos job log), cycle (change and put back), hooks (the
three flows) and options (their shared command line).
"""
