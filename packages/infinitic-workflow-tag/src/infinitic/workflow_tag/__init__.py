"""Infinitic for Python: the workflow tag engine: tags, custom ids, by-tag fan-out."""

import importlib.metadata

from infinitic.workflow_tag._engine import (
    FAN_OUT_PAGE_SIZE,
    MAX_IDS_PAGE_SIZE,
    WorkflowTagEngine,
)

__version__: str = importlib.metadata.version("infinitic-workflow-tag")

__all__ = ["FAN_OUT_PAGE_SIZE", "MAX_IDS_PAGE_SIZE", "WorkflowTagEngine"]
