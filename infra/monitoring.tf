# Operations as code: log-based metrics read the function's structured log lines (the field
# contract is clipsearch/logs.py METRIC_FIELDS), alert policies page on them, and one dashboard
# shows them. Runbooks: docs/operations.md (each policy's documentation repeats its section).

locals {
  # Where the function's stdout lines land: a gen2 function is a Cloud Run service of the same
  # name, and each JSON line becomes a LogEntry whose jsonPayload is the line (minus severity,
  # message and trace, which Cloud Logging lifts out).
  function_resource = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.names.function}\""

  # Alerts go to the email channels created here plus any channel ids given (Slack, PagerDuty...).
  notification_channels = concat(
    [for c in google_monitoring_notification_channel.email : c.id],
    var.notification_channels,
  )

  alert_enabled = { for name in local.alert_names : name => !contains(var.disabled_alerts, name) }

  runbook = "docs/operations.md in the clipsearch repository"
}

# ---- Log-based metrics ------------------------------------------------------------------

# Every outcome, labelled by status and reason: error ratio, outcomes by reason, and (with
# reason="search_unconfirmed") money at risk. EXTRACT keeps each reason code as its own value.
resource "google_logging_metric" "outcomes" {
  name        = "${var.name_prefix}/outcomes"
  description = "clipsearch outcomes (one per query), by status and error reason."
  filter      = "${local.function_resource} AND jsonPayload.event=\"outcome\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "clipsearch outcomes"
    labels {
      key         = "status"
      value_type  = "STRING"
      description = "success or error"
    }
    labels {
      key         = "reason"
      value_type  = "STRING"
      description = "the error reason code (docs/reasons.md); empty on success"
    }
  }

  label_extractors = {
    status = "EXTRACT(jsonPayload.status)"
    reason = "EXTRACT(jsonPayload.reason)"
  }

  depends_on = [google_project_service.this]
}

# One line right before each search request is sent: what the vendor bills.
resource "google_logging_metric" "searches_sent" {
  name        = "${var.name_prefix}/searches_sent"
  description = "Search requests sent to the vendor (billed calls)."
  filter      = "${local.function_resource} AND jsonPayload.event=\"search_sent\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "clipsearch searches sent"
  }

  depends_on = [google_project_service.this]
}

# A search that may have run (and been billed) but whose answer was lost: money at risk.
resource "google_logging_metric" "search_unconfirmed" {
  name        = "${var.name_prefix}/search_unconfirmed"
  description = "Outcomes with reason search_unconfirmed: a search that may have been billed without an answer."
  filter      = "${local.function_resource} AND jsonPayload.event=\"outcome\" AND jsonPayload.reason=\"search_unconfirmed\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "clipsearch searches unconfirmed"
  }

  depends_on = [google_project_service.this]
}

resource "google_logging_metric" "duplicates" {
  name        = "${var.name_prefix}/duplicates"
  description = "Duplicate deliveries acknowledged without work (the outcome was published already)."
  filter      = "${local.function_resource} AND jsonPayload.event=\"duplicate\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "clipsearch duplicate deliveries"
  }

  depends_on = [google_project_service.this]
}

# Transient failures raised back to the trigger: each one is a redelivery to come.
resource "google_logging_metric" "retries" {
  name        = "${var.name_prefix}/retries"
  description = "Transient failures raised to the trigger for redelivery."
  filter      = "${local.function_resource} AND jsonPayload.event=\"retry\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "clipsearch retries"
  }

  depends_on = [google_project_service.this]
}

# Pacing waits by the rate limiter (their count, and how long: the account's rate is the cap).
resource "google_logging_metric" "rate_wait_s" {
  name            = "${var.name_prefix}/rate_wait_s"
  description     = "Seconds each rate-limiter pacing wait lasted."
  filter          = "${local.function_resource} AND jsonPayload.event=\"rate_wait\""
  value_extractor = "EXTRACT(jsonPayload.wait_s)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "s"
    display_name = "clipsearch rate-limit waits"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 16
      growth_factor      = 2
      scale              = 0.01
    }
  }

  depends_on = [google_project_service.this]
}

