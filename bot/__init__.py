"""paperbot's Slack app and command-line interface (depends on `retrieval`, never the reverse)."""
