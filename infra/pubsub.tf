# The result contract: one Avro schema (functions/clipsearch/clipsearch/schemas/clip_result.avsc), validated by Pub/Sub on every
# publish. JSON encoding means Avro's JSON encoding: non-null values of nullable fields are
# wrapped by branch ({"string": "..."}), see clipsearch/contract.py.
#
# Evolving it: a changed definition is committed as a new REVISION of this schema (the topics
# are not recreated). A revision only appends fields typed ["null", T] with default null, and
# is kept in tests/infra/schema_revisions/<N>.avsc (tests/infra/test_avro_contract.py checks
# both). The topics below set no first/last revision, so a message is accepted if it matches
# ANY revision: the running function keeps publishing while the next one rolls out, whichever
# of `terraform apply`'s two changes lands first. Revisions: 1 (initial), 2 (expires_at).
# A schema holds at most 20 revisions; delete old ones (gcloud pubsub schemas
# delete-revision) once no deployed function publishes them.
resource "google_pubsub_schema" "clip_result" {
  name       = local.names.schema
  type       = "AVRO"
  definition = file("${path.module}/../functions/clipsearch/clipsearch/schemas/clip_result.avsc")

  depends_on = [google_project_service.this]
}

resource "google_pubsub_topic" "results" {
  # checkov:skip=CKV_GCP_83:Google-managed encryption is enough for outcome messages (no secrets, no personal data); CMEK would add a KMS key to run for no gain here.
  name = local.names.results_topic

  schema_settings {
    schema   = google_pubsub_schema.clip_result.id
    encoding = "JSON"
  }

  message_retention_duration = "86400s" # lets a new consumer seek back one day

  depends_on = [google_pubsub_schema.clip_result]
}

# Error outcomes have the same shape, so the same schema guards them.
resource "google_pubsub_topic" "errors" {
  # checkov:skip=CKV_GCP_83:Google-managed encryption is enough for outcome messages (no secrets, no personal data); CMEK would add a KMS key to run for no gain here.
  name = local.names.errors_topic

  schema_settings {
    schema   = google_pubsub_schema.clip_result.id
    encoding = "JSON"
  }

  message_retention_duration = "86400s"

  depends_on = [google_pubsub_schema.clip_result]
}

# ---- An example consumer: pull, bounded retries with backoff, then a dead-letter topic ----

resource "google_pubsub_topic" "dead_letter" {
  # checkov:skip=CKV_GCP_83:Google-managed encryption is enough for outcome messages (no secrets, no personal data); CMEK would add a KMS key to run for no gain here.
  count = var.create_example_subscription ? 1 : 0

  name                       = local.names.dead_letter_topic
  message_retention_duration = "604800s"

  depends_on = [google_project_service.this]
}

resource "google_pubsub_subscription" "results_example" {
  count = var.create_example_subscription ? 1 : 0

  name                       = local.names.example_sub
  topic                      = google_pubsub_topic.results.id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[0].id
    max_delivery_attempts = var.example_max_delivery_attempts
  }

  expiration_policy {
    ttl = "" # never expires for inactivity
  }
}

# Dead-lettered messages are kept only if the dead-letter topic has a subscription.
resource "google_pubsub_subscription" "dead_letter" {
  count = var.create_example_subscription ? 1 : 0

  name                       = local.names.dead_letter_sub
  topic                      = google_pubsub_topic.dead_letter[0].id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"

  expiration_policy {
    ttl = ""
  }
}
