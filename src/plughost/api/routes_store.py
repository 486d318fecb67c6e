"""The local store's signed URLs: archive PUT (presigned upload) and GET (download)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse

from plughost.api.deps import RuntimeDep
from plughost.api.streams import check_declared_length, limited_stream, non_empty
from plughost.errors import NotFoundError

router = APIRouter(prefix="/v1/_store", tags=["archive store"])
DOWNLOAD_PATH = "/v1/_store/archives/{key}"


@router.put("/uploads/{upload_id}")
async def put_archive(
    upload_id: str,
    request: Request,
    rt: RuntimeDep,
    expires: str | None = None,
    signature: str | None = None,
) -> Response:
    limit = rt.settings.max_archive_bytes
    rt.uploads.signer.verify("PUT", f"/v1/_store/uploads/{upload_id}", expires, signature)
    check_declared_length(request, limit)
    etag = await rt.uploads.receive_archive(
        upload_id, expires, signature, non_empty(limited_stream(request, limit))
    )
    return Response(status_code=200, headers={"ETag": etag})


@router.get("/archives/{key:path}")
def get_archive(
    key: str, rt: RuntimeDep, expires: str | None = None, signature: str | None = None
) -> FileResponse:
    rt.signer.verify("GET", DOWNLOAD_PATH.format(key=key), expires, signature)
    path = rt.store.local_path(key)
    if not path.is_file():
        raise NotFoundError("archive not found")
    return FileResponse(path, media_type="application/octet-stream", filename=path.name)
