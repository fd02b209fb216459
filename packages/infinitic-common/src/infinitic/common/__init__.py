"""Infinitic for Python: ids, messages, topics, serialization, errors and retry policies.

This package is the shared vocabulary of every other Infinitic package. Application code uses
:mod:`infinitic.workflows`, :mod:`infinitic.services` and :mod:`infinitic.exceptions` instead.
"""

import importlib.metadata

from infinitic.common import (  # tag_messages and events register their messages
    events,
    messages,
    tag_messages,
)
from infinitic.common._channels import Channel, Receiving, type_names
from infinitic.common._converter import MethodSignature, method_signature, public_methods
from infinitic.common._declarations import (
    BatchSettings,
    batch_settings,
    entity_name,
    is_delegated,
    method_timeout,
    retry_policy,
    workflow_version,
)
from infinitic.common._failures import (
    MAX_PREVIOUS_FAILURES,
    FailureInfo,
    attempt_failure,
    exception_from_failure,
    failure_from_exception,
    method_failure,
)
from infinitic.common._history import (
    HISTORY_CHUNK_FORMAT,
    WORKFLOW_STATE_FORMAT,
    decode_history_chunk,
    merge_history,
    missing_chunks,
    read_history_chunks,
    read_workflow_state,
    workflow_history_key,
    workflow_state_data,
)
from infinitic.common._ids import command_id, deterministic_id, new_id
from infinitic.common._json_filter import compile_filter
from infinitic.common._messages import decode_message, encode_message
from infinitic.common._retry import ExponentialBackoff, NoRetry, RetryPolicy
from infinitic.common._routes import (
    Route,
    method_outcome_routes,
    task_failure,
    task_outcome_route,
    task_result_route,
    workflow_command,
)
from infinitic.common._serialization import array_header, map_header, pack, unpack
from infinitic.common._stubs import _Stub as Stub
from infinitic.common._stubs import _StubMethod as StubMethod
from infinitic.common._task_context import TaskContext, set_task_context
from infinitic.common._topics import (
    ENGINE_SUBSCRIPTION,
    SERVICE_TOPICS,
    WORKFLOW_TOPICS,
    TopicKind,
    check_entity_name,
    response_topic,
    topic,
    workflow_state_key,
)
from infinitic.common._workflow_api import Deferred, WorkflowRuntimeApi, set_runtime

__version__: str = importlib.metadata.version("infinitic-common")

__all__ = [
    "ENGINE_SUBSCRIPTION",
    "HISTORY_CHUNK_FORMAT",
    "MAX_PREVIOUS_FAILURES",
    "SERVICE_TOPICS",
    "WORKFLOW_STATE_FORMAT",
    "WORKFLOW_TOPICS",
    "BatchSettings",
    "Channel",
    "Deferred",
    "ExponentialBackoff",
    "FailureInfo",
    "MethodSignature",
    "NoRetry",
    "Receiving",
    "RetryPolicy",
    "Route",
    "Stub",
    "StubMethod",
    "TaskContext",
    "TopicKind",
    "WorkflowRuntimeApi",
    "array_header",
    "attempt_failure",
    "batch_settings",
    "check_entity_name",
    "command_id",
    "compile_filter",
    "decode_history_chunk",
    "decode_message",
    "deterministic_id",
    "encode_message",
    "entity_name",
    "events",
    "exception_from_failure",
    "failure_from_exception",
    "is_delegated",
    "map_header",
    "merge_history",
    "messages",
    "method_failure",
    "method_outcome_routes",
    "method_signature",
    "method_timeout",
    "missing_chunks",
    "new_id",
    "pack",
    "public_methods",
    "read_history_chunks",
    "read_workflow_state",
    "response_topic",
    "retry_policy",
    "set_runtime",
    "set_task_context",
    "tag_messages",
    "task_failure",
    "task_outcome_route",
    "task_result_route",
    "topic",
    "type_names",
    "unpack",
    "workflow_command",
    "workflow_history_key",
    "workflow_state_data",
    "workflow_state_key",
    "workflow_version",
]
