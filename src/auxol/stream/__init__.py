"""The clinician-in-the-loop stream: replay a dataset image by image, base model against AuxOL.

- :mod:`~auxol.stream.clinician`: the simulated clinician (prompts from the truth, prompt
  noise, who rectifies, annotation noise) and its :class:`StreamOptions`;
- :mod:`~auxol.stream.loop`: the prequential loop of one part and its per-image record;
- :mod:`~auxol.stream.settings`: what a run depends on, and how its options resolve;
- :mod:`~auxol.stream.runner`: every part of a dataset, the outputs, and ``--resume``;
- :mod:`~auxol.stream.report`: ``results.csv``, ``alphas.csv``, ``summary.json``, plots.
- :mod:`~auxol.stream.volumes`: the same stream over the slices of volumes (its own outputs, plots, ``--resume``).
"""

from auxol.stream.clinician import StreamOptions
from auxol.stream.loop import ImageRecord, StreamStep, stream_part
from auxol.stream.runner import StreamRunner
from auxol.stream.settings import StreamSettings, resolve_options

__all__ = ["ImageRecord", "StreamOptions", "StreamRunner", "StreamSettings", "StreamStep", "resolve_options", "stream_part"]
