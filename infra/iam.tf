# Two identities, each with only resource-scoped grants:
#   runtime: what the function's code does (read queries, write results, publish, read the key)
#   trigger: what Eventarc does (invoke this one function)

resource "google_service_account" "runtime" {
  account_id   = local.names.runtime_sa_id
  display_name = "clipsearch function runtime (${var.name_prefix})"
  depends_on   = [google_project_service.this]
}

resource "google_service_account" "trigger" {
  account_id   = local.names.trigger_sa_id
  display_name = "clipsearch Eventarc trigger (${var.name_prefix})"
  depends_on   = [google_project_service.this]
}

# ---- runtime ------------------------------------------------------------------------------

resource "google_storage_bucket_iam_member" "runtime_reads_queries" {
  bucket = google_storage_bucket.query.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.runtime.member
}

# objectUser, not objectCreator: result records are rewritten on replay and stale copies
# replaced, and overwriting an object needs storage.objects.delete.
resource "google_storage_bucket_iam_member" "runtime_writes_results" {
  bucket = google_storage_bucket.results.name
  role   = "roles/storage.objectUser"
  member = google_service_account.runtime.member
}

resource "google_pubsub_topic_iam_member" "runtime_publishes_results" {
  topic  = google_pubsub_topic.results.name
  role   = "roles/pubsub.publisher"
  member = google_service_account.runtime.member
}

resource "google_pubsub_topic_iam_member" "runtime_publishes_errors" {
  topic  = google_pubsub_topic.errors.name
  role   = "roles/pubsub.publisher"
  member = google_service_account.runtime.member
}

resource "google_secret_manager_secret_iam_member" "runtime_reads_api_key" {
  secret_id = google_secret_manager_secret.api_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.runtime.member
}

# Read access to the vendor's source buckets (var.source_buckets) is granted by their owner, on
# their bucket, to output runtime_service_account: we cannot and do not manage it here.

# ---- trigger ------------------------------------------------------------------------------

# Invoker on this function's Cloud Run service only.
resource "google_cloud_run_v2_service_iam_member" "trigger_invokes_function" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.clipsearch.service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.trigger.member
}

# PROJECT-LEVEL, justified: Eventarc triggers have no IAM policy of their own, so
# roles/eventarc.eventReceiver can only be granted on the project. It goes to the trigger's
# dedicated identity (which can do nothing else), never to the runtime identity.
resource "google_project_iam_member" "trigger_receives_events" {
  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = google_service_account.trigger.member
}

# ---- Google-managed service agents ----------------------------------------------------------

data "google_storage_project_service_account" "gcs" {
  project    = var.project_id
  depends_on = [google_project_service.this]
}

# PROJECT-LEVEL, justified: a Cloud Storage trigger makes Eventarc create its own transport
# topic, whose name is not known in advance; the Cloud Storage service agent must be able to
# publish the bucket's notifications to it. This is the grant Google documents for storage
# triggers, and it goes to Google's agent, not to any of our identities.
resource "google_project_iam_member" "gcs_agent_publishes_events" {
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = data.google_storage_project_service_account.gcs.member
}

# Dead-lettering is done by the Pub/Sub service agent: it must publish to the dead-letter topic
# and acknowledge on the source subscription (both resource-scoped).
data "google_project" "this" {
  project_id = var.project_id
}

locals {
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_pubsub_topic_iam_member" "pubsub_agent_dead_letters" {
  count  = var.create_example_subscription ? 1 : 0
  topic  = google_pubsub_topic.dead_letter[0].name
  role   = "roles/pubsub.publisher"
  member = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "pubsub_agent_acks_dead_lettered" {
  count        = var.create_example_subscription ? 1 : 0
  subscription = google_pubsub_subscription.results_example[0].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}
