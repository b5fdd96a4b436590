from __future__ import annotations

import shutil
import uuid
from typing import Literal

from fastapi import APIRouter, Depends, File, Request, Response, UploadFile

from ..auth import AuthFirstRoute, require_admin, require_read
from ..schemas import JobCreate, JobOut

router = APIRouter(tags=["jobs"], route_class=AuthFirstRoute)


@router.post("/collections/{name}/jobs", status_code=202, response_model=JobOut,
             dependencies=[Depends(require_admin)])
def create_job(name: str, body: JobCreate, request: Request):
    """Index a JSONL / Parquet file or BEIR folder in the server's import directory
    (LSR_IMPORT_DIR; off by default: upload the file instead) in the background."""
    st = request.app.state
    st.store.get(name)  # 404 before queueing
    return st.jobs.submit(name, body.source, body.format).public()


@router.post("/collections/{name}/jobs/upload", status_code=202, response_model=JobOut,
             dependencies=[Depends(require_admin)])
def upload_job(name: str, request: Request, file: UploadFile = File(...),
               format: Literal["jsonl", "parquet"] | None = None):
    """Upload a JSONL or Parquet file (multipart field ``file``) and index it as a job."""
    st = request.app.state
    st.store.get(name)
    fmt = format or ("parquet" if (file.filename or "").lower().endswith((".parquet", ".pq")) else "jsonl")
    uploads = st.settings.data_dir / ".uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    dest = uploads / f"{uuid.uuid4().hex}.{fmt}"
    try:
        with dest.open("wb") as out:
            shutil.copyfileobj(file.file, out)
    except BaseException:  # disk full...: no orphan upload
        dest.unlink(missing_ok=True)
        raise
    return st.jobs.submit_upload(name, dest, fmt, file.filename or "file").public()


@router.get("/jobs", dependencies=[Depends(require_read)])
def list_jobs(request: Request):
    return {"jobs": [j.public() for j in request.app.state.jobs.list()]}


@router.get("/jobs/{job_id}", response_model=JobOut, dependencies=[Depends(require_read)])
def get_job(job_id: str, request: Request):
    return request.app.state.jobs.get(job_id).public()


@router.delete("/jobs/{job_id}", status_code=204, dependencies=[Depends(require_admin)])
def cancel_job(job_id: str, request: Request):
    request.app.state.jobs.cancel(job_id)
    return Response(status_code=204)
