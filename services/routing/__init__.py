"""routing: hand-offs, the agent directory and the ownership view."""
