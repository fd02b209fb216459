"""Infinitic for Python: the workflow tag engine: tags, custom ids, by-tag fan-out."""

from infinitic.workflow_tag._engine import (
    FAN_OUT_PAGE_SIZE,
    MAX_IDS_PAGE_SIZE,
    WorkflowTagEngine,
)

__all__ = ["FAN_OUT_PAGE_SIZE", "MAX_IDS_PAGE_SIZE", "WorkflowTagEngine"]
