"""Baton's three services. None imports another; they share contracts and runtime."""
