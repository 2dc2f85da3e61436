"""Entry point: ``python -m services.followup``."""

from runtime.web import serve
from services.followup.bootstrap import bootstrap

if __name__ == "__main__":
    serve("followup", bootstrap, lambda s: s.followup_port)
