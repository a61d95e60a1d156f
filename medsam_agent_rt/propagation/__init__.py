"""Propagation of a mask through volumes and video streams: one tracker protocol
(``start(frame, mask)`` then ``step(frame) -> (mask, score)``, bounded memory) with a
box-from-previous-mask tracker for the SAM-1 family (``BoxTracker``) and SAM2's memory tracker
(``Sam2Tracker``); ``propagate_volume`` runs a tracker forward and backward from a key slice."""

from medsam_agent_rt.propagation.tracker import BoxTracker, Tracker, TrackStep
from medsam_agent_rt.propagation.volume import dice_3d, nsd_3d, propagate_volume, track_stream

__all__ = [
    "BoxTracker",
    "TrackStep",
    "Tracker",
    "dice_3d",
    "nsd_3d",
    "propagate_volume",
    "track_stream",
]
