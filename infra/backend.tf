# State lives in a GCS bucket created once per project (docs/deploy.md). Partial configuration:
#   terraform init -backend-config="bucket=<state bucket>" -backend-config="prefix=clipsearch"
terraform {
  backend "gcs" {}
}
