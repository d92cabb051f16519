"""An inference endpoint as the gateway serves it: its configuration and its secrets, in the clear.

`proxy.registry` owns the set of endpoints; everything that serves one (backends, adapters through
`adapters.base.EndpointView`, local engines) reads this one type.
"""

from __future__ import annotations

from typing import Any

import msgspec

from . import catalogue
from .catalogue import Service
from .types import TaskType
from .validation import ValidatedConfig


class Endpoint(msgspec.Struct, frozen=True, kw_only=True):
    inference_id: str
    task_type: TaskType
    service: str
    service_settings: dict[str, Any]
    task_settings: dict[str, Any] = {}
    chunking_settings: dict[str, Any] | None = None
    secrets: dict[str, Any] = {}
    preconfigured: bool = False

    def __repr__(self) -> str:  # secrets never reach a log line through repr
        return f"Endpoint({self.inference_id!r}, {self.task_type.value}, {self.service})"

    def public(self) -> dict[str, Any]:
        """The ES `toFilteredXContent` view: no secrets, empty task_settings omitted."""
        out: dict[str, Any] = {"inference_id": self.inference_id, "task_type": self.task_type.value,
                               "service": self.service, "service_settings": self.service_settings}
        if self.task_settings:
            out["task_settings"] = self.task_settings
        if self.chunking_settings is not None:
            out["chunking_settings"] = self.chunking_settings
        return out

    @property
    def spec(self) -> Service:
        spec = catalogue.lookup(self.service)
        assert spec is not None
        return spec

    def validated(self) -> ValidatedConfig:
        return ValidatedConfig(dict(self.service_settings), dict(self.secrets), dict(self.task_settings),
                               self.chunking_settings)
