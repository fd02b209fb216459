import pytest

from infinitic.exceptions import ConfigurationError
from infinitic.transport_pulsar import escape_name, unescape_name
from infinitic.transport_pulsar._topics import MAX_LOCAL_NAME_LENGTH, TopicNamer


@pytest.mark.parametrize(
    "name",
    [
        "workflow-engine:BankWorkflow",
        "response:client-123",
        "a.b_c-d:e",
        "x=y",
        "sp ace/slash",
        "é",
    ],
)
def test_escape_round_trips_and_uses_only_pulsar_safe_characters(name: str) -> None:
    escaped = escape_name(name)
    assert unescape_name(escaped) == name
    assert all(c.isascii() and (c.isalnum() or c in "_-.:=") for c in escaped)


def test_names_valid_in_pulsar_are_kept() -> None:
    assert escape_name("workflow-engine:BankWorkflow") == "workflow-engine:BankWorkflow"
    assert escape_name("a/b") == "a=2Fb"
    assert escape_name("a=b") == "a=3Db"


def test_physical_names() -> None:
    namer = TopicNamer("infinitic", "dev")
    assert namer.physical("task-executor:Bank") == "persistent://infinitic/dev/task-executor:Bank"
    assert namer.logical("persistent://infinitic/dev/a=2Fb-partition-2") == "a/b"
    assert TopicNamer.retry_topic("t", "s") == "t-s-retry"
    assert TopicNamer.subscription_name("engine/1") == "engine=2F1"


@pytest.mark.parametrize("name", ["", "x" * (MAX_LOCAL_NAME_LENGTH + 1), "topic-partition-3"])
def test_names_real_pulsar_rejects_are_refused(name: str) -> None:
    with pytest.raises(ConfigurationError):
        TopicNamer("infinitic", "dev").physical(name)


@pytest.mark.parametrize(("tenant", "namespace"), [("in/fini", "dev"), ("ok", ""), ("ok", "a b")])
def test_bad_tenant_or_namespace_is_refused(tenant: str, namespace: str) -> None:
    with pytest.raises(ConfigurationError):
        TopicNamer(tenant, namespace)


def test_empty_subscription_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        TopicNamer.subscription_name("")
