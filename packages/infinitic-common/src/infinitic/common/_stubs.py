"""Typed stubs used inside workflow code: ``new_service`` and ``new_workflow``.

Calling a stub method creates a command at once (at its position in the method run) and returns
its Deferred; ``await`` it to wait, or keep it to wait later.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, ParamSpec, TypeVar, cast

from infinitic.common._channels import Channel, type_names
from infinitic.common._converter import MethodSignature, method_signature, public_methods
from infinitic.common._declarations import entity_name, method_timeout
from infinitic.common._errors import UnknownMethodError
from infinitic.common._workflow_api import Deferred, current_runtime

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")


def _tags(tags: Iterable[str] | None) -> frozenset[str]:
    if tags is None:
        return frozenset()
    if isinstance(tags, str):
        raise TypeError("tags must be a collection of strings, not a single string")
    out = frozenset(tags)
    for tag in out:
        if not isinstance(tag, str) or not tag:
            raise TypeError(f"tags must be non-empty strings, got {tag!r}")
    return out


def _meta(meta: Mapping[str, bytes] | None) -> dict[str, bytes]:
    out = dict(meta or {})
    for key, value in out.items():
        if not isinstance(key, str) or not isinstance(value, bytes):
            raise TypeError(f"meta must map str to bytes, got {key!r}: {value!r}")
    return out


class _StubMethod:
    __slots__ = ("_signature", "_stub")

    def __init__(self, stub: _Stub, signature: MethodSignature) -> None:
        self._stub = stub
        self._signature = signature

    @property
    def signature(self) -> MethodSignature:
        return self._signature

    @property
    def stub(self) -> _Stub:
        return self._stub

    def __call__(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
        return cast(Deferred[Any], self._stub._call(self._signature, args, kwargs))

    def __repr__(self) -> str:
        s = self._signature
        return f"<stub method {s.entity_name}.{s.method_name}>"


class _Stub:
    _kind = ""

    def __init__(
        self, interface: type, tags: Iterable[str] | None, meta: Mapping[str, bytes] | None
    ) -> None:
        if not isinstance(interface, type):
            raise TypeError(f"expected a class, got {interface!r}")
        self._interface = interface
        self._name = entity_name(interface)
        self._tags = _tags(tags)
        self._meta = _meta(meta)
        self._methods: dict[str, _StubMethod] = {}

    @property
    def interface(self) -> type:
        return self._interface

    @property
    def entity_name(self) -> str:
        return self._name

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)
        found = self._methods.get(method)  # a method seen before (never a channel)
        if found is not None:
            return found
        channel = inspect.getattr_static(self._interface, method, None)
        if isinstance(channel, Channel):
            return self._channel(channel)
        if method not in public_methods(self._interface):
            raise UnknownMethodError(
                f"{self._kind} {self._name} has no method {method!r} (its methods: "
                f"{', '.join(public_methods(self._interface)) or 'none'})"
            )
        sig = method_signature(self._interface, method, self._kind, self._name)
        found = self._methods[method] = _StubMethod(self, sig)
        return found

    def _call(self, sig: MethodSignature, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _channel(self, channel: Channel[Any]) -> Any:
        raise UnknownMethodError(
            f"channel {channel.name!r} of {self._name} cannot be used from a {self._kind} stub "
            "that starts new instances; use get_workflow_by_id or get_workflow_by_tag"
        )

    def _timeout(self, sig: MethodSignature) -> float | None:
        return method_timeout(self._interface, sig.method_name)


class _NewCommandStub(_Stub):
    _runtime_method = ""  # the WorkflowRuntimeApi method creating the command

    def _call(
        self, sig: MethodSignature, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Deferred[Any]:
        rt = current_runtime(f"calling {self._name}.{sig.method_name}")
        dumped = sig.dump_args(args, kwargs)
        create = getattr(rt, self._runtime_method)
        deferred: Deferred[Any] = create(
            self._name,
            sig.method_name,
            dumped,
            self._tags,
            self._meta,
            sig.load_result,
            self._timeout(sig),
        )
        return deferred


class ServiceStub(_NewCommandStub):
    """A stub of a service inside workflow code: each method call is a task."""

    _kind = "service"
    _runtime_method = "new_task"


class ChildWorkflowStub(_NewCommandStub):
    """A stub of a new workflow inside workflow code: each method call starts a child."""

    _kind = "workflow"
    _runtime_method = "new_child_workflow"


class _WorkflowChannelSender:
    """A channel of another instance, seen from workflow code: ``send`` is a command."""

    def __init__(
        self, stub: ExistingWorkflowStub | ByTagWorkflowStub, channel: Channel[Any]
    ) -> None:
        self._stub = stub
        self._channel = channel

    def send(self, value: Any) -> Deferred[None]:
        """Send ``value`` to the channel (completed once sent; never waits for a receiver)."""
        rt = current_runtime(f"sending to channel {self._channel.name!r}")
        data = self._channel.dump(value, f"workflow {self._stub.entity_name}")
        if isinstance(self._stub, ByTagWorkflowStub):
            return rt.new_signal(
                self._stub.entity_name,
                None,
                self._channel,
                data,
                type_names(value),
                tag=self._stub.tag,
            )
        return rt.new_signal(
            self._stub.entity_name, self._stub.workflow_id, self._channel, data, type_names(value)
        )


class ExistingWorkflowStub(_Stub):
    """A stub of an existing instance inside workflow code: method calls run on that instance;
    channels can be sent to."""

    _kind = "workflow"

    def __init__(self, workflow: type, workflow_id: str) -> None:
        super().__init__(workflow, None, None)
        self.workflow_id = workflow_id

    def _call(
        self, sig: MethodSignature, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Deferred[Any]:
        rt = current_runtime(f"calling {self._name}.{sig.method_name}")
        dumped = sig.dump_args(args, kwargs)
        return rt.new_method_call(
            self._name,
            self.workflow_id,
            sig.method_name,
            dumped,
            sig.load_result,
            self._timeout(sig),
        )

    def _channel(self, channel: Channel[Any]) -> Any:
        return _WorkflowChannelSender(self, channel)


def get_workflow_by_id(workflow: Callable[..., T], workflow_id: str) -> T:
    """Return a stub of an existing instance, for workflow code to call its methods (each call
    starts a new method run on it) or send to its channels."""
    if not isinstance(workflow_id, str) or not workflow_id:
        raise TypeError(f"workflow_id must be a non-empty string, got {workflow_id!r}")
    return cast(T, ExistingWorkflowStub(cast(type, workflow), workflow_id))


class ByTagWorkflowStub(_Stub):
    """A stub of the instances of a workflow with a tag, inside workflow code: their channels
    can be sent to (every instance with the tag when the signal is handled gets it), and
    ``dispatch(stub.method, ...)`` starts a method run on each of them (its Deferred completes
    with None once sent: there is no single result to wait for)."""

    _kind = "workflow"

    def __init__(self, workflow: type, tag: str) -> None:
        super().__init__(workflow, None, None)
        self.tag = tag

    def _call(
        self, sig: MethodSignature, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Deferred[Any]:
        raise UnknownMethodError(
            f"cannot wait for {self._name}.{sig.method_name} on the instances with tag "
            f"{self.tag!r} (there is no single result): start it on each of them with "
            f"dispatch(stub.{sig.method_name}, ...)"
        )

    def _dispatch(
        self, sig: MethodSignature, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Deferred[None]:
        rt = current_runtime(f"dispatching {self._name}.{sig.method_name}")
        return rt.new_method_dispatch_by_tag(
            self._name, self.tag, sig.method_name, sig.dump_args(args, kwargs)
        )

    def _channel(self, channel: Channel[Any]) -> Any:
        return _WorkflowChannelSender(self, channel)


def get_workflow_by_tag(workflow: Callable[..., T], tag: str) -> T:
    """Return a stub of the instances of ``workflow`` with ``tag``, for workflow code to send to
    their channels."""
    if not isinstance(tag, str) or not tag:
        raise TypeError(f"tag must be a non-empty string, got {tag!r}")
    return cast(T, ByTagWorkflowStub(cast(type, workflow), tag))


def new_service(
    interface: Callable[..., T],
    *,
    tags: Iterable[str] | None = None,
    meta: Mapping[str, bytes] | None = None,
) -> T:
    """Return a stub of a service, to declare as a class attribute of a Workflow.

    Args:
        interface: the service's contract (a Protocol or a class with the methods).
        tags: tags given to every task created through this stub.
        meta: metadata given to every task created through this stub.
    """
    return cast(T, ServiceStub(cast(type, interface), tags, meta))


def new_workflow(
    workflow: Callable[..., T],
    *,
    tags: Iterable[str] | None = None,
    meta: Mapping[str, bytes] | None = None,
) -> T:
    """Return a stub that starts a new child workflow at each method call."""
    return cast(T, ChildWorkflowStub(cast(type, workflow), tags, meta))


def dispatch(method: Callable[P, Awaitable[R]], *args: P.args, **kwargs: P.kwargs) -> Deferred[R]:
    """Start a task or a child workflow method without waiting; returns its Deferred.

    On a stub of ``get_workflow_by_tag``, starts a method run on every instance with the tag;
    the Deferred then completes with None once the command is sent.
    """
    if not isinstance(method, _StubMethod):
        raise TypeError(
            f"dispatch() expects a stub method (like self.bank.withdraw), got {method!r}"
        )
    if isinstance(method.stub, ByTagWorkflowStub):
        return cast(Deferred[R], method.stub._dispatch(method.signature, args, kwargs))
    return cast(Deferred[R], method(*args, **kwargs))
