"""Entry point: ``python -m services.intake``."""

from runtime.web import serve
from services.intake.bootstrap import bootstrap

if __name__ == "__main__":
    serve("intake", bootstrap, lambda s: s.intake_port)
