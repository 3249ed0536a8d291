# --- API Gateway HTTP API (payload format 2.0) ------------------------------------------------
# `$default` stage, so request paths carry no stage prefix (every viewer era accepts the base URL).
# No API-level CORS configuration: the function's CORS headers pass through unchanged.

resource "aws_apigatewayv2_api" "this" {
  count         = var.enable_http_api ? 1 : 0
  name          = var.name
  protocol_type = "HTTP"
  description   = "cellucid-edge: AnnData-Zarr atlases for the Cellucid viewer"
  tags          = local.tags
}

resource "aws_apigatewayv2_integration" "this" {
  count                  = var.enable_http_api ? 1 : 0
  api_id                 = aws_apigatewayv2_api.this[0].id
  integration_type       = "AWS_PROXY"
  integration_method     = "POST"
  integration_uri        = aws_lambda_function.this.invoke_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = 30000
}

resource "aws_apigatewayv2_route" "default" {
  count              = var.enable_http_api ? 1 : 0
  api_id             = aws_apigatewayv2_api.this[0].id
  route_key          = "$default"
  authorization_type = "NONE"
  target             = "integrations/${aws_apigatewayv2_integration.this[0].id}"
}

resource "aws_cloudwatch_log_group" "http_api" {
  count             = var.enable_http_api ? 1 : 0
  name              = "/aws/apigateway/${var.name}"
  retention_in_days = var.log_retention_days
  tags              = local.tags
}

resource "aws_apigatewayv2_stage" "default" {
  count       = var.enable_http_api ? 1 : 0
  api_id      = aws_apigatewayv2_api.this[0].id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_rate_limit  = var.http_api_throttle.rate_limit
    throttling_burst_limit = var.http_api_throttle.burst_limit
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.http_api[0].arn
    format = jsonencode({
      requestId        = "$context.requestId"
      ip               = "$context.identity.sourceIp"
      requestTime      = "$context.requestTime"
      method           = "$context.httpMethod"
      path             = "$context.path"
      status           = "$context.status"
      responseLength   = "$context.responseLength"
      integrationError = "$context.integrationErrorMessage"
      latencyMs        = "$context.responseLatency"
    })
  }

  tags = local.tags
}

resource "aws_lambda_permission" "http_api" {
  count         = var.enable_http_api ? 1 : 0
  statement_id  = "AllowHttpApiInvoke"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this.function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.this[0].execution_arn}/*/*"
}
