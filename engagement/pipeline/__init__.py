"""The video pipeline, in the order data flows through it.

A recorded video makes two passes with track-level decisions in between:

1. ``analyse``: decode; detect, track, check consent and extract features on the analysis frames;
2. ``decide``: pure functions over the whole recording's analysis frames: stitch tracklets into one ID per
   person, settle each track's states (session baseline, smoothing);
3. ``render``: decode again; anonymize, annotate and encode every frame from the decided analysis frames;
4. ``record``: provenance, tables and summary; ``run`` drives it all (``process_video``).

A camera or stream cannot be read twice: it makes one online pass through the same stages (``run_frames``
without decided keyframes), as ``engagement live`` does.
"""

from engagement.pipeline.run import process_video

__all__ = ["process_video"]
