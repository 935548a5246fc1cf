locals {
  services = [
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "eventarc.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ]
}

resource "google_project_service" "this" {
  # The Billing Budget API only when a budget is created (budget.tf).
  for_each = var.enable_apis ? toset(concat(local.services, var.billing_account == "" ? [] : ["billingbudgets.googleapis.com"])) : toset([])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
