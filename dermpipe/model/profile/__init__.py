"""profile: what the trained model ships with, made at training time from its own splits.

stage.py      the profile stage: ProfileParams and `run` (components/profile.py calls it)
features.py   the drift features of an image, the same code for the profile and for logged traffic
reference.py  the reference profile's files and the embedding PCA (EmbeddingPCA) the OOD score and drift use
clinical.py   clinical.json: temperature calibration, melanoma operating points, the served OOD detector
ood*.py       the OOD candidate scores (ood_scores), the detector (ood), its choice (ood_select) on a far set
              (ood_set) and a near set (ood_near); ood_study runs the benchmark studies
Deploy copies these files beside the SavedModel; serving and predict read them with this package, the drift
monitor with dermpipe.monitoring.profile_reader.
"""
