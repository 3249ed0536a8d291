# cellucid-edge on AWS Lambda: the function (provided.al2023), a public function URL and/or an
# API Gateway HTTP API in front of it, the bucket (or an existing one) holding the atlases and
# the derived-artifact cache, least-privilege IAM, and log groups with retention.

data "aws_partition" "current" {}

locals {
  bucket_arn = "arn:${data.aws_partition.current.partition}:s3:::${var.bucket_name}"

  # Object ARNs the function may touch: the data prefix read-only, the cache prefix read/write.
  data_objects_arn  = var.data_prefix == "" ? "${local.bucket_arn}/*" : "${local.bucket_arn}/${var.data_prefix}/*"
  cache_objects_arn = "${local.bucket_arn}/${var.cache_prefix}/*"

  data_url  = var.data_prefix == "" ? "s3://${var.bucket_name}" : "s3://${var.bucket_name}/${var.data_prefix}"
  cache_url = "s3://${var.bucket_name}/${var.cache_prefix}"

  environment = {
    for k, v in {
      CELLUCID_DATA_URL        = var.serve_demo ? null : local.data_url
      CELLUCID_CACHE_URL       = local.cache_url
      CELLUCID_ALLOWED_ORIGINS = join(",", var.allowed_origins)
      CELLUCID_MAX_BODY_BYTES  = tostring(var.max_body_bytes)
      CELLUCID_SHARE_SECRET    = var.share_secret
      CELLUCID_LOG             = var.log_level
      CELLUCID_LOG_FORMAT      = "json"
      CELLUCID_QUANTIZE        = var.quantize == null ? null : tostring(var.quantize)
    } : k => v if v != null && v != ""
  }

  # The viewer's remote: the function URL when there is one, else the HTTP API.
  function_url = var.enable_function_url ? trimsuffix(aws_lambda_function_url.this[0].function_url, "/") : null
  http_api_url = var.enable_http_api ? trimsuffix(aws_apigatewayv2_api.this[0].api_endpoint, "/") : null
  public_url   = coalesce(local.function_url, local.http_api_url, "none")

  tags = merge({ "app" = "cellucid-edge" }, var.tags)
}

check "lambda_zip_built" {
  assert {
    condition     = fileexists(var.lambda_zip_path)
    error_message = "${var.lambda_zip_path} does not exist: run `cargo lambda build --release --bin cellucid-lambda --no-default-features --output-format zip` (add --arm64 for architecture = arm64) before apply."
  }
}

check "public_endpoint" {
  assert {
    condition     = var.enable_function_url || var.enable_http_api
    error_message = "Neither a function URL nor an HTTP API is enabled: the viewer cannot reach the function."
  }
}
