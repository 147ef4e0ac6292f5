"""Submitting and watching pipeline runs on Kubeflow Pipelines and Vertex AI: parameter files, backends, schedules."""
