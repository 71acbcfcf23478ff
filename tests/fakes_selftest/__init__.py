"""Self-tests of the fake upstream (tests/fakes) through the real client libraries."""
