"""Pipeline factories (training) and the runners that execute them: kfp.local, Kubeflow Pipelines, Vertex AI."""
