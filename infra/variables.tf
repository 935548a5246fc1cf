# ---- Where -------------------------------------------------------------------------------

variable "project_id" {
  description = "Google Cloud project id to deploy into."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a valid project id (6-30 lowercase letters, digits, hyphens)."
  }
}

variable "region" {
  description = "Single region for the function and both buckets; the trigger runs in the query bucket's location, which is this region."
  type        = string
  default     = "us-central1"
  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a single region such as us-central1 (not a multi-region)."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name (buckets are global: make it unique to you, e.g. acme-clipsearch)."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,20}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 4-22 chars: lowercase letters, digits, hyphens; start with a letter."
  }
}

variable "labels" {
  description = "Labels added to every resource that takes labels."
  type        = map(string)
  default     = { app = "clipsearch" }
}

variable "enable_apis" {
  description = "Enable the Google APIs the service needs (apis.tf). Turn off where a platform team manages them."
  type        = bool
  default     = true
}

# ---- Storage -----------------------------------------------------------------------------

variable "clip_retention_days" {
  description = "Delete artifacts (copied videos, clips and posters, MP4 index sidecars: <results_prefix>videos/, clips/, index/) this many days (plus one of margin) after the last query that made or reused them (their customTime)."
  type        = number
  default     = 30
  validation {
    condition     = var.clip_retention_days >= 1 && floor(var.clip_retention_days) == var.clip_retention_days
    error_message = "clip_retention_days must be a whole number >= 1."
  }
}

variable "result_retention_days" {
  description = "Delete result JSON (<results_prefix>results/) and idempotency records (records/) this many days after creation; at most clip_retention_days, so stored URIs do not dangle."
  type        = number
  default     = 30
  validation {
    # Eventarc redelivers for up to 24 h: a record must outlive every redelivery of its event.
    condition     = var.result_retention_days >= 2 && floor(var.result_retention_days) == var.result_retention_days
    error_message = "result_retention_days must be a whole number >= 2 (records must outlive redeliveries)."
  }
  validation {
    # A result JSON names clip URIs: it must not outlive them.
    condition     = var.result_retention_days <= var.clip_retention_days
    error_message = "result_retention_days must not exceed clip_retention_days (the JSON would point at deleted clips)."
  }
}

variable "query_retention_days" {
  description = "Delete query images this many days after upload (0 keeps them). A re-upload is a new generation, hence a new query: the old image is not needed for its outcome."
  type        = number
  default     = 0
  validation {
    condition     = var.query_retention_days >= 0 && floor(var.query_retention_days) == var.query_retention_days
    error_message = "query_retention_days must be a whole number >= 0."
  }
}

variable "force_destroy_buckets" {
  description = "Let terraform destroy delete non-empty buckets (for throwaway environments only)."
  type        = bool
  default     = false
}

# ---- Function sizing -----------------------------------------------------------------------

variable "function_source_dir" {
  description = "Deploy root of the function (main.py, requirements.txt, clipsearch/), relative to this module."
  type        = string
  default     = "../functions/clipsearch"
}

variable "memory" {
  description = "Memory per instance: the server and clients (~100 MiB), the index cache (index_cache_bytes; ~2.8 MB of tables per source hour) and, per event, one cut (~110 MiB peak on first sight of a 10 h source). 1Gi leaves ~2x headroom at concurrency 1 (docs/cost.md#memory)."
  type        = string
  default     = "1Gi"
  validation {
    condition     = contains(["512Mi", "1Gi", "2Gi", "4Gi", "8Gi", "16Gi", "32Gi"], var.memory)
    error_message = "memory must be one of 512Mi, 1Gi, 2Gi, 4Gi, 8Gi, 16Gi, 32Gi."
  }
}

variable "cpu" {
  description = "vCPUs per instance (1 vCPU needs at least 512Mi of memory)."
  type        = string
  default     = "1"
  validation {
    condition     = contains(["1", "2", "4", "6", "8"], var.cpu)
    error_message = "cpu must be one of 1, 2, 4, 6, 8."
  }
}

variable "timeout_seconds" {
  description = "Per-event timeout: search plus copies of large videos. 540 is the event-driven maximum."
  type        = number
  default     = 540
  validation {
    condition     = var.timeout_seconds >= 60 && var.timeout_seconds <= 540
    error_message = "timeout_seconds must be between 60 and 540 (event-driven functions' maximum)."
  }
}

