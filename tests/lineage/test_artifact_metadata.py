"""Artifact metadata must survive KFP's protobuf Struct: a NaN figure (a sensitivity with no positives) once failed
a whole training run at evaluate ("Fail to serialize NaN for Value.number_value")."""

import numpy as np
from google.protobuf import struct_pb2
from kfp.dsl import Dataset

from dermpipe.lineage.artifacts import annotate


def test_non_finite_figures_become_null_and_the_metadata_serialises(tmp_path):
    artifact = Dataset(name="report", uri=str(tmp_path / "report"))
    annotate(artifact, {"points": [{"test": {"sensitivity": float("nan"), "specificity": np.float64(0.75),
                                             "upper": np.float32(np.inf), "n": np.int64(12)}}]})
    test = artifact.metadata["points"][0]["test"]
    assert test == {"sensitivity": None, "specificity": 0.75, "upper": None, "n": 12}
    struct = struct_pb2.Struct()
    struct.update(artifact.metadata)  # what the KFP executor does with an output's metadata
    assert struct["points"][0]["test"]["specificity"] == 0.75
