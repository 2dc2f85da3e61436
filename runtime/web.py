"""Shared HTTP plumbing for the services: RFC 9457 problem details, health and
readiness routes, the tenant header, and the app factory with the runtime lifespan."""

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from opentelemetry.trace import SpanKind
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts.errors import RuleViolation
from contracts.ids import TenantId
from runtime.compose import ServiceRuntime
from runtime.config import Settings
from runtime.events import customer_stream
from runtime.telemetry import log_tenant, setup_logging, setup_tracing, span

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
GRACEFUL_HTTP_SECONDS = 4
PROBLEM_BASE = "https://baton.dev/problems/"
STATUS_BY_KIND = {"not_found": 404, "forbidden": 403, "conflict": 409, "invalid": 422}
TITLES = {
    400: "Bad request",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    422: "Unprocessable content",
    500: "Internal error",
    503: "Unavailable",
}

_tenant_adapter: TypeAdapter[str] = TypeAdapter(TenantId)


def problem(status: int, rule: str, detail: str, instance: str | None = None, **extra: Any) -> JSONResponse:
    """An RFC 9457 problem-details response."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + rule,
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "rule": rule,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def _field_errors(errors: Any) -> list[dict[str, Any]]:
    out = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        out.append(
            {
                "field": ".".join(p for p in loc if p not in {"body", "query", "path", "header"}) or ".".join(loc),
                "location": loc[0] if loc else None,
                "reason": err.get("msg", "invalid"),
                "type": err.get("type"),
            }
        )
    return out


def install_problem_handlers(app: FastAPI) -> None:
    """Every error leaves as problem details; validation errors name field and reason."""

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc.errors())
        fields = ", ".join(f"{e['field']}: {e['reason']}" for e in errors)
        return problem(422, "validation", f"invalid request: {fields}", request.url.path, errors=errors)

    @app.exception_handler(ValidationError)
    async def _model_validation(request: Request, exc: ValidationError) -> JSONResponse:
        errors = _field_errors(exc.errors())
        fields = ", ".join(f"{e['field']}: {e['reason']}" for e in errors)
        return problem(422, "validation", f"invalid request: {fields}", request.url.path, errors=errors)

    @app.exception_handler(RuleViolation)
    async def _rule(request: Request, exc: RuleViolation) -> JSONResponse:
        return problem(STATUS_BY_KIND[exc.kind], exc.rule, exc.detail, request.url.path, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        rule = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return problem(exc.status_code, rule, str(exc.detail), request.url.path)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return problem(
            500,
            "internal_error",
            "an internal error occurred; nothing was lost if the request is retried",
            request.url.path,
        )


def tenant_dependency(default_tenant: str) -> Callable[..., str]:
    """A dependency reading the tenant from ``X-Tenant-ID`` (or the configured default)."""

    def tenant(
        x_tenant_id: Annotated[str | None, Header(description="Tenant; defaults to the configured tenant.")] = None,
    ) -> str:
        value = x_tenant_id or default_tenant
        try:
            return _tenant_adapter.validate_python(value)
        except ValidationError as exc:
            raise RuleViolation(
                "invalid",
                "validation",
                "X-Tenant-ID: letters, digits, '_' and '-' only (1-64)",
                errors=[{"field": "X-Tenant-ID", "location": "header", "reason": exc.errors()[0]["msg"]}],
            ) from exc

    return tenant


def create_app(title: str, description: str, runtime: ServiceRuntime, version: str = "0.1.0") -> FastAPI:
    """A FastAPI app whose lifespan starts and stops ``runtime``, with health routes."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title=title, description=description, version=version, lifespan=lifespan)
    app.state.runtime = runtime
    install_problem_handlers(app)

    @app.middleware("http")
    async def trace_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.url.path in UNTRACED_PATHS:
            return await call_next(request)
        token = log_tenant.set(request.headers.get("x-tenant-id") or runtime.settings.default_tenant)
        name = f"{request.method} {request.url.path}"
        try:
            with span(
                name,
                SpanKind.SERVER,
                dict(request.headers),
                **{"http.request.method": request.method, "url.path": request.url.path},
            ) as current:
                response = await call_next(request)
                route = request.scope.get("route")
                if route is not None:
                    current.update_name(f"{request.method} {getattr(route, 'path', request.url.path)}")
                current.set_attribute("http.response.status_code", response.status_code)
                return response
        finally:
            log_tenant.reset(token)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(await runtime.scrape(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": runtime.name}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: store and NATS reachable, consumers attached",
        responses={503: {"description": "Not ready; the body says which check failed."}},
    )
    async def readyz() -> JSONResponse:
        checks = await runtime.readiness()
        ready = all(checks.values())
        return JSONResponse(
            {
                "status": "ready" if ready else "not_ready",
                "service": runtime.name,
                "checks": checks,
            },
            status_code=200 if ready else 503,
        )

    @app.get("/v1/admin/parked", tags=["operations"], summary="Messages this service's consumers parked")
    async def parked() -> dict[str, Any]:
        items = await runtime.views.parked()
        return {
            "items": [
                {
                    "consumer": p.consumer,
                    "event_id": p.event_id,
                    "tenant_id": p.tenant_id,
                    "stream": p.stream,
                    "version": p.version,
                    "subject": p.subject,
                    "attempts": p.attempts,
                    "error": p.error,
                    "parked_at": p.parked_at.isoformat(),
                }
                for p in items
            ]
        }

    @app.post(
        "/v1/admin/parked/replay",
        tags=["operations"],
        summary="Re-apply parked messages from the store (after the cause was fixed)",
        responses={422: {"description": "Invalid request (problem details)."}},
    )
    async def replay_parked(
        consumer: Annotated[str | None, Query(description="Only this consumer's parked messages.")] = None,
        event_id: Annotated[str | None, Query(description="Only this event.")] = None,
    ) -> dict[str, Any]:
        results = await runtime.replay_parked(consumer, event_id)
        return {"items": results, "replayed": sum(1 for r in results if r["outcome"] == "replayed")}

    return app


def serve(service: str, build: Callable[[Settings], FastAPI], port_of: Callable[[Settings], int]) -> None:
    """Entry point helper: read settings once, set up logs and traces, serve until SIGTERM/SIGINT.

    On SIGTERM uvicorn stops accepting connections, lets in-flight requests finish (at most
    a few seconds), then the lifespan stops the runtime: the process exits within 10 s.
    """
    import uvicorn

    settings = Settings()
    setup_logging(settings.log_level)
    setup_tracing(service, settings.trace_file)
    uvicorn.run(
        build(settings),
        host=settings.host,
        port=port_of(settings),
        log_level=settings.log_level.lower(),
        log_config=None,
        timeout_graceful_shutdown=GRACEFUL_HTTP_SECONDS,
        access_log=False,
    )


CUSTOMER_ID_PATTERN = r"^[A-Za-z0-9_.:@-]+$"


def add_customer_view_route(app: FastAPI, runtime: ServiceRuntime, path: str, view: str, summary: str) -> None:
    """GET ``path`` (with ``{customer_id}``) answers one customer's document of ``view``."""
    from fastapi import Depends, Path

    tenant_dep = Depends(tenant_dependency(runtime.settings.default_tenant))

    async def read_view(
        customer_id: Annotated[str, Path(min_length=1, max_length=128, pattern=CUSTOMER_ID_PATTERN)],
        tenant: Annotated[str, tenant_dep],
    ) -> dict[str, Any]:
        found = await runtime.views.load(view, tenant, customer_stream(customer_id))
        if found is None:
            raise RuleViolation(
                "not_found",
                "customer_not_found",
                f"{runtime.name} has no view of customer {customer_id} (yet)",
            )
        return {"tenant_id": tenant, "view_version": found.version, **found.doc}

    app.add_api_route(
        path,
        read_view,
        methods=["GET"],
        tags=["views"],
        summary=summary,
        responses={404: {"description": "This service has not seen the customer (yet)."}},
    )


def add_tenant_view_route(app: FastAPI, runtime: ServiceRuntime, path: str, view: str, key: str, summary: str) -> None:
    """GET ``path`` answers the tenant's document ``key`` of ``view`` (empty when none yet)."""
    from fastapi import Depends

    tenant_dep = Depends(tenant_dependency(runtime.settings.default_tenant))

    async def read_view(tenant: Annotated[str, tenant_dep]) -> dict[str, Any]:
        found = await runtime.views.load(view, tenant, key)
        return {"tenant_id": tenant, "view_version": found.version if found else 0, **(found.doc if found else {})}

    app.add_api_route(path, read_view, methods=["GET"], tags=["views"], summary=summary)
