"""The package's main jobs, each behind an ``hmr-ros`` subcommand."""
