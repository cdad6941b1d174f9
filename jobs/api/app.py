"""The FastAPI app: OpenAI's files, fine_tuning.jobs, models and chat.completions endpoints under
/v1, per tenant.

Every route needs `Authorization: Bearer <key>`; the key names the tenant (its namespace), and a
tenant sees only its own files, jobs and models (another tenant's id is simply not found).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse

from jobs.api import errors
from jobs.api.errors import ApiError, bad_param, not_found
from jobs.api.models import ServedModels
from jobs.api.records import Records, add_event, new_id, page
from jobs.api.schemas import ChatCompletionCreate, JobCreate
from jobs.api.template import JobTemplate
from jobs.api.tenants import KeyRing, Tenant
from jobs.api.uploads import check_upload, is_preference_file, to_dpo_rows
from jobs.api.worker import FINISHED, LocalWorker
from jobs.common.spec import Wandb
from jobs.common.store import Store

DEFAULT_MAX_UPLOAD_BYTES = 512 * 1024 * 1024
PUBLIC_JOB_FIELDS = ("id", "object", "created_at", "error", "fine_tuned_model", "finished_at", "hyperparameters",
                     "model", "organization_id", "result_files", "seed", "status", "trained_tokens",
                     "training_file", "validation_file", "estimated_finish", "integrations", "metadata", "method",
                     "user_provided_suffix")


@dataclass
class Settings:
    store: Store
    keyring: KeyRing
    template: JobTemplate
    work_root: Path
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    cluster: bool = False  # jobs become FineTuneRuns through the Kubernetes API, not local processes


def _tenant(request: Request) -> Tenant:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
                       code="missing_api_key")
    found = request.app.state.keyring.tenant(key.strip())
    if found is None:
        raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")
    return found


Auth = Annotated[Tenant, Depends(_tenant)]


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="finetune-operator OpenAI-compatible fine-tuning API", docs_url=None, redoc_url=None)
    errors.install(app)
    app.state.keyring = settings.keyring
    records = Records(settings.store)
    if settings.cluster:
        from jobs.api.cluster import ClusterWorker

        worker = ClusterWorker(records, settings.work_root, settings.keyring.namespaces())
    else:
        worker = LocalWorker(records, settings.work_root)
    models = ServedModels(records, settings.template, settings.work_root, created=int(time.time()))

    @app.middleware("http")
    async def limit_upload(request: Request, call_next):
        # Refused before the body is read: the declared size is over the limit, or not declared.
        if request.method == "POST" and request.url.path == "/v1/files":
            length = request.headers.get("content-length")
            if length is None or not length.isdigit():
                return _error(411, "Uploads must declare their Content-Length.", "file", "length_required")
            if int(length) > settings.max_upload_bytes:
                return _error(413, f"The upload is {length} bytes; the limit is {settings.max_upload_bytes}.",
                              "file", "file_too_large")
        return await call_next(request)

    # --- files -----------------------------------------------------------------------------------

    @app.post("/v1/files")
    async def upload_file(t: Auth, file: UploadFile, purpose: Annotated[str, Form()]) -> dict[str, Any]:
        if purpose != "fine-tune":
            raise bad_param("purpose", f"Invalid purpose '{purpose}': this server accepts 'fine-tune' only.")
        data = await file.read()
        check_upload(file.filename or "file", data)
        return records.add_file(t.namespace, file.filename or "file", purpose, data)

    @app.get("/v1/files")
    def list_files(t: Auth, purpose: str | None = None, after: str | None = None,
                   limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
                   order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc") -> dict[str, Any]:
        files = [f for f in records.files(t.namespace) if purpose is None or f["purpose"] == purpose]
        return page(files[::-1] if order == "desc" else files, after, limit)

    def _file(t: Tenant, file_id: str, param: str = "file_id") -> dict[str, Any]:
        meta = records.file(t.namespace, file_id)
        if meta is None:
            raise not_found("file", file_id, param)
        return meta

    @app.get("/v1/files/{file_id}")
    def retrieve_file(t: Auth, file_id: str) -> dict[str, Any]:
        return _file(t, file_id)

    @app.delete("/v1/files/{file_id}")
    def delete_file(t: Auth, file_id: str) -> dict[str, Any]:
        _file(t, file_id)
        records.delete_file(t.namespace, file_id)
        return {"id": file_id, "object": "file", "deleted": True}

    @app.get("/v1/files/{file_id}/content")
    def file_content(t: Auth, file_id: str) -> Response:
        _file(t, file_id)
        data = records.file_content(t.namespace, file_id)
        if data is None:
            raise not_found("file", file_id, "file_id")
        return Response(data, media_type="application/octet-stream")

    # --- fine-tuning jobs ------------------------------------------------------------------------

    def _job(t: Tenant, job_id: str) -> dict[str, Any]:
        job = records.job(t.namespace, job_id)
        if job is None:
            raise not_found("fine-tuning job", job_id, "fine_tuning_job_id")
        return job

    def _data_uri(t: Tenant, req: JobCreate, param: str) -> str:
        """Where the run reads the training or validation file (`param`): as uploaded, or converted
        to pack's dpo rows. Both are checked alike: the tenant's file, of the method's kind."""
        file_id = getattr(req, param)
        if records.file(t.namespace, file_id) is None:
            raise bad_param(param, f"Invalid file ID: {file_id}", code="invalid_file")
        data = records.file_content(t.namespace, file_id) or b""
        preference = is_preference_file(data)
        if (req.method_type() == "dpo") != preference:
            want = "a preference file (input, preferred_output, non_preferred_output)" if not preference \
                else "a chat file ({\"messages\": [...]}); a preference file needs method dpo"
            raise bad_param(param, f"The file {file_id} is not {want}.", code="invalid_file_format")
        if preference:
            return records.put_derived(t.namespace, file_id, "dpo", to_dpo_rows(data))
        return records.file_uri(t.namespace, file_id)

    def _build(t: Tenant, job_id: str, req: JobCreate):
        validation = _data_uri(t, req, "validation_file") if req.validation_file is not None else None
        return settings.template.build(job_id, t.namespace, _data_uri(t, req, "training_file"), req, validation)

    @app.post("/v1/fine_tuning/jobs")
    def create_job(t: Auth, req: JobCreate) -> dict[str, Any]:
        job_id = new_id("ftjob")
        run = _build(t, job_id, req)
        if req.integrations:
            wandb = req.integrations[0].wandb
            mode = run.spec.tracking.wandb.mode if run.spec.tracking.wandb else "offline"
            run.spec.tracking.wandb = Wandb(project=wandb.project, run_name=wandb.name or job_id,
                                            entity=wandb.entity, mode=mode)
        train = run.spec.steps.train
        suffix = f":{req.suffix}" if req.suffix else ""
        job = {
            "id": job_id, "object": "fine_tuning.job", "created_at": int(time.time()), "error": None,
            "fine_tuned_model": None, "finished_at": None, "model": req.model, "organization_id": t.namespace,
            "result_files": [], "seed": train.seed if train else (req.seed or 0), "status": "queued",
            "trained_tokens": None, "training_file": req.training_file, "validation_file": req.validation_file,
            "estimated_finish": None, "metadata": req.metadata, "user_provided_suffix": req.suffix,
            "integrations": [i.model_dump() for i in req.integrations or []],
            "hyperparameters": _resolved(req, run),
            "method": {"type": req.method_type(), req.method_type(): {"hyperparameters": _resolved(req, run)}},
            "events": [], "checkpoints": [],
            "internal": {"request": req.model_dump(exclude_none=True),
                         "fine_tuned_model": f"ft:{req.model}:{t.namespace}{suffix}:{job_id[-8:]}"},
        }
        add_event(job, f"Created fine-tuning job: {job_id}")
        add_event(job, f"Validating training file: {req.training_file}"
                  + (f" and validation file: {req.validation_file}" if req.validation_file else ""))
        add_event(job, "Files validated, moving job to queued state")  # they were checked on upload
        records.save_job(t.namespace, job)
        worker.submit(t.namespace, job_id, run)
        return _public(job)

    @app.get("/v1/fine_tuning/jobs")
    def list_jobs(t: Auth, after: str | None = None,
                  limit: Annotated[int, Query(ge=1, le=100)] = 20) -> dict[str, Any]:
        return page([_public(j) for j in records.jobs(t.namespace)][::-1], after, limit)

    @app.get("/v1/fine_tuning/jobs/{job_id}")
    def retrieve_job(t: Auth, job_id: str) -> dict[str, Any]:
        return _public(_job(t, job_id))

    @app.post("/v1/fine_tuning/jobs/{job_id}/cancel")
    def cancel_job(t: Auth, job_id: str) -> dict[str, Any]:
        job = _job(t, job_id)
        if job["status"] in FINISHED:
            raise ApiError(400, f"Job {job_id} has already {job['status']}; it cannot be cancelled.",
                           param="fine_tuning_job_id", code="job_finished")
        worker.stop(t.namespace, job_id, "cancelled")
        return _public(_job(t, job_id))

    @app.post("/v1/fine_tuning/jobs/{job_id}/pause")
    def pause_job(t: Auth, job_id: str) -> dict[str, Any]:
        job = _job(t, job_id)
        if job["status"] not in ("queued", "running"):
            raise ApiError(400, f"Job {job_id} is {job['status']}; only a queued or running job can be paused.",
                           param="fine_tuning_job_id", code="invalid_state")
        worker.stop(t.namespace, job_id, "paused")
        return _public(_job(t, job_id))

    @app.post("/v1/fine_tuning/jobs/{job_id}/resume")
    def resume_job(t: Auth, job_id: str) -> dict[str, Any]:
        job = _job(t, job_id)
        if job["status"] != "paused":
            raise ApiError(400, f"Job {job_id} is {job['status']}; only a paused job can be resumed.",
                           param="fine_tuning_job_id", code="invalid_state")
        req = JobCreate.model_validate(job["internal"]["request"])
        run = _build(t, job_id, req)

        def queued(record: dict[str, Any]) -> None:
            record["status"] = "queued"
            add_event(record, "Fine-tuning job resumed: finished steps are reused from the cache")

        job = records.update_job(t.namespace, job_id, queued)
        worker.submit(t.namespace, job_id, run)
        return _public(job)

    @app.get("/v1/fine_tuning/jobs/{job_id}/events")
    def list_events(t: Auth, job_id: str, after: str | None = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> dict[str, Any]:
        return page(_job(t, job_id)["events"][::-1], after, limit)

    @app.get("/v1/fine_tuning/jobs/{job_id}/checkpoints")
    def list_checkpoints(t: Auth, job_id: str, after: str | None = None,
                         limit: Annotated[int, Query(ge=1, le=1000)] = 10) -> dict[str, Any]:
        return page(_job(t, job_id)["checkpoints"][::-1], after, limit)

    # --- models and chat ---------------------------------------------------------------------------

    @app.get("/v1/models")
    def list_models(t: Auth) -> dict[str, Any]:
        return {"object": "list", "data": models.list(t.namespace)}

    @app.get("/v1/models/{model:path}")
    def retrieve_model(t: Auth, model: str) -> dict[str, Any]:
        return models.get(t.namespace, model)

    @app.post("/v1/chat/completions", response_model=None)
    def chat_completion(t: Auth, req: ChatCompletionCreate) -> dict[str, Any] | StreamingResponse:
        backend = models.backend(t.namespace, req.model)  # 404 before anything streams
        messages = [m.as_llama() for m in req.messages]
        if not req.stream:
            return {**backend.chat(messages, **req.llama_options()), "model": req.model}
        chunks = backend.chat(messages, stream=True, **req.llama_options())
        return StreamingResponse(_sse(chunks, req.model), media_type="text/event-stream")

    return app


def _sse(chunks, model: str):
    """Server-sent events as OpenAI streams them: one `data:` JSON chunk each, then `data: [DONE]`."""
    for chunk in chunks:
        yield f"data: {json.dumps({**chunk, 'model': model})}\n\n"
    yield "data: [DONE]\n\n"


def _error(status: int, message: str, param: str | None, code: str) -> JSONResponse:
    return JSONResponse(errors.body(message, param=param, code=code, type="invalid_request_error"),
                        status_code=status)


def _public(job: dict[str, Any]) -> dict[str, Any]:
    return {k: job.get(k) for k in PUBLIC_JOB_FIELDS}


def _resolved(req: JobCreate, run) -> dict[str, Any]:
    """The hyperparameters the run uses, with "auto" replaced by the template's values."""
    train = run.spec.steps.train
    if train is None:
        return {}
    epochs = int(train.epochs) if float(train.epochs).is_integer() else train.epochs
    hp = {"n_epochs": epochs, "batch_size": train.batch_size,
          "learning_rate_multiplier": _multiplier(req)}
    if req.method_type() == "dpo":
        hp["beta"] = train.beta
    return hp


def _multiplier(req: JobCreate) -> float:
    value = req.effective_hyperparameters().learning_rate_multiplier
    return value if isinstance(value, float) else 1.0

