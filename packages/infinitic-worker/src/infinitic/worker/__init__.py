"""Infinitic for Python: InfiniticWorker, which runs services and workflows, its configuration
(the shape of Infinitic's YAML file) and the ``infinitic`` command line."""

import importlib.metadata

from infinitic.worker._config import (
    CacheConfig,
    InfiniticConfig,
    RetryConfig,
    ServiceConfig,
    StorageConfig,
    WorkflowConfig,
    load_config,
)
from infinitic.worker._preflight import UnreachableError
from infinitic.worker._worker import InfiniticWorker

__version__: str = importlib.metadata.version("infinitic-worker")

__all__ = [
    "CacheConfig",
    "InfiniticConfig",
    "InfiniticWorker",
    "RetryConfig",
    "ServiceConfig",
    "StorageConfig",
    "UnreachableError",
    "WorkflowConfig",
    "load_config",
]
