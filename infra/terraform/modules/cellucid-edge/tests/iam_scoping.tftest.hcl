# Offline checks of the module (no AWS credentials, no network): the provider is mocked, so
# `apply` only evaluates the configuration. They pin the least-privilege IAM scoping — data prefix
# read-only, cache prefix the only writable place, no wildcards — and the wiring around it.

mock_provider "aws" {
  mock_data "aws_partition" {
    defaults = {
      partition  = "aws"
      dns_suffix = "amazonaws.com"
    }
  }

  mock_resource "aws_iam_role" {
    defaults = {
      arn = "arn:aws:iam::123456789012:role/cellucid-edge-function"
    }
  }

  mock_resource "aws_lambda_function" {
    defaults = {
      arn        = "arn:aws:lambda:eu-west-1:123456789012:function:cellucid-edge"
      invoke_arn = "arn:aws:apigateway:eu-west-1:lambda:path/2015-03-31/functions/arn:aws:lambda:eu-west-1:123456789012:function:cellucid-edge/invocations"
    }
  }

  mock_resource "aws_lambda_function_url" {
    defaults = {
      function_url = "https://abcdefghijklmnopqrstuvwxyz234567.lambda-url.eu-west-1.on.aws/"
    }
  }

  mock_resource "aws_apigatewayv2_api" {
    defaults = {
      api_endpoint  = "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com"
      execution_arn = "arn:aws:execute-api:eu-west-1:123456789012:a1b2c3d4e5"
    }
  }

  mock_resource "aws_cloudwatch_log_group" {
    defaults = {
      arn = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/cellucid-edge"
    }
  }
}

variables {
  bucket_name  = "atlas-bucket"
  data_prefix  = "atlases"
  cache_prefix = "cellucid-cache"
  # Any existing file: under the mock provider nothing is uploaded, only hashed.
  lambda_zip_path = "versions.tf"
}

