# Least-privilege identities: one service account runs the pipelines (Vertex AI or KFP pods through Workload
# Identity), one serves the model, one runs the GKE nodes. Grants are on the bucket and the repository where
# possible, not on the project.

resource "google_service_account" "pipelines" {
  project      = var.project_id
  account_id   = "${var.name}-pipelines"
  display_name = "dermpipe pipelines (Vertex AI Pipelines / KFP tasks)"
}

resource "google_service_account" "serving" {
  project      = var.project_id
  account_id   = "${var.name}-serving"
  display_name = "dermpipe serving (dermpipe serve on KServe / Cloud Run)"
}

# Pipelines: run Vertex AI pipeline jobs, read and write the bucket, pull images, write logs.
resource "google_project_iam_member" "pipelines_aiplatform" {
  project = var.project_id
  role    = "roles/aiplatform.user"
  member  = "serviceAccount:${google_service_account.pipelines.email}"
}

resource "google_project_iam_member" "pipelines_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.pipelines.email}"
}

resource "google_storage_bucket_iam_member" "pipelines_objects" {
  bucket = google_storage_bucket.artifacts.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.pipelines.email}"
}

resource "google_artifact_registry_repository_iam_member" "pipelines_pull" {
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = "serviceAccount:${google_service_account.pipelines.email}"
}

# Vertex AI runs each task as the pipelines service account: its service agent must be able to act as it.
resource "google_service_account_iam_member" "vertex_agent_acts_as_pipelines" {
  service_account_id = google_service_account.pipelines.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-aiplatform.iam.gserviceaccount.com"
  depends_on         = [google_project_service.apis]
}

data "google_project" "this" {
  project_id = var.project_id
}

# Serving: read the model registry, append prediction logs (predictions/ only), pull the serving image.
resource "google_storage_bucket_iam_member" "serving_read" {
  bucket = google_storage_bucket.artifacts.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.serving.email}"
}

resource "google_storage_bucket_iam_member" "serving_log_writer" {
  bucket = google_storage_bucket.artifacts.name
  role   = "roles/storage.objectCreator"
  member = "serviceAccount:${google_service_account.serving.email}"

  condition {
    title       = "prediction-log-only"
    description = "dermpipe serve may create objects under predictions/ only"
    expression  = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.artifacts.name}/objects/predictions/\")"
  }
}

resource "google_artifact_registry_repository_iam_member" "serving_pull" {
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = "serviceAccount:${google_service_account.serving.email}"
}

resource "google_project_iam_member" "serving_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.serving.email}"
}
