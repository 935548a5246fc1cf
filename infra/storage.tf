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
  # cutter caches under index/ go after clip_retention_days. A deleted sidecar is rebuilt on
  # the next cut from that source; nothing else points to it.
  lifecycle_rule {
    condition {
      age            = var.clip_retention_days
      matches_prefix = [local.videos_prefix, local.clips_prefix, local.index_prefix]
    }
    action {
      type = "Delete"
    }
  }

  # Result JSON and idempotency records: kept longer than any redelivery window (>= 2 days) and
  # never longer than the clips they point to (result_retention_days <= clip_retention_days),
  # so a stored result never outlives the artifacts its URIs name.
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
