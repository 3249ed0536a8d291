output "function_name" {
  description = "Name of the Lambda function."
  value       = aws_lambda_function.this.function_name
}

output "function_arn" {
  description = "ARN of the Lambda function."
  value       = aws_lambda_function.this.arn
}

output "role_arn" {
  description = "ARN of the function's execution role."
  value       = aws_iam_role.this.arn
}

output "function_url" {
  description = "Public function URL, without trailing slash (null when disabled)."
  value       = local.function_url
}

output "http_api_url" {
  description = "HTTP API base URL, without trailing slash (null when disabled)."
  value       = local.http_api_url
}

output "remote_url" {
  description = "The base URL the viewer connects to (function URL, else HTTP API)."
  value       = local.public_url
}

output "viewer_url" {
  description = "Share this: the Cellucid viewer opened on the deployment."
  value       = "https://www.cellucid.com/?remote=${urlencode(local.public_url)}"
}

output "remote_url_v09" {
  description = "Base URL of the Cellucid 0.9 protocol (raw AnnData with ranges), mounted under /v0.9 beside the seed protocol at the root."
  value       = "${local.public_url}/v0.9"
}

output "viewer_url_v09" {
  description = "The viewer opened on the 0.9 protocol base URL (whether the hosted viewer accepts ?remote= for 0.9 is unverified; see README)."
  value       = "https://www.cellucid.com/?remote=${urlencode("${local.public_url}/v0.9")}"
}

output "remote_url_strict" {
  description = "Base URL of the strict profile (for the 2026 viewer builds with strict validation), mounted under /strict beside the seed protocol at the root."
  value       = "${local.public_url}/strict"
}

output "viewer_url_strict" {
  description = "The viewer opened on the strict profile: for the 2026 viewer builds with strict validation."
  value       = "https://www.cellucid.com/?remote=${urlencode("${local.public_url}/strict")}"
}

output "viewer_links" {
  description = "One viewer link per viewer generation, each saying which viewer it is for (what `cellucid-edge serve` prints)."
  value = [
    {
      viewer = "0.0.9-era viewer builds (seed protocol, byte-exact, at the root)"
      url    = "https://www.cellucid.com/?remote=${urlencode(local.public_url)}"
    },
    {
      viewer = "2026 viewer builds with strict validation (strict profile at /strict)"
      url    = "https://www.cellucid.com/?remote=${urlencode("${local.public_url}/strict")}"
    },
    {
      viewer = "cellucid 0.9.5 (raw AnnData with ranged reads under /v0.9)"
      url    = "https://www.cellucid.com/?remote=${urlencode("${local.public_url}/v0.9")}"
    },
  ]
}

output "viewer_url_http_api" {
  description = "The viewer opened on the HTTP API (null when disabled)."
  value       = var.enable_http_api ? "https://www.cellucid.com/?remote=${urlencode(local.http_api_url)}" : null
}

output "bucket_name" {
  description = "Bucket holding the data and cache prefixes."
  value       = var.bucket_name
}

output "data_url" {
  description = "CELLUCID_DATA_URL given to the function (null when serving the embedded demo): upload AnnData-Zarr stores here."
  value       = var.serve_demo ? null : local.data_url
}

output "cache_url" {
  description = "CELLUCID_CACHE_URL given to the function."
  value       = local.cache_url
}

output "log_group_name" {
  description = "CloudWatch log group of the function."
  value       = aws_cloudwatch_log_group.function.name
}

output "iam_policy_json" {
  description = "The function role's inline policy (for review)."
  value       = local.iam_policy
}

output "bucket_cors_rule" {
  description = "The CORS rule redirects to presigned cache URLs need (add it by hand when manage_bucket_cors = false)."
  value = {
    AllowedMethods = ["GET", "HEAD"]
    AllowedOrigins = ["*"]
    AllowedHeaders = ["*"]
    ExposeHeaders  = ["Content-Length", "Content-Encoding", "Content-Type", "ETag"]
    MaxAgeSeconds  = 3600
  }
}