variable "min_instances" {
  description = "Instances kept warm (0 scales to zero)."
  type        = number
  default     = 0
  validation {
    condition     = var.min_instances >= 0 && var.min_instances <= var.max_instances
    error_message = "min_instances must be between 0 and max_instances."
  }
}

# ---- Rate limiting: these feed both the function's size and its settings --------------------

variable "max_instances" {
  description = "Maximum function instances; also CLIPSEARCH_MAX_INSTANCES, which the rate limiter divides the account-wide search rate by."
  type        = number
  default     = 1
  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 100 && floor(var.max_instances) == var.max_instances
    error_message = "max_instances must be a whole number from 1 to 100."
  }
}

variable "concurrency" {
  description = "Events one instance handles at once (max_instance_request_concurrency). More than 1 needs cpu >= 1."
  type        = number
  default     = 1
  validation {
    condition     = var.concurrency >= 1 && var.concurrency <= 1000 && floor(var.concurrency) == var.concurrency
    error_message = "concurrency must be a whole number from 1 to 1000."
  }
}

variable "search_rate_per_s" {
  description = "Account-wide search API calls per second (CLIPSEARCH_SEARCH_RATE_PER_S), shared by all instances."
  type        = number
  default     = 1
  validation {
    condition     = var.search_rate_per_s > 0
    error_message = "search_rate_per_s must be > 0."
  }
}

# ---- Function settings (clipsearch/settings.py); defaults match the code's -------------------

variable "api_base_url" {
  description = "CLIPSEARCH_API_BASE_URL: search API base URL."
  type        = string
  default     = "https://api.memories.ai/serve/api/v1"
  validation {
    condition     = can(regex("^https://", var.api_base_url))
    error_message = "api_base_url must be an https:// URL."
  }
}

variable "download_base_url" {
  description = "CLIPSEARCH_DOWNLOAD_BASE_URL: download endpoint base URL (empty: the API base)."
  type        = string
  default     = ""
  validation {
    condition     = var.download_base_url == "" || can(regex("^https://", var.download_base_url))
    error_message = "download_base_url must be empty or an https:// URL."
  }
}

variable "results_prefix" {
  description = "CLIPSEARCH_RESULTS_PREFIX: object-name prefix of everything the function writes."
  type        = string
  default     = "clipsearch/"
  validation {
    condition     = can(regex("^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*/$", var.results_prefix))
    error_message = "results_prefix must be a non-empty path ending in '/', e.g. clipsearch/."
  }
}

variable "include_prefixes" {
  description = "CLIPSEARCH_INCLUDE_PREFIXES: only query objects under these prefixes are processed (empty: all)."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for p in var.include_prefixes : !strcontains(p, ",")])
    error_message = "include_prefixes must not contain commas."
  }
}

variable "exclude_prefixes" {
  description = "CLIPSEARCH_EXCLUDE_PREFIXES: query objects under these prefixes are skipped."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for p in var.exclude_prefixes : !strcontains(p, ",")])
    error_message = "exclude_prefixes must not contain commas."
  }
}

variable "fetch_mode" {
  description = "CLIPSEARCH_FETCH_MODE: clip (cut only the matching seconds), copy (whole videos) or none (references only)."
  type        = string
  default     = "clip"
  validation {
    condition     = contains(["clip", "copy", "none"], var.fetch_mode)
    error_message = "fetch_mode must be clip, copy or none."
  }
}

variable "clip_fallback" {
  description = "CLIPSEARCH_CLIP_FALLBACK: what a hit becomes when no clip can be cut: copy or none."
  type        = string
  default     = "copy"
  validation {
    condition     = contains(["copy", "none"], var.clip_fallback)
    error_message = "clip_fallback must be copy or none."
  }
}

variable "clip_exact" {
  description = "CLIPSEARCH_CLIP_EXACT: trim clips to the exact start with an edit list (some players ignore it) instead of starting on the keyframe before."
  type        = bool
  default     = false
}

variable "max_clip_s" {
  description = "CLIPSEARCH_MAX_CLIP_S: longest clip cut, in seconds; a longer hit falls back."
  type        = number
  default     = 300
  validation {
    condition     = var.max_clip_s > 0
    error_message = "max_clip_s must be positive."
  }
}

variable "max_index_bytes" {
  description = "CLIPSEARCH_MAX_INDEX_BYTES: largest MP4 index (moov) read to cut clips; larger sources fall back. About 0.45 MB per 10 minutes of video."
  type        = number
  default     = 67108864
  validation {
    condition     = var.max_index_bytes >= 1024
    error_message = "max_index_bytes must be at least 1024."
  }
}

