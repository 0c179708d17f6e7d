"""Development tooling, apart from the service: embedded PostgreSQL and Redis,
the Asterisk sandbox, the call simulator, prompt rendering, the import rules.
Only the CLI, the composition root and the tests import it."""
