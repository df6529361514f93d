"""Storage backends: the interface in `base`, one module per backend, chosen by `make_storage`.

Code asks for a `Storage` and never names a backend; S3 (and boto3) is imported only when
VIDFARM_STORAGE=s3, so local users never load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vidfarm.storage.base import Storage
from vidfarm.storage.local import LocalStorage

if TYPE_CHECKING:
    from vidfarm.config import Settings

__all__ = ["LocalStorage", "Storage", "make_storage"]


def make_storage(settings: Settings) -> Storage:
    """The store the settings ask for; boto3 is imported only when S3 is configured."""
    if settings.storage == "s3":
        from vidfarm.storage.s3 import S3Storage

        return S3Storage.from_settings(settings)
    return LocalStorage(settings.media_dir)
