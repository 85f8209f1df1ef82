"""CLI commands. Each module holds one click command that only composes library calls."""
