"""Training: the recipes' SpeechBrain ``Brain`` classes and everything that
sets a run up.

Owns the shared ``Brain`` (:mod:`~sser_lobes.training.brain`) and the
categorical recipe's (:mod:`~sser_lobes.training.emotion_brain`), the
experiment set-up from the command line (:mod:`~sser_lobes.training.recipe`),
hyperparameter overlays, the checks made before anything heavy is built
(:mod:`~sser_lobes.training.preflight`), the split guard that keeps a run
folder on one split, the frozen-encoder feature cache, the RNG state
saved with checkpoints, and checkpoints of the trainable tensors only for
mostly frozen encoders (:mod:`~sser_lobes.training.trainable_checkpoint`).

May import: every layer below it: :mod:`sser_lobes.errors`,
:mod:`~sser_lobes.encoders`, :mod:`~sser_lobes.nnet`,
:mod:`~sser_lobes.dataio`, :mod:`~sser_lobes.text`,
:mod:`~sser_lobes.evaluation`. Never :mod:`~sser_lobes.inference`.
"""