variable "index_cache_bytes" {
  description = "CLIPSEARCH_INDEX_CACHE_BYTES: in-memory cache of parsed indexes per instance; keep well under the memory setting."
  type        = number
  default     = 268435456
  validation {
    condition     = var.index_cache_bytes >= 0
    error_message = "index_cache_bytes must be >= 0."
  }
}

variable "fetch_source" {
  description = "CLIPSEARCH_FETCH_SOURCE: auto, gcs or api: where fetched bytes come from."
  type        = string
  default     = "auto"
  validation {
    condition     = contains(["auto", "gcs", "api"], var.fetch_source)
    error_message = "fetch_source must be auto, gcs or api."
  }
}

variable "source_buckets" {
  description = "CLIPSEARCH_SOURCE_BUCKETS: allowlist of vendor buckets the function may copy from. Read-only to us: their owner grants our runtime service account read access (output runtime_service_account)."
  type        = list(string)
  default     = ["mavi-resource"]
  validation {
    condition     = alltrue([for b in var.source_buckets : can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", b))])
    error_message = "source_buckets must be bucket names."
  }
}

variable "connect_timeout_s" {
  description = "CLIPSEARCH_CONNECT_TIMEOUT_S: API connect timeout, seconds."
  type        = number
  default     = 5
  validation {
    condition     = var.connect_timeout_s > 0
    error_message = "connect_timeout_s must be > 0."
  }
}

variable "read_timeout_s" {
  description = "CLIPSEARCH_READ_TIMEOUT_S: API read timeout, seconds."
  type        = number
  default     = 60
  validation {
    condition     = var.read_timeout_s > 0
    error_message = "read_timeout_s must be > 0."
  }
}

variable "retry_attempts" {
  description = "CLIPSEARCH_RETRY_ATTEMPTS: in-process attempts per API call."
  type        = number
  default     = 4
  validation {
    condition     = var.retry_attempts >= 1 && floor(var.retry_attempts) == var.retry_attempts
    error_message = "retry_attempts must be a whole number >= 1."
  }
}

variable "retry_budget_s" {
  description = "CLIPSEARCH_RETRY_BUDGET_S: total seconds one API call may spend retrying."
  type        = number
  default     = 60
  validation {
    condition     = var.retry_budget_s >= 0
    error_message = "retry_budget_s must be >= 0."
  }
}

variable "max_image_bytes" {
  description = "CLIPSEARCH_MAX_IMAGE_BYTES: query image size cap (the API's limit is 20 MB)."
  type        = number
  default     = 20971520
  validation {
    condition     = var.max_image_bytes >= 1 && var.max_image_bytes <= 20971520
    error_message = "max_image_bytes must be between 1 and 20971520."
  }
}

variable "max_metadata_chars" {
  description = "CLIPSEARCH_MAX_METADATA_CHARS: cap on each query metadata value's length."
  type        = number
  default     = 2000
  validation {
    condition     = var.max_metadata_chars >= 1
    error_message = "max_metadata_chars must be >= 1."
  }
}

variable "log_level" {
  description = "CLIPSEARCH_LOG_LEVEL: Python log level name."
  type        = string
  default     = "INFO"
  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING, ERROR or CRITICAL."
  }
}

# ---- Example consumer ---------------------------------------------------------------------

variable "create_example_subscription" {
  description = "Create a pull subscription on the results topic with a dead-letter topic and retry policy, as a model for consumers."
  type        = bool
  default     = true
}

variable "example_max_delivery_attempts" {
  description = "Deliveries before a message moves to the dead-letter topic."
  type        = number
  default     = 5
  validation {
    condition     = var.example_max_delivery_attempts >= 5 && var.example_max_delivery_attempts <= 100
    error_message = "example_max_delivery_attempts must be between 5 and 100 (Pub/Sub's limits)."
  }
}

variable "download_rate_per_min" {
  description = "CLIPSEARCH_DOWNLOAD_RATE_PER_MIN: the account-wide download rate limit (every ranged read counts), split over max_instances like the search rate."
  type        = number
  default     = 12
  validation {
    condition     = var.download_rate_per_min > 0
    error_message = "download_rate_per_min must be > 0."
  }
}

variable "metadata_rate_per_s" {
  description = "CLIPSEARCH_METADATA_RATE_PER_S: the account-wide status look-up (get_metadata) rate limit, split over max_instances like the search rate."
  type        = number
  default     = 1
  validation {
    condition     = var.metadata_rate_per_s > 0
    error_message = "metadata_rate_per_s must be > 0."
  }
}

variable "max_event_age_s" {
  description = "CLIPSEARCH_MAX_EVENT_AGE_S: an upload older than this (seconds) ends in the error outcome event_too_old instead of being retried again."
  type        = number
  default     = 3600
  validation {
    condition     = var.max_event_age_s >= 60
    error_message = "max_event_age_s must be at least 60."
  }
}

variable "max_attempts" {
  description = "CLIPSEARCH_MAX_ATTEMPTS: deliveries of one event before an unplanned error ends the query as internal_error (instead of another redelivery)."
  type        = number
  default     = 3
  validation {
    condition     = var.max_attempts >= 1 && floor(var.max_attempts) == var.max_attempts
    error_message = "max_attempts must be a whole number >= 1."
  }
}

variable "unindexed_window_s" {
  description = "CLIPSEARCH_UNINDEXED_WINDOW_S: how long (seconds since upload) a query on a video that is still being indexed is retried before it ends in video_not_indexed."
  type        = number
  default     = 1800
  validation {
    condition     = var.unindexed_window_s >= 0
    error_message = "unindexed_window_s must be >= 0."
  }
}

variable "max_fetch_bytes" {
  description = "CLIPSEARCH_MAX_FETCH_BYTES: cap on bytes fetched for one query (whole-video copies over it are refused per clip)."
  type        = number
  default     = 10737418240
  validation {
    condition     = var.max_fetch_bytes >= 1
    error_message = "max_fetch_bytes must be positive."
  }
}

variable "ranged_above_bytes" {
  description = "CLIPSEARCH_RANGED_ABOVE_BYTES: on the API path, a source larger than this (when the download endpoint honours Range) is read by ranged vendor requests instead of being copied whole into the results bucket once."
  type        = number
  default     = 4294967296
  validation {
    condition     = var.ranged_above_bytes >= 0
    error_message = "ranged_above_bytes must be >= 0."
  }
}

variable "source_recheck_s" {
  description = "CLIPSEARCH_SOURCE_RECHECK_S: on the API path, a source's copy is rechecked with the vendor (one download request for its first byte) at most this often; a changed source is copied again."
  type        = number
  default     = 3600
  validation {
    condition     = var.source_recheck_s >= 0
    error_message = "source_recheck_s must be >= 0."
  }
}

# ---- Monitoring (monitoring.tf, docs/operations.md) -----------------------------------------

variable "notification_emails" {
  description = "Email addresses that get every alert (one email notification channel each)."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for e in var.notification_emails : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", e))])
    error_message = "notification_emails must be email addresses."
  }
}

