variable "project_id" {
  description = "GCP project that hosts dermpipe (an existing, empty project with billing enabled)."
  type        = string
}

variable "region" {
  description = "Region of the bucket, the Artifact Registry repository, Vertex AI and the GKE cluster."
  type        = string
  default     = "us-central1"
}

variable "name" {
  description = "Prefix of every resource name (bucket, repository, service accounts, cluster)."
  type        = string
  default     = "dermpipe"
}

variable "bucket_name" {
  description = "Name of the artifact bucket (pipeline root, model registry, prediction logs). Default: <project>-<name>."
  type        = string
  default     = ""
}

variable "artifact_noncurrent_days" {
  description = "Days a replaced or deleted object version is kept before it is deleted (versioning safety net)."
  type        = number
  default     = 30
}

variable "pipeline_artifacts_days" {
  description = "Days intermediate pipeline artifacts (under artifacts/) are kept; the registry is never expired."
  type        = number
  default     = 90
}

variable "kms_key_name" {
  description = "Optional Cloud KMS key (projects/.../cryptoKeys/...) for customer-managed encryption of the bucket."
  type        = string
  default     = ""
}

variable "create_gke" {
  description = "Create a private GKE cluster with a GPU node pool for Kubeflow Pipelines (false: Vertex AI only)."
  type        = bool
  default     = false
}

variable "gpu_type" {
  description = "Accelerator of the GPU node pool, e.g. nvidia-tesla-t4 or nvidia-l4 (the train task's node selector)."
  type        = string
  default     = "nvidia-tesla-t4"
}

variable "gpu_machine_type" {
  description = "Machine type of the GPU nodes (8 vCPU / 32 GB fit the train task's requests)."
  type        = string
  default     = "n1-standard-8"
}

variable "gpu_max_nodes" {
  description = "Upper bound of the GPU pool's autoscaler (it scales to zero when no training runs)."
  type        = number
  default     = 2
}

variable "gpu_spot" {
  description = "Use Spot (pre-emptible) GPU nodes; the train task is retried with back-off when pre-empted."
  type        = bool
  default     = true
}

variable "master_authorized_cidr" {
  description = "CIDR allowed to reach the GKE control plane (your office or VPN range)."
  type        = string
  default     = "10.0.0.0/8"
}

variable "kfp_namespace" {
  description = "Kubernetes namespace of Kubeflow Pipelines' workloads (their service account gets the pipelines SA)."
  type        = string
  default     = "kubeflow"
}
