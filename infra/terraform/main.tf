# dermpipe on GCP: the artifact bucket, the image repository, the APIs; identities in iam.tf, the optional GKE
# cluster for Kubeflow Pipelines in gke.tf.

locals {
  bucket_name = var.bucket_name != "" ? var.bucket_name : "${var.project_id}-${var.name}"
  apis = [
    "aiplatform.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "compute.googleapis.com",
    "container.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "storage.googleapis.com",
  ]
}

resource "google_project_service" "apis" {
  for_each           = toset(local.apis)
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# Pipeline root (artifacts/), model registry (registry/), prediction logs (predictions/), drift reports.
resource "google_storage_bucket" "artifacts" {
  #checkov:skip=CKV_GCP_62:Access logs of this bucket go to Cloud Audit Logs (data access), not to a second bucket.
  name                        = local.bucket_name
  project                     = var.project_id
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == "" ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  # Older versions of replaced or deleted objects are kept for a while, then removed.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.artifact_noncurrent_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  # Intermediate pipeline artifacts expire; the model registry and prediction logs are kept.
  lifecycle_rule {
    condition {
      age            = var.pipeline_artifacts_days
      matches_prefix = ["artifacts/"]
    }
    action {
      type = "Delete"
    }
  }

  labels = {
    app = var.name
  }

  depends_on = [google_project_service.apis]
}

resource "google_artifact_registry_repository" "images" {
  project       = var.project_id
  location      = var.region
  repository_id = var.name
  description   = "dermpipe container images: base, trainer-gpu, serving"
  format        = "DOCKER"
  kms_key_name  = var.kms_key_name == "" ? null : var.kms_key_name

  docker_config {
    immutable_tags = true
  }

  labels = {
    app = var.name
  }

  depends_on = [google_project_service.apis]
}
