"""Infinitic for Python: InfiniticWorker, which runs services and workflows, its configuration
(the shape of Infinitic's YAML file) and the ``infinitic`` command line."""

from infinitic.worker._config import (
    CacheConfig,
    InfiniticConfig,
    RetryConfig,
    ServiceConfig,
    StorageConfig,
    WorkflowConfig,
    load_config,
)
from infinitic.worker._worker import InfiniticWorker

__all__ = [
    "CacheConfig",
    "InfiniticConfig",
    "InfiniticWorker",
    "RetryConfig",
    "ServiceConfig",
    "StorageConfig",
    "WorkflowConfig",
    "load_config",
]
