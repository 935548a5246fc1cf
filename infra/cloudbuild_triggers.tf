# The deploy pipeline, split so that no branch can borrow the deployer's rights:
#   plan:  any branch, cloudbuild-plan.yaml, runs as the read-only planner identity below.
#   apply: main only, cloudbuild.yaml, runs as the deployer identity, and only after a person
#          with roles/cloudbuild.builds.approver approves the build.
# The guard lives here, in the triggers, not in a build file a branch could edit. Created only
# when var.build_repository is set (a Cloud Build 2nd-gen repository connection).

locals {
  build_triggers = var.build_repository == "" ? 0 : 1

  # Cloud Build step images, pinned by digest (var.builder_images), passed as substitutions.
  builder_substitutions = var.builder_images == null ? {} : {
    _PYTHON_IMAGE    = var.builder_images.python
    _CLOUD_SDK_IMAGE = var.builder_images.cloud_sdk
    _TERRAFORM_IMAGE = var.builder_images.terraform
  }

  build_substitutions = merge(local.builder_substitutions, {
    _TF_STATE_BUCKET = var.tf_state_bucket
    _REGION          = var.region
    _PREFIX          = var.name_prefix
  })
}

resource "google_service_account" "planner" {
  count = local.build_triggers

  account_id   = "${var.name_prefix}-plan"
  display_name = "clipsearch terraform plan, read-only (${var.name_prefix})"
  depends_on   = [google_project_service.this]
}

# PROJECT-LEVEL, justified: `terraform plan` refreshes every resource of this configuration
# (buckets, topics, function, secrets' metadata, service accounts), which only a project-wide
# read role covers; roles/viewer reads no secret value and no object data.
resource "google_project_iam_member" "planner_views_project" {
  # checkov:skip=CKV_GCP_117:Read-only by design: plan must refresh resources of ten services (storage, pubsub, functions, run, eventarc, secret metadata, IAM, logging, monitoring, build); roles/viewer writes nothing and reads no secret value, and a hand-made list of viewer roles would drift as resources are added.
  count   = local.build_triggers
  project = var.project_id
  role    = "roles/viewer"
  member  = google_service_account.planner[0].member
}

# PROJECT-LEVEL, justified: the plan refreshes the IAM policies of the resources above (bucket,
# topic, secret and service IAM members); reading IAM policies is roles/iam.securityReviewer.
resource "google_project_iam_member" "planner_reviews_iam" {
  count   = local.build_triggers
  project = var.project_id
  role    = "roles/iam.securityReviewer"
  member  = google_service_account.planner[0].member
}

# PROJECT-LEVEL, justified: a build that runs as a user-specified service account writes its
# logs to Cloud Logging as that identity; log writing can only be granted on the project.
resource "google_project_iam_member" "planner_writes_build_logs" {
  count   = local.build_triggers
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.planner[0].member
}

# Read the state, never write it: the plan runs with -lock=false.
resource "google_storage_bucket_iam_member" "planner_reads_state" {
  count  = local.build_triggers
  bucket = var.tf_state_bucket
  role   = "roles/storage.objectViewer"
  member = google_service_account.planner[0].member
}

resource "google_cloudbuild_trigger" "plan" {
  count = local.build_triggers

  name            = "${var.name_prefix}-plan"
  location        = var.region
  description     = "Any branch: tests and terraform plan as the read-only planner. Applies nothing."
  filename        = "cloudbuild-plan.yaml"
  service_account = google_service_account.planner[0].id
  substitutions   = local.build_substitutions

  repository_event_config {
    repository = var.build_repository
    push {
      branch = ".*"
    }
  }

  depends_on = [google_project_service.this]
}

resource "google_cloudbuild_trigger" "apply" {
  count = local.build_triggers

  name            = "${var.name_prefix}-apply"
  location        = var.region
  description     = "main only, after approval: tests, terraform plan and apply as the deployer."
  filename        = "cloudbuild.yaml"
  service_account = "projects/${var.project_id}/serviceAccounts/${var.deployer_service_account}"
  substitutions   = local.build_substitutions

  repository_event_config {
    repository = var.build_repository
    push {
      branch = "^main$"
    }
  }

  approval_config {
    approval_required = true
  }

  depends_on = [google_project_service.this]
}