variable "notification_channels" {
  description = "Existing notification channel ids (projects/P/notificationChannels/N: Slack, PagerDuty, SMS, ...) that get every alert, in addition to notification_emails."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for c in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[0-9]+$", c))])
    error_message = "notification_channels must be ids like projects/P/notificationChannels/123."
  }
}

variable "disabled_alerts" {
  description = "Alert policies not to create: any of operator_alert, error_ratio, retry_storm, event_time_near_timeout, instances_at_max, oldest_unacked_event, dead_letter_backlog, search_unconfirmed, search_credit_budget."
  type        = list(string)
  default     = []
  validation {
    condition = alltrue([for a in var.disabled_alerts : contains([
      "operator_alert", "error_ratio", "retry_storm", "event_time_near_timeout", "instances_at_max",
      "oldest_unacked_event", "dead_letter_backlog", "search_unconfirmed", "search_credit_budget",
    ], a)])
    error_message = "disabled_alerts names an unknown alert policy (see the variable's description)."
  }
}

variable "error_ratio_threshold" {
  description = "Alert error_ratio fires when error outcomes exceed this fraction of all outcomes over 15 minutes."
  type        = number
  default     = 0.25
  validation {
    condition     = var.error_ratio_threshold > 0 && var.error_ratio_threshold < 1
    error_message = "error_ratio_threshold must be between 0 and 1."
  }
}

variable "retry_storm_per_5min" {
  description = "Alert retry_storm fires when the function answers more than this many 5xx (redeliveries to come) per 5 minutes, for 10 minutes."
  type        = number
  default     = 30
  validation {
    condition     = var.retry_storm_per_5min >= 1
    error_message = "retry_storm_per_5min must be >= 1."
  }
}

