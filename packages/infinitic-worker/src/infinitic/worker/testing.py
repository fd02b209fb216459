"""Testing helpers for applications: an in-process test kit on a manual clock, and a replayer
that checks recorded histories against changed workflow code.

Example::

    from infinitic.worker.testing import InfiniticTestKit, replay_history
"""

from infinitic.transport import ManualClock
from infinitic.worker._testkit import InfiniticTestKit
from infinitic.workflow_engine import replay_history

__all__ = ["InfiniticTestKit", "ManualClock", "replay_history"]
