"""Testing helpers for applications: an in-process test kit on a manual clock, a replayer
that checks recorded histories against changed workflow code, and the properties of an
instance rebuilt from its history.

Example::

    from infinitic.worker.testing import InfiniticTestKit, replay_history
"""

from infinitic.transport import ManualClock
from infinitic.worker._testkit import InfiniticTestKit
from infinitic.workflow_engine import replay_history, replay_properties

__all__ = ["InfiniticTestKit", "ManualClock", "replay_history", "replay_properties"]
