"""End-to-end tests (a package, so that its conftest is `e2e.conftest` and does not shadow the
`conftest` module whose helpers the other tests import)."""