# Hits that were not cut into a clip, by why (unsupported_container, clip_too_long, ...).
resource "google_logging_metric" "clip_fallbacks" {
  name        = "${var.name_prefix}/clip_fallbacks"
  description = "Clip-mode hits that fell back (copy or reference), by fallback_reason."
  filter      = "${local.function_resource} AND jsonPayload.event=\"clip\" AND jsonPayload.fallback_reason:*"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "clipsearch clip fallbacks"
    labels {
      key         = "fallback_reason"
      value_type  = "STRING"
      description = "why no clip was cut"
    }
  }

  label_extractors = {
    fallback_reason = "EXTRACT(jsonPayload.fallback_reason)"
  }

  depends_on = [google_project_service.this]
}

# Clips cut, by how the engine indexed the source: "tables" (the synthetic index of the clip's
# samples), "moov" (FFmpeg parsed the whole moov: fragmented and other layouts the tables do
# not reproduce) or "tables+moov" (the tables missed and the cut was done again the old way).
resource "google_logging_metric" "clips_by_index" {
  name        = "${var.name_prefix}/clips_by_index"
  description = "Clips cut, by index_path (tables, moov, tables+moov)."
  filter      = "${local.function_resource} AND jsonPayload.event=\"clip\" AND jsonPayload.index_path:*"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "clipsearch clips by index path"
    labels {
      key         = "index_path"
      value_type  = "STRING"
      description = "how the source was indexed for the cut"
    }
  }

  label_extractors = {
    index_path = "EXTRACT(jsonPayload.index_path)"
  }

  depends_on = [google_project_service.this]
}

# Per-clip distributions: bytes read from the source, ranged requests made, bytes stored.
resource "google_logging_metric" "clip" {
  for_each = {
    bytes_read = { unit = "By", scale = 1024, what = "Source bytes read to cut one clip." }
    requests   = { unit = "1", scale = 1, what = "Ranged read requests made to cut one clip." }
    clip_bytes = { unit = "By", scale = 1024, what = "Bytes of one stored clip." }
  }

  name            = "${var.name_prefix}/clip_${each.key}"
  description     = each.value.what
  filter          = "${local.function_resource} AND jsonPayload.event=\"clip\" AND jsonPayload.${each.key}:*"
  value_extractor = "EXTRACT(jsonPayload.${each.key})"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = each.value.unit
    display_name = "clipsearch clip ${each.key}"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 24
      growth_factor      = 2
      scale              = each.value.scale
    }
  }

  depends_on = [google_project_service.this]
}

# Stage latencies of each outcome (timings_ms.read/search/fetch/total, in milliseconds).
resource "google_logging_metric" "latency" {
  for_each = toset(["read", "search", "fetch", "total"])

  name            = "${var.name_prefix}/latency_${each.key}"
  description     = "Milliseconds the ${each.key} stage of a query took (from the outcome line)."
  filter          = "${local.function_resource} AND jsonPayload.event=\"outcome\""
  value_extractor = "EXTRACT(jsonPayload.timings_ms.${each.key})"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "ms"
    display_name = "clipsearch latency ${each.key}"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 20
      growth_factor      = 2
      scale              = 10
    }
  }

  depends_on = [google_project_service.this]
}

# The vendor's download endpoint: its requests are the scarce resource (the account's
# download_rate_per_min), its bytes are billed per GB. One download_request line per request
# (a whole-source copy, a resume, a recheck, a ranged read); each outcome line carries the
# bytes its query downloaded (0 in the steady state: clips are cut from our copy).
resource "google_logging_metric" "vendor_download_requests" {
  name        = "${var.name_prefix}/vendor_download_requests"
  description = "Requests to the vendor's download endpoint (counted against the account's download rate)."
  filter      = "${local.function_resource} AND jsonPayload.event=\"download_request\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "clipsearch vendor download requests"
  }

  depends_on = [google_project_service.this]
}

