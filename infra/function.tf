# Source archive named by its content hash.
data "archive_file" "source" {
  type        = "zip"
  source_dir  = "${path.module}/${var.function_source_dir}"
  output_path = "${path.module}/.terraform/build/clipsearch-source.zip" # .terraform/ is git-ignored
  # Fixed file modes, so the hash (and the object name) depends on content alone.
  output_file_mode = "0644"
  excludes = [
    "**/__pycache__/**", "**/*.pyc", "**/.pytest_cache/**", "**/.mypy_cache/**", "**/*.egg-info/**",
  ]
}

locals {
  # What the outcome's expires_at promises (CLIPSEARCH_RESULT_RETENTION_DAYS) comes from the same
  # variable as the results bucket's lifecycle rule (storage.tf), so the two cannot disagree.
  retention_env = {
    CLIPSEARCH_RESULT_RETENTION_DAYS = tostring(var.result_retention_days)
  }
}

resource "google_storage_bucket_object" "source" {
  name   = "source-${data.archive_file.source.output_md5}.zip"
  bucket = google_storage_bucket.source.name
  source = data.archive_file.source.output_path
}

resource "google_cloudfunctions2_function" "clipsearch" {
  name        = local.names.function
  location    = var.region
  description = "clipsearch: a query image in ${google_storage_bucket.query.name} becomes ranked clips on ${google_pubsub_topic.results.name}."

  build_config {
    runtime     = "python311"
    entry_point = "on_object_finalized"
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email = google_service_account.runtime.email
    available_memory      = var.memory
    available_cpu         = var.cpu
    timeout_seconds       = var.timeout_seconds
    min_instance_count    = var.min_instances
    # The instance cap and per-instance concurrency come from the same variables that the
    # rate limiter reads (CLIPSEARCH_MAX_INSTANCES in locals.tf): the account-wide search rate
    # is split over at most max_instances instances.
    max_instance_count               = var.max_instances
    max_instance_request_concurrency = var.concurrency
    ingress_settings                 = "ALLOW_INTERNAL_ONLY" # Eventarc delivers internally
    all_traffic_on_latest_revision   = true

    environment_variables = merge(local.function_env, local.retention_env)

    secret_environment_variables {
      key        = "CLIPSEARCH_API_KEY"
      project_id = var.project_id
      secret     = google_secret_manager_secret.api_key.secret_id
      version    = "latest" # read at instance start-up: rotate by adding a version
    }
  }

  event_trigger {
    # Eventarc storage triggers must live in the bucket's location (lowercase).
    trigger_region        = lower(google_storage_bucket.query.location)
    event_type            = "google.cloud.storage.object.v1.finalized"
    retry_policy          = "RETRY_POLICY_RETRY" # transient failures raise: Eventarc redelivers
    service_account_email = google_service_account.trigger.email

    event_filters {
      attribute = "bucket"
      value     = google_storage_bucket.query.name
    }
  }

  depends_on = [
    google_project_iam_member.gcs_agent_publishes_events,
    google_project_iam_member.trigger_receives_events,
    google_secret_manager_secret_iam_member.runtime_reads_api_key,
    google_storage_bucket_iam_member.runtime_reads_queries,
    google_storage_bucket_iam_member.runtime_writes_results,
    google_pubsub_topic_iam_member.runtime_publishes_results,
    google_pubsub_topic_iam_member.runtime_publishes_errors,
  ]
}
