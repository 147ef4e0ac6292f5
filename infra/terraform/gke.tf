# Optional (create_gke = true): a private GKE cluster for Kubeflow Pipelines and KServe, with a CPU pool for the
# pipeline steps and an autoscaling GPU pool (tainted nvidia.com/gpu, optionally Spot) that only the train task
# tolerates. Workload Identity maps the Kubernetes service accounts of KFP and KServe to the service accounts above.

resource "google_service_account" "gke_nodes" {
  count        = var.create_gke ? 1 : 0
  project      = var.project_id
  account_id   = "${var.name}-gke-nodes"
  display_name = "dermpipe GKE nodes (logging, monitoring, image pulls)"
}

resource "google_project_iam_member" "gke_nodes" {
  for_each = var.create_gke ? toset([
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/monitoring.viewer",
    "roles/stackdriver.resourceMetadata.writer",
  ]) : toset([])
  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.gke_nodes[0].email}"
}

resource "google_artifact_registry_repository_iam_member" "gke_nodes_pull" {
  count      = var.create_gke ? 1 : 0
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = "serviceAccount:${google_service_account.gke_nodes[0].email}"
}

resource "google_compute_network" "vpc" {
  count                   = var.create_gke ? 1 : 0
  project                 = var.project_id
  name                    = "${var.name}-vpc"
  auto_create_subnetworks = false
  depends_on              = [google_project_service.apis]
}

# Ingress is closed except traffic inside the VPC (nodes, pods, services) and the control plane reaching the nodes
# (webhooks such as KServe's and KFP's); GKE adds its own narrow rules beside these.
resource "google_compute_firewall" "internal" {
  count     = var.create_gke ? 1 : 0
  project   = var.project_id
  name      = "${var.name}-allow-internal"
  network   = google_compute_network.vpc[0].name
  direction = "INGRESS"
  priority  = 1000

  source_ranges = ["10.10.0.0/20", "10.20.0.0/14", "10.24.0.0/20", "172.16.0.0/28"]

  allow {
    protocol = "tcp"
  }

  allow {
    protocol = "udp"
  }

  allow {
    protocol = "icmp"
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_firewall" "deny_ingress" {
  count     = var.create_gke ? 1 : 0
  project   = var.project_id
  name      = "${var.name}-deny-ingress"
  network   = google_compute_network.vpc[0].name
  direction = "INGRESS"
  priority  = 65000

  source_ranges = ["0.0.0.0/0"]

  deny {
    protocol = "all"
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_subnetwork" "nodes" {
  count                    = var.create_gke ? 1 : 0
  project                  = var.project_id
  name                     = "${var.name}-nodes"
  region                   = var.region
  network                  = google_compute_network.vpc[0].id
  ip_cidr_range            = "10.10.0.0/20"
  private_ip_google_access = true # pulls from Artifact Registry and reads gs:// without public IPs

  secondary_ip_range {
    range_name    = "pods"
    ip_cidr_range = "10.20.0.0/14"
  }

  secondary_ip_range {
    range_name    = "services"
    ip_cidr_range = "10.24.0.0/20"
  }

  log_config {
    aggregation_interval = "INTERVAL_10_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

resource "google_container_cluster" "kfp" {
  #checkov:skip=CKV_GCP_66:Binary Authorization needs an attestor pipeline; images come from our own immutable-tag repository.
  #checkov:skip=CKV_GCP_65:Google Groups for RBAC needs a Workspace domain, which an empty project does not have.
  count    = var.create_gke ? 1 : 0
  project  = var.project_id
  name     = "${var.name}-kfp"
  location = var.region

  network    = google_compute_network.vpc[0].id
  subnetwork = google_compute_subnetwork.nodes[0].id

  # Node pools are managed below; the default pool is removed right after creation.
  remove_default_node_pool = true
  initial_node_count       = 1
  deletion_protection      = true

  release_channel {
    channel = "REGULAR"
  }

  ip_allocation_policy {
    cluster_secondary_range_name  = "pods"
    services_secondary_range_name = "services"
  }

  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = false
    master_ipv4_cidr_block  = "172.16.0.0/28"
  }

  master_authorized_networks_config {
    cidr_blocks {
      cidr_block   = var.master_authorized_cidr
      display_name = "operators"
    }
  }

  master_auth {
    client_certificate_config {
      issue_client_certificate = false
    }
  }

  workload_identity_config {
    workload_pool = "${var.project_id}.svc.id.goog"
  }

  network_policy {
    enabled = true
  }

  addons_config {
    network_policy_config {
      disabled = false
    }
  }

  enable_shielded_nodes       = true
  enable_intranode_visibility = true
  enable_legacy_abac          = false

  node_config {
    service_account = google_service_account.gke_nodes[0].email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    image_type      = "COS_CONTAINERD"

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    metadata = {
      disable-legacy-endpoints = "true"
    }
  }

  resource_labels = {
    app = var.name
  }

  logging_service    = "logging.googleapis.com/kubernetes"
  monitoring_service = "monitoring.googleapis.com/kubernetes"
}

# CPU pool: KFP itself, every pipeline step but train, dermpipe serve.
resource "google_container_node_pool" "cpu" {
  count    = var.create_gke ? 1 : 0
  project  = var.project_id
  name     = "cpu"
  location = var.region
  cluster  = google_container_cluster.kfp[0].name

  autoscaling {
    min_node_count = 1
    max_node_count = 4
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type    = "e2-standard-4"
    image_type      = "COS_CONTAINERD"
    service_account = google_service_account.gke_nodes[0].email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    labels          = { app = var.name, pool = "cpu" }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    metadata = {
      disable-legacy-endpoints = "true"
    }
  }
}

# GPU pool: scales from zero; GKE taints it nvidia.com/gpu=present:NoSchedule and labels it
# cloud.google.com/gke-accelerator=<gpu_type>, which the train task tolerates and selects
# (`dermpipe compile --gke-accelerator <gpu_type> [--spot]`).
resource "google_container_node_pool" "gpu" {
  count    = var.create_gke ? 1 : 0
  project  = var.project_id
  name     = "gpu"
  location = var.region
  cluster  = google_container_cluster.kfp[0].name

  autoscaling {
    min_node_count = 0
    max_node_count = var.gpu_max_nodes
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type    = var.gpu_machine_type
    image_type      = "COS_CONTAINERD"
    spot            = var.gpu_spot
    service_account = google_service_account.gke_nodes[0].email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    labels          = { app = var.name, pool = "gpu" }

    guest_accelerator {
      type  = var.gpu_type
      count = 1
      gpu_driver_installation_config {
        gpu_driver_version = "DEFAULT"
      }
    }

    taint {
      key    = "nvidia.com/gpu"
      value  = "present"
      effect = "NO_SCHEDULE"
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    metadata = {
      disable-legacy-endpoints = "true"
    }
  }
}

# Workload Identity: KFP's pipeline-runner and KServe's dermpipe-serving Kubernetes service accounts act as the GCP
# service accounts (infra/k8s annotates them).
resource "google_service_account_iam_member" "kfp_workload_identity" {
  count              = var.create_gke ? 1 : 0
  service_account_id = google_service_account.pipelines.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[${var.kfp_namespace}/pipeline-runner]"
  depends_on         = [google_container_cluster.kfp]
}

resource "google_service_account_iam_member" "serving_workload_identity" {
  count              = var.create_gke ? 1 : 0
  service_account_id = google_service_account.serving.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[dermpipe-serving/dermpipe-serving]"
  depends_on         = [google_container_cluster.kfp]
}
