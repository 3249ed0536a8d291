# The distributed precompute: a Step Functions state machine that asks the precompute-task
# function for the plan, then runs each phase as a Distributed Map over its tasks (one function
# invocation per task, at most max_concurrency at once), retrying throttled and transient
# failures. The definition is infra/statemachine/precompute.asl.json, shared with the CDK app.

data "aws_partition" "current" {}

locals {
  bucket_arn        = "arn:${data.aws_partition.current.partition}:s3:::${var.bucket_name}"
  data_objects_arn  = var.data_prefix == "" ? "${local.bucket_arn}/*" : "${local.bucket_arn}/${var.data_prefix}/*"
  cache_objects_arn = "${local.bucket_arn}/${var.cache_prefix}/*"
  work_objects_arn  = "${local.bucket_arn}/${var.cache_prefix}/_work/*"

  data_url  = var.data_prefix == "" ? "s3://${var.bucket_name}" : "s3://${var.bucket_name}/${var.data_prefix}"
  cache_url = "s3://${var.bucket_name}/${var.cache_prefix}"

  function_name      = "${var.name}-precompute"
  state_machine_name = "${var.name}-precompute"

  environment = merge(var.dataset_environment, {
    CELLUCID_DATA_URL   = local.data_url
    CELLUCID_CACHE_URL  = local.cache_url
    CELLUCID_LOG        = var.log_level
    CELLUCID_LOG_FORMAT = "json"
  })

  definition = templatefile("${path.module}/../../../statemachine/precompute.asl.json", {
    TaskFunctionArn = aws_lambda_function.task.arn
    MaxConcurrency  = var.max_concurrency
  })

  tags = merge({ "app" = "cellucid-edge", "component" = "precompute" }, var.tags)
}

check "lambda_zip_built" {
  assert {
    condition     = fileexists(var.lambda_zip_path)
    error_message = "${var.lambda_zip_path} does not exist: run `cargo lambda build --release --bin cellucid-precompute --no-default-features --output-format zip` before apply."
  }
}

# --- The task function -----------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "task" {
  name              = "/aws/lambda/${local.function_name}"
  retention_in_days = var.log_retention_days
  tags              = local.tags
}

resource "aws_lambda_function" "task" {
  function_name = local.function_name
  description   = "cellucid-edge: one task of a distributed precompute (plan, transpose, pack, index, cleanup)"
  role          = aws_iam_role.task.arn

  filename         = var.lambda_zip_path
  source_code_hash = fileexists(var.lambda_zip_path) ? filebase64sha256(var.lambda_zip_path) : null
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = [var.architecture]

  memory_size                    = var.memory_size
  timeout                        = var.timeout_seconds
  reserved_concurrent_executions = var.reserved_concurrency == null ? -1 : var.reserved_concurrency

  environment {
    variables = local.environment
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.task.name
  }

  tracing_config {
    mode = "PassThrough"
  }

  tags       = local.tags
  depends_on = [aws_iam_role_policy.task]
}

# --- The state machine -----------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "state_machine" {
  name              = "/aws/vendedlogs/states/${local.state_machine_name}"
  retention_in_days = var.log_retention_days
  tags              = local.tags
}

resource "aws_sfn_state_machine" "precompute" {
  name       = local.state_machine_name
  role_arn   = aws_iam_role.state_machine.arn
  type       = "STANDARD"
  definition = local.definition

  logging_configuration {
    log_destination        = "${aws_cloudwatch_log_group.state_machine.arn}:*"
    include_execution_data = true
    level                  = "ERROR"
  }

  tracing_configuration {
    enabled = true
  }

  tags       = local.tags
  depends_on = [aws_iam_role_policy.state_machine]
}