run "new_bucket_least_privilege" {
  command = apply

  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.this.policy).Statement :
      alltrue([for r in flatten([s.Resource]) : r != "*" && !endswith(r, ":::atlas-bucket/*")])
    ])
    error_message = "No statement may target every resource or every object of the bucket."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.this.policy).Statement :
      alltrue([for a in flatten([s.Action]) : !strcontains(a, "*")])
    ])
    error_message = "No wildcard actions."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.this.policy).Statement :
      flatten([s.Resource]) == ["arn:aws:s3:::atlas-bucket/cellucid-cache/*"]
      if anytrue([for a in flatten([s.Action]) : contains(["s3:PutObject", "s3:AbortMultipartUpload"], a)])
    ])
    error_message = "Writes are allowed on the cache prefix only."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.this.policy).Statement :
      alltrue([for r in flatten([s.Resource]) : contains([
        "arn:aws:s3:::atlas-bucket/atlases/*",
        "arn:aws:s3:::atlas-bucket/cellucid-cache/*",
      ], r)])
      if contains(flatten([s.Action]), "s3:GetObject")
    ])
    error_message = "Reads are allowed on the data and cache prefixes only."
  }

  assert {
    condition = length([
      for s in jsondecode(aws_iam_role_policy.this.policy).Statement : s
      if contains(flatten([s.Action]), "s3:GetObject") && contains(flatten([s.Resource]), "arn:aws:s3:::atlas-bucket/atlases/*")
    ]) == 1
    error_message = "The data prefix is readable."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.this.policy).Statement :
      !anytrue([for a in flatten([s.Action]) : contains(["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutBucketPolicy", "s3:PutObjectAcl"], a)])
    ])
    error_message = "The function never deletes objects or changes bucket/object policies."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.this.policy).Statement :
      flatten([s.Resource]) == ["arn:aws:s3:::atlas-bucket"]
      if contains(flatten([s.Action]), "s3:ListBucket")
    ])
    error_message = "ListBucket is granted on this bucket only."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.this.policy).Statement :
      alltrue([for r in flatten([s.Resource]) : startswith(r, aws_cloudwatch_log_group.function.arn)])
      if anytrue([for a in flatten([s.Action]) : startswith(a, "logs:")])
    ])
    error_message = "Log permissions are limited to the function's own log group."
  }

  assert {
    condition     = jsondecode(aws_iam_role.this.assume_role_policy).Statement[0].Principal.Service == "lambda.amazonaws.com"
    error_message = "Only Lambda assumes the role."
  }

  assert {
    condition     = aws_lambda_function.this.environment[0].variables["CELLUCID_DATA_URL"] == "s3://atlas-bucket/atlases"
    error_message = "The function reads the data prefix."
  }

  assert {
    condition     = aws_lambda_function.this.environment[0].variables["CELLUCID_CACHE_URL"] == "s3://atlas-bucket/cellucid-cache"
    error_message = "The function caches under the cache prefix."
  }

  assert {
    condition     = !contains(keys(aws_lambda_function.this.environment[0].variables), "CELLUCID_SHARE_SECRET")
    error_message = "No empty share secret is passed."
  }

  assert {
    condition     = aws_lambda_function.this.runtime == "provided.al2023" && one(aws_lambda_function.this.architectures) == "x86_64"
    error_message = "provided.al2023 on x86_64 by default."
  }

  assert {
    condition     = aws_lambda_function.this.reserved_concurrent_executions == -1
    error_message = "Unreserved concurrency by default."
  }

  assert {
    condition     = length(aws_s3_bucket.this) == 1 && length(aws_s3_bucket_public_access_block.this) == 1
    error_message = "The bucket is created, with public access blocked."
  }

  assert {
    condition = (
      one(aws_s3_bucket_cors_configuration.this[0].cors_rule).allowed_origins == toset(["*"]) &&
      one(aws_s3_bucket_cors_configuration.this[0].cors_rule).allowed_methods == toset(["GET", "HEAD"])
    )
    error_message = "The bucket CORS rule lets redirected GET/HEAD requests through."
  }

  assert {
    condition     = aws_cloudwatch_log_group.function.retention_in_days == 30
    error_message = "Logs are kept 30 days by default."
  }

  assert {
    condition     = aws_lambda_function_url.this[0].authorization_type == "NONE" && aws_lambda_function_url.this[0].invoke_mode == "BUFFERED"
    error_message = "A public, buffered function URL."
  }

  assert {
    condition     = aws_lambda_permission.http_api[0].source_arn == "arn:aws:execute-api:eu-west-1:123456789012:a1b2c3d4e5/*/*"
    error_message = "Only this HTTP API may invoke the function through API Gateway."
  }

  assert {
    condition     = output.function_url == "https://abcdefghijklmnopqrstuvwxyz234567.lambda-url.eu-west-1.on.aws"
    error_message = "The function URL is given without trailing slash."
  }

  assert {
    condition     = output.viewer_url == "https://www.cellucid.com/?remote=https%3A%2F%2Fabcdefghijklmnopqrstuvwxyz234567.lambda-url.eu-west-1.on.aws"
    error_message = "The viewer share URL carries the url-encoded function URL."
  }

  assert {
    condition     = output.viewer_url_v09 == "https://www.cellucid.com/?remote=https%3A%2F%2Fabcdefghijklmnopqrstuvwxyz234567.lambda-url.eu-west-1.on.aws%2Fv0.9"
    error_message = "The 0.9 share URL carries the url-encoded /v0.9 base URL."
  }

  assert {
    condition     = output.viewer_url_http_api == "https://www.cellucid.com/?remote=https%3A%2F%2Fa1b2c3d4e5.execute-api.eu-west-1.amazonaws.com"
    error_message = "The HTTP API share URL."
  }

  assert {
    condition     = output.viewer_url_strict == "https://www.cellucid.com/?remote=https%3A%2F%2Fabcdefghijklmnopqrstuvwxyz234567.lambda-url.eu-west-1.on.aws%2Fstrict"
    error_message = "The strict share URL carries the url-encoded /strict base URL."
  }

  assert {
    condition     = length(output.viewer_links) == 3 && output.viewer_links[1].url == output.viewer_url_strict && output.viewer_links[0].url == output.viewer_url && output.viewer_links[2].url == output.viewer_url_v09
    error_message = "One viewer link per generation: root, /strict, /v0.9."
  }
}

