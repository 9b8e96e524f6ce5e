"""Every message of the edgehive protocol, the topic scheme, and their JSON Schema exports.

Import from here: `from edgehive.schemas import JobRequest, Topics`.
"""

from .base import Ident, Message, decode, encode
from .messages import (
    MODELS,
    Capabilities,
    CoordinatorMember,
    CoordinatorStats,
    ErrorReport,
    FrameMeta,
    Heartbeat,
    Job,
    JobRequest,
    JobState,
    JobStateName,
    LeaderClaim,
    ModelRuntime,
    NodeStatus,
    Requirements,
    Result,
    Timings,
    parse_claim,
    parse_status,
)
from .results import parse_result
from .topics import TopicError, TopicRef, Topics
from .vision import Detection, DetectionOutput

__all__ = [
    "MODELS",
    "Capabilities",
    "CoordinatorMember",
    "CoordinatorStats",
    "Detection",
    "DetectionOutput",
    "ErrorReport",
    "FrameMeta",
    "Heartbeat",
    "Ident",
    "Job",
    "JobRequest",
    "JobState",
    "JobStateName",
    "LeaderClaim",
    "Message",
    "ModelRuntime",
    "NodeStatus",
    "Requirements",
    "Result",
    "Timings",
    "TopicError",
    "TopicRef",
    "Topics",
    "decode",
    "encode",
    "parse_claim",
    "parse_result",
    "parse_status",
]
