"""Object detection: anchors, decoders, NMS and the Detector that ties them to a backend.

    manifest = load_manifest(Path("models"))
    detector = load_detector(manifest.get("face"), create_backend("litert"))
    detector.warm_up()
    detections = detector.detect(frame_bgr)
"""

from .anchors import ssd_anchors
from .candidates import Candidates
from .decoders import DECODERS, Decoder, make_decoder
from .detector import Detector, load_detector
from .errors import DetectionError
from .nms import hard_nms, iou, weighted_nms
from .preprocess import Letterbox, letterbox, to_tensor

__all__ = [
    "DECODERS",
    "Candidates",
    "Decoder",
    "DetectionError",
    "Detector",
    "Letterbox",
    "hard_nms",
    "iou",
    "letterbox",
    "load_detector",
    "make_decoder",
    "ssd_anchors",
    "to_tensor",
    "weighted_nms",
]
