# The function's role: write its own log streams, read the data prefix, read and write (create
# only; never delete) the cache prefix. s3:ListBucket is granted on the bucket itself: without it
# S3 answers 403 instead of 404 for a missing key, which would turn every cache miss into an error
# and break the detection of a directory of atlases. It reveals key names, never object contents.

resource "aws_iam_role" "this" {
  name = "${var.name}-function"
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
  iam_statements = concat(
    [
      {
        Sid      = "WriteOwnLogs"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
        Resource = ["${aws_cloudwatch_log_group.function.arn}:*"]
      },
      {
        Sid      = "ListForNotFound"
        Effect   = "Allow"
        Action   = ["s3:ListBucket"]
        Resource = [local.bucket_arn]
      },
      {
        Sid      = "ReadWriteCachePrefix"
        Effect   = "Allow"
        Action   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]
        Resource = [local.cache_objects_arn]
      },
    ],
    var.serve_demo ? [] : [
      {
        Sid      = "ReadDataPrefix"
        Effect   = "Allow"
        Action   = ["s3:GetObject"]
        Resource = [local.data_objects_arn]
      },
    ],
    var.tracing_mode == "Active" ? [
      {
        # X-Ray actions have no resource-level permissions.
        Sid      = "XRay"
        Effect   = "Allow"
        Action   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
        Resource = ["*"]
      },
    ] : [],
  )

  iam_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = local.iam_statements
  })
}

resource "aws_iam_role_policy" "this" {
  name   = "${var.name}-data-and-cache"
  role   = aws_iam_role.this.id
  policy = local.iam_policy

  lifecycle {
    precondition {
      condition = var.data_prefix == "" || (
        !startswith("${var.cache_prefix}/", "${var.data_prefix}/") &&
        !startswith("${var.data_prefix}/", "${var.cache_prefix}/")
      )
      error_message = "cache_prefix and data_prefix must not contain each other: the function may write only the cache prefix."
    }
  }
}
