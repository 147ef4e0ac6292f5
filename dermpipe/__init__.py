"""dermpipe: a Kubeflow/Vertex pipeline for ISIC 2019 skin-lesion classification."""

__version__ = "0.1.0"
