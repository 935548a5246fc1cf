output "function_name" {
  description = "The Cloud Functions (gen2) function."
  value       = google_cloudfunctions2_function.clipsearch.name
}

output "function_service" {
  description = "The function's Cloud Run service (the trigger's only invoke grant)."
  value       = google_cloudfunctions2_function.clipsearch.service_config[0].service
}

output "query_bucket" {
  description = "Upload query images here (with video_no and prompt metadata)."
  value       = google_storage_bucket.query.name
}

output "results_bucket" {
  description = "Fetched videos and result records."
  value       = google_storage_bucket.results.name
}

output "result_records_location" {
  description = "Where per-query result records (also the idempotency records) are written."
  value       = "gs://${google_storage_bucket.results.name}/${local.results_records_prefix}"
}

output "results_topic" {
  description = "Outcome messages (Avro schema, JSON encoding)."
  value       = google_pubsub_topic.results.id
}

output "errors_topic" {
  description = "Error outcomes (same schema)."
  value       = google_pubsub_topic.errors.id
}

output "example_subscription" {
  description = "Example pull subscription with dead-lettering, if created."
  value       = var.create_example_subscription ? google_pubsub_subscription.results_example[0].id : null
}

output "runtime_service_account" {
  description = "The function's identity: ask the owner of each source bucket to grant it roles/storage.objectViewer."
  value       = google_service_account.runtime.email
}

output "trigger_service_account" {
  description = "Eventarc's identity for the trigger."
  value       = google_service_account.trigger.email
}

output "api_key_secret" {
  description = "Secret Manager secret holding the search API key (value managed outside Terraform)."
  value       = google_secret_manager_secret.api_key.id
}

output "add_api_key_command" {
  description = "The one command that stores the API key (reads it from $CLIPSEARCH_API_KEY)."
  value       = "printf '%s' \"$CLIPSEARCH_API_KEY\" | gcloud secrets versions add ${google_secret_manager_secret.api_key.secret_id} --project=${var.project_id} --data-file=-"
}
