"""The ``headwater`` command line: one module per group of commands."""