variable "timeout_alert_fraction" {
  description = "Alert event_time_near_timeout fires when the p95 event time exceeds this fraction of timeout_seconds."
  type        = number
  default     = 0.8
  validation {
    condition     = var.timeout_alert_fraction > 0 && var.timeout_alert_fraction < 1
    error_message = "timeout_alert_fraction must be between 0 and 1."
  }
}

variable "oldest_unacked_event_s" {
  description = "Alert oldest_unacked_event fires when an upload event has waited longer than this (seconds) on the trigger's subscription."
  type        = number
  default     = 900
  validation {
    condition     = var.oldest_unacked_event_s >= 60
    error_message = "oldest_unacked_event_s must be at least 60."
  }
}

variable "daily_search_budget" {
  description = "Searches (vendor credits) the account may spend per 24 h; 0 turns the search_credit_budget alert off."
  type        = number
  default     = 0
  validation {
    condition     = var.daily_search_budget >= 0
    error_message = "daily_search_budget must be >= 0."
  }
}

variable "search_budget_warn_fraction" {
  description = "Alert search_credit_budget fires when searches sent in 24 h exceed this fraction of daily_search_budget."
  type        = number
  default     = 0.8
  validation {
    condition     = var.search_budget_warn_fraction > 0 && var.search_budget_warn_fraction <= 1
    error_message = "search_budget_warn_fraction must be in (0, 1]."
  }
}

# ---- Budget (budget.tf) -------------------------------------------------------------------

variable "billing_account" {
  description = "Billing account id (XXXXXX-XXXXXX-XXXXXX) for a GCP budget on this project; empty creates no budget."
  type        = string
  default     = ""
  validation {
    condition     = var.billing_account == "" || can(regex("^[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}$", var.billing_account))
    error_message = "billing_account must be empty or an id like 012345-6789AB-CDEF01."
  }
}

variable "monthly_budget" {
  description = "Monthly GCP spend budget for this project, in the billing account's currency (whole units)."
  type        = number
  default     = 100
  validation {
    condition     = var.monthly_budget >= 1 && floor(var.monthly_budget) == var.monthly_budget
    error_message = "monthly_budget must be a whole number >= 1."
  }
}

# ---- Deploy pipeline (cloudbuild_triggers.tf, docs/deploy.md) --------------------------------

variable "build_repository" {
  description = "Cloud Build 2nd-gen repository (projects/P/locations/L/connections/C/repositories/R) to create the plan and apply triggers for; empty creates no triggers."
  type        = string
  default     = ""
  validation {
    condition     = var.build_repository == "" || can(regex("^projects/[^/]+/locations/[^/]+/connections/[^/]+/repositories/[^/]+$", var.build_repository))
    error_message = "build_repository must be empty or projects/P/locations/L/connections/C/repositories/R."
  }
}

variable "tf_state_bucket" {
  description = "The Terraform state bucket (created once, docs/deploy.md): the plan identity may read it, the deployer may write it."
  type        = string
  default     = ""
  validation {
    condition     = var.build_repository == "" || var.tf_state_bucket != ""
    error_message = "tf_state_bucket is required when build_repository is set."
  }
}

variable "deployer_service_account" {
  description = "Email of the deployer identity (created once by an owner, docs/deploy.md) that the apply trigger runs as."
  type        = string
  default     = ""
  validation {
    condition     = var.build_repository == "" || can(regex("^[^@]+@[^@]+\\.iam\\.gserviceaccount\\.com$", var.deployer_service_account))
    error_message = "deployer_service_account (a service account email) is required when build_repository is set."
  }
}

variable "builder_images" {
  description = "Cloud Build step images pinned by digest (NAME:TAG@sha256:...): python, cloud_sdk (emulators tag), terraform. docs/deploy.md says how to read a digest."
  type = object({
    python    = string
    cloud_sdk = string
    terraform = string
  })
  default = null
  validation {
    condition     = var.builder_images == null ? true : alltrue([for i in values(var.builder_images) : can(regex("^[^@\\s]+@sha256:[0-9a-f]{64}$", i))])
    error_message = "builder_images must each be pinned by digest: NAME:TAG@sha256:<64 hex>."
  }
  validation {
    condition     = var.build_repository == "" || var.builder_images != null
    error_message = "builder_images (pinned by digest) are required when build_repository is set."
  }
}
