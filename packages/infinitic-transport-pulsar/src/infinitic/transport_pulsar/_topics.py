"""Mapping of logical topic names to Pulsar topic names.

The transport receives logical names such as ``workflow-engine:BankWorkflow`` and maps them to
``persistent://<tenant>/<namespace>/<local name>``. pulsar-lite accepts almost anything, real
Pulsar does not, so the names are checked and escaped here rather than left to the broker:

* letters, digits and ``_ - . :`` are kept as they are (``:`` is valid in Pulsar names);
* every other character (``=`` included) becomes ``=XX`` for each byte of its UTF-8 form, which
  only uses characters Pulsar accepts and is reversible;
* an empty name, a name ending like a partition (``-partition-3``) or a local name longer than
  :data:`MAX_LOCAL_NAME_LENGTH` is refused with :class:`~infinitic.exceptions.ConfigurationError`.
"""

from __future__ import annotations

import re

from infinitic.exceptions import ConfigurationError

#: Longest local topic name accepted (after escaping); Pulsar stores names in its metadata
#: store and on disk paths, where very long names fail late and obscurely.
MAX_LOCAL_NAME_LENGTH = 255

_KEEP = re.compile(r"[A-Za-z0-9_.:\-]")
_NAMED_ENTITY = re.compile(r"^[-=:.\w]+$", re.ASCII)
_PARTITION_SUFFIX = re.compile(r"-partition-\d+$")
_RETRY_SUFFIX = "-retry"


def escape_name(name: str) -> str:
    """Return ``name`` with every character Pulsar may reject replaced by ``=XX`` escapes."""
    out: list[str] = []
    for char in name:
        if _KEEP.fullmatch(char):
            out.append(char)
        else:
            out.extend(f"={byte:02X}" for byte in char.encode("utf-8"))
    return "".join(out)


def unescape_name(escaped: str) -> str:
    """Invert :func:`escape_name`."""
    raw = bytearray()
    i = 0
    while i < len(escaped):
        if escaped[i] == "=":
            raw.append(int(escaped[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(escaped[i].encode("ascii"))
            i += 1
    return raw.decode("utf-8")


def check_entity_name(kind: str, value: str) -> str:
    """Check a tenant or namespace name against Pulsar's rules; return it unchanged.

    Raises:
        ConfigurationError: the name is empty or has characters Pulsar rejects.
    """
    if not _NAMED_ENTITY.match(value):
        raise ConfigurationError(
            f"invalid Pulsar {kind} name {value!r}: use letters, digits and - = : . _ only"
        )
    return value


class TopicNamer:
    """Builds the Pulsar names of a transport's topics.

    Args:
        tenant: the Pulsar tenant (checked).
        namespace: the Pulsar namespace (checked).
    """

    def __init__(self, tenant: str, namespace: str) -> None:
        self.tenant = check_entity_name("tenant", tenant)
        self.namespace = check_entity_name("namespace", namespace)
        self._cache: dict[str, str] = {}

    def local_name(self, topic: str) -> str:
        """Return the escaped local name of the logical ``topic``.

        Raises:
            ConfigurationError: the name is empty, too long or looks like a partition.
        """
        if not topic:
            raise ConfigurationError("a topic name cannot be empty")
        local = escape_name(topic)
        if len(local) > MAX_LOCAL_NAME_LENGTH:
            raise ConfigurationError(
                f"topic name {topic!r} is too long for Pulsar ({len(local)} characters once "
                f"escaped, at most {MAX_LOCAL_NAME_LENGTH}); use a shorter entity name"
            )
        if _PARTITION_SUFFIX.search(local):
            raise ConfigurationError(
                f"topic name {topic!r} ends like a Pulsar partition name (-partition-N); rename it"
            )
        return local

    def physical(self, topic: str) -> str:
        """Return ``persistent://<tenant>/<namespace>/<escaped topic>``."""
        cached = self._cache.get(topic)
        if cached is None:
            local = self.local_name(topic)
            cached = f"persistent://{self.tenant}/{self.namespace}/{local}"
            if len(self._cache) < 100_000:
                self._cache[topic] = cached
        return cached

    def logical(self, physical: str) -> str:
        """Return the logical name of a Pulsar topic of this namespace (partition stripped)."""
        local = physical.rsplit("/", 1)[-1]
        local = _PARTITION_SUFFIX.sub("", local)
        return unescape_name(local)

    @staticmethod
    def retry_topic(topic: str, subscription: str) -> str:
        """Return the logical name of the retry topic of a subscription.

        Failed messages waiting for a new attempt and parked delayed messages go there, so
        they never reach the topic's other subscriptions.
        """
        return f"{topic}-{subscription}{_RETRY_SUFFIX}"

    @staticmethod
    def subscription_name(subscription: str) -> str:
        """Return the escaped Pulsar name of a subscription.

        Raises:
            ConfigurationError: the name is empty.
        """
        if not subscription:
            raise ConfigurationError("a subscription name cannot be empty")
        return escape_name(subscription)
