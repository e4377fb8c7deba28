"""The HTTP API, the Similar Q&A widget and the search page (`simqa serve`), on FastAPI.

FastAPI validates parameters from type hints and publishes the OpenAPI document; the index and
the model are loaded once, when the app is made, never per request; a new generation written by
`simqa index/add/delete` is picked up without a restart (search/live.py). Requests run in
FastAPI's thread pool; the Searcher is thread-safe.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Annotated

from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from index.consultation import valid_unicode
from index.errors import ShardUnavailable, SimqaError
from search.filters import NAMES as FILTERS, FilterError, Filters
from search.fusion import MODES
from search.live import LiveSearcher
from search.searcher import Searcher

MAX_K = 50
MAX_QUERY_CHARS = 2_000
MAX_BATCH = 64
MAX_BODY_BYTES = 256 * 1024
STATIC = files("search") / "static"

K = Annotated[int, Query(ge=1, le=MAX_K, description="number of results")]
Mode = Annotated[str, Query(pattern="^(" + "|".join(MODES) + ")$", description="ranking: " + ", ".join(MODES))]
Explain = Annotated[bool, Query(description="add each hit's per-signal raw and normalised scores and contributions")]
ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"


FILTER_HELP = {
    "department": "only consultations of this department",
    "doctor": "only consultations this doctor replied to",
    "since": "only consultations asked on or after this ISO date (YYYY-MM-DD)",
    "until": "only consultations asked on or before this ISO date (YYYY-MM-DD)",
    "source": "only consultations read from this file (its path as indexed, or its name)",
}


def _filters(location: str, values: dict[str, str | None]) -> Filters:
    """The Filters of request values; a 422 naming the parameter for a value they refuse (2015-02-30)."""
    for name, value in values.items():
        if value is not None and not valid_unicode(value):
            raise _invalid((location, name), f"{name} is not valid Unicode")
    try:
        return Filters(**values)
    except FilterError as error:
        raise _invalid((location, error.parameter), str(error)) from None


def query_filters(
    department: Annotated[str | None, Query(description=FILTER_HELP["department"])] = None,
    doctor: Annotated[str | None, Query(description=FILTER_HELP["doctor"])] = None,
    since: Annotated[str | None, Query(pattern=ISO_DATE, description=FILTER_HELP["since"])] = None,
    until: Annotated[str | None, Query(pattern=ISO_DATE, description=FILTER_HELP["until"])] = None,
    source: Annotated[str | None, Query(description=FILTER_HELP["source"])] = None,
) -> Filters:
    """The filter query parameters of the GET endpoints, as one dependency."""
    return _filters("query", {"department": department, "doctor": doctor, "since": since, "until": until, "source": source})


class SearchRequest(BaseModel):
    """A batch of questions, answered in one call; a field it does not know is a 422."""

    model_config = ConfigDict(extra="forbid")

    queries: list[Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS)]] = Field(min_length=1, max_length=MAX_BATCH)
    k: int = Field(10, ge=1, le=MAX_K)
    mode: str = Field("hybrid", pattern="^(" + "|".join(MODES) + ")$")
    explain: bool = False
    department: str | None = Field(None, description=FILTER_HELP["department"])
    doctor: str | None = Field(None, description=FILTER_HELP["doctor"])
    since: str | None = Field(None, pattern=ISO_DATE, description=FILTER_HELP["since"])
    until: str | None = Field(None, pattern=ISO_DATE, description=FILTER_HELP["until"])
    source: str | None = Field(None, description=FILTER_HELP["source"])


# Answers other than 200 and 422 that the OpenAPI schema documents (checked by tests/test_api_fuzz.py).
REFUSED = {400: {"description": "a query simqa refuses, e.g. not valid Unicode or too long; `detail` says why"}}
TOO_LARGE = {413: {"description": "a request body over the size limit"}}
UNKNOWN = {404: {"description": "no consultation with this id"}}
UNAVAILABLE = {503: {"description": "a shard of the index did not answer (simqa serve --ray); `detail` names it. "
                     "An answer without its consultations would be wrong, so there is none"}}


def _invalid(location: tuple[str, ...], message: str) -> RequestValidationError:
    """A 422 for a rule the schema cannot state (blank text), in the shape of every other 422
    (the schema's HTTPValidationError), so clients parse one error format."""
    return RequestValidationError([{"loc": list(location), "msg": message, "type": "value_error"}])


def _known_parameters(request: Request) -> None:
    """A 422 for a query parameter the endpoint does not take: a misspelt filter must not be ignored."""
    known = _query_names(request.scope["route"].dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise _invalid(("query", unknown[0]), f"unknown parameter {unknown[0]!r} (known: {', '.join(sorted(known))})")


def _query_names(dependant) -> set[str]:
    """The query parameters of an endpoint and of its dependencies (the filters)."""
    return {p.alias for p in dependant.query_params}.union(*(_query_names(d) for d in dependant.dependencies))


API = [Depends(_known_parameters)]
Filtered = Annotated[Filters, Depends(query_filters)]


def create_app(source: Searcher | LiveSearcher, allow_origins: list[str] | None = None) -> FastAPI:
    """The app serving an index: a fixed Searcher, or a LiveSearcher that follows new generations."""
    current = source.get if isinstance(source, LiveSearcher) else lambda: source
    app = FastAPI(
        title="simqa",
        summary="Similar Q&A search over medical consultations",
        docs_url=None,  # Swagger UI loads its assets from a CDN: this server makes no outside calls
        redoc_url=None,
    )
    if allow_origins:
        app.add_middleware(CORSMiddleware, allow_origins=allow_origins, allow_methods=["GET", "POST"], allow_headers=["Content-Type"])

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        """Refuse large bodies before reading them (Content-Length), and after (chunked uploads)."""
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return JSONResponse({"detail": f"request body larger than {MAX_BODY_BYTES} bytes"}, status_code=413)
        if request.method == "POST" and not declared:
            body = await request.body()
            if len(body) > MAX_BODY_BYTES:
                return JSONResponse({"detail": f"request body larger than {MAX_BODY_BYTES} bytes"}, status_code=413)
        return await call_next(request)

    @app.get("/healthz", responses={503: {"description": "a shard does not answer: `status` is \"degraded\""}})
    def healthz() -> JSONResponse:
        """The index, and each shard's consultations and generation (and replicas, on Ray Serve)."""
        searcher = current()
        shards = []
        for number, shard in enumerate(searcher.shards):
            try:
                shards.append({"shard": number, "status": "ok", **shard.health()})
            except ShardUnavailable as error:
                shards.append({"shard": number, "status": "unavailable", "detail": str(error)})
        ok = all(s["status"] == "ok" for s in shards)
        return JSONResponse({"status": "ok" if ok else "degraded", "consultations": len(searcher), "model": searcher.manifest.model,
                             "generation": searcher.generation.name, "shards": shards}, status_code=200 if ok else 503)

    @app.get("/api/search", responses={**REFUSED, **UNAVAILABLE}, dependencies=API)
    def search(
        q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="the question")],
        filters: Filtered,
        k: K = 10,
        mode: Mode = "hybrid",
        explain: Explain = False,
    ) -> dict:
        if not q.strip():
            raise _invalid(("query", "q"), "q must not be blank")
        hits = current().search(q, k=k, mode=mode, explain=explain, **vars(filters))
        return {"query": q, "hits": [h.to_dict() for h in hits]}

    @app.post("/api/search", responses={**REFUSED, **TOO_LARGE, **UNAVAILABLE})
    def search_batch(request: Annotated[SearchRequest, Body()]) -> dict:
        if any(not q.strip() for q in request.queries):
            raise _invalid(("body", "queries"), "queries must not be blank")
        results = current().search_many(request.queries, k=request.k, mode=request.mode, explain=request.explain,
                                        **vars(_filters("body", {name: getattr(request, name) for name in FILTERS})))
        return {"results": [[h.to_dict() for h in hits] for hits in results]}

    @app.get("/api/similar/{consultation_id:path}", responses={**UNKNOWN, **UNAVAILABLE}, dependencies=API)
    def similar(consultation_id: str, filters: Filtered, k: K = 4, explain: Explain = False) -> dict:
        searcher = current()
        _known(searcher, consultation_id)
        hits = searcher.similar(consultation_id, k=k, explain=explain, **vars(filters))
        return {"id": consultation_id, "hits": [h.to_dict() for h in hits]}

    @app.get("/api/related-faq", responses={**REFUSED, **UNKNOWN, **UNAVAILABLE}, dependencies=API)
    def related_faq(
        q: Annotated[str | None, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="free text (or give id)")] = None,
        id: Annotated[str | None, Query(description="a stored consultation's id (or give q)")] = None,
        k: Annotated[int, Query(ge=1, le=MAX_K, description="number of topics")] = 8,
    ) -> dict:
        """The Related FAQ topics of a question or a consultation; an empty list for an index without topics."""
        if (q is None) == (id is None):
            raise _invalid(("query", "q"), "give q or id, not both")
        if q is not None and not q.strip():
            raise _invalid(("query", "q"), "q must not be blank")
        searcher = current()
        if id is not None:
            _known(searcher, id)
        topics = searcher.related_faq(text=q, consultation_id=id, k=k)
        return {"query": q, "id": id, "topics": [t.to_dict() for t in topics]}

    @app.get("/api/consultations/{consultation_id:path}", responses={**UNKNOWN, **UNAVAILABLE}, dependencies=API)
    def consultation(consultation_id: str) -> dict:
        searcher = current()
        _known(searcher, consultation_id)
        return searcher.get(consultation_id).to_dict()

    @app.get("/widget.js", include_in_schema=False)
    def widget() -> Response:
        return Response((STATIC / "widget.js").read_text(encoding="utf-8"), media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=300"})

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        """FastAPI's 422, with inputs that hold lone surrogates escaped: echoing them raw made
        the error response itself fail to encode (HTTP 500)."""
        return JSONResponse({"detail": _escaped(jsonable_encoder(error.errors()))}, status_code=422)

    @app.exception_handler(SimqaError)
    async def simqa_error(request: Request, error: SimqaError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=400)

    @app.exception_handler(ShardUnavailable)
    async def shard_unavailable(request: Request, error: ShardUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(error), "shard": error.shard}, status_code=503, headers={"Retry-After": "1"})

    return app


def _escaped(value):
    """JSON-ready data with every string made valid Unicode (lone surrogates as \\udXXX)."""
    if isinstance(value, str):
        return value if valid_unicode(value) else value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    return value


def _known(searcher: Searcher, consultation_id: str) -> None:
    if consultation_id not in searcher:
        raise HTTPException(404, f"unknown consultation id {consultation_id!r}")


def serve(index: Path, host: str = "127.0.0.1", port: int = 8000, allow_origins: list[str] | None = None) -> None:
    """Open the index, load the model, and serve until interrupted."""
    import uvicorn

    live = LiveSearcher(index)
    live.get().embed("load the model before the first request")
    server = uvicorn.Server(uvicorn.Config(create_app(live, allow_origins), host=host, port=port, log_level="warning"))
    startup = server.startup

    async def announce(sockets=None) -> None:
        """Say where it listens once it does (uvicorn at log level warning says nothing)."""
        await startup(sockets)
        if server.started:
            print(f"simqa: serving {index} at http://{host}:{port}/ (API /api, widget /widget.js); Ctrl-C stops", flush=True)

    server.startup = announce
    server.run()

