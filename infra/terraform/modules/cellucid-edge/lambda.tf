resource "aws_cloudwatch_log_group" "function" {
  name              = "/aws/lambda/${var.name}"
  retention_in_days = var.log_retention_days
  tags              = local.tags
}

resource "aws_lambda_function" "this" {
  function_name = var.name
  description   = "cellucid-edge: AnnData-Zarr atlases for the Cellucid viewer"
  role          = aws_iam_role.this.arn

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
    log_group  = aws_cloudwatch_log_group.function.name
  }

  tracing_config {
    mode = var.tracing_mode
  }

  tags = local.tags

  depends_on = [aws_iam_role_policy.this]
}

# --- Public function URL --------------------------------------------------------------------
# No `cors` block: the function answers CORS itself, exactly like `cellucid-edge serve`.

resource "aws_lambda_function_url" "this" {
  count              = var.enable_function_url ? 1 : 0
  function_name      = aws_lambda_function.this.function_name
  authorization_type = "NONE"
  invoke_mode        = "BUFFERED"
}

resource "aws_lambda_permission" "function_url" {
  count                  = var.enable_function_url ? 1 : 0
  statement_id           = "FunctionURLAllowPublicAccess"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.this.function_name
  principal              = "*"
  function_url_auth_type = "NONE"
}

# Since October 2025 a public function URL also needs lambda:InvokeFunction restricted to calls
# made through the URL (condition lambda:InvokedViaFunctionUrl). hashicorp/aws 5.x cannot express
# that condition in aws_lambda_permission (6.x has `invoked_via_function_url = true`), so it is
# created by a one-resource CloudFormation stack, still through the aws provider only.
resource "aws_cloudformation_stack" "function_url_invoke" {
  count = var.enable_function_url ? 1 : 0
  name  = "${var.name}-function-url-invoke"
  template_body = jsonencode({
    AWSTemplateFormatVersion = "2010-09-09"
    Description              = "lambda:InvokeFunction through the function URL only (cellucid-edge)"
    Resources = {
      InvokeViaFunctionUrl = {
        Type = "AWS::Lambda::Permission"
        Properties = {
          Action                = "lambda:InvokeFunction"
          FunctionName          = aws_lambda_function.this.function_name
          Principal             = "*"
          InvokedViaFunctionUrl = true
        }
      }
    }
  })
  tags = local.tags
}
