"""The ``ephw`` command line."""