resource "google_logging_metric" "vendor_bytes" {
  name            = "${var.name_prefix}/vendor_bytes"
  description     = "Bytes each query downloaded from the vendor (billed per GB), from the outcome line."
  filter          = "${local.function_resource} AND jsonPayload.event=\"outcome\""
  value_extractor = "EXTRACT(jsonPayload.vendor_bytes)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "By"
    display_name = "clipsearch vendor bytes per query"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 32
      growth_factor      = 2
      scale              = 1024
    }
  }

  depends_on = [google_project_service.this]
}

# ---- Notification channels ----------------------------------------------------------------

resource "google_monitoring_notification_channel" "email" {
  for_each = toset(var.notification_emails)

  display_name = "clipsearch ${var.name_prefix}: ${each.value}"
  type         = "email"
  labels = {
    email_address = each.value
  }

  depends_on = [google_project_service.this]
}

# ---- Alert policies -----------------------------------------------------------------------
# Each can be turned off by listing its name in var.disabled_alerts.

locals {
  alert_names = [
    "operator_alert",
    "error_ratio",
    "retry_storm",
    "event_time_near_timeout",
    "instances_at_max",
    "oldest_unacked_event",
    "dead_letter_backlog",
    "search_unconfirmed",
    "search_credit_budget",
  ]
}

# PAGE: the key is refused (0401), the credits are spent (0402) or the account is disabled
# (0403). The function logs every such outcome at severity ALERT; nothing retries them away.
resource "google_monitoring_alert_policy" "operator_alert" {
  count = local.alert_enabled["operator_alert"] ? 1 : 0

  display_name          = "clipsearch ${var.name_prefix}: operator action needed (ALERT log line)"
  combiner              = "OR"
  severity              = "CRITICAL"
  notification_channels = local.notification_channels

  conditions {
    display_name = "an ALERT-severity line from the function"
    condition_matched_log {
      filter = "${local.function_resource} AND severity>=ALERT"
      label_extractors = {
        reason = "EXTRACT(jsonPayload.reason)"
      }
    }
  }

  alert_strategy {
    notification_rate_limit {
      period = "300s"
    }
    auto_close = "3600s"
  }

  documentation {
    subject   = "clipsearch: operator action needed (${var.name_prefix})"
    mime_type = "text/markdown"
    content   = <<-EOT
      Every query now ends in an error outcome until you act: the search API refused the key
      (`api_unauthorized`, 0401), the credits are spent (`api_insufficient_credits`, 0402) or
      the account is disabled (`api_account_disabled`, 0403). The label `reason` says which.

      1. `clipsearch status --since 1h` shows how many queries failed and why.
      2. 0401: add a new key version: `terraform output -raw add_api_key_command`; new
         instances read `latest`. 0402: buy credits in the vendor console. 0403: call the vendor.
      3. Re-submit the failed queries (`clipsearch backfill`) once the cause is fixed.

      Runbook: ${local.runbook}, section "operator_alert".
      EOT
  }

  depends_on = [google_project_service.this]
}

