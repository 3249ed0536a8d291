# Two roles, least privilege.
#
# Task function: its own log streams; read the data prefix; read and write (create-only objects,
# never overwritten by design) the cache prefix; delete only the run scratch under
# <cache_prefix>/_work/ (the cleanup phase); list the bucket (without s3:ListBucket S3 answers 403
# instead of 404 for a missing key, which breaks every "does this output exist yet" check, and the
# cleanup lists the scratch).
#
# State machine: invoke the task function; read the item lists and write the Distributed Map
# results under <cache_prefix>/_work/; start, describe and stop its own child executions
# (Distributed Map); deliver its logs (CloudWatch log delivery APIs have no resource-level
# permissions) and X-Ray traces (no resource-level permissions either).

resource "aws_iam_role" "task" {
  name = "${local.function_name}-task"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "lambda.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = local.tags
}

locals {
  task_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "WriteOwnLogs"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
        Resource = ["${aws_cloudwatch_log_group.task.arn}:*"]
      },
      {
        Sid      = "ListForNotFound"
        Effect   = "Allow"
        Action   = ["s3:ListBucket"]
        Resource = [local.bucket_arn]
      },
      {
        Sid      = "ReadDataPrefix"
        Effect   = "Allow"
        Action   = ["s3:GetObject"]
        Resource = [local.data_objects_arn]
      },
      {
        Sid      = "ReadWriteCachePrefix"
        Effect   = "Allow"
        Action   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]
        Resource = [local.cache_objects_arn]
      },
      {
        Sid      = "DeleteRunScratch"
        Effect   = "Allow"
        Action   = ["s3:DeleteObject"]
        Resource = [local.work_objects_arn]
      },
    ]
  })
}

resource "aws_iam_role_policy" "task" {
  name   = "${local.function_name}-data-and-cache"
  role   = aws_iam_role.task.id
  policy = local.task_policy

  lifecycle {
    precondition {
      condition = var.data_prefix == "" || (
        !startswith("${var.cache_prefix}/", "${var.data_prefix}/") &&
        !startswith("${var.data_prefix}/", "${var.cache_prefix}/")
      )
      error_message = "cache_prefix and data_prefix must not contain each other: the tasks may write only the cache prefix."
    }
  }
}

resource "aws_iam_role" "state_machine" {
  name = "${local.state_machine_name}-states"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "states.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = local.tags
}

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}

locals {
  state_machine_arn = "arn:${data.aws_partition.current.partition}:states:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:stateMachine:${local.state_machine_name}"
  execution_arns    = "arn:${data.aws_partition.current.partition}:states:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:execution:${local.state_machine_name}/*"

  state_machine_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "InvokeTaskFunction"
        Effect   = "Allow"
        Action   = ["lambda:InvokeFunction"]
        Resource = [aws_lambda_function.task.arn, "${aws_lambda_function.task.arn}:*"]
      },
      {
        Sid      = "ItemListsAndResults"
        Effect   = "Allow"
        Action   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]
        Resource = [local.work_objects_arn]
      },
      {
        Sid      = "DistributedMapChildren"
        Effect   = "Allow"
        Action   = ["states:StartExecution"]
        Resource = [local.state_machine_arn]
      },
      {
        Sid      = "DistributedMapChildExecutions"
        Effect   = "Allow"
        Action   = ["states:DescribeExecution", "states:StopExecution"]
        Resource = [local.execution_arns]
      },
      {
        Sid    = "LogDelivery"
        Effect = "Allow"
        Action = [
          "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
          "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups",
        ]
        Resource = ["*"]
      },
      {
        Sid      = "XRay"
        Effect   = "Allow"
        Action   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets"]
        Resource = ["*"]
      },
    ]
  })
}

resource "aws_iam_role_policy" "state_machine" {
  name   = "${local.state_machine_name}-run"
  role   = aws_iam_role.state_machine.id
  policy = local.state_machine_policy
}
