"""The event-store port (``runtime.store.port``) and its adapters, one module per technology."""
