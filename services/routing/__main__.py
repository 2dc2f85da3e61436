"""Entry point: ``python -m services.routing``."""

from runtime.web import serve
from services.routing.bootstrap import bootstrap

if __name__ == "__main__":
    serve("routing", bootstrap, lambda s: s.routing_port)
