output "bucket" {
  description = "Artifact bucket name."
  value       = google_storage_bucket.artifacts.name
}

output "pipeline_root" {
  description = "Pass to `dermpipe submit --pipeline-root` (Vertex AI and KFP)."
  value       = "gs://${google_storage_bucket.artifacts.name}/artifacts"
}

output "registry_root" {
  description = "Pipeline parameter registry_root and `dermpipe serve --registry-root`."
  value       = "gs://${google_storage_bucket.artifacts.name}/registry"
}

output "prediction_log_root" {
  description = "`dermpipe serve --log-root` (the monitoring pipeline reads it)."
  value       = "gs://${google_storage_bucket.artifacts.name}/predictions"
}

output "image_registry" {
  description = "Set DERMPIPE_IMAGE_REGISTRY to this (used by `make images` and `dermpipe compile/submit`)."
  value       = "${google_artifact_registry_repository.images.location}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

output "pipelines_service_account" {
  description = "`dermpipe submit --backend vertex --service-account` (Vertex runs every task as this account)."
  value       = google_service_account.pipelines.email
}

output "serving_service_account" {
  description = "Service account of dermpipe serve (KServe via Workload Identity, or Cloud Run)."
  value       = google_service_account.serving.email
}

output "gke_cluster" {
  description = "GKE cluster for Kubeflow Pipelines (empty when create_gke = false)."
  value       = var.create_gke ? google_container_cluster.kfp[0].name : ""
}

output "get_credentials" {
  description = "Command that points kubectl at the cluster."
  value       = var.create_gke ? "gcloud container clusters get-credentials ${google_container_cluster.kfp[0].name} --region ${var.region} --project ${var.project_id}" : ""
}
