"""intake: the REST API for CRMs and agents: validates commands, appends events, answers queries."""
