"""The seed paper's experiment end to end (``ephw reproduce``): plan, pipeline, robustness parts, results page."""
