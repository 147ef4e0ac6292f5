"""drift: the drift stage, current traffic against the model's reference profile.

stage.py      the drift stage: DriftParams and `run` (components/drift.py calls it; `dermpipe monitor`'s options)
inputs.py     both sides as feature tables (a prediction log window or a folder of images) and the stage's metrics
analysis.py   the per-column tests, the decision and the Evidently report
"""
