"""S3-compatible object storage (AWS S3, MinIO, Ceph RGW, moto) behind the `Storage` protocol.

Imported only when VIDFARM_STORAGE=s3 (see `storage.make_storage`), so local users never load
boto3. Every failure leaves as a vidfarm error: NotFound for a missing object, StorageUnavailable
(transient, retried) for anything the network or the server did. Credentials stay inside the
boto3 client; no message or repr carries the secret.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import boto3  # type: ignore[import-untyped]
from boto3.exceptions import Boto3Error  # type: ignore[import-untyped]
from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from vidfarm.errors import NotFound, StorageUnavailable, TooLarge, VidfarmError
from vidfarm.storage.base import CHUNK, check_key, content_disposition, content_type_for

if TYPE_CHECKING:
    from vidfarm.config import Settings

log = logging.getLogger(__name__)

# put_stream buffers one part at a time: memory is one part whatever the input's size. Parts grow
# by PART_SIZE every 1000 parts so that S3's 10,000-part ceiling is ~440 GB, not 80 GB.
PART_SIZE = 8 * 1024 * 1024
PARTS_PER_STEP = 1000
DELETE_BATCH = 1000  # the most keys one DeleteObjects request accepts
LIST_PAGE = 1000
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}


def _part_size(number: int) -> int:
    return PART_SIZE * (1 + (number - 1) // PARTS_PER_STEP)


def _classify(error: ClientError, verb: str, target: str) -> VidfarmError:
    """A missing object is permanent (NotFound); anything else the server said is transient."""
    details = error.response.get("Error", {})
    code = str(details.get("Code", ""))
    if code in _MISSING_CODES:
        return NotFound(f"no stored object {target}")
    message = details.get("Message") or ""
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
    return StorageUnavailable(f"S3 cannot {verb} {target}: {code or status} {message}".strip())


@contextlib.contextmanager
def _s3_errors(verb: str, target: str) -> Iterator[None]:
    """Turn boto3/botocore errors (and local file errors) into vidfarm's classified errors."""
    try:
        yield
    except ClientError as error:
        raise _classify(error, verb, target) from None
    except (BotoCoreError, Boto3Error) as error:  # connection refused, timeouts, no credentials
        raise StorageUnavailable(f"S3 cannot {verb} {target}: {error}") from None
    except OSError as error:  # a local file in put_file/download/publish_dir
        raise StorageUnavailable(f"cannot {verb} {target}: {error.strerror or error}") from None


class _BodyReader(io.RawIOBase):
    """A raw reader over a GetObject body whose read errors are classified like the rest."""

    def __init__(self, body: Any, key: str) -> None:
        self._body = body
        self._key = key

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        with _s3_errors("read", self._key):
            data: bytes = self._body.read(len(buffer))
        memoryview(buffer)[: len(data)] = data
        return len(data)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._body.close()
        super().close()


