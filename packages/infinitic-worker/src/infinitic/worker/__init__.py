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
from infinitic.worker._config_dashboard import DashboardConfig
from infinitic.worker._config_events import EntityListConfig, EventBatchConfig, EventListenerConfig
from infinitic.worker._config_metrics import MetricsConfig
from infinitic.worker._log_context import (
    JsonLogFormatter,
    LogContextFilter,
    configure_logging,
    current_log_context,
)
from infinitic.worker._metrics import WorkerMetrics
from infinitic.worker._preflight import UnreachableError
from infinitic.worker._worker import InfiniticWorker

__version__: str = importlib.metadata.version("infinitic-worker")

__all__ = [
    "CacheConfig",
    "DashboardConfig",
    "EntityListConfig",
    "EventBatchConfig",
    "EventListenerConfig",
    "InfiniticConfig",
    "InfiniticWorker",
    "JsonLogFormatter",
    "LogContextFilter",
    "MetricsConfig",
    "RetryConfig",
    "ServiceConfig",
    "StorageConfig",
    "UnreachableError",
    "WorkerMetrics",
    "WorkflowConfig",
    "configure_logging",
    "current_log_context",
    "load_config",
]
