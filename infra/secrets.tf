# The search API key. Terraform creates the secret only: its value is never in Terraform state,
# variables or code. The operator adds it once (docs/deploy.md, output add_api_key_command):
#   printf '%s' "$CLIPSEARCH_API_KEY" | gcloud secrets versions add <name> --data-file=-
resource "google_secret_manager_secret" "api_key" {
  secret_id = local.names.secret

  replication {
    auto {}
  }

  depends_on = [google_project_service.this]
}