resource "google_monitoring_alert_policy" "error_ratio" {
  count = local.alert_enabled["error_ratio"] ? 1 : 0

  display_name          = "clipsearch ${var.name_prefix}: error outcomes over ${var.error_ratio_threshold * 100}%"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.notification_channels

  conditions {
    display_name = "error outcomes / all outcomes over 15 minutes"
    condition_threshold {
      filter             = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.outcomes.name}\" AND resource.type=\"cloud_run_revision\" AND metric.labels.status=\"error\""
      denominator_filter = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.outcomes.name}\" AND resource.type=\"cloud_run_revision\""
      comparison         = "COMPARISON_GT"
      threshold_value    = var.error_ratio_threshold
      duration           = "0s"
      aggregations {
        alignment_period     = "900s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
      denominator_aggregations {
        alignment_period     = "900s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    subject   = "clipsearch: many error outcomes (${var.name_prefix})"
    mime_type = "text/markdown"
    content   = <<-EOT
      More than ${var.error_ratio_threshold * 100}% of the outcomes of the last 15 minutes were errors.

      1. `clipsearch status --since 1h` (or the dashboard's "Outcomes by reason") shows which reason.
      2. Input reasons (`missing_video_no`, `not_an_image`, ...) mean an uploader is sending bad
         queries: tell them (docs/reasons.md says what each requires).
      3. `video_not_found` / `video_not_indexed`: the videos are not in the account's index yet.
      4. `api_*` refusals other than the ALERT ones, or `internal_error`: read the lines with
         `jsonPayload.event="outcome" severity>=WARNING` in Logs Explorer.

      Runbook: ${local.runbook}, section "error_ratio".
      EOT
  }
}

# Transient failures raise out of the function; the platform answers 5xx and Eventarc
# redelivers. A sustained rate is a retry storm (vendor down, rate limited, a poison event).
resource "google_monitoring_alert_policy" "retry_storm" {
  count = local.alert_enabled["retry_storm"] ? 1 : 0

  display_name          = "clipsearch ${var.name_prefix}: redeliveries (HTTP 5xx) over ${var.retry_storm_per_5min} per 5 min"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.notification_channels

  conditions {
    display_name = "function 5xx responses per 5 minutes, sustained 10 minutes"
    condition_threshold {
      filter          = "metric.type=\"run.googleapis.com/request_count\" AND ${local.function_resource} AND metric.labels.response_code_class=\"5xx\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.retry_storm_per_5min
      duration        = "600s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    subject   = "clipsearch: retry storm (${var.name_prefix})"
    mime_type = "text/markdown"
    content   = <<-EOT
      The function keeps failing transiently: every 5xx is an event Eventarc will deliver again.

      1. Logs Explorer: `jsonPayload.event="retry"` gives the reason text of each retry.
      2. Vendor 429/5xx or timeouts: check the vendor's status; lower `max_instances` or
         `search_rate_per_s` if we are the ones being rate limited.
      3. The same `event_id` over and over is a poison event: it stops after
         `max_event_age_s` (outcome `event_too_old`); fix the cause or wait it out.
      4. Publish or storage errors: check the Pub/Sub and Cloud Storage status pages.

      Runbook: ${local.runbook}, section "retry_storm".
      EOT
  }
}

resource "google_monitoring_alert_policy" "event_time_near_timeout" {
  count = local.alert_enabled["event_time_near_timeout"] ? 1 : 0

  display_name          = "clipsearch ${var.name_prefix}: p95 event time near the ${var.timeout_seconds}s timeout"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.notification_channels

  conditions {
    display_name = "p95 request latency over ${var.timeout_alert_fraction * 100}% of timeout_seconds"
    condition_threshold {
      filter          = "metric.type=\"run.googleapis.com/request_latencies\" AND ${local.function_resource}"
      comparison      = "COMPARISON_GT"
      threshold_value = var.timeout_seconds * 1000 * var.timeout_alert_fraction
      duration        = "0s"
      aggregations {
        alignment_period     = "900s"
        per_series_aligner   = "ALIGN_PERCENTILE_95"
        cross_series_reducer = "REDUCE_MAX"
      }
    }
  }

  documentation {
    subject   = "clipsearch: events close to the timeout (${var.name_prefix})"
    mime_type = "text/markdown"
    content   = <<-EOT
      The slowest 5% of events take more than ${var.timeout_alert_fraction * 100}% of the function's
      ${var.timeout_seconds}s timeout. Past it the platform kills the event and redelivers it.

      1. Dashboard "Latency by stage": is it `search` (vendor slow, rate-limit waits) or `fetch`
         (large copies, slow ranged reads)?
      2. fetch: prefer `fetch_mode = "clip"`, lower `max_fetch_bytes` or `max_clip_s`.
      3. search: see "Rate-limit waits"; a full pacing queue means too many events per instance.

      Runbook: ${local.runbook}, section "event_time_near_timeout".
      EOT
  }
}

resource "google_monitoring_alert_policy" "instances_at_max" {
  count = local.alert_enabled["instances_at_max"] ? 1 : 0

  display_name          = "clipsearch ${var.name_prefix}: instances pinned at max_instances (${var.max_instances})"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.notification_channels

  conditions {
    display_name = "instance count at max_instances for 15 minutes"
    condition_threshold {
      filter          = "metric.type=\"run.googleapis.com/container/instance_count\" AND ${local.function_resource}"
      comparison      = "COMPARISON_GT"
      threshold_value = var.max_instances - 0.5
      duration        = "900s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_MAX"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    subject   = "clipsearch: at the instance cap (${var.name_prefix})"
    mime_type = "text/markdown"
    content   = <<-EOT
      Every allowed instance has been busy for 15 minutes: events queue on the trigger's
      subscription (see "oldest unacknowledged event") instead of starting.

      1. A burst of uploads: it drains by itself; watch the backlog on the dashboard.
      2. Sustained: the account's search rate (`search_rate_per_s`) is the real limit; more
         instances only help if the vendor grants a higher rate. Raise `max_instances` and
         `search_rate_per_s` together (they are one budget: docs/deploy.md "Sizing").

      Runbook: ${local.runbook}, section "instances_at_max".
      EOT
  }
}

# The storage trigger's Eventarc subscription is named eventarc-REGION-TRIGGER-sub-NNN, and a
# gen2 function's trigger is named after the function.
resource "google_monitoring_alert_policy" "oldest_unacked_event" {
  count = local.alert_enabled["oldest_unacked_event"] ? 1 : 0

  display_name          = "clipsearch ${var.name_prefix}: oldest undelivered upload event over ${var.oldest_unacked_event_s}s"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.notification_channels

  conditions {
    display_name = "oldest unacknowledged message on the trigger's subscription"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/oldest_unacked_message_age\" AND resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=monitoring.regex.full_match(\"eventarc-${var.region}-${local.names.function}-.*\")"
      comparison      = "COMPARISON_GT"
      threshold_value = var.oldest_unacked_event_s
      duration        = "300s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_MAX"
        cross_series_reducer = "REDUCE_MAX"
      }
    }
  }

  documentation {
    subject   = "clipsearch: uploads waiting (${var.name_prefix})"
    mime_type = "text/markdown"
    content   = <<-EOT
      An upload's event has waited more than ${var.oldest_unacked_event_s}s to be handled. Either
      events are failing and being redelivered (see "retry_storm"), or instances are all busy
      (see "instances_at_max"). Events older than `max_event_age_s` end in `event_too_old`.

      1. Dashboard "Trigger backlog" and "Instances".
      2. `gcloud eventarc triggers list --location=${var.region}` names the subscription.

      Runbook: ${local.runbook}, section "oldest_unacked_event".
      EOT
  }
}

resource "google_monitoring_alert_policy" "dead_letter_backlog" {
  count = var.create_example_subscription && local.alert_enabled["dead_letter_backlog"] ? 1 : 0

  display_name          = "clipsearch ${var.name_prefix}: outcomes dead-lettered by the example consumer"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.notification_channels

  conditions {
    display_name = "messages waiting on the dead-letter subscription"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${local.names.dead_letter_sub}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_MAX"
        cross_series_reducer = "REDUCE_MAX"
      }
    }
  }

  documentation {
    subject   = "clipsearch: dead-lettered outcomes (${var.name_prefix})"
    mime_type = "text/markdown"
    content   = <<-EOT
      A consumer of `${local.names.example_sub}` failed an outcome message
      ${var.example_max_delivery_attempts} times; it now waits on `${local.names.dead_letter_sub}`
      (kept 7 days).

      1. `gcloud pubsub subscriptions pull ${local.names.dead_letter_sub} --limit=5` (no ack)
         shows the messages; the same outcome is stored at each message's `result_uri`.
      2. Fix the consumer, then replay: `gcloud pubsub subscriptions seek` or re-publish.

      Runbook: ${local.runbook}, section "dead_letter_backlog".
      EOT
  }
}