class S3Storage:
    """A bucket of an S3-compatible store, addressed path-style so MinIO and moto work too."""

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        presign_seconds: int = 3600,
        max_attempts: int = 3,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
    ) -> None:
        self.bucket = bucket
        self.endpoint_url = endpoint_url or None
        self.region = region
        self.presign_seconds = presign_seconds
        config = Config(
            region_name=region,
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # Checksums only where S3 demands them: older MinIO and Ceph reject botocore's
            # default CRC32 trailers on every upload.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        # A session of our own: boto3's default session is shared and not thread-safe to build.
        session = boto3.session.Session()
        self.client: Any = session.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=access_key_id or None,
            aws_secret_access_key=secret_access_key or None,
            config=config,
        )
        self._transfer = TransferConfig(
            multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE, max_concurrency=4
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Storage:
        return cls(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url or None,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id or None,
            secret_access_key=settings.s3_secret_access_key.get_secret_value() or None,
            presign_seconds=settings.s3_presign_seconds,
        )

    def __repr__(self) -> str:
        return f"S3Storage(bucket={self.bucket!r}, endpoint_url={self.endpoint_url!r})"

    def local_path(self, key: str) -> Path | None:
        return None  # workers download the source first

    def put_stream(self, key: str, stream: BinaryIO, *, max_bytes: int | None = None) -> int:
        """Upload in constant memory: one PutObject for small inputs, else a multipart upload.

        The limit is enforced while reading, before a byte past it is sent. On TooLarge, a
        failing stream or a storage error the multipart upload is aborted, so neither an object
        nor a dangling upload (which S3 bills for) is left.
        """
        check_key(key)
        content_type = content_type_for(key)
        size = 0

        def read_part(limit: int) -> bytearray:
            nonlocal size
            part = bytearray()
            while len(part) < limit:
                block = stream.read(min(CHUNK, limit - len(part)))
                if not block:
                    break
                size += len(block)
                if max_bytes is not None and size > max_bytes:
                    raise TooLarge(f"{key.rsplit('/', 1)[-1]} is larger than {max_bytes} bytes")
                part += block
            return part

        part = read_part(_part_size(1))
        if len(part) < _part_size(1):  # the whole stream fits in one request
            with _s3_errors("write", key):
                self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=part, ContentType=content_type
                )
            return size
        with _s3_errors("write", key):
            upload_id: str = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=content_type
            )["UploadId"]
        try:
            parts: list[dict[str, Any]] = []
            while part:
                number = len(parts) + 1
                with _s3_errors("write", key):
                    response = self.client.upload_part(
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=part,
                    )
                parts.append({"ETag": response["ETag"], "PartNumber": number})
                part.clear()  # free this part before reading the next one
                part = read_part(_part_size(number + 1))
            with _s3_errors("write", key):
                self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            self._abort(key, upload_id)
            raise
        return size

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except Exception as error:  # the original error matters more; a lifecycle rule sweeps
            log.warning("could not abort the multipart upload of %s: %s", key, error)

    def put_file(self, source: Path, key: str, *, move: bool = False) -> None:
        check_key(key)
        with _s3_errors("write", key):
            self.client.upload_file(
                str(source),
                self.bucket,
                key,
                ExtraArgs={"ContentType": content_type_for(key)},
                Config=self._transfer,
            )
        if move:
            source.unlink(missing_ok=True)

    def open(self, key: str) -> BinaryIO:
        """A buffered reader over the object's body: streamed, never loaded whole."""
        check_key(key)
        with _s3_errors("read", key):
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        return io.BufferedReader(_BodyReader(body, key), CHUNK)

    def download(self, key: str, target: Path) -> None:
        """Ranged parallel GETs into a temporary file renamed to `target` (boto3's transfer)."""
        check_key(key)
        with _s3_errors("read", key):
            self.client.download_file(self.bucket, key, str(target), Config=self._transfer)

    def size(self, key: str) -> int:
        check_key(key)
        with _s3_errors("read", key):
            return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except NotFound:
            return False
        return True

    def url_for(
        self, key: str, *, filename: str | None = None, attachment: bool = False
    ) -> str | None:
        """A presigned GET valid `presign_seconds`, with the right type and disposition.

        Signing is local (no request is made); the URL is only as reachable as the endpoint.
        """
        check_key(key)
        params: dict[str, str] = {
            "Bucket": self.bucket,
            "Key": key,
            "ResponseContentType": content_type_for(key),
        }
        if attachment or filename:
            params["ResponseContentDisposition"] = content_disposition(
                filename or key.rsplit("/", 1)[-1], attachment=attachment
            )
        with _s3_errors("sign a URL for", key):
            url: str = self.client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=self.presign_seconds
            )
        return url

    def publish_dir(self, folder: Path, prefix: str) -> list[str]:
        """Upload every file of `folder` under `prefix/`, manifest.json last; all or nothing.

        S3 has no rename, so objects appear one by one. Publication is still atomic for
        readers: an attempt's outputs are referenced from SQL only once the job's completion is
        accepted, which happens after this returns. On any failure the keys uploaded so far
        (and the one in flight) are deleted and StorageUnavailable is raised. A prefix that
        already holds objects is refused, as LocalStorage's rename would, so that a rollback can
        never delete another publication's objects.
        """
        check_key(prefix)
        relatives = sorted(
            (path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()),
            key=lambda relative: (relative == "manifest.json", relative),
        )
        keys = [check_key(f"{prefix}/{relative}") for relative in relatives]
        with _s3_errors("publish", prefix):
            listing = self.client.list_objects_v2(
                Bucket=self.bucket, Prefix=f"{prefix}/", MaxKeys=1
            )
        if listing.get("KeyCount", 0):
            raise StorageUnavailable(f"cannot publish {prefix}: it is already published")
        done = 0
        try:
            for relative, key in zip(relatives, keys, strict=True):
                self.put_file(folder / relative, key)
                done += 1
        except BaseException as error:
            try:
                self._delete_keys(keys[: done + 1])  # the failed upload may have landed
            except VidfarmError as cleanup:
                log.warning("could not roll back the publication of %s: %s", prefix, cleanup)
            if isinstance(error, StorageUnavailable) or not isinstance(error, Exception):
                raise
            raise StorageUnavailable(f"cannot publish {prefix}: {error}") from error
        shutil.rmtree(folder, ignore_errors=True)
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> None:
        """Delete the key `prefix` and every key under `prefix/`, 1000 per request."""
        check_key(prefix)
        batch = [prefix]
        with _s3_errors("list", prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket,
                Prefix=f"{prefix}/",
                PaginationConfig={"PageSize": LIST_PAGE},
            )
            for page in pages:  # deleting listed keys does not disturb the continuation token
                for item in page.get("Contents", []):
                    batch.append(item["Key"])
                    if len(batch) >= DELETE_BATCH:
                        self._delete_keys(batch)
                        batch = []
        self._delete_keys(batch)

    def _delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), DELETE_BATCH):
            chunk = keys[start : start + DELETE_BATCH]
            with _s3_errors("delete", chunk[0]):
                response = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": key} for key in chunk], "Quiet": True},
                )
            if errors := response.get("Errors"):
                first = errors[0]
                raise StorageUnavailable(
                    f"S3 cannot delete {first.get('Key')}: {first.get('Code')} "
                    f"{first.get('Message', '')} ({len(errors)} keys failed)".strip()
                )

    def _bucket_exists(self) -> bool:
        try:
            with _s3_errors("reach bucket", self.bucket):
                self.client.head_bucket(Bucket=self.bucket)
        except NotFound:  # HeadBucket answers a bare 404 for a missing bucket
            return False
        return True

    def check(self) -> None:
        """HeadBucket: the endpoint answers, the credentials work and the bucket exists."""
        if not self._bucket_exists():
            raise StorageUnavailable(f"S3 bucket {self.bucket} does not exist")

    def prepare(self) -> None:
        self.ensure_bucket()

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (vidfarm does so at start, through prepare())."""
        if self._bucket_exists():
            return
        extra: dict[str, Any] = {}
        if self.region != "us-east-1":  # us-east-1 refuses an explicit location constraint
            extra["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        with _s3_errors("create bucket", self.bucket):
            try:
                self.client.create_bucket(Bucket=self.bucket, **extra)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                    raise  # else another process created it first: fine
