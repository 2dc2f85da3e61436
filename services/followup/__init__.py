"""followup: callback promises, durable deadlines, the escalation ladder, notifications."""
