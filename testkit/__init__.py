"""What the tests and the bench both stand on: private database servers and the
prerequisites they install, PITR archive helpers, btrfs loop file systems,
Nextcloud installs (with the occ double of tests/nextcloud), a private MariaDB
service, the real-Bareos test bed.  Outside tests/ so the bench borrows them
without importing the test suite."""
