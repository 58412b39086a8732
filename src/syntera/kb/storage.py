"""Where uploaded files are kept: a directory under the data directory (default) or an
S3-compatible bucket. Keys are ``<company>/<document>/<file name>``, chosen by us, never
by the uploader (the name is reduced to a safe basename)."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from syntera.config import Settings

UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def file_name(filename: str) -> str:
    """An uploaded file's name reduced to a safe basename (letters, digits, ".", "_",
    "-"; at most 120), the last part of its key."""
    return (UNSAFE.sub("_", Path(filename).name).strip("._") or "file")[:120]


def file_key(company_id: UUID, document_id: UUID, filename: str) -> str:
    """The key of a document's file: ``<company>/<document>/<file name>``."""
    return f"{company_id}/{document_id}/{file_name(filename)}"


def belongs_to(key: str, company_id: UUID) -> bool:
    """Whether ``key`` names a file of ``company_id`` (under ``<company>/``, nothing that
    climbs out of it)."""
    parts = key.split("/")
    return len(parts) >= 2 and parts[0] == str(company_id) and ".." not in parts and "" not in parts


class FileStorage(Protocol):
    async def put(self, key: str, data: bytes) -> None: ...
    async def get(self, key: str) -> bytes: ...
    async def delete(self, key: str) -> None: ...
    async def delete_company(self, company_id: UUID) -> int:
        """Remove every file of the company (keys start with its id); how many."""
        ...

    async def companies(self) -> dict[UUID, int]:
        """The companies holding files, with how many (for the orphans check)."""
        ...


class LocalStorage:
    """Files under one directory; written to a temporary name and renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"key {key!r} leaves the storage directory")
        return path

    def _put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(data)
        partial.replace(path)

    def _delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        for parent in (path.parent, path.parent.parent):
            try:
                parent.rmdir()  # only when empty
            except OSError:
                break

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, key, data)

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self._path(key).read_bytes)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete, key)

    def _delete_company(self, company_id: UUID) -> int:
        folder = self._path(str(company_id))
        if not folder.exists():
            return 0
        files = sum(1 for path in folder.rglob("*") if path.is_file())
        shutil.rmtree(folder)
        return files

    async def delete_company(self, company_id: UUID) -> int:
        return await asyncio.to_thread(self._delete_company, company_id)

    def _companies(self) -> dict[UUID, int]:
        held: dict[UUID, int] = {}
        if not self.root.exists():
            return held
        for folder in self.root.iterdir():
            company = _company_of(folder.name)
            if company is not None and folder.is_dir():
                held[company] = sum(1 for path in folder.rglob("*") if path.is_file())
        return held

    async def companies(self) -> dict[UUID, int]:
        return await asyncio.to_thread(self._companies)


class S3Storage:
    """An S3-compatible bucket through boto3 (its calls run in a thread)."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None) -> None:
        import boto3

        self.bucket = bucket
        self.prefix = prefix
        self.client: Any = boto3.client("s3", endpoint_url=endpoint_url)

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(
            self.client.put_object, Bucket=self.bucket, Key=self.prefix + key, Body=data
        )

    async def get(self, key: str) -> bytes:
        def read() -> bytes:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
            body: bytes = answer["Body"].read()
            return body

        return await asyncio.to_thread(read)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(
            self.client.delete_object, Bucket=self.bucket, Key=self.prefix + key
        )

    async def delete_company(self, company_id: UUID) -> int:
        def delete() -> int:
            removed = 0
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{self.prefix}{company_id}/"
            )
            for page in pages:
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:  # at most 1,000 per page, as delete_objects takes
                    self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})
                    removed += len(keys)
            return removed

        return await asyncio.to_thread(delete)

    async def companies(self) -> dict[UUID, int]:
        def count() -> dict[UUID, int]:
            held: dict[UUID, int] = {}
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    company = _company_of(item["Key"][len(self.prefix) :].split("/", 1)[0])
                    if company is not None:
                        held[company] = held.get(company, 0) + 1
            return held

        return await asyncio.to_thread(count)


def _company_of(name: str) -> UUID | None:
    try:
        return UUID(name)
    except ValueError:
        return None


def storage_from(settings: Settings) -> FileStorage:
    if settings.kb_storage == "s3":
        if not settings.kb_s3_bucket:
            raise ValueError("SYNTERA_KB_S3_BUCKET is required for S3 storage")
        return S3Storage(settings.kb_s3_bucket, settings.kb_s3_prefix, settings.kb_s3_endpoint_url)
    return LocalStorage(settings.data_dir / "kb-files")
