# A budget on this project's GCP spend (not the vendor's credits: see the search_credit_budget
# alert). Optional: created only when var.billing_account is set. Creating it needs
# roles/billing.costsManager on the billing account.
resource "google_billing_budget" "clipsearch" {
  count = var.billing_account == "" ? 0 : 1

  billing_account = var.billing_account
  display_name    = "clipsearch ${var.name_prefix}"

  budget_filter {
    projects = ["projects/${data.google_project.this.number}"]
  }

  amount {
    specified_amount {
      units = tostring(var.monthly_budget)
    }
  }

  threshold_rules {
    threshold_percent = 0.5
  }
  threshold_rules {
    threshold_percent = 0.9
  }
  threshold_rules {
    threshold_percent = 1.0
    spend_basis       = "FORECASTED_SPEND"
  }

  all_updates_rule {
    # A budget notifies at most 5 channels.
    monitoring_notification_channels = slice(local.notification_channels, 0, min(5, length(local.notification_channels)))
    disable_default_iam_recipients   = false
  }

  depends_on = [google_project_service.this]
}
