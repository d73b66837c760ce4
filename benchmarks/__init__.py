"""Commands that print performance tables (never timed assertions in tests)."""
