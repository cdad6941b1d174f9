"""Errors in OpenAI's shape: {"error": {"message", "type", "param", "code"}} with its HTTP status.

The openai SDK turns the status into its exception class (400 BadRequestError, 401
AuthenticationError, 404 NotFoundError, ...) and reads `code` and `param` from the body.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type


def bad_param(param: str, message: str, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


def not_found(kind: str, ident: str, param: str) -> ApiError:
    return ApiError(404, f"No such {kind}: {ident}", param=param, code="not_found")


def body(message: str, *, param: str | None, code: str | None, type: str) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


UNION_BRANCHES = ("int", "float", "str", "bool", "none")


def _param(loc: tuple) -> str | None:
    # ("body", "hyperparameters", "n_epochs", "literal['auto']") -> "hyperparameters.n_epochs": neither the
    # request part nor the union branch pydantic tried is a parameter
    parts = []
    for p in loc:
        if p in ("body", "query", "path", "header"):
            continue
        if isinstance(p, str) and ("[" in p or p in UNION_BRANCHES or p.startswith("constrained-")):
            break
        parts.append(str(p))
    return ".".join(parts) or None


def _most_telling(found: list[dict]) -> dict:
    # For "auto" | int, the literal branch's complaint ("should be 'auto'") hides the real one (> 0)
    return next((e for e in found if e.get("type") != "literal_error"), found[0])


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> JSONResponse:
        return JSONResponse(body(err.message, param=err.param, code=err.code, type=err.type), status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        first = _most_telling(list(err.errors()))
        param = _param(tuple(first.get("loc", ())))
        kind = first.get("type", "")
        if kind == "extra_forbidden":
            message, code = f"Unknown parameter: '{param}'.", "unknown_parameter"
        elif kind == "missing":
            message, code = f"Missing required parameter: '{param}'.", "missing_required_parameter"
        else:
            message, code = f"Invalid value for '{param}': {first.get('msg')}.", "invalid_value"
        return JSONResponse(body(message, param=param, code=code, type="invalid_request_error"), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(body(str(err.detail), param=None, code=None, type="invalid_request_error"),
                            status_code=err.status_code)

    @app.exception_handler(Exception)
    async def _crash(request: Request, err: Exception) -> JSONResponse:
        # The cause goes to the server log (without the request's headers); the client gets no traceback.
        import logging

        logging.getLogger("jobs.api").exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(body("The server had an error processing the request.", param=None, code=None,
                                 type="server_error"), status_code=500)