run "existing_bucket_nested_prefixes" {
  command = apply

  variables {
    create_bucket        = false
    bucket_name          = "lab-shared"
    data_prefix          = "teams/lab/atlases"
    cache_prefix         = "teams/lab/cellucid-cache"
    architecture         = "arm64"
    reserved_concurrency = 5
    share_secret         = "s3cr3t"
  }

  assert {
    condition     = length(aws_s3_bucket.this) == 0 && length(aws_s3_bucket_policy.tls_only) == 0
    error_message = "An existing bucket is not created or re-policied."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.this.policy).Statement :
      flatten([s.Resource]) == ["arn:aws:s3:::lab-shared/teams/lab/cellucid-cache/*"]
      if contains(flatten([s.Action]), "s3:PutObject")
    ])
    error_message = "Writes stay under the nested cache prefix."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.this.policy).Statement :
      alltrue([for r in flatten([s.Resource]) : contains([
        "arn:aws:s3:::lab-shared/teams/lab/atlases/*",
        "arn:aws:s3:::lab-shared/teams/lab/cellucid-cache/*",
      ], r)])
      if contains(flatten([s.Action]), "s3:GetObject")
    ])
    error_message = "Reads stay under the nested prefixes."
  }

  assert {
    condition     = one(aws_lambda_function.this.architectures) == "arm64" && aws_lambda_function.this.reserved_concurrent_executions == 5
    error_message = "arm64 and reserved concurrency are honoured."
  }

  assert {
    condition     = aws_s3_bucket_cors_configuration.this[0].bucket == "lab-shared"
    error_message = "The CORS rule goes on the existing bucket."
  }
}

run "embedded_demo_reads_no_data" {
  command = apply

  variables {
    serve_demo          = true
    enable_http_api     = false
    allowed_origins     = ["*"]
    enable_function_url = true
  }

  assert {
    condition = length([
      for s in jsondecode(aws_iam_role_policy.this.policy).Statement : s
      if contains(flatten([s.Resource]), "arn:aws:s3:::atlas-bucket/atlases/*")
    ]) == 0
    error_message = "Serving the embedded demo grants no access to the data prefix."
  }

  assert {
    condition     = !contains(keys(aws_lambda_function.this.environment[0].variables), "CELLUCID_DATA_URL")
    error_message = "No data URL: the function serves its embedded demo."
  }

  assert {
    condition     = aws_lambda_function.this.environment[0].variables["CELLUCID_ALLOWED_ORIGINS"] == "*"
    error_message = "Allowed origins are passed through."
  }

  assert {
    condition     = length(aws_apigatewayv2_api.this) == 0 && output.http_api_url == null
    error_message = "No HTTP API when disabled."
  }
}

run "cache_inside_data_is_refused" {
  command = plan

  variables {
    data_prefix  = "atlases"
    cache_prefix = "atlases/cache"
  }

  expect_failures = [aws_iam_role_policy.this]
}

run "data_inside_cache_is_refused" {
  command = plan

  variables {
    data_prefix  = "cache/atlases"
    cache_prefix = "cache"
  }

  expect_failures = [aws_iam_role_policy.this]
}

run "unknown_architecture_is_refused" {
  command = plan

  variables {
    architecture = "riscv64"
  }

  expect_failures = [var.architecture]
}

run "quantize_reaches_the_function" {
  command = plan

  variables {
    quantize = 16
  }

  assert {
    condition     = aws_lambda_function.this.environment[0].variables["CELLUCID_QUANTIZE"] == "16"
    error_message = "CELLUCID_QUANTIZE carries the strict profile's quantisation."
  }
}

run "quantize_must_be_8_or_16" {
  command = plan

  variables {
    quantize = 12
  }

  expect_failures = [var.quantize]
}
