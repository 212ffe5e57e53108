"""What the tests and the bench both stand on: private database servers, the
prerequisites they install, the PITR archive helpers.  Outside tests/ so the
bench borrows them without importing the test suite."""
