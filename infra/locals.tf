locals {
  # Every resource name derives from the prefix: no random suffixes, so names are predictable
  # and a second deployment in the same project just uses another prefix.
  names = {
    query_bucket      = "${var.name_prefix}-queries"
    results_bucket    = "${var.name_prefix}-results"
    source_bucket     = "${var.name_prefix}-fn-source"
    results_topic     = "${var.name_prefix}-results"
    errors_topic      = "${var.name_prefix}-errors"
    dead_letter_topic = "${var.name_prefix}-results-dead-letter"
    example_sub       = "${var.name_prefix}-results-example"
    dead_letter_sub   = "${var.name_prefix}-results-dead-letter"
    schema            = "${var.name_prefix}-clip-result"
    secret            = "${var.name_prefix}-api-key"
    function          = "${var.name_prefix}-on-query"
    runtime_sa_id     = "${var.name_prefix}-run"
    trigger_sa_id     = "${var.name_prefix}-trigger"
  }

  # Where the function keeps its per-query result records (the idempotency records) and the
  # fetched videos: both under the outputs prefix of the results bucket (core/naming.py).
  results_records_prefix = "${var.results_prefix}results/"
  idempotency_prefix     = "${var.results_prefix}records/"
  videos_prefix          = "${var.results_prefix}videos/"
  clips_prefix           = "${var.results_prefix}clips/"
  index_prefix           = "${var.results_prefix}index/" # MP4 index sidecars (core/naming.py)

  # The function's settings (clipsearch/settings.py, SETTINGS): every one but the API key is a
  # plain environment variable; the key is a Secret Manager secret env var (function.tf).
  function_env = {
    CLIPSEARCH_API_BASE_URL       = var.api_base_url
    CLIPSEARCH_DOWNLOAD_BASE_URL  = var.download_base_url
    CLIPSEARCH_RESULTS_BUCKET     = google_storage_bucket.results.name
    CLIPSEARCH_RESULTS_PREFIX     = var.results_prefix
    CLIPSEARCH_QUERY_BUCKET       = google_storage_bucket.query.name
    CLIPSEARCH_INCLUDE_PREFIXES   = join(",", var.include_prefixes)
    CLIPSEARCH_EXCLUDE_PREFIXES   = join(",", var.exclude_prefixes)
    CLIPSEARCH_RESULTS_TOPIC      = google_pubsub_topic.results.id
    CLIPSEARCH_ERRORS_TOPIC       = google_pubsub_topic.errors.id
    CLIPSEARCH_FETCH_MODE         = var.fetch_mode
    CLIPSEARCH_CLIP_FALLBACK      = var.clip_fallback
    CLIPSEARCH_CLIP_EXACT         = tostring(var.clip_exact)
    CLIPSEARCH_MAX_CLIP_S         = tostring(var.max_clip_s)
    CLIPSEARCH_MAX_INDEX_BYTES    = tostring(var.max_index_bytes)
    CLIPSEARCH_INDEX_CACHE_BYTES  = tostring(var.index_cache_bytes)
    CLIPSEARCH_FETCH_SOURCE       = var.fetch_source
    CLIPSEARCH_SOURCE_BUCKETS     = join(",", var.source_buckets)
    CLIPSEARCH_CONNECT_TIMEOUT_S  = tostring(var.connect_timeout_s)
    CLIPSEARCH_READ_TIMEOUT_S     = tostring(var.read_timeout_s)
    CLIPSEARCH_RETRY_ATTEMPTS     = tostring(var.retry_attempts)
    CLIPSEARCH_RETRY_BUDGET_S     = tostring(var.retry_budget_s)
    CLIPSEARCH_MAX_IMAGE_BYTES    = tostring(var.max_image_bytes)
    CLIPSEARCH_MAX_METADATA_CHARS = tostring(var.max_metadata_chars)
    CLIPSEARCH_LOG_LEVEL          = var.log_level
    # The rate limiter's inputs: the same variables size the function (function.tf), so the
    # account-wide budget is split over exactly the instances that can exist.
    CLIPSEARCH_SEARCH_RATE_PER_S     = tostring(var.search_rate_per_s)
    CLIPSEARCH_DOWNLOAD_RATE_PER_MIN = tostring(var.download_rate_per_min)
    CLIPSEARCH_METADATA_RATE_PER_S   = tostring(var.metadata_rate_per_s)
    CLIPSEARCH_MAX_INSTANCES         = tostring(var.max_instances)
    # The idempotency lease and the event deadline follow the platform's timeout.
    CLIPSEARCH_FUNCTION_TIMEOUT_S = tostring(var.timeout_seconds)
    CLIPSEARCH_MAX_EVENT_AGE_S    = tostring(var.max_event_age_s)
    CLIPSEARCH_MAX_ATTEMPTS       = tostring(var.max_attempts)
    CLIPSEARCH_UNINDEXED_WINDOW_S = tostring(var.unindexed_window_s)
    CLIPSEARCH_MAX_FETCH_BYTES    = tostring(var.max_fetch_bytes)
    CLIPSEARCH_RANGED_ABOVE_BYTES = tostring(var.ranged_above_bytes)
    CLIPSEARCH_SOURCE_RECHECK_S   = tostring(var.source_recheck_s)
  }
}