resource "google_monitoring_alert_policy" "search_unconfirmed" {
  count = local.alert_enabled["search_unconfirmed"] ? 1 : 0

  display_name          = "clipsearch ${var.name_prefix}: searches billed without an answer (search_unconfirmed)"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.notification_channels

  conditions {
    display_name = "search_unconfirmed outcomes > 0"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.search_unconfirmed.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    subject   = "clipsearch: search_unconfirmed (${var.name_prefix})"
    mime_type = "text/markdown"
    content   = <<-EOT
      A search was sent and may have run (and been billed), but its answer never arrived, so the
      function did not search again (that could bill twice): the query ended in
      `search_unconfirmed`. Money may have been spent for nothing.

      1. `clipsearch status --since 1h --json` lists the count; Logs Explorer with
         `jsonPayload.reason="search_unconfirmed"` gives each query and its trace.
      2. Many at once: the vendor or the network is dropping answers (timeouts): check
         `read_timeout_s` against the search latency on the dashboard.
      3. Re-submit the affected queries deliberately if their answer is still wanted.

      Runbook: ${local.runbook}, section "search_unconfirmed".
      EOT
  }
}

# Warns before the vendor answers 0402: searches sent over the last 24 h against a budget.
resource "google_monitoring_alert_policy" "search_credit_budget" {
  count = var.daily_search_budget > 0 && local.alert_enabled["search_credit_budget"] ? 1 : 0

  display_name          = "clipsearch ${var.name_prefix}: searches over ${var.search_budget_warn_fraction * 100}% of the daily credit budget"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.notification_channels

  conditions {
    display_name = "searches sent in the last 24 h"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.searches_sent.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.daily_search_budget * var.search_budget_warn_fraction
      duration        = "0s"
      aggregations {
        alignment_period     = "86400s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    subject   = "clipsearch: search credits running out (${var.name_prefix})"
    mime_type = "text/markdown"
    content   = <<-EOT
      More than ${var.search_budget_warn_fraction * 100}% of the daily budget of
      ${var.daily_search_budget} searches was sent in the last 24 hours. When the account's
      credits run out every query ends in `api_insufficient_credits` (0402, the ALERT page).

      1. Dashboard "Searches sent": a burst (backfill?) or a steady rise?
      2. Check the balance in the vendor console; top up, or pause uploaders.
      3. A search whose answer arrived is never sent again, but one refused with 429 is, after
         a wait: a retry storm can add searches (see the "Retries" chart).

      Runbook: ${local.runbook}, section "search_credit_budget".
      EOT
  }
}

# ---- Dashboard ------------------------------------------------------------------------------

resource "google_monitoring_dashboard" "clipsearch" {
  dashboard_json = templatefile("${path.module}/dashboards/clipsearch.json", {
    title               = "clipsearch ${var.name_prefix}"
    metrics             = "logging.googleapis.com/user/${var.name_prefix}"
    service             = local.names.function
    region              = var.region
    dead_letter_sub     = local.names.dead_letter_sub
    search_rate_per_min = var.search_rate_per_s * 60
    download_rate_limit = var.download_rate_per_min
    max_instances       = var.max_instances
    timeout_ms          = var.timeout_seconds * 1000
  })

  depends_on = [
    google_logging_metric.outcomes,
    google_logging_metric.searches_sent,
    google_logging_metric.search_unconfirmed,
    google_logging_metric.duplicates,
    google_logging_metric.retries,
    google_logging_metric.rate_wait_s,
    google_logging_metric.clip_fallbacks,
    google_logging_metric.clip,
    google_logging_metric.latency,
    google_logging_metric.vendor_download_requests,
    google_logging_metric.vendor_bytes,
  ]
}
