# Two buckets, never one: the query bucket triggers the function and nothing the function
# writes ever lands in it, so outputs cannot retrigger it (settings.check_no_feedback_loop).

resource "google_storage_bucket" "query" {
  # checkov:skip=CKV_GCP_62:Access is audited with Cloud Audit Logs (Data Access logs), Google's recommended mechanism; legacy usage-log buckets would add a fourth bucket.
  name                        = local.names.query_bucket
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets

  versioning {
    enabled = true # a re-upload is a new generation, and the function is keyed by generation
  }

  dynamic "lifecycle_rule" {
    for_each = var.query_retention_days > 0 ? [1] : []
    content {
      condition {
        age = var.query_retention_days
      }
      action {
        type = "Delete"
      }
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 7
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.this]
}

resource "google_storage_bucket" "results" {
  # checkov:skip=CKV_GCP_62:Access is audited with Cloud Audit Logs (Data Access logs), Google's recommended mechanism; legacy usage-log buckets would add a fourth bucket.
  name                        = local.names.results_bucket
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets

  versioning {
    enabled = true
  }

  # Artifacts: copied videos, cut clips (with their posters) and the MP4 index sidecars the
  # cutter caches under index/ are deleted clip_retention_days after the last query that made
  # or reused them, not after they were created: the function sets an artifact's customTime
  # when it writes it and moves it forward when a later query reuses it (adapters/gcs.py), so
  # a result written on day 29 never points at a clip deleted on day 30. The extra day covers
  # what lies between that refresh and the outcome's produced_at (the query's own run, at most
  # timeout_seconds, and the refresh being skipped when it is under an hour old), so that
  # expires_at = produced_at + result_retention_days holds for the artifacts too. An artifact
  # without customTime (written before this rule) is not matched: docs/operations.md
  # "Retention" stamps those once. A deleted sidecar is rebuilt on the next cut.
  lifecycle_rule {
    condition {
      days_since_custom_time = var.clip_retention_days + 1
      matches_prefix         = [local.videos_prefix, local.clips_prefix, local.index_prefix]
    }
    action {
      type = "Delete"
    }
  }

  # Result JSON and idempotency records: kept longer than any redelivery window (>= 2 days) and
  # never longer than the clips they point to (result_retention_days <= clip_retention_days),
  # so a stored result never outlives the artifacts its URIs name. The outcome's expires_at is
  # produced_at + result_retention_days (CLIPSEARCH_RESULT_RETENTION_DAYS, function.tf).
  lifecycle_rule {
    condition {
      age            = var.result_retention_days
      matches_prefix = [local.results_records_prefix, local.idempotency_prefix]
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 7
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.this]
}

# Function source archives, named by content hash: a code change is a new object, hence a new
# function revision; an unchanged tree is a no-op.
resource "google_storage_bucket" "source" {
  # checkov:skip=CKV_GCP_62:Access is audited with Cloud Audit Logs (Data Access logs), Google's recommended mechanism; legacy usage-log buckets would add a fourth bucket.
  name                        = local.names.source_bucket
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true # holds only rebuildable archives

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.this]
}
