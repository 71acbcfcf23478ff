"""The composition root: configuration, the policy pipeline, the method table, the app and the CLI."""
