"""AuxOL: auxiliary online learning around a frozen promptable model.

A small U-Net learns online from each mask a clinician rectifies and is fused with the
foundation model for the images that follow (Huang et al., IEEE TMI 2025; the method and
its options are described in ``docs/auxol-method.md``)::

    learner = AuxOL(model, AuxOLConfig.preset("paper"))
    pred = learner.predict(image, prompts)      # uses only what earlier images taught
    learner.learn(pred, rectified_or_none)      # then learns from this image's mask

Differences from the published code (``paper`` preset):

- Prediction comes before learning in every case, and prediction never reads the
  image's own mask. The published code computes a rectified crop's auxiliary output in
  the training forward of the online batch; with ``predict_batchnorm="queue"`` predict
  runs the same forward (the batch plus the new crop, BatchNorm on batch statistics,
  same weights), so a single-crop rectified image gets the published output. Where the
  published code differs:
  * an image with several crops: its crops are predicted together with the weights and
    fusion weight from earlier images; the published code had already learned from (and
    taken the fusion weight of) the image's first crops when predicting its later ones;
  * an image without a rectified mask: the published code first took an optimiser step
    on the online batch, then predicted the crop alone (BatchNorm statistics of a batch
    of one). Whether an image will be rectified is unknown at prediction time, so here
    that step is taken in ``learn`` (it shifts by one image) and the crop is normalised
    like a rectified one.
- Only rectified crops add best alphas to the fusion history (the published code also
  used the labels of images nobody rectified).
- The auxiliary input is the RGB crop plus the base mask as a 4th channel (the
  published RGBA resize blacked out the image outside the base mask), both loss terms
  are boundary-weighted, and the crop is resized with area averaging when shrinking.
- Options beyond the paper: ``crop_margin``, ``keep_base_outside_crop``,
  ``predict_batchnorm="running"``, ``steps_per_image``, ``bf16``, ``channels_last``.

The ``cpu`` preset (the default) was chosen by replaying DDTI thyroid ultrasound with
LiteMedSAM and tight box prompts, base logits cached, on one thread of a shared 2-core
AMD EPYC (CPU seconds per image; LiteMedSAM itself: 2.75 s). Dice has smooth 1.

==========================  ======  =====  =====  ========  ===============
preset, images              base    AuxOL  gain   learn s   predict extra s
==========================  ======  =====  =====  ========  ===============
paper, first 40             87.78   90.61  +2.83  17.2      5.3
cpu, first 40               87.78   90.88  +3.10  0.30      0.027
cpu, all 120                85.64   90.59  +4.95  0.30      0.028
==========================  ======  =====  =====  ========  ===============

On the same 40 images: BatchNorm on queue statistics beat running statistics by about
1 Dice point (90.59 vs 89.52) for 0.04 s more; a 24- or 32-wide net, 96 or 128 px crops
and a longer queue cost 2-3x more without a better Dice; two or three steps per crop
gained 0.5 point. With boxes shifted by 10% (rough boxes) the gain was +0.9 without a
crop margin, +2.0 with 0.1 and +2.9 with 0.2; on all 120 tight-box images the margins
0, 0.1 and 0.2 gave 90.53, 90.96 and 90.59 (differences at the noise level).
LiteMedSAM never segments outside its box, so ``keep_base_outside_crop`` changed nothing
here; it matters for models that do, and for point prompts.
"""

from auxol.online.config import DEFAULT_PRESET, PRESETS, AuxOLConfig
from auxol.online.learner import AlphaEntry, AuxOL, Crop, Prediction

__all__ = ["DEFAULT_PRESET", "PRESETS", "AlphaEntry", "AuxOL", "AuxOLConfig", "Crop", "Prediction"]
